/**
 * useJob.js: a Vue 3 composable on jobclient.js, the same shape as the React hook.
 *
 *   import { useJobWebSocket } from '/static/vue/useJob.js';     // (through your bundler)
 *   const { isConnected, usingPolling, connectionState, connectionError, jobProgress, jobs,
 *           trackJob, stopTracking } = useJobWebSocket({ userId, clientOptions: { token },
 *     onJobCompleted: (noteId) => router.push(`/notes/${noteId}`) });
 *
 * Every field but the two functions is a read-only ref. Call it in setup(): it connects at
 * once (unless enabled is false) and disconnects when the component's scope ends. 'vue' is
 * imported by name: bundle this file with your app.
 */

import { computed, getCurrentScope, onScopeDispose, shallowRef } from 'vue';

import { createJobTracker } from '../jobclient/tracker.js';

export function useJobWebSocket(options = {}) {
  const { userId, enabled = true, client, clientOptions } = options;
  const tracker = createJobTracker({ userId, client, clientOptions });
  tracker.callbacks = options;
  const state = shallowRef(tracker.getState());
  const unsubscribe = tracker.subscribe((next) => { state.value = next; });
  if (enabled) tracker.start();
  if (getCurrentScope()) {
    onScopeDispose(() => {
      unsubscribe();
      tracker.stop();
    });
  }
  const field = (name) => computed(() => state.value[name]);
  return {
    connectionState: field('connectionState'),
    isConnected: field('isConnected'),
    usingPolling: field('usingPolling'),
    connectionError: field('connectionError'),
    jobProgress: field('jobProgress'),
    jobs: field('jobs'),
    trackJob: tracker.trackJob,
    stopTracking: tracker.stopTracking,
    client: tracker.client,
  };
}
