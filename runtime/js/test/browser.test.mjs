// tfc.js in headless Chromium against bundles compiled by this checkout's tfc and served from localhost: results
// equal the native runtime's, the Cache API spares downloads, bad chunks and devices fail clearly, the demo pages
// work. WebGPU runs on SwiftShader here (CPU), so the MiniLM cases take a few minutes, and SmolLM2 generates only
// two tokens on WebGPU (about 90 s each) but 16 on WASM.
//   cargo build --release -p tfc-cli && node --test runtime/js/test/browser.test.mjs
// TFC_SCREENSHOTS=docs/images saves the demo pages' screenshots there; TFC picks another tfc binary.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { MINILM, ROOT, SMOLLM2, SMOLLM2_OPTIONS, compile, launchChromium, meanPooled, relativeL2, runNative } from './harness.mjs';
import { serve } from './server.mjs';

const SENTENCES = ['Hello world, this is a test.', 'A man is playing a guitar.', 'Café au lait — 東京 🚀 naïve résumé'];
const TOKENS = [1, 7, 42, 3, 99, 255];
const TOLERANCE = 1e-4;

const manifestOf = (bundle) => JSON.parse(readFileSync(path.join(bundle, 'manifest.json')));
// SmolLM2's greedy tokens from the native runtime (cli/tests/wasm.rs checks that it still gives them).
const GREEDY = JSON.parse(readFileSync(new URL('fixtures/smollm2-greedy.json', import.meta.url))).cases;

let work;
let server;
let browser;
const bundles = {};
const native = {};

// MiniLM with one weight changed: a new version of the model that shares all other chunks with the first.
function editedMiniLM(dir) {
  mkdirSync(dir);
  for (const file of readdirSync(MINILM)) {
    if (file !== 'model.safetensors') symlinkSync(path.join(MINILM, file), path.join(dir, file));
  }
  const bytes = readFileSync(path.join(MINILM, 'model.safetensors'));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const tensor = JSON.parse(bytes.toString('utf8', 8, 8 + headerLength))['encoder.layer.5.output.LayerNorm.bias'];
  bytes[8 + headerLength + tensor.data_offsets[0]] ^= 1;
  writeFileSync(path.join(dir, 'model.safetensors'), bytes);
  return dir;
}

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'tfc-browser-'));
  bundles.minilm = compile(MINILM, path.join(work, 'minilm'));
  bundles.edited = compile(editedMiniLM(path.join(work, 'minilm-edited-model')), path.join(work, 'minilm-edited'));
  bundles.llama = compile(path.join(ROOT, 'fixtures/models/tiny-llama'), path.join(work, 'tiny-llama'));
  bundles.smollm2 = compile(SMOLLM2, path.join(work, 'smollm2'), ...SMOLLM2_OPTIONS);
  native.embeddings = SENTENCES.map((s, i) => {
    const { tokens, outputs } = runNative(bundles.minilm, path.join(work, `native-${i}`), '--text', s);
    return { tokens, vector: meanPooled(outputs.last_hidden_state) };
  });
  native.logits = runNative(bundles.llama, path.join(work, 'native-llama'), '--tokens', TOKENS.join(',')).outputs.logits.data;

  // Bundles as if they needed more than any GPU has: MiniLM with its WASM fallback, tiny-llama without one.
  const needMore = (manifest) => {
    manifest.requires.limits.maxStorageBufferBindingSize = 2 ** 40;
    manifest.requires.features.push('shader-f16');
    return Buffer.from(JSON.stringify(manifest));
  };
  const fallback = needMore(manifestOf(bundles.minilm));
  const demanding = needMore({ ...manifestOf(bundles.llama), wasm: undefined });
  const corrupted = manifestOf(bundles.minilm).chunks[0].file;
  const flipByte = (bytes, at) => Buffer.concat([bytes.subarray(0, at), Buffer.from([bytes[at] ^ 1]), bytes.subarray(at + 1)]);
  server = await serve({
    '/minilm/': { dir: bundles.minilm },
    '/minilm-edited/': { dir: bundles.edited },
    '/corrupt/': {
      dir: bundles.minilm,
      hook: (file, bytes) => file === corrupted && flipByte(bytes, 100),
    },
    '/flaky/': { dir: bundles.llama, hook: (file, bytes, nth) => file.startsWith('weights/') && nth === 1 && 'cut' },
    '/demanding/': { dir: bundles.llama, hook: (file) => file === 'manifest.json' && demanding },
    '/fallback/': { dir: bundles.minilm, hook: (file) => file === 'manifest.json' && fallback },
    '/tiny-llama/': { dir: bundles.llama },
    '/smollm2/': { dir: bundles.smollm2 },
    '/runtime/': { dir: path.join(ROOT, 'runtime/js') },
  });
  browser = await launchChromium(path.join(work, 'profile'));
});

