// Talking to the surfrecon API: requests with the API key, problem+json errors in plain words,
// and the job's Server-Sent Event stream read with fetch (EventSource cannot send the key).

const KEY_STORAGE = 'surfrecon.apiKey';

export function getKey() {
  return localStorage.getItem(KEY_STORAGE) || '';
}

export function setKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

// Where an error belongs on the page: next to the file picker, the key field, or the form.
const FILE_CODES = new Set(['malformed_file', 'unsupported_format', 'truncated', 'too_few_points',
  'too_many_points', 'non_finite', 'degenerate', 'payload_too_large', 'missing_file', 'not_found']);

const MESSAGES = {
  malformed_file: "This file couldn't be read: it looks damaged, or it isn't in the format its name says.",
  unsupported_format: 'This kind of file is not supported here.',
  truncated: 'The file ends too early; it may not have finished copying or downloading.',
  too_few_points: 'There are too few points to build a surface from.',
  too_many_points: 'The file has more points than the server accepts.',
  non_finite: 'Some points have invalid coordinates (not a number, or infinite).',
  degenerate: 'All the points lie at one spot or along one line; a surface needs points spread over it.',
  missing_file: 'Choose a file first.',
  not_found: 'The file could not be found on the server.',
  invalid_spec: 'The server did not accept these settings.',
  validation_error: 'The server did not accept the request.',
  unauthorized: 'The server needs a valid API key: enter it under “API key” at the top.',
  too_many_queued_jobs: 'You already have many jobs waiting.',
  not_ready: 'The service is starting up or busy. Try again in a moment.',
  unsupported_media_type: 'The server did not accept the way the upload was sent.',
  job_not_found: 'That job does not exist any more, or it belongs to another API key.',
  artifact_not_found: 'That file is not available for this job.',
  job_finished: 'The job had already finished.',
  idempotency_conflict: 'This request clashes with an earlier one.',
  internal_error: 'Something went wrong on the server. It has been logged; please try again.',
  network: "Can't reach the server. Check that it is running and that you are online.",
};

function fmtBytes(n) {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(0)} MB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(0)} KB`;
  return `${n} bytes`;
}

export { fmtBytes };

/** An API error: `message` is for people, `detail` is the server's own words, `where` says
 *  which part of the page it concerns ('file', 'key' or 'form'). */
export class ApiError extends Error {
  constructor({ status, code, detail, retryAfter }) {
    super(humanMessage(status, code, detail, retryAfter));
    this.status = status;
    this.code = code;
    this.detail = detail || '';
    this.where = code === 'unauthorized' ? 'key' : FILE_CODES.has(code) ? 'file' : 'form';
  }
}

function humanMessage(status, code, detail, retryAfter) {
  let msg = MESSAGES[code];
  if (code === 'payload_too_large') {
    const m = /limit of (\d+) bytes/.exec(detail || '');
    msg = m ? `This file is too large: the server takes at most ${fmtBytes(Number(m[1]))}.`
      : 'This file is too large for the server.';
    return msg;
  }
  if (code === 'too_many_queued_jobs' || code === 'not_ready') {
    if (retryAfter) msg += ` Try again in ${retryAfter} s.`;
    return msg;
  }
  if (!msg) msg = status >= 500 ? MESSAGES.internal_error : `The server refused the request (${status}).`;
  // The server's detail names the file, line or field; people need it to fix the problem.
  if (detail && !['unauthorized', 'internal_error', 'job_not_found'].includes(code)) {
    msg += ` Details: ${String(detail).replace(/\s+/g, ' ').trim()}`;
  }
  return msg;
}

/** fetch() on the API with the key header; non-2xx answers become an ApiError. */
export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = getKey();
  if (key) headers.set('X-API-Key', key);
  let res;
  try {
    res = await fetch(path, { ...options, headers });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError({ status: 0, code: 'network' });
  }
  if (res.ok || res.status === 304) return res;
  let body = {};
  try {
    body = await res.json();
  } catch {
    body = {};
  }
  throw new ApiError({ status: res.status, code: body.code || `http_${res.status}`, detail: body.detail,
    retryAfter: res.headers.get('Retry-After') });
}

export async function getJSON(path) {
  return (await api(path)).json();
}

export async function submitJob(file, spec) {
  const body = new FormData();
  body.append('spec', JSON.stringify(spec));
  body.append('file', file, file.name);
  return (await api('/v1/jobs', { method: 'POST', body })).json();
}

export async function cancelJob(id) {
  return (await api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' })).json();
}

/** Follow a job's SSE stream, calling onEvent(name, data) for `state` and `progress` events.
 *  Resolves when the server closes the stream (after the final state), rejects on errors. */
export async function followEvents(id, onEvent, signal) {
  const res = await api(`/v1/jobs/${encodeURIComponent(id)}/events`,
    { signal, headers: { Accept: 'text/event-stream' } });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = 'message';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, '');
      buffer = buffer.slice(nl + 1);
      if (line === '') {
        if (data.length) onEvent(event, JSON.parse(data.join('\n')));
        event = 'message';
        data = [];
      } else if (line.startsWith('event:')) {
        event = line.slice(6).trim();
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
    }
  }
}

/** The bytes of an artifact (with the key), for the viewer and for downloads. */
export async function fetchArtifact(url) {
  return (await api(url)).arrayBuffer();
}
