//! Gemma 3's text decoder (`gemma3_text`): `input_ids`, `position_ids` → `logits`. Like the Llama family, with
//! embeddings scaled by √hidden, RMSNorms that scale by 1 + weight, norms after attention and the MLP as well as
//! before, RMSNorms on each query and key head, a GELU (tanh) gated MLP, attention scaled by
//! `query_pre_attn_scalar`^-½, local layers (a sliding window, their own RoPE base) between global ones, and an
//! optional final logit softcap. The multimodal Gemma 3 (`gemma3`, Gemma3ForConditionalGeneration: the 4B to 27B
//! models) is built as its text decoder, whose config is its `text_config` and weights its `language_model.`.

use super::builder::{Builder, activation, fit_context, max_sequence};
use super::checkpoint::Checkpoint;
use super::config::Config;
use super::llama::{key_value_heads, layer_windows, scaled_inv_freq, sliding_layers};
use super::{ImportError, ImportOptions};
use tfc_ir::{BinaryOp, Graph, InputDefault, Op, Weight};

pub(crate) fn build(
    config: &Config,
    checkpoint: &Checkpoint,
    opts: &ImportOptions,
    model_type: &str,
) -> Result<Graph, ImportError> {
    if model_type != "gemma3" {
        return build_text(config, checkpoint, opts, true);
    }
    let text = config
        .object("text_config")?
        .ok_or_else(|| config.error("text_config", "is missing; a gemma3 config describes its text decoder there"))?;
    // transformers' Gemma3ForConditionalGeneration does not apply `final_logit_softcapping` (None in every release).
    build_text(&text, checkpoint, opts, false)
}

