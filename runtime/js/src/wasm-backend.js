// The WASM SIMD backend: runs a bundle's dispatch schedule on the CPU with the bundle's fallback module
// (docs/bundle-format.md, "WASM fallback"). Every buffer lives in one linear memory laid out as that section says;
// each dispatch is one call of its kernel with the byte offsets of its bindings and params. With threads
// (SharedArrayBuffer and workers: a cross-origin isolated page, or Node's worker_threads) every worker calls every
// kernel with its thread index, and a barrier in shared memory separates the dispatches; kernels split their
// output so that the results are the same bits for any thread count.
//
// Nothing here is specific to a browser or to Node: a host that wants threads passes `spawnWorker`, which starts a
// worker running the given JavaScript source (see `browserWorkers` below and runtime/js/node/wasm-runner.mjs).

import { fail } from './errors.js';
import { evaluate, isNeeded, wantedOutputs } from './manifest.js';

const CONTROL_BYTES = 64;
const ALIGN = 64;
const SLACK = 16;
const PAGE = 65536;
const MAX_PAGES = 65536;

const alignUp = (n, multiple) => Math.ceil(n / multiple) * multiple;
// Where a buffer kind goes: weights first, then states (both independent of the symbols), then the rest.
const PLACE = { weight: 0, state: 1, input: 2, activation: 2 };

/**
 * Byte offsets of the buffers (sizes evaluated with `env`) and of each dispatch's params, where the buffers that
 * depend on the symbols begin (`fixedEnd`), and the end.
 */
function wasmLayout(manifest, env) {
  const buffers = new Array(manifest.buffers.length);
  let at = CONTROL_BYTES;
  let fixedEnd = at;
  for (let group = 0; group < 3; group++) {
    if (group === 2) fixedEnd = at;
    manifest.buffers.forEach((b, i) => {
      if (PLACE[b.kind] !== group) return;
      buffers[i] = at;
      at = alignUp(at + evaluate(b.size, env) + SLACK, ALIGN);
    });
  }
  const params = manifest.wasm.dispatches.map((d) => {
    const offset = at;
    at += 4 * d.params.length;
    return offset;
  });
  return { buffers, params, fixedEnd, end: at + SLACK };
}

// Runs the dispatches of `plan` ([kernel export name, argument list] each) as thread `thread` of `threads`, calling
// `barrier()` between them. Also the core of every worker, so it refers to nothing outside itself.
function runPlan(exports, plan, thread, threads, barrier) {
  for (let i = 0; i < plan.length; i++) {
    if (i > 0) barrier();
    const [kernel, args] = plan[i];
    exports[kernel](...args, thread, threads);
  }
}

// A worker's life: instantiate the shared-memory module, then run every plan it is sent and report back. The
// barrier is a counter and a generation word at the start of memory; waiting spins briefly before sleeping.
function workerMain(port) {
  let exports, control, thread, threads;
  const barrier = () => {
    const generation = Atomics.load(control, 1);
    if (Atomics.add(control, 0, 1) === threads - 1) {
      Atomics.store(control, 0, 0);
      Atomics.add(control, 1, 1);
      Atomics.notify(control, 1);
      return;
    }
    for (let spin = 0; spin < 20000 && Atomics.load(control, 1) === generation; spin++);
    while (Atomics.load(control, 1) === generation) Atomics.wait(control, 1, generation);
  };
  port.listen(async (message) => {
    try {
      if (message.module) {
        ({ thread, threads } = message);
        const instance = await WebAssembly.instantiate(message.module, { env: { memory: message.memory } });
        exports = instance.exports;
        control = new Int32Array(message.memory.buffer, 0, 4);
        port.post({ ready: true });
        return;
      }
      Atomics.load(control, 2); // pairs with the main thread's store: the inputs and params are visible
      runPlan(exports, message.plan, thread, threads, barrier);
      barrier();
      port.post({ done: true });
    } catch (e) {
      port.post({ error: String(e?.message ?? e) });
    }
  });
}

/** The worker source for `spawnWorker`: the functions above, started on `port` (an object with post and listen). */
export function workerSource(portExpression) {
  return `${runPlan}\n${workerMain}\nworkerMain(${portExpression});\n`;
}

/** `spawnWorker` for browsers: a module-less worker from a Blob of the source. */
export function browserWorkers(source) {
  const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
  const worker = new Worker(url);
  URL.revokeObjectURL(url);
  return {
    post: (message) => worker.postMessage(message),
    listen: (handler) => { worker.onmessage = (event) => handler(event.data); },
    terminate: () => worker.terminate(),
  };
}

const BROWSER_PORT = '{ post: (m) => self.postMessage(m), listen: (f) => { self.onmessage = (e) => f(e.data); } }';

/** Whether this context can share memory with workers (cross-origin isolated, or not a browser page). */
export function canShareMemory() {
  return typeof SharedArrayBuffer === 'function' && globalThis.crossOriginIsolated !== false && typeof Atomics === 'object';
}

