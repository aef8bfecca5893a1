// Types of vue/useJob.js.

import type { ComputedRef } from 'vue';

import type { JobClient } from '../jobclient/client.js';
import type { TrackerCallbacks, TrackerOptions, TrackerState } from '../jobclient/tracker.js';

export interface UseJobWebSocketOptions extends TrackerOptions, TrackerCallbacks {
  /** false: do not connect. */
  enabled?: boolean;
}

export type UseJobWebSocketResult = {
  readonly [K in keyof TrackerState]: ComputedRef<TrackerState[K]>;
} & {
  trackJob(jobId: string): void;
  stopTracking(jobId: string): void;
  client: JobClient;
};

export declare function useJobWebSocket(options?: UseJobWebSocketOptions): UseJobWebSocketResult;
