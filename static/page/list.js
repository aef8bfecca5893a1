// The job list as a dashboard: status tabs with counts, search on the server, newest first with
// "load more", one row per job (times, compact once finished), cancel/retry/remove on the row
// and for a selection, and every row kept live by the events the page receives.
import { describeError } from '../jobclient.js';
import {
  $, announce, isTerminal, jobAction, jobName, meta, online, page, showError, stageName,
} from './state.js';
import { clock, errorLine, formatDuration, parseTime } from './words.js';

const RUNNING = new Set(['queued', 'active']);
const PAGE_SIZE = 50;
const STATUS_EVENTS = new Set(['job.queued', 'job.completed', 'job.failed', 'job.retrying',
  'job.cancelled', 'job.removed']);

// ---- loading the list ------------------------------------------------------------------------

function query(extra) {
  const q = { limit: PAGE_SIZE, ...extra };
  if (page.view.status) q.status = page.view.status;
  if (page.view.q) q.q = page.view.q;
  return q;
}

/** The first page of the current view, replacing the rows (uploads in flight stay). */
let loads = 0;

export async function loadJobs() {
  const client = page.client;
  if (!client) return;
  const view = { ...page.view };
  const load = ++loads;
  $('#jobs').setAttribute('aria-busy', 'true'); // until the newest load has answered
  try {
    const reply = await client.api.listJobs(query({ offset: 0 }));
    if (page.client !== client || view.status !== page.view.status || view.q !== page.view.q) return;
    for (const [id, row] of page.rows) {
      if (!id.startsWith('upload-')) {
        row.el.remove();
        page.rows.delete(id);
      }
    }
    for (const job of reply.jobs) appendRow(job);
    showPage(reply);
    showError($('#upload-error'), '');
  } catch (err) {
    showError($('#upload-error'), errorLine(err));
  } finally {
    if (load === loads) $('#jobs').setAttribute('aria-busy', 'false');
  }
}

async function loadMore() {
  const client = page.client;
  if (!client || page.nextOffset === null) return;
  const button = $('#load-more');
  button.disabled = true;
  try {
    const reply = await client.api.listJobs(query({ offset: page.nextOffset }));
    if (page.client !== client) return;
    for (const job of reply.jobs) if (!page.rows.has(job.jobId)) appendRow(job);
    showPage(reply);
  } catch (err) {
    showError($('#bulk-status'), errorLine(err));
  } finally {
    button.disabled = false;
  }
}

function showPage(reply) {
  page.nextOffset = reply.nextOffset;
  showCounts(reply.counts, reply.total);
}

function showCounts(counts, total) {
  if (counts) page.counts = counts;
  for (const el of document.querySelectorAll('.tabs [data-count]')) {
    const n = page.counts ? page.counts[el.dataset.count] : null;
    el.textContent = n == null ? '' : `(${n})`;
  }
  const shown = [...page.rows.keys()].filter((id) => !id.startsWith('upload-')).length;
  const all = total != null ? total : (page.counts ? page.counts[page.view.status || 'all'] : shown);
  $('#jobs-shown').textContent = all ? `Showing ${Math.min(shown, all)} of ${all} jobs` : '';
  $('#load-more').hidden = page.nextOffset === null;
  updateEmpty();
}

// Counts follow the events: a status change anywhere asks the server again, a little later.
let countsTimer = null;
export function refreshCountsSoon() {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(async () => {
    const client = page.client;
    if (!client || !online()) return;
    try {
      const reply = await client.api.listJobs(query({ limit: 1 }));
      if (page.client === client) showCounts(reply.counts, reply.total);
    } catch { /* the next change asks again */ }
  }, 250);
}

function matchesView(d) {
  if (page.view.status && d.status !== page.view.status) return false;
  if (!page.view.q) return true;
  const needle = page.view.q.toLowerCase();
  return [d.label, d.jobType, d.type].some((v) => typeof v === 'string' && v.toLowerCase().includes(needle));
}

// ---- rows ------------------------------------------------------------------------------------

