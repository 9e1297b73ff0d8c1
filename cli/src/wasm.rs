//! `--backend wasm`: runs a bundle's WASM fallback in Node.js with the same executor browsers run
//! (runtime/js/src/wasm-backend.js, driven by runtime/js/node/wasm-runner.mjs). The scripts are built into the
//! binary and written to a temporary folder for each call, so only `node` (20 or newer) has to be installed.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use tfc_ir::manifest::Manifest;
use tfc_ir::{DType, Tensor};

/// The runner and the browser modules it imports, by their path relative to runtime/js.
const SCRIPTS: [(&str, &str); 5] = [
    ("package.json", "{\"type\": \"module\"}\n"),
    ("src/errors.js", include_str!("../../runtime/js/src/errors.js")),
    ("src/manifest.js", include_str!("../../runtime/js/src/manifest.js")),
    ("src/wasm-backend.js", include_str!("../../runtime/js/src/wasm-backend.js")),
    ("node/wasm-runner.mjs", include_str!("../../runtime/js/node/wasm-runner.mjs")),
];

/// What a call of the runner gives back.
pub struct WasmRun {
    /// e.g. "WebAssembly SIMD128, 1 thread".
    pub device: String,
    /// Wall time of each timed run (after the warm-up runs), in milliseconds.
    pub times_ms: Vec<f64>,
    /// With `profile`: each dispatch's median time in milliseconds, in manifest order.
    pub dispatch_ms: Vec<f64>,
    /// The outputs of the last run, in manifest order.
    pub outputs: Vec<(String, Tensor)>,
}

/// How many times to run, and whether to time each dispatch.
pub struct Runs {
    pub threads: u32,
    /// Untimed runs first.
    pub warmup: usize,
    pub iterations: usize,
    /// Time each dispatch over `iterations` more runs (one thread only).
    pub profile: bool,
}

/// Runs the bundle at `bundle` on `feeds`.
pub fn run(bundle: &Path, manifest: &Manifest, feeds: &BTreeMap<String, Tensor>, runs: &Runs) -> Result<WasmRun> {
    if manifest.wasm.is_none() {
        bail!("{} has no WASM fallback; compile it with --target webgpu,wasm (the compile's notes say why it was left out)", bundle.display());
    }
    let dir = tempfile::tempdir().context("creating a temporary folder for the WASM runner")?;
    for (path, text) in SCRIPTS {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().expect("scripts live in folders")).with_context(|| format!("creating {}", file.display()))?;
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    let mut inputs = serde_json::Map::new();
    for (name, tensor) in feeds {
        let decl = manifest.inputs.iter().find(|i| &i.name == name);
        let Some(decl) = decl else {
            let known: Vec<&str> = manifest.inputs.iter().map(|i| i.name.as_str()).collect();
            bail!("the model has no input `{name}` (its inputs: {})", known.join(", "));
        };
        let file = dir.path().join(format!("input-{}.bin", inputs.len()));
        std::fs::write(&file, storage_bytes(name, tensor, decl.dtype)?).with_context(|| format!("writing {}", file.display()))?;
        inputs.insert(name.clone(), json!({ "dtype": decl.dtype.name(), "shape": tensor.shape, "file": file }));
    }
    let request = json!({
        "threads": runs.threads,
        "warmup": runs.warmup,
        "iterations": runs.iterations,
        "profile": runs.profile,
        "inputs": inputs,
        "out_dir": dir.path(),
    });
    let request_file = dir.path().join("request.json");
    std::fs::write(&request_file, request.to_string()).with_context(|| format!("writing {}", request_file.display()))?;

    let output = Command::new("node")
        .arg(dir.path().join("node/wasm-runner.mjs"))
        .arg(bundle)
        .arg(&request_file)
        .output()
        .context("the WASM backend runs the fallback in Node.js: install `node` (20 or newer) on the PATH")?;
    if !output.status.success() {
        bail!("the WASM fallback failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let reply: Value = serde_json::from_slice(&output.stdout).context("the WASM runner's reply is not JSON")?;
    let mut outputs = Vec::new();
    for decl in &manifest.outputs {
        let described = &reply["outputs"][&decl.name];
        let shape: Vec<usize> = serde_json::from_value(described["shape"].clone()).context("the WASM runner's reply lacks a shape")?;
        let file = described["file"].as_str().context("the WASM runner's reply lacks an output file")?;
        let bytes = std::fs::read(file).with_context(|| format!("reading {file}"))?;
        let words = bytes.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
        let tensor = match decl.dtype {
            DType::I32 => Tensor::i32(shape, words.map(i32::from_le_bytes).collect()),
            _ => Tensor::f32(shape, words.map(f32::from_le_bytes).collect()),
        };
        outputs.push((decl.name.clone(), tensor));
    }
    Ok(WasmRun {
        device: reply["device"].as_str().unwrap_or("WebAssembly").to_string(),
        times_ms: serde_json::from_value(reply["times_ms"].clone()).context("the WASM runner's reply lacks times")?,
        dispatch_ms: serde_json::from_value(reply["dispatch_ms"].clone()).context("the WASM runner's reply lacks dispatch times")?,
        outputs,
    })
}

/// The little-endian bytes of `tensor` as the input's storage type (ids narrowed to i32, checked).
fn storage_bytes(name: &str, tensor: &Tensor, dtype: DType) -> Result<Vec<u8>> {
    match dtype {
        DType::I32 => {
            let mut out = Vec::with_capacity(tensor.numel() * 4);
            for v in tensor.to_i64() {
                let v = i32::try_from(v).map_err(|_| anyhow::anyhow!("input `{name}`: {v} does not fit in i32"))?;
                out.extend_from_slice(&v.to_le_bytes());
            }
            Ok(out)
        }
        DType::F32 => Ok(tensor.to_f32().iter().flat_map(|v| v.to_le_bytes()).collect()),
        other => bail!("input `{name}` has storage type {other}, which the WASM runner cannot feed"),
    }
}
