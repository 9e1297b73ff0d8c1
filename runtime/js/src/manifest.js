// manifest.json (docs/bundle-format.md): checking it, evaluating its expressions, and turning a run's inputs into
// the symbol values and buffer contents every backend needs.

import { fail } from './errors.js';

const FORMAT = 'tfc-bundle';
const VERSION = 1;

// Every field of each manifest object; the optional ones are marked with '?'. A field not listed here is an error,
// as the format asks, so a bundle never runs with something this runtime would silently ignore.
const FIELDS = {
  manifest: 'format version model symbols inputs outputs buffers weights chunks shaders dispatches requires tokenizer wasm?',
  symbols: 'name max',
  inputs: 'name dtype shape buffer default?',
  outputs: 'name dtype shape buffer',
  buffers: 'kind size',
  weights: 'name dtype shape buffer pieces',
  pieces: 'chunk offset size',
  chunks: 'file size sha256',
  shaders: 'file entry_point workgroup_size',
  dispatches: 'node op shader bindings params workgroups needed_by?',
  requires: 'features limits',
  wasm: 'module shared_module kernels dispatches memory',
  wasmDispatches: 'kernel params',
};

function checkFields(what, object) {
  const fields = FIELDS[what].split(' ');
  const known = new Set(fields.map((f) => f.replace('?', '')));
  const unknown = Object.keys(object).find((k) => !known.has(k));
  const missing = fields.find((f) => !f.endsWith('?') && !(f in object));
  if (unknown) {
    invalid(`unknown field \`${unknown}\` in ${what}: this tfc.js is older than the tfc that wrote the bundle; ` +
      'use the tfc.js the bundle came with');
  }
  if (missing) invalid(`${what} lacks \`${missing}\``);
}

const invalid = (message) => fail('bad-bundle', `manifest.json: ${message}`);

/** Checks the format, version, fields and indices of a parsed manifest.json; returns it. */
export function checkManifest(m) {
  if (m?.format !== FORMAT) invalid(`not a tfc bundle manifest (format ${JSON.stringify(m?.format)})`);
  if (m.version !== VERSION) {
    invalid(`bundle format version ${m.version} is not supported by this tfc.js (it reads version ${VERSION}); ` +
      'use the tfc.js that came with the bundle');
  }
  checkFields('manifest', m);
  checkFields('requires', m.requires);
  for (const list of ['symbols', 'inputs', 'outputs', 'buffers', 'weights', 'chunks', 'shaders', 'dispatches']) {
    for (const item of m[list]) checkFields(list, item);
  }
  const buffer = (i) => Number.isInteger(i) && i >= 0 && i < m.buffers.length;
  for (const io of [...m.inputs, ...m.outputs]) {
    if (!buffer(io.buffer)) invalid(`\`${io.name}\` names buffer ${io.buffer}, which does not exist`);
  }
  for (const w of m.weights) {
    for (const p of w.pieces) checkFields('pieces', p);
    if (!buffer(w.buffer) || w.pieces.some((p) => !m.chunks[p.chunk])) invalid(`weight \`${w.name}\` names a missing buffer or chunk`);
  }
  for (const d of m.dispatches) {
    if (!m.shaders[d.shader] || !d.bindings.every(buffer)) invalid(`dispatch \`${d.node}\` names a missing shader or buffer`);
  }
  if (m.wasm) {
    checkFields('wasm', m.wasm);
    for (const d of m.wasm.dispatches) checkFields('wasmDispatches', d);
    if (m.wasm.dispatches.length !== m.dispatches.length || m.wasm.dispatches.some((d) => !m.wasm.kernels[d.kernel])) {
      invalid('the wasm section does not match the dispatches');
    }
  }
  return m;
}

/** The value of a manifest expression with the symbols in `env`. */
export function evaluate(e, env) {
  if (typeof e === 'number') return e;
  if (typeof e === 'string') return env[e] ?? invalid(`the symbol \`${e}\` has no value (no input binds it)`);
  const [op, ...args] = e;
  const v = args.map((a) => evaluate(a, env));
  switch (op) {
    case 'add': return v.reduce((a, b) => a + b, 0);
    case 'mul': return v.reduce((a, b) => a * b, 1);
    case 'max': return Math.max(...v);
    case 'sub': return v[0] >= v[1] ? v[0] - v[1] : invalid(`${JSON.stringify(e)} is negative (${v[0]} - ${v[1]})`);
    case 'ceil_div': return Math.ceil(v[0] / v[1]);
    default: return invalid(`unknown expression operator \`${op}\``);
  }
}

const inputError = (message) => fail('input', message);

/** Binds the symbols from the shapes of the given inputs like the native runtime, starting from `fixed` (symbols
 * no input shows): a dimension that is a bare symbol binds it, every other one is then checked, and each value must
 * lie in 1..max (0..max for the fixed ones). */
