// Job-list thumbnails, drawn in the page: one small offscreen three.js renderer draws each
// finished job's mesh once, and the PNG is kept in localStorage under the mesh's sha256
// (artifacts never change, so a thumbnail never goes stale). Drawn one at a time.

import { fetchArtifact } from './api.js';

const SIZE = 96;
const MAX_BYTES = 16 * 1024 * 1024; // larger meshes get no thumbnail rather than a long download
const PREFIX = 'surfrecon.thumb.';
const ORDER = ['ply', 'glb', 'stl', 'obj'];

let viewer = null;
let queue = Promise.resolve();

/** The mesh artifact the page draws for a job: the first of ORDER it has. */
export function meshArtifact(job) {
  for (const fmt of ORDER) {
    const a = (job.artifacts || []).find((x) => x.name === `mesh.${fmt}`);
    if (a) return { ...a, format: fmt };
  }
  return null;
}

/** A PNG data URL for the job's mesh, or null; cached, and queued behind earlier requests. */
export function thumbnail(job) {
  const art = meshArtifact(job);
  if (!art || art.size > MAX_BYTES) return Promise.resolve(null);
  const cached = localStorage.getItem(PREFIX + art.sha256);
  if (cached) return Promise.resolve(cached);
  const run = queue.then(() => draw(art)).catch(() => null);
  queue = run;
  return run;
}

async function draw(art) {
  const { Viewer, meshGeometry } = await import('./viewer.js');
  viewer ||= new Viewer(null, { width: SIZE, height: SIZE, preserveDrawingBuffer: true, controls: false });
  viewer.setMesh(await meshGeometry(await fetchArtifact(art.url), art.format));
  const url = viewer.renderer.domElement.toDataURL('image/png');
  viewer.setMesh(null);
  try {
    localStorage.setItem(PREFIX + art.sha256, url);
  } catch {
    forgetAll();
  }
  return url;
}

/** Storage is full: drop every cached thumbnail (they are cheap to redraw). */
function forgetAll() {
  for (const k of Object.keys(localStorage)) if (k.startsWith(PREFIX)) localStorage.removeItem(k);
}
