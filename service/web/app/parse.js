// Point clouds read in the browser for the preview before submission: PLY (ascii and binary),
// XYZ/TXT/PTS, OBJ, OFF and STL vertices, NPY. The server validates the file again; this is
// only what the person sees. Large clouds are subsampled evenly to at most MAX_POINTS.

export const MAX_POINTS = 200000;
/** Files above this size are not parsed in the page (they are still uploaded). */
export const MAX_PREVIEW_BYTES = 512 * 1024 * 1024;

export class ParseError extends Error {}

/** Formats the page can preview, by lower-case suffix. */
const PARSERS = {
  ply: parsePly, xyz: parseText, txt: parseText, pts: parseText, obj: parseObj, off: parseOff,
  stl: parseStl, npy: parseNpy,
};

export function suffixOf(name) {
  const i = name.lastIndexOf('.');
  return i < 0 ? '' : name.slice(i + 1).toLowerCase();
}

export function canPreview(name) {
  return suffixOf(name) in PARSERS;
}

/** {positions: Float32Array (3 per point, <= MAX_POINTS points), count, total} of an ArrayBuffer. */
export function parsePoints(name, buffer, limit = MAX_POINTS) {
  const parse = PARSERS[suffixOf(name)];
  if (!parse) throw new ParseError(`no preview for .${suffixOf(name)} files`);
  const { xyz, total } = parse(buffer, limit);
  if (total === 0) throw new ParseError('the file contains no points');
  const positions = subsample(xyz, limit);
  return { positions, count: positions.length / 3, total };
}

/** Every k-th point so that at most `limit` remain (even over the file's order). */
export function subsample(xyz, limit) {
  const n = xyz.length / 3;
  if (n <= limit) return xyz instanceof Float32Array ? xyz : Float32Array.from(xyz);
  const out = new Float32Array(limit * 3);
  for (let i = 0; i < limit; i++) {
    const j = pick(i, n, limit) * 3;
    out[i * 3] = xyz[j];
    out[i * 3 + 1] = xyz[j + 1];
    out[i * 3 + 2] = xyz[j + 2];
  }
  return out;
}

/** Index of the i-th of `limit` evenly spread picks among n items. */
function pick(i, n, limit) {
  return Math.floor((i * n) / limit);
}

function text(buffer) {
  return new TextDecoder('utf-8').decode(buffer);
}

/** The number in `token`; `line` (a number, or a function giving it: counting lines is slow,
 *  so it is only done for the error message) names the line when it is not one. */
function num(token, line) {
  const v = Number(token);
  if (token === undefined || token === '' || Number.isNaN(v)) {
    throw new ParseError(`line ${typeof line === 'function' ? line() : line}: “${token ?? ''}” is not a number`);
  }
  return v;
}

/** Start offsets of the lines of `str` for which isData(str, start) holds. Only the picked
 *  lines are split and parsed later, so a huge text file costs one scan plus <= limit lines. */
function dataLines(str, isData) {
  const starts = [];
  for (let i = 0; i < str.length;) {
    let j = str.indexOf('\n', i);
    if (j < 0) j = str.length;
    if (isData(str, i, j)) starts.push(i);
    i = j + 1;
  }
  return starts;
}

function lineAt(str, start) {
  const end = str.indexOf('\n', start);
  return str.slice(start, end < 0 ? str.length : end).trim();
}

function lineNumber(str, start) {
  let n = 1;
  for (let i = str.indexOf('\n'); i >= 0 && i < start; i = str.indexOf('\n', i + 1)) n++;
  return n;
}

/** Parse up to `limit` of the data lines, evenly spread; `row(cols, lineNo)` gives x, y, z. */
function pickLines(str, starts, limit, row) {
  const n = Math.min(starts.length, limit);
  const out = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    const start = starts[pick(i, starts.length, n)];
    const xyz = row(lineAt(str, start).split(/[\s,;]+/), () => lineNumber(str, start));
    out.set(xyz, i * 3);
  }
  return { xyz: out, total: starts.length };
}

function firstChar(str, i, j) {
  while (i < j && (str[i] === ' ' || str[i] === '\t' || str[i] === '\r')) i++;
  return i < j ? str[i] : '';
}

const NUMERIC_START = /[0-9+\-.]/;

/** Whitespace- or comma-separated columns, x y z first; comments (#, //), blank lines and a
 *  leading count line (PTS) are skipped. */
