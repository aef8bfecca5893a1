// The React hook's and the Vue composable's declarations, checked with the example (tsc).

import { useJob, useJobWebSocket as useReactJobs } from '../../static/react/useJob.js';
import { useJobWebSocket as useVueJobs } from '../../static/vue/useJob.js';

export function reactComponentBody(userId: string, token: string): string {
  const { isConnected, usingPolling, connectionError, jobProgress, jobs, trackJob, stopTracking } =
    useReactJobs({
      userId,
      clientOptions: { token },
      onJobCompleted: (noteId) => console.log('notes', noteId),
      onJobFailed: (message) => console.log(message.toUpperCase()),
    });
  trackJob('job-1');
  stopTracking('job-1');
  const one = useJob('job-2').job;
  // @ts-expect-error: a tracked job's progress is a number
  const wrong: string = jobs['job-3']!.progress;
  void wrong;
  return `${isConnected} ${usingPolling} ${connectionError?.code} ${jobProgress?.stageName}`
    + ` ${one?.status} ${Object.keys(jobs).length}`;
}

export function vueSetup(): number {
  const live = useVueJobs({ enabled: true });
  live.trackJob('job-1');
  const progress: number = live.jobProgress.value?.progress ?? 0;
  // @ts-expect-error: refs hold the values (use .value)
  const connected: boolean = live.isConnected;
  void connected;
  return progress + (live.usingPolling.value ? 1 : 0);
}
