// generate.js in Node: the seeded random numbers equal the native runtime's (fixtures/chacha8.json, which
// runtime/tests/sample.rs checks against rand_chacha), and streamed text never splits a character nor shows a stop
// string. The generation loop itself runs on real models in cli/tests/wasm.rs and browser.test.mjs.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ChaCha8, TextStream, generationOptions } from '../src/generate.js';

test('ChaCha8 seeded like rand_chacha gives rand\'s f32 numbers', () => {
  const { cases } = JSON.parse(readFileSync(new URL('fixtures/chacha8.json', import.meta.url), 'utf8'));
  for (const { seed, uniform } of cases) {
    const random = new ChaCha8(BigInt(seed));
    assert.deepEqual(uniform.map(() => random.nextF32()), uniform.map(Math.fround), `seed ${seed}`);
  }
});

// A byte-level tokenizer stand-in: each id is one byte of UTF-8.
const bytes = { decode: (ids) => new TextDecoder().decode(Uint8Array.from(ids)) };
const stream = (text, stop = []) => {
  const s = new TextStream(bytes, stop);
  const pieces = [];
  for (const b of new TextEncoder().encode(text)) {
    pieces.push(s.push(b));
    if (s.stopped) break;
  }
  pieces.push(s.finish());
  return pieces.filter(Boolean);
};

test('streamed text never splits a UTF-8 character', () => {
  assert.deepEqual(stream('aé🚀b'), ['a', 'é', '🚀', 'b']);
});

test('stop strings end the text before them and are never shown in part', () => {
  assert.deepEqual(stream('Hello\nUser: hi', ['\nUser:']), ['H', 'e', 'l', 'l', 'o']);
  assert.deepEqual(stream('a\nb', ['\nUser:']), ['a', '\nb']);
  assert.deepEqual(stream('x<|en<|end|>y', ['<|end|>']), ['x', '<|en']);
});

test('generation options are checked, with the CLI\'s defaults', () => {
  const o = generationOptions({});
  assert.equal(o.maxTokens, 64);
  assert.deepEqual(Array.from(o.settings), [0, 0, 1, 0, 1]);
  assert.equal(o.repeatLastN, 64);
  assert.throws(() => generationOptions({ chat: true }), { code: 'bad-option', message: /chat templates/ });
  for (const bad of [{ temperature: -1 }, { topP: 2 }, { seed: -1 }, { seed: 2n ** 64n }, { stop: [''] }, { maxTokns: 3 }]) {
    assert.throws(() => generationOptions(bad), { code: 'bad-option' }, JSON.stringify(bad, (_, v) => String(v)));
  }
});
