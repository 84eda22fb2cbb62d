// Reads a picked file off the page's thread, so that a large cloud does not freeze the page.
// In: {file}. Out: {ok: true, positions, count, total} or {ok: false, message}.

import { parsePoints } from './parse.js';

self.onmessage = async ({ data: { file } }) => {
  try {
    const cloud = parsePoints(file.name, await file.arrayBuffer());
    self.postMessage({ ok: true, ...cloud }, [cloud.positions.buffer]);
  } catch (err) {
    self.postMessage({ ok: false, message: err.message });
  }
};
