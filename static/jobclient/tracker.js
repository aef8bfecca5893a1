/**
 * tracker.js: the state a UI shows of its tracked jobs and of the connection, kept by one
 * client and handed out as immutable snapshots; the React hook (static/react/useJob.js) and
 * the Vue composable (static/vue/useJob.js) are thin wrappers around it.
 */

import { createJobClient, STATE } from './client.js';
import { describeError } from './net.js';

const ENDS = Object.freeze({ completed: true, failed: true });

/** A tracked job as a UI shows it: where it is, and how it ended. */
function view(job, meta) {
  const names = (meta && meta.stageNames) || {};
  return Object.freeze({
    jobId: job.jobId,
    type: job.jobType || job.type || '',
    label: job.label || '',
    status: job.status,
    stage: job.stage,
    stageName: names[job.stage] || job.stage,
    progress: Number(job.progress) || 0,
    message: job.message || '',
    metadata: job.metadata || {},
    result: job.result || null,
    error: job.error ? describeError(job.error) : null,
    seq: job.seq || job.lastSeq || 0,
  });
}

/**
 * The connection and tracked jobs of one user, as snapshots (see getState).
 *
 * Options: userId (follow all of that user's events; optional), client (an existing
 * JobClient) or clientOptions (for a new one: baseUrl, token, transports...), and callbacks
 * read when they fire (so a framework may replace them on every render): onJobCompleted(noteId
 * or result, event), onJobFailed(message, event), onJobProgress(event). A job passed to
 * trackJob that had already ended (it ran faster than the request that made it returned) is
 * reported once from its snapshot, which then stands for the event.
 */
export class JobTracker {
  constructor(options = {}) {
    this.options = options;
    this.callbacks = {};
    const storageKey = 'jobclient:' + (options.userId || 'jobs');
    this.client = options.client || createJobClient({ storageKey, ...options.clientOptions });
    this._listeners = new Set();
    this._off = null;
    // Jobs trackJob began to follow whose end was not reported yet: one that ended before its
    // events were followed is reported from its snapshot. Then its end's seq is kept here, so
    // the same end arriving as an event is not reported twice.
    this._awaiting = new Set();
    this._reportedAt = new Map();
    this._state = Object.freeze({
      connectionState: this.client.connectionState(),
      isConnected: false,
      usingPolling: false,
      connectionError: null,
      jobs: Object.freeze({}),
      jobProgress: null,
    });
  }

  /** The current snapshot: a new object after every change, the same one otherwise. */
  getState = () => this._state;

  /** Call `listener` after every change; returns the function that stops it. */
  subscribe = (listener) => {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  };

  /** Connect and follow (idempotent). */
  start() {
    if (this._off) return;
    const c = this.client;
    this._off = c.on({
      onConnectionChange: (state, detail) => this._set({
        connectionState: state,
        isConnected: state === STATE.LIVE,
        usingPolling: c.usingPolling(),
        connectionError: state === STATE.LIVE || state === STATE.POLLING ? null : detail,
      }),
      onEvent: (event) => this._event(event),
      onJobState: (job) => {
        if (!c.trackedJobs().includes(job.jobId)) return;
        this._job(job);
        if (this._awaiting.has(job.jobId) && ENDS[job.status]) {
          this._reportedAt.set(job.jobId, job.lastSeq || job.seq || 0);
          this._ended(job);
        }
      },
      onJobGone: ({ jobId }) => this._drop(jobId),
      onError: (info) => this._set({ connectionError: info }),
    });
    for (const jobId of c.trackedJobs()) this._job({ jobId, status: 'queued', stage: 'queued' });
    if (this.options.userId) c.subscribe({ userId: this.options.userId });
    c.connect().catch(() => {}); // failures arrive as connection states
  }

  /** Disconnect (tracked jobs stay in storage for the next start). */
  stop() {
    if (!this._off) return;
    this.client.disconnect(); // (its 'idle' still reaches this tracker)
    this._off();
    this._off = null;
  }

  trackJob = (jobId) => {
    if (typeof jobId !== 'string' || !jobId) return;
    if (!this._state.jobs[jobId]) this._job({ jobId, status: 'queued', stage: 'queued' });
    this._awaiting.add(jobId);
    this.client.trackJob(jobId);
  };

  stopTracking = (jobId) => {
    this._awaiting.delete(jobId);
    this._reportedAt.delete(jobId);
    this.client.stopTracking(jobId);
    this._drop(jobId);
  };

  _event(event) {
    if (event.type === 'job.removed') {
      this._drop(event.jobId);
      return;
    }
    if (!this.client.trackedJobs().includes(event.jobId)) return;
    this._job(event);
    const cb = this.callbacks;
    if (event.type === 'job.progress' && cb.onJobProgress) cb.onJobProgress(event);
    if (event.type !== 'job.completed' && event.type !== 'job.failed') return;
    const reported = this._reportedAt.get(event.jobId);
    if (reported !== undefined && event.seq <= reported) return; // told from its snapshot
    this._ended(event);
  }

  /** A followed job ended: onJobCompleted or onJobFailed, with its event (or, when it had
   * ended before its events were followed, its snapshot from the API). */
  _ended(job) {
    this._awaiting.delete(job.jobId);
    const cb = this.callbacks;
    if (job.status === 'completed' && cb.onJobCompleted) {
      const result = job.result || {};
      cb.onJobCompleted(result.noteId !== undefined ? result.noteId : result, job);
    }
    if (job.status === 'failed' && cb.onJobFailed) {
      cb.onJobFailed(describeError(job.error).message, job);
    }
  }

  _job(job) {
    const shown = view(job, this.client.meta);
    this._set({ jobs: Object.freeze({ ...this._state.jobs, [job.jobId]: shown }),
      jobProgress: shown });
  }

  _drop(jobId) {
    if (!this._state.jobs[jobId]) return;
    const jobs = { ...this._state.jobs };
    delete jobs[jobId];
    const last = this._state.jobProgress;
    this._set({ jobs: Object.freeze(jobs),
      jobProgress: last && last.jobId === jobId ? null : last });
  }

  _set(changes) {
    this._state = Object.freeze({ ...this._state, ...changes });
    for (const listener of [...this._listeners]) {
      try { listener(this._state); } catch (err) { console.error('jobclient: listener', err); }
    }
  }
}

export function createJobTracker(options) {
  return new JobTracker(options);
}
