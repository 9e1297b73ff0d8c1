// Text generation on a decoder bundle, step for step as the native runtime's Decoder (runtime/src/decoder.rs): the
// prompt fills the KV cache (state buffers that stay in the backend across runs) in runs of at most the bundle's
// `sequence` maximum, then each run feeds the token just drawn and reads back only `next_token` (4 bytes). The
// draw itself happens in the graph (its Sample op); the host supplies the settings, the penalized tokens and one
// uniform number per run, from the same seeded ChaCha8 stream as the native runtime, so a seed gives the same
// tokens on every runtime.

import { fail } from './errors.js';

const U64 = (1n << 64n) - 1n;
const I32_MAX = 2 ** 31 - 1;
const rotl = (v, n) => (v << n) | (v >>> (32 - n));

function quarterRound(x, a, b, c, d) {
  x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 16);
  x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 12);
  x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 8);
  x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 7);
}

/**
 * The random numbers of rand_chacha's `ChaCha8Rng::seed_from_u64(seed)` (rand 0.9): the 32-byte key from rand_core's
 * PCG32 expansion of the seed, then the ChaCha keystream with 8 rounds, nonce 0 and a 64-bit block counter from 0;
 * `nextF32` is rand's `random::<f32>()` (the top 24 bits of a word, times 2^-24).
 */
export class ChaCha8 {
  constructor(seed) {
    let state = BigInt(seed);
    this.state = new Uint32Array(16);
    this.state.set([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);
    for (let i = 4; i < 12; i++) {
      state = (state * 6364136223846793005n + 11634580027462260723n) & U64;
      const xorshifted = Number((((state >> 18n) ^ state) >> 27n) & 0xffffffffn);
      const rot = Number(state >> 59n);
      this.state[i] = (xorshifted >>> rot) | (xorshifted << (32 - rot));
    }
    this.block = new Uint32Array(16);
    this.used = 16;
  }

  nextU32() {
    if (this.used === 16) {
      const x = this.block;
      x.set(this.state);
      for (let round = 0; round < 4; round++) {
        quarterRound(x, 0, 4, 8, 12); quarterRound(x, 1, 5, 9, 13); quarterRound(x, 2, 6, 10, 14); quarterRound(x, 3, 7, 11, 15);
        quarterRound(x, 0, 5, 10, 15); quarterRound(x, 1, 6, 11, 12); quarterRound(x, 2, 7, 8, 13); quarterRound(x, 3, 4, 9, 14);
      }
      for (let i = 0; i < 16; i++) x[i] += this.state[i];
      if (++this.state[12] === 0) this.state[13]++;
      this.used = 0;
    }
    return this.block[this.used++];
  }

  nextF32() {
    return (this.nextU32() >>> 8) / 2 ** 24;
  }
}

const badOption = (message) => fail('bad-option', message);

function numberOption(options, name, fallback, valid, what) {
  const v = options[name] ?? fallback;
  if (typeof v !== 'number' || !valid(v)) badOption(`${name} must be ${what}, not ${JSON.stringify(v)}`);
  return v;
}

/** Generation options (docs/js-api.md) checked, with the CLI's defaults filled in. */
export function generationOptions(options) {
  if ('chat' in options) {
    badOption('tfc.js does not apply chat templates (Jinja programs, too large a runtime to render exactly): format ' +
      'the prompt with the model\'s template (manifest.model.chat_template) yourself, or use `tfc generate --chat`');
  }
  const known = 'maxTokens temperature topK topP minP repeatPenalty repeatLastN seed stop'.split(' ');
  const unknown = Object.keys(options).find((k) => !known.includes(k));
  if (unknown) badOption(`unknown generate() option \`${unknown}\` (the options: ${known.join(', ')})`);
  const count = (v) => Number.isInteger(v) && v >= 0;
  const seed = options.seed ?? 0;
  if (!(typeof seed === 'bigint' || Number.isSafeInteger(seed)) || seed < 0 || BigInt(seed) > U64) {
    badOption(`seed must be an integer from 0 to 2^64 - 1, not ${seed}`);
  }
  const stop = options.stop ?? [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || !s)) badOption('stop must be an array of non-empty strings');
  return {
    maxTokens: numberOption(options, 'maxTokens', 64, count, 'a whole number'),
    settings: Float32Array.of(
      numberOption(options, 'temperature', 0, (v) => v >= 0, 'at least 0'),
      numberOption(options, 'topK', 0, count, 'a whole number'),
      numberOption(options, 'topP', 1, (v) => v >= 0 && v <= 1, 'from 0 to 1'),
      numberOption(options, 'minP', 0, (v) => v >= 0 && v <= 1, 'from 0 to 1'),
      numberOption(options, 'repeatPenalty', 1, (v) => v > 0, 'more than 0'),
    ),
    repeatLastN: numberOption(options, 'repeatLastN', 64, count, 'a whole number'),
    seed,
    stop,
  };
}

