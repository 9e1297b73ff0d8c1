//! `tfc`: compile transformer models into WebGPU bundles, inspect them, and run them natively.

mod inspect;
mod npy;
mod wasm;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tfc_compiler::pipeline::WasmTarget;
use tfc_compiler::{CompileOptions, Progress};
use tfc_ir::{DType, Tensor};
use std::io::Write;
use tfc_ir::interp::SampleSettings;
use tfc_runtime::{Bundle, ChatTemplate, Decoder, Message, Sampling, Session, TextStream, Tokenizer};

#[derive(Parser)]
#[command(name = "tfc", version, about = "Ahead-of-time compiler from transformer models to WebGPU bundles that run in any browser")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a model into a bundle folder (WGSL shaders, weight chunks, manifest.json, tokenizer).
    ///
    /// MODEL is a HuggingFace model folder: config.json with *.safetensors (one file or sharded with
    /// model.safetensors.index.json) and, optionally, tokenizer.json (supported architectures: bert, roberta, gpt2,
    /// llama, mistral, qwen2, phi3, gemma3_text, gemma3); or a GGUF file (architectures llama, qwen2, phi3, gemma3,
    /// gpt2, bert), whose weights keep their formats (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
    /// Q5_K, Q6_K); or an ONNX model (a .onnx file, with its external data beside it, or a folder holding model.onnx),
    /// each op read as the model's opset defines it.
    Compile {
        model: PathBuf,
        /// Bundle folder to write; it is replaced only once the new bundle is complete.
        #[arg(short, long)]
        output: PathBuf,
        /// Back ends to emit code for (comma-separated) [default: webgpu, and wasm where the model's ops and memory
        /// allow it]. Naming wasm makes a fallback that cannot be built an error.
        #[arg(long, value_delimiter = ',')]
        target: Option<Vec<Target>>,
        /// Largest weight chunk file, e.g. 16MiB, 4MB, 1048576.
        #[arg(long, default_value = "16MiB", value_parser = parse_bytes)]
        chunk_size: u64,
        /// Largest batch the bundle accepts.
        #[arg(long, default_value_t = 8)]
        max_batch: u64,
        /// Longest sequence the bundle accepts; for a decoder, its context (prompt and generated tokens together)
        /// [default: the model's maximum positions, lowered if a buffer would exceed --max-binding-size].
        #[arg(long, visible_alias = "max-context")]
        max_sequence: Option<u64>,
        /// Largest storage-buffer binding the bundle may need. The default is WebGPU's guaranteed minimum, so the
        /// bundle runs on every conformant adapter.
        #[arg(long, default_value = "128MiB", value_parser = parse_bytes)]
        max_binding_size: u64,
        /// Store the weight matrices in this format: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k
        /// or q6_k. Norms, biases and small tensors keep their dtype; a matrix whose rows are not whole blocks takes
        /// the nearest format that fits (`tfc inspect` shows what each tensor became).
        #[arg(long, value_parser = parse_quant)]
        quant: Option<DType>,
        /// Fix a symbolic input dimension of an ONNX model, by its name in the model, e.g. --dim batch=1
        /// --dim sequence=128 (repeatable). Dimensions left symbolic take --max-batch or --max-sequence as their maximum.
        #[arg(long = "dim", value_name = "NAME=VALUE", value_parser = parse_dim)]
        dims: Vec<(String, u64)>,
        /// Give a graph input of an ONNX model a value at compile time, from a .npy file (int32, int64 or float32),
        /// e.g. --const shape=shape.npy: the input becomes a constant, for graphs that take shapes, axes, pads or
        /// scales as inputs (tfc compiles static graphs; the error for such a graph names the input). Repeatable.
        #[arg(long = "const", value_name = "NAME=FILE.npy")]
        constants: Vec<String>,
        /// How a decoder's KV cache stores keys and values: f32, or f16 (half the memory, so twice the context fits
        /// a binding; values rounded to f16, no shader-f16 feature needed).
        #[arg(long, default_value = "f32", value_parser = parse_kv_dtype)]
        kv_dtype: DType,
    },
    /// Summarise a bundle: model, ops, parameters, bytes per dtype, chunks, and the GPU limits it needs.
    Inspect {
        bundle: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a bundle once on the native runtime (wgpu: a GPU, or Mesa's lavapipe on a CPU), or on its WASM fallback.
    ///
    /// For a decoder, the whole token sequence runs at once and `logits` holds every position.
    Run {
        bundle: PathBuf,
        #[command(flatten)]
        inputs: RunInputs,
        #[command(flatten)]
        engine: Engine,
        /// Write each graph output to DIR/<output name>.npy.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print a short JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate text with a decoder bundle, printed as it comes.
    ///
    /// The prompt fills the KV cache on the GPU, then one token per step is drawn on the GPU (only its id comes
    /// back), until an end-of-sequence token of the model or --max-tokens. The default is greedy (temperature 0:
    /// the most likely token). With --backend wasm, the WASM fallback generates in Node.js with tfc.js's
    /// generation loop; a seed gives the same random numbers on both backends, so the same tokens but where their
    /// rounding differences move a draw across a token's boundary (docs/js-api.md, "Sampling and seeds").
    Generate {
        bundle: PathBuf,
        #[command(flatten)]
        engine: Engine,
        /// The prompt, tokenized with the bundle's tokenizer.
        #[arg(long, conflicts_with_all = ["tokens", "chat"], required_unless_present_any = ["tokens", "chat"])]
        prompt: Option<String>,
        /// A user message, put into the model's chat template (with its system prompt, if the template adds one).
        #[arg(long, conflicts_with = "tokens")]
        chat: Option<String>,
        /// The prompt as token ids, comma-separated.
        #[arg(long, value_delimiter = ',')]
        tokens: Option<Vec<u32>>,
        /// The most tokens to generate.
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Print {"tokens": [generated ids], "text": "...", "timing": {device, first_token_ms, decode_ms}} at the end
        /// instead of streaming text.
        #[arg(long)]
        json: bool,
    },
    /// Time repeated runs of a bundle (inputs filled with token id 1000 modulo the vocabulary).
    Bench {
        bundle: PathBuf,
        #[command(flatten)]
        engine: Engine,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 128)]
        sequence: usize,
        /// For a decoder: time a step after this many cached tokens that asks only for the next token (a decoding
        /// step with --sequence 1); without it every run starts from an empty cache and returns every output.
        #[arg(long)]
        past: Option<u64>,
        #[arg(long, default_value_t = 50)]
        iterations: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
    },
}

