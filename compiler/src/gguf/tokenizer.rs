//! `tokenizer.ggml.*` metadata → a tokenizer.json in the Hugging Face tokenizers format, for the bundle.
//!
//! Four of llama.cpp's tokenizer models are converted:
//! - byte-level BPE (`tokenizer.ggml.model` = `gpt2`): the vocabulary and merges are already in byte-level form; the
//!   pre-tokenizer is chosen by `tokenizer.ggml.pre` (llama.cpp's name for the splitting rule) among
//!   [`pre_tokenizer_names`];
//! - Gemma 4's BPE (`gemma4`): merges over UTF-8 characters with spaces as `▁` and byte tokens as a fallback;
//! - SentencePiece BPE (`llama`, as in Llama 2, Mistral and Phi-3): the file has scores, not merges; merging the
//!   adjacent pair whose result scores highest is expressed as merges ranked by the score of their result, with
//!   the text's spaces as `▁` (one prepended, unless `tokenizer.ggml.add_space_prefix` is false) and unknown
//!   characters spelled as byte tokens;
//! - WordPiece (`bert`): llama.cpp's converter marks word-initial pieces with `▁` and drops the `##` of
//!   continuations; tokenizer.json states the pieces as BERT does, with BERT's normalizer and splitting, and wraps
//!   a text in the classifier and separator tokens.
//!
//! As in llama.cpp, the unknown, control and user-defined tokens become added tokens, matched before splitting (the
//! first two special).

use super::{GgufFile, Value};
use serde_json::{Value as Json, json};
use std::collections::HashMap;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_NORMAL: u64 = 1;
const TOKEN_UNKNOWN: u64 = 2;
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// SentencePiece's stand-in for a space.
const SPACE: &str = "▁";

/// The tokenizer.json text for the file's tokenizer, or why it can't be converted (the bundle then has none).
pub fn tokenizer_json(gguf: &GgufFile) -> Result<String, String> {
    let model = gguf.get("tokenizer.ggml.model").and_then(Value::as_str).ok_or("the file has no `tokenizer.ggml.model`")?;
    let tokens = strings(gguf, "tokenizer.ggml.tokens")?;
    let types: Vec<u64> = match gguf.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(t) if t.len() == tokens.len() => t.iter().map(|v| v.as_u64().unwrap_or(TOKEN_NORMAL)).collect(),
        Some(t) => return Err(format!("`tokenizer.ggml.token_type` has {} entries for {} tokens", t.len(), tokens.len())),
        None => vec![TOKEN_NORMAL; tokens.len()],
    };
    let parts = match model {
        "gpt2" => byte_level_bpe(gguf, &tokens)?,
        "llama" => sentencepiece_bpe(gguf, &tokens, &types)?,
        "bert" => wordpiece(gguf, &tokens)?,
        "gemma4" => utf8_bpe(gguf, &tokens)?,
        "t5" => unigram(gguf, &tokens)?,
        other => {
            let kind = if other == "rwkv" { " (RWKV's greedy trie)" } else { "" };
            return Err(format!(
                "tokenizer.ggml.model `{other}`{kind} is not converted yet; tfc converts byte-level BPE (`gpt2`), SentencePiece BPE \
                 (`llama`) and unigram (`t5`), Gemma 4's BPE (`gemma4`) and WordPiece (`bert`) tokenizers"
            ));
        }
    };
    let added: Vec<Json> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, t))| matches!(**t, TOKEN_UNKNOWN | TOKEN_CONTROL | TOKEN_USER_DEFINED))
        .map(|(id, (content, &t))| {
            json!({ "id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": false, "special": t != TOKEN_USER_DEFINED })
        })
        .collect();
    let post_processor = template(parts.first.as_ref(), parts.last.as_ref());
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": parts.normalizer,
        "pre_tokenizer": parts.pre_tokenizer,
        "post_processor": post_processor,
        "decoder": parts.decoder,
        "model": parts.model,
    });
    Ok(serde_json::to_string(&tokenizer).expect("JSON serialises"))
}

