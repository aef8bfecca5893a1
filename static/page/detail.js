// A job's detail view (#/jobs/<id>): its fields, label, payload and attempts, and its timeline:
// every event of the job from the stored log (GET /api/jobs/{id}/events), with times and the
// time between them, kept live while the view is open.
import {
  $, isTerminal, jobAction, jobName, meta, online, page, showError, stageName, typeName,
} from './state.js';
import { canRetry } from './list.js';
import { clock, errorLine, EVENT_WORDS, formatDuration, humanError, parseTime } from './words.js';

const view = { jobId: null, job: null, events: [], loading: false };

export function showingJob() {
  return view.jobId;
}

export async function showDetail(jobId) {
  const client = page.client;
  Object.assign(view, { jobId, job: null, events: [], loading: true });
  const panel = $('#detail');
  panel.hidden = false;
  $('#detail-title').textContent = 'Loading…';
  $('#detail-fields').replaceChildren();
  $('#timeline').replaceChildren();
  $('#detail-stages').replaceChildren();
  $('#detail-payload').textContent = '';
  $('#detail-result').textContent = '';
  showError($('#detail-error'), '');
  panel.focus();
  try {
    const job = await client.api.getJob(jobId);
    const events = [];
    let after = 0;
    for (let pages = 0; pages < 50; pages++) { // at most 50,000 events
      const reply = await client.api.jobEvents(jobId, { after, limit: 1000 });
      events.push(...reply.events);
      if (reply.nextAfter == null) break;
      after = reply.nextAfter;
    }
    if (view.jobId !== jobId || page.client !== client) return;
    // Events that arrived live meanwhile are kept (the log read may have missed them).
    const seen = new Set(events.map((e) => e.seq));
    view.events = [...events, ...view.events.filter((e) => !seen.has(e.seq))].sort((a, b) => a.seq - b.seq);
    view.job = job;
    render();
  } catch (err) {
    if (view.jobId !== jobId) return;
    $('#detail-title').textContent = 'Job';
    showError($('#detail-error'), errorLine(err));
  } finally {
    view.loading = false;
  }
}

export function hideDetail() {
  view.jobId = null;
  $('#detail').hidden = true;
}

/** A live event: the open job's timeline grows and its fields follow. */
export function detailEvent(event) {
  if (!view.jobId || event.jobId !== view.jobId) return;
  if (view.events.some((e) => e.seq === event.seq)) return;
  view.events.push(event);
  view.events.sort((a, b) => a.seq - b.seq);
  if (event.type === 'job.removed') {
    showError($('#detail-error'), 'This job was removed.');
  }
  if (view.job && event.seq > (view.job.lastSeq || 0)) {
    const { type, seq, timestamp, attempt, ...fields } = event;
    view.job = { ...view.job, ...fields, attempts: attempt, lastSeq: seq, error: event.error || null,
      result: event.result || null };
    if (type === 'job.progress' && view.job.status === 'active' && !view.job.startedAt) view.job.startedAt = timestamp;
    if (isTerminal(view.job.status) && type !== 'job.removed' && type !== 'job.progress') view.job.finishedAt = timestamp;
  }
  if (view.job) render();
}

function field(term, value, { code = false } = {}) {
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  if (code) {
    const c = document.createElement('code');
    c.textContent = value;
    dd.append(c);
  } else dd.textContent = value;
  return [dt, dd];
}

