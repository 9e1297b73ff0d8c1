//! The `tfc` binary as users call it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tfc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tfc")).args(args).env("XDG_RUNTIME_DIR", "/tmp").output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = tfc(args);
    assert!(out.status.success(), "tfc {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// (relative path, bytes) of every file under `dir`, sorted.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn compiling_twice_gives_byte_identical_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let model = tfc_fixtures::tiny_model("tiny-llama");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&["compile", path(&model), "--target", "webgpu,wasm", "-o", path(&a), "--chunk-size", "20KB"]);
    ok(&["compile", path(&model), "-o", path(&b), "--chunk-size", "20KB"]);
    let (ta, tb) = (tree(&a), tree(&b));
    assert!(ta.iter().filter(|(p, _)| p.starts_with("weights")).count() > 2, "expected several chunks");
    assert_eq!(ta.len(), tb.len());
    for ((pa, da), (pb, db)) in ta.iter().zip(&tb) {
        assert_eq!(pa, pb);
        assert!(da == db, "{} differs between two compiles", pa.display());
    }
}

#[test]
fn unknown_architecture_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_dir(&tfc_fixtures::tiny_model("tiny-gpt2"), &model);
    let config = std::fs::read_to_string(model.join("config.json")).unwrap().replace("\"gpt2\"", "\"mamba9\"");
    std::fs::write(model.join("config.json"), config).unwrap();
    let out = dir.path().join("out");
    let result = tfc(&["compile", path(&model), "-o", path(&out)]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(stderr.contains("mamba9"), "{stderr}");
    assert_eq!(stderr.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "{stderr}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a partial bundle was left behind");
}

