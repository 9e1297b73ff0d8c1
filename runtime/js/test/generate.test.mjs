// generate.js in Node: the seeded random numbers equal the native runtime's (fixtures/chacha8.json, which
// runtime/tests/sample.rs checks against rand_chacha), and streamed text never splits a character nor shows a stop
// string, and conversations take a chat format's texts. The generation loop itself runs on real models in cli/tests/wasm.rs and browser.test.mjs.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ChaCha8, TextStream, chatPrompt, generationOptions } from '../src/generate.js';

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
  for (const bad of [{ temperature: -1 }, { topP: 2 }, { seed: -1 }, { seed: 2n ** 64n }, { stop: [''] }, { maxTokns: 3 }]) {
    assert.throws(() => generationOptions(bad), { code: 'bad-option' }, JSON.stringify(bad, (_, v) => String(v)));
  }
});

test('a conversation is the chat format\'s texts around its messages', () => {
  const chat = {
    system_start: '<s>[S]', system_end: '[/S]', default_start: '<s>[S]Default[/S]', trim_content: true,
    user: { start: '[U]', end: '[/U]' }, assistant: { start: '[A]', end: '[/A]' }, generation_prompt: '[A]',
  };
  const manifest = { model: {}, chat };
  const hi = { role: 'user', content: ' Hi \n' };
  assert.equal(chatPrompt(manifest, [hi]), '<s>[S]Default[/S][U]Hi[/U][A]');
  assert.equal(chatPrompt(manifest, [{ role: 'system', content: 'Be brief.' }, hi, { role: 'assistant', content: 'Hello' }, hi]),
    '<s>[S]Be brief.[/S][U]Hi[/U][A]Hello[/A][U]Hi[/U][A]');
  assert.equal(chatPrompt({ model: {}, chat: { ...chat, trim_content: false } }, [hi]), '<s>[S]Default[/S][U] Hi \n[/U][A]');
  assert.throws(() => chatPrompt(manifest, [hi, { role: 'system', content: 'late' }]), { code: 'input', message: /"system"/ });
  assert.throws(() => chatPrompt(manifest, [{ role: 'user' }]), { code: 'input' });
  const why = 'a user/assistant/user conversation renders differently';
  assert.throws(() => chatPrompt({ model: { chat_format_unavailable: why } }, [hi]), { code: 'no-chat-format', message: new RegExp(why) });
});
