//! The Llama family (Llama, Mistral, Qwen2): `input_ids`, `position_ids` → `logits`. RMSNorm, rotary positions,
//! grouped-query attention and a gated MLP; the members differ in biases, defaults and sliding windows.

use super::builder::{Builder, activation, fit_context, max_sequence};
use super::checkpoint::Checkpoint;
use super::config::Config;
use super::{ImportError, ImportOptions};
use tfc_ir::{BinaryOp, Graph, InputDefault, Op, Weight};

pub(crate) fn build(
    config: &Config,
    checkpoint: &Checkpoint,
    opts: &ImportOptions,
    model_type: &str,
) -> Result<Graph, ImportError> {
    let hidden = config.u64("hidden_size")?;
    let layers = config.u64("num_hidden_layers")?;
    let heads = config.u64("num_attention_heads")?;
    let intermediate = config.u64("intermediate_size")?;
    let vocab = config.u64("vocab_size")?;
    // Defaults of the transformers config classes for keys a config.json may leave out.
    let (kv_heads_default, positions_default) = match model_type {
        "mistral" => (8, 4096 * 32),
        "qwen2" => (32, 32768),
        "phi3" => (heads, 4096),
        _ => (heads, 2048),
    };
    let kv_heads = key_value_heads(config, heads, kv_heads_default)?;
    let positions = config.u64_or("max_position_embeddings", positions_default)?;
    let eps = config.f64_or("rms_norm_eps", 1e-6)?;
    let act = activation(config, "hidden_act", "silu")?;
    let tied = config.bool_or("tie_word_embeddings", false)?;
    let head_dim = match config.opt_u64("head_dim")? {
        Some(d) if d > 0 => d,
        _ if hidden % heads == 0 => hidden / heads,
        _ => {
            return Err(config.error(
                "hidden_size",
                format!("({hidden}) is not a multiple of num_attention_heads ({heads}) and head_dim is not given"),
            ));
        }
    };
    let (qkv_bias, o_bias, mlp_bias) = match model_type {
        "llama" => {
            let attention_bias = config.bool_or("attention_bias", false)?;
            (attention_bias, attention_bias, config.bool_or("mlp_bias", false)?)
        }
        "qwen2" => (true, false, false),
        _ => (false, false, false),
    };
    let rotary = rotary_dim(config, head_dim)?;
    let inv_freq = inv_freq(config, rotary, positions)?;
    let windows = layer_windows(config, model_type, layers)?;
    // Phi-3 stores the query, key and value projections as one matrix, and the gate and up projections as another.
    let fused = model_type == "phi3";

    let max_seq = max_sequence(config, opts, "max_position_embeddings", positions, false)?;
    let (max_seq, context_note) = fit_context(opts, max_seq, kv_heads * head_dim)?;
    let mut b = Builder::decoder(config, checkpoint, model_type, max_seq, opts.kv_dtype);
    b.g.notes.extend(context_note);
    b.detect_prefix(&["model.", ""], "embed_tokens.weight")?;
    let input_ids = b.token_input("input_ids", None);
    let position_ids = b.token_input("position_ids", Some(InputDefault::Positions));
    let inv_freq = b.own_weight(Weight::from_f32("rotary_emb.inv_freq", vec![inv_freq.len() as u64], &inv_freq));

    let embed = b.weight(&b.name("embed_tokens.weight"), &[vocab, hidden])?;
    let mut x = b.gather(&b.name("embed_tokens"), embed, input_ids)?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let (q_rows, kv_rows) = (heads * head_dim, kv_heads * head_dim);
    for (i, window) in windows.into_iter().enumerate() {
        let layer = b.name(&format!("layers.{i}"));
        let attn = format!("{layer}.self_attn");
        let h = b.rms_norm(&format!("{layer}.input_layernorm"), x, hidden, eps)?;
        let mut qkv = Vec::with_capacity(3);
        for (part, n, first) in [("q", heads, 0), ("k", kv_heads, q_rows), ("v", kv_heads, q_rows + kv_rows)] {
            let proj = format!("{attn}.{part}_proj");
            let y = if fused {
                let rows = q_rows + 2 * kv_rows;
                let w = b.weight_rows(&format!("{attn}.qkv_proj.weight"), &[rows, hidden], first..first + n * head_dim)?;
                b.op(&proj, Op::MatMul { transpose_a: false, transpose_b: true }, &[h, w])?
            } else {
                b.linear(&proj, h, hidden, n * head_dim, qkv_bias)?
            };
            let y = b.split_heads(&format!("{proj}.heads"), y, n, head_dim)?;
            qkv.push(match part {
                "v" => y,
                _ => {
                    let rope = Op::Rope { interleaved: checkpoint.interleaved_rotary_pairs };
                    b.op(format!("{proj}.rope"), rope, &[y, position_ids, inv_freq])?
                }
            });
        }
        let (k, v) = b.kv_cache(&attn, qkv[1], qkv[2])?;
        let ctx = b.attention(&attn, (qkv[0], k, v), None, Op::Attention { causal: true, scale, window })?;
        let y = b.linear(&format!("{attn}.o_proj"), ctx, heads * head_dim, hidden, o_bias)?;
        x = b.binary(format!("{layer}.attn_residual"), BinaryOp::Add, x, y)?;

        let mlp = format!("{layer}.mlp");
        let h = b.rms_norm(&format!("{layer}.post_attention_layernorm"), x, hidden, eps)?;
        let y = if fused {
            let name = format!("{mlp}.gate_up_proj.weight");
            let matmul = Op::MatMul { transpose_a: false, transpose_b: true };
            let gate = b.weight_rows(&name, &[2 * intermediate, hidden], 0..intermediate)?;
            let up = b.weight_rows(&name, &[2 * intermediate, hidden], intermediate..2 * intermediate)?;
            let gate = b.op(format!("{mlp}.gate_proj"), matmul.clone(), &[h, gate])?;
            let up = b.op(format!("{mlp}.up_proj"), matmul, &[h, up])?;
            b.gated_down(&mlp, (gate, up), (intermediate, hidden), act, mlp_bias)?
        } else {
            b.gated_mlp(&mlp, h, (hidden, intermediate), act, mlp_bias)?
        };
        x = b.binary(format!("{layer}.mlp_residual"), BinaryOp::Add, x, y)?;
    }
    let x = b.rms_norm(&b.name("norm"), x, hidden, eps)?;
    let lm_head = if tied { embed } else { b.weight("lm_head.weight", &[vocab, hidden])? };
    b.decoder_outputs(x, lm_head, None)?;
    b.end_of_sequence(config)?;
    Ok(b.finish(hidden, layers, vocab))
}

