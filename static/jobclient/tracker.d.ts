// Types of jobclient/tracker.js: tracked jobs and the connection as UI snapshots.

import type { ConnectionState, JobClient, JobClientOptions, JobEvent } from './client.js';
import type { ErrorInfo, Job } from './net.js';

/** A tracked job as a UI shows it. */
export interface TrackedJob {
  readonly jobId: string;
  readonly type: string;
  readonly label: string;
  readonly status: 'queued' | 'active' | 'completed' | 'failed' | 'cancelled';
  readonly stage: string;
  /** The stage's display name from the server (`GET /api/meta` stageNames). */
  readonly stageName: string;
  readonly progress: number;
  readonly message: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly result: Readonly<Record<string, unknown>> | null;
  /** How it failed, in words (describeError). */
  readonly error: ErrorInfo | null;
  readonly seq: number;
}

export interface TrackerState {
  readonly connectionState: ConnectionState;
  readonly isConnected: boolean;
  readonly usingPolling: boolean;
  readonly connectionError: ErrorInfo | null;
  readonly jobs: Readonly<Record<string, TrackedJob>>;
  /** The tracked job that changed last. */
  readonly jobProgress: TrackedJob | null;
}

/** The end of a followed job: its event, or, when the job had ended before trackJob followed
 * it, its snapshot from the API (reported once either way). */
export type JobEnd = JobEvent | Job;

export interface TrackerCallbacks {
  /** The result's noteId when it has one, else the whole result. */
  onJobCompleted?: (noteIdOrResult: unknown, end: JobEnd) => void;
  onJobFailed?: (message: string, end: JobEnd) => void;
  onJobProgress?: (event: JobEvent) => void;
}

export interface TrackerOptions {
  /** Follow every event of this user (optional: tracked jobs are followed anyway). */
  userId?: string | undefined;
  /** An existing client; else one is made with clientOptions. */
  client?: JobClient | undefined;
  clientOptions?: JobClientOptions | undefined;
}

export declare class JobTracker {
  constructor(options?: TrackerOptions);
  readonly client: JobClient;
  callbacks: TrackerCallbacks;
  getState: () => TrackerState;
  subscribe: (listener: (state: TrackerState) => void) => () => void;
  start(): void;
  stop(): void;
  trackJob: (jobId: string) => void;
  stopTracking: (jobId: string) => void;
}

export declare function createJobTracker(options?: TrackerOptions): JobTracker;