const FIELDS = ['status', 'stage', 'progress', 'message', 'result', 'error', 'payload', 'label',
  'metadata', 'createdAt', 'startedAt', 'finishedAt', 'attempts', 'maxAttempts', 'lastSeq'];

function appendRow(job) {
  const row = addRow(job.jobId, {}, { append: true });
  apply(job, { quiet: true });
  return row;
}

/** An event or a job snapshot: both name the job's fields the same way. */
export function apply(data, { quiet = false } = {}) {
  if (!page.client || !data || typeof data.jobId !== 'string') return null;
  const isEvent = typeof data.seq === 'number';
  if (!isEvent && typeof data.type === 'string') data = { ...data, jobType: data.type };
  let row = page.rows.get(data.jobId);
  if (isEvent && data.type === 'job.removed') {
    removeRow(data.jobId);
    refreshCountsSoon();
    return null;
  }
  if (!row) {
    // A job this view does not hold: a new one (its first event) that belongs in it, or ours.
    const fresh = isEvent ? data.type === 'job.queued' && data.attempt === 0 : true;
    if (!fresh || !matchesView(data)) {
      if (isEvent && STATUS_EVENTS.has(data.type)) refreshCountsSoon();
      return null;
    }
    row = addRow(data.jobId, {});
  }
  const d = row.data;
  const seq = isEvent ? data.seq : data.lastSeq;
  if (typeof seq === 'number' && typeof d.lastSeq === 'number' && seq < d.lastSeq) return row; // older
  const before = { status: d.status, stage: d.stage };
  const wasTerminal = isTerminal(d.status);
  for (const field of FIELDS) if (field in data) d[field] = data[field];
  if (isEvent) {
    d.lastSeq = data.seq;
    if (data.attempt != null) d.attempts = data.attempt;
    // An event is the job's whole state: no error or result on it means the job has none.
    d.error = data.error || null;
    d.result = data.result || null;
  }
  if (d.error && d.error.code === 'WORKER_LOST' && !isTerminal(d.status)) d.restarted = true;
  if (isTerminal(d.status)) d.restarted = false;
  if (data.jobType) d.jobType = data.jobType;
  const stamp = parseTime(data.timestamp);
  if (!d.start) d.start = parseTime(d.createdAt) || stamp || Date.now();
  if (isEvent && d.status === 'active' && before.status !== 'active') d.startedAt = data.timestamp;
  if (isTerminal(d.status)) {
    d.end = parseTime(d.finishedAt) || stamp || d.end || Date.now();
    if (isEvent && !wasTerminal) d.finishedAt = d.finishedAt || data.timestamp;
    page.client.stopTracking(data.jobId);
  } else {
    if (wasTerminal) { // retried: a new run
      d.start = stamp || Date.now();
      if (isEvent) d.startedAt = null;
    }
    d.end = null;
    d.finishedAt = null;
  }
  render(row);
  if (isEvent && STATUS_EVENTS.has(data.type)) refreshCountsSoon();
  if (!quiet && (before.status !== d.status || before.stage !== d.stage)) announceRow(row);
  return row;
}

export function addRow(id, data, { append = false } = {}) {
  const el = $('#job-template').content.firstElementChild.cloneNode(true);
  el.dataset.jobId = id;
  const row = { id, el, data };
  page.rows.set(id, row);
  $('.job-cancel', el).addEventListener('click', () => (row.upload ? row.upload.abort() : act(row, 'cancel')));
  $('.job-retry', el).addEventListener('click', () => act(row, 'retry'));
  $('.job-remove', el).addEventListener('click', () => act(row, 'remove'));
  $('.job-dismiss', el).addEventListener('click', () => removeRow(id));
  $('.job-choose', el).addEventListener('click', () => {
    removeRow(id);
    $('#file-input').click();
  });
  $('.job-select', el).addEventListener('change', updateBulk);
  const list = $('#jobs');
  if (append) list.append(el);
  else list.prepend(el);
  updateEmpty();
  return row;
}

export function removeRow(id) {
  const row = page.rows.get(id);
  if (!row) return;
  row.el.remove();
  page.rows.delete(id);
  updateEmpty();
  updateBulk();
  showCounts();
}