/// The parts of a tokenizer.json that differ between tokenizer models.
struct Parts {
    normalizer: Json,
    pre_tokenizer: Json,
    decoder: Json,
    model: Json,
    /// The special tokens (id, text) put before and after a text when special tokens are added.
    first: Option<(u64, String)>,
    last: Option<(u64, String)>,
}

/// The id and text of the token named by the first of `keys` that the file has.
fn special_token(gguf: &GgufFile, tokens: &[&str], keys: &[&str]) -> Result<Option<(u64, String)>, String> {
    let Some((key, id)) = keys.iter().find_map(|k| gguf.get(k).and_then(Value::as_u64).map(|id| (k, id))) else { return Ok(None) };
    let token = tokens.get(id as usize).ok_or(format!("`{key}` {id} is not a token"))?;
    Ok(Some((id, token.to_string())))
}

/// The beginning-of-text token if the text gets one: as `tokenizer.ggml.add_bos_token` says, or by llama.cpp's
/// default for the tokenizer model.
fn bos(gguf: &GgufFile, tokens: &[&str], default: bool) -> Result<Option<(u64, String)>, String> {
    let add = gguf.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(default);
    if add { special_token(gguf, tokens, &["tokenizer.ggml.bos_token_id"]) } else { Ok(None) }
}

/// The end-of-text token if the text gets one (`tokenizer.ggml.add_eos_token`, or llama.cpp's default).
fn eos(gguf: &GgufFile, tokens: &[&str], default: bool) -> Result<Option<(u64, String)>, String> {
    let add = gguf.get("tokenizer.ggml.add_eos_token").and_then(Value::as_bool).unwrap_or(default);
    if add { special_token(gguf, tokens, &["tokenizer.ggml.eos_token_id"]) } else { Ok(None) }
}

/// The post-processor putting `first` before a text and `last` after it (for a pair, `last` after each).
fn template(first: Option<&(u64, String)>, last: Option<&(u64, String)>) -> Json {
    if first.is_none() && last.is_none() {
        return Json::Null;
    }
    let sequence = |id: &str, type_id: u32| {
        let special = |t: Option<&(u64, String)>| t.map(|(_, text)| json!({ "SpecialToken": { "id": text, "type_id": type_id } }));
        let text = json!({ "Sequence": { "id": id, "type_id": type_id } });
        [if id == "A" { special(first) } else { None }, Some(text), special(last)].into_iter().flatten().collect::<Vec<_>>()
    };
    let special_tokens: serde_json::Map<String, Json> =
        [first, last].into_iter().flatten().map(|(id, text)| (text.clone(), json!({ "id": text, "ids": [id], "tokens": [text] }))).collect();
    let pair = [sequence("A", 0), sequence("B", 1)].concat();
    json!({
        "type": "TemplateProcessing",
        "single": sequence("A", 0),
        "pair": pair,
        "special_tokens": special_tokens,
    })
}

fn strings<'a>(gguf: &'a GgufFile, key: &str) -> Result<Vec<&'a str>, String> {
    let values = gguf.get(key).and_then(Value::as_array).ok_or(format!("`{key}` is missing or not an array"))?;
    values.iter().map(|v| v.as_str().ok_or(format!("`{key}` holds a non-string"))).collect()
}

fn vocabulary(tokens: &[&str]) -> serde_json::Map<String, Json> {
    tokens.iter().enumerate().map(|(id, t)| (t.to_string(), json!(id))).collect()
}

/// GPT-2's splitting rule: contractions, words, numbers and other symbols each with at most one space before them,
/// and runs of whitespace.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's rule (also Qwen2's with `\p{N}` alone: one digit per piece): case-insensitive contractions, words with
/// one leading non-letter, numbers of at most three digits, symbols with their trailing line breaks, line breaks.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5's: Qwen2's, with combining marks kept in words.
const QWEN35: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// CJK ideographs, with everything from U+0800 up to them, and Hangul syllables (DeepSeek's rule).
const CJK: &str = "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+";

