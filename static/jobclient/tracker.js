/**
 * tracker.js: the state a UI shows of its tracked jobs and of the connection, kept by one
 * client and handed out as immutable snapshots; the React hook (static/react/useJob.js) and
 * the Vue composable (static/vue/useJob.js) are thin wrappers around it.
 */

import { createJobClient, STATE } from './client.js';
import { describeError } from './net.js';

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
 * or result, event), onJobFailed(message, event), onJobProgress(event).
 */
export class JobTracker {
  constructor(options = {}) {
    this.options = options;
    this.callbacks = {};
    const storageKey = 'jobclient:' + (options.userId || 'jobs');
    this.client = options.client || createJobClient({ storageKey, ...options.clientOptions });
    this._listeners = new Set();
    this._off = null;
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
        if (c.trackedJobs().includes(job.jobId)) this._job(job);
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
    this.client.trackJob(jobId);
  };

  stopTracking = (jobId) => {
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
    if (event.type === 'job.completed' && cb.onJobCompleted) {
      const result = event.result || {};
      cb.onJobCompleted(result.noteId !== undefined ? result.noteId : result, event);
    }
    if (event.type === 'job.failed' && cb.onJobFailed) {
      cb.onJobFailed(describeError(event.error).message, event);
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
