//! GPT-2: `input_ids`, `position_ids` → `logits`.

use super::builder::{Builder, activation, fit_context, max_sequence};
use super::checkpoint::Checkpoint;
use super::config::Config;
use super::{ImportError, ImportOptions};
use tfc_ir::{BinaryOp, Dim, Graph, InputDefault, Op};

pub(crate) fn build(
    config: &Config,
    checkpoint: &Checkpoint,
    opts: &ImportOptions,
    _model_type: &str,
) -> Result<Graph, ImportError> {
    let hidden = config.u64("n_embd")?;
    let layers = config.u64("n_layer")?;
    let heads = config.u64("n_head")?;
    let positions = config.u64("n_positions")?;
    let vocab = config.u64("vocab_size")?;
    let inner = config.u64_or("n_inner", 4 * hidden)?;
    let eps = config.f64_or("layer_norm_epsilon", 1e-5)?;
    let act = activation(config, "activation_function", "gelu_new")?;
    let scale_by_dim = config.bool_or("scale_attn_weights", true)?;
    let scale_by_layer = config.bool_or("scale_attn_by_inverse_layer_idx", false)?;
    let tied = config.bool_or("tie_word_embeddings", true)?;
    if hidden % heads != 0 {
        return Err(config.error("n_embd", format!("({hidden}) is not a multiple of n_head ({heads})")));
    }
    let head_dim = hidden / heads;
    let max_seq = max_sequence(config, opts, "n_positions", positions, true)?;

    let (max_seq, context_note) = fit_context(opts, max_seq, hidden)?;
    let mut b = Builder::decoder(config, checkpoint, "gpt2", max_seq, opts.kv_dtype);
    b.g.notes.extend(context_note);
    b.detect_prefix(&["transformer.", ""], "wte.weight")?;
    let input_ids = b.token_input("input_ids", None);
    let position_ids = b.token_input("position_ids", Some(InputDefault::Positions));

    let wte = b.weight(&b.name("wte.weight"), &[vocab, hidden])?;
    let wpe = b.weight(&b.name("wpe.weight"), &[positions, hidden])?;
    let tokens = b.gather(&b.name("wte"), wte, input_ids)?;
    let pos = b.gather(&b.name("wpe"), wpe, position_ids)?;
    let mut x = b.binary(b.name("embeddings"), BinaryOp::Add, tokens, pos)?;

    for i in 0..layers {
        let block = b.name(&format!("h.{i}"));
        let attn = format!("{block}.attn");
        let h = b.layer_norm(&format!("{block}.ln_1"), x, hidden, eps)?;
        let fused = b.conv1d(&format!("{attn}.c_attn"), h, hidden, 3 * hidden)?;
        let mut qkv = Vec::with_capacity(3);
        for (j, part) in ["q", "k", "v"].into_iter().enumerate() {
            let (start, end) = (Dim::from(j as u64 * hidden), Dim::from((j as u64 + 1) * hidden));
            let y = b.op(format!("{attn}.{part}"), Op::Slice { axis: 2, start, end }, &[fused])?;
            qkv.push(b.split_heads(&format!("{attn}.{part}.heads"), y, heads, head_dim)?);
        }
        let mut scale = if scale_by_dim { 1.0 / (head_dim as f32).sqrt() } else { 1.0 };
        if scale_by_layer {
            scale /= (i + 1) as f32;
        }
        let (k, v) = b.kv_cache(&attn, qkv[1], qkv[2])?;
        let ctx = b.attention(&attn, (qkv[0], k, v), None, Op::Attention { causal: true, scale, window: None })?;
        let y = b.conv1d(&format!("{attn}.c_proj"), ctx, hidden, hidden)?;
        x = b.binary(format!("{block}.attn_residual"), BinaryOp::Add, x, y)?;

        let mlp = format!("{block}.mlp");
        let h = b.layer_norm(&format!("{block}.ln_2"), x, hidden, eps)?;
        let y = b.conv1d(&format!("{mlp}.c_fc"), h, hidden, inner)?;
        let y = b.unary(format!("{mlp}.act"), act, y)?;
        let y = b.conv1d(&format!("{mlp}.c_proj"), y, inner, hidden)?;
        x = b.binary(format!("{block}.mlp_residual"), BinaryOp::Add, x, y)?;
    }
    let x = b.layer_norm(&b.name("ln_f"), x, hidden, eps)?;
    let lm_head = if tied { wte } else { b.weight("lm_head.weight", &[vocab, hidden])? };
    b.decoder_outputs(x, lm_head, None)?;
    b.end_of_sequence(config)?;
    Ok(b.finish(hidden, layers, vocab))
}