#[test]
fn truncated_safetensors_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_dir(&tfc_fixtures::tiny_model("tiny-gpt2"), &model);
    let file = model.join("model.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len / 2).unwrap();
    let out = dir.path().join("out");
    let result = tfc(&["compile", path(&model), "-o", path(&out)]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(stderr.contains("model.safetensors"), "{stderr}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a partial bundle was left behind");
}

#[test]
fn run_writes_npy_outputs_and_inspect_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("qwen");
    ok(&["compile", path(&tfc_fixtures::tiny_model("tiny-qwen2")), "-o", path(&bundle)]);
    let summary = ok(&["inspect", path(&bundle), "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["model"]["architecture"], "qwen2");
    assert!(summary["parameters"].as_u64().unwrap() > 0);
    assert!(ok(&["inspect", path(&bundle)]).contains("parameters"));

    let out = dir.path().join("out");
    let json = ok(&["run", path(&bundle), "--tokens", "5,17,200,3", "--out", path(&out), "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["outputs"]["logits"]["shape"], serde_json::json!([1, 4, 256]));
    let logits = tfc_fixtures::read_npy(&out.join("logits.npy"));
    assert_eq!(logits.shape, vec![1, 4, 256]);

    // The same bundle against the interpreter on the same tokens.
    let graph = tfc_compiler::load_graph(&tfc_fixtures::tiny_model("tiny-qwen2"), &Default::default()).unwrap();
    let ids = tfc_ir::Tensor::i32(vec![1, 4], vec![5, 17, 200, 3]);
    let want = tfc_ir::interp::run(&graph, &[("input_ids".to_string(), ids)].into()).unwrap();
    let error = tfc_ir::relative_l2(&logits.to_f32(), &want[0].1.to_f32());
    assert!(error < 1e-5, "relative L2 {error:.3e}");
}

#[test]
fn run_tokenizes_text_with_the_bundled_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("minilm");
    ok(&["compile", path(&tfc_fixtures::minilm()), "-o", path(&bundle)]);
    let json = ok(&["run", path(&bundle), "--text", "Hello world, this is a test.", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["tokens"], serde_json::json!([101, 7592, 2088, 1010, 2023, 2003, 1037, 3231, 1012, 102]));
    assert_eq!(json["outputs"]["last_hidden_state"]["shape"], serde_json::json!([1, 10, 384]));
}

#[test]
fn generate_is_greedy_by_default_and_repeatable_with_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("llama");
    ok(&["compile", path(&tfc_fixtures::tiny_model("tiny-llama")), "-o", path(&bundle)]);
    let reference = tfc_fixtures::reference("tiny-llama");
    let ids: Vec<String> = reference["generated_ids"].to_i64().iter().map(i64::to_string).collect();
    let prompt = ids[..16].join(",");
    let tokens = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["generate", path(&bundle), "--tokens", &prompt, "--max-tokens", "12", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str::<serde_json::Value>(&ok(&args)).unwrap()["tokens"].clone()
    };
    let greedy: Vec<u64> = ids[16..28].iter().map(|t| t.parse().unwrap()).collect();
    assert_eq!(tokens(&[]), serde_json::json!(greedy), "greedy tokens differ from transformers' generate");
    let sampled = ["--temperature", "1.5", "--top-k", "50", "--top-p", "0.95", "--seed", "7"];
    assert_eq!(tokens(&sampled), tokens(&sampled), "the same seed gave different tokens");
    let other_seed = ["--temperature", "1.5", "--top-k", "50", "--top-p", "0.95", "--seed", "8"];
    assert_ne!(tokens(&sampled), tokens(&other_seed), "two seeds gave the same 12 tokens");
}

#[test]
fn quantized_compiles_are_byte_identical_and_inspect_lists_each_tensors_format() {
    let dir = tempfile::tempdir().unwrap();
    let model = tfc_fixtures::gguf_model("tiny-llama-q4_k.gguf");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&["compile", path(&model), "--target", "webgpu", "-o", path(&a)]);
    ok(&["compile", path(&model), "--target", "webgpu", "-o", path(&b)]);
    assert!(tree(&a) == tree(&b), "two compiles of a GGUF file differ");
    let summary: serde_json::Value = serde_json::from_str(&ok(&["inspect", path(&a), "--json"])).unwrap();
    let tensor = |name: &str| summary["tensors"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap().clone();
    assert_eq!(tensor("blk.0.ffn_up.weight")["dtype"], "q4_k");
    assert_eq!(tensor("blk.0.ffn_up.weight")["bits_per_weight"], 4.5);
    assert_eq!(tensor("blk.0.attn_norm.weight")["dtype"], "f32");
    assert!(ok(&["inspect", path(&a)]).contains("blk.0.ffn_up.weight"));

    // tiny-qwen2's rows of 64 are not whole Q6_K blocks: its matrices fall back to Q8_0, its norms stay f16.
    let q = dir.path().join("q");
    ok(&["compile", path(&tfc_fixtures::tiny_model("tiny-qwen2")), "--target", "webgpu", "--quant", "q6_k", "-o", path(&q)]);
    let summary: serde_json::Value = serde_json::from_str(&ok(&["inspect", path(&q), "--json"])).unwrap();
    let dtypes: std::collections::BTreeSet<&str> = summary["tensors"].as_array().unwrap().iter().map(|t| t["dtype"].as_str().unwrap()).collect();
    assert!(dtypes.contains("q8_0") && dtypes.contains("f16") && !dtypes.contains("q6_k"), "{dtypes:?}");

    let out = tfc(&["compile", path(&model), "--quant", "q7_k", "-o", path(&dir.path().join("bad"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("`q7_k` is not a weight format"), "{err}");
}

#[test]
fn onnx_compiles_with_fixed_dims_and_runs_npy_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = tfc_fixtures::root().join("models/onnx/tiny-llama.onnx");
    let bundle = dir.path().join("llama");
    ok(&["compile", path(&model), "--dim", "sequence=5", "-o", path(&bundle)]);
    assert!(ok(&["inspect", path(&bundle)]).contains("input_ids i32[1, 5]"));
    let case = tfc_fixtures::root().join("reference/onnx-llama/s5");
    let out = dir.path().join("out");
    let input = format!("input_ids={}", path(&case.join("input_ids.npy")));
    ok(&["run", path(&bundle), "--input", &input, "--out", path(&out)]);
    let logits = tfc_fixtures::read_npy(&out.join("logits.npy"));
    let error = tfc_ir::relative_l2(&logits.to_f32(), &tfc_fixtures::read_npy(&case.join("logits.npy")).to_f32());
    assert!(error < 1e-4, "relative L2 {error:.3e}");

    // --dim belongs to ONNX models.
    let result = tfc(&["compile", path(&tfc_fixtures::tiny_model("tiny-llama")), "--dim", "sequence=5", "-o", path(&dir.path().join("x"))]);
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("--dim fixes the symbolic dimensions of ONNX models"));
}

/// A 1-D int64 .npy file.
fn write_npy_i64(path: &Path, values: &[i64]) {
    let mut header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}", values.len()).into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header);
    values.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// A graph that takes a shape as an input compiles once `--const` gives that input a value; without it, the error
/// names the input and the option.
#[test]
fn onnx_shape_inputs_take_a_value_at_compile_time() {
    let dir = tempfile::tempdir().unwrap();
    let model = tfc_fixtures::root().join(".cache/onnx-node-tests/node/test_reshape_negative_dim/model.onnx");
    let result = tfc(&["compile", path(&model), "-o", path(&dir.path().join("refused"))]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success() && stderr.contains("`shape`") && stderr.contains("--const NAME=FILE.npy"), "{stderr}");

    let shape = dir.path().join("shape.npy");
    write_npy_i64(&shape, &[2, -1, 2]);
    let bundle = dir.path().join("reshape");
    ok(&["compile", path(&model), "--const", &format!("shape={}", path(&shape)), "-o", path(&bundle)]);
    let summary = ok(&["inspect", path(&bundle)]);
    assert!(summary.contains("data f32[2, 3, 4]") && summary.contains("f32[2, 6, 2]") && !summary.contains("shape i"), "{summary}");
}