async function act(row, action) {
  const button = $(`.job-${action}`, row.el);
  button.disabled = true;
  try {
    const job = await jobAction(action, row.id);
    if (action === 'remove') {
      removeRow(row.id);
      announce(`${jobName(row.data)}: removed`);
      return;
    }
    apply(job);
    showError($('.job-error', row.el), '');
  } catch (err) {
    showError($('.job-error', row.el), errorLine(err));
  } finally {
    button.disabled = false;
    // After cancel the button hides; keep keyboard focus on the row's next action.
    if (button.hidden && document.contains(row.el)) focusFirstAction(row);
  }
}

function focusFirstAction(row) {
  const next = [...row.el.querySelectorAll('.job-actions > *')].find((el) => !el.hidden);
  if (next) next.focus();
}

/** Retry helps only where trying again may succeed: a cancelled job, or a recoverable error. */
export function canRetry(d) {
  return d.status === 'cancelled' || (d.status === 'failed' && Boolean(d.error && d.error.recoverable));
}

function stageText(d) {
  if (d.status === 'uploading') return 'Uploading';
  if (!online() && RUNNING.has(d.status)) return 'Waiting for the server';
  return stageName(d.stage);
}

export function render(row) {
  const { el, data: d } = row;
  const name = jobName(d);
  const upload = row.id.startsWith('upload-');
  el.dataset.status = d.status || '';
  el.classList.toggle('compact', isTerminal(d.status));
  const link = $('.job-link', el);
  link.textContent = name;
  if (upload) link.removeAttribute('href');
  else link.href = '#/jobs/' + encodeURIComponent(row.id);
  $('.job-stage', el).textContent = stageText(d);
  const bar = $('.job-progress', el);
  bar.setAttribute('aria-label', `Progress of ${name}`);
  const known = typeof d.progress === 'number';
  if (known) {
    const value = d.status === 'completed' ? 100 : Math.max(0, Math.min(100, d.progress));
    bar.value = value;
    $('.job-percent', el).textContent = `${Math.round(value)}%`;
  } else {
    bar.removeAttribute('value'); // indeterminate
    $('.job-percent', el).textContent = '';
  }
  bar.setAttribute('aria-valuetext', `${stageText(d)}${known ? `, ${Math.round(bar.value)}%` : ''}`);
  $('.job-message', el).textContent = messageOf(d);
  $('.job-times', el).textContent = timesOf(d);
  renderElapsed(row);
  const failed = d.status === 'failed' && d.error;
  showError($('.job-error', el), failed ? errorLine(d.error, meta()) : '');
  const serverOk = online();
  const select = $('.job-select', el);
  select.hidden = upload;
  select.setAttribute('aria-label', `Select ${name}`);
  const cancel = $('.job-cancel', el);
  cancel.hidden = !(RUNNING.has(d.status) || (d.status === 'uploading' && row.upload));
  cancel.disabled = !serverOk && !row.upload;
  cancel.setAttribute('aria-label', d.status === 'uploading' ? `Cancel upload of ${name}` : `Cancel ${name}`);
  const retry = $('.job-retry', el);
  retry.hidden = upload || !canRetry(d);
  retry.disabled = !serverOk;
  retry.setAttribute('aria-label', `Retry ${name}`);
  const remove = $('.job-remove', el);
  remove.hidden = upload || !isTerminal(d.status);
  remove.disabled = !serverOk;
  remove.setAttribute('aria-label', `Remove ${name}`);
  const dismiss = $('.job-dismiss', el);
  dismiss.hidden = !(upload && d.status === 'failed');
  dismiss.setAttribute('aria-label', `Dismiss ${name}`);
  const choose = $('.job-choose', el);
  choose.hidden = !(upload && d.status === 'failed');
  const noteId = d.status === 'completed' && d.result ? d.result.noteId : null;
  const notes = $('.job-notes', el);
  const download = $('.job-download', el);
  notes.hidden = download.hidden = !noteId;
  if (noteId) {
    notes.href = '#notes/' + encodeURIComponent(noteId);
    notes.setAttribute('aria-label', `View notes of ${name}`);
    download.href = page.client.api.markdownUrl(noteId);
    download.setAttribute('aria-label', `Download Markdown of ${name}`);
  }
}

