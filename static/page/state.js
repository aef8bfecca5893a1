// The page's shared state and the few DOM helpers every part of it uses.
import { STATE } from '../jobclient.js';

export const $ = (selector, root = document) => root.querySelector(selector);

export const page = {
  client: null,
  userId: null,
  rows: new Map(),      // job id (or a temporary upload id) -> row
  view: { status: '', q: '' },
  nextOffset: null,     // where "load more" continues; null: nothing more
  counts: null,         // per status, for the current search
  uploads: 0,
  ticker: null,
  returnFocus: null,
  connection: STATE.IDLE,
};

/** Whether the server can be asked for anything right now. */
export function online() {
  return page.connection !== STATE.OFFLINE;
}

/** Whether a status is final: GET /api/meta's terminalStatuses say which (no copy here). */
export function isTerminal(status) {
  const meta = page.client && page.client.meta;
  return Boolean(meta && meta.terminalStatuses && meta.terminalStatuses.includes(status));
}

/**
 * Cancel, retry or remove one job (list row and detail view alike): the reply is the job.
 * A retried job is tracked again, so its new attempt's events arrive.
 */
export async function jobAction(action, jobId) {
  const job = await page.client.api[`${action}Job`](jobId);
  if (action === 'retry') page.client.trackJob(job.jobId);
  return job;
}

export function meta() {
  return (page.client && page.client.meta) || {};
}

export function showError(el, message) {
  el.textContent = message || '';
  el.hidden = !message;
}

export function announce(text) {
  const region = $('#announcer');
  const line = document.createElement('p');
  line.textContent = text;
  region.append(line);
  while (region.childElementCount > 5) region.firstElementChild.remove();
}

/** A job type's display name, as GET /api/meta gives it. */
export function typeName(type) {
  const known = meta().types && meta().types[type];
  return (known && known.displayName) || type;
}

export function stageName(stage) {
  return (meta().stageNames || {})[stage] || stage || '';
}

export function jobName(d) {
  return d.name || d.label || (d.payload && (d.payload.filename || d.payload.fileName))
    || (d.metadata && (d.metadata.filename || d.metadata.fileName))
    || (d.result && d.result.title) || typeName(d.jobType || d.type) || 'Job';
}
