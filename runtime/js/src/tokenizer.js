// Tokenizers from a HuggingFace tokenizer.json, giving the same ids as the Rust `tokenizers` crate for the parts
// implemented here: WordPiece (BERT family), byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2, and those tfc converts
// from GGUF files) and SentencePiece-style BPE with byte fallback (GGUF `llama` and `gemma4` tokenizers, as tfc
// converts them). The pipeline is the crate's: split out added tokens, normalize, pre-tokenize, run the model on
// each piece, add the special tokens. Anything else in a tokenizer.json is refused by name rather than approximated.

import { fail } from './errors.js';

const unsupported = (what, type) =>
  fail('tokenizer-unsupported', `tokenizer.json uses the ${what} \`${type}\`, which tfc.js does not implement; ` +
    'pass token ids to run() instead');

// Character classes as the crate (Rust's std and regex) defines them, spelled out because JS's \s and \w differ.
const WHITESPACE = '\\p{White_Space}';
const WORD_CHAR = '[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]';
const escapeRegex = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

// Translates the regex dialect of tokenizer.json patterns (Oniguruma / Rust) into a JS one: `\s` and `\S` become
// White_Space, and `(?i:…)` groups, which older JS engines lack, spell each letter in both cases.
function jsRegex(source) {
  let out = '';
  let inClass = false;
  const caseless = [];
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const escape = /^\\(?:[pP]\{[^}]*\}|.)/su.exec(source.slice(i))[0];
      out += escape === '\\s' ? WHITESPACE : escape === '\\S' ? '\\P{White_Space}' : escape;
      i += escape.length - 1;
    } else if (inClass) {
      inClass = c !== ']';
      out += c;
    } else if (c === '[') {
      inClass = true;
      out += c;
    } else if (source.startsWith('(?i:', i)) {
      caseless.push(true);
      out += '(?:';
      i += 3;
    } else if (c === '(' || c === ')') {
      if (c === '(') caseless.push(false);
      else caseless.pop();
      out += c;
    } else if (caseless.includes(true) && /[a-z]/i.test(c)) {
      out += `[${c.toLowerCase()}${c.toUpperCase()}]`;
    } else {
      out += c;
    }
  }
  try {
    return new RegExp(out, 'gu');
  } catch (e) {
    return fail('tokenizer-unsupported', `tokenizer.json has a pattern this browser cannot compile (${source}): ${e.message}`);
  }
}

// --- normalizers: string → string -------------------------------------------------------------------------------

const CHINESE = /[\u4E00-\u9FFF\u3400-\u4DBF\u{20000}-\u{2A6DF}\u{2A700}-\u{2B81F}\u{2B920}-\u{2CEAF}\uF900-\uFAFF\u{2F800}-\u{2FA1F}]/gu;

function bertNormalizer({ clean_text, handle_chinese_chars, strip_accents, lowercase }) {
  return (s) => {
    if (clean_text) {
      s = s.replace(/[\0\uFFFD]|(?![\t\n\r])[\p{Cc}\p{Cf}\p{Co}]/gu, '').replace(/\p{White_Space}/gu, ' ');
    }
    if (handle_chinese_chars) s = s.replace(CHINESE, ' $& ');
    if (strip_accents ?? lowercase) s = s.normalize('NFD').replace(/\p{Mn}/gu, '');
    // Character by character, like the crate: no context-dependent mappings such as a word-final sigma.
    if (lowercase) s = Array.from(s, (c) => c.toLowerCase()).join('');
    return s;
  };
}

