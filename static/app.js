// The jobserver page: sign in (by name, password or token), then the dashboard: upload PDFs,
// the jobs by status with search and paging, each job's detail and timeline, the notes.
// Network traffic goes through jobclient.js (uploads alone use XMLHttpRequest, for their
// progress: page/uploads.js); words for people come from page/words.js.
import { createJobClient, describeError, STATE } from './jobclient.js';
import { $, page, showError } from './page/state.js';
import {
  apply, clearList, loadJobs, refreshCountsSoon, removeRow, renderAll, setUpList, tick,
} from './page/list.js';
import { setUpUploads, showUploadState } from './page/uploads.js';
import { errorLine, SIGNIN_NAME } from './page/words.js';
import {
  detailEvent, hideDetail, refreshDetail, setUpDetail, showDetail, showingJob,
} from './page/detail.js';
import {
  hideNotes, hideNotesList, notesEvent, setUpNotes, showNotes, showNotesList,
} from './page/notes.js';

const CONNECTION_LABELS = {
  [STATE.IDLE]: 'Not connected',
  [STATE.CONNECTING]: 'Connecting…',
  [STATE.LIVE]: 'Live',
  [STATE.POLLING]: 'Polling',
  [STATE.OFFLINE]: 'Offline',
};
const SESSION_ENDED = new Set(['UNAUTHORIZED', 'TOKEN_EXPIRED', 'INVALID_TOKEN', 'TOKEN_REVOKED']);

// ---- sign in and out -------------------------------------------------------------------------

async function boot() {
  const session = createJobClient({ storageKey: 'jobclient:session' });
  try {
    const me = await session.api.whoAmI().catch(async (err) => {
      // A short-lived access token ran out: the session may still be open.
      if (describeError(err).code !== 'TOKEN_EXPIRED') throw err;
      return session.api.refreshSession();
    });
    await start(me.userId);
  } catch (err) {
    showSignIn(describeError(err).code === 'NETWORK' ? describeError(err).message : '');
  }
}

// The sign-in methods this server has on (GET /api/session/methods); the form offers those.
let signInMethods = null;

async function loadSignInMethods() {
  if (!signInMethods) {
    const session = createJobClient({ storageKey: 'jobclient:session' });
    try {
      signInMethods = await session.api.signInMethods();
    } catch {
      return; // the form as it is; signing in says what went wrong
    }
  }
  const on = new Set(signInMethods.methods);
  const byName = on.has('open') || on.has('password');
  $('#signin-form').hidden = !byName;
  $('#signin-open-note').hidden = !on.has('open');
  $('#signin-password-field').hidden = !on.has('password');
  $('#signin-token-form-wrap').hidden = !(on.has('token') || on.has('jwks'));
  if (!byName) { // the token is the only way in: no folded-away form to find first
    $('#signin-token-form-wrap').open = true;
    $('#signin-token').focus();
  }
  $('#signin-none').hidden = on.size > 0;
}

function showSignIn(message = '') {
  $('#loading').hidden = true;
  $('#app').hidden = true;
  $('#account').hidden = true;
  $('#signin').hidden = false;
  $('#signin-password').value = '';
  showError($('#signin-error'), message);
  $('#signin-name').focus();
  loadSignInMethods();
}

async function signIn(event) {
  event.preventDefault();
  const name = $('#signin-name').value.trim();
  const passwordShown = !$('#signin-password-field').hidden;
  const password = $('#signin-password').value;
  const button = $('#signin-form button[type="submit"]');
  if (!name) {
    showError($('#signin-error'), 'Enter your name to sign in.');
    $('#signin-name').focus();
    return;
  }
  const openToo = signInMethods && signInMethods.openSignin;
  if (passwordShown && !password && !openToo) {
    showError($('#signin-error'), 'Enter your password to sign in.');
    $('#signin-password').focus();
    return;
  }
  button.disabled = true;
  try {
    const session = createJobClient({ storageKey: 'jobclient:session' });
    const me = await session.api.signIn(name, passwordShown && password ? password : undefined);
    $('#signin-password').value = '';
    await start(me.userId);
  } catch (err) {
    const info = describeError(err);
    showError($('#signin-error'), info.code === 'INVALID_PAYLOAD' ? SIGNIN_NAME : errorLine(err));
    (passwordShown ? $('#signin-password') : $('#signin-name')).focus();
  } finally {
    button.disabled = false;
  }
}

