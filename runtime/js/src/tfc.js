// tfc.js: runs a tfc bundle in the browser (main thread or Web Worker). See docs/js-api.md and tfc.d.ts.
//   const model = await load('./dist/minilm/', { onProgress: (p) => (bar.value = p.fraction) });
//   const vector = await model.embed('Hello world');

import { TfcError, fail } from './errors.js';
import { fetchJson, loadChunks } from './loader.js';
import { Decoder, TextStream, generationOptions } from './generate.js';
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
  #generation; // the generation whose tokens are in the KV cache

  constructor(manifest, backend, tokenizer) {
    this.manifest = manifest;
    this.tokenizer = tokenizer;
    this.backend = backend.name;
    this.device = backend.description;
    this.#backend = backend;
  }

  /** Runs the graph on `inputs` ({name: {data, shape}}; inputs with a default may be left out). */
  run(inputs) {
    return this.#exclusive(() => {
      this.#generation = undefined; // a decoder's run writes its KV cache
      const { env, values } = prepareInputs(this.manifest, inputs);
      return this.#backend.run(env, values);
    });
  }

  // Runs `job` after the runs before it.
  #exclusive(job) {
    const done = this.#queue.then(() => {
      if (!this.#backend) fail('disposed', 'this model was disposed; load it again');
      return job();
    });
    this.#queue = done.catch(() => {});
    return done;
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

  /**
   * Text generation on a decoder: the pieces of text after `prompt` (a string, tokenized with the model's special
   * tokens, or token ids), as they are produced. Options as in `tfc generate` (docs/js-api.md), plus `stop` strings.
   */
  generate(prompt, options = {}) {
    const settings = generationOptions(options);
    const stream = this.#textStream(settings.stop);
    const ids = typeof prompt === 'string' ? this.tokenizer.encode(prompt) : Array.from(prompt, Number);
    return this.#pieces(this.#decoder().tokens(ids, settings), stream);
  }

  async *#pieces(tokens, stream) {
    for await (const id of tokens) {
      const piece = stream.push(id);
      if (piece) yield piece;
      if (stream.stopped) return;
    }
    const rest = stream.finish();
    if (rest) yield rest;
  }

  #textStream(stop) {
    if (!this.tokenizer) {
      fail('no-tokenizer', 'this bundle has no tokenizer (its model folder had no tokenizer.json); use generateTokens() with token ids');
    }
    return new TextStream(this.tokenizer, stop);
  }

  /** The token ids that `generate` turns into text, after the prompt's ids. */
  generateTokens(promptIds, options = {}) {
    return this.#decoder().tokens(Array.from(promptIds, Number), generationOptions(options));
  }

  // A decoder for one generation: its runs are queued with the others, and fail with `interrupted` once another run
  // or generation has used the KV cache.
  #decoder() {
    if (!this.#backend) fail('disposed', 'this model was disposed; load it again');
    let current;
    const run = (inputs, symbols, wanted) => this.#exclusive(() => {
      if (this.#generation !== current) {
        fail('interrupted', 'another generate() or run() used this model while this generation was going on; start it again');
      }
      const { env, values } = prepareInputs(this.manifest, inputs, symbols);
      return this.#backend.run(env, values, wanted);
    });
    const reset = () => this.#exclusive(() => {
      current = this.#generation = {};
      this.#backend.resetStates();
    });
    return new Decoder(this.manifest, run, reset);
  }

  /** Frees the GPU memory; the model cannot run afterwards. */
  dispose() {
    this.#backend?.dispose();
    this.#backend = undefined;
  }
}

export { TfcError, Tokenizer };