// SentencePiece's precompiled character map: a double-array trie over UTF-8 bytes whose leaves point into a blob
// of NUL-terminated replacements. Like the crate, each grapheme (under 6 bytes) whose bytes start with a key is
// replaced whole by the shortest such key's replacement; otherwise each of its characters is, in the same way.
function precompiled({ precompiled_charsmap }) {
  const bytes = Uint8Array.from(atob(precompiled_charsmap), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  const trieBytes = view.getUint32(0, true);
  const units = Array.from({ length: trieBytes / 4 }, (_, i) => view.getUint32(4 + 4 * i, true));
  const replacements = bytes.subarray(4 + trieBytes);
  const offset = (unit) => (unit >>> 10) << ((unit & 0x200) >>> 6);
  const text = new TextDecoder();
  const transform = (chunk) => {
    let at = offset(units[0]);
    for (const byte of utf8.encode(chunk)) {
      if (byte === 0) break;
      at ^= byte;
      const unit = units[at];
      if (unit === undefined || (unit & 0x800000ff) >>> 0 !== byte) return undefined;
      at ^= offset(unit);
      if ((unit >>> 8) & 1) {
        const start = units[at] & 0x7fffffff;
        const end = replacements.indexOf(0, start);
        return text.decode(replacements.subarray(start, end < 0 ? replacements.length : end));
      }
    }
    return undefined;
  };
  const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
  return (s) => {
    let out = '';
    for (const { segment } of graphemes.segment(s)) {
      const whole = utf8.encode(segment).length < 6 ? transform(segment) : undefined;
      if (whole !== undefined) out += whole;
      else for (const c of segment) out += transform(c) ?? c;
    }
    return out;
  };
}

// A Replace normalizer's or decoder's pattern: a literal string or a regex, every occurrence.
const replacePattern = (pattern) => ('Regex' in pattern ? jsRegex(pattern.Regex) : new RegExp(escapeRegex(pattern.String), 'gu'));

function normalizer(config) {
  if (!config) return (s) => s;
  switch (config.type) {
    case 'BertNormalizer': return bertNormalizer(config);
    case 'Prepend': return (s) => (s ? config.prepend + s : s);
    case 'Replace': {
      const pattern = replacePattern(config.pattern);
      return (s) => s.replace(pattern, () => config.content);
    }
    case 'NFC': case 'NFD': case 'NFKC': case 'NFKD': return (s) => s.normalize(config.type);
    case 'Precompiled': return precompiled(config);
    case 'Sequence': {
      const steps = config.normalizers.map(normalizer);
      return (s) => steps.reduce((text, step) => step(text), s);
    }
    default: return unsupported('normalizer', config.type);
  }
}

// --- pre-tokenizers: string[] → string[] --------------------------------------------------------------------------

const BERT_PUNCT = '[\\p{P}!-\\/:-@\\[-`{-~]';
const BERT_WORDS = new RegExp(`${BERT_PUNCT}|(?:(?!${BERT_PUNCT})\\P{White_Space})+`, 'gu');
const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// The printable stand-in of every byte in byte-level vocabularies: printable Latin-1 bytes stand for themselves,
// the others map to U+0100 onwards in byte order.
const BYTE_CHAR = [];
for (let b = 0, next = 256; b < 256; b++) {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  BYTE_CHAR[b] = String.fromCodePoint(printable ? b : next++);
}
const CHAR_BYTE = new Map(BYTE_CHAR.map((c, b) => [c, b]));
const utf8 = new TextEncoder();

// Matches and the text between them, in order, without empty pieces (the crate's `Isolated` behaviour).
function isolate(text, regex) {
  const pieces = [];
  let at = 0;
  for (const m of text.matchAll(regex)) {
    if (m.index > at) pieces.push(text.slice(at, m.index));
    if (m[0]) pieces.push(m[0]);
    at = m.index + m[0].length;
  }
  if (at < text.length) pieces.push(text.slice(at));
  return pieces;
}

function byteLevel({ add_prefix_space, use_regex }) {
  const regex = use_regex && jsRegex(GPT2_PATTERN);
  return (pieces) => pieces.flatMap((piece) => {
    if (add_prefix_space && !piece.startsWith(' ')) piece = ' ' + piece;
    return (regex ? isolate(piece, regex) : [piece]).map((p) => Array.from(utf8.encode(p), (b) => BYTE_CHAR[b]).join(''));
  });
}

function split({ pattern, behavior, invert }) {
  if (invert || behavior !== 'Isolated') unsupported('Split behaviour', invert ? 'invert' : behavior);
  const regex = replacePattern(pattern);
  return (pieces) => pieces.flatMap((p) => isolate(p, regex));
}

function preTokenizer(config) {
  if (!config) return (pieces) => pieces;
  switch (config.type) {
    case 'BertPreTokenizer': return (pieces) => pieces.flatMap((p) => p.match(BERT_WORDS) ?? []);
    case 'ByteLevel': return byteLevel(config);
    case 'Split': return split(config);
    case 'Digits': {
      const digits = config.individual_digits ? /\p{N}/gu : /\p{N}+/gu;
      return (pieces) => pieces.flatMap((p) => isolate(p, digits));
    }
    case 'Sequence': {
      const steps = config.pretokenizers.map(preTokenizer);
      return (pieces) => steps.reduce((p, step) => step(p), pieces);
    }
    default: return unsupported('pre-tokenizer', config.type);
  }
}

// --- models: one pre-tokenized piece → ids ------------------------------------------------------------------------

function wordPiece({ vocab: entries, unk_token, continuing_subword_prefix, max_input_chars_per_word }) {
  const vocab = new Map(Object.entries(entries));
  const unk = [vocab.get(unk_token)];
  return (word) => {
    const chars = Array.from(word);
    if (chars.length > max_input_chars_per_word) return unk;
    const ids = [];
    // Greedy longest match first; one unknown rest makes the whole word unknown.
    for (let start = 0; start < chars.length;) {
      let end = chars.length;
      let id;
      for (; end > start; end--) {
        id = vocab.get((start > 0 ? continuing_subword_prefix : '') + chars.slice(start, end).join(''));
        if (id !== undefined) break;
      }
      if (id === undefined) return unk;
      ids.push(id);
      start = end;
    }
    return ids;
  };
}

function bpe(config) {
  for (const option of ['dropout', 'continuing_subword_prefix', 'end_of_word_suffix']) {
    if (config[option]) unsupported('BPE option', option);
  }
  const vocab = new Map(Object.entries(config.vocab));
  const unk = config.unk_token == null ? undefined : vocab.get(config.unk_token);
  const byteIds = (c) => Array.from(utf8.encode(c), (b) => vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
  // The ids of a word's characters, as the crate finds them: a character outside the vocabulary becomes its byte
  // tokens (with byte fallback, if they all exist) or the unknown token (runs of them fused into one with
  // fuse_unk), or is dropped if there is none. Like the crate, an unknown token still pending is placed after byte
  // tokens that follow it.
  const charIds = (word) => {
    const ids = [];
    let pendingUnk = false;
    for (const c of word) {
      const id = vocab.get(c);
      if (id !== undefined) {
        if (pendingUnk) ids.push(unk);
        pendingUnk = false;
        ids.push(id);
        continue;
      }
      const bytes = config.byte_fallback ? byteIds(c) : [];
      if (bytes.length > 0 && !bytes.includes(undefined)) {
        ids.push(...bytes);
      } else if (unk !== undefined) {
        if (pendingUnk && !config.fuse_unk) ids.push(unk);
        pendingUnk = true;
      }
    }
    if (pendingUnk) ids.push(unk);
    return ids;
  };
  const size = vocab.size + 1;
  // (left id, right id) → [rank, merged id]; a merge's rank is its place in the list.
  const ranks = new Map();
  config.merges.forEach((merge, rank) => {
    const [a, b] = typeof merge === 'string' ? merge.split(' ') : merge;
    ranks.set(vocab.get(a) * size + vocab.get(b), [rank, vocab.get(a + b)]);
  });
  const cache = new Map();
  return (word) => {
    if (config.ignore_merges && vocab.has(word)) return [vocab.get(word)];
    let ids = cache.get(word);
    if (ids) return ids;
    ids = charIds(word);
    // Apply the lowest-ranked merge present (the leftmost on a tie) until none applies.
    for (;;) {
      let best;
      for (let i = 0; i + 1 < ids.length; i++) {
        const merge = ranks.get(ids[i] * size + ids[i + 1]);
        if (merge && (!best || merge[0] < best[0])) best = [merge[0], merge[1], i];
      }
      if (!best) break;
      ids.splice(best[2], 2, best[1]);
    }
    if (cache.size > 10000) cache.clear();
    cache.set(word, ids);
    return ids;
  };
}

// SentencePiece's unigram model: the split of the word into pieces with the highest total score (Viterbi, the first
// found on a tie), a character no piece covers costing 10 less than the least likely piece; runs of unknown
// characters become one unknown token.
function unigram({ vocab: pieces, unk_id: unk, byte_fallback }) {
  if (byte_fallback) unsupported('Unigram option', 'byte_fallback');
  const ids = new Map(pieces.map(([piece], id) => [piece, id])); // the last of equal pieces, like the crate
  const unkScore = pieces.reduce((min, [, score]) => Math.min(min, score), Infinity) - 10;
  const longest = pieces.reduce((max, [piece]) => Math.max(max, Array.from(piece).length), 0);
  return (word) => {
    const chars = Array.from(word);
    // best[end]: the best path over chars[0, end) as [score, start, id].
    const best = [[0, 0, undefined]];
    for (let start = 0; start < chars.length; start++) {
      let covered = false;
      const offer = (end, score, id) => {
        if (!best[end] || score > best[end][0]) best[end] = [score, start, id];
      };
      for (let end = start + 1, piece = ''; end <= Math.min(chars.length, start + longest); end++) {
        piece += chars[end - 1];
        const id = ids.get(piece);
        if (id === undefined) continue;
        offer(end, best[start][0] + pieces[id][1], id);
        covered ||= end === start + 1;
      }
      if (!covered) offer(start + 1, best[start][0] + unkScore, unk);
    }
    const found = [];
    for (let end = chars.length; end > 0;) {
      const [, start, id] = best[end];
      const piece = chars.slice(start, end).join('');
      if (id === unk && found.at(-1)?.unknown) found.at(-1).piece = piece + found.at(-1).piece;
      else found.push({ piece, unknown: id === unk });
      end = start;
    }
    return found.reverse().map(({ piece }) => ids.get(piece) ?? unk);
  };
}

function model(config) {
  switch (config.type) {
    case 'WordPiece': return wordPiece(config);
    case 'BPE': return bpe(config);
    case 'Unigram': return unigram(config);
    default: return unsupported('model', config.type);
  }
}

// --- post-processors: ids of the text → ids with the special tokens ----------------------------------------------

function postProcessor(config) {
  if (!config) return (ids) => ids;
  switch (config.type) {
    case 'ByteLevel': return (ids) => ids;
    case 'BertProcessing': case 'RobertaProcessing': return (ids) => [config.cls[1], ...ids, config.sep[1]];
    case 'TemplateProcessing':
      return (ids) => config.single.flatMap((item) => 'Sequence' in item ? ids : config.special_tokens[item.SpecialToken.id].ids);
    case 'Sequence': {
      const steps = config.processors.map(postProcessor);
      return (ids) => steps.reduce((i, step) => step(i), ids);
    }
    default: return unsupported('post-processor', config.type);
  }
}

// --- decoders: tokens → text (a byte order mark is kept, not dropped as TextDecoder does by default) ----------

const CLEANUP = [[' .', '.'], [' ?', '?'], [' !', '!'], [' ,', ','], [" ' ", "'"], [" n't", "n't"], [" 'm", "'m"],
  [' do not', " don't"], [" 's", "'s"], [" 've", "'ve"], [" 're", "'re"]];

// Each decoder maps the token strings to new ones, like the crate's `decode_chain`; the text is their concatenation.
function decoder(config) {
  switch (config.type) {
    case 'WordPiece':
      return (tokens) => tokens.map((t, i) => {
        if (i > 0) t = t.startsWith(config.prefix) ? t.slice(config.prefix.length) : ' ' + t;
        return config.cleanup ? CLEANUP.reduce((s, [from, to]) => s.replaceAll(from, to), t) : t;
      });
    case 'ByteLevel': {
      const text = new TextDecoder('utf-8', { ignoreBOM: true });
      return (tokens) => [text.decode(new Uint8Array(tokens.flatMap((t) => {
        const bytes = Array.from(t, (c) => CHAR_BYTE.get(c));
        return bytes.includes(undefined) ? [...utf8.encode(t)] : bytes;
      })))];
    }
    case 'Replace': {
      const pattern = replacePattern(config.pattern);
      return (tokens) => tokens.map((t) => t.replace(pattern, () => config.content));
    }
    case 'ByteFallback': return byteFallback;
    case 'Fuse': return (tokens) => [tokens.join('')];
    case 'Strip': return (tokens) => tokens.map((t) => strip(t, config));
    case 'Sequence': {
      const steps = config.decoders.map(decoder);
      return (tokens) => steps.reduce((t, step) => step(t), tokens);
    }
    default: return unsupported('decoder', config.type);
  }
}

// Runs of byte tokens (`<0x41>`) become the text they spell, or one U+FFFD per byte if it is not valid UTF-8.
function byteFallback(tokens) {
  const out = [];
  let bytes = [];
  const flush = () => {
    if (bytes.length === 0) return;
    try {
      out.push(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(new Uint8Array(bytes)));
    } catch {
      out.push(...bytes.map(() => '\uFFFD'));
    }
    bytes = [];
  };
  for (const t of tokens) {
    const byte = /^<0x([0-9A-Fa-f]{2}|\+[0-9A-Fa-f])>$/.exec(t);
    if (byte) {
      bytes.push(parseInt(byte[1], 16));
    } else {
      flush();
      out.push(t);
    }
  }
  flush();
  return out;
}

// Removes up to `start` leading and `stop` trailing `content` characters from a token.
function strip(token, { content, start, stop }) {
  const chars = Array.from(token);
  let from = 0;
  while (from < start && chars[from] === content) from++;
  let to = chars.length;
  while (chars.length - to < stop && to > from && chars[to - 1] === content) to--;
  return chars.slice(from, to).join('');
}

// --- added tokens -------------------------------------------------------------------------------------------------

// Finds added tokens the way the crate does: leftmost-longest matches (a regex of the contents, longest first), a
// `single_word` token only between non-word characters, `lstrip`/`rstrip` tokens taking the whitespace beside them.
function addedTokenSplitter(tokens, normalize) {
  const byContent = new Map(tokens.map((t) => [normalize(t.content), t]));
  byContent.delete('');
  if (byContent.size === 0) return (text) => [{ text }];
  const contents = [...byContent.keys()].sort((a, b) => b.length - a.length);
  const regex = new RegExp(contents.map(escapeRegex).join('|'), 'gu');
  const spaceAtEnd = new RegExp(`${WHITESPACE}*$`, 'u');
  const spaceAtStart = new RegExp(`^${WHITESPACE}*`, 'u');
  const wordAtEnd = new RegExp(`${WORD_CHAR}$`, 'u');
  const wordAtStart = new RegExp(`^${WORD_CHAR}`, 'u');
  return (text) => {
    const pieces = [];
    let at = 0;
    for (const m of text.matchAll(regex)) {
      const token = byContent.get(m[0]);
      let start = m.index;
      let stop = start + m[0].length;
      if (token.single_word && (wordAtEnd.test(text.slice(0, start)) || wordAtStart.test(text.slice(stop)))) continue;
      if (token.lstrip) start = Math.max(at, spaceAtEnd.exec(text.slice(0, start)).index);
      if (token.rstrip) stop += spaceAtStart.exec(text.slice(stop))[0].length;
      if (start > at) pieces.push({ text: text.slice(at, start) });
      pieces.push({ id: token.id });
      at = stop;
    }
    if (at < text.length || pieces.length === 0) pieces.push({ text: text.slice(at) });
    return pieces;
  };
}

export class Tokenizer {
  constructor(json) {
    const added = json.added_tokens ?? [];
    this.normalize = normalizer(json.normalizer);
    this.preTokenize = preTokenizer(json.pre_tokenizer);
    this.model = model(json.model);
    this.postProcess = postProcessor(json.post_processor);
    const decode = json.decoder && decoder(json.decoder);
    // Without a decoder the crate joins the tokens with spaces.
    this.decodeTokens = decode ? (tokens) => decode(tokens).join('') : (tokens) => tokens.join(' ');
    this.splitRaw = addedTokenSplitter(added.filter((t) => !t.normalized), (s) => s);
    this.splitNormalized = addedTokenSplitter(added.filter((t) => t.normalized), this.normalize);
    this.idToToken = [];
    if (Array.isArray(json.model.vocab)) json.model.vocab.forEach(([piece], id) => { this.idToToken[id] = piece; });
    else for (const [token, id] of Object.entries(json.model.vocab)) this.idToToken[id] = token;
    for (const t of added) this.idToToken[t.id] = t.content;
    this.special = new Set(added.filter((t) => t.special).map((t) => t.id));
    this.padId = json.padding?.pad_id ?? 0;
  }

  /** Token ids of `text`, with the model's special tokens unless `addSpecialTokens` is false. */
  encode(text, { addSpecialTokens = true } = {}) {
    const ids = [];
    for (const raw of this.splitRaw(text)) {
      for (const piece of raw.id === undefined ? this.splitNormalized(this.normalize(raw.text)) : [raw]) {
        if (piece.id !== undefined) ids.push(piece.id);
        else if (piece.text) for (const word of this.preTokenize([piece.text])) ids.push(...this.model(word));
      }
    }
    return addSpecialTokens ? this.postProcess(ids) : ids;
  }

  /** The text of `ids`; special tokens are left out unless `skipSpecialTokens` is false. Unknown ids are skipped. */
  decode(ids, { skipSpecialTokens = true } = {}) {
    const tokens = [];
    for (const id of ids) {
      if (this.idToToken[id] !== undefined && !(skipSpecialTokens && this.special.has(id))) tokens.push(this.idToToken[id]);
    }
    return this.decodeTokens(tokens);
  }
}