export class Decoder {
  /**
   * `run(inputs, symbols, wanted)` runs the bundle (inputs by name, values for symbols no input gives, the outputs
   * to read back); `reset()` zeroes its state buffers. Throws `generation-unavailable` for a bundle that is not a
   * decoder with a KV cache.
   */
  constructor(manifest, run, reset) {
    const { model, inputs, outputs, symbols } = manifest;
    const penalized = inputs.find((i) => i.name === 'penalized');
    if (!model.context_length || !outputs.some((o) => o.name === 'next_token') || !penalized) {
      fail('generation-unavailable', `generate() needs a decoder bundle with a KV cache; this ${model.architecture} bundle ` +
        `has the outputs ${outputs.map((o) => o.name).join(', ')} (use run(), or recompile a decoder with this tfc)`);
    }
    this.context = Number(model.context_length);
    this.vocabulary = Number(model.vocab_size ?? 2 ** 31);
    this.chunk = symbols.find((s) => s.name === 'sequence')?.max ?? 1;
    this.penalized = penalized.shape[0];
    this.endOfSequence = (model.eos_token_ids ?? '').split(',').filter(Boolean).map(Number);
    this.run = run;
    this.reset = reset;
  }

  /**
   * The generated token ids after `prompt` (ids), as the CLI's `tfc generate` makes them: until an end-of-sequence
   * token (left out), `maxTokens`, or a full KV cache. Starts from an empty cache.
   */
  async *tokens(prompt, options) {
    const { maxTokens, settings, seed } = options;
    if (prompt.length === 0) fail('input', 'the prompt has no tokens');
    const bad = prompt.find((id) => !Number.isInteger(id) || id < 0 || id >= this.vocabulary);
    if (bad !== undefined) fail('input', `the prompt has the token id ${bad}, which is not in this model's vocabulary of ${this.vocabulary}`);
    if (prompt.length > this.context) {
      fail('input', `the prompt has ${prompt.length} tokens, more than this model's context of ${this.context}`);
    }
    const random = new ChaCha8(seed);
    const repeatLastN = Math.min(options.repeatLastN, this.penalized);
    const history = [];
    let past = 0;
    await this.reset();
    const feed = async (tokens) => {
      history.push(...tokens);
      const recent = [...new Set(history.slice(history.length - repeatLastN))].sort((a, b) => a - b);
      const penalized = new Int32Array(this.penalized).fill(I32_MAX);
      penalized.set(recent);
      const uniform = Float32Array.of(random.nextF32());
      let outputs;
      for (let at = 0; at < tokens.length; at += this.chunk) {
        const ids = Int32Array.from(tokens.slice(at, at + this.chunk));
        const inputs = {
          input_ids: { data: ids, shape: [1, ids.length] },
          sampling: { data: settings, shape: [5] },
          uniform: { data: uniform, shape: [1, 1] },
          penalized: { data: penalized, shape: [this.penalized] },
        };
        outputs = await this.run(inputs, { past }, ['next_token']);
        past += ids.length;
      }
      return outputs.next_token.data[0];
    };
    let next = await feed(prompt);
    for (let count = 0; count < maxTokens && !this.endOfSequence.includes(next);) {
      yield next;
      if (++count === maxTokens || past === this.context) return;
      next = await feed([next]);
    }
  }
}

/**
 * The text of generated ids as it becomes final: never part of a UTF-8 character, and with stop strings never
 * text that may still turn out to begin one; the text ends before the first stop string.
 */
export class TextStream {
  constructor(tokenizer, stop) {
    this.tokenizer = tokenizer;
    this.stop = stop;
    this.ids = [];
    this.printed = 0;
    this.stopped = false;
  }

  /** The new text that `id` completes (possibly empty). */
  push(id) {
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids);
    return text.endsWith('\ufffd') || text.length < this.printed ? '' : this.#release(text, false);
  }

  /** What is left once generation ended. */
  finish() {
    const text = this.tokenizer.decode(this.ids);
    return this.stopped || text.length < this.printed ? '' : this.#release(text, true);
  }

  #release(text, final) {
    let end = text.length;
    for (const s of this.stop) {
      const at = text.indexOf(s, this.printed);
      if (at >= 0 && at < end) {
        end = at;
        this.stopped = true;
      }
    }
    for (const s of this.stopped || final ? [] : this.stop) {
      for (let k = Math.min(s.length - 1, end - this.printed); k > 0; k--) {
        if (text.endsWith(s.slice(0, k))) {
          end = Math.min(end, text.length - k);
          break;
        }
      }
    }
    const piece = text.slice(this.printed, end);
    this.printed = end;
    return piece;
  }
}