export class WasmBackend {
  /**
   * Prepares the fallback of a bundle. `threads`: how many threads compute (1 runs on the calling thread; more need
   * shared memory, see `canShareMemory`). `spawnWorker(source)` starts a worker running `source` (default: a Blob
   * worker in browsers) and returns {post, listen, terminate}; the source gets its port from `workerPort`.
   */
  static open(manifest, { threads = 1, spawnWorker, workerPort = BROWSER_PORT } = {}) {
    if (!manifest.wasm) {
      fail('wasm-unavailable', 'this bundle has no WASM fallback (compile it with --target webgpu,wasm; the compile notes say why it was left out)');
    }
    if (!Number.isInteger(threads) || threads < 1) fail('bad-option', `threads must be a positive integer, not ${threads}`);
    if (threads > 1 && !canShareMemory()) {
      fail('wasm-unavailable', 'WASM threads need SharedArrayBuffer, which browsers offer only to cross-origin ' +
        'isolated pages (served with COOP: same-origin and COEP: require-corp); use threads: 1');
    }
    return new WasmBackend(manifest, threads, spawnWorker ?? ((source) => browserWorkers(source)), workerPort);
  }

  constructor(manifest, threads, spawnWorker, workerPort) {
    this.name = 'wasm';
    this.description = `WebAssembly SIMD128, ${threads} thread${threads > 1 ? 's' : ''}`;
    this.manifest = manifest;
    this.threads = threads;
    this.spawnWorker = spawnWorker;
    this.workerPort = workerPort;
    // Weights and states keep their place for every run (here laid out at the symbols' maxima); the memory grows
    // for the rest when a run needs it.
    this.maxima = Object.fromEntries(manifest.symbols.map((s) => [s.name, s.max]));
    const fixed = wasmLayout(manifest, this.maxima);
    this.offsets = fixed.buffers;
    const maxPages = Math.min(MAX_PAGES, Math.ceil(manifest.wasm.memory / PAGE));
    this.memory = new WebAssembly.Memory({ initial: Math.ceil(fixed.fixedEnd / PAGE), maximum: maxPages, shared: threads > 1 });
    // Where each piece of each chunk goes: [byte offset in memory, piece].
    this.pieces = manifest.chunks.map(() => []);
    for (const w of manifest.weights) {
      let at = this.offsets[w.buffer];
      for (const piece of w.pieces) {
        this.pieces[piece.chunk].push([at, piece]);
        at += piece.size;
      }
    }
  }

  /** Fetches the module from the bundle folder `base` and instantiates it. */
  async compile(base) {
    const file = this.threads > 1 ? this.manifest.wasm.shared_module : this.manifest.wasm.module;
    const url = new URL(file, base);
    let bytes;
    try {
      const response = await fetch(url);
      if (!response.ok) fail('network', `${url}: HTTP ${response.status}; check that the bundle folder was copied to the server completely`);
      bytes = await response.arrayBuffer();
    } catch (e) {
      if (e.code) throw e;
      fail('network', `${url} could not be downloaded (${e.message}); check the connection and load again`, e);
    }
    await this.instantiate(bytes);
  }

  /** Compiles the module's bytes (the shared-memory variant when running threads) and starts the workers. */
  async instantiate(bytes) {
    let module;
    try {
      module = await WebAssembly.compile(bytes);
    } catch (e) {
      fail('wasm-unavailable', `this browser cannot compile the WASM fallback (it needs SIMD128${this.threads > 1 ? ' and threads' : ''}): ${e.message}`, e);
    }
    if (this.threads === 1) {
      this.exports = (await WebAssembly.instantiate(module, { env: { memory: this.memory } })).exports;
      return;
    }
    const source = workerSource(this.workerPort);
    this.workers = Array.from({ length: this.threads }, () => this.spawnWorker(source));
    await Promise.all(this.workers.map((worker, thread) => new Promise((resolve, reject) => {
      worker.listen((message) => (message.error ? reject(new Error(message.error)) : resolve()));
      worker.post({ module, memory: this.memory, thread, threads: this.threads });
    }))).catch((e) => fail('wasm-unavailable', `a WASM worker could not start: ${e.message}`, e));
  }

  /** Copies the weight pieces of chunk `index` into their buffers. */
  writeChunk(index, bytes) {
    const memory = new Uint8Array(this.memory.buffer);
    for (const [at, piece] of this.pieces[index]) memory.set(bytes.subarray(piece.offset, piece.offset + piece.size), at);
  }

  async finish() {}

  /** Zeroes the state buffers (a decoder's KV cache); they keep their place for every run. */
  resetStates() {
    const bytes = new Uint8Array(this.memory.buffer);
    this.manifest.buffers.forEach((b, i) => {
      if (b.kind === 'state') bytes.fill(0, this.offsets[i], this.offsets[i] + evaluate(b.size, this.maxima));
    });
  }