function bindSymbols(manifest, given, fixed) {
  const env = { ...fixed };
  for (const [decl, tensor] of given) {
    if (tensor.shape.length !== decl.shape.length) {
      inputError(`input \`${decl.name}\` must have rank ${decl.shape.length}, got shape [${tensor.shape}]`);
    }
    decl.shape.forEach((d, i) => {
      if (typeof d !== 'string') return;
      if (d in env && env[d] !== tensor.shape[i]) {
        inputError(`input \`${decl.name}\` gives \`${d}\` = ${tensor.shape[i]}, but an earlier input gave ${env[d]}`);
      }
      env[d] = tensor.shape[i];
    });
  }
  for (const [decl, tensor] of given) {
    decl.shape.forEach((d, i) => {
      const want = evaluate(d, env);
      if (want !== tensor.shape[i]) {
        inputError(`input \`${decl.name}\` has shape [${tensor.shape}], but its dimension ${JSON.stringify(d)} must be ${want}`);
      }
    });
  }
  for (const { name, max } of manifest.symbols) {
    if (!(name in env)) continue;
    if (env[name] < 1 && !(name in fixed)) inputError(`\`${name}\` must be at least 1`);
    if (env[name] > max) inputError(`\`${name}\` = ${env[name]} is more than this model's limit of ${max}`);
  }
  return env;
}

// An input's values as its storage type; integer ids may come as numbers or bigints and must fit in i32.
function toStorage(decl, data) {
  if (decl.dtype === 'f32') return Float32Array.from(data, Number);
  if (decl.dtype !== 'i32') inputError(`input \`${decl.name}\` has storage type ${decl.dtype}, which tfc.js cannot feed`);
  if (data instanceof Int32Array) return data;
  return Int32Array.from(data, (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < -(2 ** 31) || n >= 2 ** 31) inputError(`input \`${decl.name}\`: ${v} is not an i32`);
    return n;
  });
}

// Positions count from `past`, the tokens already in a decoder's KV cache.
function defaultInput(decl, shape, past) {
  const count = shape.reduce((a, b) => a * b, 1);
  const values = decl.dtype === 'f32' ? new Float32Array(count) : new Int32Array(count);
  const last = shape[shape.length - 1] ?? 1;
  if (decl.default === 'ones') values.fill(1);
  if (decl.default === 'positions') values.forEach((_, i) => { values[i] = past + (i % last); });
  return values;
}

/**
 * Checks a run's inputs ({name: {data, shape}}) against the manifest, fills in defaults, and returns the symbol
 * values and every input's buffer index and typed array. `symbols` gives symbols that no input shows: a decoder's
 * `past` (tokens already in its KV cache) is 0 unless given, so that a run covers a whole sequence, as in `tfc run`.
 */
export function prepareInputs(manifest, inputs, symbols = {}) {
  for (const name of Object.keys(inputs)) {
    if (!manifest.inputs.some((i) => i.name === name)) {
      inputError(`the model has no input \`${name}\` (its inputs: ${manifest.inputs.map((i) => i.name).join(', ')})`);
    }
  }
  const given = manifest.inputs.filter((d) => inputs[d.name]).map((d) => [d, inputs[d.name]]);
  for (const [decl, { data, shape }] of given) {
    if (!Array.isArray(shape) || data?.length !== shape.reduce((a, b) => a * b, 1)) {
      inputError(`input \`${decl.name}\` needs {data, shape} with data.length equal to the product of shape`);
    }
  }
  const fixed = manifest.symbols.some((s) => s.name === 'past') ? { past: 0, ...symbols } : symbols;
  const env = bindSymbols(manifest, given, fixed);
  const values = manifest.inputs.map((decl) => {
    const shape = decl.shape.map((d) => evaluate(d, env));
    if (inputs[decl.name]) return { buffer: decl.buffer, data: toStorage(decl, inputs[decl.name].data) };
    if (!decl.default) inputError(`input \`${decl.name}\` is required`);
    return { buffer: decl.buffer, data: defaultInput(decl, shape, env.past ?? 0) };
  });
  return { env, values };
}

/** The outputs named in `wanted` (all of them if it is not given), in manifest order, with their indices. */
export function wantedOutputs(manifest, wanted) {
  const unknown = wanted?.find((name) => !manifest.outputs.some((o) => o.name === name));
  if (unknown) inputError(`the model has no output \`${unknown}\` (its outputs: ${manifest.outputs.map((o) => o.name).join(', ')})`);
  return manifest.outputs.map((o, index) => ({ ...o, index })).filter((o) => !wanted || wanted.includes(o.name));
}

/** Whether a dispatch is needed for the `selected` outputs (see `needed_by`). */
export const isNeeded = (dispatch, selected) => !dispatch.needed_by || selected.some((o) => dispatch.needed_by.includes(o.index));
