//! `tokenizer.ggml.*` metadata → a tokenizer.json in the Hugging Face tokenizers format, for the bundle.
//!
//! Byte-level BPE (`tokenizer.ggml.model` = `gpt2`) is converted: the vocabulary and merges are already in byte-level
//! form; the pre-tokenizer is chosen by `tokenizer.ggml.pre` (llama.cpp's name for the splitting rule), from the rules
//! listed in [`PRE_TOKENIZERS`]. Control and user-defined tokens become added tokens, matched before splitting.

use super::{GgufFile, Value};
use serde_json::{Value as Json, json};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// The splitting rules of the byte-level BPE tokenizers (`tokenizer.ggml.pre` values) that tfc converts.
pub const PRE_TOKENIZERS: &[&str] = &["default", "gpt-2", "smollm", "llama-bpe", "qwen2"];

/// The regular expression that llama-3 style (`llama-bpe`) and Qwen2 tokenizers split text with before BPE; they
/// differ in how many digits stay together.
fn digits_and_words(digits: &str) -> String {
    format!(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{digits}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
}

fn byte_level(use_regex: bool) -> Json {
    json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex })
}

/// The tokenizer.json text for the file's tokenizer, or why it can't be converted (the bundle then has none).
pub fn tokenizer_json(gguf: &GgufFile) -> Result<String, String> {
    let model = gguf.get("tokenizer.ggml.model").and_then(Value::as_str).ok_or("the file has no `tokenizer.ggml.model`")?;
    if model != "gpt2" {
        return Err(format!("tokenizer.ggml.model `{model}` is not converted yet; tfc converts byte-level BPE (`gpt2`) tokenizers"));
    }
    let strings = |key: &str| -> Result<Vec<&str>, String> {
        let values = gguf.get(key).and_then(Value::as_array).ok_or(format!("`{key}` is missing or not an array"))?;
        values.iter().map(|v| v.as_str().ok_or(format!("`{key}` holds a non-string"))).collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> = match gguf.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(t) if t.len() == tokens.len() => t.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        Some(t) => return Err(format!("`tokenizer.ggml.token_type` has {} entries for {} tokens", t.len(), tokens.len())),
        None => vec![1; tokens.len()],
    };
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
    let vocab: serde_json::Map<String, Json> = tokens.iter().enumerate().map(|(id, t)| (t.to_string(), json!(id))).collect();
    let add_bos = gguf.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(false);
    let post_processor = match gguf.get("tokenizer.ggml.bos_token_id").and_then(Value::as_u64) {
        Some(bos) if add_bos => {
            let bos_token = *tokens.get(bos as usize).ok_or(format!("`tokenizer.ggml.bos_token_id` {bos} is not a token"))?;
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
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true },
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    });
    Ok(serde_json::to_string(&tokenizer).expect("JSON serialises"))
}
