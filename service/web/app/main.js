// The page: pick or drop a file and preview it, submit a job, follow it live, cancel it,
// look at the result, read its metrics, download it, and reopen recent jobs.

import { api, ApiError, cancelJob, fetchArtifact, followEvents, getJSON, getKey, setKey, submitJob,
  fmtBytes } from './api.js';
import { canPreview, MAX_PREVIEW_BYTES, suffixOf } from './parse.js';
import { ProgressPanel, stageWords } from './progress.js';
import { renderDownloads, renderMetrics } from './metrics.js';
import { meshArtifact, thumbnail } from './thumbs.js';

const $ = (id) => document.getElementById(id);
const FINAL = new Set(['succeeded', 'failed', 'canceled']);

const state = { file: null, points: null, jobId: null, stream: null, reader: null, view: 0 };
const progress = new ProgressPanel($('progress-box'));
let viewer = null;

// ---- viewer ------------------------------------------------------------------------------

/** The viewer, once three.js has loaded; null when it could not start (the page still works). */
const viewerReady = import('./viewer.js').then(({ Viewer }) => {
  viewer = new Viewer($('viewport'));
  return viewer;
}).catch((err) => {
  $('viewport').textContent = `The 3D viewer could not start (${err.message}). The rest of the page works; `
    + 'on the server, run scripts/setup.sh to install three.js.';
  return null;
});

async function showPoints(points, view) {
  await viewerReady;
  if (!viewer || view !== state.view) return false;
  viewer.setPoints(points);
  viewer.setVisible('points', $('show-points').checked);
  return true;
}

// ---- errors ------------------------------------------------------------------------------

function clearErrors() {
  for (const id of ['file-error', 'form-error', 'key-error']) $(id).textContent = '';
  $('file').removeAttribute('aria-invalid');
}

function showError(err) {
  const where = err instanceof ApiError ? err.where : 'form';
  if (where === 'key') {
    $('key-box').open = true;
    $('key-error').textContent = err.message;
    $('form-error').textContent = err.message;
    $('api-key').focus();
  } else if (where === 'file') {
    $('file-error').textContent = err.message;
    $('file').setAttribute('aria-invalid', 'true');
  } else {
    $('form-error').textContent = err.message;
  }
}

// ---- the method list ---------------------------------------------------------------------

/** The server's method table (GET /v1/methods): entries by name, and the default method. */
const methods = { byName: new Map(), defaultName: null };

/** Fill the method list from the table: plain-words labels, the default selected. */
async function loadMethods() {
  const table = await getJSON('/v1/methods');
  const select = $('method');
  select.replaceChildren();
  for (const m of table.methods) {
    methods.byName.set(m.name, m);
    const isDefault = m.name === table.default;
    select.append(new Option(m.label, m.name, isDefault, isDefault));
  }
  methods.defaultName = table.default;
  showMethodHelp();
}

const methodsReady = loadMethods().catch((err) => {
  $('form-error').textContent = `The list of methods could not be loaded: ${err.message}`;
});

/** Photos (a zip) go to the first method that takes images; a point cloud leaves such a method
 * for the default one. */
function matchMethodToFile(photos) {
  const method = $('method');
  const kind = (name) => methods.byName.get(name)?.input_kind;
  if (photos && kind(method.value) !== 'images') {
    const first = [...methods.byName.values()].find((m) => m.input_kind === 'images');
    if (first) method.value = first.name;
  } else if (!photos && kind(method.value) === 'images') {
    method.value = methods.defaultName;
  }
  showMethodHelp();
}

function showMethodHelp() {
  $('method-help').textContent = methods.byName.get($('method').value)?.description || '';
}

// ---- choosing a file ---------------------------------------------------------------------

