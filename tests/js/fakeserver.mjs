// A fake jobserver for jobclient.js under node: a manual clock, a WebSocket class and a fetch
// that speak the server's protocol (subscribe/subscribed/replay, long-poll /api/events, meta,
// jobs), with switches to take the WebSocket or all HTTP down.

export async function flush() {
  for (let i = 0; i < 3; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

export class Clock {
  constructor() {
    this.now = 0;
    this.nextId = 1;
    this.timers = new Map();
    this.setTimeout = (fn, ms = 0) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.now + Math.max(0, ms), fn });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
  }

  /** Advance time by `ms`, running due timers in order and letting promises settle between. */
  async advance(ms) {
    const end = this.now + ms;
    await flush();
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next[1].at)) next = [id, timer];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.now = Math.max(this.now, next[1].at);
      next[1].fn();
      await flush();
    }
    this.now = end;
    await flush();
  }
}

export function memoryStorage() {
  const items = new Map();
  return {
    items,
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => { items.set(key, String(value)); },
    removeItem: (key) => { items.delete(key); },
  };
}

function abortError() {
  const err = new Error('aborted');
  err.name = 'AbortError';
  return err;
}

function matches(sub, event) {
  return (sub.userId && sub.userId === event.userId) || (sub.jobId && sub.jobId === event.jobId);
}

