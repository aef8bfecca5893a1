// Types of jobclient/client.js: the transports and the JobClient API.

import type { StorageLike, Subscription } from './cursors.js';
import type { Api, ErrorInfo, Job, JobError, JobStatus, Meta } from './net.js';

export type Transport = 'websocket' | 'polling';
export declare const TRANSPORTS: readonly Transport[];

export type ConnectionState = 'idle' | 'connecting' | 'live' | 'polling' | 'offline';
export declare const STATE: Readonly<{
  IDLE: 'idle';
  CONNECTING: 'connecting';
  LIVE: 'live';
  POLLING: 'polling';
  OFFLINE: 'offline';
}>;

/** The event types this client knows; a newer server may send others (they reach onEvent). */
export type KnownEventType =
  | 'job.queued' | 'job.progress' | 'job.completed' | 'job.failed' | 'job.retrying'
  | 'job.cancelled' | 'job.removed';

/** One job event, as every transport delivers it: the job's state after the change. */
export interface JobEvent<T extends string = KnownEventType | (string & {})> {
  seq: number;
  type: T;
  jobId: string;
  jobType: string;
  userId: string;
  label: string;
  status: JobStatus;
  stage: string;
  progress: number;
  message: string;
  metadata: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: JobError;
  attempt: number;
  attempts: number;
  maxAttempts: number;
  timestamp: string;
  [field: string]: unknown;
}

export interface Handlers {
  onEvent?(event: JobEvent): void;
  onJobQueued?(event: JobEvent<'job.queued'>): void;
  onJobProgress?(event: JobEvent<'job.progress'>): void;
  onJobCompleted?(event: JobEvent<'job.completed'> & { result: Record<string, unknown> }): void;
  onJobFailed?(event: JobEvent<'job.failed'> & { error: JobError }): void;
  onJobRetrying?(event: JobEvent<'job.retrying'>): void;
  onJobCancelled?(event: JobEvent<'job.cancelled'>): void;
  /** The job was removed by its owner; the client stops tracking it. */
  onJobRemoved?(event: JobEvent<'job.removed'>): void;
  /** A job snapshot from the REST API, newer than the events delivered for it. */
  onJobState?(job: Job): void;
  /** A tracked job the server no longer knows (it stops being tracked). */
  onJobGone?(info: ErrorInfo & { jobId: string }): void;
  onConnectionChange?(state: ConnectionState, detail: ErrorInfo | null): void;
  /** The server could not replay what was missed: reload your lists. */
  onResync?(info: { epoch: string | null; seq: number }): void;
  onError?(info: ErrorInfo): void;
}

export interface Backoff {
  baseMs?: number;
  capMs?: number;
}

export interface JobClientOptions {
  /** The server's origin; '' (the default) means the page's own. */
  baseUrl?: string;
  wsPath?: string;
  /** A bearer token; without one the session cookie is used. */
  token?: string;
  transports?: readonly Transport[];
  backoffBaseMs?: number;
  backoffCapMs?: number;
  pollTimeoutSeconds?: number;
  /** A socket quiet this long gets a ping (2000). */
  pingIntervalMs?: number;
  /** A ping unanswered this long gives the socket up for polling (2000). */
  pongTimeoutMs?: number;
  openTimeoutMs?: number;
  /** Where tracked jobs and cursors are kept (one key per user, say). */
  storageKey?: string;
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
  storage?: StorageLike;
  setTimeout?: (fn: () => void, ms?: number) => unknown;
  clearTimeout?: (id: any) => void;
  now?: () => number;
  random?: () => number;
  location?: { origin: string };
  /** Where 'online' / 'offline' come from (the window); null: nowhere. */
  network?: EventTarget | null;
}

export declare const DEFAULTS: Readonly<Required<Pick<JobClientOptions,
  'baseUrl' | 'wsPath' | 'transports' | 'backoffBaseMs' | 'backoffCapMs' | 'pollTimeoutSeconds'
  | 'pingIntervalMs' | 'pongTimeoutMs' | 'openTimeoutMs' | 'storageKey'>>>;

export declare function backoffDelay(attempt: number, backoff?: Backoff,
  random?: () => number): number;

export interface ClientStats {
  duplicates: number;
  delivered: number;
  resyncs: number;
  pings: number;
  stalls: number;
}

/** A jobserver client: live events over WebSocket, long-poll when it is down or stalled. */
export declare class JobClient {
  constructor(options?: JobClientOptions);
  readonly options: Readonly<JobClientOptions & typeof DEFAULTS>;
  /** The server's `GET /api/meta` once connected. */
  meta: Meta | null;
  readonly stats: ClientStats;
  /** The REST calls; jobs they return count for de-duplication. */
  readonly api: Api;
  /** Register callbacks; returns a function that removes them. */
  on(handlers: Handlers): () => void;
  /** Start (idempotent); resolves once the server's meta is loaded. */
  connect(options?: { transports?: readonly Transport[] }): Promise<Meta | null>;
  disconnect(): void;
  isConnected(): boolean;
  usingPolling(): boolean;
  connectionState(): ConnectionState;
  subscribe(sub: Subscription): boolean;
  unsubscribe(sub: Subscription): boolean;
  getSubscriptionCount(): number;
  subscriptions(): Subscription[];
  trackJob(jobId: string): void;
  stopTracking(jobId: string): void;
  trackedJobs(): string[];
  /** Forget tracked jobs and cursors (signing out). */
  forget(): void;
}

export declare function createJobClient(options?: JobClientOptions): JobClient;
