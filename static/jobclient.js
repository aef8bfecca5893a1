/**
 * jobclient.js: the jobserver browser client, one dependency-free ES module.
 *
 * Follows jobs live over the WebSocket at /ws and falls back to long-polling /api/events while
 * the socket is down. Every event carries a global `seq`; the client delivers each event once
 * and, per job, in order, whichever transport brought it. Tracked jobs and the resume cursors
 * live in storage (localStorage in a browser), so a reloaded page resumes where it was.
 *
 *   import { createJobClient } from '/static/jobclient.js';
 *   const client = createJobClient();
 *   client.on({ onJobProgress: (e) => ..., onConnectionChange: (state) => ... });
 *   await client.connect();              // or connect({ transports: ['polling'] })
 *   client.subscribe({ userId: 'alice' });
 *
 * Everything the client touches outside itself (WebSocket, fetch, storage, timers, randomness,
 * online/offline notifications) can be injected, which is how tests/js/ runs it under node.
 * The network is touched in one place only (class Net) and errors become messages in one place
 * only (describeError).
 */

export const TRANSPORTS = Object.freeze(['websocket', 'polling']);

/** Connection states reported to onConnectionChange. */
export const STATE = Object.freeze({
  IDLE: 'idle',             // not started, or disconnect()ed
  CONNECTING: 'connecting', // first contact with the server
  LIVE: 'live',             // WebSocket open and every subscription confirmed
  POLLING: 'polling',       // WebSocket down (or not allowed); long-polling instead
  OFFLINE: 'offline',       // neither transport reaches the server; retrying with backoff
});

export const DEFAULTS = Object.freeze({
  baseUrl: '',
  wsPath: '/ws',
  transports: TRANSPORTS,
  backoffBaseMs: 500,
  backoffCapMs: 10000,
  pollTimeoutSeconds: 25,
  pingIntervalMs: 20000,
  pongTimeoutMs: 10000,
  openTimeoutMs: 10000,
  storageKey: 'jobclient',
});

// The server closes a client that fell too far behind with 4000: reconnect at once and resume
// from the last seq. Every other close (1001 shutdown, 1013 too many sockets...) backs off.
const RESUME_CLOSE_CODES = new Set([4000]);
// Codes this client closes its own socket with (4900-4999: private use, never the server's).
const CLOSE_OPEN_TIMEOUT = 4901;
const CLOSE_NO_PONG = 4902;
const CLOSE_OFFLINE = 4903;
const CLOSE_RESYNC = 4904;
const CLOSE_POLICY = 1008; // authentication failed or expired: retrying will not help
const JOB_EVENT_HANDLERS = Object.freeze({
  'job.queued': 'onJobQueued',
  'job.progress': 'onJobProgress',
  'job.completed': 'onJobCompleted',
  'job.failed': 'onJobFailed',
  'job.retrying': 'onJobRetrying',
  'job.cancelled': 'onJobCancelled',
});

/**
 * Exponential backoff with "equal jitter": the ceiling doubles per attempt up to `capMs`, and
 * the delay is drawn uniformly from [ceiling / 2, ceiling]. Half the ceiling keeps a floor, so
 * many clients that lost the server together neither stampede back nor wait needlessly long.
 */
export function backoffDelay(attempt, { baseMs = DEFAULTS.backoffBaseMs,
  capMs = DEFAULTS.backoffCapMs } = {}, random = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return ceiling / 2 + random() * (ceiling / 2);
}

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

