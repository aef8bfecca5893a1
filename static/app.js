// The jobserver page: sign in (by name, password or token), upload PDFs, watch each job live, read its notes.
// All network traffic goes through jobclient.js; errors become words only in describeError.
import { createJobClient, describeError, STATE } from './jobclient.js';

/** Whether a status is final: GET /api/meta's terminalStatuses say which (no copy here). */
function isTerminal(status) {
  const meta = page.client && page.client.meta;
  return Boolean(meta && meta.terminalStatuses && meta.terminalStatuses.includes(status));
}
const RUNNING = new Set(['queued', 'active']);
const CONNECTION_LABELS = {
  [STATE.IDLE]: 'Not connected',
  [STATE.CONNECTING]: 'Connecting…',
  [STATE.LIVE]: 'Live',
  [STATE.POLLING]: 'Polling',
  [STATE.OFFLINE]: 'Offline',
};
const SESSION_ENDED = new Set(['UNAUTHORIZED', 'TOKEN_EXPIRED', 'INVALID_TOKEN', 'TOKEN_REVOKED']);

const $ = (selector, root = document) => root.querySelector(selector);

const page = {
  client: null,
  userId: null,
  rows: new Map(),     // job id (or a temporary upload id) -> row
  uploads: 0,
  ticker: null,
  returnFocus: null,
};

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
    showError($('#signin-error'), describeError(err).message);
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
    showError($('#signin-token-error'), describeError(err).message);
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
  page.rows.clear();
  $('#jobs').replaceChildren();
  updateEmpty();
}

// ---- the signed-in page ----------------------------------------------------------------------

async function start(userId) {
  stop();
  page.userId = userId;
  const client = createJobClient({ storageKey: 'jobclient:' + userId });
  page.client = client;
  window.jobserver = { client }; // a handle for troubleshooting from the console
  client.on({
    onEvent: (event) => apply(event),
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
  client.subscribe({ userId });
  const transports = new URLSearchParams(location.search).get('transports');
  await client.connect(transports ? { transports: transports.split(',') } : {});
  if (page.client !== client) return;
  for (const row of page.rows.values()) render(row);
  await loadJobs();
  page.ticker = setInterval(tick, 1000);
  route();
}

async function loadJobs() {
  const client = page.client;
  if (!client) return;
  try {
    // Jobs newer than what we hold arrive through onJobState (the client compares seqs).
    await client.api.listJobs({ limit: 50 });
  } catch (err) {
    showError($('#upload-error'), describeError(err).message);
  }
}

function showConnection(state, detail) {
  const box = $('#connection');
  box.dataset.state = state;
  $('#connection-label').textContent = CONNECTION_LABELS[state] || state;
  box.title = detail && detail.message ? detail.message : '';
}

// ---- uploading -------------------------------------------------------------------------------

function isPdf(file) {
  return file.type === 'application/pdf' || /\.pdf$/i.test(file.name);
}

async function uploadFiles(fileList) {
  const files = [...fileList];
  const rejected = files.filter((file) => !isPdf(file));
  showError($('#upload-error'), rejected.length
    ? `Not a PDF, so not uploaded: ${rejected.map((f) => f.name).join(', ')}` : '');
  await Promise.all(files.filter(isPdf).map(uploadOne));
}

async function uploadOne(file) {
  const client = page.client;
  const tempId = 'upload-' + (++page.uploads);
  const row = addRow(tempId, {
    status: 'uploading', name: file.name, progress: null, message: 'Uploading…',
    start: Date.now(),
  });
  render(row);
  announce(`${file.name}: uploading`);
  try {
    const job = await client.api.uploadPdf(file);
    if (page.client !== client) return;
    client.trackJob(job.jobId);
    const jobRow = page.rows.get(job.jobId) || apply(job);
    if (!jobRow.data.name) jobRow.data.name = file.name;
    row.el.replaceWith(jobRow.el);
    page.rows.delete(tempId);
    render(jobRow);
    announceDeferred(jobRow);
  } catch (err) {
    const info = describeError(err);
    Object.assign(row.data, { status: 'failed', error: info, message: '' });
    render(row);
    announce(`${file.name} was not uploaded: ${info.message}`);
  }
}

function setUpDropzone() {
  const zone = $('#dropzone');
  const input = $('#file-input');
  input.addEventListener('change', () => {
    if (input.files.length) uploadFiles(input.files).finally(() => { input.value = ''; });
  });
  const over = (event) => {
    event.preventDefault();
    zone.classList.add('dragging');
  };
  zone.addEventListener('dragenter', over);
  zone.addEventListener('dragover', over);
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    if (event.dataTransfer && event.dataTransfer.files.length) uploadFiles(event.dataTransfer.files);
  });
  // A file dropped next to the zone must not make the browser leave the page to open it.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
}

