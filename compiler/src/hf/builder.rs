//! Graph building blocks shared by the architectures: weights looked up by checkpoint name, linear layers, norms
//! and attention.

use super::checkpoint::Checkpoint;
use super::config::Config;
use super::{ImportError, ImportOptions};
use std::collections::HashMap;
use std::path::PathBuf;
use tfc_ir::{BinaryOp, DType, Dim, Graph, InputDefault, NodeId, Op, TensorType, UnaryOp, Weight};

/// How many recent tokens a decoder's repeat penalty can look at.
pub const PENALIZED_TOKENS: u64 = 64;

pub(crate) struct Builder<'a> {
    pub g: Graph,
    checkpoint: &'a Checkpoint,
    config_file: PathBuf,
    model_type: String,
    /// What the checkpoint puts before the base model's tensor names (`bert.`, `model.`, …), possibly nothing.
    prefix: String,
    /// Weight nodes by tensor name, so a tensor used twice (tied embeddings) is one node.
    loaded: HashMap<String, NodeId>,
    batch: Dim,
    sequence: Dim,
    /// Decoders: the number of cached tokens before this call, and the rows of the KV cache.
    past: Option<Dim>,
    context: u64,
    kv_dtype: DType,
}

impl<'a> Builder<'a> {
    /// An encoder's builder: inputs `[batch, sequence]`.
    pub fn new(
        config: &Config,
        checkpoint: &'a Checkpoint,
        model_type: &str,
        max_batch: u64,
        max_sequence: u64,
    ) -> Self {
        let mut g = Graph::new();
        let batch = g.symbol("batch", max_batch);
        let sequence = g.symbol("sequence", max_sequence);
        Builder {
            g,
            checkpoint,
            config_file: config.file().to_path_buf(),
            model_type: model_type.to_string(),
            prefix: String::new(),
            loaded: HashMap::new(),
            batch,
            sequence,
            past: None,
            context: max_sequence,
            kv_dtype: DType::F32,
        }
    }

    /// The tokens that end generation, from generation_config.json beside config.json if it has them, else from
    /// config.json; recorded in the bundle as `eos_token_ids` (comma-separated).
    pub fn end_of_sequence(&mut self, config: &Config) -> Result<(), ImportError> {
        let generation = config.file().with_file_name("generation_config.json");
        let mut ids = None;
        if generation.is_file() {
            ids = Config::load(&generation)?.opt_u64_list("eos_token_id")?;
        }
        if ids.is_none() {
            ids = config.opt_u64_list("eos_token_id")?;
        }
        if let Some(ids) = ids {
            let list: Vec<String> = ids.iter().map(u64::to_string).collect();
            self.g.metadata.insert("eos_token_ids".into(), list.join(","));
        }
        Ok(())
    }

    /// A decoder's builder: batch 1, `sequence` new tokens after `past` cached ones, a KV cache of `context` rows
    /// in `kv_dtype` (so one bundle serves the whole prompt at once — prefill — and then one token at a time —
    /// decode).
    pub fn decoder(config: &Config, checkpoint: &'a Checkpoint, model_type: &str, context: u64, kv_dtype: DType) -> Self {
        let mut b = Builder::new(config, checkpoint, model_type, 1, context);
        b.kv_dtype = kv_dtype;
        b.g.symbols.retain(|s| s.name != "batch");
        b.batch = Dim::from(1u64);
        b.past = Some(b.g.symbol("past", context - 1));
        b.g.metadata.insert("context_length".into(), context.to_string());
        b.g.metadata.insert("kv_dtype".into(), kv_dtype.to_string());
        b
    }

    /// Chooses the first of `prefixes` under which the checkpoint holds `probe` (a base-model tensor name).
    pub fn detect_prefix(&mut self, prefixes: &[&str], probe: &str) -> Result<(), ImportError> {
        let names: Vec<String> = prefixes.iter().map(|p| format!("{p}{probe}")).collect();
        let found = names.iter().position(|n| self.checkpoint.contains(n));
        let index = found.ok_or_else(|| ImportError::MissingTensor { names, searched: self.checkpoint.searched() })?;
        self.prefix = prefixes[index].to_string();
        Ok(())
    }