function messageOf(d) {
  if (d.status === 'failed') return '';
  if (d.status === 'uploading') return d.message || '';
  if (d.restarted) return `Restarted: the server stopped while this job ran (WORKER_LOST). ${d.message || ''}`.trim();
  if (d.status === 'queued' && d.error) return `Will try again: ${errorLine(d.error)}`;
  const cached = d.status === 'completed' && d.result && d.result.cacheHit ? ' (from cache)' : '';
  const message = d.message === stageName(d.stage) ? '' : d.message || '';
  const attempt = d.attempts > 1 && RUNNING.has(d.status) ? ` (attempt ${d.attempts} of ${d.maxAttempts})` : '';
  return (message + cached + attempt).trim();
}

function timesOf(d) {
  if (d.status === 'uploading') return '';
  const parts = [];
  const started = parseTime(d.startedAt);
  const finished = parseTime(d.finishedAt);
  const added = parseTime(d.createdAt);
  if (added && !started) parts.push(`Added ${clock(added)}`);
  if (started) parts.push(`Started ${clock(started)}`);
  if (finished && isTerminal(d.status)) parts.push(`Finished ${clock(finished)}`);
  return parts.join(' · ');
}

export function renderElapsed(row) {
  const d = row.data;
  const time = $('.job-elapsed', row.el);
  const wrap = $('.job-elapsed-wrap', row.el);
  const from = parseTime(d.startedAt) || d.start;
  if (!from) {
    wrap.hidden = true;
    return;
  }
  wrap.hidden = false;
  const end = isTerminal(d.status) ? (parseTime(d.finishedAt) || d.end || Date.now()) : Date.now();
  const seconds = Math.max(0, Math.round((end - from) / 1000));
  $('.job-elapsed-label', row.el).textContent = isTerminal(d.status) ? 'Took' : 'Elapsed';
  time.dateTime = `PT${seconds}S`;
  time.textContent = seconds < 1 ? '0 s' : formatDuration(seconds * 1000);
}

export function tick() {
  if (!online()) return; // the clock of a job we hear nothing about would be a guess
  for (const row of page.rows.values()) {
    if (!isTerminal(row.data.status)) renderElapsed(row);
  }
  updateTitle();
}

/** The tab's title says how the running jobs are doing. */
export function updateTitle() {
  const running = [...page.rows.values()].filter((r) => RUNNING.has(r.data.status) || r.data.status === 'uploading');
  if (!running.length) {
    document.title = 'jobserver';
    return;
  }
  const percent = running.reduce((sum, r) => sum + (typeof r.data.progress === 'number' ? r.data.progress : 0), 0)
    / running.length;
  document.title = `(${Math.round(percent)}% · ${running.length} running) jobserver`;
}

export function renderAll() {
  for (const row of page.rows.values()) render(row);
  updateBulk();
  updateTitle();
}

function updateEmpty() {
  const empty = $('#jobs-empty');
  empty.hidden = page.rows.size > 0;
  empty.textContent = page.view.q || page.view.status
    ? 'No jobs match.' : 'No jobs yet. Upload a PDF to make notes from it.';
}

// ---- announcements for screen readers -------------------------------------------------------

function announceRow(row) {
  const d = row.data;
  const name = jobName(d);
  if (d.status === 'completed') announce(`${name}: completed${d.result && d.result.noteId ? ', notes ready' : ''}`);
  else if (d.status === 'failed') announce(`${name} failed: ${d.error ? describeError(d.error).message : ''}`);
  else if (d.status === 'cancelled') announce(`${name}: cancelled`);
  else announce(`${name}: ${stageText(d)}`);
}

// ---- selection and bulk actions --------------------------------------------------------------

function selected() {
  return [...page.rows.values()].filter((r) => !r.id.startsWith('upload-') && $('.job-select', r.el).checked);
}

