//! BERT and RoBERTa encoders: `input_ids`, `attention_mask`, `token_type_ids`, `position_ids` →
//! `last_hidden_state`.

use super::builder::{Builder, activation, max_sequence};
use super::checkpoint::Checkpoint;
use super::config::Config;
use super::{ImportError, ImportOptions};
use tfc_ir::{BinaryOp, Graph, InputDefault, Op};

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
    let positions = config.u64_or("max_position_embeddings", 512)?;
    let type_vocab = config.u64_or("type_vocab_size", 2)?;
    let eps = config.f64_or("layer_norm_eps", 1e-12)?;
    let act = activation(config, "hidden_act", "gelu")?;
    if hidden % heads != 0 {
        return Err(
            config.error("hidden_size", format!("({hidden}) is not a multiple of num_attention_heads ({heads})"))
        );
    }
    let head_dim = hidden / heads;
    let position_type = config.str_or("position_embedding_type", "absolute")?;
    if position_type != "absolute" {
        return Err(config.error(
            "position_embedding_type",
            format!("= \"{position_type}\" is not supported; tfc supports absolute position embeddings only"),
        ));
    }
    // RoBERTa numbers positions from padding_idx + 1: rows 0..=padding_idx of its table are never used by tokens.
    let skipped_positions = match model_type {
        "roberta" => config.u64_or("pad_token_id", 1)? + 1,
        _ => 0,
    };
    if skipped_positions >= positions {
        return Err(config.error("pad_token_id", format!("leaves no positions of the {positions} in the table")));
    }
    let usable_positions = positions - skipped_positions;
    let max_seq = max_sequence(config, opts, "max_position_embeddings", usable_positions, true)?;

    let mut b = Builder::new(config, checkpoint, model_type, opts.max_batch, max_seq);
    b.detect_prefix(&[&format!("{model_type}."), ""], "embeddings.word_embeddings.weight")?;
    let input_ids = b.token_input("input_ids", None);
    let attention_mask = b.token_input("attention_mask", Some(InputDefault::Ones));
    let token_type_ids = b.token_input("token_type_ids", Some(InputDefault::Zeros));
    let position_ids = b.token_input("position_ids", Some(InputDefault::Positions));

    let emb = b.name("embeddings");
    let words = b.weight(&format!("{emb}.word_embeddings.weight"), &[vocab, hidden])?;
    let position_table = checkpoint.weight_from_row(
        &format!("{emb}.position_embeddings.weight"),
        &[positions, hidden],
        skipped_positions,
    )?;
    let position_table = b.own_weight(position_table);
    let types = b.weight(&format!("{emb}.token_type_embeddings.weight"), &[type_vocab, hidden])?;
    let words = b.gather(&format!("{emb}.word_embeddings"), words, input_ids)?;
    let pos = b.gather(&format!("{emb}.position_embeddings"), position_table, position_ids)?;
    let typ = b.gather(&format!("{emb}.token_type_embeddings"), types, token_type_ids)?;
    let x = b.binary(format!("{emb}.add_positions"), BinaryOp::Add, words, pos)?;
    let x = b.binary(format!("{emb}.add_token_types"), BinaryOp::Add, x, typ)?;
    let mut x = b.layer_norm(&format!("{emb}.LayerNorm"), x, hidden, eps)?;

    let scale = 1.0 / (head_dim as f32).sqrt();
    for i in 0..layers {
        let layer = b.name(&format!("encoder.layer.{i}"));
        let attn = format!("{layer}.attention.self");
        let mut qkv = Vec::with_capacity(3);
        for part in ["query", "key", "value"] {
            let y = b.linear(&format!("{attn}.{part}"), x, hidden, hidden, true)?;
            qkv.push(b.split_heads(&format!("{attn}.{part}.heads"), y, heads, head_dim)?);
        }
        let ctx = b.attention(&attn, (qkv[0], qkv[1], qkv[2]), Some(attention_mask), Op::Attention { causal: false, scale, window: None })?;
        let out = format!("{layer}.attention.output");
        let y = b.linear(&format!("{out}.dense"), ctx, hidden, hidden, true)?;
        let y = b.binary(format!("{out}.residual"), BinaryOp::Add, y, x)?;
        let h = b.layer_norm(&format!("{out}.LayerNorm"), y, hidden, eps)?;

        let y = b.linear(&format!("{layer}.intermediate.dense"), h, hidden, intermediate, true)?;
        let y = b.unary(format!("{layer}.intermediate.act"), act, y)?;
        let y = b.linear(&format!("{layer}.output.dense"), y, intermediate, hidden, true)?;
        let y = b.binary(format!("{layer}.output.residual"), BinaryOp::Add, y, h)?;
        x = b.layer_norm(&format!("{layer}.output.LayerNorm"), y, hidden, eps)?;
    }
    b.g.output("last_hidden_state", x);
    Ok(b.finish(hidden, layers, vocab))
}