/** The only code that talks to the network: HTTP requests and opening the WebSocket. */
class Net {
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

function memoryStorage() {
  const items = new Map();
  return {
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => { items.set(key, String(value)); },
    removeItem: (key) => { items.delete(key); },
  };
}

function subKey(sub) {
  if (sub && typeof sub.userId === 'string' && sub.userId) return 'user:' + sub.userId;
  if (sub && typeof sub.jobId === 'string' && sub.jobId) return 'job:' + sub.jobId;
  throw new JobClientError('BAD_SUBSCRIPTION', 'subscribe to {userId} or {jobId}');
}

function subOfKey(key) {
  const at = key.indexOf(':');
  const kind = key.slice(0, at);
  const id = key.slice(at + 1);
  return kind === 'user' ? { userId: id } : { jobId: id };
}

function matches(key, event) {
  return key === 'user:' + event.userId || key === 'job:' + event.jobId;
}

/**
 * A jobserver client. Options (all optional):
 *   baseUrl          server origin; '' means the page's own
 *   token            bearer token; without one the session cookie is used
 *   transports       ['websocket', 'polling'] (default), or one of them alone
 *   backoffBaseMs, backoffCapMs, pollTimeoutSeconds, pingIntervalMs, pongTimeoutMs
 *   storageKey       where tracked jobs and cursors are kept (one per user, say)
 *   WebSocket, fetch, storage, setTimeout, clearTimeout, random, location, network
 *                    injected dependencies; `network` is an EventTarget for 'online'/'offline'
 */
export class JobClient {
  constructor(options = {}) {
    const g = globalThis;
    this.options = { ...DEFAULTS, ...options };
    const o = this.options;
    this._net = new Net({
      baseUrl: o.baseUrl,
      wsPath: o.wsPath,
      token: o.token,
      fetch: o.fetch || (g.fetch && g.fetch.bind(g)),
      WebSocket: o.WebSocket || g.WebSocket,
      location: o.location || g.location,
    });
    this._setTimeout = o.setTimeout || g.setTimeout.bind(g);
    this._clearTimeout = o.clearTimeout || g.clearTimeout.bind(g);
    this._random = o.random || Math.random;
    this._storage = o.storage || safeLocalStorage() || memoryStorage();
    this._network = o.network !== undefined ? o.network
      : (typeof g.addEventListener === 'function' && typeof g.window !== 'undefined' ? g : null);

    this._handlers = new Set();
    this._subs = new Set();        // subscription keys: 'user:<id>' | 'job:<id>'
    this._tracked = new Set();     // job ids
    this._cursors = new Map();     // subscription key -> last seq seen on it
    this._jobSeq = new Map();      // job id -> last seq delivered (dedup and order)
    this._epoch = null;
    this._baseline = null;         // head seq when we first met the server (new subscriptions)
    this._state = STATE.IDLE;
    this._transports = [...TRANSPORTS];
    this._running = false;
    this._ws = null;
    this._wsPending = null;        // keys sent to the socket and not yet confirmed
    this._wsAttempt = 0;
    this._wsTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._polls = new Map();       // subscription key -> AbortController of its poll loop
    this._pollingOn = false;
    this._pollFailures = 0;
    this._ready = null;
    this.meta = null;
    this.stats = { duplicates: 0, delivered: 0, resyncs: 0 };

    this._onOnline = () => this._wake();
    this._onOffline = () => this._wentOffline();
    this._load();
  }

  // ---- public API --------------------------------------------------------------------------

  /** Register callbacks; returns a function that removes them. */
  on(handlers) {
    this._handlers.add(handlers);
    return () => this._handlers.delete(handlers);
  }

  /** Start (idempotent). Resolves once the server's meta (stage names, epoch) is loaded. */
  connect({ transports } = {}) {
    if (this._running) return this._ready;
    const wanted = (transports || this.options.transports).filter((t) => TRANSPORTS.includes(t));
    if (!wanted.length) throw new JobClientError('BAD_TRANSPORTS', 'no known transport given');
    this._transports = wanted;
    this._running = true;
    if (this._network) {
      this._network.addEventListener('online', this._onOnline);
      this._network.addEventListener('offline', this._onOffline);
    }
    this._setState(STATE.CONNECTING);
    this._ready = this._boot();
    return this._ready;
  }

  /** Stop every transport and timer; subscriptions and tracked jobs are kept. */
  disconnect() {
    this._running = false;
    if (this._network) {
      this._network.removeEventListener('online', this._onOnline);
      this._network.removeEventListener('offline', this._onOffline);
    }
    this._closeSocket(1000);
    this._clearWsTimer();
    this._stopPolling();
    this._setState(STATE.IDLE);
  }

  /** True while events arrive over the WebSocket. */
  isConnected() {
    return this._state === STATE.LIVE;
  }

  /** True while the client long-polls instead. */
  usingPolling() {
    return this._running && this._pollingOn;
  }

  connectionState() {
    return this._state;
  }

  /** Follow a user's or a job's events; subscribing twice to the same thing changes nothing. */
  subscribe(sub) {
    const key = subKey(sub);
    if (this._subs.has(key)) return false;
    this._subs.add(key);
    if (!this._cursors.has(key) && this._baseline !== null) {
      this._cursors.set(key, this._highestSeen());
    }
    this._save();
    if (this._running && this._baseline !== null) this._startSub(key);
    return true;
  }

