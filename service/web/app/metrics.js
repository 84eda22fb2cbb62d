// The metrics table (from metrics.json) and the download links of a finished job.

import { fmtBytes } from './api.js';

const LABELS = {
  n_input_points: 'Input points',
  method: 'Method',
  preset: 'Quality',
  n_vertices: 'Vertices',
  n_faces: 'Triangles',
  n_components: 'Separate pieces',
  watertight: 'Watertight (closed)',
  edge_manifold: 'Clean edges (manifold)',
  winding_consistent: 'Consistent orientation',
  area: 'Surface area',
  volume: 'Volume',
  bbox_diagonal: 'Size (bounding-box diagonal)',
  distance_mean: 'Mean distance, points to mesh',
  distance_median: 'Median distance, points to mesh',
  distance_p95: '95 % of points within',
  distance_max: 'Farthest point from mesh',
  normal_consistency: 'Normal agreement (1 = perfect)',
  chamfer_l1: 'Chamfer distance (L1)',
  chamfer_l2: 'Chamfer distance (L2)',
  f_score: 'F-score (1 = perfect)',
  f_threshold: 'F-score distance threshold',
  hausdorff: 'Largest deviation (Hausdorff)',
  precision: 'Share of the mesh near the reference (precision)',
  recall: 'Share of the reference covered (recall)',
  hausdorff95: '95 % of deviations within (HD95)',
  total: 'Total',
  load: 'Reading',
  reconstruct: 'Reconstruction',
  metrics: 'Measuring',
  n_train: 'Photos fitted',
  n_test: 'Photos held out',
  psnr_test: 'Held-out photos: PSNR (dB, higher is better)',
  psnr_test_views: 'Each held-out photo (dB)',
  psnr_test_foreground: 'Held-out photos inside the masks: PSNR (dB)',
  background_pixels_test: 'Share of pixels drawn by the background',
  background_error_share_test: 'Share of the error on those pixels',
  background_model: 'Background',
};

const SECTIONS = { input: 'Mesh and fit to the input', ground_truth: 'Against the reference mesh',
  timings_s: 'Time', views: 'Photos' };

function value(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return v.toLocaleString('en');
    return Math.abs(v) >= 1000 || Math.abs(v) < 1e-3 ? v.toExponential(3) : v.toPrecision(4);
  }
  return String(v);
}

function label(key) {
  return LABELS[key] || key.replace(/_/g, ' ');
}

function row(tbody, key, v, seconds) {
  const tr = tbody.insertRow();
  const th = document.createElement('th');
  th.scope = 'row';
  th.textContent = label(key);
  tr.append(th);
  tr.insertCell().textContent = seconds && typeof v === 'number' ? `${v.toFixed(2)} s` : value(v);
}

/** Fill `root` with one table per section of the metrics object. */
export function renderMetrics(root, metrics) {
  root.replaceChildren();
  if (!metrics) {
    root.innerHTML = '<p class="muted">Metrics appear when a job finishes.</p>';
    return;
  }
  const general = Object.entries(metrics).filter(([, v]) => typeof v !== 'object' || v === null);
  const groups = [['Job', Object.fromEntries(general)],
    ...Object.entries(metrics).filter(([, v]) => v && typeof v === 'object')];
  for (const [name, values] of groups) {
    const table = document.createElement('table');
    table.className = 'metrics';
    table.createCaption().textContent = SECTIONS[name] || name;
    const tbody = table.createTBody();
    for (const [k, v] of Object.entries(values)) {
      if (typeof v !== 'object' || v === null) row(tbody, k, v, name === 'timings_s');
      else if (Array.isArray(v) && v.length && v.every((x) => typeof x === 'number')) {
        row(tbody, k, v.map((x) => x.toFixed(1)).join(' / '));
      }
    }
    root.append(table);
  }
}

const KINDS = { ply: 'PLY mesh', glb: 'GLB mesh (glTF)', obj: 'OBJ mesh', stl: 'STL mesh', json: 'Metrics (JSON)' };

/** Download links; `onClick(artifact, event)` lets the page add the API key when there is one. */
export function renderDownloads(root, artifacts, onClick) {
  root.replaceChildren();
  if (!artifacts || !artifacts.length) {
    root.innerHTML = '<li class="muted">Nothing yet.</li>';
    return;
  }
  for (const a of artifacts) {
    const li = document.createElement('li');
    const link = document.createElement('a');
    link.href = a.url;
    link.download = a.name;
    link.textContent = KINDS[a.name.split('.').pop()] || a.name;
    link.addEventListener('click', (e) => onClick(a, e));
    const size = document.createElement('span');
    size.className = 'muted';
    size.textContent = ` ${a.name}, ${fmtBytes(a.size)}`;
    li.append(link, size);
    root.append(li);
  }
}
