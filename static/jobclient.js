/**
 * jobclient.js: the jobserver browser client, dependency-free ES modules, no build step.
 *
 * Follows jobs live over the WebSocket at /ws and falls back to long-polling /api/events while
 * the socket is down (or stalled: a socket quiet for 2 s is pinged, and one that does not
 * answer within 2 s is given up on, so a stall is noticed within 5 s). Every event carries a
 * global `seq`; the client delivers each event once and, per job, in order, whichever
 * transport brought it. Tracked jobs and the resume cursors live in storage (localStorage in
 * a browser), so a reloaded page resumes.
 *
 *   import { createJobClient } from '/static/jobclient.js';
 *   const client = createJobClient();
 *   client.on({ onJobProgress: (e) => ..., onConnectionChange: (state) => ... });
 *   await client.connect();              // or connect({ transports: ['polling'] })
 *   client.subscribe({ userId: 'alice' });
 *
 * This file is the one import; the work is done by three modules, one job each:
 *   jobclient/net.js      the network (HTTP, opening the socket, REST calls) and error messages
 *   jobclient/cursors.js  subscriptions, cursors, per-job de-duplication, storage
 *   jobclient/client.js   the transports (WebSocket, long-poll) and the JobClient API
 * Everything the client touches outside itself (WebSocket, fetch, storage, timers, the clock,
 * randomness, online/offline notifications) can be injected, which is how tests/js/ runs it.
 */

export {
  backoffDelay, createJobClient, DEFAULTS, JobClient, STATE, TRANSPORTS,
} from './jobclient/client.js';
export { describeError, JobClientError } from './jobclient/net.js';
