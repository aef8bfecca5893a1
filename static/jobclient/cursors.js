/**
 * cursors.js: what the client follows and how far it got. Subscriptions, tracked jobs, one
 * resume cursor per subscription, the last seq delivered per job (de-duplication and order),
 * the store's epoch, all kept in storage (localStorage in a browser) so a reload resumes.
 */

import { JobClientError } from './net.js';

/** A storage that lives as long as the page (when localStorage is missing or refused). */
export function memoryStorage() {
  const items = new Map();
  return {
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => { items.set(key, String(value)); },
    removeItem: (key) => { items.delete(key); },
  };
}

/** localStorage if this page may use it, else null. */
export function safeLocalStorage() {
  try {
    const storage = globalThis.localStorage;
    if (!storage) return null;
    storage.getItem('jobclient');
    return storage;
  } catch {
    return null;
  }
}

/** A subscription's key: 'user:<id>' or 'job:<id>'. */
export function subKey(sub) {
  if (sub && typeof sub.userId === 'string' && sub.userId) return 'user:' + sub.userId;
  if (sub && typeof sub.jobId === 'string' && sub.jobId) return 'job:' + sub.jobId;
  throw new JobClientError('BAD_SUBSCRIPTION', 'subscribe to {userId} or {jobId}');
}

/** The subscription ({userId} or {jobId}) a key names. */
export function subOfKey(key) {
  const at = key.indexOf(':');
  const kind = key.slice(0, at);
  const id = key.slice(at + 1);
  return kind === 'user' ? { userId: id } : { jobId: id };
}

function matches(key, event) {
  return key === 'user:' + event.userId || key === 'job:' + event.jobId;
}

/**
 * Subscriptions, tracked jobs, cursors and per-job seqs, saved under one storage key.
 *
 * `accept(event)` is the de-duplication: an event is new only if its seq is above the last
 * one delivered for its job, whichever transport brought it.
 */
export class Cursors {
  constructor(storage, storageKey) {
    this.storage = storage;
    this.storageKey = storageKey;
    this.subs = new Set();        // subscription keys: 'user:<id>' | 'job:<id>'
    this.tracked = new Set();     // job ids
    this.cursors = new Map();     // subscription key -> last seq seen on it
    this.jobSeq = new Map();      // job id -> last seq delivered (dedup and order)
    this.epoch = null;
    this.baseline = null;         // head seq when we first met the server (new subscriptions)
    this.load();
  }

  /** Add a subscription; false if it was there. A new one starts at the highest seq seen. */
  add(key) {
    if (this.subs.has(key)) return false;
    this.subs.add(key);
    if (!this.cursors.has(key) && this.baseline !== null) this.cursors.set(key, this.highest());
    this.save();
    return true;
  }

  remove(key) {
    if (!this.subs.delete(key)) return false;
    this.cursors.delete(key);
    this.save();
    return true;
  }

  since(key) {
    return this.cursors.get(key);
  }

  /** A long-poll answered up to `cursor`: the subscription has seen everything below it. */
  advance(key, cursor) {
    if (!this.subs.has(key)) return;
    this.cursors.set(key, Math.max(this.cursors.get(key) ?? 0, cursor));
    this.save();
  }

  /** Met the server (meta): a store made anew voids the cursors; new ones start at `head`. */
  meet(epoch, head) {
    if (this.epoch !== null && epoch !== this.epoch) {
      this.cursors.clear();
      this.jobSeq.clear();
    }
    this.epoch = epoch;
    this.baseline = head;
    for (const key of this.subs) if (!this.cursors.has(key)) this.cursors.set(key, head);
    this.save();
  }

  /** The server could not replay: every subscription starts again from `head`. */
  restart(head) {
    this.baseline = head;
    for (const key of this.subs) this.cursors.set(key, head);
    this.save();
  }

  /** Move the cursors this event belongs to; true if it is new for its job (deliver it). */
  accept(event) {
    const seq = event.seq;
    let moved = false;
    for (const key of this.subs) {
      if (matches(key, event) && seq > (this.cursors.get(key) ?? -1)) {
        this.cursors.set(key, seq);
        moved = true;
      }
    }
    if (moved) this.save();
    if (seq <= (this.jobSeq.get(event.jobId) ?? 0)) return false;
    this.jobSeq.set(event.jobId, seq);
    return true;
  }

  /** A REST snapshot: true if it is newer than what was delivered for its job. */
  acceptSnapshot(job) {
    const seq = Number(job.lastSeq) || 0;
    if (seq <= (this.jobSeq.get(job.jobId) ?? 0)) return false;
    this.jobSeq.set(job.jobId, seq);
    return true;
  }

  track(jobId) {
    this.tracked.add(jobId);
    this.save();
  }

  untrack(jobId) {
    if (!this.tracked.delete(jobId)) return false;
    this.save();
    return true;
  }

  /** Forget the cursors and what was saved (signing out). */
  clear() {
    this.cursors.clear();
    this.storage.removeItem(this.storageKey);
  }

  highest() {
    let high = this.baseline ?? 0;
    for (const seq of this.cursors.values()) high = Math.max(high, seq);
    return high;
  }

  load() {
    let saved = null;
    try {
      saved = JSON.parse(this.storage.getItem(this.storageKey) || 'null');
    } catch {
      saved = null;
    }
    if (!saved || saved.v !== 1) return;
    this.epoch = saved.epoch ?? null;
    for (const [key, seq] of Object.entries(saved.cursors || {})) {
      if (typeof seq === 'number') this.cursors.set(key, seq);
    }
    for (const jobId of saved.tracked || []) {
      if (typeof jobId === 'string' && jobId) {
        this.tracked.add(jobId);
        this.subs.add('job:' + jobId);
      }
    }
  }

  save() {
    const data = {
      v: 1,
      epoch: this.epoch,
      cursors: Object.fromEntries(this.cursors),
      tracked: [...this.tracked],
    };
    try {
      this.storage.setItem(this.storageKey, JSON.stringify(data));
    } catch {
      // Storage full or disabled (private mode): tracking still works until the page closes.
    }
  }
}
