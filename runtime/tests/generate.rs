//! Decoding with the KV cache on the native runtime against transformers: the logits of every decoding step equal
//! a full-sequence forward, and greedy decoding gives transformers' `generate` tokens.

use tfc_compiler::{CompileOptions, Quiet, compile};
use tfc_fixtures::reference;
use tfc_ir::relative_l2;
use tfc_runtime::{Bundle, Decoder, Session};
use std::path::Path;

fn decoder(model: &Path, dir: &Path, opts: &CompileOptions) -> Decoder {
    let out = dir.join("bundle");
    compile(model, &out, opts, &mut Quiet).unwrap();
    Decoder::new(Session::new(&Bundle::open(&out).unwrap()).unwrap()).unwrap()
}

fn check(name: &str) {
    check_model(&tfc_fixtures::tiny_model(name), name, &CompileOptions::default(), 1e-3);
}

/// Decodes with `model` (a compile input) the reference continuation of the tiny model `name`; each step's logits
/// must be within relative L2 `bound` of transformers'.
fn check_model(model: &Path, name: &str, opts: &CompileOptions, bound: f64) {
    let dir = tempfile::tempdir().unwrap();
    let mut d = decoder(model, dir.path(), opts);
    let r = reference(name);
    let ids: Vec<u32> = r["generated_ids"].to_i64().iter().map(|&t| t as u32).collect();
    let logits = &r["generated_logits"];
    let vocab = *logits.shape.last().unwrap();
    let want = |position: usize| logits.to_f32()[position * vocab..(position + 1) * vocab].to_vec();
    let prompt = reference(name)["input_ids"].numel();

    // Teacher-forced: the prompt, then each reference token; every step's logits against the full forward.
    let mut step = d.feed(&ids[..prompt], true).unwrap();
    let mut worst = 0f64;
    for position in prompt - 1..ids.len() - 1 {
        if position >= prompt {
            step = d.feed(&ids[position..position + 1], true).unwrap();
        }
        let error = relative_l2(step.logits.as_ref().unwrap(), &want(position));
        worst = worst.max(error);
        assert!(error <= bound, "{name}: step at position {position}: relative L2 {error:.3e}");
        assert_eq!(step.next_token, ids[position + 1], "{name}: greedy token after position {position}");
    }
    println!("{name}: {} decoding steps, worst relative L2 {worst:.2e}", ids.len() - prompt);

    // Free-running greedy decoding from the prompt reproduces generate().
    d.reset();
    let mut tokens = ids[..prompt].to_vec();
    let mut next = d.feed(&tokens, false).unwrap().next_token;
    while tokens.len() < ids.len() {
        tokens.push(next);
        next = d.feed(&[next], false).unwrap().next_token;
    }
    assert_eq!(tokens, ids, "{name}: greedy tokens differ from transformers' generate");
}

#[test]
fn tiny_gpt2_decodes_like_transformers() {
    check("tiny-gpt2");
}

#[test]
fn tiny_llama_decodes_like_transformers() {
    check("tiny-llama");
}

#[test]
fn tiny_qwen2_decodes_like_transformers() {
    check("tiny-qwen2");
}

#[test]
fn tiny_gemma3_decodes_like_transformers() {
    check("tiny-gemma3");
}

#[test]
fn tiny_multimodal_gemma3_decodes_like_transformers() {
    check("tiny-gemma3-multimodal");
}

#[test]
fn tiny_gemma3_gguf_decodes_like_transformers() {
    check_model(&tfc_fixtures::gguf_model("tiny-gemma3-f32.gguf"), "tiny-gemma3", &CompileOptions::default(), 1e-3);
}

/// Keys and values stored as f16 (rounded to 11 significant bits) move the logits by a few 1e-4.
#[test]
fn tiny_llama_decodes_like_transformers_with_an_f16_kv_cache() {
    let opts = CompileOptions { kv_dtype: tfc_ir::DType::F16, ..Default::default() };
    check_model(&tfc_fixtures::tiny_model("tiny-llama"), "tiny-llama", &opts, 2e-3);
}

#[test]
fn tiny_phi3_decodes_like_transformers() {
    check("tiny-phi3");
}

#[test]
fn tiny_mistral_decodes_like_transformers() {
    check("tiny-mistral");
}

#[test]
fn tokens_past_the_context_length_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = decoder(&tfc_fixtures::tiny_model("tiny-qwen2"), dir.path(), &CompileOptions::default());
    let context = d.context_length() as usize;
    d.feed(&vec![5; context - 1], false).unwrap();
    let error = d.feed(&[5, 6], false).err().expect("two more tokens do not fit").to_string();
    assert!(error.contains("exceed the context length"), "{error}");
    d.feed(&[5], false).expect("the last row of the cache is usable");
}
