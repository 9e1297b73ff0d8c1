//! `--backend wasm`: runs a bundle's WASM fallback in Node.js with the same executor browsers run
//! (runtime/js/src/wasm-backend.js, driven by runtime/js/node/wasm-runner.mjs), and generates text with tfc.js's
//! generation loop (runtime/js/src/generate.js). The scripts are built into the binary and written to a temporary
//! folder for each call, so only `node` (20 or newer) has to be installed.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use tempfile::TempDir;
use tfc_ir::manifest::Manifest;
use tfc_ir::{DType, Tensor};
use tfc_runtime::Sampling;

/// The runner and the browser modules it imports, by their path relative to runtime/js.
const SCRIPTS: [(&str, &str); 6] = [
    ("package.json", "{\"type\": \"module\"}\n"),
    ("src/errors.js", include_str!("../../runtime/js/src/errors.js")),
    ("src/manifest.js", include_str!("../../runtime/js/src/manifest.js")),
    ("src/generate.js", include_str!("../../runtime/js/src/generate.js")),
    ("src/wasm-backend.js", include_str!("../../runtime/js/src/wasm-backend.js")),
    ("node/wasm-runner.mjs", include_str!("../../runtime/js/node/wasm-runner.mjs")),
];

/// A temporary folder with the runner's scripts.
fn runner_dir(bundle: &Path, manifest: &Manifest) -> Result<TempDir> {
    if manifest.wasm.is_none() {
        bail!("{} has no WASM fallback; compile it with --target webgpu,wasm (the compile's notes say why it was left out)", bundle.display());
    }
    let dir = tempfile::tempdir().context("creating a temporary folder for the WASM runner")?;
    for (path, text) in SCRIPTS {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().expect("scripts live in folders")).with_context(|| format!("creating {}", file.display()))?;
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(dir)
}

/// The runner's command for `request` (written into `dir`).
fn runner(dir: &TempDir, bundle: &Path, request: &Value) -> Result<Command> {
    let request_file = dir.path().join("request.json");
    std::fs::write(&request_file, request.to_string()).with_context(|| format!("writing {}", request_file.display()))?;
    let mut command = Command::new("node");
    command.arg(dir.path().join("node/wasm-runner.mjs")).arg(bundle).arg(&request_file);
    Ok(command)
}

const NO_NODE: &str = "the WASM backend runs the fallback in Node.js: install `node` (20 or newer) on the PATH";

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
    let dir = runner_dir(bundle, manifest)?;
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
    let output = runner(&dir, bundle, &request)?.output().context(NO_NODE)?;
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

/// What a generation on the fallback reports besides its tokens.
pub struct Generation {
    pub device: String,
    /// From the start until the first token (the prompt's runs).
    pub prompt_ms: f64,
    /// From the first token until the last.
    pub decode_ms: f64,
}

/// Generates up to `max_tokens` tokens after `prompt` with tfc.js's generation loop on the fallback, handing each
/// token to `on_token` as soon as it is drawn.
pub fn generate(
    bundle: &Path,
    manifest: &Manifest,
    prompt: &[u32],
    max_tokens: usize,
    sampling: &Sampling,
    threads: u32,
    on_token: &mut dyn FnMut(u32) -> Result<()>,
) -> Result<Generation> {
    let dir = runner_dir(bundle, manifest)?;
    let s = &sampling.settings;
    let options = json!({
        "maxTokens": max_tokens,
        "temperature": s.temperature,
        "topK": s.top_k,
        "topP": s.top_p,
        "minP": s.min_p,
        "repeatPenalty": s.repeat_penalty,
        "repeatLastN": sampling.repeat_last_n,
        // A string: JSON numbers past 2^53 lose digits in JavaScript.
        "seed": sampling.seed.to_string(),
    });
    let request = json!({ "threads": threads, "generate": { "prompt": prompt, "options": options } });
    let mut child = runner(&dir, bundle, &request)?.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context(NO_NODE)?;
    let mut summary = None;
    for line in BufReader::new(child.stdout.take().expect("stdout is piped")).lines() {
        let reply: Value = serde_json::from_str(&line.context("reading the WASM runner's output")?).context("the WASM runner's reply is not JSON")?;
        match reply["token"].as_u64() {
            Some(token) => {
                if let Err(e) = on_token(token as u32) {
                    let _ = child.kill();
                    return Err(e);
                }
            }
            None => summary = Some(reply),
        }
    }
    let mut stderr = String::new();
    child.stderr.take().expect("stderr is piped").read_to_string(&mut stderr).context("reading the WASM runner's errors")?;
    if !child.wait().context("waiting for the WASM runner")?.success() {
        bail!("the WASM fallback failed: {}", stderr.trim());
    }
    let summary = summary.context("the WASM runner ended without its summary")?;
    Ok(Generation {
        device: summary["device"].as_str().unwrap_or("WebAssembly").to_string(),
        prompt_ms: summary["prompt_ms"].as_f64().context("the WASM runner's summary lacks prompt_ms")?,
        decode_ms: summary["decode_ms"].as_f64().context("the WASM runner's summary lacks decode_ms")?,
    })
}