after(async () => {
  await browser?.close();
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

// Runs `fn(arg)` in a fresh page of the test origin; a thrown error comes back as {error: {code, message}}.
async function inPage(fn, arg) {
  const page = await browser.newPage();
  try {
    await page.goto(`${server.url}/`);
    return await page.evaluate(async ([source, arg]) => {
      try {
        return await (0, eval)(source)(arg);
      } catch (e) {
        return { error: { code: e.code, message: e.message } };
      }
    }, [fn.toString(), arg]);
  } finally {
    await page.close();
  }
}

const requestsUnder = (prefix) => server.requests.filter((p) => p.startsWith(prefix)).length;
const clearCache = () => inPage(() => caches.delete('tfc-chunks'));

test('tfc.js, as a bundle carries it, is at most 25 KB gzipped', () => {
  const size = gzipSync(readFileSync(path.join(bundles.smollm2, 'tfc.js'))).length;
  assert.ok(size <= 25_000, `tfc.js is ${size} bytes gzipped`);
});

test('tokenizers in Chromium give the tokenizers crate\'s ids on the corpus', async () => {
  const result = await inPage(async () => {
    const { Tokenizer } = await import('/runtime/src/tokenizer.js');
    const json = async (url) => (await fetch(url)).json();
    const gunzipped = async (url) => new Response((await fetch(url)).body.pipeThrough(new DecompressionStream('gzip'))).json();
    const corpus = await json('/runtime/test/fixtures/corpus.json');
    const cases = { minilm: '/minilm/tokenizer.json', 'bpe-gpt2': 0, 'bpe-llama3': 0, 'bpe-qwen2': 0, 'bpe-smollm2': 0 };
    const mismatches = {};
    for (const [name, url] of Object.entries(cases)) {
      const tokenizer = new Tokenizer(await json(url || `/runtime/test/fixtures/${name}.json`));
      const { ids } = await gunzipped(`/runtime/test/fixtures/expected-${name}.json.gz`);
      mismatches[name] = corpus.filter((line, i) => JSON.stringify(tokenizer.encode(line)) !== JSON.stringify(ids[i])).length;
    }
    return { lines: corpus.length, mismatches };
  });
  assert.ok(result.lines >= 1000);
  assert.deepEqual(result.mismatches, { minilm: 0, 'bpe-gpt2': 0, 'bpe-llama3': 0, 'bpe-qwen2': 0, 'bpe-smollm2': 0 });
});

test(`MiniLM embed on WebGPU equals the native runtime's (relative L2 ≤ ${TOLERANCE})`, async (t) => {
  await clearCache();
  const before = requestsUnder('/minilm/weights/');
  const result = await inPage(async (sentences) => {
    const { load } = await import('/minilm/tfc.js');
    const model = await load('/minilm/', { backend: 'webgpu' });
    const tokens = sentences.map((s) => model.tokenizer.encode(s));
    const vectors = (await model.embed(sentences)).map((v) => Array.from(v));
    return { tokens, vectors, device: model.device };
  }, SENTENCES);
  assert.equal(result.error, undefined, result.error?.message);
  assert.equal(requestsUnder('/minilm/weights/') - before, manifestOf(bundles.minilm).chunks.length);
  SENTENCES.forEach((sentence, i) => {
    assert.deepEqual(result.tokens[i], native.embeddings[i].tokens, `token ids of ${sentence}`);
    const error = relativeL2(result.vectors[i], native.embeddings[i].vector);
    t.diagnostic(`${sentence}: relative L2 ${error.toExponential(2)} on ${result.device}`);
    assert.ok(error <= TOLERANCE, `${sentence}: relative L2 ${error}`);
  });
});

test(`MiniLM embed on forced WASM equals the native runtime's (relative L2 ≤ ${TOLERANCE})`, async (t) => {
  const result = await inPage(async (sentences) => {
    const { load } = await import('/minilm/tfc.js');
    const model = await load('/minilm/', { backend: 'wasm' });
    return { vectors: (await model.embed(sentences)).map((v) => Array.from(v)), backend: model.backend, device: model.device };
  }, SENTENCES);
  assert.equal(result.error, undefined, result.error?.message);
  assert.equal(result.backend, 'wasm');
  SENTENCES.forEach((sentence, i) => {
    const error = relativeL2(result.vectors[i], native.embeddings[i].vector);
    t.diagnostic(`${sentence}: relative L2 ${error.toExponential(2)} on ${result.device}`);
    assert.ok(error <= TOLERANCE, `${sentence}: relative L2 ${error}`);
  });
});

test('a second load, and a new model version, read shared chunks from the Cache API', async () => {
  const before = { same: requestsUnder('/minilm/weights/'), edited: requestsUnder('/minilm-edited/weights/') };
  const result = await inPage(async () => {
    const { load } = await import('/minilm/tfc.js');
    (await load('/minilm/')).dispose();
    (await load('/minilm-edited/')).dispose();
    return {};
  });
  assert.equal(result.error, undefined, result.error?.message);
  assert.equal(requestsUnder('/minilm/weights/') - before.same, 0, 'the second visit downloaded chunks');
  const chunks = (bundle) => manifestOf(bundle).chunks.map((c) => c.sha256);
  const changed = chunks(bundles.edited).filter((sha) => !chunks(bundles.minilm).includes(sha)).length;
  assert.ok(changed >= 1 && changed < chunks(bundles.edited).length);
  assert.equal(requestsUnder('/minilm-edited/weights/') - before.edited, changed, 'the new version downloaded more than its new chunks');
});

test('tfc.js runs in a Web Worker', async () => {
  const result = await inPage(async ([origin, sentence]) => {
    const source = `import { load } from '${origin}/minilm/tfc.js';
      const model = await load('${origin}/minilm/', { backend: 'webgpu' });
      postMessage(Array.from(await model.embed(${JSON.stringify(sentence)})));`;
    const worker = new Worker(URL.createObjectURL(new Blob([source], { type: 'text/javascript' })), { type: 'module' });
    return new Promise((resolve, reject) => {
      worker.onmessage = (e) => resolve({ vector: e.data });
      worker.onerror = (e) => reject(new Error(e.message));
    });
  }, [server.url, SENTENCES[0]]);
  assert.equal(result.error, undefined, result.error?.message);
  assert.ok(relativeL2(result.vector, native.embeddings[0].vector) <= TOLERANCE);
});

test('a corrupted chunk fails the load with an integrity error and is not cached', async () => {
  await clearCache();
  const result = await inPage(async () => {
    const { load } = await import('/minilm/tfc.js');
    const model = await load('/corrupt/');
    return { output: await model.embed('never') };
  });
  assert.equal(result.output, undefined);
  assert.equal(result.error.code, 'integrity');
  const chunk = manifestOf(bundles.minilm).chunks[0];
  assert.match(result.error.message, new RegExp(`/corrupt/${chunk.file}.*${chunk.sha256}`));
  const cached = await inPage(async (sha) => {
    const cache = await caches.open('tfc-chunks');
    return Boolean(await cache.match(`https://tfc.invalid/sha256/${sha}`));
  }, chunk.sha256);
  assert.equal(cached, false);
});

test('a download cut short is retried, and a decoder runs like on the native runtime', async () => {
  await clearCache();
  const result = await inPage(async (tokens) => {
    const { load } = await import('/minilm/tfc.js');
    const model = await load('/flaky/', { backend: 'webgpu' });
    const { logits } = await model.run({ input_ids: { data: tokens, shape: [1, tokens.length] } });
    return { logits: Array.from(logits.data), shape: logits.shape };
  }, TOKENS);
  assert.equal(result.error, undefined, result.error?.message);
  assert.equal(requestsUnder('/flaky/weights/'), 2 * manifestOf(bundles.llama).chunks.length);
  assert.ok(relativeL2(result.logits, native.logits) <= TOLERANCE);
});

test('SmolLM2 greedy generate gives the native runtime\'s tokens on WASM and on WebGPU', async (t) => {
  const result = await inPage(async (cases) => {
    const { load } = await import('/smollm2/tfc.js');
    const tokens = async (model, prompt, maxTokens) => {
      const ids = [];
      for await (const id of model.generateTokens(model.tokenizer.encode(prompt), { maxTokens })) ids.push(id);
      return ids;
    };
    const wasm = await load('/smollm2/', { backend: 'wasm' });
    const onWasm = [];
    for (const { prompt } of cases) onWasm.push(await tokens(wasm, prompt, 16));
    let text = '';
    for await (const piece of wasm.generate(cases[0].prompt, { maxTokens: 16 })) text += piece;
    const stopped = [];
    for await (const piece of wasm.generate(cases[0].prompt, { maxTokens: 16, stop: ['\n'] })) stopped.push(piece);
    wasm.dispose();
    const webgpu = await load('/smollm2/', { backend: 'webgpu' });
    const onWebGpu = await tokens(webgpu, cases[0].prompt, 2);
    webgpu.dispose();
    return { onWasm, text, stopped, onWebGpu, device: webgpu.device };
  }, GREEDY);
  assert.equal(result.error, undefined, result.error?.message);
  GREEDY.forEach(({ prompt, tokens }, i) => assert.deepEqual(result.onWasm[i], tokens, `${prompt} on WASM`));
  assert.equal(result.text, GREEDY[0].text);
  assert.equal(result.stopped.join(''), GREEDY[0].text.split('\n')[0]);
  assert.deepEqual(result.onWebGpu, GREEDY[0].tokens.slice(0, 2), `on WebGPU (${result.device})`);
  t.diagnostic(`WASM: ${GREEDY.length} × 16 tokens equal; WebGPU on ${result.device}: 2 tokens equal`);
});

test('a device that lacks what the bundle needs is refused by name before any download', async () => {
  const result = await inPage(async () => {
    const { load } = await import('/minilm/tfc.js');
    await load('/demanding/');
  });
  assert.equal(result.error.code, 'device-limits');
  assert.match(result.error.message, /maxStorageBufferBindingSize ≥ 1099511627776 \(it has \d+\).*the feature shader-f16/);
  assert.match(result.error.message, /the WASM fallback cannot run either: this bundle has no WASM fallback/);
  assert.equal(requestsUnder('/demanding/weights/'), 0);
});

test('auto takes the WASM fallback where WebGPU cannot run a bundle or runs on the CPU', async () => {
  const result = await inPage(async (sentence) => {
    const { load } = await import('/minilm/tfc.js');
    const model = await load('/fallback/');
    const software = (await navigator.gpu.requestAdapter()).info.isFallbackAdapter;
    return {
      backend: model.backend,
      vector: Array.from(await model.embed(sentence)),
      software,
      softwareBackend: (await load('/minilm/')).backend,
    };
  }, SENTENCES[0]);
  assert.equal(result.error, undefined, result.error?.message);
  assert.equal(result.backend, 'wasm');
  assert.ok(relativeL2(result.vector, native.embeddings[0].vector) <= TOLERANCE);
  assert.equal(result.softwareBackend, result.software ? 'wasm' : 'webgpu');
});

test('a full storage quota is reported as such', async () => {
  await clearCache();
  const result = await inPage(async () => {
    const { load } = await import('/minilm/tfc.js');
    Cache.prototype.put = () => Promise.reject(new DOMException('quota', 'QuotaExceededError'));
    await load('/tiny-llama/');
  });
  assert.equal(result.error.code, 'storage-quota');
  assert.match(result.error.message, /storage quota is full.*\{ cache: false \}/);
});

test('misuse gives errors with stable codes', async () => {
  const codes = await inPage(async () => {
    const { load } = await import('/minilm/tfc.js');
    const code = async (f) => {
      try {
        await f();
        return 'no error';
      } catch (e) {
        return e.code;
      }
    };
    const model = await load('/tiny-llama/');
    const result = {
      generate: await code(() => model.generate('Hello')),
      option: await code(() => model.generateTokens([1, 2], { temperature: -1 })),
      badId: await code(() => model.generateTokens([1, -2]).next()),
      embed: await code(() => model.embed('Hello')),
      unknownInput: await code(() => model.run({ ids: { data: [1], shape: [1, 1] } })),
      tooLong: await code(() => model.run({ input_ids: { data: new Int32Array(1000), shape: [1, 1000] } })),
      wasm: await code(() => load('/demanding/', { backend: 'wasm' })),
      backend: await code(() => load('/tiny-llama/', { backend: 'cpu' })),
      missing: await code(() => load('/nothing-here/')),
    };
    const generation = model.generateTokens([1, 2, 3], { maxTokens: 4 });
    await generation.next();
    await model.run({ input_ids: { data: [1], shape: [1, 1] } });
    result.interrupted = await code(() => generation.next());
    model.dispose();
    result.disposed = await code(() => model.run({ input_ids: { data: [1], shape: [1, 1] } }));
    return result;
  });
  assert.deepEqual(codes, {
    generate: 'no-tokenizer',
    option: 'bad-option',
    badId: 'input',
    interrupted: 'interrupted',
    embed: 'no-tokenizer',
    unknownInput: 'input',
    tooLong: 'input',
    wasm: 'wasm-unavailable',
    backend: 'bad-option',
    missing: 'network',
    disposed: 'disposed',
  });
});

test('the demo pages load the model and show output', async () => {
  const shots = process.env.TFC_SCREENSHOTS && path.resolve(ROOT, process.env.TFC_SCREENSHOTS);
  for (const [name, url, output] of [['minilm', '/minilm/', '#scores tr'], ['smollm2', '/smollm2/', '#generated'], ['decoder', '/tiny-llama/', '#logits']]) {
    const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
    await page.goto(server.url + url);
    await page.waitForSelector('body[data-state=ready], body[data-state=error]', { timeout: 300_000 });
    assert.equal(await page.getAttribute('body', 'data-state'), 'ready', await page.textContent('#message'));
    assert.ok((await page.textContent(output)).length > 0);
    if (name === 'minilm') {
      const scores = await page.$$eval('#scores td.score', (cells) => cells.map((c) => Number(c.textContent)));
      assert.equal(scores.length, 4);
      assert.ok(scores[1] > scores[2], `guitar ${scores[1]} vs weather ${scores[2]}`);
    } else if (name === 'smollm2') {
      assert.ok((await page.textContent('#generated')).startsWith(GREEDY[0].text), await page.textContent('#generated'));
    } else {
      assert.match(await page.textContent('#decoder'), /has no tokenizer/i);
    }
    if (shots && name !== 'decoder') await page.screenshot({ path: path.join(shots, `demo-${name}.png`), fullPage: true });
    await page.close();
  }
});
