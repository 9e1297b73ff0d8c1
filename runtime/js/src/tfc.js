// tfc.js: runs a tfc bundle in the browser (main thread or Web Worker). See docs/js-api.md and tfc.d.ts.
//   const model = await load('./dist/minilm/', { onProgress: (p) => (bar.value = p.fraction) });
//   const vector = await model.embed('Hello world');

import { TfcError, fail } from './errors.js';
import { fetchJson, loadChunks } from './loader.js';
import { checkManifest, prepareInputs } from './manifest.js';
import { Tokenizer } from './tokenizer.js';
import { WasmBackend, canShareMemory } from './wasm-backend.js';
import { WebGpuBackend } from './webgpu.js';

const BACKENDS = ['auto', 'webgpu', 'wasm'];

// A bundle folder's URL with the trailing slash that relative file names resolve against.
function bundleUrl(url) {
  const resolved = new URL(url, globalThis.location?.href);
  if (!resolved.pathname.endsWith('/')) resolved.pathname += '/';
  return resolved;
}

// The WASM fallback; in `auto` mode after WebGPU failed with `webgpuError`, which stays the reported error if the
// fallback cannot run either.
function openWasm(manifest, threads, webgpuError) {
  try {
    return WasmBackend.open(manifest, { threads: threads ?? (canShareMemory() ? navigator.hardwareConcurrency || 1 : 1) });
  } catch (e) {
    if (!webgpuError) throw e;
    throw new TfcError(webgpuError.code, `${webgpuError.message}; and the WASM fallback cannot run either: ${e.message}`, { cause: e });
  }
}

async function openBackend(manifest, { backend: choice = 'auto', threads }) {
  if (!BACKENDS.includes(choice)) fail('bad-option', `backend must be one of ${BACKENDS.join(', ')}, not ${JSON.stringify(choice)}`);
  if (choice === 'wasm') return openWasm(manifest, threads);
  try {
    // `auto` prefers the WASM fallback to WebGPU emulated on the CPU, which is far slower (docs/benchmarks.md).
    return await WebGpuBackend.open(manifest, { software: choice === 'webgpu' || !manifest.wasm });
  } catch (e) {
    if (choice === 'auto' && (e.code === 'webgpu-unavailable' || e.code === 'device-limits')) return openWasm(manifest, threads, e);
    throw e;
  }
}

/**
 * Loads the bundle at `url` (its folder): checks the manifest and the device, then downloads, verifies and caches
 * the weights while the kernels compile.
 */
export async function load(url, options = {}) {
  const { onProgress, cache = true } = options;
  const base = bundleUrl(url);
  const manifest = checkManifest(await fetchJson(new URL('manifest.json', base)));
  const backend = await openBackend(manifest, options);
  try {
    const [tokenizer] = await Promise.all([
      manifest.tokenizer && fetchJson(new URL(manifest.tokenizer, base)).then((json) => new Tokenizer(json)),
      backend.compile(base),
      loadChunks(base, manifest.chunks, { cache, onProgress }, (i, bytes) => backend.writeChunk(i, bytes)),
    ]);
    await backend.finish();
    return new Model(manifest, backend, tokenizer || null);
  } catch (e) {
    backend.dispose();
    throw e;
  }
}

class Model {
  #backend;
  #queue = Promise.resolve(); // runs one at a time: they share the backend's buffers

  constructor(manifest, backend, tokenizer) {
    this.manifest = manifest;
    this.tokenizer = tokenizer;
    this.backend = backend.name;
    this.device = backend.description;
    this.#backend = backend;
  }

  /** Runs the graph on `inputs` ({name: {data, shape}}; inputs with a default may be left out). */
  run(inputs) {
    const job = this.#queue.then(() => {
      if (!this.#backend) fail('disposed', 'this model was disposed; load it again');
      const { env, values } = prepareInputs(this.manifest, inputs);
      return this.#backend.run(env, values);
    });
    this.#queue = job.catch(() => {});
    return job;
  }

  /** Sentence embeddings: last_hidden_state mean-pooled over the tokens and L2-normalised. */
  async embed(text) {
    if (!this.tokenizer) {
      fail('no-tokenizer', 'this bundle has no tokenizer (its model folder had no tokenizer.json); ' +
        'tokenize the text yourself and call run()');
    }
    const output = this.manifest.outputs.find((o) => o.name === 'last_hidden_state');
    if (!output) {
      fail('not-an-encoder', `embed() needs an encoder (an output last_hidden_state); this ${this.manifest.model.architecture} ` +
        `bundle has ${this.manifest.outputs.map((o) => o.name).join(', ')}: use run()`);
    }
    const texts = Array.isArray(text) ? text : [text];
    // Texts of different lengths can share a run only if padding can be masked out.
    const masked = this.manifest.inputs.some((i) => i.name === 'attention_mask');
    const perRun = masked ? this.manifest.symbols.find((s) => s.name === 'batch')?.max ?? 1 : 1;
    const vectors = [];
    for (let i = 0; i < texts.length; i += perRun) vectors.push(...(await this.#embedBatch(texts.slice(i, i + perRun), masked)));
    return Array.isArray(text) ? vectors : vectors[0];
  }

  async #embedBatch(texts, masked) {
    const rows = texts.map((t) => this.tokenizer.encode(t));
    const length = Math.max(...rows.map((r) => r.length));
    const ids = new Int32Array(rows.length * length).fill(this.tokenizer.padId);
    const mask = new Int32Array(rows.length * length);
    rows.forEach((row, b) => {
      ids.set(row, b * length);
      mask.fill(1, b * length, b * length + row.length);
    });
    const shape = [rows.length, length];
    const inputs = { input_ids: { data: ids, shape } };
    if (masked) inputs.attention_mask = { data: mask, shape };
    const { data, shape: [, , hidden] } = (await this.run(inputs)).last_hidden_state;
    // The sum over a text's tokens, normalised: the same vector as their mean, normalised.
    return rows.map((row, b) => {
      const sum = new Float64Array(hidden);
      for (let t = 0; t < row.length; t++) {
        for (let h = 0; h < hidden; h++) sum[h] += data[(b * length + t) * hidden + h];
      }
      const norm = Math.max(Math.hypot(...sum), 1e-12);
      return Float32Array.from(sum, (v) => v / norm);
    });
  }

  /** Text generation: not in this version of tfc.js. */
  generate() {
    return fail('generation-unavailable', 'generation is not available for this bundle: this tfc.js does not ' +
      'generate text yet; use run() for the logits of a whole sequence');
  }

  /** Frees the GPU memory; the model cannot run afterwards. */
  dispose() {
    this.#backend?.dispose();
    this.#backend = undefined;
  }
}

export { TfcError, Tokenizer };