async function signInWithToken(event) {
  event.preventDefault();
  const token = $('#signin-token').value.trim();
  const button = $('#signin-token-form button[type="submit"]');
  if (!token) {
    showError($('#signin-token-error'), 'Paste the token your application gave you.');
    $('#signin-token').focus();
    return;
  }
  button.disabled = true;
  try {
    const session = createJobClient({ storageKey: 'jobclient:session' });
    const me = await session.api.signInWithToken(token);
    $('#signin-token').value = '';
    await start(me.userId);
  } catch (err) {
    showError($('#signin-token-error'), errorLine(err));
    $('#signin-token').focus();
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  const client = page.client;
  stop();
  if (client) {
    client.forget();
    try { await client.api.signOut(); } catch { /* the cookie is gone or the server is: fine */ }
  }
  showSignIn();
}

function stop() {
  if (page.client) page.client.disconnect();
  page.client = null;
  page.userId = null;
  clearInterval(page.ticker);
  clearList();
  showBanner(STATE.IDLE, null);
}

// ---- the signed-in page ----------------------------------------------------------------------

async function start(userId) {
  stop();
  page.userId = userId;
  const client = createJobClient({ storageKey: 'jobclient:' + userId });
  page.client = client;
  window.jobserver = { client }; // a handle for troubleshooting from the console
  client.on({
    onEvent: (event) => {
      const tracked = client.trackedJobs().includes(event.jobId);
      apply(event);
      detailEvent(event);
      notesEvent(event, tracked);
    },
    onJobState: (job) => apply(job),
    onJobGone: ({ jobId }) => removeRow(jobId),
    onConnectionChange: showConnection,
    onResync: () => loadJobs(),
    onError: (info) => {
      if (SESSION_ENDED.has(info.code)) {
        stop();
        showSignIn(info.message);
      }
    },
  });
  $('#who').textContent = userId;
  $('#account').hidden = false;
  $('#signin').hidden = true;
  $('#loading').hidden = true;
  $('#app').hidden = false;
  $('#main').focus(); // after signing in, the page's content, not the body
  client.subscribe({ userId });
  const transports = new URLSearchParams(location.search).get('transports');
  await client.connect(transports ? { transports: transports.split(',') } : {});
  if (page.client !== client) return;
  showUploadState();
  renderAll();
  await loadJobs();
  page.ticker = setInterval(tick, 1000);
  route();
}

function showConnection(state, detail) {
  const box = $('#connection');
  const wasOffline = page.connection === STATE.OFFLINE;
  page.connection = state;
  box.dataset.state = state;
  $('#connection-label').textContent = CONNECTION_LABELS[state] || state;
  box.title = detail && detail.message ? detail.message : '';
  showBanner(state, detail);
  if (!page.client) return;
  showUploadState();
  renderAll();
  refreshDetail();
  if (wasOffline && state !== STATE.OFFLINE) refreshCountsSoon();
}

function showBanner(state, detail) {
  const offline = state === STATE.OFFLINE && page.client !== null;
  $('#offline-banner').hidden = !offline;
  if (offline) {
    const reason = detail && detail.message ? detail.message : 'The server cannot be reached.';
    $('#offline-reason').textContent = /[.!?]$/.test(reason) ? reason : reason + '.';
  }
}

// ---- views: the jobs, one job, the notes, one note --------------------------------------------

function route() {
  if (!page.client) return;
  const hash = location.hash;
  const job = hash.match(/^#\/jobs\/(.+)$/);
  const note = hash.match(/^#notes\/(.+)$/);
  const notesList = hash === '#/notes';
  const main = !job && !note && !notesList;
  $('#upload').hidden = !main;
  $('#jobs-panel').hidden = !main;
  if (!note && hideNotes() && main && page.returnFocus && document.contains(page.returnFocus)) {
    page.returnFocus.focus();
  }
  if (!notesList) hideNotesList();
  if (!job) hideDetail();
  $('#nav-jobs').toggleAttribute('aria-current', main || Boolean(job));
  $('#nav-notes').toggleAttribute('aria-current', notesList || Boolean(note));
  if (job) {
    const id = decodeURIComponent(job[1]);
    if (showingJob() !== id) showDetail(id);
  } else if (note) showNotes(decodeURIComponent(note[1]));
  else if (notesList) showNotesList();
}

$('#signin-form').addEventListener('submit', signIn);
$('#signin-token-form').addEventListener('submit', signInWithToken);
$('#sign-out').addEventListener('click', signOut);
window.addEventListener('hashchange', route);
document.addEventListener('keydown', (event) => {
  // Escape closes the notes (or a job's detail) and goes back to the list.
  if (event.key !== 'Escape' || !page.client) return;
  if (!$('#notes').hidden || !$('#detail').hidden) {
    event.preventDefault();
    location.hash = '#/';
  }
});
setUpList();
setUpUploads();
setUpDetail();
setUpNotes();
boot();