  unsubscribe(sub) {
    const key = subKey(sub);
    if (!this._subs.delete(key)) return false;
    this._cursors.delete(key);
    this._save();
    this._stopPoll(key);
    if (this._wsOpen()) {
      this._wsPending.delete(key);
      this._send({ type: 'unsubscribe', ...subOfKey(key) });
    }
    return true;
  }

  getSubscriptionCount() {
    return this._subs.size;
  }

  subscriptions() {
    return [...this._subs].map(subOfKey);
  }

  /** Follow one job across reloads: subscribe to it and load its state now. */
  trackJob(jobId) {
    if (typeof jobId !== 'string' || !jobId) return;
    this._tracked.add(jobId);
    this.subscribe({ jobId });
    this._save();
    if (this._running && this._baseline !== null) this._reloadJob(jobId);
  }

  stopTracking(jobId) {
    if (!this._tracked.delete(jobId)) return;
    this.unsubscribe({ jobId });
    this._save();
  }

  trackedJobs() {
    return [...this._tracked];
  }

  /** Forget tracked jobs and cursors (signing out). */
  forget() {
    for (const jobId of [...this._tracked]) this.stopTracking(jobId);
    this._cursors.clear();
    this._storage.removeItem(this.options.storageKey);
  }

  // ---- REST helpers (all through Net.request; jobs they return are observed) ----------------

  get api() {
    if (!this._api) this._api = this._makeApi();
    return this._api;
  }

  _makeApi() {
    const net = this._net;
    const seen = (job) => this._observeJob(job);
    return {
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
      submit_many: async (specs) => {
        const reply = await net.request('POST', '/api/jobs', { json: { jobs: [...specs] } });
        return reply.jobs.map(seen);
      },
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
      listNotes: () => net.request('GET', '/api/notes'),
      getNote: (noteId) => net.request('GET', '/api/notes/' + enc(noteId)),
      markdownUrl: (noteId) => net.url(`/api/notes/${enc(noteId)}/markdown`),
    };
  }

  // ---- start-up ----------------------------------------------------------------------------

  async _boot() {
    let attempt = 0;
    while (this._running) {
      try {
        this.meta = await this._net.request('GET', '/api/meta');
        break;
      } catch (err) {
        if (this._fatal(err)) return this.meta;
        this._setState(STATE.OFFLINE, describeError(err));
        await this._sleep(backoffDelay(attempt++, this._backoff(), this._random));
      }
    }
    if (!this._running) return this.meta;
    const head = Number(this.meta.seq) || 0;
    if (this._epoch !== null && this.meta.epoch !== this._epoch) {
      // The server's store was made anew: our cursors mean nothing there.
      this._cursors.clear();
      this._jobSeq.clear();
    }
    this._epoch = this.meta.epoch;
    this._baseline = head;
    for (const key of this._subs) if (!this._cursors.has(key)) this._cursors.set(key, head);
    this._save();
    this._startTransport();
    for (const jobId of this._tracked) this._reloadJob(jobId);
    return this.meta;
  }

  _startTransport() {
    if (this._allows('websocket')) this._openSocket();
    else this._startPolling();
  }

  _startSub(key) {
    if (this._wsOpen()) this._sendSubscribe(key);
    if (this._polling()) this._startPoll(key);
  }

  // ---- WebSocket ---------------------------------------------------------------------------

  _openSocket() {
    this._clearWsTimer();
    if (!this._running || this._ws) return;
    let ws;
    try {
      ws = this._net.openSocket();
    } catch (err) {
      this._socketFailed(null, err);
      return;
    }
    this._ws = ws;
    this._wsPending = new Set();
    this._wsTimer = this._setTimeout(() => {
      if (this._ws === ws && this._state !== STATE.LIVE) ws.close(CLOSE_OPEN_TIMEOUT, 'open timeout');
    }, this.options.openTimeoutMs);
    ws.onopen = () => {
      if (this._ws !== ws) return;
      if (this.options.token) this._send({ type: 'auth', token: this.options.token });
      for (const key of this._subs) this._sendSubscribe(key);
      if (this._wsPending.size === 0) this._socketLive();
      this._schedulePing();
    };
    ws.onmessage = (message) => {
      if (this._ws !== ws) return;
      let data;
      try { data = JSON.parse(message.data); } catch { return; }
      this._onSocketMessage(data);
    };
    ws.onerror = () => {}; // a close event always follows
    ws.onclose = (event) => this._socketFailed(ws, event);
  }

