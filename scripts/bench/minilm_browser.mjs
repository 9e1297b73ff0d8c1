#!/usr/bin/env node
// MiniLM in headless Chromium: how long `load()` takes and when the first embedding arrives, on a first visit
// (a fresh browser profile: nothing cached, served from localhost and through a throttled 100 Mbit/s link) and on a
// second visit (weights from the Cache API), for each backend the bundle has; next to `tfc bench` on the native
// runtime of the same machine. Medians of --runs visits. Writes docs/benchmarks/minilm-browser.json; render it with
// `python3 scripts/bench/render.py`. Needs what the browser tests need (scripts/test.sh sets it up).
//   node scripts/bench/minilm_browser.mjs [--runs 3]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CHROMIUM, MINILM, ROOT, compile, launchChromium, tfc } from '../../runtime/js/test/harness.mjs';
import { serve } from '../../runtime/js/test/server.mjs';

const SENTENCE = 'Hello world, this is a test.';
const THROTTLED = { offline: false, latency: 20, downloadThroughput: 100e6 / 8, uploadThroughput: 20e6 / 8 };

const { values: { runs } } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
const work = mkdtempSync(path.join(os.tmpdir(), 'tfc-bench-'));
const bundle = compile(MINILM, path.join(work, 'minilm'));
const manifest = JSON.parse(readFileSync(path.join(bundle, 'manifest.json'), 'utf8'));
const server = await serve({ '/minilm/': { dir: bundle } });

// One visit: a new page imports tfc.js, loads the bundle and embeds the sentence twice. Times in ms from the start.
async function visit(browser, backend, network) {
  const page = await browser.newPage();
  if (network) await (await page.context().newCDPSession(page)).send('Network.emulateNetworkConditions', network);
  await page.goto(`${server.url}/`);
  const result = await page.evaluate(async ([backend, sentence]) => {
    const started = performance.now();
    const { load } = await import('/minilm/tfc.js');
    let weights;
    const model = await load('/minilm/', { backend, onProgress: (p) => { if (p.fraction === 1) weights = performance.now(); } });
    const loaded = performance.now();
    await model.embed(sentence);
    const first = performance.now();
    await model.embed(sentence);
    const second = performance.now();
    model.dispose();
    return {
      device: model.device,
      weights_ms: weights - started,
      load_ms: loaded - started,
      first_output_ms: first - started,
      next_output_ms: second - first,
    };
  }, [backend, SENTENCE]);
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

const { tokens } = JSON.parse(tfc('run', bundle, '--text', SENTENCE, '--json'));
const bench = JSON.parse(tfc('bench', bundle, '--sequence', String(tokens.length), '--iterations', '5', '--warmup', '1'));
const out = {
  chromium: execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8' }).trim(),
  cpu: `${os.cpus()[0].model}, ${os.cpus().length} cores`,
  // Other work on the machine slows the CPU-bound figures down: the 1-minute load average before and after.
  load_average: [loadBefore, os.loadavg()[0]],
  sentence: SENTENCE,
  tokens: tokens.length,
  weights_bytes: manifest.chunks.reduce((sum, c) => sum + c.size, 0),
  chunks: manifest.chunks.length,
  runs: Number(runs),
  native: { adapter: bench.adapter, median_ms: bench.median_ms },
  browser: results,
};
writeFileSync(path.join(ROOT, 'docs/benchmarks/minilm-browser.json'), `${JSON.stringify(out, null, 1)}\n`);
await server.close();
rmSync(work, { recursive: true, force: true });
console.log(JSON.stringify(out, null, 1));
