/**
 * client.js: the transports (WebSocket, long-poll fallback) and the public JobClient API.
 *
 * The network is net.js's; what was seen and delivered is cursors.js's. This module decides
 * which transport runs, notices a socket that stopped delivering (ping/pong), and hands every
 * event, whichever transport brought it, to the same de-duplication.
 */

import { Cursors, memoryStorage, safeLocalStorage, subKey, subOfKey } from './cursors.js';
import {
  CLOSE_POLICY, describeError, JobClientError, makeApi, Net, RESUME_CLOSE_CODES,
} from './net.js';

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
  // A socket quiet for pingIntervalMs gets a {"type":"ping"}; no word back within
  // pongTimeoutMs and it is given up on: a stalled socket is noticed 4 s after its last
  // frame (within 5 s, with a second to spare for late timers on a busy page). Any frame counts as a sign
  // of life, so a busy socket sends no pings at all.
  pingIntervalMs: 2000,
  pongTimeoutMs: 2000,
  openTimeoutMs: 10000,
  storageKey: 'jobclient',
});

// Codes this client closes its own socket with (4900-4999: private use, never the server's).
const CLOSE_OPEN_TIMEOUT = 4901;
const CLOSE_NO_PONG = 4902;
const CLOSE_OFFLINE = 4903;
const CLOSE_RESYNC = 4904;
const JOB_EVENT_HANDLERS = Object.freeze({
  'job.queued': 'onJobQueued',
  'job.progress': 'onJobProgress',
  'job.completed': 'onJobCompleted',
  'job.failed': 'onJobFailed',
  'job.retrying': 'onJobRetrying',
  'job.cancelled': 'onJobCancelled',
  'job.removed': 'onJobRemoved',
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

/**
 * A jobserver client. Options (all optional):
 *   baseUrl          server origin; '' means the page's own
 *   token            bearer token; without one the session cookie is used
 *   transports       ['websocket', 'polling'] (default), or one of them alone
 *   backoffBaseMs, backoffCapMs, pollTimeoutSeconds, pingIntervalMs, pongTimeoutMs
 *   storageKey       where tracked jobs and cursors are kept (one per user, say)
 *   WebSocket, fetch, storage, setTimeout, clearTimeout, now, random, location, network
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
    this._now = o.now || (() => Date.now());
    this._random = o.random || Math.random;
    this._network = o.network !== undefined ? o.network
      : (typeof g.addEventListener === 'function' && typeof g.window !== 'undefined' ? g : null);
    this._c = new Cursors(o.storage || safeLocalStorage() || memoryStorage(), o.storageKey);

    this._handlers = new Set();
    this._state = STATE.IDLE;
    this._transports = [...TRANSPORTS];
    this._running = false;
    this._ws = null;
    this._wsPending = null;        // keys sent to the socket and not yet confirmed
    this._wsAttempt = 0;
    this._wsTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._lastHeard = 0;
    this._polls = new Map();       // subscription key -> AbortController of its poll loop
    this._pollingOn = false;
    this._pollFailures = 0;
    this._ready = null;
    this.meta = null;
    this.stats = { duplicates: 0, delivered: 0, resyncs: 0, pings: 0, stalls: 0 };

    this._onOnline = () => this._wake();
    this._onOffline = () => this._wentOffline();
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
    if (!this._c.add(key)) return false;
    if (this._running && this._c.baseline !== null) this._startSub(key);
    return true;
  }

  unsubscribe(sub) {
    const key = subKey(sub);
    if (!this._c.remove(key)) return false;
    this._stopPoll(key);
    if (this._wsOpen()) {
      this._wsPending.delete(key);
      this._send({ type: 'unsubscribe', ...subOfKey(key) });
    }
    return true;
  }

  getSubscriptionCount() {
    return this._c.subs.size;
  }

  subscriptions() {
    return [...this._c.subs].map(subOfKey);
  }

  /** Follow one job across reloads: subscribe to it and load its state now. */
  trackJob(jobId) {
    if (typeof jobId !== 'string' || !jobId) return;
    this._c.track(jobId);
    this.subscribe({ jobId });
    if (this._running && this._c.baseline !== null) this._reloadJob(jobId);
  }

  stopTracking(jobId) {
    if (!this._c.untrack(jobId)) return;
    this.unsubscribe({ jobId });
  }

  trackedJobs() {
    return [...this._c.tracked];
  }

  /** Forget tracked jobs and cursors (signing out). */
  forget() {
    for (const jobId of [...this._c.tracked]) this.stopTracking(jobId);
    this._c.clear();
  }

  /** The REST calls (see net.js makeApi); jobs they return count for de-duplication. */
  get api() {
    if (!this._api) this._api = makeApi(this._net, (job) => this._observeJob(job));
    return this._api;
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
    this._c.meet(this.meta.epoch, Number(this.meta.seq) || 0);
    this._startTransport();
    for (const jobId of this._c.tracked) this._reloadJob(jobId);
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
      for (const key of this._c.subs) this._sendSubscribe(key);
      if (this._wsPending.size === 0) this._socketLive();
      this._lastHeard = this._now();
      this._armPing(ws, this.options.pingIntervalMs);
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
    const since = this._c.since(key);
    const epoch = this._c.epoch;
    this._send({
      type: 'subscribe', ...subOfKey(key),
      ...(since != null ? { since } : {}), ...(epoch ? { epoch } : {}),
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
        // Events, including types this client has no handler for (onEvent still gets them).
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

  // One timer per socket, not one reset per frame: when it fires it pings only if the socket
  // has been quiet for a whole interval, else it waits out the rest of the interval.
  _armPing(ws, ms) {
    this._pingTimer = this._setTimeout(() => this._pingDue(ws), ms);
  }

  _pingDue(ws) {
    this._pingTimer = null;
    if (this._ws !== ws) return;
    const quiet = this._now() - this._lastHeard;
    if (quiet < this.options.pingIntervalMs) {
      this._armPing(ws, this.options.pingIntervalMs - quiet);
      return;
    }
    this.stats.pings += 1;
    this._send({ type: 'ping' });
    this._pongTimer = this._setTimeout(() => this._stalled(ws), this.options.pongTimeoutMs);
  }

  /** No word from the server for a whole pong timeout: the peer or the path is dead. */
  _stalled(ws) {
    this._pongTimer = null;
    if (this._ws !== ws) return;
    this.stats.stalls += 1;
    this._ws = null;
    // The close handshake cannot finish on a stalled path; its close event is ignored.
    try { ws.close(CLOSE_NO_PONG, 'no pong'); } catch { /* ignore */ }
    this._socketFailed(null, { code: 1006, wasClean: false });
  }

  _heard() {
    this._lastHeard = this._now();
    if (this._pongTimer !== null) {
      this._clearTimeout(this._pongTimer);
      this._pongTimer = null;
      if (this._ws) this._armPing(this._ws, this.options.pingIntervalMs);
    }
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
    for (const key of this._c.subs) this._startPoll(key);
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
    while (this._running && this._pollingOn && !signal.aborted && this._c.subs.has(key)) {
      // A hung request (a proxy that never answers) is given up on a little after the timeout.
      const guard = this._setTimeout(() => controller.abort(), (timeout + 10) * 1000);
      try {
        const query = {
          ...subOfKey(key), since: this._c.since(key) ?? 0, timeout,
          epoch: this._c.epoch || undefined,
        };
        const reply = await this._net.request('GET', '/api/events', { query, signal });
        if (signal.aborted) return;
        this._pollFailures = 0;
        if (this._state === STATE.OFFLINE || this._state === STATE.CONNECTING) {
          this._setState(STATE.POLLING);
        }
        const resync = reply.type === 'resync' ? reply : null;
        const epoch = this._c.epoch;
        if (resync || (reply.epoch != null && epoch !== null && reply.epoch !== epoch)) {
          await this._resync({ epoch: reply.epoch, ...(resync || {}), cursor: reply.cursor });
          continue;
        }
        for (const event of reply.events || []) this._deliver(event);
        if (typeof reply.cursor === 'number') this._c.advance(key, reply.cursor);
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

  // ---- delivery, resync --------------------------------------------------------------------

  /** Every event from either transport passes here: at most once, and per job in order. */
  _deliver(event) {
    if (!this._c.accept(event)) {
      this.stats.duplicates += 1;
      return;
    }
    this.stats.delivered += 1;
    this._emit('onEvent', event);
    const name = JOB_EVENT_HANDLERS[event.type];
    if (name) this._emit(name, event);
    // A removed job has no more events: stop following it (its user's stream goes on).
    if (event.type === 'job.removed') this.stopTracking(event.jobId);
  }

  /** A job snapshot from REST: newer than what we delivered? Then it is the job's state. */
  _observeJob(job) {
    if (!job || typeof job.jobId !== 'string') return job;
    if (this._c.acceptSnapshot(job)) this._emit('onJobState', job);
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
    if (epoch === undefined || epoch === null || epoch === this._c.epoch) return true;
    if (this._c.epoch === null) {
      this._c.epoch = epoch;
      this._c.save();
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
    if (info.epoch) this._c.epoch = info.epoch;
    this._c.jobSeq.clear();
    const restart = (seq) => {
      this._c.restart(seq);
      for (const jobId of this._c.tracked) this._reloadJob(jobId);
      this._emit('onResync', { epoch: this._c.epoch, seq });
    };
    if (head !== null) {
      restart(head);
      return Promise.resolve();
    }
    return this._net.request('GET', '/api/meta').then((meta) => {
      this.meta = meta;
      this._c.epoch = meta.epoch;
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
    if (!this._running || this._c.baseline === null) return;
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
    if (!this._running || this._c.baseline === null) return; // _boot retries on its own
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

  _sleep(ms) {
    return new Promise((resolve) => this._setTimeout(resolve, ms));
  }
}

/** A new client; see JobClient for the options. */
export function createJobClient(options) {
  return new JobClient(options);
}