  _sendSubscribe(key) {
    this._wsPending.add(key);
    const since = this._cursors.get(key);
    this._send({
      type: 'subscribe', ...subOfKey(key),
      ...(since != null ? { since } : {}), ...(this._epoch ? { epoch: this._epoch } : {}),
    });
  }

  _onSocketMessage(msg) {
    this._heard();
    switch (msg.type) {
      case 'subscribed':
        if (this._checkEpoch(msg.epoch)) this._confirmed(msg);
        return;
      case 'resync':
        // The subscription stands, from the head on; what it missed is reloaded instead.
        this._resync(msg);
        this._confirmed(msg);
        return;
      case 'error':
        this._emit('onError', describeError(msg));
        // A refused subscription (not yours, unknown job) must not hold the socket back.
        this._confirmed(msg);
        return;
      case 'pong':
      case 'unsubscribed':
      case 'authenticated':
        return;
      default:
        if (typeof msg.seq === 'number' && typeof msg.jobId === 'string') this._deliver(msg);
    }
  }

  /** The server answered a subscribe; once every one is answered the socket is live. */
  _confirmed(msg) {
    if (!this._wsPending) return;
    let key = msg.userId ? 'user:' + msg.userId : msg.jobId ? 'job:' + msg.jobId : null;
    // Replies come in the order the subscribes went out: one that names nothing is the oldest.
    if (key === null) key = this._wsPending.values().next().value;
    if (!this._wsPending.delete(key)) return;
    if (this._wsPending.size === 0) this._socketLive();
  }

  _socketLive() {
    this._clearWsTimer();
    this._wsAttempt = 0;
    this._stopPolling();
    this._setState(STATE.LIVE);
  }

  _socketFailed(ws, event) {
    if (ws !== null && this._ws !== ws) return;
    this._ws = null;
    this._wsPending = null;
    this._clearPing();
    this._clearWsTimer();
    if (!this._running) return;
    if (event && event.code === CLOSE_POLICY) {
      this._fatal(new JobClientError('UNAUTHORIZED', describeError(event).message, 401));
      return;
    }
    const resume = event && RESUME_CLOSE_CODES.has(event.code);
    if (this._allows('polling')) this._startPolling();
    else this._setState(STATE.OFFLINE, describeError(event));
    const delay = resume && this._wsAttempt === 0
      ? 0 : backoffDelay(this._wsAttempt++, this._backoff(), this._random);
    this._wsTimer = this._setTimeout(() => this._openSocket(), delay);
  }

  _closeSocket(code) {
    const ws = this._ws;
    if (!ws) return;
    this._ws = null;
    this._wsPending = null;
    this._clearPing();
    try { ws.close(code); } catch { /* already closing */ }
  }

  _wsOpen() {
    return this._ws !== null && this._ws.readyState === 1 && this._wsPending !== null;
  }

  _send(message) {
    try { this._ws.send(JSON.stringify(message)); } catch { /* the close handler takes over */ }
  }

  _schedulePing() {
    this._clearPing();
    const ws = this._ws;
    this._pingTimer = this._setTimeout(() => {
      if (this._ws !== ws) return;
      this._send({ type: 'ping' });
      // No word from the server for a whole pong timeout: the peer or the path is dead.
      this._pongTimer = this._setTimeout(() => {
        if (this._ws === ws) {
          this._ws = null;
          try { ws.close(CLOSE_NO_PONG, 'no pong'); } catch { /* ignore */ }
          this._socketFailed(null, { code: 1006, wasClean: false });
        }
      }, this.options.pongTimeoutMs);
    }, this.options.pingIntervalMs);
  }

  _heard() {
    if (this._pongTimer !== null) {
      this._clearTimeout(this._pongTimer);
      this._pongTimer = null;
    }
    if (this._ws) this._schedulePing();
  }

  _clearPing() {
    if (this._pingTimer !== null) this._clearTimeout(this._pingTimer);
    if (this._pongTimer !== null) this._clearTimeout(this._pongTimer);
    this._pingTimer = this._pongTimer = null;
  }

  _clearWsTimer() {
    if (this._wsTimer !== null) this._clearTimeout(this._wsTimer);
    this._wsTimer = null;
  }

  // ---- long-polling ------------------------------------------------------------------------

  _polling() {
    return this._pollingOn === true;
  }

  _startPolling() {
    if (this._pollingOn) return;
    this._pollingOn = true;
    this._pollFailures = 0;
    this._setState(STATE.POLLING);
    for (const key of this._subs) this._startPoll(key);
  }

