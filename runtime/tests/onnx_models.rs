//! ONNX models (the real int8 MiniLM, a torch-exported tiny Llama) through tfc's importer, a bundle and the native
//! runtime, against onnxruntime's outputs (references made by fixtures/scripts/make_onnx_references.py and
//! make_onnx_llama.py).

use std::collections::BTreeMap;
use tfc_compiler::pipeline::WasmTarget;
use tfc_compiler::{CompileOptions, Quiet, compile};
use tfc_ir::relative_l2;
use tfc_runtime::{Bundle, Session};

#[test]
fn minilm_int8_matches_onnxruntime_and_keeps_its_weights_int8() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("minilm-int8");
    let opts = CompileOptions { max_sequence: Some(128), wasm: WasmTarget::Off, ..Default::default() };
    let report = compile(&tfc_fixtures::minilm_int8_onnx(), &out, &opts, &mut Quiet).unwrap();
    // 22.7 M parameters: int8 weights (as Q8_0 with block scale 1) keep the bundle near 1 byte per weight.
    let bytes: u64 = report.manifest.weights.iter().map(|w| w.pieces.iter().map(|p| p.size).sum::<u64>()).sum();
    assert!(bytes < 26 << 20, "weights take {bytes} bytes");
    let mut session = Session::new(&Bundle::open(&out).unwrap()).unwrap();
    for case in ["s0", "batch3"] {
        let reference = tfc_fixtures::reference(&format!("minilm-int8/{case}"));
        let inputs: BTreeMap<_, _> =
            ["input_ids", "attention_mask", "token_type_ids"].iter().map(|n| (n.to_string(), reference[*n].clone())).collect();
        let outputs = session.run(&inputs).unwrap();
        let hidden = &outputs.iter().find(|(n, _)| n == "last_hidden_state").unwrap().1;
        let expected = &reference["last_hidden_state"];
        assert_eq!(hidden.shape, expected.shape);
        let err = relative_l2(&hidden.to_f32(), &expected.to_f32());
        eprintln!("{case}: relative L2 to onnxruntime {err:.2e}");
        assert!(err <= 1e-4, "{case}: relative L2 {err:.2e} > 1e-4");
    }
}

/// A small random Llama exported by torch.onnx.export (dynamo, opset 18, symbolic sequence), one bundle for both
/// lengths.
#[test]
fn torch_exported_llama_matches_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-llama");
    let model = tfc_fixtures::root().join("models/onnx/tiny-llama.onnx");
    let opts = CompileOptions { max_sequence: Some(64), wasm: WasmTarget::Off, ..Default::default() };
    compile(&model, &out, &opts, &mut Quiet).unwrap();
    let mut session = Session::new(&Bundle::open(&out).unwrap()).unwrap();
    for case in ["s5", "s17"] {
        let reference = tfc_fixtures::reference(&format!("onnx-llama/{case}"));
        let inputs = BTreeMap::from([("input_ids".to_string(), reference["input_ids"].clone())]);
        let outputs = session.run(&inputs).unwrap();
        let logits = &outputs.iter().find(|(n, _)| n == "logits").unwrap().1;
        assert_eq!(logits.shape, reference["logits"].shape);
        let err = relative_l2(&logits.to_f32(), &reference["logits"].to_f32());
        eprintln!("{case}: relative L2 to onnxruntime {err:.2e}");
        assert!(err <= 1e-4, "{case}: relative L2 {err:.2e} > 1e-4");
    }
}