/// The text decoder; with `softcapped` logits if the config asks for it.
fn build_text(config: &Config, checkpoint: &Checkpoint, opts: &ImportOptions, softcapped: bool) -> Result<Graph, ImportError> {
    let model_type = "gemma3_text";
    let hidden = config.u64("hidden_size")?;
    let layers = config.u64("num_hidden_layers")?;
    let heads = config.u64("num_attention_heads")?;
    let intermediate = config.u64("intermediate_size")?;
    let vocab = config.u64("vocab_size")?;
    // Defaults of transformers' Gemma3TextConfig.
    let kv_heads = key_value_heads(config, heads, 4)?;
    let head_dim = config.u64_or("head_dim", 256)?;
    let positions = config.u64_or("max_position_embeddings", 131_072)?;
    let eps = config.f64_or("rms_norm_eps", 1e-6)?;
    let act = activation(config, "hidden_activation", "gelu_pytorch_tanh")?;
    let tied = config.bool_or("tie_word_embeddings", true)?;
    let scale = (config.f64_or("query_pre_attn_scalar", 256.0)?.powf(-0.5)) as f32;
    let softcap = config.opt_f64("final_logit_softcapping")?.filter(|_| softcapped).map(|c| c as f32);
    if config.bool_or("use_bidirectional_attention", false)? {
        return Err(config.error("use_bidirectional_attention", "is true; tfc builds Gemma 3 as a causal decoder"));
    }
    // transformers' Gemma 3 never applies `attn_logit_softcapping` (Gemma 2's), so neither does tfc.
    let windows = layer_windows(config, model_type, layers)?;
    let local = sliding_layers(config, model_type, layers)?;
    let (global_freq, local_freq) = rope_frequencies(config, head_dim, positions)?;

    let max_seq = max_sequence(config, opts, "max_position_embeddings", positions, false)?;
    let (max_seq, context_note) = fit_context(opts, max_seq, kv_heads * head_dim)?;
    let mut b = Builder::decoder(config, checkpoint, model_type, max_seq, opts.kv_dtype);
    b.g.notes.extend(context_note);
    b.detect_prefix(&["model.", "language_model.model.", "model.language_model.", ""], "embed_tokens.weight")?;
    let input_ids = b.token_input("input_ids", None);
    let position_ids = b.token_input("position_ids", Some(InputDefault::Positions));
    let global_freq = b.own_weight(Weight::from_f32("rotary_emb.global_inv_freq", vec![head_dim / 2], &global_freq));
    let local_freq = b.own_weight(Weight::from_f32("rotary_emb.local_inv_freq", vec![head_dim / 2], &local_freq));

    let embed = b.weight(&b.name("embed_tokens.weight"), &[vocab, hidden])?;
    let x = b.gather(&b.name("embed_tokens"), embed, input_ids)?;
    let embed_scale = b.own_weight(Weight::from_f32("embed_scale", vec![1], &[(hidden as f64).sqrt() as f32]));
    let mut x = b.binary(b.name("embed_tokens.scaled"), BinaryOp::Mul, x, embed_scale)?;
    for (i, (window, local)) in windows.into_iter().zip(local).enumerate() {
        let layer = b.name(&format!("layers.{i}"));
        let attn = format!("{layer}.self_attn");
        let inv_freq = if local { local_freq } else { global_freq };
        let h = b.rms_norm_plus_one(&format!("{layer}.input_layernorm"), x, hidden, eps)?;
        let mut qkv = Vec::with_capacity(3);
        for (part, n) in [("q", heads), ("k", kv_heads), ("v", kv_heads)] {
            let proj = format!("{attn}.{part}_proj");
            let y = b.linear(&proj, h, hidden, n * head_dim, false)?;
            let y = b.split_heads(&format!("{proj}.heads"), y, n, head_dim)?;
            qkv.push(match part {
                "v" => y,
                _ => {
                    let y = b.rms_norm_plus_one(&format!("{attn}.{part}_norm"), y, head_dim, eps)?;
                    let rope = Op::Rope { interleaved: checkpoint.interleaved_rotary_pairs };
                    b.op(format!("{proj}.rope"), rope, &[y, position_ids, inv_freq])?
                }
            });
        }
        let (k, v) = b.kv_cache(&attn, qkv[1], qkv[2])?;
        let ctx = b.attention(&attn, (qkv[0], k, v), None, Op::Attention { causal: true, scale, window })?;
        let y = b.linear(&format!("{attn}.o_proj"), ctx, heads * head_dim, hidden, false)?;
        let y = b.rms_norm_plus_one(&format!("{layer}.post_attention_layernorm"), y, hidden, eps)?;
        x = b.binary(format!("{layer}.attn_residual"), BinaryOp::Add, x, y)?;

        let mlp = format!("{layer}.mlp");
        let h = b.rms_norm_plus_one(&format!("{layer}.pre_feedforward_layernorm"), x, hidden, eps)?;
        let y = b.gated_mlp(&mlp, h, (hidden, intermediate), act, false)?;
        let y = b.rms_norm_plus_one(&format!("{layer}.post_feedforward_layernorm"), y, hidden, eps)?;
        x = b.binary(format!("{layer}.mlp_residual"), BinaryOp::Add, x, y)?;
    }
    let x = b.rms_norm_plus_one(&b.name("norm"), x, hidden, eps)?;
    let lm_head = if tied { embed } else { b.weight("lm_head.weight", &[vocab, hidden])? };
    b.decoder_outputs(x, lm_head, softcap)?;
    b.end_of_sequence(config)?;
    Ok(b.finish(hidden, layers, vocab))
}

/// The RoPE inverse frequencies of the global and the local layers. transformers 5 writes `rope_parameters` with a
/// `full_attention` and a `sliding_attention` entry; older configs a `rope_theta` and `rope_scaling` for the global
/// layers and `rope_local_base_freq` (unscaled) for the local ones.
fn rope_frequencies(config: &Config, head_dim: u64, positions: u64) -> Result<(Vec<f32>, Vec<f32>), ImportError> {
    let per_type = config.object("rope_parameters")?;
    let full = per_type.as_ref().map(|p| p.object("full_attention")).transpose()?.flatten();
    let sliding = per_type.as_ref().map(|p| p.object("sliding_attention")).transpose()?.flatten();
    if let (Some(full), Some(sliding)) = (full, sliding) {
        return Ok((
            scaled_inv_freq(Some(&full), 1_000_000.0, head_dim, positions)?,
            scaled_inv_freq(Some(&sliding), 10_000.0, head_dim, positions)?,
        ));
    }
    let global = match per_type {
        Some(p) => Some(p),
        None => config.object("rope_scaling")?,
    };
    Ok((
        scaled_inv_freq(global.as_ref(), config.f64_or("rope_theta", 1_000_000.0)?, head_dim, positions)?,
        scaled_inv_freq(None, config.f64_or("rope_local_base_freq", 10_000.0)?, head_dim, positions)?,
    ))
}