  _stopPolling() {
    this._pollingOn = false;
    for (const key of [...this._polls.keys()]) this._stopPoll(key);
  }

  _startPoll(key) {
    if (this._polls.has(key)) return;
    const controller = new AbortController();
    this._polls.set(key, controller);
    this._pollLoop(key, controller).finally(() => {
      if (this._polls.get(key) === controller) this._polls.delete(key);
    });
  }

  _stopPoll(key) {
    const controller = this._polls.get(key);
    if (controller) {
      this._polls.delete(key);
      controller.abort();
    }
  }

  async _pollLoop(key, controller) {
    const { signal } = controller;
    const timeout = this.options.pollTimeoutSeconds;
    while (this._running && this._pollingOn && !signal.aborted && this._subs.has(key)) {
      // A hung request (a proxy that never answers) is given up on a little after the timeout.
      const guard = this._setTimeout(() => controller.abort(), (timeout + 10) * 1000);
      try {
        const query = {
          ...subOfKey(key), since: this._cursors.get(key) ?? 0, timeout,
          epoch: this._epoch || undefined,
        };
        const reply = await this._net.request('GET', '/api/events', { query, signal });
        if (signal.aborted) return;
        this._pollFailures = 0;
        if (this._state === STATE.OFFLINE || this._state === STATE.CONNECTING) {
          this._setState(STATE.POLLING);
        }
        const resync = reply.type === 'resync' ? reply : null;
        if (resync || (reply.epoch != null && this._epoch !== null && reply.epoch !== this._epoch)) {
          await this._resync({ epoch: reply.epoch, ...(resync || {}), cursor: reply.cursor });
          continue;
        }
        for (const event of reply.events || []) this._deliver(event);
        if (typeof reply.cursor === 'number' && this._subs.has(key)) {
          this._cursors.set(key, Math.max(this._cursors.get(key) ?? 0, reply.cursor));
          this._save();
        }
      } catch (err) {
        if (signal.aborted) return;
        if (this._fatal(err)) return;
        this._setState(STATE.OFFLINE, describeError(err));
        await this._sleep(backoffDelay(this._pollFailures++, this._backoff(), this._random));
      } finally {
        this._clearTimeout(guard);
      }
    }
  }

  // ---- delivery, dedup, resync -------------------------------------------------------------

  /** Every event from either transport passes here: at most once, and per job in order. */
  _deliver(event) {
    const seq = event.seq;
    let moved = false;
    for (const key of this._subs) {
      if (matches(key, event) && seq > (this._cursors.get(key) ?? -1)) {
        this._cursors.set(key, seq);
        moved = true;
      }
    }
    if (moved) this._save();
    if (seq <= (this._jobSeq.get(event.jobId) ?? 0)) {
      this.stats.duplicates += 1;
      return;
    }
    this._jobSeq.set(event.jobId, seq);
    this.stats.delivered += 1;
    this._emit('onEvent', event);
    const name = JOB_EVENT_HANDLERS[event.type];
    if (name) this._emit(name, event);
  }

  /** A job snapshot from REST: newer than what we delivered? Then it is the job's state. */
  _observeJob(job) {
    if (!job || typeof job.jobId !== 'string') return job;
    const seq = Number(job.lastSeq) || 0;
    if (seq > (this._jobSeq.get(job.jobId) ?? 0)) {
      this._jobSeq.set(job.jobId, seq);
      this._emit('onJobState', job);
    }
    return job;
  }

  async _reloadJob(jobId) {
    try {
      await this.api.getJob(jobId);
    } catch (err) {
      const info = describeError(err);
      if (err instanceof JobClientError && err.status === 404) {
        this.stopTracking(jobId);
        this._emit('onJobGone', { jobId, ...info });
      } else if (!this._fatal(err)) {
        this._emit('onError', info);
      }
    }
  }

  _checkEpoch(epoch) {
    if (epoch === undefined || epoch === null || epoch === this._epoch) return true;
    if (this._epoch === null) {
      this._epoch = epoch;
      this._save();
      return true;
    }
    this._resync({ epoch });
    return false;
  }