// ---- job rows --------------------------------------------------------------------------------

const FIELDS = ['status', 'stage', 'progress', 'message', 'result', 'error', 'payload', 'label',
  'metadata', 'createdAt', 'finishedAt'];

/** An event or a job snapshot: both name the job's fields the same way. */
function apply(data) {
  if (!page.client || !data || typeof data.jobId !== 'string') return null;
  if (typeof data.seq !== 'number' && typeof data.type === 'string') data = { ...data, jobType: data.type };
  let row = page.rows.get(data.jobId);
  const before = row ? { status: row.data.status, stage: row.data.stage } : null;
  if (!row) {
    row = addRow(data.jobId, {});
    if (typeof data.seq === 'number') fillIn(row); // an event names no file: ask for the job
  }
  const d = row.data;
  const wasTerminal = isTerminal(d.status);
  for (const field of FIELDS) if (field in data) d[field] = data[field];
  if (data.jobType) d.jobType = data.jobType; // an event's own `type` is the event's kind
  if (!d.start) d.start = parseTime(d.createdAt) || parseTime(data.timestamp) || Date.now();
  if (isTerminal(d.status)) {
    d.end = parseTime(d.finishedAt) || parseTime(data.timestamp) || d.end || Date.now();
    page.client.stopTracking(data.jobId);
  } else {
    if (wasTerminal) d.start = parseTime(data.timestamp) || Date.now(); // retried: a new run
    d.end = null;
    d.finishedAt = null;
  }
  render(row);
  if (!before || before.status !== d.status || before.stage !== d.stage) announceRow(row);
  return row;
}

/** A row first seen through an event (e.g. a job another program started): get its file. */
async function fillIn(row) {
  try {
    const job = await page.client.api.getJob(row.id);
    if (!row.data.payload) row.data.payload = job.payload;
    render(row);
    announceDeferred(row);
  } catch {
    // Not fatal: the row still shows the job's progress under its type's name.
  }
}

function addRow(id, data) {
  const el = $('#job-template').content.firstElementChild.cloneNode(true);
  el.dataset.jobId = id;
  const row = { id, el, data };
  page.rows.set(id, row);
  $('.job-cancel', el).addEventListener('click', () => act(row, 'cancelJob'));
  $('.job-retry', el).addEventListener('click', () => act(row, 'retryJob'));
  $('.job-dismiss', el).addEventListener('click', () => removeRow(id));
  $('#jobs').prepend(el);
  updateEmpty();
  return row;
}

function removeRow(id) {
  const row = page.rows.get(id);
  if (!row) return;
  row.el.remove();
  page.rows.delete(id);
  updateEmpty();
}

async function act(row, method) {
  const button = $(method === 'cancelJob' ? '.job-cancel' : '.job-retry', row.el);
  button.disabled = true;
  try {
    const job = await page.client.api[method](row.id);
    if (method === 'retryJob') page.client.trackJob(job.jobId);
    showError($('.job-error', row.el), '');
  } catch (err) {
    showError($('.job-error', row.el), describeError(err).message);
  } finally {
    button.disabled = false;
    // After cancel the button hides; keep keyboard focus on the row's next action.
    if (button.hidden) focusFirstAction(row);
  }
}

function focusFirstAction(row) {
  const next = [...row.el.querySelectorAll('.job-actions > *')].find((el) => !el.hidden);
  if (next) next.focus();
}

