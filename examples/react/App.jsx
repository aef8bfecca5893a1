// A React app on jobserver: start jobs, follow them live with useJobWebSocket.
// Bundled by esbuild in tests/browser/test_hooks.py (and by your own bundler in an app):
//   node_modules/.bin/esbuild examples/react/App.jsx --bundle --jsx=automatic \
//     --define:process.env.NODE_ENV='"production"' --outfile=app.js
import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';

import { useJobWebSocket } from '../../static/react/useJob.js';

function Jobs({ baseUrl, token }) {
  const [finished, setFinished] = useState([]);
  const {
    connectionState, usingPolling, connectionError, jobProgress, jobs, trackJob, stopTracking,
    client,
  } = useJobWebSocket({
    clientOptions: { baseUrl, token },
    onJobCompleted: (result, event) => setFinished((done) => [...done, `${event.jobId}:ok`]),
    onJobFailed: (message, event) => setFinished((done) => [...done, `${event.jobId}:${message}`]),
  });
  const start = async (type, payload) => trackJob((await client.api.createJob({ type, payload })).jobId);
  return (
    <main data-connection={connectionState} data-polling={String(usingPolling)}>
      <p className="connection">{connectionState}{connectionError ? `: ${connectionError.message}` : ''}</p>
      <button onClick={() => start('demo.sleep', { seconds: 1.5, steps: 6 })}>Sleep</button>
      <button onClick={() => start('demo.fail', { code: 'DEMO_FAILURE', message: 'It broke' })}>Fail</button>
      <ul>
        {Object.values(jobs).map((job) => (
          <li key={job.jobId} className="job" data-job-id={job.jobId} data-status={job.status}>
            <span className="stage">{job.stageName}</span>
            <progress value={job.progress} max="100" />
            <span className="message">{job.error ? job.error.message : job.message}</span>
            <button onClick={() => stopTracking(job.jobId)}>Stop following</button>
          </li>
        ))}
      </ul>
      <p className="latest">{jobProgress ? `${jobProgress.jobId} ${jobProgress.progress}` : ''}</p>
      <p className="finished">{finished.join(' ')}</p>
    </main>
  );
}

const config = window.jobserverConfig || { baseUrl: '', token: '' };
createRoot(document.getElementById('root')).render(<StrictMode><Jobs {...config} /></StrictMode>);
