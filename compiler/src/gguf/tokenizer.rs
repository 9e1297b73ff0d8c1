//! `tokenizer.ggml.*` metadata → a tokenizer.json in the Hugging Face tokenizers format, for the bundle.
//!
//! Three of llama.cpp's tokenizer models are converted:
//! - byte-level BPE (`tokenizer.ggml.model` = `gpt2`): the vocabulary and merges are already in byte-level form; the
//!   pre-tokenizer is chosen by `tokenizer.ggml.pre` (llama.cpp's name for the splitting rule) among
//!   [`PRE_TOKENIZERS`];
//! - SentencePiece BPE (`llama`, as in Llama 2, Mistral and Phi-3): the file has scores, not merges; merging the
//!   adjacent pair whose result scores highest is expressed as merges ranked by the score of their result, with
//!   the text's spaces as `▁` (one prepended, unless `tokenizer.ggml.add_space_prefix` is false) and unknown
//!   characters spelled as byte tokens;
//! - WordPiece (`bert`): llama.cpp's converter marks word-initial pieces with `▁` and drops the `##` of
//!   continuations; tokenizer.json states the pieces as BERT does, with BERT's normalizer and splitting, and wraps
//!   a text in the classifier and separator tokens.
//!
//! Control and user-defined tokens become added tokens, matched before splitting.

use super::{GgufFile, Value};
use serde_json::{Value as Json, json};
use std::collections::HashMap;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_NORMAL: u64 = 1;
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// The splitting rules of the byte-level BPE tokenizers (`tokenizer.ggml.pre` values) that tfc converts.
pub const PRE_TOKENIZERS: &[&str] = &["default", "gpt-2", "smollm", "llama-bpe", "qwen2"];

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
        other => {
            return Err(format!(
                "tokenizer.ggml.model `{other}` is not converted yet; tfc converts byte-level BPE (`gpt2`), SentencePiece (`llama`) and WordPiece (`bert`) tokenizers"
            ));
        }
    };
    let added: Vec<Json> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, t))| matches!(**t, TOKEN_CONTROL | TOKEN_USER_DEFINED))
        .map(|(id, (content, &t))| {
            json!({ "id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": false, "special": t == TOKEN_CONTROL })
        })
        .collect();
    let add_bos = gguf.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(false);
    let post_processor = match (parts.post_processor, special_token(gguf, &tokens, &["tokenizer.ggml.bos_token_id"])?) {
        (Some(p), _) => p,
        (None, Some((bos, bos_token))) if add_bos => {
            json!({
                "type": "TemplateProcessing",
                "single": [{ "SpecialToken": { "id": bos_token, "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } }],
                "pair": [{ "SpecialToken": { "id": bos_token, "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } }, { "Sequence": { "id": "B", "type_id": 1 } }],
                "special_tokens": { bos_token: { "id": bos_token, "ids": [bos], "tokens": [bos_token] } },
            })
        }
        _ => Json::Null,
    };
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
    /// The model's own special-token template; otherwise a beginning-of-text token where the file asks for one.
    post_processor: Option<Json>,
}

/// The id and text of the token named by the first of `keys` that the file has.
fn special_token<'a>(gguf: &GgufFile, tokens: &[&'a str], keys: &[&str]) -> Result<Option<(u64, &'a str)>, String> {
    let Some((key, id)) = keys.iter().find_map(|k| gguf.get(k).and_then(Value::as_u64).map(|id| (k, id))) else { return Ok(None) };
    let token = tokens.get(id as usize).ok_or(format!("`{key}` {id} is not a token"))?;
    Ok(Some((id, token)))
}

fn strings<'a>(gguf: &'a GgufFile, key: &str) -> Result<Vec<&'a str>, String> {
    let values = gguf.get(key).and_then(Value::as_array).ok_or(format!("`{key}` is missing or not an array"))?;
    values.iter().map(|v| v.as_str().ok_or(format!("`{key}` holds a non-string"))).collect()
}

fn vocabulary(tokens: &[&str]) -> serde_json::Map<String, Json> {
    tokens.iter().enumerate().map(|(id, t)| (t.to_string(), json!(id))).collect()
}

/// The regular expression that llama-3 style (`llama-bpe`) and Qwen2 tokenizers split text with before BPE; they
/// differ in how many digits stay together.
fn digits_and_words(digits: &str) -> String {
    format!(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{digits}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
}

fn byte_level(use_regex: bool) -> Json {
    json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex })
}

