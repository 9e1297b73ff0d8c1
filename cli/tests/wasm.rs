//! The WASM SIMD fallback as `tfc run --backend wasm` runs it (in Node.js, with the executor browsers run): every op
//! case of the shared suite against the interpreter on 1 and 3 threads (which must agree bit for bit), the real
//! all-MiniLM-L6-v2 against transformers and the WebGPU path, and the compiler's memory check.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use tfc_compiler::pipeline::WasmTarget;
use tfc_compiler::{CompileOptions, Quiet, compile, compile_graph};
use tfc_fixtures::{OpCase, masked_rows, read_npy, reference};
use tfc_ir::{DType, Data, Dim, Graph, Op, Tensor, TensorType, relative_l2};

/// The default options, with a fallback that cannot be built an error.
fn required() -> CompileOptions {
    CompileOptions { wasm: WasmTarget::Required, ..Default::default() }
}

fn write_npy(path: &Path, t: &Tensor) {
    fn write<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[usize], values: &[T]) {
        use npyz::WriterBuilder;
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let mut npy = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(file).begin_nd().unwrap();
        npy.extend(values.iter().copied()).unwrap();
        npy.finish().unwrap();
    }
    match &t.data {
        Data::F32(v) => write(path, &t.shape, v),
        Data::I32(v) => write(path, &t.shape, v),
        Data::I64(v) => write(path, &t.shape, v),
    }
}

