// Runs a bundle's WASM fallback in Node with the browser's code (../src/wasm-backend.js, ../src/generate.js): this
// file only reads the bundle's files and the inputs, and writes the outputs. `tfc run/bench/generate --backend wasm`
// call it as
//   node wasm-runner.mjs BUNDLE_DIR REQUEST.json
// where the request is {threads, warmup, iterations, profile, inputs: {name: {dtype, shape, file}}, out_dir}: input
// files hold raw little-endian i32 or f32 values. It writes each output to OUT_DIR/<name>.bin and prints
// {device, times_ms, dispatch_ms, outputs: {name: {dtype, shape, file}}} as JSON; with `profile` (one thread),
// dispatch_ms holds each dispatch's median time over `iterations` more runs.
// A request {threads, generate: {prompt, options}} (prompt: token ids; options as tfc.js's generate() takes them)
// runs generation instead: it prints a line {"token": id} per generated token as soon as it is drawn, then
// {device, prompt_ms, decode_ms} (the time to the first token, and after it).

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Decoder, generationOptions } from '../src/generate.js';
import { prepareInputs } from '../src/manifest.js';
import { WasmBackend } from '../src/wasm-backend.js';

const NODE_PORT = "(() => { const { parentPort } = require('node:worker_threads'); " +
  'return { post: (m) => parentPort.postMessage(m), listen: (f) => parentPort.on(\'message\', f) }; })()';

// `spawnWorker` for Node: a worker_threads worker evaluating the source.
function nodeWorker(source) {
  const worker = new Worker(source, { eval: true });
  let handler = () => {};
  worker.on('message', (m) => handler(m));
  worker.on('error', (e) => handler({ error: e.message }));
  return { post: (m) => worker.postMessage(m), listen: (f) => { handler = f; }, terminate: () => worker.terminate() };
}

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');

async function main([bundle, requestPath]) {
  const request = JSON.parse(await readFile(requestPath, 'utf8'));
  const manifest = JSON.parse(await readFile(join(bundle, 'manifest.json'), 'utf8'));
  const backend = WasmBackend.open(manifest, { threads: request.threads, spawnWorker: nodeWorker, workerPort: NODE_PORT });
  try {
    const module = request.threads > 1 ? manifest.wasm.shared_module : manifest.wasm.module;
    await backend.instantiate(await readFile(join(bundle, module)));
    for (const [i, chunk] of manifest.chunks.entries()) {
      const bytes = new Uint8Array(await readFile(join(bundle, chunk.file)));
      const actual = hex(await crypto.subtle.digest('SHA-256', bytes));
      if (bytes.length !== chunk.size || actual !== chunk.sha256) {
        throw new Error(`weight chunk ${chunk.file} is corrupt (sha256 ${actual}, the manifest says ${chunk.sha256})`);
      }
      backend.writeChunk(i, bytes);
    }
    if (request.generate) {
      await generate(manifest, backend, request.generate);
      return;
    }
    const inputs = {};
    for (const [name, { dtype, shape, file }] of Object.entries(request.inputs)) {
      const bytes = await readFile(file);
      const Type = dtype === 'i32' ? Int32Array : Float32Array;
      inputs[name] = { data: new Type(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), shape };
    }
    const { env, values } = prepareInputs(manifest, inputs);
    const times = [];
    let outputs;
    for (let i = 0; i < request.warmup + request.iterations; i++) {
      const started = performance.now();
      outputs = await backend.run(env, values);
      if (i >= request.warmup) times.push(performance.now() - started);
    }
    const dispatchMs = [];
    if (request.profile) {
      const runs = Array.from({ length: request.iterations }, () => backend.profile(env, values).dispatchMs);
      for (let i = 0; i < manifest.dispatches.length; i++) {
        const sorted = runs.map((r) => r[i]).sort((a, b) => a - b);
        dispatchMs.push(sorted[sorted.length >> 1]);
      }
    }
    const described = {};
    for (const decl of manifest.outputs) {
      const { data, shape } = outputs[decl.name];
      const file = join(request.out_dir, `${decl.name}.bin`);
      await writeFile(file, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      described[decl.name] = { dtype: decl.dtype, shape, file };
    }
    process.stdout.write(`${JSON.stringify({ device: backend.description, times_ms: times, dispatch_ms: dispatchMs, outputs: described })}\n`);
  } finally {
    backend.dispose();
  }
}

async function generate(manifest, backend, { prompt, options }) {
  const run = (inputs, symbols, wanted) => {
    const { env, values } = prepareInputs(manifest, inputs, symbols);
    return backend.run(env, values, wanted);
  };
  const decoder = new Decoder(manifest, run, () => backend.resetStates());
  const started = performance.now();
  let first;
  for await (const token of decoder.tokens(prompt, generationOptions({ ...options, seed: BigInt(options.seed ?? 0) }))) {
    first ??= performance.now();
    process.stdout.write(`${JSON.stringify({ token })}\n`);
  }
  const ended = performance.now();
  first ??= ended;
  process.stdout.write(`${JSON.stringify({ device: backend.description, prompt_ms: first - started, decode_ms: ended - first })}\n`);
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
});
