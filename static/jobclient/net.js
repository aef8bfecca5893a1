/**
 * net.js: the only code that talks to the network (HTTP requests, opening the WebSocket, the
 * REST helpers) and the one place that turns what went wrong into `{code, message}`.
 */

// The server closes a client that fell too far behind with 4000: reconnect at once and resume
// from the last seq. Every other close (1001 shutdown, 1013 too many sockets...) backs off.
export const RESUME_CLOSE_CODES = new Set([4000]);
export const CLOSE_POLICY = 1008; // authentication failed or expired: retrying will not help

/** An error the client raises: a stable `code`, a human `message`, the HTTP status if any. */
export class JobClientError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.name = 'JobClientError';
    this.code = code;
    this.status = status;
  }
}

const CLOSE_MESSAGES = {
  1006: 'The live connection was lost; reconnecting.',
  1008: 'Your session has ended. Sign in again.',
  1009: 'A message to the server was too large.',
  1011: 'The server hit an error on the live connection; reconnecting.',
};

/**
 * The one place that turns anything that went wrong into `{code, message}` for people:
 * JobClientError, the server's {"error": {code, message}}, a job's error, a failed fetch,
 * a WebSocket close event.
 */
export function describeError(err) {
  if (err == null) return { code: 'UNKNOWN', message: 'Something went wrong.' };
  if (err instanceof JobClientError) return { code: err.code, message: err.message };
  if (typeof err === 'object' && err.error && typeof err.error === 'object') {
    return describeError(err.error);
  }
  if (typeof err === 'object' && typeof err.code === 'string' && typeof err.message === 'string'
      && !(err instanceof Error)) {
    return { code: err.code, message: err.message };
  }
  if (err.name === 'AbortError') return { code: 'ABORTED', message: 'The request was cancelled.' };
  if (err.name === 'TimeoutError') {
    return { code: 'TIMEOUT', message: 'The server took too long to answer; retrying.' };
  }
  if (err instanceof TypeError) {
    // fetch rejects with a TypeError when the network (not the server) fails.
    return { code: 'NETWORK', message: 'Cannot reach the server. Check your connection.' };
  }
  if (typeof err === 'object' && typeof err.code === 'number' && 'wasClean' in err) {
    const message = CLOSE_MESSAGES[err.code]
      || (RESUME_CLOSE_CODES.has(err.code) ? 'Catching up with the server.' : null)
      || 'The live connection closed; reconnecting.';
    return { code: err.code === CLOSE_POLICY ? 'UNAUTHORIZED' : 'CONNECTION_CLOSED', message };
  }
  return { code: 'UNKNOWN', message: String(err.message || err) };
}

function httpError(status, data, text) {
  const body = data && typeof data === 'object' && data.error ? data.error : null;
  if (body && typeof body.code === 'string') {
    const error = new JobClientError(body.code, String(body.message || body.code), status);
    if (Number.isInteger(body.index)) error.index = body.index; // a refused batch's job
    return error;
  }
  if (status === 401) return new JobClientError('UNAUTHORIZED', 'Sign in first.', status);
  if (status === 404) return new JobClientError('NOT_FOUND', 'Not found.', status);
  if (status >= 500) {
    return new JobClientError('SERVER_ERROR', 'The server hit an error; try again.', status);
  }
  return new JobClientError('HTTP_' + status, text ? text.slice(0, 200) : 'HTTP ' + status, status);
}

/** HTTP requests and opening the WebSocket, against one server. */
export class Net {
  constructor({ baseUrl, wsPath, token, fetch, WebSocket, location }) {
    this.baseUrl = String(baseUrl || '').replace(/\/+$/, '');
    this.wsPath = wsPath;
    this.token = token || '';
    this.fetch = fetch;
    this.WebSocket = WebSocket;
    this.location = location;
  }

  url(path, query) {
    let url = this.baseUrl + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== undefined && value !== null) params.set(key, String(value));
      }
      const text = params.toString();
      if (text) url += '?' + text;
    }
    return url;
  }

  wsUrl() {
    const base = this.baseUrl || (this.location ? this.location.origin : '');
    return base.replace(/^http/, 'ws') + this.wsPath;
  }

  /** JSON in, JSON out; throws JobClientError for an HTTP error, TypeError for no network. */
  async request(method, path, { query, json, form, signal } = {}) {
    const headers = { Accept: 'application/json' };
    if (this.token) headers.Authorization = 'Bearer ' + this.token;
    let body;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form; // FormData: the browser writes the multipart boundary itself
    }
    const response = await this.fetch(this.url(path, query), {
      method, headers, body, signal, credentials: 'same-origin',
    });
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!response.ok) throw httpError(response.status, data, text);
    return data;
  }

  openSocket() {
    return new this.WebSocket(this.wsUrl());
  }
}

