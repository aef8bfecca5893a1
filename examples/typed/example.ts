// A small typed program on jobclient.js, checked by `tsc -p examples/typed` (scripts/test):
// the declarations in static/*.d.ts must let it through, and refuse the mistakes marked below.

import {
  createJobClient, describeError, JobClientError, STATE,
  type ConnectionState, type Job, type JobEvent,
} from '../../static/jobclient.js';

const client = createJobClient({ baseUrl: 'https://jobs.example.com', token: 'a-token' });

const progress = new Map<string, number>();
let state: ConnectionState = client.connectionState();

const off = client.on({
  onJobProgress: (event) => {
    progress.set(event.jobId, event.progress);
    console.log(event.stage, event.message, event.metadata['fileName']);
  },
  onJobCompleted: (event) => console.log('done', event.result['noteId']),
  onJobFailed: (event) => console.log(event.error.code, describeError(event.error).message),
  onJobRemoved: (event) => progress.delete(event.jobId),
  onEvent: (event: JobEvent) => console.log(event.seq, event.type),
  onConnectionChange: (next, detail) => {
    state = next;
    if (detail) console.log(detail.code, detail.message);
  },
  onResync: ({ seq }) => console.log('reload from', seq),
});

async function main(): Promise<void> {
  const meta = await client.connect({ transports: ['websocket', 'polling'] });
  if (meta) console.log(meta.epoch, meta.stageNames['processing']);
  client.subscribe({ userId: 'alice' });
  const job: Job = await client.api.createJob({ type: 'demo.sleep', payload: { seconds: 1 } });
  client.trackJob(job.jobId);
  const page = await client.api.listJobs({ status: 'active', limit: 50 });
  for (const each of page.jobs) console.log(each.label, each.status, each.lastSeq);
  try {
    await client.api.submitMany([{ type: 'demo.sleep' }, { type: 'no.such' }]);
  } catch (err) {
    if (err instanceof JobClientError) console.log(err.code, err.status, err.index);
  }
  console.log(state === STATE.LIVE, client.usingPolling(), client.isConnected(),
    client.getSubscriptionCount(), client.stats.stalls);
  off();
  client.disconnect();
}

// Mistakes the declarations must catch:
// @ts-expect-error: a subscription names a user or a job
client.subscribe({ user: 'alice' });
// @ts-expect-error: no such transport
client.connect({ transports: ['sse'] });
// @ts-expect-error: the progress is a number
const text: string = ({} as JobEvent).progress;
// @ts-expect-error: trackJob takes a job id
client.trackJob(42);
// @ts-expect-error: no such state
const wrong: ConnectionState = 'connected';

void main();
void text;
void wrong;