/// Which executor runs a bundle.
#[derive(Args)]
struct Engine {
    /// native: wgpu (a GPU, or lavapipe on a CPU); wasm: the bundle's WASM SIMD fallback, in Node.js with the
    /// executor browsers run.
    #[arg(long, value_enum, default_value = "native")]
    backend: Backend,
    /// Threads of the wasm backend (more than 1 runs on worker threads sharing memory).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum Backend {
    Native,
    Wasm,
}

#[derive(Args)]
struct RunInputs {
    /// Token ids, comma-separated (batch 1), fed to `input_ids`.
    #[arg(long, value_delimiter = ',', conflicts_with = "text")]
    tokens: Option<Vec<i64>>,
    /// Text, tokenized with the bundle's tokenizer and fed to `input_ids`.
    #[arg(long)]
    text: Option<String>,
    /// A graph input from a .npy file (int32, int64 or float32); repeatable.
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    files: Vec<String>,
}

#[derive(Args)]
struct SamplingArgs {
    /// Divides the logits before sampling; 0 picks the most likely token.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Sample among the K most likely tokens only (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: u32,
    /// Sample among the most likely tokens that make up this much probability (1: all).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one.
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Makes tokens among the last --repeat-last-n less likely (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// How many of the latest tokens (prompt included) the repeat penalty looks at (at most 64).
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    /// Seed of the random numbers: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    fn sampling(&self) -> Sampling {
        let settings = SampleSettings {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
        };
        Sampling { settings, repeat_last_n: self.repeat_last_n, seed: self.seed }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum Target {
    Webgpu,
    Wasm,
}

fn parse_dim(s: &str) -> Result<(String, u64), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    let value = value.trim().parse::<u64>().ok().filter(|&v| v > 0).ok_or_else(|| format!("`{value}` is not a positive size"))?;
    Ok((name.trim().to_string(), value))
}

fn parse_kv_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        other => Err(format!("`{other}` is not a KV cache dtype; choose f32 or f16")),
    }
}