function enc(id) {
  return encodeURIComponent(id);
}

/**
 * The REST calls of `client.api`. Every job they return passes through `seen` (the client's
 * de-duplication: a snapshot newer than the events delivered becomes the job's state).
 */
export function makeApi(net, seen) {
  const api = {
    request: (method, path, init) => net.request(method, path, init),
    url: (path, query) => net.url(path, query),
    // Open sign-in by name, or with a password when one is given.
    signIn: (userId, password) => net.request('POST', '/api/session', {
      json: password === undefined ? { userId } : { userId, password },
    }),
    // A token the page's own application (or identity provider) issued, for a session here.
    signInWithToken: (token) => net.request('POST', '/api/session', { json: { token } }),
    signInMethods: () => net.request('GET', '/api/session/methods'),
    refreshSession: () => net.request('POST', '/api/session/refresh', { json: {} }),
    whoAmI: () => net.request('GET', '/api/session'),
    signOut: () => net.request('DELETE', '/api/session'),
    meta: () => net.request('GET', '/api/meta'),
    // query: limit, offset, status, q (a search on the server); the page has total and counts.
    listJobs: async (query) => {
      const page = await net.request('GET', '/api/jobs', { query });
      (page.jobs || []).forEach(seen);
      return page;
    },
    getJob: async (jobId) => seen(await net.request('GET', '/api/jobs/' + enc(jobId))),
    createJob: async (spec) => seen(await net.request('POST', '/api/jobs', { json: spec })),
    // Up to 1,000 jobs in one request and one commit, all or nothing; each job comes back
    // with `created` (false: its idempotencyKey named an existing job). A refused batch
    // rejects with the server's error, whose `index` names the job at fault.
    submitMany: async (specs) => {
      const reply = await net.request('POST', '/api/jobs', { json: { jobs: [...specs] } });
      return reply.jobs.map(seen);
    },
    /** @deprecated the same as submitMany (the Python client's spelling). */
    submit_many: (specs) => api.submitMany(specs),
    uploadPdf: async (file, filename) => {
      const form = new FormData();
      form.append('file', file, filename || file.name);
      return seen(await net.request('POST', '/api/jobs', { form }));
    },
    // Several PDFs in one upload: one job each, as one batch (a list of jobs).
    uploadPdfs: async (files) => {
      const form = new FormData();
      for (const file of files) form.append('file', file, file.name);
      const reply = await net.request('POST', '/api/jobs', { form });
      return (reply.jobs || [reply]).map(seen);
    },
    cancelJob: async (jobId) => seen(await net.request('POST', `/api/jobs/${enc(jobId)}/cancel`)),
    retryJob: async (jobId) => seen(await net.request('POST', `/api/jobs/${enc(jobId)}/retry`)),
    // Remove one finished job (its notes stay); the reply is the job as it was.
    removeJob: (jobId) => net.request('DELETE', '/api/jobs/' + enc(jobId)),
    // Remove all your finished jobs, or those of the statuses given: { removed, statuses }.
    removeFinished: (statuses) => net.request('DELETE', '/api/jobs', {
      query: statuses && statuses.length ? { status: [...statuses].join(',') } : undefined,
    }),
    // Cancel, retry or remove each of `ids` on its own: { action, results, done, refused }.
    // (The jobs in results do not pass through `seen`: the caller applies them.)
    bulk: (action, ids) => net.request('POST', '/api/jobs/bulk', { json: { action, ids: [...ids] } }),
    // A job's stored events after `after`, oldest first: { jobId, events, limit, nextAfter }.
    jobEvents: (jobId, { after, limit } = {}) => net.request('GET', `/api/jobs/${enc(jobId)}/events`,
      { query: { after, limit } }),
    listNotes: () => net.request('GET', '/api/notes'),
    getNote: (noteId) => net.request('GET', '/api/notes/' + enc(noteId)),
    markdownUrl: (noteId) => net.url(`/api/notes/${enc(noteId)}/markdown`),
  };
  return api;
}
