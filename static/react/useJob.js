/**
 * useJob.js: React hooks on jobclient.js, in the shape of the seed's useJobWebSocket.
 *
 *   import { useJobWebSocket } from '/static/react/useJob.js';   // (through your bundler)
 *   const { isConnected, usingPolling, connectionState, connectionError, jobProgress, jobs,
 *           trackJob, stopTracking } = useJobWebSocket({
 *     userId, enabled: true, clientOptions: { baseUrl, token },
 *     onJobCompleted: (noteId) => navigate(`/notes/${noteId}`),
 *     onJobFailed: (message) => toast.error(message),
 *   });
 *
 * `jobProgress` is the tracked job that changed last ({jobId, status, stage, stageName,
 * progress, message, error, result}), `jobs` every tracked job by id. `useJob(jobId, options)`
 * follows one job. 'react' is imported by name: bundle this file with your app.
 */

import { useEffect, useMemo, useSyncExternalStore } from 'react';

import { createJobTracker } from '../jobclient/tracker.js';

export function useJobWebSocket(options = {}) {
  const { userId, enabled = true, client, clientOptions } = options;
  const baseUrl = clientOptions && clientOptions.baseUrl;
  const token = clientOptions && clientOptions.token;
  // A new client for another user or server; the same one across renders otherwise.
  const tracker = useMemo(() => createJobTracker({ userId, client, clientOptions }),
    [userId, client, baseUrl, token]); // eslint-disable-line react-hooks/exhaustive-deps
  tracker.callbacks = {
    onJobCompleted: options.onJobCompleted,
    onJobFailed: options.onJobFailed,
    onJobProgress: options.onJobProgress,
  };
  useEffect(() => {
    if (!enabled) return undefined;
    tracker.start();
    return () => tracker.stop();
  }, [tracker, enabled]);
  const state = useSyncExternalStore(tracker.subscribe, tracker.getState, tracker.getState);
  return {
    ...state,
    trackJob: tracker.trackJob,
    stopTracking: tracker.stopTracking,
    client: tracker.client,
  };
}

/** One job followed from `jobId` on (null: none yet): its state, and the connection's. */
export function useJob(jobId, options = {}) {
  const live = useJobWebSocket(options);
  const { trackJob } = live;
  useEffect(() => {
    if (jobId) trackJob(jobId);
  }, [jobId, trackJob]);
  return { ...live, job: jobId ? live.jobs[jobId] || null : null };
}
