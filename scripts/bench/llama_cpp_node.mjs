// Decoding speed of llama.cpp's CPU build on one thread, through node-llama-cpp (its prebuilt binaries for Node):
//   node llama_cpp_node.mjs PACKAGE_DIR MODEL.gguf NEW_TOKENS ROUNDS
// PACKAGE_DIR is the npm prefix node-llama-cpp is installed under (fixtures/scripts/setup_node_llama_cpp.sh). Each
// round feeds the same short prompt to a fresh sequence and lets llama.cpp pick NEW_TOKENS tokens greedily; the
// decode rate is the tokens after the first over the time they took (the first token also pays for the prompt).
// Prints one JSON line per round: {decode_tokens_per_s, decode_ms_per_token, first_token_ms, ...}. Time is
// performance.now(), which scripts/bench/cpu_clock.mjs turns into the process's CPU time when preloaded.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [packageDir, modelPath, newTokens, rounds] = process.argv.slice(2);
const installed = resolve(packageDir, 'node_modules', 'node-llama-cpp');
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(installed, 'dist', 'index.js')).href);
const { version } = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));

const llama = await getLlama({ gpu: false, build: 'never', maxThreads: 1, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 256, batchSize: 64, threads: 1, sequences: 1 });
const prompt = model.tokenize('The capital of France is');
for (let round = 0; round < Number(rounds); round++) {
  const sequence = context.getSequence();
  const times = [];
  const started = performance.now();
  const tokens = [];
  for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
    times.push(performance.now());
    tokens.push(token);
    if (tokens.length === Number(newTokens)) break;
  }
  const decodeMs = (times[times.length - 1] - times[0]) / (times.length - 1);
  process.stdout.write(`${JSON.stringify({
    node_llama_cpp: version,
    threads: context.currentThreads,
    prompt_tokens: prompt.length,
    new_tokens: tokens.length,
    first_token_ms: times[0] - started,
    decode_ms_per_token: decodeMs,
    decode_tokens_per_s: 1000 / decodeMs,
    text: model.detokenize(tokens),
  })}\n`);
  sequence.dispose();
}
await context.dispose();
await model.dispose();
await llama.dispose();