  /** The server cannot replay what we missed: start from its head and reload tracked jobs. */
  _resync(info) {
    this.stats.resyncs += 1;
    const head = typeof info.seq === 'number' ? info.seq
      : typeof info.cursor === 'number' ? info.cursor : null;
    if (info.epoch) this._epoch = info.epoch;
    this._jobSeq.clear();
    const restart = (seq) => {
      this._baseline = seq;
      for (const key of this._subs) this._cursors.set(key, seq);
      this._save();
      for (const jobId of this._tracked) this._reloadJob(jobId);
      this._emit('onResync', { epoch: this._epoch, seq });
    };
    if (head !== null) {
      restart(head);
      return Promise.resolve();
    }
    return this._net.request('GET', '/api/meta').then((meta) => {
      this.meta = meta;
      this._epoch = meta.epoch;
      restart(Number(meta.seq) || 0);
      // The socket may still stream from the old cursor: reconnect with the new one.
      if (this._ws) this._closeSocket(CLOSE_RESYNC);
      if (this._running && this._allows('websocket')) this._openSocket();
    }, (err) => this._emit('onError', describeError(err)));
  }

  // ---- connection state and the network's own notifications --------------------------------

  _wentOffline() {
    // The browser says the network is gone: stop talking to the server, keep retrying slowly
    // (the hint may be wrong), and come back at once on 'online'.
    if (!this._running || this._baseline === null) return;
    this._closeSocket(CLOSE_OFFLINE);
    this._stopPolling();
    this._clearWsTimer();
    this._setState(STATE.OFFLINE, {
      code: 'NETWORK', message: 'You are offline. Updates resume when the network returns.',
    });
    this._wsTimer = this._setTimeout(() => this._wake(),
      backoffDelay(this._wsAttempt++, this._backoff(), this._random));
  }

  _wake() {
    // The network is back: try at once instead of waiting out the backoff.
    if (!this._running || this._baseline === null) return; // _boot retries on its own
    if (this._state === STATE.LIVE) return;
    this._wsAttempt = 0;
    this._pollFailures = 0;
    if (this._allows('polling')) this._startPolling();
    if (this._allows('websocket') && !this._ws) this._openSocket();
  }

  _fatal(err) {
    if (err instanceof JobClientError && err.status === 401) {
      this._emit('onError', describeError(err));
      this.disconnect();
      this._setState(STATE.OFFLINE, describeError(err));
      return true;
    }
    return false;
  }

  _setState(state, detail) {
    if (state === this._state) return;
    this._state = state;
    this._emit('onConnectionChange', state, detail || null);
  }

  _emit(name, ...args) {
    for (const handlers of [...this._handlers]) {
      const fn = handlers[name];
      if (typeof fn !== 'function') continue;
      try {
        fn(...args);
      } catch (err) {
        // One broken listener must not stop the others, nor the client.
        if (globalThis.console) console.error('jobclient:', name, 'handler failed', err);
      }
    }
  }

  _allows(transport) {
    return this._transports.includes(transport);
  }

  _backoff() {
    return { baseMs: this.options.backoffBaseMs, capMs: this.options.backoffCapMs };
  }

  _highestSeen() {
    let high = this._baseline ?? 0;
    for (const seq of this._cursors.values()) high = Math.max(high, seq);
    return high;
  }

  _sleep(ms) {
    return new Promise((resolve) => this._setTimeout(resolve, ms));
  }

  // ---- storage -----------------------------------------------------------------------------

  _load() {
    let saved = null;
    try {
      saved = JSON.parse(this._storage.getItem(this.options.storageKey) || 'null');
    } catch {
      saved = null;
    }
    if (!saved || saved.v !== 1) return;
    this._epoch = saved.epoch ?? null;
    for (const [key, seq] of Object.entries(saved.cursors || {})) {
      if (typeof seq === 'number') this._cursors.set(key, seq);
    }
    for (const jobId of saved.tracked || []) {
      if (typeof jobId === 'string' && jobId) {
        this._tracked.add(jobId);
        this._subs.add('job:' + jobId);
      }
    }
  }

  _save() {
    const data = {
      v: 1,
      epoch: this._epoch,
      cursors: Object.fromEntries(this._cursors),
      tracked: [...this._tracked],
    };
    try {
      this._storage.setItem(this.options.storageKey, JSON.stringify(data));
    } catch {
      // Storage full or disabled (private mode): tracking still works until the page closes.
    }
  }
}

function enc(id) {
  return encodeURIComponent(id);
}

function safeLocalStorage() {
  try {
    const storage = globalThis.localStorage;
    if (!storage) return null;
    storage.getItem('jobclient');
    return storage;
  } catch {
    return null;
  }
}

/** A new client; see JobClient for the options. */
export function createJobClient(options) {
  return new JobClient(options);
}