/// Runs `bundle` on `inputs` with `tfc run --backend wasm --threads N`; the outputs by name, or the error message.
fn run_wasm(bundle: &Path, inputs: &BTreeMap<String, Tensor>, threads: usize) -> Result<BTreeMap<String, Tensor>, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec!["run".into(), bundle.display().to_string(), "--backend".into(), "wasm".into()];
    args.extend(["--threads".into(), threads.to_string(), "--out".into(), dir.path().join("out").display().to_string()]);
    for (name, t) in inputs {
        let file = dir.path().join(format!("{name}.npy"));
        write_npy(&file, t);
        args.extend(["--input".into(), format!("{name}={}", file.display())]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tfc")).args(&args).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let mut outputs = BTreeMap::new();
    for e in std::fs::read_dir(dir.path().join("out")).unwrap() {
        let path = e.unwrap().path();
        outputs.insert(path.file_stem().unwrap().to_string_lossy().into_owned(), read_npy(&path));
    }
    Ok(outputs)
}

fn bits(t: &Tensor) -> Vec<u32> {
    match &t.data {
        Data::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
        Data::I32(v) => v.iter().map(|&x| x as u32).collect(),
        Data::I64(v) => v.iter().map(|&x| x as u32).collect(),
    }
}

/// Cases the shared suite lacks that only the fallback's own kernels need: f32 → f16/bf16 → f32 round trips
/// (rounding to nearest even, subnormals, overflow) and sampling with each of its settings.
fn fallback_cases() -> Vec<OpCase> {
    let mut cases = Vec::new();
    let input = |g: &mut Graph, name: &str, dtype: DType, shape: &[usize]| {
        g.input(name, TensorType::new(dtype, shape.iter().map(|&d| Dim::from(d)).collect()), None)
    };
    for to in [DType::F16, DType::BF16] {
        let mut graph = Graph::new();
        let x = input(&mut graph, "x", DType::F32, &[70]);
        let narrow = graph.add("narrow", Op::Cast { to }, &[x]).unwrap();
        let y = graph.add("y", Op::Cast { to: DType::F32 }, &[narrow]).unwrap();
        graph.output("y", y);
        // Halfway cases, values past f16's range, subnormals of f16, and ordinary values.
        let mut values: Vec<f32> = vec![1.0 + 1.0 / 2048.0, 1.0 + 3.0 / 2048.0, 65520.0, 1e6, -1e6, 3e-6, -5e-8, 1e-9, 0.0, -0.0];
        values.extend((0..60).map(|i| (i as f32 - 30.0) * 0.37 + 0.001 * i as f32));
        let inputs = BTreeMap::from([("x".to_string(), Tensor::f32(vec![70], values))]);
        cases.push(OpCase { name: format!("cast_round_trip_{to}"), graph, inputs, tolerance: 0.0 });
    }
    let logits: Vec<f32> = (0..2000).map(|i| ((i * 7919 % 1000) as f32 / 100.0 - 5.0) + (i % 3) as f32 * 0.01).collect();
    for (name, settings) in [
        ("greedy", [0.0, 0.0, 0.0, 0.0, 0.0]),
        ("temperature", [0.8, 0.0, 0.0, 0.0, 0.0]),
        ("top_k", [1.0, 20.0, 0.0, 0.0, 0.0]),
        ("top_p", [0.7, 0.0, 0.9, 0.0, 0.0]),
        ("min_p_penalty", [1.2, 0.0, 0.0, 0.05, 1.3]),
        ("everything", [0.9, 40.0, 0.8, 0.02, 1.1]),
    ] {
        let mut graph = Graph::new();
        let x = input(&mut graph, "logits", DType::F32, &[2, 1000]);
        let s = input(&mut graph, "settings", DType::F32, &[5]);
        let u = input(&mut graph, "uniform", DType::F32, &[2]);
        let p = input(&mut graph, "penalized", DType::I32, &[6]);
        let y = graph.add("y", Op::Sample, &[x, s, u, p]).unwrap();
        graph.output("y", y);
        let inputs = BTreeMap::from([
            ("logits".to_string(), Tensor::f32(vec![2, 1000], logits.clone())),
            ("settings".to_string(), Tensor::f32(vec![5], settings.to_vec())),
            ("uniform".to_string(), Tensor::f32(vec![2], vec![0.37, 0.91])),
            ("penalized".to_string(), Tensor::i32(vec![6], vec![3, 17, 500, 999, i32::MAX, i32::MAX])),
        ]);
        cases.push(OpCase { name: format!("sample_{name}"), graph, inputs, tolerance: 0.0 });
    }
    cases
}

#[test]
fn every_op_matches_the_interpreter_on_one_and_three_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut cases = tfc_fixtures::op_cases();
    cases.extend(fallback_cases());
    for case in &cases {
        let out = dir.path().join(&case.name);
        let compiled = compile_graph(case.graph.clone(), None, &out, &required(), &mut Quiet);
        match compiled {
            // Ops the fallback has no kernel for yet must say so (the compile notes it; here it is required).
            Err(e) if e.to_string().contains(tfc_codegen_wasm_simd::NO_KERNEL) => {
                println!("{:<45} no WASM kernel", case.name);
                continue;
            }
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
            Ok(_) => {}
        }
        let expected = tfc_ir::interp::run(&case.graph, &case.inputs).unwrap_or_else(|e| panic!("{}: interpreter: {e}", case.name));
        let (one, three) = match (run_wasm(&out, &case.inputs, 1), run_wasm(&out, &case.inputs, 3)) {
            (Ok(one), Ok(three)) => (one, three),
            (Err(e), _) | (_, Err(e)) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        let (want, got) = (&expected[0].1, &one["y"]);
        let error = tfc_fixtures::error_against(want, got, case.tolerance);
        println!("{:<45} relative L2 {error:.2e} (tolerance {:.0e})", case.name, case.tolerance);
        if error > case.tolerance || error.is_nan() {
            failures.push(format!("{}: relative L2 {error:.3e} > {:.0e} (shape {:?} vs {:?})", case.name, case.tolerance, got.shape, want.shape));
        }
        if bits(got) != bits(&three["y"]) {
            failures.push(format!("{}: 3 threads give other bits than 1", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} op cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn minilm_matches_transformers_and_the_webgpu_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("minilm");
    compile(&tfc_fixtures::minilm(), &out, &required(), &mut Quiet).unwrap();
    let mut gpu = tfc_runtime::Session::new(&tfc_runtime::Bundle::open(&out).unwrap()).unwrap();
    for (case, threads) in [("s0", 1), ("s1", 2), ("s2", 1), ("batch3", 2)] {
        let mut r = reference(&format!("minilm/{case}"));
        let want = r.remove("last_hidden_state").unwrap();
        let mask = r["attention_mask"].clone();
        let got = run_wasm(&out, &r, threads).unwrap_or_else(|e| panic!("minilm {case}: {e}")).remove("last_hidden_state").unwrap();
        let webgpu = gpu.run(&r).unwrap().remove(0).1;
        assert_eq!(got.shape, want.shape);
        let error = relative_l2(&masked_rows(&got, &mask), &masked_rows(&want, &mask));
        let vs_webgpu = relative_l2(&masked_rows(&got, &mask), &masked_rows(&webgpu, &mask));
        println!("minilm {case} ({threads} threads): relative L2 {error:.2e} to transformers, {vs_webgpu:.2e} to WebGPU");
        assert!(error <= 1e-4, "minilm {case}: relative L2 {error:.3e} to transformers > 1e-4");
        assert!(vs_webgpu <= 1e-5, "minilm {case}: relative L2 {vs_webgpu:.3e} to the WebGPU path > 1e-5");
    }
}

#[test]
fn tiny_decoders_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    for (name, threads) in [("tiny-gpt2", 1), ("tiny-llama", 2), ("tiny-qwen2", 3), ("tiny-gemma3", 2), ("tiny-phi3", 1), ("tiny-mistral", 2)] {
        let out = dir.path().join(name);
        compile(&tfc_fixtures::tiny_model(name), &out, &required(), &mut Quiet).unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = reference(name);
        let inputs = BTreeMap::from([("input_ids".to_string(), r["input_ids"].clone())]);
        let got = run_wasm(&out, &inputs, threads).unwrap_or_else(|e| panic!("{name}: {e}")).remove("logits").unwrap();
        assert_eq!(got.shape, r["logits"].shape);
        let error = relative_l2(&got.to_f32(), &r["logits"].to_f32());
        println!("{name} ({threads} threads): relative L2 {error:.2e}");
        assert!(error <= 1e-4, "{name}: relative L2 {error:.3e} > 1e-4");
    }
}

/// The fallback's logits against the WebGPU path's on the same bundle (the WebGPU path is checked against llama.cpp
/// and transformers elsewhere).
fn wasm_matches_webgpu(name: &str, bundle: &Path, input_ids: &Tensor, threads: usize) {
    let inputs = BTreeMap::from([("input_ids".to_string(), input_ids.clone())]);
    let got = run_wasm(bundle, &inputs, threads).unwrap_or_else(|e| panic!("{name}: {e}")).remove("logits").unwrap();
    let mut gpu = tfc_runtime::Session::new(&tfc_runtime::Bundle::open(bundle).unwrap()).unwrap();
    let webgpu = gpu.run(&inputs).unwrap().into_iter().find(|(n, _)| n == "logits").unwrap().1;
    let error = relative_l2(&got.to_f32(), &webgpu.to_f32());
    println!("{name} ({threads} threads): relative L2 {error:.2e} to the WebGPU path");
    assert!(error <= 1e-5, "{name}: relative L2 {error:.3e} to the WebGPU path > 1e-5");
}

/// A prompt through tiny-llama with its KV cache stored as f16: the fallback's cache writes round like the WebGPU
/// path's.
#[test]
fn f16_kv_cache_matches_the_webgpu_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-llama-kv-f16");
    let opts = CompileOptions { kv_dtype: DType::F16, ..required() };
    compile(&tfc_fixtures::tiny_model("tiny-llama"), &out, &opts, &mut Quiet).unwrap();
    let r = reference("tiny-llama");
    let inputs = BTreeMap::from([("input_ids".to_string(), r["input_ids"].clone())]);
    let got = run_wasm(&out, &inputs, 2).unwrap().remove("logits").unwrap();
    let mut gpu = tfc_runtime::Session::new(&tfc_runtime::Bundle::open(&out).unwrap()).unwrap();
    let webgpu = gpu.run(&inputs).unwrap().into_iter().find(|(n, _)| n == "logits").unwrap().1;
    let (error, vs_webgpu) = (relative_l2(&got.to_f32(), &r["logits"].to_f32()), relative_l2(&got.to_f32(), &webgpu.to_f32()));
    println!("tiny-llama, f16 KV cache: relative L2 {error:.2e} to transformers, {vs_webgpu:.2e} to the WebGPU path");
    assert!(error <= 2e-3, "relative L2 {error:.3e} to transformers > 2e-3");
    assert!(vs_webgpu <= 1e-5, "relative L2 {vs_webgpu:.3e} to the WebGPU path > 1e-5");
}

#[test]
fn quantized_decoders_match_the_webgpu_path() {
    let dir = tempfile::tempdir().unwrap();
    for quant in [DType::Q4_1, DType::Q8_0] {
        let out = dir.path().join(format!("tiny-llama-{quant}"));
        let opts = CompileOptions { quant: Some(quant), ..required() };
        compile(&tfc_fixtures::tiny_model("tiny-llama"), &out, &opts, &mut Quiet).unwrap_or_else(|e| panic!("{quant}: {e}"));
        wasm_matches_webgpu(&format!("tiny-llama {quant}"), &out, &reference("tiny-llama")["input_ids"], 2);
    }
    // Every K-quant, as llama.cpp's quantizer wrote them (hidden size 256: whole K-quant blocks).
    let input_ids = tfc_fixtures::read_npy(&tfc_fixtures::root().join("reference/gguf/tiny-llama/input_ids.npy"));
    for (format, threads) in [("q2_k", 1), ("q3_k", 2), ("q4_k", 1), ("q5_k", 2), ("q6_k", 1)] {
        let out = dir.path().join(format!("tiny-llama-{format}-gguf"));
        let model = tfc_fixtures::gguf_model(&format!("tiny-llama-{format}.gguf"));
        compile(&model, &out, &required(), &mut Quiet).unwrap_or_else(|e| panic!("{format}: {e}"));
        wasm_matches_webgpu(&format!("tiny-llama {format} (GGUF)"), &out, &input_ids, threads);
    }
}

/// A graph whose one activation has `width` f32 per token, so its memory grows with the sequence limit.
/// `tfc generate ARGS --json` on `backend`: the generated token ids.
fn generated(bundle: &Path, backend: &str, args: &[&str]) -> Vec<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_tfc"))
        .args(["generate", &bundle.display().to_string(), "--backend", backend, "--json"])
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()))
        .output()
        .unwrap();
    assert!(out.status.success(), "tfc generate --backend {backend}: {}", String::from_utf8_lossy(&out.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    reply["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect()
}

/// Real SmolLM2-135M-Instruct Q4_1: tfc.js's generation loop on the fallback (`tfc generate --backend wasm`, the
/// KV cache in WASM memory across runs) gives the native runtime's tokens: greedy on three prompts (the native ones
/// are also the committed runtime/js/test/fixtures/smollm2-greedy.json that the browser test compares with), and
/// sampled with a seed (the same ChaCha8 numbers on both sides). Top-p keeps the sampled draw clear of the rounding
/// differences of the two backends' sums over the whole vocabulary (docs/js-api.md, "Sampling").
#[test]
fn smollm2_generates_the_native_tokens_on_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2");
    let opts = CompileOptions { max_sequence: Some(256), ..required() };
    compile(&tfc_fixtures::smollm2_gguf(), &out, &opts, &mut Quiet).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/js/test/fixtures/smollm2-greedy.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut cases = Vec::new();
    for (i, case) in fixture["cases"].as_array().unwrap().iter().enumerate() {
        let tokens: Vec<u64> = case["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
        let args = vec!["--prompt".to_string(), case["prompt"].as_str().unwrap().to_string(), "--max-tokens".into(), "16".into()];
        cases.push((args, Some(tokens), if i == 1 { "2" } else { "1" }));
    }
    let sampled = ["--prompt", "Once upon a time", "--max-tokens", "16", "--temperature", "0.8", "--top-p", "0.9", "--seed", "7"];
    cases.push((sampled.iter().map(|a| a.to_string()).collect(), None, "1"));
    assert_eq!(cases.len(), 4);
    for (args, committed, threads) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let native = generated(&out, "native", &args);
        let wasm = generated(&out, "wasm", &[&args[..], &["--threads", threads]].concat());
        let equal = wasm.iter().zip(&native).take_while(|(a, b)| a == b).count();
        println!("{args:?}: {native:?} natively, the first {equal} equal on WASM ({threads} threads)");
        assert_eq!(native.len(), 16, "{args:?}: the native runtime stopped early");
        if let Some(committed) = committed {
            assert_eq!(native, committed, "{args:?}: the native runtime no longer gives the committed tokens");
        }
        assert_eq!(wasm, native, "{args:?}: WASM tokens differ from the native runtime's");
    }
}

fn wide_graph(width: u64, max_sequence: u64) -> Graph {
    let mut g = Graph::new();
    let s = g.symbol("sequence", max_sequence);
    let x = g.input("x", TensorType::new(DType::F32, vec![s, Dim::from(width)]), None);
    let y = g.add("y", Op::Unary(tfc_ir::UnaryOp::Exp), &[x]).unwrap();
    g.output("y", y);
    g
}

#[test]
fn a_fallback_over_4_gib_is_refused_with_the_figure() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CompileOptions { max_binding_size: 1 << 40, ..required() };
    // Input and output: 2 × 4 KiB per token, so 2^20 tokens need 8 GiB.
    let e = compile_graph(wide_graph(1024, 1 << 20), None, &dir.path().join("big"), &opts, &mut Quiet).err().expect("refused");
    let message = e.to_string();
    assert!(message.contains("8.00 GiB") && message.contains("sequence ≤ 1048576") && message.contains("--max-sequence"), "{message}");
    assert!(!dir.path().join("big").exists());
    // By default the bundle is written without the fallback, and a note says why.
    let report = compile_graph(wide_graph(1024, 1 << 20), None, &dir.path().join("big"), &CompileOptions { wasm: WasmTarget::WhereSupported, ..opts.clone() }, &mut Quiet).unwrap();
    assert!(report.manifest.wasm.is_none());
    assert!(report.notes.iter().any(|n| n.contains("no WASM fallback") && n.contains("8.00 GiB")), "{:?}", report.notes);
    // Within 4 GiB the fallback is written and the manifest records what it needs.
    let report = compile_graph(wide_graph(1024, 1 << 10), None, &dir.path().join("small"), &opts, &mut Quiet).unwrap();
    let wasm = report.manifest.wasm.expect("a fallback");
    assert_eq!(wasm.memory, (8u64 << 20) + (1 << 16), "two 4 MiB buffers, the control block and slack, in pages");
    assert!(dir.path().join("small").join(&wasm.module).is_file() && dir.path().join("small").join(&wasm.shared_module).is_file());
}
