// Types of jobclient.js, the one import: `import { createJobClient } from '/static/jobclient.js'`.

export {
  backoffDelay, createJobClient, DEFAULTS, JobClient, STATE, TRANSPORTS,
} from './jobclient/client.js';
export type {
  Backoff, ClientStats, ConnectionState, Handlers, JobClientOptions, JobEvent, KnownEventType,
  Transport,
} from './jobclient/client.js';
export { describeError, JobClientError } from './jobclient/net.js';
export type {
  Api, ErrorInfo, Job, JobError, JobPage, JobSpec, JobStatus, Meta, Query, RequestInit,
} from './jobclient/net.js';
export type { StorageLike, Subscription } from './jobclient/cursors.js';