fn byte_level_bpe(gguf: &GgufFile, tokens: &[&str]) -> Result<Parts, String> {
    let merges = strings(gguf, "tokenizer.ggml.merges")?;
    let pre = gguf.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    let split = |pattern: String| json!({ "type": "Split", "pattern": { "Regex": pattern }, "behavior": "Isolated", "invert": false });
    let pre_tokenizer = match pre {
        "default" | "gpt-2" => byte_level(true),
        "smollm" => json!({ "type": "Sequence", "pretokenizers": [{ "type": "Digits", "individual_digits": true }, byte_level(true)] }),
        "llama-bpe" => json!({ "type": "Sequence", "pretokenizers": [split(digits_and_words("{1,3}")), byte_level(false)] }),
        "qwen2" => json!({ "type": "Sequence", "pretokenizers": [split(digits_and_words("")), byte_level(false)] }),
        other => {
            return Err(format!("tokenizer.ggml.pre `{other}` is not converted yet; tfc converts {}", PRE_TOKENIZERS.join(", ")));
        }
    };
    // Llama 3's tokenizer takes a pre-token that is in the vocabulary whole, before applying any merge.
    let ignore_merges = pre == "llama-bpe";
    Ok(Parts {
        normalizer: Json::Null,
        pre_tokenizer,
        decoder: json!({ "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true }),
        model: json!({
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges, "vocab": vocabulary(tokens), "merges": merges,
        }),
        post_processor: None,
    })
}

fn sentencepiece_bpe(gguf: &GgufFile, tokens: &[&str], types: &[u64]) -> Result<Parts, String> {
    let scores: Vec<f32> = match gguf.get("tokenizer.ggml.scores").and_then(Value::as_array) {
        Some(s) if s.len() == tokens.len() => s.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
        _ => return Err("`tokenizer.ggml.scores` is missing or does not list one score per token".into()),
    };
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
    let mut decoders = vec![
        json!({ "type": "Replace", "pattern": { "String": SPACE }, "content": " " }),
        json!({ "type": "ByteFallback" }),
        json!({ "type": "Fuse" }),
    ];
    let normalizer = if add_space_prefix {
        decoders.push(json!({ "type": "Strip", "content": " ", "start": 1, "stop": 0 }));
        json!({ "type": "Sequence", "normalizers": [{ "type": "Prepend", "prepend": SPACE }, replace_spaces] })
    } else {
        replace_spaces
    };
    Ok(Parts {
        normalizer,
        pre_tokenizer: Json::Null,
        decoder: json!({ "type": "Sequence", "decoders": decoders }),
        model: json!({
            "type": "BPE", "dropout": null, "unk_token": unk_token, "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false, "vocab": vocabulary(tokens), "merges": merges,
        }),
        post_processor: None,
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
    let cls = special_token(gguf, tokens, &["tokenizer.ggml.cls_token_id", "tokenizer.ggml.bos_token_id"])?;
    let sep = special_token(gguf, tokens, &["tokenizer.ggml.seperator_token_id", "tokenizer.ggml.eos_token_id"])?;
    let post_processor = match (cls, sep) {
        (Some((cls, cls_token)), Some((sep, sep_token))) => json!({
            "type": "TemplateProcessing",
            "single": [{ "SpecialToken": { "id": cls_token, "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } },
                       { "SpecialToken": { "id": sep_token, "type_id": 0 } }],
            "pair": [{ "SpecialToken": { "id": cls_token, "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } },
                     { "SpecialToken": { "id": sep_token, "type_id": 0 } }, { "Sequence": { "id": "B", "type_id": 1 } },
                     { "SpecialToken": { "id": sep_token, "type_id": 1 } }],
            "special_tokens": {
                cls_token: { "id": cls_token, "ids": [cls], "tokens": [cls_token] },
                sep_token: { "id": sep_token, "ids": [sep], "tokens": [sep_token] },
            },
        }),
        _ => Json::Null,
    };
    let vocab: serde_json::Map<String, Json> = pieces.iter().enumerate().map(|(id, p)| (p.clone(), json!(id))).collect();
    Ok(Parts {
        normalizer: json!({ "type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true }),
        pre_tokenizer: json!({ "type": "BertPreTokenizer" }),
        decoder: json!({ "type": "WordPiece", "prefix": "##", "cleanup": true }),
        model: json!({ "type": "WordPiece", "unk_token": unk_token, "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab }),
        post_processor: Some(post_processor),
    })
}
