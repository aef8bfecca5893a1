// Types of jobclient/cursors.js: subscriptions, cursors, de-duplication, storage.

/** Where tracked jobs and cursors are kept: localStorage, or anything with its three calls. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** A stream to follow: all events of a user, or of one job. */
export type Subscription = { userId: string; jobId?: undefined } | { jobId: string; userId?: undefined };

/** Any event: what the cursors need of it. */
export interface SeqEvent {
  seq: number;
  jobId: string;
  userId: string;
}

export declare function memoryStorage(): StorageLike;
export declare function safeLocalStorage(): StorageLike | null;
export declare function subKey(sub: Subscription): string;
export declare function subOfKey(key: string): Subscription;

/** Subscriptions, tracked jobs, cursors and per-job seqs, saved under one storage key. */
export declare class Cursors {
  constructor(storage: StorageLike, storageKey: string);
  subs: Set<string>;
  tracked: Set<string>;
  cursors: Map<string, number>;
  jobSeq: Map<string, number>;
  epoch: string | null;
  baseline: number | null;
  add(key: string): boolean;
  remove(key: string): boolean;
  since(key: string): number | undefined;
  advance(key: string, cursor: number): void;
  meet(epoch: string, head: number): void;
  restart(head: number): void;
  accept(event: SeqEvent): boolean;
  acceptSnapshot(job: { jobId: string; lastSeq?: number }): boolean;
  track(jobId: string): void;
  untrack(jobId: string): boolean;
  clear(): void;
  highest(): number;
  load(): void;
  save(): void;
}
