// Unit tests for static/jobclient.js: node's own test runner, a fake server, a manual clock.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  backoffDelay, createJobClient, describeError, JobClientError, STATE,
} from '../../static/jobclient.js';
import { Clock, clientOptions, makeServer, memoryStorage } from './fakeserver.mjs';

function recorder(client) {
  const seen = { events: [], states: [], jobStates: [], resyncs: [], errors: [] };
  client.on({
    onEvent: (e) => seen.events.push(e),
    onConnectionChange: (state) => seen.states.push(state),
    onJobState: (job) => seen.jobStates.push(job),
    onResync: (info) => seen.resyncs.push(info),
    onError: (err) => seen.errors.push(err),
  });
  return seen;
}

function assertOncePerJobInOrder(events) {
  const seqs = events.map((e) => e.seq);
  assert.equal(new Set(seqs).size, seqs.length, `duplicate delivery in ${seqs}`);
  const last = new Map();
  for (const e of events) {
    assert.ok(e.seq > (last.get(e.jobId) ?? 0), `job ${e.jobId} out of order at ${e.seq}`);
    last.set(e.jobId, e.seq);
  }
}

async function liveClient(server, extra = {}) {
  const client = createJobClient(clientOptions(server, extra));
  const seen = recorder(client);
  client.subscribe({ userId: 'alice' });
  client.connect();
  await server.clock.advance(50);
  return { client, seen };
}

// ---- backoff ---------------------------------------------------------------------------------