async function chooseFile(file) {
  clearErrors();
  state.stream?.abort();
  state.file = file;
  state.points = null;
  state.jobId = null;
  state.view += 1;
  const view = state.view;
  progress.hide();
  viewer?.clear();
  renderDownloads($('downloads'), []);
  renderMetrics($('metrics'), null);
  $('view-info').textContent = '';
  history.replaceState(null, '', location.pathname);
  for (const b of document.querySelectorAll('#jobs [aria-current]')) b.removeAttribute('aria-current');
  const photos = suffixOf(file.name) === 'zip';
  await methodsReady;
  if (view !== state.view) return;
  matchMethodToFile(photos);
  const info = $('file-info');
  info.textContent = `${file.name} — ${fmtBytes(file.size)}`;
  if (photos) {
    info.textContent += '. A set of photos: no preview before the reconstruction.';
    return;
  }
  if (!canPreview(file.name) || file.size > MAX_PREVIEW_BYTES) {
    info.textContent += '. No preview in the browser for this file; the points appear after you submit.';
    return;
  }
  info.textContent += '. Reading…';
  try {
    const cloud = await readPoints(file);
    if (view !== state.view) return;
    state.points = cloud.positions;
    const shown = cloud.count < cloud.total ? ` (showing ${cloud.count.toLocaleString('en')})` : '';
    info.textContent = `${file.name} — ${fmtBytes(file.size)}, ${cloud.total.toLocaleString('en')} points${shown}.`;
    if (await showPoints(state.points, view)) {
      $('view-info').textContent = `Preview of the input: ${cloud.count.toLocaleString('en')} points.`;
    }
  } catch (err) {
    if (view !== state.view) return;
    info.textContent = `${file.name} — ${fmtBytes(file.size)}`;
    $('file-error').textContent = `This file couldn't be read: ${err.message}. The server will check it too.`;
  }
}

/** The file's points, read by a worker; a newer file stops the reading of an older one. */
function readPoints(file) {
  state.reader?.terminate();
  return new Promise((resolve, reject) => {
    const worker = new Worker('/web/parse-worker.js', { type: 'module' });
    state.reader = worker;
    worker.onmessage = ({ data }) => {
      worker.terminate();
      if (data.ok) resolve(data);
      else reject(new Error(data.message));
    };
    worker.onerror = (e) => {
      worker.terminate();
      reject(new Error(e.message || 'the file could not be read'));
    };
    worker.postMessage({ file });
  });
}

function setUpDrop() {
  const drop = $('drop');
  const input = $('file');
  input.addEventListener('change', () => input.files[0] && chooseFile(input.files[0]));
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (!file) return;
    const dt = new DataTransfer();
    dt.items.add(file);
    input.files = dt.files;
    chooseFile(file);
  });
}

// ---- submitting and following ------------------------------------------------------------

/** The region field's six numbers (xmin ymin zmin xmax ymax zmax), null when empty; throws in words otherwise. */
function parseBbox(text) {
  const parts = text.trim().split(/[\s,;]+/).filter((x) => x !== '');
  if (!parts.length) return null;
  const nums = parts.map(Number);
  if (nums.length !== 6 || nums.some((x) => !Number.isFinite(x))) {
    throw new Error('Region to keep: enter six numbers (xmin ymin zmin xmax ymax zmax) or leave it empty.');
  }
  if (nums[0] >= nums[3] || nums[1] >= nums[4] || nums[2] >= nums[5]) {
    throw new Error('Region to keep: each min must be smaller than its max.');
  }
  return nums;
}

function readSpec() {
  const form = $('job-form');
  const formats = [...form.querySelectorAll('input[name=format]:checked')].map((x) => x.value);
  const spec = { method: $('method').value, preset: form.querySelector('input[name=preset]:checked').value, formats };
  const bbox = parseBbox($('bbox').value);
  if (bbox) spec.bbox = bbox;
  return spec;
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  if (!state.file) {
    showError(new ApiError({ status: 0, code: 'missing_file' }));
    $('file').focus();
    return;
  }
  let spec;
  try {
    spec = readSpec();
  } catch (err) {
    $('form-error').textContent = err.message;
    $('bbox').focus();
    return;
  }
  if (!spec.formats.length) {
    $('form-error').textContent = 'Choose at least one download format.';
    return;
  }
  const button = $('submit');
  button.disabled = true;
  button.textContent = 'Uploading…';
  try {
    const job = await submitJob(state.file, spec);
    await openJob(job, state.points);
    loadJobs();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
    button.textContent = 'Reconstruct';
  }
}

