// Types of jobclient/net.js: the network, the REST calls and error messages.

/** A job as the server sends it (`GET /api/jobs/{id}`, and in lists and replies). */
export interface Job {
  jobId: string;
  type: string;
  jobType: string;
  userId: string;
  label: string;
  payload: Record<string, unknown>;
  status: JobStatus;
  stage: string;
  progress: number;
  message: string;
  metadata: Record<string, unknown>;
  result: Record<string, unknown> | null;
  error: JobError | null;
  attempts: number;
  attempt: number;
  maxAttempts: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  runAt: string;
  lastSeq: number;
  idempotencyKey: string | null;
  removedAt?: string | null;
  /** On a job a batch returned: false when its idempotencyKey named an existing job. */
  created?: boolean;
  [field: string]: unknown;
}

export type JobStatus = 'queued' | 'active' | 'completed' | 'failed' | 'cancelled';

/** A failed job's error: a stable code, a message, whether a retry can help. */
export interface JobError {
  code: string;
  message: string;
  recoverable?: boolean;
  [field: string]: unknown;
}

/** What `describeError` gives for anything that went wrong. */
export interface ErrorInfo {
  code: string;
  message: string;
}

/** An error the client raises: a stable `code`, a human `message`, the HTTP status if any. */
export declare class JobClientError extends Error {
  constructor(code: string, message: string, status?: number);
  readonly name: 'JobClientError';
  code: string;
  status: number;
  /** In a refused batch: the job at fault. */
  index?: number;
}

/** The one place that turns an error, an error body, a job's error or a close into words. */
export declare function describeError(err: unknown): ErrorInfo;

export declare const RESUME_CLOSE_CODES: ReadonlySet<number>;
export declare const CLOSE_POLICY: 1008;

export type Query = Record<string, string | number | boolean | null | undefined>;

export interface RequestInit {
  query?: Query;
  json?: unknown;
  form?: FormData;
  signal?: AbortSignal;
}

export interface NetOptions {
  baseUrl?: string;
  wsPath: string;
  token?: string;
  fetch: typeof fetch;
  WebSocket: typeof WebSocket;
  location?: { origin: string };
}

/** HTTP requests and opening the WebSocket, against one server. */
export declare class Net {
  constructor(options: NetOptions);
  url(path: string, query?: Query): string;
  wsUrl(): string;
  request<T = any>(method: string, path: string, init?: RequestInit): Promise<T>;
  openSocket(): WebSocket;
}

/** A page of `GET /api/jobs`. */
export interface JobPage {
  jobs: Job[];
  [field: string]: unknown;
}

/** `POST /api/jobs/bulk`'s answer: one result per distinct id, in order. */
export interface BulkReply {
  action: string;
  results: Array<{ jobId: string; ok: boolean; job?: Job; error?: { code: string; message: string } }>;
  done: number;
  refused: number;
}

/** A page of `GET /api/jobs/{id}/events`; nextAfter is null when there is no more. */
export interface JobEvents {
  jobId: string;
  events: Array<{ seq: number; type: string; [field: string]: unknown }>;
  limit: number;
  nextAfter: number | null;
}

/** A job to create: its type and payload (see the server's `GET /api/meta` for the types). */
export interface JobSpec {
  type: string;
  payload?: Record<string, unknown>;
  idempotencyKey?: string;
  [field: string]: unknown;
}

/** The server's `GET /api/meta`. */
export interface Meta {
  epoch: string;
  seq: number;
  stageNames: Record<string, string>;
  [field: string]: unknown;
}

/** The REST calls of `client.api`. */
export interface Api {
  request<T = any>(method: string, path: string, init?: RequestInit): Promise<T>;
  url(path: string, query?: Query): string;
  signIn(userId: string, password?: string): Promise<any>;
  signInWithToken(token: string): Promise<any>;
  signInMethods(): Promise<any>;
  refreshSession(): Promise<any>;
  whoAmI(): Promise<{ userId: string; [field: string]: unknown }>;
  signOut(): Promise<any>;
  meta(): Promise<Meta>;
  /** query: limit, offset, status, q (a search on the server). */
  listJobs(query?: Query): Promise<JobPage>;
  getJob(jobId: string): Promise<Job>;
  createJob(spec: JobSpec): Promise<Job>;
  submitMany(specs: Iterable<JobSpec>): Promise<Job[]>;
  /** @deprecated use submitMany. */
  submit_many(specs: Iterable<JobSpec>): Promise<Job[]>;
  uploadPdf(file: Blob, filename?: string): Promise<Job>;
  uploadPdfs(files: Iterable<File>): Promise<Job[]>;
  cancelJob(jobId: string): Promise<Job>;
  retryJob(jobId: string): Promise<Job>;
  removeJob(jobId: string): Promise<Job>;
  removeFinished(statuses?: Iterable<string>): Promise<{ removed: number; statuses: string[] }>;
  bulk(action: 'cancel' | 'retry' | 'remove', ids: Iterable<string>): Promise<BulkReply>;
  jobEvents(jobId: string, options?: { after?: number; limit?: number }): Promise<JobEvents>;
  listNotes(): Promise<any>;
  getNote(noteId: string): Promise<any>;
  markdownUrl(noteId: string): string;
}

export declare function makeApi(net: Net, seen: (job: Job) => Job): Api;