/// How byte-level BPE tokenizers split text before BPE, by llama.cpp's name for the rule (`tokenizer.ggml.pre`).
struct PreTokenizer {
    /// The `tokenizer.ggml.pre` values of the rule.
    names: &'static [&'static str],
    /// Regular expressions applied one after another: each splits every piece into its matches and the text
    /// between them.
    patterns: &'static [&'static str],
    /// A piece that is a token as a whole becomes that token without merging.
    ignore_merges: bool,
    /// llama.cpp puts the beginning-of-text token before a text unless the file says otherwise.
    add_bos: bool,
}

/// The byte-level BPE splitting rules tfc converts: llama.cpp's (src/llama-vocab.cpp, `llm_tokenizer_bpe`), with
/// every name llama.cpp gives each and its spelling of the expressions where it rewrote the model's original, each
/// checked against llama.cpp's ids (runtime/tests/llama_vocab.rs). A file without `tokenizer.ggml.pre` gets
/// llama.cpp's `default`. Left out: rules that llama.cpp splits with code of its own (`kimi-k2`, `afmoe`,
/// `superbpe`, `chameleon`, `whitespace`) and `tiny_aya`, whose `\b` is ASCII-only in llama.cpp.
const PRE_TOKENIZERS: &[PreTokenizer] = &[
    PreTokenizer { names: &["default"], patterns: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"], ignore_merges: false, add_bos: false },
    PreTokenizer {
        names: &[
            "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "mpt",
            "olmo", "jais", "trillion", "granite-docling", "exaone4",
        ],
        patterns: &[GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"],
        patterns: &[r"\p{N}", GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"],
        patterns: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    },
    PreTokenizer { names: &["glm4", "glm5"], patterns: &[LLAMA3], ignore_merges: true, add_bos: false },
    PreTokenizer { names: &["dbrx", "smaug-bpe", "chatglm-bpe"], patterns: &[LLAMA3], ignore_merges: false, add_bos: false },
    PreTokenizer {
        names: &["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "megrez", "hunyuan", "solar-open", "grok-2"],
        patterns: &[QWEN2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer { names: &["qwen35"], patterns: &[QWEN35], ignore_merges: false, add_bos: false },
    PreTokenizer { names: &["falcon"], patterns: &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"], ignore_merges: false, add_bos: false },
    PreTokenizer {
        names: &["deepseek-coder"],
        patterns: &[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}"],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["deepseek-llm"],
        patterns: &[
            r"[\r\n]",
            // Cased letters (Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, Glagolitic, Coptic, Deseret, Osage,
            // Old Hungarian, Warang Citi, Adlam…) by code point; escaped, as some of them change under normalization.
            "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\
             \u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\
             \u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\
             \u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\
             \u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\
             \u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\
             \u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\
             \u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\
             \u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\
             \u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\
             \u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
            // ASCII and full-width punctuation, curly quotes, the ideographic space, comma and full stop.
            "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
            r"\s+$",
            CJK,
            r"\p{N}+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["jais-2"],
        patterns: &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"],
        patterns: &[
            "\\p{N}{1,3}",
            "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["spark2_5"],
        patterns: &[
            "\\p{N}{1,3}",
            "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
            "\\p{N}",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["youtu"],
        patterns: &[
            "[\u{AC00}-\u{D7A3}\u{3131}-\u{318E}]+|[\u{FF01}\u{2026}\u{201C}\u{201D}\u{2018}\u{2019}\u{2014}\u{FF1A}\u{FF1B}\u{FF0C}\u{3001}-\u{303F}\u{FE30}-\u{FE4F}]+|[\u{3105}-\u{312F}]+|[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
            "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: true,
        add_bos: false,
    },
    PreTokenizer {
        names: &["tekken"],
        patterns: &[
            "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: true,
        add_bos: true,
    },
    PreTokenizer {
        names: &["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
        patterns: &[
            "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["granite-embed-multi-97m"],
        patterns: &[
            "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: true,
        add_bos: false,
    },
    PreTokenizer {
        names: &["poro-chat", "bloom", "gpt3-finnish"],
        patterns: &[
            " ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["viking"],
        patterns: &[
            " ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+",
            "\\p{N}",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["bailingmoe", "bailingmoe2", "llada-moe"],
        patterns: &[
            "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["seed-coder"],
        patterns: &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["ufakzeka"],
        patterns: &[
            "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["laguna"],
        patterns: &[
            "[^\\n]+|[\\n]+",
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["exaone-moe"],
        patterns: &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["minicpm5"],
        patterns: &[
            "\\p{N}{1,3}",
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        ignore_merges: true,
        add_bos: false,
    },
];

/// Every `tokenizer.ggml.pre` value tfc converts.
pub fn pre_tokenizer_names() -> impl Iterator<Item = &'static str> {
    PRE_TOKENIZERS.iter().flat_map(|p| p.names.iter().copied())
}

fn byte_level_bpe(gguf: &GgufFile, tokens: &[&str]) -> Result<Parts, String> {
    let name = gguf.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    let pre = PRE_TOKENIZERS.iter().find(|p| p.names.contains(&name)).ok_or_else(|| {
        format!(
            "tokenizer.ggml.pre `{name}` (the byte-level BPE splitting rule) is not converted yet; tfc converts {}",
            pre_tokenizer_names().collect::<Vec<_>>().join(", ")
        )
    })?;
    let merges = strings(gguf, "tokenizer.ggml.merges")?;
    let mut steps: Vec<Json> = pre
        .patterns
        .iter()
        .map(|pattern| json!({ "type": "Split", "pattern": { "Regex": pattern }, "behavior": "Isolated", "invert": false }))
        .collect();
    steps.push(json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false }));
    Ok(Parts {
        normalizer: Json::Null,
        pre_tokenizer: json!({ "type": "Sequence", "pretokenizers": steps }),
        decoder: json!({ "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true }),
        model: json!({
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": pre.ignore_merges, "vocab": vocabulary(tokens), "merges": merges,
        }),
        first: bos(gguf, tokens, pre.add_bos)?,
        last: eos(gguf, tokens, false)?,
    })
}

/// Gemma 4's BPE: merges over UTF-8 characters (not bytes) with spaces as `▁`, text split only at line breaks,
/// byte tokens for characters outside the vocabulary. llama.cpp always starts a text with the beginning-of-text
/// token, whatever the file says.
fn utf8_bpe(gguf: &GgufFile, tokens: &[&str]) -> Result<Parts, String> {
    // A merge is its two parts joined by a space; llama.cpp splits it at the first space after the first character,
    // so a first part that is a space stays whole.
    let merges: Vec<Json> = strings(gguf, "tokenizer.ggml.merges")?
        .iter()
        .map(|m| {
            let at = m.char_indices().skip(1).find(|&(_, c)| c == ' ').map(|(i, _)| i).ok_or(format!("merge `{m}` has no space"))?;
            Ok(json!([&m[..at], &m[at + 1..]]))
        })
        .collect::<Result<_, String>>()?;
    Ok(Parts {
        normalizer: json!({ "type": "Replace", "pattern": { "String": " " }, "content": SPACE }),
        pre_tokenizer: json!({ "type": "Split", "pattern": { "Regex": "[^\\n]+|\\n+" }, "behavior": "Isolated", "invert": false }),
        decoder: sentencepiece_decoder(false),
        model: json!({
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": true, "ignore_merges": false, "vocab": vocabulary(tokens), "merges": merges,
        }),
        first: special_token(gguf, tokens, &["tokenizer.ggml.bos_token_id"])?,
        last: eos(gguf, tokens, false)?,
    })
}

fn scores(gguf: &GgufFile, tokens: &[&str]) -> Result<Vec<f32>, String> {
    match gguf.get("tokenizer.ggml.scores").and_then(Value::as_array) {
        Some(s) if s.len() == tokens.len() => Ok(s.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect()),
        _ => Err("`tokenizer.ggml.scores` is missing or does not list one score per token".into()),
    }
}

/// SentencePiece's decoding: `▁` back to spaces, byte tokens to the bytes they stand for, and the space in front
/// of the text removed where one was prepended.
fn sentencepiece_decoder(space_prepended: bool) -> Json {
    let mut decoders = vec![
        json!({ "type": "Replace", "pattern": { "String": SPACE }, "content": " " }),
        json!({ "type": "ByteFallback" }),
        json!({ "type": "Fuse" }),
    ];
    if space_prepended {
        decoders.push(json!({ "type": "Strip", "content": " ", "start": 1, "stop": 0 }));
    }
    json!({ "type": "Sequence", "decoders": decoders })
}

fn sentencepiece_bpe(gguf: &GgufFile, tokens: &[&str], types: &[u64]) -> Result<Parts, String> {
    let scores = scores(gguf, tokens)?;
    let unk = gguf.get("tokenizer.ggml.unknown_token_id").and_then(Value::as_u64).unwrap_or(0) as usize;
    let unk_token = *tokens.get(unk).ok_or(format!("`tokenizer.ggml.unknown_token_id` {unk} is not a token"))?;
    let add_space_prefix = gguf.get("tokenizer.ggml.add_space_prefix").and_then(Value::as_bool).unwrap_or(true);

    // Every way to make a normal token from two others, ranked by the token's score (highest first), then by the
    // parts' ids so that the order is deterministic.
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(id, &t)| (t, id)).collect();
    let mut merges: Vec<(f32, usize, usize)> = Vec::new();
    for (&token, (&kind, &score)) in tokens.iter().zip(types.iter().zip(&scores)) {
        if kind != TOKEN_NORMAL {
            continue;
        }
        for (at, _) in token.char_indices().skip(1) {
            if let (Some(&left), Some(&right)) = (ids.get(&token[..at]), ids.get(&token[at..])) {
                merges.push((score, left, right));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let merges: Vec<Json> = merges.iter().map(|&(_, l, r)| json!([tokens[l], tokens[r]])).collect();

    let replace_spaces = json!({ "type": "Replace", "pattern": { "String": " " }, "content": SPACE });
    let normalizer = if add_space_prefix {
        json!({ "type": "Sequence", "normalizers": [{ "type": "Prepend", "prepend": SPACE }, replace_spaces] })
    } else {
        replace_spaces
    };
    Ok(Parts {
        normalizer,
        pre_tokenizer: Json::Null,
        decoder: sentencepiece_decoder(add_space_prefix),
        model: json!({
            "type": "BPE", "dropout": null, "unk_token": unk_token, "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false, "vocab": vocabulary(tokens), "merges": merges,
        }),
        first: bos(gguf, tokens, true)?,
        last: eos(gguf, tokens, false)?,
    })
}

/// SentencePiece unigram (`t5`: T5, XLM-RoBERTa): the text normalized by the model's precompiled character map
/// (SentencePiece's own format, which tokenizer.json carries as it is), then the most probable split into tokens
/// by their scores, an unknown character costing 10 less than the least likely token.
fn unigram(gguf: &GgufFile, tokens: &[&str]) -> Result<Parts, String> {
    let scores = scores(gguf, tokens)?;
    let flag = |key: &str| gguf.get(key).and_then(Value::as_bool).unwrap_or(false);
    let unk = gguf.get("tokenizer.ggml.unknown_token_id").and_then(Value::as_u64).unwrap_or(2) as usize;
    if unk >= tokens.len() {
        return Err(format!("`tokenizer.ggml.unknown_token_id` {unk} is not a token"));
    }
    let collapse_spaces = flag("tokenizer.ggml.remove_extra_whitespaces");
    // llama.cpp puts the prefix space before the text's first non-space character; tokenizer.json can only prepend
    // it to the whole text, which differs for text of spaces alone unless those are removed.
    let space_prepended = collapse_spaces || flag("tokenizer.ggml.add_space_prefix");
    if space_prepended && !collapse_spaces {
        return Err("a unigram tokenizer with a prefix space that keeps extra whitespace is not converted yet".into());
    }
    let mut normalizers = Vec::new();
    if let Some(map) = gguf.get("tokenizer.ggml.precompiled_charsmap").and_then(Value::as_array).filter(|m| !m.is_empty()) {
        let bytes: Vec<u8> = map.iter().map(|b| b.as_u64().map(|b| b as u8)).collect::<Option<_>>().ok_or("`tokenizer.ggml.precompiled_charsmap` is not bytes")?;
        normalizers.push(json!({ "type": "Precompiled", "precompiled_charsmap": base64::encode(bytes) }));
    }
    if collapse_spaces {
        // Runs of spaces become one, and none is left at either end.
        normalizers.push(json!({ "type": "Replace", "pattern": { "Regex": " +" }, "content": " " }));
        normalizers.push(json!({ "type": "Replace", "pattern": { "Regex": "^ | $" }, "content": "" }));
    }
    normalizers.push(json!({ "type": "Replace", "pattern": { "String": " " }, "content": SPACE }));
    if space_prepended {
        normalizers.push(json!({ "type": "Prepend", "prepend": SPACE }));
    }
    let vocab: Vec<Json> = tokens.iter().zip(&scores).map(|(t, s)| json!([t, s])).collect();
    Ok(Parts {
        normalizer: json!({ "type": "Sequence", "normalizers": normalizers }),
        pre_tokenizer: Json::Null,
        decoder: sentencepiece_decoder(space_prepended),
        model: json!({ "type": "Unigram", "unk_id": unk, "vocab": vocab, "byte_fallback": false }),
        first: bos(gguf, tokens, false)?,
        last: eos(gguf, tokens, true)?,
    })
}

fn wordpiece(gguf: &GgufFile, tokens: &[&str]) -> Result<Parts, String> {
    // BERT's spelling of each piece: bracketed special tokens as they are, word-initial pieces without the `▁`,
    // continuations with `##`.
    let pieces: Vec<String> = tokens
        .iter()
        .map(|t| match t.strip_prefix(SPACE) {
            _ if t.starts_with('[') && t.ends_with(']') => t.to_string(),
            Some(word) => word.to_string(),
            None => format!("##{t}"),
        })
        .collect();
    let unk = gguf.get("tokenizer.ggml.unknown_token_id").and_then(Value::as_u64).unwrap_or(100) as usize;
    let unk_token = pieces.get(unk).ok_or(format!("`tokenizer.ggml.unknown_token_id` {unk} is not a token"))?;
    let vocab: serde_json::Map<String, Json> = pieces.iter().enumerate().map(|(id, p)| (p.clone(), json!(id))).collect();
    Ok(Parts {
        normalizer: json!({ "type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true }),
        pre_tokenizer: json!({ "type": "BertPreTokenizer" }),
        decoder: json!({ "type": "WordPiece", "prefix": "##", "cleanup": true }),
        model: json!({ "type": "WordPiece", "unk_token": unk_token, "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab }),
        first: special_token(gguf, tokens, &["tokenizer.ggml.cls_token_id", "tokenizer.ggml.bos_token_id"])?,
        last: special_token(gguf, tokens, &["tokenizer.ggml.seperator_token_id", "tokenizer.ggml.eos_token_id"])?,
    })
}
