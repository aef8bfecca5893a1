// What the page says to people: one table from error codes to a sentence and what to do, and
// sizes, times and durations written the way people write them. The codes stay visible in the
// job's detail view, for support.
import { describeError } from '../jobclient.js';

// code -> [what happened, what to do]. A code missing here shows the server's own message.
const ERRORS = {
  NETWORK: ['Cannot reach the server.', 'Check your connection; the page retries by itself.'],
  TIMEOUT: ['The server took too long to answer.', 'Try again in a moment.'],
  ABORTED: ['The upload was cancelled.', 'Choose the file again to upload it.'],
  UPLOAD_CANCELLED: ['The upload was cancelled.', 'Choose the file again to upload it.'],
  NOT_A_PDF: ['This file is not a PDF.', 'Choose another file.'],
  FILE_TOO_LARGE: ['This file is larger than this server accepts.', 'Choose a smaller file.'],
  BODY_TOO_LARGE: ['That was more than this server accepts at once.', 'Send less at a time.'],
  TOO_MANY_PARTS: ['Too many files in one upload.', 'Upload fewer files at a time.'],
  ENCRYPTED_PDF: ['This PDF is protected by a password.', 'Remove the password, then upload it again.'],
  CORRUPT_PDF: ['This PDF is damaged and could not be read.', 'Choose another file.'],
  NO_TEXT: ['This PDF has no text to read (it may be scanned images).', 'Choose a PDF with text.'],
  TOO_MANY_PAGES: ['This PDF has more pages than this server reads.', 'Split it, or choose a shorter one.'],
  TEXT_TOO_LARGE: ['This PDF has more text than this server reads.', 'Split it, or choose a shorter one.'],
  PARSE_TIMEOUT: ['Reading this PDF took too long.', 'Try again later, or choose a smaller file.'],
  PARSE_MEMORY: ['Reading this PDF needed too much memory.', 'Choose a smaller file.'],
  PARSE_CRASHED: ['The reader stopped on this PDF.', 'Try again; if it happens again, choose another file.'],
  JOB_TIMEOUT: ['The job took longer than it may.', 'Try again later.'],
  JOB_MEMORY: ['The job needed more memory than it may use.', 'Try a smaller input.'],
  PROCESS_CRASHED: ['The process running the job stopped.', 'Try again.'],
  WORKER_LOST: ['The server stopped while the job ran, so it started again.', 'Nothing to do: it runs by itself.'],
  HANDLER_ERROR: ['The job hit an error.', 'Try again; if it happens again, tell whoever runs this server.'],
  QUOTA_JOBS: ['You have as many jobs waiting or running as allowed.', 'Wait for some to finish.'],
  QUOTA_BYTES: ['Your uploads use all the space you are allowed.', 'Remove old jobs or wait for them to expire.'],
  RATE_LIMITED: ['Too many requests at once.', 'Wait a moment and try again.'],
  STORAGE_FULL: ['The server is out of disk space.', 'Tell whoever runs this server.'],
  UNAVAILABLE: ['The server cannot save anything right now.', 'Try again in a moment.'],
  SERVER_ERROR: ['The server hit an error.', 'Try again.'],
  UNAUTHORIZED: ['Your session has ended.', 'Sign in again.'],
  TOKEN_EXPIRED: ['Your session has ended.', 'Sign in again.'],
  TOKEN_REVOKED: ['Your session has ended.', 'Sign in again.'],
  JOB_NOT_FOUND: ['This job no longer exists.', 'It may have been removed.'],
  NOTE_NOT_FOUND: ['These notes no longer exist.', 'They may have been deleted.'],
  NOT_FOUND: ['This no longer exists.', 'It may have been removed.'],
  ILLEGAL_TRANSITION: ['The job changed meanwhile, so that is not possible now.', 'Look at its new state.'],
  UPLOAD_MISSING: ['The uploaded file is gone from the server.', 'Upload it again.'],
  DEMO_FAILURE: ['This demo job fails on purpose.', 'Nothing to do.'],
  BAD_CREDENTIALS: ['That name and password do not match.', 'Check them and try again.'],
  SIGNIN_THROTTLED: ['Too many sign-in attempts.', 'Wait a minute, then try again.'],
  SIGNIN_DISABLED: ['This way of signing in is turned off on this server.', 'Use another way shown here.'],
  INVALID_TOKEN: ['That sign-in token is not valid.', 'Ask your application for a new one.'],
};

// On the sign-in form, a refused name is about the name.
export const SIGNIN_NAME = 'That name cannot be used: use 1 to 64 letters, digits, ".", "_", "@" or "-".';

/** `{code, text, action}` for anything that went wrong: a job's error, an HTTP error... */
export function humanError(err, { maxUploadBytes } = {}) {
  const info = describeError(err);
  const known = ERRORS[info.code];
  if (!known) return { code: info.code, text: info.message, action: '' };
  let [text, action] = known;
  if (info.code === 'FILE_TOO_LARGE' && maxUploadBytes) {
    text = `This file is larger than the ${formatBytes(maxUploadBytes)} this server accepts.`;
  }
  return { code: info.code, text, action };
}

// Codes the page itself makes (no server said them): nothing for support to look up.
const OWN_CODES = new Set(['NETWORK', 'TIMEOUT', 'ABORTED', 'UPLOAD_CANCELLED', 'SERVER_ERROR',
  'UNKNOWN', 'CONNECTION_CLOSED']);

/** One line: the sentence, what to do, and the server's code for support. */
export function errorLine(err, options) {
  const { code, text, action } = humanError(err, options);
  const shownCode = code && !OWN_CODES.has(code) ? ` (${code})` : '';
  return `${text}${action ? ' ' + action : ''}${shownCode}`;
}

/** 52428800 -> "50 MB" (1 KB = 1024 bytes, as file managers count). */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} bytes`;
  let value = n;
  let unit = 'bytes';
  for (const name of ['KB', 'MB', 'GB', 'TB']) {
    if (value < 1024) break;
    value /= 1024;
    unit = name;
  }
  return `${Number(value.toPrecision(3))} ${unit}`;
}

/** Milliseconds -> "850 ms", "12 s", "3 min 05 s", "2 h 04 min". */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, '0')} s`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.floor(seconds / 60) % 60).padStart(2, '0')} min`;
}

/** A wall-clock time: "14:05:09" today, "3 Dec 14:05" another day. */
export function clock(ms, { millis = false } = {}) {
  if (!Number.isFinite(ms)) return '';
  const date = new Date(ms);
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  const extra = millis ? '.' + String(date.getMilliseconds()).padStart(3, '0') : '';
  if (new Date().toDateString() === date.toDateString()) return time + extra;
  return `${date.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}${extra}`;
}

export function parseTime(value) {
  const ms = typeof value === 'string' ? Date.parse(value) : NaN;
  return Number.isFinite(ms) ? ms : null;
}

// Event types as words, for the timeline.
export const EVENT_WORDS = {
  'job.queued': 'Queued',
  'job.progress': 'Progress',
  'job.completed': 'Completed',
  'job.failed': 'Failed',
  'job.retrying': 'Will retry',
  'job.cancelled': 'Cancelled',
  'job.removed': 'Removed',
};