    /// The checkpoint name of a base-model module or tensor (`encoder.layer.0` → `bert.encoder.layer.0`).
    pub fn name(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// An integer `[batch, sequence]` graph input.
    pub fn token_input(&mut self, name: &str, default: Option<InputDefault>) -> NodeId {
        let ty = TensorType::new(DType::I32, vec![self.batch.clone(), self.sequence.clone()]);
        self.g.input(name, ty, default)
    }

    /// The checkpoint tensor `name` (a full name), which must have `shape`.
    pub fn weight(&mut self, name: &str, shape: &[u64]) -> Result<NodeId, ImportError> {
        if let Some(&id) = self.loaded.get(name) {
            return Ok(id);
        }
        let id = self.g.weight(self.checkpoint.weight(name, shape)?);
        self.loaded.insert(name.to_string(), id);
        Ok(id)
    }

    /// Rows `rows` of the checkpoint tensor `name` (which must have `shape`), as a weight of their own: one
    /// module's part of a fused matrix.
    pub fn weight_rows(&mut self, name: &str, shape: &[u64], rows: std::ops::Range<u64>) -> Result<NodeId, ImportError> {
        let weight = self.checkpoint.weight(name, shape)?.slice_rows(rows.start, rows.end);
        Ok(self.g.weight(weight))
    }

    /// A weight the importer made or derived itself.
    pub fn own_weight(&mut self, weight: Weight) -> NodeId {
        self.g.weight(weight)
    }

    pub fn op(&mut self, name: impl Into<String>, op: Op, inputs: &[NodeId]) -> Result<NodeId, ImportError> {
        self.g.add(name, op, inputs).map_err(|source| ImportError::Graph {
            file: self.config_file.clone(),
            model_type: self.model_type.clone(),
            source,
        })
    }

    pub fn unary(&mut self, name: impl Into<String>, op: UnaryOp, x: NodeId) -> Result<NodeId, ImportError> {
        self.op(name, Op::Unary(op), &[x])
    }

    pub fn binary(
        &mut self,
        name: impl Into<String>,
        op: BinaryOp,
        a: NodeId,
        b: NodeId,
    ) -> Result<NodeId, ImportError> {
        self.op(name, Op::Binary(op), &[a, b])
    }

    pub fn gather(&mut self, name: &str, table: NodeId, indices: NodeId) -> Result<NodeId, ImportError> {
        self.op(name, Op::Gather, &[table, indices])
    }

    /// `x · Wᵀ (+ b)` with the checkpoint's `[out, in]` weight used as stored.
    pub fn linear(
        &mut self,
        module: &str,
        x: NodeId,
        inputs: u64,
        outputs: u64,
        bias: bool,
    ) -> Result<NodeId, ImportError> {
        let w = self.weight(&format!("{module}.weight"), &[outputs, inputs])?;
        let matmul = Op::MatMul { transpose_a: false, transpose_b: true };
        self.with_bias(module, x, w, matmul, outputs, bias)
    }

    /// GPT-2's `Conv1D`: `x · W + b` with the weight stored `[in, out]` (or transposed, as a linear layer's).
    pub fn conv1d(&mut self, module: &str, x: NodeId, inputs: u64, outputs: u64) -> Result<NodeId, ImportError> {
        if self.checkpoint.conv1d_transposed {
            return self.linear(module, x, inputs, outputs, true);
        }
        let w = self.weight(&format!("{module}.weight"), &[inputs, outputs])?;
        let matmul = Op::MatMul { transpose_a: false, transpose_b: false };
        self.with_bias(module, x, w, matmul, outputs, true)
    }

    fn with_bias(
        &mut self,
        module: &str,
        x: NodeId,
        w: NodeId,
        matmul: Op,
        outputs: u64,
        bias: bool,
    ) -> Result<NodeId, ImportError> {
        if !bias {
            return self.op(module, matmul, &[x, w]);
        }
        let y = self.op(format!("{module}.matmul"), matmul, &[x, w])?;
        let b = self.weight(&format!("{module}.bias"), &[outputs])?;
        self.binary(module, BinaryOp::Add, y, b)
    }

    /// LayerNorm with the checkpoint's `weight` and `bias` (or `gamma`/`beta` in old BERT checkpoints).
    pub fn layer_norm(&mut self, module: &str, x: NodeId, dim: u64, eps: f64) -> Result<NodeId, ImportError> {
        let (scale, shift) =
            if self.checkpoint.contains(&format!("{module}.gamma")) { ("gamma", "beta") } else { ("weight", "bias") };
        let gamma = self.weight(&format!("{module}.{scale}"), &[dim])?;
        let beta = self.weight(&format!("{module}.{shift}"), &[dim])?;
        self.op(module, Op::LayerNorm { eps: eps as f32 }, &[x, gamma, beta])
    }

    pub fn rms_norm(&mut self, module: &str, x: NodeId, dim: u64, eps: f64) -> Result<NodeId, ImportError> {
        let gamma = self.weight(&format!("{module}.weight"), &[dim])?;
        self.op(module, Op::RmsNorm { eps: eps as f32 }, &[x, gamma])
    }

    /// Gemma's RMSNorm, which scales by 1 + weight (computed here in f32, as transformers does; GGUF files store the
    /// sum already).
    pub fn rms_norm_plus_one(&mut self, module: &str, x: NodeId, dim: u64, eps: f64) -> Result<NodeId, ImportError> {
        let name = format!("{module}.weight");
        let gamma = if self.checkpoint.norms_include_one {
            self.weight(&name, &[dim])?
        } else {
            let weight = self.checkpoint.weight(&name, &[dim])?;
            let plus_one: Vec<f32> = weight.to_f32().iter().map(|w| 1.0 + w).collect();
            self.own_weight(Weight::from_f32(&format!("{} + 1", weight.name), vec![dim], &plus_one))
        };
        self.op(module, Op::RmsNorm { eps: eps as f32 }, &[x, gamma])
    }

    /// A gated MLP: `down(act(gate(x)) · up(x))`.
    pub fn gated_mlp(&mut self, mlp: &str, x: NodeId, (hidden, intermediate): (u64, u64), act: UnaryOp, bias: bool) -> Result<NodeId, ImportError> {
        let gate = self.linear(&format!("{mlp}.gate_proj"), x, hidden, intermediate, bias)?;
        let up = self.linear(&format!("{mlp}.up_proj"), x, hidden, intermediate, bias)?;
        self.gated_down(mlp, (gate, up), (intermediate, hidden), act, bias)
    }

    /// The rest of a gated MLP from the gate and up projections.
    pub fn gated_down(&mut self, mlp: &str, (gate, up): (NodeId, NodeId), (intermediate, hidden): (u64, u64), act: UnaryOp, bias: bool) -> Result<NodeId, ImportError> {
        let gate = self.unary(format!("{mlp}.act"), act, gate)?;
        let y = self.binary(format!("{mlp}.gated"), BinaryOp::Mul, gate, up)?;
        self.linear(&format!("{mlp}.down_proj"), y, intermediate, hidden, bias)
    }

    /// `[b, s, heads·head_dim]` → `[b, s, heads, head_dim]`.
    pub fn split_heads(&mut self, name: &str, x: NodeId, heads: u64, head_dim: u64) -> Result<NodeId, ImportError> {
        let s = &self.g.node(x).ty.shape;
        let shape = vec![s[0].clone(), s[1].clone(), Dim::from(heads), Dim::from(head_dim)];
        self.op(name, Op::Reshape { shape }, &[x])
    }

    /// Attention over `[b, s, H, d]` heads (`key_mask` `[b, t]` optional), merged back to `[b, s, H·e]`.
    pub fn attention(
        &mut self,
        module: &str,
        (q, k, v): (NodeId, NodeId, NodeId),
        key_mask: Option<NodeId>,
        attention: Op,
    ) -> Result<NodeId, ImportError> {
        let mut operands = vec![q, k, v];
        operands.extend(key_mask);
        let heads = self.op(format!("{module}.attention"), attention, &operands)?;
        let s = &self.g.node(heads).ty.shape;
        let shape = vec![s[0].clone(), s[1].clone(), &s[2] * &s[3]];
        self.op(format!("{module}.merge_heads"), Op::Reshape { shape }, &[heads])
    }

    /// Stores this call's keys and values (`[1, s, G, d]`) in the layer's cache; returns every cached row, this
    /// call's included.
    pub fn kv_cache(&mut self, module: &str, k: NodeId, v: NodeId) -> Result<(NodeId, NodeId), ImportError> {
        let past = self.past.clone().expect("only decoders have a KV cache");
        let mut cached = Vec::new();
        for (name, x) in [("key_cache", k), ("value_cache", v)] {
            let s = self.g.node(x).ty.shape.clone();
            let ty = TensorType::new(self.kv_dtype, vec![Dim::from(1u64), Dim::from(self.context), s[2].clone(), s[3].clone()]);
            let state = self.g.state(&format!("{module}.{name}"), ty);
            cached.push(self.op(format!("{module}.{name}.write"), Op::CacheWrite { offset: past.clone() }, &[state, x])?);
        }
        Ok((cached[0], cached[1]))
    }

    /// A decoder's outputs from its final hidden states: `logits` at every position, `last_logits` at the last one
    /// and `next_token`, drawn on the GPU from the last logits with the inputs `sampling` (temperature, top-k,
    /// top-p, min-p, repeat penalty; zeros pick the most likely token), `uniform` (the random number) and
    /// `penalized` (recent tokens for the repeat penalty). The last two outputs multiply only the last row by the
    /// LM head, so a decoding step that asks for them alone skips the full product. With `softcap` c, logits become
    /// c · tanh(logits / c).
    pub fn decoder_outputs(&mut self, hidden: NodeId, lm_head: NodeId, softcap: Option<f32>) -> Result<(), ImportError> {
        let head = Op::MatMul { transpose_a: false, transpose_b: true };
        let logits = self.op("lm_head", head.clone(), &[hidden, lm_head])?;
        let logits = self.softcap("lm_head", logits, softcap)?;
        self.g.output("logits", logits);
        let end = self.sequence.clone();
        let start = &end - &Dim::from(1u64);
        let last = self.op("last_position", Op::Slice { axis: 1, start, end }, &[hidden])?;
        let last_logits = self.op("lm_head.last", head, &[last, lm_head])?;
        let last_logits = self.softcap("lm_head.last", last_logits, softcap)?;
        self.g.output("last_logits", last_logits);
        let one = Dim::from(1u64);
        let sampling = self.g.input("sampling", TensorType::new(DType::F32, vec![Dim::from(5u64)]), Some(InputDefault::Zeros));
        let uniform = self.g.input("uniform", TensorType::new(DType::F32, vec![one.clone(), one]), Some(InputDefault::Zeros));
        let penalized = TensorType::new(DType::I32, vec![Dim::from(PENALIZED_TOKENS)]);
        let penalized = self.g.input("penalized", penalized, Some(InputDefault::Zeros));
        let next = self.op("next_token", Op::Sample, &[last_logits, sampling, uniform, penalized])?;
        self.g.output("next_token", next);
        Ok(())
    }

    /// c · tanh(x / c), or `x` itself without a cap.
    fn softcap(&mut self, module: &str, x: NodeId, cap: Option<f32>) -> Result<NodeId, ImportError> {
        let Some(cap) = cap else { return Ok(x) };
        let cap = self.own_weight(Weight::from_f32(&format!("{module}.softcap_value"), vec![1], &[cap]));
        let y = self.binary(format!("{module}.softcap_in"), BinaryOp::Div, x, cap)?;
        let y = self.unary(format!("{module}.softcap_tanh"), UnaryOp::Tanh, y)?;
        self.binary(format!("{module}.softcap"), BinaryOp::Mul, y, cap)
    }

    pub fn finish(mut self, hidden_size: u64, num_layers: u64, vocab_size: u64) -> Graph {
        for (key, value) in [("hidden_size", hidden_size), ("num_layers", num_layers), ("vocab_size", vocab_size)] {
            self.g.metadata.insert(key.into(), value.to_string());
        }
        self.g
    }
}

/// The activation function named by `key` (transformers' `ACT2FN` names).
pub fn activation(config: &Config, key: &str, default: &str) -> Result<UnaryOp, ImportError> {
    match config.str_or(key, default)?.as_str() {
        "gelu" => Ok(UnaryOp::Gelu),
        "gelu_new" | "gelu_pytorch_tanh" => Ok(UnaryOp::GeluTanh),
        "relu" => Ok(UnaryOp::Relu),
        "silu" | "swish" => Ok(UnaryOp::Silu),
        other => Err(config.error(
            key,
            format!(
                "= \"{other}\" is not supported; tfc supports gelu, gelu_new, gelu_pytorch_tanh, relu, silu and swish"
            ),
        )),
    }
}

/// A decoder's context length: `wanted` (asked for, or the model's positions), lowered when one layer's key or value
/// cache (`row` values per token, in `opts.kv_dtype`) would not fit the binding limit — with a note for the user — or
/// an error if the length was asked for explicitly.
pub fn fit_context(opts: &ImportOptions, wanted: u64, row: u64) -> Result<(u64, Option<String>), ImportError> {
    let row_bytes = opts.kv_dtype.bytes(row);
    let fits = opts.max_binding_size / row_bytes.max(1);
    if wanted <= fits {
        return Ok((wanted, None));
    }
    let limit = opts.max_binding_size;
    if opts.max_sequence.is_some() {
        return Err(ImportError::Options(format!(
            "a context of {wanted} tokens needs {} bytes for each layer's key cache, more than the {limit}-byte binding \
             limit; ask for at most {fits} tokens or raise --max-binding-size",
            wanted * row_bytes
        )));
    }
    Ok((
        fits,
        Some(format!(
            "context capped at {fits} tokens (the model has {wanted}) so that each layer's KV cache fits the {limit}-byte \
             binding limit; --max-context and --max-binding-size change it"
        )),
    ))
}

/// The longest sequence to build for: the requested one or the model's `positions`. Learned position tables
/// (`learned`) cannot go past their size.
pub fn max_sequence(
    config: &Config,
    opts: &ImportOptions,
    key: &str,
    positions: u64,
    learned: bool,
) -> Result<u64, ImportError> {
    match opts.max_sequence {
        Some(requested) if learned && requested > positions => Err(ImportError::Options(format!(
            "max_sequence {requested} is more than the {positions} positions this model has learned \
             (`{key}` in {}); ask for at most {positions}",
            config.file().display()
        ))),
        Some(requested) => Ok(requested),
        None => Ok(positions),
    }
}