fn parse_quant(s: &str) -> Result<DType, String> {
    match DType::from_name(&s.to_ascii_lowercase()) {
        Some(d) if d.is_float() => Ok(d),
        _ => Err(format!("`{s}` is not a weight format; choose f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k or q6_k")),
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{s}` is not a size (e.g. 16MiB, 4MB, 1048576)"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use B, KB, KiB, MB, MiB, GB, GiB)")),
    };
    n.checked_mul(scale).filter(|&v| v > 0).ok_or_else(|| format!("`{s}` is not a usable size"))
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Compile { model, output, target, chunk_size, max_batch, max_sequence, max_binding_size, quant, kv_dtype, dims, constants } => {
            let wasm = match &target {
                None => WasmTarget::WhereSupported,
                Some(t) if !t.contains(&Target::Webgpu) => {
                    bail!("--target must include webgpu: its schedule is the bundle's, which the WASM fallback runs too (use --target webgpu,wasm)")
                }
                Some(t) if t.contains(&Target::Wasm) => WasmTarget::Required,
                Some(_) => WasmTarget::Off,
            };
            let dims = dims.into_iter().collect();
            let constants = named_npy_files(&constants, "--const")?;
            let opts = CompileOptions { chunk_size, max_batch, max_sequence, max_binding_size, kv_dtype, wasm, quant, dims, constants };
            let started = Instant::now();
            let report = tfc_compiler::compile(&model, &output, &opts, &mut Bar::new())
                .with_context(|| format!("compiling {}", model.display()))?;
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            let m = &report.manifest;
            let bytes: u64 = m.chunks.iter().map(|c| c.size).sum();
            eprintln!(
                "wrote {} in {:.1}s: {} dispatches, {} shaders, {} weights in {} chunks ({:.1} MiB)",
                output.display(),
                started.elapsed().as_secs_f64(),
                m.dispatches.len(),
                m.shaders.len(),
                m.weights.len(),
                m.chunks.len(),
                bytes as f64 / (1 << 20) as f64
            );
            Ok(())
        }
        Command::Inspect { bundle, json } => {
            let b = Bundle::open(&bundle)?;
            let summary = inspect::summarise(&b.manifest);
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", inspect::render(&summary));
            }
            Ok(())
        }
        Command::Run { bundle, inputs, engine, out, json } => {
            let b = Bundle::open(&bundle)?;
            let (feeds, tokens) = gather_inputs(&b, &inputs)?;
            let (device, elapsed_ms, outputs) = match engine.backend {
                Backend::Native => {
                    let mut session = Session::new(&b)?;
                    let started = Instant::now();
                    let outputs = session.run(&feeds)?;
                    (session.adapter_name().to_string(), started.elapsed().as_secs_f64() * 1e3, outputs)
                }
                Backend::Wasm => {
                    let runs = wasm::Runs { threads: engine.threads, warmup: 0, iterations: 1, profile: false };
                    let run = wasm::run(&bundle, &b.manifest, &feeds, &runs)?;
                    (run.device, run.times_ms[0], run.outputs)
                }
            };
            if let Some(dir) = &out {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                for (name, t) in &outputs {
                    npy::write(&dir.join(format!("{name}.npy")), t)?;
                }
            }
            let summary = serde_json::json!({
                "adapter": device,
                "tokens": tokens,
                "elapsed_ms": elapsed_ms,
                "outputs": outputs.iter().map(|(n, t)| (n.clone(), describe(t))).collect::<BTreeMap<_, _>>(),
            });
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!("ran on {device} in {elapsed_ms:.1} ms");
                for (name, t) in &outputs {
                    let d = describe(t);
                    println!("{name} {:?}: first values {}, mean {:.6}, std {:.6}", t.shape, d["first"], d["mean"], d["std"]);
                }
                if let Some(dir) = &out {
                    println!("outputs written to {}", dir.display());
                }
            }
            Ok(())
        }
        Command::Generate { bundle, engine, prompt, chat, tokens, max_tokens, sampling, json } => {
            generate(&bundle, &engine, Prompt { text: prompt, chat, tokens }, max_tokens, sampling.sampling(), json)
        }
        Command::Bench { bundle, engine, batch, sequence, past, iterations, warmup } => {
            let b = Bundle::open(&bundle)?;
            let ids: Vec<i64> = (0..batch * sequence).map(|i| 1000 + (i as i64 * 7) % 1000).collect();
            let feeds = BTreeMap::from([("input_ids".to_string(), Tensor::i64(vec![batch, sequence], ids))]);
            if engine.backend == Backend::Wasm {
                let runs = wasm::Runs { threads: engine.threads, warmup, iterations: iterations.max(1), profile: engine.threads == 1 };
                let run = wasm::run(&bundle, &b.manifest, &feeds, &runs)?;
                let mut by_op: BTreeMap<String, f64> = BTreeMap::new();
                // Also by op and the dtype of the weight it reads (if any): where quantized kernels spend their time.
                let mut by_op_weight: BTreeMap<String, f64> = BTreeMap::new();
                for (d, ms) in b.manifest.dispatches.iter().zip(&run.dispatch_ms) {
                    *by_op.entry(d.op.clone()).or_default() += ms;
                    let weight = b.manifest.weights.iter().find(|w| d.bindings.contains(&w.buffer));
                    let key = weight.map_or(d.op.clone(), |w| format!("{} {}", d.op, w.dtype.name()));
                    *by_op_weight.entry(key).or_default() += ms;
                }
                let summary = serde_json::json!({
                    "adapter": run.device,
                    "threads": engine.threads,
                    "batch": batch,
                    "sequence": sequence,
                    "iterations": run.times_ms.len(),
                    "dispatches": b.manifest.dispatches.len(),
                    "median_ms": median(run.times_ms.clone()),
                    "min_ms": run.times_ms.iter().copied().fold(f64::INFINITY, f64::min),
                    "profile_median_ms": { "dispatches": by_op.values().sum::<f64>(), "by_op": by_op, "by_op_weight": by_op_weight },
                });
                println!("{}", serde_json::to_string(&summary)?);
                return Ok(());
            }
            let mut session = Session::new(&b)?;
            let (symbols, outputs) = match past {
                Some(past) => (BTreeMap::from([("past".to_string(), past)]), vec!["next_token"]),
                None => (BTreeMap::from([("past".to_string(), 0)]), vec![]),
            };
            for _ in 0..warmup {
                session.run_with(&feeds, &symbols, &outputs)?;
            }
            let mut times = Vec::new();
            for _ in 0..iterations.max(1) {
                let t = Instant::now();
                session.run_with(&feeds, &symbols, &outputs)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let profiles: Vec<tfc_runtime::Profile> =
                (0..10).map(|_| session.profile_with(&feeds, &symbols, &outputs).map(|(_, p)| p)).collect::<Result<_, _>>()?;
            let median_of = |f: &dyn Fn(&tfc_runtime::Profile) -> f64| median(profiles.iter().map(f).collect());
            let mut gpu_by_op: BTreeMap<String, f64> = BTreeMap::new();
            let dispatches = &session.manifest().dispatches;
            for i in 0..profiles[0].dispatch_ms.len() {
                let ms = median(profiles.iter().map(|p| p.dispatch_ms[i]).collect());
                *gpu_by_op.entry(dispatches[i].op.clone()).or_default() += ms;
            }
            let summary = serde_json::json!({
                "adapter": session.adapter_name(),
                "batch": batch,
                "sequence": sequence,
                "past": past,
                "iterations": times.len(),
                "dispatches": dispatches.len(),
                "median_ms": median(times.clone()),
                "min_ms": times.iter().copied().fold(f64::INFINITY, f64::min),
                "profile_median_ms": {
                    "host": median_of(&|p| p.host_ms),
                    "wait": median_of(&|p| p.wait_ms),
                    "readback": median_of(&|p| p.readback_ms),
                    "gpu_dispatches": gpu_by_op.values().sum::<f64>(),
                    "gpu_by_op": gpu_by_op,
                },
            });
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
    }
}

/// What `tfc generate` starts from: exactly one of these is set.
struct Prompt {
    text: Option<String>,
    chat: Option<String>,
    tokens: Option<Vec<u32>>,
}

fn generate(bundle: &Path, engine: &Engine, prompt: Prompt, max_tokens: usize, sampling: Sampling, json: bool) -> Result<()> {
    let b = Bundle::open(bundle)?;
    let tokenizer = if b.manifest.tokenizer.is_some() { Some(Tokenizer::from_bundle(&b)?) } else { None };
    let need_tokenizer = || tokenizer.as_ref().context("this bundle has no tokenizer; give the prompt as --tokens");
    let prompt_ids = match prompt {
        Prompt { tokens: Some(ids), .. } => ids,
        Prompt { text: Some(text), .. } => need_tokenizer()?.encode(&text, true)?,
        Prompt { chat: Some(message), .. } => {
            let template = ChatTemplate::from_manifest(&b.manifest)
                .context("this bundle has no chat template (the model folder had none); use --prompt")?;
            need_tokenizer()?.encode(&template.render(&[Message::new("user", &message)], true)?, false)?
        }
        _ => bail!("give a --prompt, --chat or --tokens"),
    };
    let mut stream = tokenizer.as_ref().map(TextStream::new);
    let mut out = std::io::stdout();
    let mut generated = Vec::new();
    let mut on_token = |next: u32| -> Result<()> {
        generated.push(next);
        if let (Some(s), false) = (&mut stream, json) {
            write!(out, "{}", s.push(next)?)?;
            out.flush()?;
        }
        Ok(())
    };
    let (device, first_token_ms, decode_ms) = match engine.backend {
        Backend::Native => generate_native(&b, &prompt_ids, max_tokens, sampling, &mut on_token)?,
        Backend::Wasm => {
            let run = wasm::generate(bundle, &b.manifest, &prompt_ids, max_tokens, &sampling, engine.threads, &mut on_token)?;
            (run.device, run.prompt_ms, run.decode_ms)
        }
    };
    let text = match &tokenizer {
        Some(t) => Some(t.decode(&generated)?),
        None => None,
    };
    if json {
        let timing = serde_json::json!({ "device": device, "first_token_ms": first_token_ms, "decode_ms": decode_ms });
        println!("{}", serde_json::json!({ "prompt_tokens": prompt_ids, "tokens": generated, "text": text, "timing": timing }));
    } else {
        if tokenizer.is_none() {
            print!("{}", generated.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
        }
        println!();
        eprintln!(
            "{} prompt tokens, {} generated; first token after {first_token_ms:.1} ms, then {:.1} tokens/s on {device}",
            prompt_ids.len(),
            generated.len(),
            generated.len().saturating_sub(1) as f64 / (decode_ms / 1e3).max(1e-9),
        );
    }
    Ok(())
}

/// Generates on the native runtime, as `Decoder` feeds it: returns the adapter's name, the milliseconds until the
/// first token and after it.
fn generate_native(
    b: &Bundle,
    prompt_ids: &[u32],
    max_tokens: usize,
    sampling: Sampling,
    on_token: &mut dyn FnMut(u32) -> Result<()>,
) -> Result<(String, f64, f64)> {
    let end_of_sequence: Vec<u32> = b
        .manifest
        .model
        .get("eos_token_ids")
        .map(|ids| ids.split(',').filter_map(|t| t.parse().ok()).collect())
        .unwrap_or_default();
    let mut decoder = Decoder::new(Session::new(b)?)?;
    decoder.set_sampling(sampling);
    let started = Instant::now();
    let mut next = decoder.feed(prompt_ids, false)?.next_token;
    let first_token = started.elapsed();
    let mut count = 0;
    while count < max_tokens && !end_of_sequence.contains(&next) {
        on_token(next)?;
        count += 1;
        if count == max_tokens || decoder.past() == decoder.context_length() {
            break;
        }
        next = decoder.feed(&[next], false)?.next_token;
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    Ok((decoder.session().adapter_name().to_string(), ms(first_token), ms(started.elapsed() - first_token)))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The feeds for `tfc run` and the token ids used (if the text or token options gave any).
fn gather_inputs(bundle: &Bundle, inputs: &RunInputs) -> Result<(BTreeMap<String, Tensor>, Option<Vec<i64>>)> {
    let mut feeds = BTreeMap::new();
    let tokens: Option<Vec<i64>> = match (&inputs.tokens, &inputs.text) {
        (Some(ids), _) => Some(ids.clone()),
        (None, Some(text)) => Some(Tokenizer::from_bundle(bundle)?.encode(text, true)?.into_iter().map(i64::from).collect()),
        (None, None) => None,
    };
    if let Some(ids) = &tokens {
        if ids.is_empty() {
            bail!("no tokens to run");
        }
        feeds.insert("input_ids".to_string(), Tensor::i64(vec![1, ids.len()], ids.clone()));
    }
    feeds.extend(named_npy_files(&inputs.files, "--input")?);
    if feeds.is_empty() {
        bail!("give the model some input: --tokens, --text or --input NAME=FILE.npy");
    }
    Ok((feeds, tokens))
}

/// `NAME=FILE.npy` arguments of `option`, read.
fn named_npy_files(specs: &[String], option: &str) -> Result<BTreeMap<String, Tensor>> {
    let mut tensors = BTreeMap::new();
    for spec in specs {
        let (name, file) = spec.split_once('=').with_context(|| format!("{option} `{spec}` is not NAME=FILE.npy"))?;
        tensors.insert(name.to_string(), npy::read(Path::new(file))?);
    }
    Ok(tensors)
}

fn describe(t: &Tensor) -> serde_json::Value {
    let v = t.to_f32();
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    serde_json::json!({ "shape": t.shape, "first": v.iter().take(4).collect::<Vec<_>>(), "mean": mean, "std": std })
}

/// Stage lines on stderr and a progress bar while weights are written.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
}

impl Bar {
    fn new() -> Bar {
        Bar { bar: None }
    }
}

impl Progress for Bar {
    fn stage(&mut self, name: &str) {
        eprintln!("{name}…");
    }

    fn bytes(&mut self, done: u64, total: u64) {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("  {bar:40} {binary_bytes}/{binary_total_bytes} ({eta})").expect("valid template"),
            );
            bar
        });
        bar.set_position(done);
        if done >= total {
            bar.finish_and_clear();
        }
    }
}