/// `num_key_value_heads` (or `default`), which must divide the `heads` query heads.
pub(crate) fn key_value_heads(config: &Config, heads: u64, default: u64) -> Result<u64, ImportError> {
    let kv_heads = config.u64_or("num_key_value_heads", default)?;
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(config.error("num_key_value_heads", format!("({kv_heads}) must divide num_attention_heads ({heads})")));
    }
    Ok(kv_heads)
}

/// Each layer's sliding window, if it has one: the window of the model type's rules on the layers
/// [`sliding_layers`] picks.
pub(crate) fn layer_windows(config: &Config, model_type: &str, layers: u64) -> Result<Vec<Option<u64>>, ImportError> {
    // transformers' Mistral and Gemma 3 configs default to a 4096 window when the key is absent (null disables it).
    let default_window = || -> Result<Option<u64>, ImportError> {
        if config.has("sliding_window") { config.opt_u64("sliding_window") } else { Ok(Some(4096)) }
    };
    let window = match model_type {
        "mistral" | "gemma3_text" => default_window()?,
        "qwen2" if config.bool_or("use_sliding_window", false)? => Some(config.u64_or("sliding_window", 4096)?),
        // HF Llama configs have no window; a GGUF Llama's window comes from its metadata.
        "phi3" | "llama" => config.opt_u64("sliding_window")?,
        _ => None,
    };
    let Some(window) = window.filter(|&w| w > 0) else { return Ok(vec![None; layers as usize]) };
    let sliding = sliding_layers(config, model_type, layers)?;
    Ok(sliding.into_iter().map(|s| s.then_some(window)).collect())
}