/** Show a job: its progress (live while it runs), then its mesh, metrics and downloads. */
async function openJob(job, points = null) {
  state.stream?.abort();
  state.jobId = job.id;
  state.view += 1;
  const view = state.view;
  history.replaceState(null, '', `#job=${job.id}`);
  progress.update(job);
  viewer?.clear();
  $('views-box').hidden = true;
  renderDownloads($('downloads'), job.artifacts, download);
  renderMetrics($('metrics'), null);
  $('view-info').textContent = '';
  if (points) showPoints(points, view);
  else inputPoints(job, view);
  if (FINAL.has(job.status)) showResult(job, view);
  else follow(job.id, view);
}

async function inputPoints(job, view) {
  try {
    const buf = await (await api(`/v1/jobs/${job.id}/input-points`)).arrayBuffer();
    showPoints(new Float32Array(buf), view);
  } catch {
    // Inputs that are not point clouds (photo sets) have no points to overlay.
  }
}

async function follow(id, view) {
  const controller = new AbortController();
  state.stream = controller;
  let last = null;
  for (let attempt = 0; attempt < 30 && view === state.view; attempt++) {
    try {
      await followEvents(id, (event, data) => {
        if (view !== state.view) return;
        last = { ...(last || {}), ...data };
        progress.update(data);
        if (event === 'state' && FINAL.has(data.status)) showResult(data, view);
      }, controller.signal);
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        $('job-error').textContent = err.message;
        return;
      }
    }
    if (last && FINAL.has(last.status)) return;
    await new Promise((r) => setTimeout(r, 2000)); // the stream broke: reconnect
  }
}

/** The job's views.png (held-out photos, renderings, normals) under the 3D view, when it has one. */
async function showViews(job, view) {
  const box = $('views-box');
  const img = $('views-img');
  const art = job.artifacts?.find((a) => a.name === 'views.png');
  if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
  img.removeAttribute('src');
  box.hidden = true;
  if (!art) return;
  const buf = await fetchArtifact(art.url);
  if (view !== state.view) return;
  img.src = URL.createObjectURL(new Blob([buf], { type: 'image/png' }));
  box.hidden = false;
}

async function showResult(job, view) {
  renderDownloads($('downloads'), job.artifacts, download);
  loadJobs();
  if (job.status !== 'succeeded') return;
  showViews(job, view).catch((err) => {
    $('job-error').textContent = `The views could not be shown: ${err.message}`;
  });
  const art = meshArtifact(job);
  const metrics = job.artifacts.find((a) => a.name === 'metrics.json');
  try {
    const tasks = [metrics ? getJSON(metrics.url) : Promise.resolve(job.metrics)];
    if (art && (await viewerReady)) {
      const { meshGeometry } = await import('./viewer.js');
      tasks.push(fetchArtifact(art.url).then((buf) => meshGeometry(buf, art.format)));
    }
    const [m, geometry] = await Promise.all(tasks);
    if (view !== state.view) return;
    renderMetrics($('metrics'), m);
    if (geometry) {
      viewer.setMesh(geometry);
      viewer.setVisible('mesh', $('show-mesh').checked);
      const colors = geometry.getAttribute('color') ? ', with its colours' : '';
      const faces = geometry.index ? geometry.index.count / 3 : geometry.getAttribute('position').count / 3;
      $('view-info').textContent = `Mesh of ${faces.toLocaleString('en')} triangles${colors}.`;
    }
  } catch (err) {
    $('job-error').textContent = `The result could not be shown: ${err.message}`;
  }
}