function parseText(buffer, limit) {
  const str = text(buffer);
  const starts = dataLines(str, (s, i, j) => NUMERIC_START.test(firstChar(s, i, j)));
  if (starts.length && /^\d+$/.test(lineAt(str, starts[0]))) starts.shift(); // PTS point count
  return pickLines(str, starts, limit, (cols, lineNo) => {
    if (cols.length < 3) {
      throw new ParseError(`line ${lineNo()}: expected at least 3 numbers (x y z), got ${cols.length}`);
    }
    return [num(cols[0], lineNo), num(cols[1], lineNo), num(cols[2], lineNo)];
  });
}

function parseObj(buffer, limit) {
  const str = text(buffer);
  const starts = dataLines(str, (s, i) => s[i] === 'v' && (s[i + 1] === ' ' || s[i + 1] === '\t'));
  return pickLines(str, starts, limit, (cols, lineNo) => [num(cols[1], lineNo), num(cols[2], lineNo),
    num(cols[3], lineNo)]);
}

function parseOff(buffer) {
  const lines = text(buffer).split(/\r?\n/).map((l) => l.replace(/#.*/, '').trim());
  let i = 0;
  const next = () => {
    while (i < lines.length && !lines[i]) i++;
    return i < lines.length ? lines[i++] : null;
  };
  let head = next();
  if (!head || !/^[A-Z]*OFF/.test(head)) throw new ParseError('not an OFF file (no OFF header)');
  head = head.replace(/^[A-Z]*OFF\s*/, '') || next();
  const nv = num((head || '').split(/\s+/)[0], i);
  const xyz = new Float32Array(nv * 3);
  for (let k = 0; k < nv; k++) {
    const line = next();
    if (line === null) throw new ParseError(`the file ends after ${k} of ${nv} vertices`);
    const c = line.split(/\s+/);
    xyz.set([num(c[0], i), num(c[1], i), num(c[2], i)], k * 3);
  }
  return { xyz, total: nv };
}

/** Triangle corners of a binary or ASCII STL (shared corners repeat, as in the file). */
function parseStl(buffer, limit) {
  const view = new DataView(buffer);
  if (buffer.byteLength >= 84) {
    const n = view.getUint32(80, true);
    if (84 + n * 50 === buffer.byteLength) {
      const total = n * 3;
      const m = Math.min(total, limit);
      const xyz = new Float32Array(m * 3);
      for (let i = 0; i < m; i++) {
        const corner = pick(i, total, m);
        const at = 84 + Math.floor(corner / 3) * 50 + 12 + (corner % 3) * 12;
        for (let c = 0; c < 3; c++) xyz[i * 3 + c] = view.getFloat32(at + c * 4, true);
      }
      return { xyz, total };
    }
  }
  const out = [];
  const re = /vertex\s+(\S+)\s+(\S+)\s+(\S+)/g;
  for (const m of text(buffer).matchAll(re)) out.push(num(m[1], 0), num(m[2], 0), num(m[3], 0));
  if (!out.length) throw new ParseError('no triangles found (neither binary nor ASCII STL)');
  return { xyz: out, total: out.length / 3 };
}

function parseNpy(buffer, limit) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || text(bytes.slice(1, 6)) !== 'NUMPY') throw new ParseError('not a .npy file');
  const view = new DataView(buffer);
  const major = bytes[6];
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = text(bytes.slice(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] || '').split(',').filter((x) => x.trim())
    .map(Number);
  if (/'fortran_order':\s*True/.test(header)) throw new ParseError('Fortran-ordered arrays are not previewed');
  if (shape.length !== 2 || shape[1] < 3) throw new ParseError(`expected an (N, 3) array, got (${shape})`);
  const size = { '<f4': 4, '<f8': 8 }[descr];
  if (!size) throw new ParseError(`array type ${descr} is not previewed`);
  const [n, k] = shape;
  const data = start + headerLen;
  if (data + n * k * size > buffer.byteLength) throw new ParseError('the file ends before its last row');
  const m = Math.min(n, limit);
  const xyz = new Float32Array(m * 3);
  for (let i = 0; i < m; i++) {
    const row = pick(i, n, m);
    for (let c = 0; c < 3; c++) {
      const at = data + (row * k + c) * size;
      xyz[i * 3 + c] = size === 4 ? view.getFloat32(at, true) : view.getFloat64(at, true);
    }
  }
  return { xyz, total: n };
}

// ---- PLY ---------------------------------------------------------------------------------

const PLY_TYPES = {
  char: ['Int8', 1], int8: ['Int8', 1], uchar: ['Uint8', 1], uint8: ['Uint8', 1],
  short: ['Int16', 2], int16: ['Int16', 2], ushort: ['Uint16', 2], uint16: ['Uint16', 2],
  int: ['Int32', 4], int32: ['Int32', 4], uint: ['Uint32', 4], uint32: ['Uint32', 4],
  float: ['Float32', 4], float32: ['Float32', 4], double: ['Float64', 8], float64: ['Float64', 8],
};