/// Which layers are local (sliding-window) ones, by transformers' rules: Qwen2's from `max_window_layers` on,
/// Gemma 3's all but every `sliding_window_pattern`-th (a `layer_types` list overrides both), every layer of the
/// other model types.
pub(crate) fn sliding_layers(config: &Config, model_type: &str, layers: u64) -> Result<Vec<bool>, ImportError> {
    let listed = config.opt_str_list("layer_types")?.filter(|_| matches!(model_type, "qwen2" | "gemma3_text"));
    Ok(match listed {
        Some(types) if types.len() as u64 != layers => {
            return Err(config.error("layer_types", format!("lists {} layers, the model has {layers}", types.len())));
        }
        Some(types) => types.iter().map(|t| t == "sliding_attention").collect(),
        None => match model_type {
            "qwen2" => {
                let full = config.u64_or("max_window_layers", 28)?;
                (0..layers).map(|i| i >= full).collect()
            }
            "gemma3_text" => {
                let pattern = config.u64_or("sliding_window_pattern", 6)?;
                (0..layers).map(|i| pattern == 0 || (i + 1) % pattern != 0).collect()
            }
            _ => vec![true; layers as usize],
        },
    })
}

/// The features of each head that rotary embeddings rotate: all, or `partial_rotary_factor` of them.
fn rotary_dim(config: &Config, head_dim: u64) -> Result<u64, ImportError> {
    let factor = match config.object("rope_parameters")?.map(|p| p.opt_f64("partial_rotary_factor")).transpose()?.flatten() {
        Some(f) => f,
        None => config.f64_or("partial_rotary_factor", 1.0)?,
    };
    // transformers truncates; the slack keeps a factor written as a rounded fraction (GGUF's rotated/head size) whole.
    let rotary = (head_dim as f64 * factor + 1e-6) as u64;
    if rotary == 0 || rotary % 2 == 1 || rotary > head_dim {
        return Err(config.error("partial_rotary_factor", format!("({factor}) gives {rotary} rotated features of {head_dim}; tfc needs an even number, at least 2")));
    }
    Ok(rotary)
}

/// RoPE inverse frequencies for `rotary_dim` features, from `rope_parameters` (transformers 5; the theta inside) or
/// else a top-level `rope_theta` and an optional `rope_scaling` with `type` or `rope_type` (older configs).
pub(crate) fn inv_freq(config: &Config, rotary_dim: u64, positions: u64) -> Result<Vec<f32>, ImportError> {
    let params = match config.object("rope_parameters")? {
        Some(p) => Some(p),
        None => config.object("rope_scaling")?,
    };
    scaled_inv_freq(params.as_ref(), config.f64_or("rope_theta", 10000.0)?, rotary_dim, positions)
}

/// RoPE inverse frequencies for `rotary_dim` features with the scaling `params` describe (none: the default), the
/// base `theta` from `params` or else `default_theta`. Computed in f32 step by step as transformers computes them (its
/// `1 / theta^(2i/d)` and scaling run in float32 torch ops), so that rotations match the reference to the last bit or
/// so.
pub(crate) fn scaled_inv_freq(params: Option<&Config>, default_theta: f64, rotary_dim: u64, positions: u64) -> Result<Vec<f32>, ImportError> {
    let theta = match params.map(|p| p.opt_f64("rope_theta")).transpose()?.flatten() {
        Some(theta) => theta,
        None => default_theta,
    };
    let dim = rotary_dim as f32;
    let base = theta as f32;
    let default: Vec<f32> = (0..rotary_dim / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / dim)).collect();
    let Some(params) = params else { return Ok(default) };
    let rope_type = match params.opt_str("rope_type")? {
        Some(t) => t,
        None => params.str_or("type", "default")?,
    };
    match rope_type.as_str() {
        "default" => Ok(default),
        "linear" => {
            let factor = params.f64("factor")? as f32;
            Ok(default.into_iter().map(|f| f / factor).collect())
        }
        "llama3" => {
            let factor = params.f64("factor")? as f32;
            let low = params.f64("low_freq_factor")?;
            let high = params.f64("high_freq_factor")?;
            let context = params.u64_or("original_max_position_embeddings", positions)? as f64;
            let (low_wavelen, high_wavelen) = ((context / low) as f32, (context / high) as f32);
            let span = (high - low) as f32;
            // torch evaluates `a / t` for a Python number `a` as `t.reciprocal() * a`.
            let wavelen = |f: f32| (1.0 / f) * (2.0 * std::f64::consts::PI) as f32;
            Ok(default
                .into_iter()
                .map(|f| {
                    let w = wavelen(f);
                    if w < high_wavelen {
                        f
                    } else if w > low_wavelen {
                        f / factor
                    } else {
                        let smooth = ((1.0 / w) * context as f32 - low as f32) / span;
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect())
        }
        other => Err(params.error(
            "rope_type",
            format!("= \"{other}\" is not supported; tfc supports the RoPE types default, linear and llama3"),
        )),
    }
}
