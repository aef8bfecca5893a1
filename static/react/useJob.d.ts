// Types of react/useJob.js.

import type { JobClient } from '../jobclient/client.js';
import type {
  TrackedJob, TrackerCallbacks, TrackerOptions, TrackerState,
} from '../jobclient/tracker.js';

export interface UseJobWebSocketOptions extends TrackerOptions, TrackerCallbacks {
  /** false: do not connect (yet). */
  enabled?: boolean;
}

export interface UseJobWebSocketResult extends TrackerState {
  trackJob(jobId: string): void;
  stopTracking(jobId: string): void;
  client: JobClient;
}

export declare function useJobWebSocket(options?: UseJobWebSocketOptions): UseJobWebSocketResult;

export declare function useJob(jobId: string | null | undefined,
  options?: UseJobWebSocketOptions): UseJobWebSocketResult & { job: TrackedJob | null };