function jobName(d) {
  return d.name || d.label || (d.payload && (d.payload.filename || d.payload.fileName))
    || (d.metadata && (d.metadata.filename || d.metadata.fileName))
    || (d.result && d.result.title) || typeName(d.jobType) || 'Job';
}

/** A job type's display name, as GET /api/meta gives it. */
function typeName(type) {
  const meta = page.client && page.client.meta;
  const known = meta && meta.types && meta.types[type];
  return (known && known.displayName) || type;
}

function stageName(d) {
  if (d.status === 'uploading') return 'Uploading';
  const names = page.client && page.client.meta ? page.client.meta.stageNames || {} : {};
  return names[d.stage] || d.stage || '';
}

function render(row) {
  const { el, data: d } = row;
  const name = jobName(d);
  el.dataset.status = d.status || '';
  $('.job-name', el).textContent = name;
  $('.job-stage', el).textContent = stageName(d);
  const bar = $('.job-progress', el);
  bar.setAttribute('aria-label', `Progress of ${name}`);
  const known = typeof d.progress === 'number';
  if (known) {
    const value = d.status === 'completed' ? 100 : Math.max(0, Math.min(100, d.progress));
    bar.value = value;
    $('.job-percent', el).textContent = `${Math.round(value)}%`;
  } else {
    bar.removeAttribute('value'); // indeterminate while uploading
    $('.job-percent', el).textContent = '';
  }
  bar.setAttribute('aria-valuetext', `${stageName(d)}${known ? `, ${Math.round(bar.value)}%` : ''}`);
  $('.job-message', el).textContent = messageOf(d);
  renderElapsed(row);
  const failed = d.status === 'failed' && d.error;
  showError($('.job-error', el), failed ? errorText(d.error) : '');
  const cancel = $('.job-cancel', el);
  cancel.hidden = !RUNNING.has(d.status);
  cancel.setAttribute('aria-label', `Cancel ${name}`);
  const retry = $('.job-retry', el);
  retry.hidden = !(d.status === 'failed' || d.status === 'cancelled') || row.id.startsWith('upload-');
  retry.setAttribute('aria-label', `Retry ${name}`);
  const dismiss = $('.job-dismiss', el);
  dismiss.hidden = !(row.id.startsWith('upload-') && d.status === 'failed');
  dismiss.setAttribute('aria-label', `Dismiss ${name}`);
  const noteId = d.status === 'completed' && d.result ? d.result.noteId : null;
  const notes = $('.job-notes', el);
  const download = $('.job-download', el);
  notes.hidden = download.hidden = !noteId;
  if (noteId) {
    notes.href = '#notes/' + encodeURIComponent(noteId);
    notes.setAttribute('aria-label', `View notes of ${name}`);
    download.href = page.client.api.markdownUrl(noteId);
    download.setAttribute('aria-label', `Download notes of ${name} as Markdown`);
  }
}

function messageOf(d) {
  if (d.status === 'failed') return '';
  const cached = d.status === 'completed' && d.result && d.result.cacheHit ? ' (from cache)' : '';
  const message = d.message === stageName(d) ? '' : d.message || '';
  return (message + cached).trim();
}

function errorText(error) {
  const info = describeError(error);
  return info.code && info.code !== 'UNKNOWN' ? `${info.message} (${info.code})` : info.message;
}

function renderElapsed(row) {
  const d = row.data;
  const time = $('.job-elapsed', row.el);
  if (!d.start) {
    time.textContent = '';
    return;
  }
  const seconds = Math.max(0, Math.round(((d.end || Date.now()) - d.start) / 1000));
  time.dateTime = `PT${seconds}S`;
  time.textContent = seconds < 60 ? `${seconds} s`
    : `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, '0')} s`;
}

function tick() {
  for (const row of page.rows.values()) {
    if (!isTerminal(row.data.status)) renderElapsed(row);
  }
}

function updateEmpty() {
  $('#jobs-empty').hidden = page.rows.size > 0;
}

// ---- announcements for screen readers -------------------------------------------------------