export function makeServer({ epoch = 'epoch-1', clock = new Clock() } = {}) {
  const server = {
    clock,
    epoch,
    head: 0,
    keptFrom: 1, // events below this seq are pruned: a since older than it gets resync
    events: [],
    jobs: new Map(),
    sockets: [],
    wsUp: true,
    httpUp: true,
    calls: [],
    waiters: new Set(),
    duplicateSends: false, // send every live event twice on each socket
  };

  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.subs = [];
      this.sent = [];
      this.closedWith = null;
      server.sockets.push(this);
      clock.setTimeout(() => {
        if (this.readyState !== 0) return;
        if (!server.wsUp) { this._close(1006); return; }
        this.readyState = 1;
        if (this.onopen) this.onopen({});
      }, 5);
    }

    send(text) {
      if (this.readyState !== 1) throw new Error('not open');
      const msg = JSON.parse(text);
      this.sent.push(msg);
      if (this.stalled) return; // lost on the way
      const sub = msg.userId ? { userId: msg.userId } : { jobId: msg.jobId };
      if (msg.type === 'subscribe') {
        const stale = (msg.epoch != null && msg.epoch !== server.epoch)
          || (msg.since != null && msg.since < server.keptFrom - 1);
        if (stale) {
          // as the real server: resync (state must be reloaded), then subscribed from the head
          this._push({ type: 'resync', ...sub, reason: 'pruned', seq: server.head,
            epoch: server.epoch });
          this._push({ type: 'subscribed', ...sub, seq: server.head, epoch: server.epoch });
        } else {
          this._push({ type: 'subscribed', ...sub, seq: server.head, epoch: server.epoch });
          if (msg.since != null) {
            for (const event of server.events) {
              if (event.seq > msg.since && matches(sub, event)) this._push(event);
            }
          }
        }
        if (!this.subs.some((s) => s.userId === sub.userId && s.jobId === sub.jobId)) {
          this.subs.push(sub);
        }
      } else if (msg.type === 'unsubscribe') {
        this.subs = this.subs.filter((s) => !(s.userId === sub.userId && s.jobId === sub.jobId));
      } else if (msg.type === 'ping') {
        this._push({ type: 'pong' });
      }
    }

    close(code = 1000) {
      this.closedWith = code;
      this._close(code);
    }

    /** The path stalls: the socket stays open, but no frame gets through either way. */
    stall() {
      this.stalled = true;
    }

    /** The server (or the path to it) drops this connection. */
    drop(code = 1006) {
      this._close(code);
    }

    _close(code) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      queueMicrotask(() => { if (this.onclose) this.onclose({ code, wasClean: code !== 1006 }); });
    }

    _push(obj) {
      const data = JSON.stringify(obj);
      if (this.stalled) return;
      queueMicrotask(() => {
        if (this.readyState === 1 && this.onmessage) this.onmessage({ data });
      });
    }
  }

  function reply(status, body) {
    return { ok: status < 400, status, text: async () => JSON.stringify(body) };
  }

  function eventsFor(sub, since) {
    return server.events.filter((event) => event.seq > since && matches(sub, event));
  }

  async function fetch(url, init = {}) {
    const method = init.method || 'GET';
    const parsed = new URL(url);
    server.calls.push({ method, path: parsed.pathname, query: Object.fromEntries(parsed.searchParams),
      at: clock.now });
    await Promise.resolve();
    if (init.signal && init.signal.aborted) throw abortError();
    if (!server.httpUp) throw new TypeError('fetch failed');
    const path = parsed.pathname;
    if (path === '/api/meta') return reply(200, { epoch: server.epoch, seq: server.head });
    if (path === '/api/jobs' && method === 'POST') {
      // A batch ({"jobs": [...]}) of known types, all or nothing, as the server does it.
      const specs = JSON.parse(init.body).jobs;
      const bad = specs.findIndex((spec) => spec.type !== 'demo.sleep');
      if (bad >= 0) {
        return reply(400, { error: { code: 'UNKNOWN_JOB_TYPE', index: bad,
          message: `jobs[${bad}]: unknown job type '${specs[bad].type}'` } });
      }
      const made = specs.map((spec) => {
        const jobId = 'b' + (server.jobs.size + 1);
        const job = { jobId, userId: 'alice', type: spec.type, status: 'queued', stage: 'queued',
          progress: 0, lastSeq: 0 };
        server.jobs.set(jobId, job);
        return { ...job, created: true };
      });
      return reply(202, { jobs: made });
    }
    const job = path.match(/^\/api\/jobs\/([^/]+)$/);
    if (job) {
      const found = server.jobs.get(decodeURIComponent(job[1]));
      return found ? reply(200, { ...found })
        : reply(404, { error: { code: 'JOB_NOT_FOUND', message: 'no such job' } });
    }
    if (path === '/api/events') {
      const q = parsed.searchParams;
      const sub = q.get('userId') ? { userId: q.get('userId') } : { jobId: q.get('jobId') };
      const since = Number(q.get('since') || 0);
      const epoch = q.get('epoch');
      if (since < server.keptFrom - 1 || (epoch && epoch !== server.epoch)) {
        return reply(200, { type: 'resync', reason: 'epoch', events: [], cursor: server.head,
          epoch: server.epoch });
      }
      const ready = eventsFor(sub, since);
      if (ready.length) return reply(200, { events: ready, cursor: server.head, epoch: server.epoch });
      return new Promise((resolve, reject) => {
        const waiter = {
          sub,
          since,
          wake: () => {
            server.waiters.delete(waiter);
            clock.clearTimeout(timer);
            resolve(reply(200, { events: eventsFor(sub, since), cursor: server.head,
              epoch: server.epoch }));
          },
        };
        const timer = clock.setTimeout(waiter.wake, Number(q.get('timeout') || 25) * 1000);
        server.waiters.add(waiter);
        if (init.signal) {
          init.signal.addEventListener('abort', () => {
            server.waiters.delete(waiter);
            clock.clearTimeout(timer);
            reject(abortError());
          });
        }
      });
    }
    return reply(404, { error: { code: 'NOT_FOUND', message: 'no route ' + path } });
  }

  server.WebSocket = FakeWebSocket;
  server.fetch = fetch;

  server.addJob = (jobId, userId = 'alice') => {
    server.jobs.set(jobId, { jobId, userId, status: 'queued', stage: 'queued', progress: 0,
      lastSeq: 0 });
  };

  /** Persist and publish one event, as the real server does. */
  server.publish = (jobId, type = 'job.progress', extra = {}) => {
    const job = server.jobs.get(jobId);
    const seq = ++server.head;
    const event = { seq, type, jobId, userId: job ? job.userId : 'alice', ...extra };
    server.events.push(event);
    if (job) job.lastSeq = seq;
    for (const socket of server.sockets) {
      if (socket.readyState === 1 && socket.subs.some((sub) => matches(sub, event))) {
        socket._push(event);
        if (server.duplicateSends) socket._push(event);
      }
    }
    for (const waiter of [...server.waiters]) {
      if (matches(waiter.sub, event)) waiter.wake();
    }
    return event;
  };

  server.openSockets = () => server.sockets.filter((s) => s.readyState === 1);
  server.pollCalls = () => server.calls.filter((c) => c.path === '/api/events');
  return server;
}

export function clientOptions(server, extra = {}) {
  return {
    baseUrl: 'http://jobserver.test',
    WebSocket: server.WebSocket,
    fetch: server.fetch,
    storage: memoryStorage(),
    setTimeout: server.clock.setTimeout,
    clearTimeout: server.clock.clearTimeout,
    now: () => server.clock.now,
    random: () => 0.5,
    network: null,
    ...extra,
  };
}
