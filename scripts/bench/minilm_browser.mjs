#!/usr/bin/env node
// MiniLM or SmolLM2 in headless Chromium: how long `load()` takes and when the first output (an embedding; a
// generated token) arrives, on a first visit (a fresh browser profile: nothing cached, served from localhost and
// through a throttled 100 Mbit/s link) and on a second visit (weights from the Cache API), for each backend the
// bundle has; next to the native runtime of the same machine (`tfc bench`; `tfc generate`). Medians of --runs
// visits. Writes docs/benchmarks/<model>-browser.json; render it with `python3 scripts/bench/render.py`. Needs what
// the browser tests need (scripts/test.sh sets it up).
//   node scripts/bench/minilm_browser.mjs [--model minilm|smollm2] [--runs 3]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CHROMIUM, MINILM, ROOT, SMOLLM2, SMOLLM2_OPTIONS, compile, launchChromium, tfc } from '../../runtime/js/test/harness.mjs';
import { serve } from '../../runtime/js/test/server.mjs';

const TEXT = { minilm: 'Hello world, this is a test.', smollm2: 'The capital of France is' };
const THROTTLED = { offline: false, latency: 20, downloadThroughput: 100e6 / 8, uploadThroughput: 20e6 / 8 };

const options = { runs: { type: 'string', default: '3' }, model: { type: 'string', default: 'minilm' } };
const { values: { runs, model: name } } = parseArgs({ options });
if (!TEXT[name]) throw new Error(`--model must be minilm or smollm2, not ${name}`);
const work = mkdtempSync(path.join(os.tmpdir(), 'tfc-bench-'));
const bundle = name === 'minilm' ? compile(MINILM, path.join(work, name)) : compile(SMOLLM2, path.join(work, name), ...SMOLLM2_OPTIONS);
const manifest = JSON.parse(readFileSync(path.join(bundle, 'manifest.json'), 'utf8'));
const server = await serve({ [`/${name}/`]: { dir: bundle } });

// One visit: a new page imports tfc.js, loads the bundle and embeds the sentence twice (or generates two tokens).
// Times in ms from the start.
async function visit(browser, backend, network) {
  const page = await browser.newPage();
  if (network) await (await page.context().newCDPSession(page)).send('Network.emulateNetworkConditions', network);
  await page.goto(`${server.url}/`);
  const result = await page.evaluate(async ([name, backend, text]) => {
    const started = performance.now();
    const { load } = await import(`/${name}/tfc.js`);
    let weights;
    const model = await load(`/${name}/`, { backend, onProgress: (p) => { if (p.fraction === 1) weights = performance.now(); } });
    const loaded = performance.now();
    const tokens = name === 'smollm2' && model.generateTokens(model.tokenizer.encode(text), { maxTokens: 2 });
    const output = () => (tokens ? tokens.next() : model.embed(text));
    await output();
    const first = performance.now();
    await output();
    const second = performance.now();
    model.dispose();
    return {
      device: model.device,
      weights_ms: weights - started,
      load_ms: loaded - started,
      first_output_ms: first - started,
      next_output_ms: second - first,
    };
  }, [name, backend, TEXT[name]]);
  await page.close();
  return result;
}

const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];
const medians = (visits) =>
  Object.fromEntries(Object.keys(visits[0]).filter((k) => k.endsWith('_ms')).map((k) => [k, median(visits.map((v) => v[k]))]));

const loadBefore = os.loadavg()[0];
const results = {};
for (const backend of manifest.wasm ? ['webgpu', 'wasm'] : ['webgpu']) {
  const visits = { cold: [], cold_100mbit: [], cached: [] };
  for (let run = 0; run < Number(runs); run++) {
    for (const [kind, network] of [['cold_100mbit', THROTTLED], ['cold', null]]) {
      const browser = await launchChromium(mkdtempSync(path.join(work, 'profile-')));
      visits[kind].push(await visit(browser, backend, network));
      if (kind === 'cold') visits.cached.push(await visit(browser, backend, null));
      await browser.close();
    }
    const first = (kind) => visits[kind].at(-1).first_output_ms.toFixed(0);
    console.error(`${backend} run ${run + 1}: first output after ${first('cold')} ms cold, ${first('cached')} ms cached`);
  }
  results[backend] = { device: visits.cold[0].device, ...Object.fromEntries(Object.entries(visits).map(([k, v]) => [k, medians(v)])) };
}

const { tokens } = JSON.parse(tfc('run', bundle, '--text', TEXT[name], '--json'));
let native;
if (name === 'minilm') {
  const bench = JSON.parse(tfc('bench', bundle, '--sequence', String(tokens.length), '--iterations', '5', '--warmup', '1'));
  native = { adapter: bench.adapter, median_ms: bench.median_ms };
} else {
  const { tokens: generated, timing } = JSON.parse(tfc('generate', bundle, '--prompt', TEXT[name], '--max-tokens', '8', '--json'));
  const decode = (1000 * (generated.length - 1)) / timing.decode_ms;
  native = { adapter: timing.device, first_token_ms: timing.first_token_ms, decode_tokens_per_s: decode };
}
const out = {
  model: name,
  chromium: execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8' }).trim(),
  cpu: `${os.cpus()[0].model}, ${os.cpus().length} cores`,
  // Other work on the machine slows the CPU-bound figures down: the 1-minute load average before and after.
  load_average: [loadBefore, os.loadavg()[0]],
  text: TEXT[name],
  tokens: tokens.length,
  weights_bytes: manifest.chunks.reduce((sum, c) => sum + c.size, 0),
  chunks: manifest.chunks.length,
  runs: Number(runs),
  native,
  browser: results,
};
writeFileSync(path.join(ROOT, `docs/benchmarks/${name}-browser.json`), `${JSON.stringify(out, null, 1)}\n`);
await server.close();
rmSync(work, { recursive: true, force: true });
console.log(JSON.stringify(out, null, 1));