function announceRow(row) {
  const d = row.data;
  if (!d.name && d.payload === undefined) {
    // Seen through an event before its upload answered: say it once its file is known.
    row.unannounced = true;
    return;
  }
  row.unannounced = false;
  const name = jobName(d);
  if (d.status === 'completed') announce(`${name}: completed, notes ready`);
  else if (d.status === 'failed') announce(`${name} failed: ${d.error ? describeError(d.error).message : ''}`);
  else if (d.status === 'cancelled') announce(`${name}: cancelled`);
  else announce(`${name}: ${stageName(d)}`);
}

function announceDeferred(row) {
  if (row.unannounced) announceRow(row);
}

function announce(text) {
  const region = $('#announcer');
  const line = document.createElement('p');
  line.textContent = text;
  region.append(line);
  while (region.childElementCount > 5) region.firstElementChild.remove();
}

// ---- notes -----------------------------------------------------------------------------------

function route() {
  const match = location.hash.match(/^#notes\/(.+)$/);
  if (match && page.client) showNotes(decodeURIComponent(match[1]));
  else hideNotes();
}

async function showNotes(noteId) {
  const panel = $('#notes');
  page.returnFocus = document.activeElement;
  $('#jobs-panel').hidden = true;
  $('#upload').hidden = true;
  panel.hidden = false;
  $('#notes-title').textContent = 'Loading notes…';
  $('#notes-body').hidden = true;
  $('#notes-source').textContent = '';
  showError($('#notes-error'), '');
  panel.focus();
  try {
    const note = await page.client.api.getNote(noteId);
    renderNotes(note);
  } catch (err) {
    $('#notes-title').textContent = 'Notes';
    showError($('#notes-error'), describeError(err).message);
  }
}

function renderNotes(note) {
  $('#notes-title').textContent = note.title || note.filename || 'Notes';
  const pages = note.pageCount ? ` · ${note.pageCount} page${note.pageCount === 1 ? '' : 's'}` : '';
  $('#notes-source').textContent = `${note.filename || ''}${pages}`;
  $('#notes-summary').textContent = note.summary || '';
  $('#notes-points').replaceChildren(...(note.keyPoints || []).map((point) => {
    const li = document.createElement('li');
    li.append(point.text + ' ');
    if (point.page != null) li.append(pageRef(point.page));
    return li;
  }));
  $('#notes-sections').replaceChildren(...(note.sections || []).map((section) => {
    const li = document.createElement('li');
    li.dataset.level = String(section.level || 1);
    li.append(section.title + ' ');
    if (section.page != null) li.append(pageRef(section.page));
    return li;
  }));
  $('#notes-keywords').replaceChildren(...(note.keywords || []).map((word) => {
    const li = document.createElement('li');
    li.textContent = word;
    return li;
  }));
  $('#notes-download').href = page.client.api.markdownUrl(note.noteId);
  $('#notes-body').hidden = false;
}

function pageRef(pageNumber) {
  const span = document.createElement('span');
  span.className = 'page-ref';
  span.textContent = `(p. ${pageNumber})`;
  return span;
}

function hideNotes() {
  const panel = $('#notes');
  if (panel.hidden) return;
  panel.hidden = true;
  $('#jobs-panel').hidden = false;
  $('#upload').hidden = false;
  if (page.returnFocus && document.contains(page.returnFocus)) page.returnFocus.focus();
}

// ---- small helpers ---------------------------------------------------------------------------

function showError(el, message) {
  el.textContent = message || '';
  el.hidden = !message;
}

function parseTime(value) {
  const ms = typeof value === 'string' ? Date.parse(value) : NaN;
  return Number.isFinite(ms) ? ms : null;
}

$('#signin-form').addEventListener('submit', signIn);
$('#signin-token-form').addEventListener('submit', signInWithToken);
$('#sign-out').addEventListener('click', signOut);
$('#notes-back').addEventListener('click', (event) => {
  event.preventDefault();
  history.pushState(null, '', location.pathname + location.search);
  hideNotes();
});
window.addEventListener('hashchange', route);
setUpDropzone();
boot();
