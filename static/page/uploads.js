// Uploads as a person expects: a row per file at once, its bytes' progress, a Cancel button,
// a warning before leaving the page mid-upload, and a refused file shown as a failed row that
// says why in words and offers to choose another file.
//
// fetch() cannot report an upload's progress, so this is the one request the page makes with
// XMLHttpRequest (same origin, the session cookie, as the client's own requests).
import { describeError, JobClientError } from '../jobclient.js';
import { $, announce, meta, online, page, showError } from './state.js';
import { addRow, apply, render, updateTitle } from './list.js';
import { errorLine, formatBytes } from './words.js';

const inFlight = new Set();

function isPdf(file) {
  return file.type === 'application/pdf' || /\.pdf$/i.test(file.name);
}

export async function uploadFiles(fileList) {
  const files = [...fileList];
  const rejected = files.filter((file) => !isPdf(file));
  for (const file of rejected) refused(file, new JobClientError('NOT_A_PDF', 'Not a PDF'));
  showError($('#upload-error'), '');
  await Promise.all(files.filter(isPdf).map(uploadOne));
}

function refused(file, err) {
  const row = addRow('upload-' + (++page.uploads), {
    status: 'failed', name: file.name, progress: 0, message: '', error: describeError(err),
  });
  render(row);
  announce(`${file.name} was not uploaded: ${errorLine(err, meta())}`);
}

/** POST the file as multipart; resolves with the job, rejects with a JobClientError. */
function send(file, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open('POST', page.client.api.url('/api/jobs'));
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener('load', () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300 && data) resolve(data);
      else if (data && data.error) reject(new JobClientError(data.error.code, data.error.message, xhr.status));
      else reject(new JobClientError('SERVER_ERROR', 'The server hit an error; try again.', xhr.status));
    });
    xhr.addEventListener('error', () => reject(new JobClientError('NETWORK', 'Cannot reach the server. Check your connection.')));
    xhr.addEventListener('abort', () => reject(new JobClientError('UPLOAD_CANCELLED', 'The upload was cancelled.')));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

async function uploadOne(file) {
  const client = page.client;
  const tempId = 'upload-' + (++page.uploads);
  const row = addRow(tempId, {
    status: 'uploading', name: file.name, progress: 0, message: `0 of ${formatBytes(file.size)}`,
  });
  const request = send(file, (loaded, total) => {
    row.data.progress = total ? (100 * loaded) / total : 0;
    row.data.message = `${formatBytes(loaded)} of ${formatBytes(total)}`;
    render(row);
    updateTitle();
  });
  row.upload = request;
  inFlight.add(request);
  render(row);
  announce(`${file.name}: uploading`);
  try {
    const job = await request.done;
    if (page.client !== client) return;
    client.trackJob(job.jobId);
    row.el.remove();
    page.rows.delete(tempId);
    const jobRow = page.rows.get(job.jobId) || apply(job);
    if (jobRow) {
      jobRow.data.name = jobRow.data.name || file.name;
      render(jobRow);
    }
  } catch (err) {
    row.upload = null;
    const info = describeError(err);
    Object.assign(row.data, { status: 'failed', error: info, message: '', progress: 0 });
    render(row);
    announce(`${file.name} was not uploaded: ${errorLine(err, meta())}`);
  } finally {
    inFlight.delete(request);
    updateTitle();
  }
}

export function setUpUploads() {
  const zone = $('#dropzone');
  const input = $('#file-input');
  input.addEventListener('change', () => {
    if (input.files.length) uploadFiles(input.files).finally(() => { input.value = ''; });
  });
  const over = (event) => {
    event.preventDefault();
    zone.classList.add('dragging');
  };
  zone.addEventListener('dragenter', over);
  zone.addEventListener('dragover', over);
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    if (!online()) return;
    if (event.dataTransfer && event.dataTransfer.files.length) uploadFiles(event.dataTransfer.files);
  });
  // A file dropped next to the zone must not make the browser leave the page to open it.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  // Leaving mid-upload loses the upload: the browser asks first.
  window.addEventListener('beforeunload', (event) => {
    if (!inFlight.size) return;
    event.preventDefault();
    event.returnValue = '';
  });
}

/** Uploads need the server: the picker is off while it cannot be reached. */
export function showUploadState() {
  const ok = online();
  $('#file-input').disabled = !ok;
  $('#dropzone').classList.toggle('disabled', !ok);
  const limit = meta().maxUploadBytes;
  $('#upload-limit').textContent = limit ? `Up to ${formatBytes(limit)} per file.` : '';
}

export function uploading() {
  return inFlight.size > 0;
}