function plyHeader(buffer) {
  const head = text(buffer.slice(0, Math.min(buffer.byteLength, 65536)));
  if (!head.startsWith('ply')) throw new ParseError('not a PLY file (no “ply” magic)');
  const end = head.indexOf('end_header');
  if (end < 0) throw new ParseError('the PLY header has no end_header');
  const bodyStart = new TextEncoder().encode(head.slice(0, head.indexOf('\n', end) + 1)).length;
  const elements = [];
  let format = null;
  for (const raw of head.slice(0, end).split(/\r?\n/)) {
    const w = raw.trim().split(/\s+/);
    if (w[0] === 'format') format = w[1];
    else if (w[0] === 'element') elements.push({ name: w[1], count: Number(w[2]), props: [] });
    else if (w[0] === 'property' && elements.length) {
      const el = elements[elements.length - 1];
      if (w[1] === 'list') el.props.push({ name: w[4], list: true, countType: w[2], type: w[3] });
      else el.props.push({ name: w[2], type: w[1] });
    }
  }
  if (!['ascii', 'binary_little_endian', 'binary_big_endian'].includes(format)) {
    throw new ParseError(`unknown PLY format “${format}”`);
  }
  for (const el of elements) {
    for (const p of el.props) {
      if (!PLY_TYPES[p.type] || (p.list && !PLY_TYPES[p.countType])) {
        throw new ParseError(`unknown PLY property type in “${p.name}”`);
      }
    }
  }
  return { format, elements, bodyStart };
}

function parsePly(buffer, limit) {
  const { format, elements, bodyStart } = plyHeader(buffer);
  const vi = elements.findIndex((e) => e.name === 'vertex');
  if (vi < 0) throw new ParseError('the PLY file has no vertex element');
  const vertex = elements[vi];
  const axes = ['x', 'y', 'z'].map((a) => vertex.props.findIndex((p) => p.name === a));
  if (axes.some((a) => a < 0)) throw new ParseError('the PLY vertices lack x, y or z');
  const total = vertex.count;
  if (format === 'ascii') {
    const str = text(buffer.slice(bodyStart));
    const starts = dataLines(str, (s, i, j) => firstChar(s, i, j) !== '');
    const skip = elements.slice(0, vi).reduce((n, e) => n + e.count, 0);
    if (starts.length < skip + total) throw new ParseError('the PLY file ends before its last vertex');
    return pickLines(str, starts.slice(skip, skip + total), limit,
      (cols, lineNo) => axes.map((a) => num(cols[a], lineNo)));
  }
  const little = format === 'binary_little_endian';
  const view = new DataView(buffer);
  let at = bodyStart;
  const read = (type) => {
    const [kind, size] = PLY_TYPES[type];
    if (at + size > buffer.byteLength) throw new ParseError('the PLY file ends before its last vertex');
    const v = view[`get${kind}`](at, little);
    at += size;
    return v;
  };
  const skipRecord = (el) => {
    for (const p of el.props) {
      const n = p.list ? read(p.countType) : 1;
      at += n * PLY_TYPES[p.type][1];
    }
  };
  for (const el of elements.slice(0, vi)) for (let i = 0; i < el.count; i++) skipRecord(el);
  const m = Math.min(total, limit);
  const xyz = new Float32Array(m * 3);
  if (vertex.props.some((p) => p.list)) { // records of varying size: walk them all
    for (let i = 0, next = 0; i < total && next < m; i++) {
      if (i !== pick(next, total, m)) {
        skipRecord(vertex);
        continue;
      }
      vertex.props.forEach((p, j) => {
        if (p.list) {
          const n = read(p.countType); // first: `at += read()` would add to the old `at`
          at += n * PLY_TYPES[p.type][1];
          return;
        }
        const v = read(p.type);
        const c = axes.indexOf(j);
        if (c >= 0) xyz[next * 3 + c] = v;
      });
      next++;
    }
    return { xyz, total };
  }
  const offsets = [];
  let stride = 0;
  for (const p of vertex.props) {
    offsets.push(stride);
    stride += PLY_TYPES[p.type][1];
  }
  if (at + total * stride > buffer.byteLength) throw new ParseError('the PLY file ends before its last vertex');
  const base = at;
  for (let i = 0; i < m; i++) {
    const record = base + pick(i, total, m) * stride;
    for (let c = 0; c < 3; c++) {
      at = record + offsets[axes[c]];
      xyz[i * 3 + c] = read(vertex.props[axes[c]].type);
    }
  }
  return { xyz, total };
}
