//! Real and tiny models compiled to bundles and run on the native runtime, against transformers' outputs.

use std::collections::BTreeMap;
use std::path::Path;
use tfc_compiler::{CompileOptions, Quiet, compile};
use tfc_fixtures::{masked_rows, reference};
use tfc_ir::relative_l2;
use tfc_runtime::{Bundle, Session};

fn session(model: &Path, out: &Path) -> Session {
    compile(model, out, &CompileOptions::default(), &mut Quiet).unwrap_or_else(|e| panic!("compiling {}: {e}", model.display()));
    Session::new(&Bundle::open(out).unwrap()).unwrap()
}

fn output(outputs: Vec<(String, tfc_ir::Tensor)>, name: &str) -> tfc_ir::Tensor {
    outputs.into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no output {name}")).1
}

#[test]
fn minilm_last_hidden_state_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(&tfc_fixtures::minilm(), &dir.path().join("minilm"));
    for case in ["s0", "s1", "s2", "batch3"] {
        let mut r = reference(&format!("minilm/{case}"));
        let want = r.remove("last_hidden_state").unwrap();
        let mask = r["attention_mask"].clone();
        let inputs: BTreeMap<_, _> = r.into_iter().collect();
        let got = output(s.run(&inputs).unwrap(), "last_hidden_state");
        assert_eq!(got.shape, want.shape);
        let error = relative_l2(&masked_rows(&got, &mask), &masked_rows(&want, &mask));
        println!("minilm {case}: relative L2 {error:.2e}");
        assert!(error <= 1e-4, "minilm {case}: relative L2 {error:.3e} > 1e-4");
    }
}

fn check_decoder(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(&tfc_fixtures::tiny_model(name), &dir.path().join(name));
    let r = reference(name);
    let inputs = BTreeMap::from([("input_ids".to_string(), r["input_ids"].clone())]);
    let got = output(s.run(&inputs).unwrap(), "logits");
    assert_eq!(got.shape, r["logits"].shape);
    let error = relative_l2(&got.to_f32(), &r["logits"].to_f32());
    println!("{name}: relative L2 {error:.2e}");
    assert!(error <= 1e-4, "{name}: relative L2 {error:.3e} > 1e-4");
}

#[test]
fn tiny_gpt2_logits_match_transformers() {
    check_decoder("tiny-gpt2");
}

#[test]
fn tiny_llama_gqa_bf16_sharded_logits_match_transformers() {
    check_decoder("tiny-llama");
}

#[test]
fn tiny_qwen2_f16_tied_logits_match_transformers() {
    check_decoder("tiny-qwen2");
}

#[test]
fn tiny_gemma3_sliding_window_logits_match_transformers() {
    check_decoder("tiny-gemma3");
}

#[test]
fn tiny_phi3_fused_partial_rotary_logits_match_transformers() {
    check_decoder("tiny-phi3");
}

#[test]
fn tiny_mistral_sliding_window_logits_match_transformers() {
    check_decoder("tiny-mistral");
}

#[test]
fn weights_split_to_a_small_binding_limit_give_the_same_logits() {
    // 16 KB bindings: the tied f16 embedding (32 KB) is split in row blocks shared by the lookup and the lm_head.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qwen-split");
    let opts = CompileOptions { max_binding_size: 16 << 10, max_batch: 1, ..Default::default() };
    let report = compile(&tfc_fixtures::tiny_model("tiny-qwen2"), &out, &opts, &mut Quiet).unwrap();
    assert!(report.manifest.weights.iter().any(|w| w.name.ends_with("[0:128]")), "the embedding was not split");
    assert_eq!(report.manifest.requires.limits["maxStorageBufferBindingSize"], 16 << 10);
    let mut s = Session::new(&Bundle::open(&out).unwrap()).unwrap();
    let r = reference("tiny-qwen2");
    let got = output(s.run(&BTreeMap::from([("input_ids".to_string(), r["input_ids"].clone())])).unwrap(), "logits");
    let error = relative_l2(&got.to_f32(), &r["logits"].to_f32());
    println!("tiny-qwen2 split: relative L2 {error:.2e}");
    assert!(error <= 1e-4, "relative L2 {error:.3e}");
}
