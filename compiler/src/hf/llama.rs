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
        _ => (heads, 2048),
    };
    let kv_heads = config.u64_or("num_key_value_heads", kv_heads_default)?;
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
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(
            config.error("num_key_value_heads", format!("({kv_heads}) must divide num_attention_heads ({heads})"))
        );
    }
    let (qkv_bias, o_bias, mlp_bias) = match model_type {
        "llama" => {
            let attention_bias = config.bool_or("attention_bias", false)?;
            (attention_bias, attention_bias, config.bool_or("mlp_bias", false)?)
        }
        "qwen2" => (true, false, false),
        _ => (false, false, false),
    };
    let inv_freq = inv_freq(config, head_dim, positions)?;

    let mut max_seq = max_sequence(config, opts, "max_position_embeddings", positions, false)?;
    let window = sliding_window(config, model_type, layers)?;
    let mut capped_note = None;
    if let Some(window) = window.filter(|&w| w < max_seq) {
        // Attention limited to the last `window` keys equals full causal attention on sequences of at most `window`
        // tokens, so the graph is exact up to there.
        if let Some(requested) = opts.max_sequence {
            return Err(config.error(
                "sliding_window",
                format!(
                    "({window}) is shorter than the requested max_sequence {requested}; tfc does not implement \
                     sliding-window attention yet, ask for max_sequence ≤ {window}"
                ),
            ));
        }
        max_seq = window;
        capped_note = Some(format!(
            "max sequence capped at the sliding_window of {window} (max_position_embeddings is {positions}): tfc does \
             not implement sliding-window attention yet"
        ));
    }

    let (max_seq, context_note) = fit_context(opts, max_seq, kv_heads * head_dim * 4)?;
    let mut b = Builder::decoder(config, checkpoint, model_type, max_seq);
    for note in capped_note.into_iter().chain(context_note) {
        b.g.notes.push(note);
    }
    b.detect_prefix(&["model.", ""], "embed_tokens.weight")?;
    let input_ids = b.token_input("input_ids", None);
    let position_ids = b.token_input("position_ids", Some(InputDefault::Positions));
    let inv_freq = b.own_weight(Weight::from_f32("rotary_emb.inv_freq", vec![inv_freq.len() as u64], &inv_freq));

    let embed = b.weight(&b.name("embed_tokens.weight"), &[vocab, hidden])?;
    let mut x = b.gather(&b.name("embed_tokens"), embed, input_ids)?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    for i in 0..layers {
        let layer = b.name(&format!("layers.{i}"));
        let attn = format!("{layer}.self_attn");
        let h = b.rms_norm(&format!("{layer}.input_layernorm"), x, hidden, eps)?;
        let mut qkv = Vec::with_capacity(3);
        for (part, n) in [("q", heads), ("k", kv_heads), ("v", kv_heads)] {
            let proj = format!("{attn}.{part}_proj");
            let y = b.linear(&proj, h, hidden, n * head_dim, qkv_bias)?;
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
        let ctx = b.attention(&attn, (qkv[0], k, v), None, true, scale)?;
        let y = b.linear(&format!("{attn}.o_proj"), ctx, heads * head_dim, hidden, o_bias)?;
        x = b.binary(format!("{layer}.attn_residual"), BinaryOp::Add, x, y)?;

        let mlp = format!("{layer}.mlp");
        let h = b.rms_norm(&format!("{layer}.post_attention_layernorm"), x, hidden, eps)?;
        let gate = b.linear(&format!("{mlp}.gate_proj"), h, hidden, intermediate, mlp_bias)?;
        let gate = b.unary(format!("{mlp}.act"), act, gate)?;
        let up = b.linear(&format!("{mlp}.up_proj"), h, hidden, intermediate, mlp_bias)?;
        let y = b.binary(format!("{mlp}.gated"), BinaryOp::Mul, gate, up)?;
        let y = b.linear(&format!("{mlp}.down_proj"), y, intermediate, hidden, mlp_bias)?;
        x = b.binary(format!("{layer}.mlp_residual"), BinaryOp::Add, x, y)?;
    }
    let x = b.rms_norm(&b.name("norm"), x, hidden, eps)?;
    let lm_head = if tied { embed } else { b.weight("lm_head.weight", &[vocab, hidden])? };
    b.decoder_outputs(x, lm_head)?;
    b.end_of_sequence(config)?;
    Ok(b.finish(hidden, layers, vocab))
}

/// The smallest sliding window any layer attends with, if any.
fn sliding_window(config: &Config, model_type: &str, layers: u64) -> Result<Option<u64>, ImportError> {
    match model_type {
        "mistral" => match config.opt_u64("sliding_window")? {
            // transformers' MistralConfig defaults to a 4096 window when the key is absent (null disables it).
            None if !config.has("sliding_window") => Ok(Some(4096)),
            window => Ok(window),
        },
        "qwen2" if config.bool_or("use_sliding_window", false)? => {
            let window = config.u64_or("sliding_window", 4096)?;
            let sliding_layers = match config.opt_str_list("layer_types")? {
                Some(types) => types.iter().any(|t| t == "sliding_attention"),
                None => config.u64_or("max_window_layers", 28)? < layers,
            };
            Ok(sliding_layers.then_some(window))
        }
        _ => Ok(None),
    }
}

/// RoPE inverse frequencies for `head_dim`, computed in f32 step by step as transformers computes them (its
/// `1 / theta^(2i/d)` and scaling run in float32 torch ops), so that rotations match the reference to the last bit
/// or so.
fn inv_freq(config: &Config, head_dim: u64, positions: u64) -> Result<Vec<f32>, ImportError> {
    // transformers 5 writes `rope_parameters` (theta inside); older configs a top-level `rope_theta` and an optional
    // `rope_scaling` with `type` or `rope_type`.
    let params = match config.object("rope_parameters")? {
        Some(p) => Some(p),
        None => config.object("rope_scaling")?,
    };
    let theta = match params.as_ref().map(|p| p.opt_f64("rope_theta")).transpose()?.flatten() {
        Some(theta) => theta,
        None => config.f64_or("rope_theta", 10000.0)?,
    };
    let dim = head_dim as f32;
    let base = theta as f32;
    let default: Vec<f32> = (0..head_dim / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / dim)).collect();
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