async function cancel() {
  if (!state.jobId) return;
  $('cancel').disabled = true;
  try {
    progress.update(await cancelJob(state.jobId));
  } catch (err) {
    $('job-error').textContent = err.message;
    $('cancel').disabled = false;
  }
}

/** Downloads need the key header when one is set: fetch the file and save it from memory. */
async function download(artifact, event) {
  if (!getKey()) return;
  event.preventDefault();
  try {
    const blob = new Blob([await fetchArtifact(artifact.url)]);
    const link = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob),
      download: artifact.name });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (err) {
    $('job-error').textContent = err.message;
  }
}

// ---- recent jobs -------------------------------------------------------------------------

const STATUS_WORDS = { queued: 'waiting', running: 'running', succeeded: 'done', failed: 'failed',
  canceled: 'canceled' };
const PRESET_WORDS = { fast: 'fast', balanced: 'balanced', quality: 'best' };

/** A method as the form names it ("Classic (Screened Poisson)"), not its API id. */
function methodWords(method) {
  return [...$('method').options].find((o) => o.value === method)?.textContent || method;
}

async function loadJobs() {
  $('jobs-error').textContent = '';
  let page;
  try {
    page = await getJSON('/v1/jobs?limit=20');
  } catch (err) {
    $('jobs-error').textContent = err.message;
    if (err instanceof ApiError && err.where === 'key') {  // say where to fix it, without taking focus
      $('key-box').open = true;
      $('key-error').textContent = err.message;
    }
    return;
  }
  const list = $('jobs');
  list.replaceChildren();
  if (!page.items.length) list.innerHTML = '<li class="muted">No jobs yet.</li>';
  for (const job of page.items) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'job';
    button.dataset.id = job.id;
    button.dataset.status = job.status;
    if (job.id === state.jobId) button.setAttribute('aria-current', 'true');
    const img = document.createElement('img');
    img.alt = '';
    img.width = img.height = 48;
    const when = new Date(job.created_at).toLocaleString();
    const status = job.status === 'running' ? `${stageWords(job.stage)}, ${Math.floor(job.progress)} %`
      : STATUS_WORDS[job.status];
    const text = document.createElement('span');
    text.innerHTML = '<b></b><small></small>';
    text.querySelector('b').textContent = job.input.name;
    text.querySelector('small').textContent = `${methodWords(job.spec.method)}, `
      + `${PRESET_WORDS[job.spec.preset] || job.spec.preset} · ${status} · ${when}`;
    button.append(img, text);
    button.addEventListener('click', () => {
      clearErrors();
      openJob(job);
    });
    li.append(button);
    list.append(li);
    if (job.status === 'succeeded') thumbnail(job).then((url) => { if (url) img.src = url; });
  }
}

// ---- start -------------------------------------------------------------------------------

function start() {
  setUpDrop();
  $('job-form').addEventListener('submit', submit);
  $('method').addEventListener('change', showMethodHelp);
  $('cancel').addEventListener('click', cancel);
  $('refresh').addEventListener('click', loadJobs);
  $('show-wire').addEventListener('change', (e) => viewer?.setWireframe(e.target.checked));
  $('show-points').addEventListener('change', (e) => viewer?.setVisible('points', e.target.checked));
  $('show-mesh').addEventListener('change', (e) => viewer?.setVisible('mesh', e.target.checked));
  $('reset-view').addEventListener('click', () => viewer?.frame());
  $('api-key').value = getKey();
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    setKey($('api-key').value.trim());
    clearErrors();
    $('key-box').open = false;
    loadJobs();
  });
  methodsReady.then(loadJobs);  // the job list names methods by their labels
  const id = /job=([\w-]+)/.exec(location.hash)?.[1];
  if (id) getJSON(`/v1/jobs/${id}`).then((job) => openJob(job)).catch(showError);
}

start();