  /**
   * Runs the dispatches on the inputs ([{buffer, data}], typed arrays) and returns the outputs named in `wanted` (all
   * if not given) by name; dispatches that none of them needs are skipped.
   */
  async run(env, values, wanted) {
    const plan = this.#load(env, values, wanted);
    if (this.threads === 1) this.#runHere(plan, () => {});
    else await this.#runOnWorkers(plan);
    return this.#outputs();
  }

  /** Like `run` on one thread, timing each dispatch: {outputs, dispatchMs} (milliseconds, in manifest order). */
  profile(env, values) {
    if (this.threads !== 1) fail('bad-option', 'profiles are taken with threads: 1');
    const plan = this.#load(env, values);
    const dispatchMs = [];
    let last = performance.now();
    const lap = () => {
      const now = performance.now();
      dispatchMs.push(now - last);
      last = now;
    };
    this.#runHere(plan, lap);
    lap();
    return { outputs: this.#outputs(), dispatchMs };
  }

  // Lays out memory for `env` if it changed, writes the inputs, and returns the plan of kernel calls.
  #load(env, values, wanted) {
    if (this.broken) fail('wasm-failed', `an earlier run failed (${this.broken}); load the model again`);
    const key = JSON.stringify([Object.entries(env).sort(), wanted]);
    if (this.prepared?.key !== key) this.prepared = { key, ...this.#prepare(env, wanted) };
    const bytes = new Uint8Array(this.memory.buffer);
    for (const { buffer, data } of values) bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), this.offsets[buffer]);
    return this.prepared.plan;
  }

  #runHere(plan, between) {
    try {
      runPlan(this.exports, plan, 0, 1, between);
    } catch (e) {
      this.broken = e.message;
      fail('wasm-failed', `the WASM fallback failed: ${e.message}`, e);
    }
  }

  #outputs() {
    const result = {};
    for (const { decl, shape, count } of this.prepared.outputs) {
      const Type = decl.dtype === 'i32' ? Int32Array : Float32Array;
      result[decl.name] = { data: new Type(new Type(this.memory.buffer, this.offsets[decl.buffer], count)), shape };
    }
    return result;
  }

  #runOnWorkers(plan) {
    const control = new Int32Array(this.memory.buffer, 0, 4);
    Atomics.add(control, 2, 1); // publishes the inputs and params written before it
    let pending = this.threads;
    return new Promise((resolve, reject) => {
      this.workers.forEach((worker) => {
        worker.listen((message) => {
          if (message.error) {
            // The others may wait at a barrier for it forever: stop them all.
            this.broken = message.error;
            this.dispose();
            reject(new Error(message.error));
          } else if (--pending === 0) {
            Atomics.load(control, 1); // the generation of the workers' last barrier: their outputs are visible
            resolve();
          }
        });
        worker.post({ plan });
      });
    }).catch((e) => fail('wasm-failed', `the WASM fallback failed: ${e.message}`, e));
  }

  // Lays out the buffers for the symbol values `env` (growing the memory if needed), writes every dispatch's params,
  // and builds the plan of the kernel calls that the `wanted` outputs need.
  #prepare(env, wanted) {
    const { manifest } = this;
    const layout = wasmLayout(manifest, env);
    const pages = Math.ceil(layout.end / PAGE);
    const have = this.memory.buffer.byteLength / PAGE;
    if (pages > have) {
      try {
        this.memory.grow(pages - have);
      } catch (e) {
        fail('device-limits', `the WASM fallback needs ${(layout.end / 2 ** 20).toFixed(1)} MiB of memory for these inputs, which this browser refused; use shorter inputs or a smaller batch`, e);
      }
    }
    this.offsets = layout.buffers;
    const words = new Uint32Array(this.memory.buffer);
    const selected = wantedOutputs(manifest, wanted);
    const plan = manifest.dispatches.flatMap((d, i) => {
      const { kernel, params } = manifest.wasm.dispatches[i];
      params.forEach((p, k) => {
        const v = evaluate(p, env);
        if (v > 0xffffffff) fail('input', `${d.node}: a size (${v}) does not fit in 32 bits; use shorter inputs`);
        words[layout.params[i] / 4 + k] = v;
      });
      if (!isNeeded(d, selected)) return [];
      return [[manifest.wasm.kernels[kernel], [...d.bindings.map((b) => layout.buffers[b]), layout.params[i]]]];
    });
    const outputs = selected.map((decl) => {
      const shape = decl.shape.map((d) => evaluate(d, env));
      return { decl, shape, count: shape.reduce((a, b) => a * b, 1) };
    });
    return { plan, outputs };
  }

  dispose() {
    for (const worker of this.workers ?? []) worker.terminate();
    this.workers = undefined;
    this.exports = undefined;
  }
}