test('backoff: delay stays within [ceiling/2, ceiling] and never passes the cap', () => {
  const opts = { baseMs: 500, capMs: 10000 };
  for (let attempt = 0; attempt < 40; attempt += 1) {
    const ceiling = Math.min(10000, 500 * 2 ** attempt);
    for (const r of [0, 0.25, 0.5, 0.999999]) {
      const d = backoffDelay(attempt, opts, () => r);
      assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${attempt}: ${d} not in bounds`);
      assert.ok(d <= 10000 && d >= 250);
    }
  }
});

test('backoff: the floor grows exponentially until the cap', () => {
  const lows = [0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, { baseMs: 100, capMs: 3000 },
    () => 0));
  assert.deepEqual(lows, [50, 100, 200, 400, 800, 1500, 1500]);
});

test('backoff: jitter spreads clients that retry together', () => {
  const delays = new Set();
  for (let i = 0; i < 200; i += 1) delays.add(Math.round(backoffDelay(4, {}, Math.random)));
  assert.ok(delays.size > 50, `only ${delays.size} distinct delays`);
  const huge = backoffDelay(1e6, { baseMs: 500, capMs: 10000 }, () => 1);
  assert.equal(huge, 10000);
});

test('backoff: the client waits longer after each failed reconnect, up to the cap', async () => {
  const server = makeServer();
  server.wsUp = false;
  server.httpUp = true;
  const client = createJobClient(clientOptions(server, { backoffBaseMs: 100, backoffCapMs: 800 }));
  client.connect();
  await server.clock.advance(20000);
  const opens = server.sockets.map((s, i) => i);
  assert.ok(opens.length >= 10, `only ${opens.length} reconnect attempts in 20 s`);
  // with random() = 0.5 each delay is 3/4 of its ceiling: 75, 150, 300, 600, 600, ...
  assert.ok(opens.length <= 40, `${opens.length} attempts: backoff did not grow`);
  client.disconnect();
});

// ---- subscriptions (the seed's test script) --------------------------------------------------

test('subscribe is de-duplicated and counted; unsubscribe removes', () => {
  const client = createJobClient(clientOptions(makeServer()));
  client.subscribe({ userId: 'test-user' });
  assert.equal(client.getSubscriptionCount(), 1);
  client.subscribe({ userId: 'test-user' });
  assert.equal(client.getSubscriptionCount(), 1);
  client.subscribe({ jobId: 'job-123' });
  assert.equal(client.getSubscriptionCount(), 2);
  client.unsubscribe({ userId: 'test-user' });
  assert.equal(client.getSubscriptionCount(), 1);
  assert.throws(() => client.subscribe({}), JobClientError);
});

test('connect goes live over the WebSocket and subscribes once per subscription', async () => {
  const server = makeServer();
  const { client, seen } = await liveClient(server);
  assert.equal(client.isConnected(), true);
  assert.equal(client.usingPolling(), false);
  assert.deepEqual(seen.states, [STATE.CONNECTING, STATE.LIVE]);
  client.subscribe({ userId: 'alice' });
  const subscribes = server.sockets[0].sent.filter((m) => m.type === 'subscribe');
  assert.equal(subscribes.length, 1);
  assert.equal(subscribes[0].since, 0);
  assert.equal(server.pollCalls().length, 0);
  client.disconnect();
});

// ---- dedup by seq ------------------------------------------------------------------------------

test('dedup: an event sent twice, or older than one delivered, is dropped', async () => {
  const server = makeServer();
  server.addJob('j1');
  const { client, seen } = await liveClient(server);
  const progress = [];
  client.on({ onJobProgress: (e) => progress.push(e.seq) });
  server.duplicateSends = true;
  server.publish('j1');
  server.publish('j1');
  await server.clock.advance(10);
  // a stray old event for the same job, e.g. from a late long-poll answer
  server.sockets[0]._push({ ...server.events[0] });
  await server.clock.advance(10);
  assert.deepEqual(seen.events.map((e) => e.seq), [1, 2]);
  assert.deepEqual(progress, [1, 2]);
  assert.equal(client.stats.duplicates, 3);
  client.disconnect();
});

test('dedup: a REST snapshot newer than the events seen suppresses the older events', async () => {
  const server = makeServer();
  server.addJob('j1');
  const { client, seen } = await liveClient(server);
  server.jobs.get('j1').lastSeq = 5;
  await client.api.getJob('j1');
  assert.equal(seen.jobStates.length, 1);
  server.sockets[0]._push({ seq: 4, type: 'job.progress', jobId: 'j1', userId: 'alice' });
  server.sockets[0]._push({ seq: 6, type: 'job.completed', jobId: 'j1', userId: 'alice' });
  await server.clock.advance(10);
  assert.deepEqual(seen.events.map((e) => e.seq), [6]);
  client.disconnect();
});

test('typed handlers get their event types', async () => {
  const server = makeServer();
  server.addJob('j1');
  const { client } = await liveClient(server);
  const got = [];
  client.on({
    onJobQueued: (e) => got.push(['queued', e.seq]),
    onJobProgress: (e) => got.push(['progress', e.seq]),
    onJobCompleted: (e) => got.push(['completed', e.seq, e.result.noteId]),
    onJobFailed: (e) => got.push(['failed', e.seq, e.error.code]),
  });
  client.on({ onJobProgress: () => { throw new Error('a broken listener'); } });
  const original = console.error;
  console.error = () => {};
  try {
    server.publish('j1', 'job.queued');
    server.publish('j1', 'job.progress');
    server.publish('j1', 'job.completed', { result: { noteId: 'n1' } });
    server.addJob('j2');
    server.publish('j2', 'job.failed', { error: { code: 'CORRUPT_PDF', message: 'bad' } });
    await server.clock.advance(10);
  } finally {
    console.error = original;
  }
  assert.deepEqual(got, [['queued', 1], ['progress', 2], ['completed', 3, 'n1'],
    ['failed', 4, 'CORRUPT_PDF']]);
  client.disconnect();
});

// ---- switching transports ----------------------------------------------------------------------

test('WebSocket drops: long-poll from the last seq; back: polling stops; nothing twice', async () => {
  const server = makeServer();
  server.addJob('j1');
  const { client, seen } = await liveClient(server);
  server.publish('j1');
  server.publish('j1');
  await server.clock.advance(10);

  server.wsUp = false;
  server.openSockets()[0].drop();
  await server.clock.advance(10);
  assert.equal(client.usingPolling(), true);
  assert.equal(client.isConnected(), false);
  assert.equal(client.connectionState(), STATE.POLLING);
  const firstPoll = server.pollCalls()[0];
  assert.equal(firstPoll.query.since, '2');
  assert.equal(firstPoll.query.userId, 'alice');

  server.publish('j1');
  server.publish('j1');
  await server.clock.advance(10);
  assert.deepEqual(seen.events.map((e) => e.seq), [1, 2, 3, 4]);

  server.wsUp = true;
  await server.clock.advance(15000); // the reconnect timer fires within the backoff cap
  assert.equal(client.isConnected(), true);
  assert.equal(client.usingPolling(), false);
  assert.equal(server.waiters.size, 0, 'the pending long-poll was not aborted');
  const live = server.openSockets();
  assert.equal(live.length, 1);
  assert.equal(live[0].sent.find((m) => m.type === 'subscribe').since, 4);

  const polls = server.pollCalls().length;
  server.publish('j1', 'job.completed');
  await server.clock.advance(30000);
  assert.equal(server.pollCalls().length, polls, 'still polling after the WebSocket came back');
  assert.deepEqual(seen.events.map((e) => e.seq), [1, 2, 3, 4, 5]);
  assert.deepEqual(seen.states, [STATE.CONNECTING, STATE.LIVE, STATE.POLLING, STATE.LIVE]);
  client.disconnect();
});

test('an event in flight on both transports at the switch is delivered once', async () => {
  const server = makeServer();
  server.addJob('j1');
  const { client, seen } = await liveClient(server);
  server.wsUp = false;
  server.openSockets()[0].drop();
  await server.clock.advance(10);
  server.publish('j1');
  await server.clock.advance(1);
  server.wsUp = true;
  // the socket comes back and replays from its cursor while the poll answer is also arriving
  server.publish('j1');
  await server.clock.advance(15000);
  server.publish('j1');
  await server.clock.advance(10);
  assert.deepEqual(seen.events.map((e) => e.seq), [1, 2, 3]);
  assertOncePerJobInOrder(seen.events);
  client.disconnect();
});

test('random drops and recoveries: every event once, per job in order', async () => {
  let seed = 42;
  const rand = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
  const server = makeServer();
  for (const id of ['a', 'b', 'c']) server.addJob(id);
  const { client, seen } = await liveClient(server, { random: rand, backoffCapMs: 2000 });
  for (let step = 0; step < 400; step += 1) {
    const r = rand();
    if (r < 0.6) server.publish(['a', 'b', 'c'][Math.floor(rand() * 3)]);
    else if (r < 0.7) server.openSockets().forEach((s) => s.drop(rand() < 0.5 ? 1006 : 4000));
    else if (r < 0.75) server.wsUp = !server.wsUp;
    else if (r < 0.78) server.duplicateSends = !server.duplicateSends;
    await server.clock.advance(Math.floor(rand() * 700));
  }
  server.wsUp = true;
  server.httpUp = true;
  await server.clock.advance(30000);
  assertOncePerJobInOrder(seen.events);
  assert.deepEqual(seen.events.map((e) => e.seq), server.events.map((e) => e.seq));
  assert.ok(server.sockets.length > 5, 'the run never dropped the socket');
  assert.ok(server.pollCalls().length > 5, 'the run never polled');
  client.disconnect();
});

test('websocket-only never long-polls; polling-only never opens a socket', async () => {
  const server = makeServer();
  server.addJob('j1');
  const ws = createJobClient(clientOptions(server));
  const seenWs = recorder(ws);
  ws.subscribe({ userId: 'alice' });
  ws.connect({ transports: ['websocket'] });
  await server.clock.advance(50);
  server.wsUp = false;
  server.openSockets()[0].drop();
  await server.clock.advance(5000);
  assert.equal(server.pollCalls().length, 0);
  assert.equal(ws.connectionState(), STATE.OFFLINE);
  assert.ok(seenWs.states.includes(STATE.OFFLINE));
  ws.disconnect();

  const server2 = makeServer();
  server2.addJob('j1');
  const poll = createJobClient(clientOptions(server2));
  const seenPoll = recorder(poll);
  poll.subscribe({ jobId: 'j1' });
  poll.connect({ transports: ['polling'] });
  await server2.clock.advance(10);
  server2.publish('j1');
  await server2.clock.advance(10);
  assert.equal(server2.sockets.length, 0);
  assert.equal(poll.usingPolling(), true);
  assert.equal(poll.isConnected(), false);
  assert.deepEqual(seenPoll.events.map((e) => e.seq), [1]);
  poll.disconnect();
  assert.equal(server2.waiters.size, 0);
});

test('server unreachable: offline, retries with backoff, recovers live', async () => {
  const server = makeServer();
  server.addJob('j1');
  const { client, seen } = await liveClient(server);
  server.wsUp = false;
  server.httpUp = false;
  server.openSockets()[0].drop();
  await server.clock.advance(3000);
  assert.equal(client.connectionState(), STATE.OFFLINE);
  server.publish('j1');
  server.httpUp = true;
  server.wsUp = true;
  await server.clock.advance(15000);
  assert.equal(client.connectionState(), STATE.LIVE);
  assert.deepEqual(seen.events.map((e) => e.seq), [1]);
  client.disconnect();
});

test('the browser going offline and online: offline at once, back without waiting', async () => {
  const server = makeServer();
  server.addJob('j1');
  const network = new EventTarget();
  const { client } = await liveClient(server, { network, backoffCapMs: 60000 });
  server.httpUp = false;
  server.wsUp = false;
  network.dispatchEvent(new Event('offline'));
  await server.clock.advance(10);
  assert.equal(client.connectionState(), STATE.OFFLINE);
  assert.equal(server.openSockets().length, 0);
  server.httpUp = true;
  server.wsUp = true;
  network.dispatchEvent(new Event('online'));
  await server.clock.advance(50);
  assert.equal(client.connectionState(), STATE.LIVE);
  client.disconnect();
});

test('a 401 stops the client and reports that the session ended', async () => {
  const server = makeServer();
  const original = server.fetch;
  const client = createJobClient(clientOptions(server, {
    fetch: async (url, init) => (url.includes('/api/meta')
      ? { ok: false, status: 401, text: async () => '{"error":{"code":"TOKEN_EXPIRED","message":"the token has expired; sign in again"}}' }
      : original(url, init)),
  }));
  const seen = recorder(client);
  client.subscribe({ userId: 'alice' });
  await client.connect();
  await server.clock.advance(60000);
  assert.equal(server.sockets.length, 0);
  assert.deepEqual(seen.errors.map((e) => e.code), ['TOKEN_EXPIRED']);
  assert.equal(client.connectionState(), STATE.OFFLINE);
});

// ---- resync ------------------------------------------------------------------------------------

test('resync: tracked jobs reload from the server and cursors jump to the head', async () => {
  const server = makeServer();
  server.addJob('j1');
  const storage = memoryStorage();
  const first = createJobClient(clientOptions(server, { storage }));
  first.subscribe({ userId: 'alice' });
  first.connect();
  await server.clock.advance(50);
  first.trackJob('j1');
  await server.clock.advance(50);
  server.publish('j1');
  await server.clock.advance(10);
  first.disconnect();

  for (let i = 0; i < 5; i += 1) server.publish('j1');
  server.keptFrom = 5; // seq 2..4 are pruned: the stored cursor (1) is too old to replay
  const second = createJobClient(clientOptions(server, { storage }));
  const seen = recorder(second);
  second.subscribe({ userId: 'alice' });
  second.connect();
  await server.clock.advance(100);
  assert.ok(seen.resyncs.length >= 1, 'no resync');
  assert.equal(seen.jobStates.at(-1).jobId, 'j1');
  assert.equal(seen.jobStates.at(-1).lastSeq, 6);
  assert.ok(server.calls.some((c) => c.path === '/api/jobs/j1' && c.at > 0));
  server.publish('j1', 'job.completed');
  await server.clock.advance(10);
  assert.deepEqual(seen.events.map((e) => e.seq), [7]);
  assert.equal(second.isConnected(), true);
  second.disconnect();
});

test('resync over long-poll when the server answers with another epoch', async () => {
  const server = makeServer();
  server.addJob('j1');
  const client = createJobClient(clientOptions(server));
  const seen = recorder(client);
  client.trackJob('j1');
  client.connect({ transports: ['polling'] });
  await server.clock.advance(10);
  server.epoch = 'epoch-2';
  server.publish('j1');
  await server.clock.advance(10);
  assert.equal(seen.resyncs.length, 1);
  assert.equal(seen.resyncs[0].epoch, 'epoch-2');
  assert.equal(seen.events.length, 0, 'an event from another epoch was delivered as if in order');
  assert.ok(seen.jobStates.some((j) => j.jobId === 'j1' && j.lastSeq === 1));
  server.publish('j1');
  await server.clock.advance(10);
  assert.deepEqual(seen.events.map((e) => e.seq), [2]);
  client.disconnect();
});

// ---- persistence -------------------------------------------------------------------------------

test('tracked jobs and cursors survive a reload', async () => {
  const server = makeServer();
  server.addJob('j1');
  server.addJob('j2');
  const storage = memoryStorage();
  const first = createJobClient(clientOptions(server, { storage }));
  first.connect();
  await server.clock.advance(50);
  first.trackJob('j1');
  first.trackJob('j2');
  first.stopTracking('j2');
  await server.clock.advance(50);
  server.publish('j1');
  server.publish('j1');
  await server.clock.advance(10);
  first.disconnect();
  server.publish('j1');

  const second = createJobClient(clientOptions(server, { storage }));
  const seen = recorder(second);
  assert.deepEqual(second.trackedJobs(), ['j1']);
  assert.equal(second.getSubscriptionCount(), 1);
  second.connect();
  await server.clock.advance(50);
  const subscribe = server.openSockets()[0].sent.find((m) => m.type === 'subscribe');
  assert.deepEqual(subscribe, { type: 'subscribe', jobId: 'j1', since: 2, epoch: 'epoch-1' });
  assert.ok(seen.jobStates.some((j) => j.jobId === 'j1'));
  second.disconnect();
});

test('a tracked job the server no longer knows is dropped', async () => {
  const server = makeServer();
  const client = createJobClient(clientOptions(server));
  const gone = [];
  client.on({ onJobGone: (info) => gone.push(info) });
  client.connect();
  await server.clock.advance(50);
  client.trackJob('missing');
  await server.clock.advance(50);
  assert.deepEqual(client.trackedJobs(), []);
  assert.equal(gone[0].code, 'JOB_NOT_FOUND');
  client.disconnect();
});

// ---- errors into messages ---------------------------------------------------------------------

test('describeError: one message for each kind of failure', () => {
  assert.deepEqual(describeError({ error: { code: 'CORRUPT_PDF', message: 'unreadable' } }),
    { code: 'CORRUPT_PDF', message: 'unreadable' });
  assert.deepEqual(describeError({ code: 'X', message: 'y', recoverable: false }),
    { code: 'X', message: 'y' });
  assert.equal(describeError(new TypeError('Failed to fetch')).code, 'NETWORK');
  assert.equal(describeError({ code: 1008, wasClean: true }).code, 'UNAUTHORIZED');
  assert.equal(describeError({ code: 1006, wasClean: false }).code, 'CONNECTION_CLOSED');
  assert.equal(describeError(new JobClientError('A', 'b', 400)).message, 'b');
  assert.equal(describeError(null).code, 'UNKNOWN');
});

test('HTTP errors carry the server code and message', async () => {
  const server = makeServer();
  const client = createJobClient(clientOptions(server));
  await assert.rejects(client.api.getJob('nope'), (err) => err instanceof JobClientError
    && err.code === 'JOB_NOT_FOUND' && err.status === 404 && err.message === 'no such job');
  await assert.rejects(client.api.request('GET', '/api/unknown'), { code: 'NOT_FOUND' });
  server.httpUp = false;
  await assert.rejects(client.api.meta(), (err) => describeError(err).code === 'NETWORK');
  assert.ok(new Clock());
});

// ---- batch enqueue ---------------------------------------------------------------------------

test('submit_many: one request enqueues the batch; a refused one names the job at fault', async () => {
  const server = makeServer();
  const client = createJobClient(clientOptions(server));
  const jobs = await client.api.submit_many([{ type: 'demo.sleep' }, { type: 'demo.sleep' }]);
  assert.deepEqual(jobs.map((j) => [j.type, j.created]), [['demo.sleep', true], ['demo.sleep', true]]);
  assert.equal(server.calls.filter((c) => c.method === 'POST' && c.path === '/api/jobs').length, 1);
  await assert.rejects(
    client.api.submit_many([{ type: 'demo.sleep' }, { type: 'no.such' }]),
    (err) => err instanceof JobClientError && err.code === 'UNKNOWN_JOB_TYPE' && err.index === 1,
  );
  assert.equal(server.jobs.size, 2); // nothing of the refused batch
});

test('submitMany is submit_many; removal, bulk and a job\'s events are named calls', async () => {
  const server = makeServer();
  const client = createJobClient(clientOptions(server));
  const jobs = await client.api.submitMany([{ type: 'demo.sleep' }]);
  assert.deepEqual(jobs.map((j) => j.created), [true]);
  assert.equal((await client.api.removeJob(jobs[0].jobId)).jobId, jobs[0].jobId);
  const quiet = (promise) => promise.catch(() => null); // the fake answers only the shape asked
  await quiet(client.api.removeFinished(['failed', 'cancelled']));
  await quiet(client.api.removeFinished());
  await quiet(client.api.bulk('cancel', ['a', 'b']));
  await quiet(client.api.jobEvents('a b', { after: 5, limit: 10 }));
  await quiet(client.api.listJobs({ q: 'report', status: 'failed' }));
  const calls = server.calls.filter((c) => c.path !== '/api/meta').slice(1)
    .map((c) => [c.method, c.path, c.query]);
  assert.deepEqual(calls, [
    ['DELETE', `/api/jobs/${jobs[0].jobId}`, {}],
    ['DELETE', '/api/jobs', { status: 'failed,cancelled' }],
    ['DELETE', '/api/jobs', {}],
    ['POST', '/api/jobs/bulk', {}],
    ['GET', '/api/jobs/a%20b/events', { after: '5', limit: '10' }],
    ['GET', '/api/jobs', { q: 'report', status: 'failed' }],
  ]);
});

// ---- a stalled socket (open, but nothing gets through) ----------------------------------------

test('a stalled socket is given up on within 5 s: polling, nothing lost, then live again', async () => {
  const server = makeServer();
  server.addJob('j1');
  const { client, seen } = await liveClient(server);
  const changes = [];
  client.on({ onConnectionChange: (state) => changes.push([state, server.clock.now]) });
  server.publish('j1');
  await server.clock.advance(10);
  const stalledAt = server.clock.now;
  const stalled = server.openSockets()[0];
  stalled.stall();
  server.publish('j1'); // sent into the stalled path: lost there
  server.publish('j1');
  await server.clock.advance(4000);
  const polling = changes.find(([state]) => state === STATE.POLLING);
  assert.ok(polling, `no switch to polling: ${JSON.stringify(changes)}`);
  assert.ok(polling[1] - stalledAt <= 4000, `polling after ${polling[1] - stalledAt} ms`);
  assert.equal(client.stats.stalls, 1);
  assert.equal(stalled.closedWith, 4902);
  // The long-poll picked up the events the stalled socket swallowed.
  assert.deepEqual(seen.events.map((e) => e.seq), [1, 2, 3]);
  // ...and the socket is tried again (a new connection) and goes live from the last seq.
  await server.clock.advance(2000);
  assert.equal(client.connectionState(), STATE.LIVE);
  assert.equal(server.openSockets().at(-1).sent.find((m) => m.type === 'subscribe').since, 3);
  server.publish('j1', 'job.completed');
  await server.clock.advance(10);
  assert.deepEqual(seen.events.map((e) => e.seq), [1, 2, 3, 4]);
  assertOncePerJobInOrder(seen.events);
  client.disconnect();
});

test('ping only a quiet socket: a busy one sends none, an idle one one per 2 s', async () => {
  const server = makeServer();
  server.addJob('j1');
  const { client } = await liveClient(server);
  const socket = server.openSockets()[0];
  const pings = () => socket.sent.filter((m) => m.type === 'ping').length;
  for (let i = 0; i < 20; i += 1) { // an event every 500 ms for 10 s
    server.publish('j1');
    await server.clock.advance(500);
  }
  assert.equal(pings(), 0, 'a socket that delivers events was pinged');
  await server.clock.advance(10000);
  assert.ok(pings() >= 4 && pings() <= 5, `${pings()} pings in 10 quiet seconds`);
  assert.equal(client.isConnected(), true, 'an answered ping must keep the socket');
  assert.equal(client.stats.stalls, 0);
  client.disconnect();
});

// ---- removed jobs and event types the client does not know ------------------------------------

test('job.removed stops tracking the job; an unknown event type is delivered, not fatal', async () => {
  const server = makeServer();
  server.addJob('j1');
  server.addJob('j2');
  const { client, seen } = await liveClient(server);
  const removed = [];
  client.on({ onJobRemoved: (e) => removed.push(e.jobId) });
  client.trackJob('j1');
  await server.clock.advance(10);
  assert.deepEqual(client.trackedJobs(), ['j1']);
  server.publish('j2', 'job.someday', { note: 'a type from a newer server' });
  server.publish('j1', 'job.removed');
  await server.clock.advance(10);
  assert.deepEqual(removed, ['j1']);
  assert.deepEqual(client.trackedJobs(), []);
  assert.equal(client.getSubscriptionCount(), 1); // the user's stream goes on
  assert.deepEqual(seen.events.map((e) => e.type), ['job.someday', 'job.removed']);
  server.publish('j2', 'job.completed');
  await server.clock.advance(10);
  assert.equal(seen.events.at(-1).type, 'job.completed');
  assert.equal(client.isConnected(), true);
  client.disconnect();
});

// ---- the modules ------------------------------------------------------------------------------

test('one import gives the public API; each module loads on its own', async () => {
  const api = await import('../../static/jobclient.js');
  assert.deepEqual(Object.keys(api).sort(), ['DEFAULTS', 'JobClient', 'JobClientError', 'STATE',
    'TRANSPORTS', 'backoffDelay', 'createJobClient', 'describeError']);
  const net = await import('../../static/jobclient/net.js');
  const cursors = await import('../../static/jobclient/cursors.js');
  const client = await import('../../static/jobclient/client.js');
  assert.equal(api.JobClient, client.JobClient);
  assert.equal(api.describeError, net.describeError);
  assert.ok(api.DEFAULTS.pingIntervalMs + api.DEFAULTS.pongTimeoutMs <= 4000);
  const c = new cursors.Cursors(cursors.memoryStorage(), 'k');
  c.add('user:u');
  assert.equal(c.accept({ seq: 3, jobId: 'a', userId: 'u' }), true);
  assert.equal(c.accept({ seq: 3, jobId: 'a', userId: 'u' }), false);
  assert.equal(c.since('user:u'), 3);
});

test('every module export is declared in its .d.ts, and nothing more', async () => {
  const { readFile } = await import('node:fs/promises');
  for (const name of ['jobclient/net', 'jobclient/cursors', 'jobclient/client',
    'jobclient/tracker']) {
    const url = new URL(`../../static/${name}.js`, import.meta.url);
    const exported = Object.keys(await import(url)).sort();
    const dts = await readFile(new URL(`../../static/${name}.d.ts`, import.meta.url), 'utf8');
    const declared = [...dts.matchAll(/^export declare (?:function|class|const) (\w+)/gm)]
      .map((m) => m[1]).sort();
    assert.deepEqual(declared, exported, name);
  }
  const top = await readFile(new URL('../../static/jobclient.d.ts', import.meta.url), 'utf8');
  const values = [...top.matchAll(/^export \{([^}]*)\}/gm)].flatMap((m) => m[1].split(','))
    .map((s) => s.trim()).filter(Boolean).sort();
  assert.deepEqual(values, Object.keys(await import('../../static/jobclient.js')).sort());
});

// ---- the tracker under the React hook and the Vue composable ----------------------------------

test('tracker: snapshots of tracked jobs and the connection; callbacks; removal', async () => {
  const { createJobTracker } = await import('../../static/jobclient/tracker.js');
  const server = makeServer();
  server.addJob('j1');
  server.addJob('j2');
  const client = createJobClient(clientOptions(server));
  const tracker = createJobTracker({ client, userId: 'alice' });
  const done = [];
  const failed = [];
  tracker.callbacks = {
    onJobCompleted: (noteId) => done.push(noteId),
    onJobFailed: (message) => failed.push(message),
  };
  const snapshots = [];
  tracker.subscribe((state) => snapshots.push(state));
  tracker.start();
  await server.clock.advance(50);
  assert.equal(tracker.getState().connectionState, STATE.LIVE);
  assert.equal(tracker.getState().isConnected, true);
  tracker.trackJob('j1');
  tracker.trackJob('j2');
  await server.clock.advance(10);
  const before = tracker.getState();
  assert.equal(tracker.getState(), before, 'the same snapshot while nothing changes');
  server.publish('j1', 'job.progress', { status: 'active', stage: 'processing', progress: 40 });
  server.publish('j1', 'job.completed', { status: 'completed', stage: 'completed', progress: 100,
    result: { noteId: 'n1' } });
  server.publish('j2', 'job.failed', { status: 'failed', stage: 'failed',
    error: { code: 'CORRUPT_PDF', message: 'unreadable' } });
  await server.clock.advance(10);
  const state = tracker.getState();
  assert.notEqual(state, before);
  assert.equal(state.jobs.j1.status, 'completed');
  assert.equal(state.jobs.j1.progress, 100);
  assert.deepEqual(state.jobs.j2.error, { code: 'CORRUPT_PDF', message: 'unreadable' });
  assert.equal(state.jobProgress.jobId, 'j2');
  assert.deepEqual(done, ['n1']);
  assert.deepEqual(failed, ['unreadable']);
  assert.ok(Object.isFrozen(state) && Object.isFrozen(state.jobs));
  server.publish('j1', 'job.removed', { status: 'completed' });
  await server.clock.advance(10);
  assert.deepEqual(Object.keys(tracker.getState().jobs), ['j2']);
  tracker.stopTracking('j2');
  assert.deepEqual(tracker.getState().jobs, {});
  assert.deepEqual(client.trackedJobs(), []);
  tracker.stop();
  assert.equal(tracker.getState().connectionState, STATE.IDLE);
  assert.ok(snapshots.length >= 6);
});

test('tracker: a job that ended before trackJob followed it is reported once', async () => {
  const { createJobTracker } = await import('../../static/jobclient/tracker.js');
  const server = makeServer();
  const client = createJobClient(clientOptions(server));
  const tracker = createJobTracker({ client });
  const ends = [];
  tracker.callbacks = {
    onJobCompleted: (result, job) => ends.push(`${job.jobId}:ok`),
    onJobFailed: (message, job) => ends.push(`${job.jobId}:${message}`),
  };
  tracker.start();
  await server.clock.advance(50);
  assert.equal(tracker.getState().connectionState, STATE.LIVE);
  // j3 failed with no event this client could see; j4 completed, and its event is kept too.
  server.addJob('j3');
  server.head += 2; // its events are not kept (as if pruned): only its snapshot tells
  Object.assign(server.jobs.get('j3'), { status: 'failed', stage: 'failed', lastSeq: 2,
    error: { code: 'DEMO_FAILURE', message: 'It broke' } });
  server.addJob('j4');
  server.publish('j4', 'job.completed', { status: 'completed', stage: 'completed',
    progress: 100, result: { noteId: 'n4' } });
  Object.assign(server.jobs.get('j4'), { status: 'completed', stage: 'completed',
    progress: 100, result: { noteId: 'n4' } });
  await server.clock.advance(10);
  assert.deepEqual(ends, []);
  tracker.trackJob('j3');
  tracker.trackJob('j4');
  await server.clock.advance(50);
  assert.deepEqual(ends.sort(), ['j3:It broke', 'j4:ok']);
  assert.equal(tracker.getState().jobs.j3.status, 'failed');
  // A retry that fails again is a new end, reported from its event.
  server.publish('j3', 'job.retrying', { status: 'queued', stage: 'queued' });
  server.publish('j3', 'job.failed', { status: 'failed', stage: 'failed',
    error: { code: 'DEMO_FAILURE', message: 'Again' } });
  await server.clock.advance(10);
  assert.deepEqual(ends.sort(), ['j3:Again', 'j3:It broke', 'j4:ok']);
  tracker.stop();
});
