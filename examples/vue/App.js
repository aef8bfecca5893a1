// A Vue 3 app on jobserver: start jobs, follow them live with the useJobWebSocket composable.
// Render functions (h) need no template compiler. Bundled by esbuild in
// tests/browser/test_hooks.py (and by your own bundler in an app):
//   node_modules/.bin/esbuild examples/vue/App.js --bundle --outfile=app.js
import { createApp, h, ref } from 'vue';

import { useJobWebSocket } from '../../static/vue/useJob.js';

const Jobs = {
  props: { baseUrl: { type: String, default: '' }, token: { type: String, default: '' } },
  setup(props) {
    const finished = ref([]);
    const live = useJobWebSocket({
      clientOptions: { baseUrl: props.baseUrl, token: props.token },
      onJobCompleted: (result, event) => finished.value.push(`${event.jobId}:ok`),
      onJobFailed: (message, event) => finished.value.push(`${event.jobId}:${message}`),
    });
    const start = async (type, payload) => {
      live.trackJob((await live.client.api.createJob({ type, payload })).jobId);
    };
    return () => {
      const error = live.connectionError.value;
      const last = live.jobProgress.value;
      return h('main', {
        'data-connection': live.connectionState.value,
        'data-polling': String(live.usingPolling.value),
      }, [
        h('p', { class: 'connection' },
          live.connectionState.value + (error ? `: ${error.message}` : '')),
        h('button', { onClick: () => start('demo.sleep', { seconds: 1.5, steps: 6 }) }, 'Sleep'),
        h('button', { onClick: () => start('demo.fail', { code: 'DEMO_FAILURE',
          message: 'It broke' }) }, 'Fail'),
        h('ul', Object.values(live.jobs.value).map((job) => h('li', {
          key: job.jobId, class: 'job', 'data-job-id': job.jobId, 'data-status': job.status,
        }, [
          h('span', { class: 'stage' }, job.stageName),
          h('progress', { value: job.progress, max: 100 }),
          h('span', { class: 'message' }, job.error ? job.error.message : job.message),
          h('button', { onClick: () => live.stopTracking(job.jobId) }, 'Stop following'),
        ]))),
        h('p', { class: 'latest' }, last ? `${last.jobId} ${last.progress}` : ''),
        h('p', { class: 'finished' }, finished.value.join(' ')),
      ]);
    };
  },
};

createApp(Jobs, window.jobserverConfig || {}).mount('#root');