export function updateBulk() {
  const rows = selected();
  const ok = online();
  $('#bulk-cancel').disabled = !ok || !rows.some((r) => RUNNING.has(r.data.status));
  $('#bulk-retry').disabled = !ok || !rows.some((r) => canRetry(r.data));
  $('#bulk-remove').disabled = !ok || !rows.some((r) => isTerminal(r.data.status));
  $('#remove-finished').disabled = !ok;
  const all = [...page.rows.values()].filter((r) => !r.id.startsWith('upload-'));
  const box = $('#select-all');
  box.checked = all.length > 0 && rows.length === all.length;
  box.indeterminate = rows.length > 0 && rows.length < all.length;
}

const BULK_WORDS = { cancel: ['Cancelled', 'cancelled'], retry: ['Retried', 'retried'], remove: ['Removed', 'removed'] };

async function bulk(action) {
  const rows = selected().filter((r) => (action === 'cancel' ? RUNNING.has(r.data.status)
    : action === 'retry' ? canRetry(r.data) : isTerminal(r.data.status)));
  if (!rows.length) return;
  const status = $('#bulk-status');
  status.textContent = 'Working…';
  try {
    const reply = await page.client.api.bulk(action, rows.map((r) => r.id));
    for (const result of reply.results) {
      if (!result.ok) continue;
      if (action === 'remove') removeRow(result.jobId);
      else {
        if (action === 'retry') page.client.trackJob(result.jobId);
        apply(result.job, { quiet: true });
        const row = page.rows.get(result.jobId);
        if (row) $('.job-select', row.el).checked = false;
      }
    }
    const [done, words] = BULK_WORDS[action];
    const refused = reply.results.filter((r) => !r.ok);
    status.textContent = `${done} ${reply.done} job${reply.done === 1 ? '' : 's'}.`
      + (refused.length ? ` ${refused.length} could not be ${words}: ${errorLine(refused[0].error)}` : '');
    refreshCountsSoon();
  } catch (err) {
    status.textContent = errorLine(err);
  }
  updateBulk();
}

async function removeFinished() {
  const status = $('#bulk-status');
  status.textContent = 'Removing…';
  try {
    const reply = await page.client.api.removeFinished();
    for (const row of [...page.rows.values()]) {
      if (!row.id.startsWith('upload-') && isTerminal(row.data.status)) removeRow(row.id);
    }
    status.textContent = `Removed ${reply.removed} finished job${reply.removed === 1 ? '' : 's'}.`;
    await loadJobs();
  } catch (err) {
    status.textContent = errorLine(err);
  }
}

// ---- tabs and search -------------------------------------------------------------------------

function setView(change) {
  Object.assign(page.view, change);
  for (const tab of document.querySelectorAll('.tabs .tab')) {
    tab.setAttribute('aria-pressed', String(tab.dataset.status === page.view.status));
  }
  page.nextOffset = null;
  loadJobs();
}

let searchTimer = null;

export function setUpList() {
  for (const tab of document.querySelectorAll('.tabs .tab')) {
    tab.addEventListener('click', () => setView({ status: tab.dataset.status }));
  }
  const search = $('#job-search');
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => setView({ q: search.value.trim() }), 250);
  });
  $('#search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(searchTimer);
    setView({ q: search.value.trim() });
  });
  $('#load-more').addEventListener('click', loadMore);
  $('#select-all').addEventListener('change', (event) => {
    for (const row of page.rows.values()) {
      if (!row.id.startsWith('upload-')) $('.job-select', row.el).checked = event.target.checked;
    }
    updateBulk();
  });
  $('#bulk-cancel').addEventListener('click', () => bulk('cancel'));
  $('#bulk-retry').addEventListener('click', () => bulk('retry'));
  $('#bulk-remove').addEventListener('click', () => bulk('remove'));
  $('#remove-finished').addEventListener('click', removeFinished);
}

export function clearList() {
  page.rows.clear();
  page.counts = null;
  page.nextOffset = null;
  $('#jobs').replaceChildren();
  updateEmpty();
}
