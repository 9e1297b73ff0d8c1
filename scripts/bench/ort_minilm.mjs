// Times all-MiniLM-L6-v2 on onnxruntime-web's WASM backend (SIMD, one thread) in Node, with the inputs of
// `tfc bench`: batch 1, token ids 1000 + (7i mod 1000), attention mask ones, token types zeros. Prints JSON.
// Usage: node scripts/bench/ort_minilm.mjs ORT_PREFIX MODEL.onnx SEQUENCE WARMUP ITERATIONS
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

const [prefix, modelPath, sequence, warmup, iterations] = process.argv.slice(2);
const require = createRequire(join(resolve(prefix), 'package.json'));
const ort = require('onnxruntime-web');
ort.env.wasm.numThreads = 1;

const session = await ort.InferenceSession.create(await readFile(modelPath), { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
const n = Number(sequence);
const ids = BigInt64Array.from({ length: n }, (_, i) => BigInt(1000 + ((i * 7) % 1000)));
const feeds = {
  input_ids: new ort.Tensor('int64', ids, [1, n]),
  attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
  token_type_ids: new ort.Tensor('int64', new BigInt64Array(n), [1, n]),
};
const times = [];
for (let i = 0; i < Number(warmup) + Number(iterations); i++) {
  const started = performance.now();
  const { last_hidden_state: out } = await session.run(feeds);
  out.getData();
  if (i >= Number(warmup)) times.push(performance.now() - started);
}
times.sort((a, b) => a - b);
const { version } = JSON.parse(await readFile(join(resolve(prefix), 'node_modules/onnxruntime-web/package.json'), 'utf8'));
console.log(JSON.stringify({ onnxruntime_web: version, threads: 1, sequence: n, iterations: times.length, median_ms: times[times.length >> 1], min_ms: times[0] }));