function render() {
  const job = view.job;
  const name = jobName({ ...job, jobType: job.type });
  $('#detail-title').textContent = name;
  const created = parseTime(job.createdAt);
  const started = parseTime(job.startedAt);
  const finished = parseTime(job.finishedAt);
  // A failed job's message is its error's, which the error rows below show.
  const message = job.error && job.message === job.error.message ? '' : job.message;
  const rows = [
    field('Status', `${job.status} · ${stageName(job.stage)}`),
    field('Progress', `${Math.round(job.progress || 0)}%${message ? ' · ' + message : ''}`),
    field('Type', `${typeName(job.type)} (${job.type})`),
    field('Label', job.label || '—'),
    field('Attempts', `${job.attempts} of ${job.maxAttempts}`),
    field('Added', created ? clock(created) : '—'),
    field('Started', started ? clock(started) : '—'),
    field('Finished', finished ? clock(finished) : '—'),
  ];
  if (started) rows.push(field(finished ? 'Took' : 'Running for', formatDuration((finished || Date.now()) - started)));
  if (job.error) {
    const human = humanError(job.error, meta());
    rows.push(field('Error', `${human.text}${human.action ? ' ' + human.action : ''}`));
    rows.push(field('Error code', `${job.error.code}${job.error.recoverable ? ' (may succeed if tried again)' : ''}`, { code: true }));
    // The server's own words, where the sentence above is not already them (a code the page
    // has no sentence for shows its message as the sentence).
    if (job.error.message && job.error.message !== human.text) rows.push(field('Error message', job.error.message));
  }
  rows.push(field('Job id', job.jobId, { code: true }));
  $('#detail-fields').replaceChildren(...rows.flat());
  $('#detail-payload').textContent = JSON.stringify(job.payload ?? {}, null, 2);
  $('#detail-result').textContent = job.result ? JSON.stringify(job.result, null, 2) : '—';
  const ok = online();
  const cancel = $('#detail-cancel');
  cancel.hidden = !(job.status === 'queued' || job.status === 'active');
  cancel.disabled = !ok;
  const retry = $('#detail-retry');
  retry.hidden = !canRetry(job);
  retry.disabled = !ok;
  const remove = $('#detail-remove');
  remove.hidden = !isTerminal(job.status) || Boolean(job.removedAt);
  remove.disabled = !ok;
  renderTimeline();
}

function renderTimeline() {
  const items = [];
  let previous = null;
  for (const event of view.events) {
    const at = parseTime(event.timestamp);
    const li = document.createElement('li');
    li.dataset.type = event.type;
    li.dataset.seq = String(event.seq);
    const time = document.createElement('time');
    time.dateTime = event.timestamp || '';
    time.textContent = at ? clock(at, { millis: true }) : '';
    const gap = document.createElement('span');
    gap.className = 'gap';
    gap.textContent = previous != null && at != null ? `+${formatDuration(at - previous)}` : '';
    const what = document.createElement('span');
    what.className = 'what';
    what.textContent = `${EVENT_WORDS[event.type] || event.type}: ${stageName(event.stage)}`;
    const detail = document.createElement('span');
    detail.className = 'detail';
    const parts = [];
    if (event.type === 'job.progress') parts.push(`${Math.round(event.progress || 0)}%`);
    if (event.message) parts.push(event.message);
    if (event.attempt) parts.push(`attempt ${event.attempt} of ${event.maxAttempts}`);
    if (event.error) parts.push(`${event.error.code}${event.error.recoverable ? ', recoverable' : ''}`);
    detail.textContent = parts.join(' · ');
    li.append(time, ' ', gap, ' ', what, ' ', detail);
    items.push(li);
    if (at != null) previous = at;
  }
  $('#timeline').replaceChildren(...items);
  // Time per stage: from a stage's first event to the next stage's (or now, while running).
  const spans = [];
  for (let i = 0; i < view.events.length; i++) {
    const event = view.events[i];
    const last = spans[spans.length - 1];
    if (!last || last.stage !== event.stage) spans.push({ stage: event.stage, from: parseTime(event.timestamp), to: null });
    if (last && last.stage !== event.stage) last.to = parseTime(event.timestamp);
  }
  const lis = spans.filter((s) => !isTerminal(s.stage)).map((s) => {
    const li = document.createElement('li');
    const to = s.to ?? (isTerminal(view.job.status) ? s.from : Date.now());
    li.textContent = `${stageName(s.stage)}: ${formatDuration(Math.max(0, to - s.from))}${s.to == null && !isTerminal(view.job.status) ? ' so far' : ''}`;
    return li;
  });
  $('#detail-stages').replaceChildren(...lis);
}

async function act(action) {
  const job = view.job;
  if (!job) return;
  try {
    const updated = await jobAction(action, job.jobId);
    if (action === 'remove') {
      location.hash = '#/';
      return;
    }
    if (view.job && view.job.jobId === updated.jobId && updated.lastSeq >= view.job.lastSeq) {
      view.job = updated;
      render();
    }
  } catch (err) {
    showError($('#detail-error'), errorLine(err));
  }
}

export function setUpDetail() {
  $('#detail-cancel').addEventListener('click', () => act('cancel'));
  $('#detail-retry').addEventListener('click', () => act('retry'));
  $('#detail-remove').addEventListener('click', () => act('remove'));
}

export function refreshDetail() {
  if (view.job) render();
}
