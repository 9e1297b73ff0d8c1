//! The Hugging Face importer against transformers' own outputs, run through the reference interpreter.

use tfc_fixtures::{minilm, read_npy, root};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use tfc_compiler::hf::{ImportError, ImportOptions, import};
use tfc_ir::{Graph, Op, Tensor, WeightData, interp, relative_l2};

/// The graph's first output (`last_hidden_state` or `logits`).
fn run(graph: &Graph, inputs: &[(&str, Tensor)]) -> Tensor {
    let inputs: BTreeMap<String, Tensor> = inputs.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
    let outputs = interp::run(graph, &inputs).expect("the interpreter runs the imported graph");
    outputs.into_iter().next().unwrap().1
}

fn assert_names_unique(graph: &Graph) {
    let mut seen = HashSet::new();
    for id in graph.node_ids() {
        let name = &graph.node(id).name;
        assert!(seen.insert(name.clone()), "node name `{name}` is used twice");
    }
}

/// Imports a tiny decoder and compares its logits with transformers'.
fn check_decoder(name: &str) -> Graph {
    let graph = import(&root().join("models").join(name), &ImportOptions::default()).unwrap();
    assert_names_unique(&graph);
    let outputs: Vec<&str> = graph.outputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(outputs, ["logits", "last_logits", "next_token"]);
    assert_eq!(graph.symbol_max("sequence"), Some(128));
    assert_eq!(graph.symbol_max("past"), Some(127));
    assert_eq!(graph.symbol_max("batch"), None, "decoders run batch 1");
    assert_eq!(graph.metadata["context_length"], "128");
    assert_eq!(graph.metadata["kv_dtype"], "f32");
    let layers = if name == "tiny-gemma3" { "6" } else { "2" };
    for (key, value) in [("hidden_size", "64"), ("num_layers", layers), ("vocab_size", "256"), ("source", name)] {
        assert_eq!(graph.metadata[key], value, "metadata {key}");
    }

    let reference = root().join("reference").join(name);
    let logits = run(&graph, &[("input_ids", read_npy(&reference.join("input_ids.npy")))]);
    let expected = read_npy(&reference.join("logits.npy"));
    assert_eq!(logits.shape, expected.shape);
    let err = relative_l2(logits.as_f32().unwrap(), expected.as_f32().unwrap());
    println!("{name}: relative L2 of logits {err:.3e}");
    assert!(err <= 1e-4, "{name}: relative L2 {err:.3e} > 1e-4");
    graph
}

/// The node of the weight named `name`.
fn weight_node(graph: &Graph, name: &str) -> tfc_ir::NodeId {
    let nodes: Vec<_> = graph.node_ids().filter(|&id| graph.weight_of(id).is_some_and(|w| w.name == name)).collect();
    assert_eq!(nodes.len(), 1, "weight {name} appears {} times", nodes.len());
    nodes[0]
}

fn lm_head_weight(graph: &Graph) -> tfc_ir::NodeId {
    let lm_head = graph.outputs[0].1;
    assert!(matches!(graph.node(lm_head).op, Op::MatMul { transpose_a: false, transpose_b: true }));
    graph.inputs_of(lm_head)[1]
}

#[test]
fn tiny_gpt2_matches_transformers() {
    let graph = check_decoder("tiny-gpt2");
    assert_eq!(graph.metadata["architecture"], "gpt2");
    // Tied: the embedding table is the lm_head weight, one node, one weight.
    assert_eq!(lm_head_weight(&graph), weight_node(&graph, "transformer.wte.weight"));
    // Conv1D weights are used as stored, [in, out].
    let c_attn = weight_node(&graph, "transformer.h.0.attn.c_attn.weight");
    let user = graph.users_of(c_attn)[0];
    assert!(matches!(graph.node(user).op, Op::MatMul { transpose_a: false, transpose_b: false }));
    assert!(graph.weights.iter().all(|w| matches!(w.data, WeightData::Mapped { .. })), "every weight is mapped");
}

#[test]
fn tiny_llama_matches_transformers() {
    let graph = check_decoder("tiny-llama");
    assert_eq!(lm_head_weight(&graph), weight_node(&graph, "lm_head.weight"));
    let files: HashSet<_> = graph
        .weights
        .iter()
        .filter_map(|w| match &w.data {
            WeightData::Mapped { file, .. } => Some(file.path.clone()),
            WeightData::Owned(_) => None,
        })
        .collect();
    assert_eq!(files.len(), 3, "weights come from all three shards");
    // Only the RoPE frequencies are made by the importer.
    let owned: Vec<_> = graph.weights.iter().filter(|w| matches!(w.data, WeightData::Owned(_))).collect();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].shape, [8]);
}

#[test]
fn tiny_qwen2_matches_transformers() {
    let graph = check_decoder("tiny-qwen2");
    assert_eq!(lm_head_weight(&graph), weight_node(&graph, "model.embed_tokens.weight"));
    assert!(graph.weights.iter().all(|w| w.name != "lm_head.weight"));
}

/// The sliding windows of the graph's attention ops, layer by layer.
fn windows(graph: &Graph) -> Vec<Option<u64>> {
    graph
        .node_ids()
        .filter_map(|id| match graph.node(id).op {
            Op::Attention { window, .. } => Some(window),
            _ => None,
        })
        .collect()
}

#[test]
fn tiny_llama_with_llama3_rope_scaling_matches_transformers() {
    check_decoder("tiny-llama3-rope");
}

#[test]
fn tiny_gemma3_matches_transformers() {
    let graph = check_decoder("tiny-gemma3");
    assert_eq!(graph.metadata["architecture"], "gemma3_text");
    // Five local layers with a window of 8, then a global one; the KV cache keeps the whole context.
    assert_eq!(windows(&graph), [Some(8), Some(8), Some(8), Some(8), Some(8), None]);
    // Tied: the embedding table is also the LM head's weight (whose logits are softcapped).
    let embed = weight_node(&graph, "model.embed_tokens.weight");
    assert!(graph.users_of(embed).iter().any(|&u| matches!(graph.node(u).op, Op::MatMul { .. })));
    assert!(matches!(graph.node(graph.outputs[0].1).op, Op::Binary(tfc_ir::BinaryOp::Mul)), "softcapped logits");
}

/// The multimodal Gemma 3 (Gemma3ForConditionalGeneration, with a vision tower) is built as its text decoder.
#[test]
fn tiny_multimodal_gemma3_text_decoder_matches_transformers() {
    let graph = check_decoder("tiny-gemma3-multimodal");
    assert_eq!(windows(&graph), [Some(8), None]);
    weight_node(&graph, "language_model.model.layers.1.self_attn.k_norm.weight + 1");
    assert!(graph.weights.iter().all(|w| !w.name.contains("vision")), "the vision tower is left out");
}

#[test]
fn gemma3_attention_is_scaled_by_query_pre_attn_scalar() {
    let dir = copy_model("tiny-gemma3");
    edit_config(dir.path(), |c| {
        c.insert("query_pre_attn_scalar".into(), 144.into());
    });
    let graph = import(dir.path(), &ImportOptions::default()).unwrap();
    for id in graph.node_ids() {
        if let Op::Attention { scale, .. } = graph.node(id).op {
            assert_eq!(scale, 1.0 / 12.0);
        }
    }
}

/// Gemma 3 configs on the Hub predate transformers 5: `rope_theta`, `rope_local_base_freq` and
/// `sliding_window_pattern` instead of `rope_parameters` per layer type and `layer_types`.
#[test]
fn gemma3_configs_in_the_older_format_give_the_same_model() {
    let dir = copy_model("tiny-gemma3");
    edit_config(dir.path(), |c| {
        for key in ["rope_parameters", "layer_types", "_sliding_window_pattern"] {
            c.remove(key);
        }
        c.insert("rope_theta".into(), 1_000_000.0.into());
        c.insert("rope_local_base_freq".into(), 10_000.0.into());
        c.insert("rope_scaling".into(), serde_json::Value::Null);
    });
    let graph = import(dir.path(), &ImportOptions::default()).unwrap();
    assert_eq!(windows(&graph), [Some(8), Some(8), Some(8), Some(8), Some(8), None]);
    let reference = root().join("reference/tiny-gemma3");
    let logits = run(&graph, &[("input_ids", read_npy(&reference.join("input_ids.npy")))]);
    let err = relative_l2(logits.as_f32().unwrap(), read_npy(&reference.join("logits.npy")).as_f32().unwrap());
    assert!(err <= 1e-4, "relative L2 {err:.3e} > 1e-4");
}

#[test]
fn qwen2_windows_the_layers_from_max_window_layers_on() {
    let dir = copy_model("tiny-qwen2");
    edit_config(dir.path(), |c| {
        c.insert("use_sliding_window".into(), true.into());
        c.insert("sliding_window".into(), 16.into());
        c.insert("max_window_layers".into(), 1.into());
        // transformers 5 saved the layer types, which override max_window_layers.
        c.remove("layer_types");
    });
    assert_eq!(windows(&import(dir.path(), &ImportOptions::default()).unwrap()), [None, Some(16)]);
}

#[test]
fn tiny_mistral_matches_transformers_with_its_window() {
    let graph = check_decoder("tiny-mistral");
    assert_eq!(windows(&graph), [Some(10), Some(10)]);
}

#[test]
fn tiny_phi3_matches_transformers() {
    let graph = check_decoder("tiny-phi3");
    assert_eq!(windows(&graph), [Some(12), Some(12)]);
    // The fused query/key/value and gate/up matrices are read as row ranges of their tensors.
    weight_node(&graph, "model.layers.0.self_attn.qkv_proj.weight[64:96]");
    weight_node(&graph, "model.layers.1.mlp.gate_up_proj.weight[128:256]");
    // Half of each 16-feature head rotates: 4 frequencies.
    let owned: Vec<_> = graph.weights.iter().filter(|w| matches!(w.data, WeightData::Owned(_))).collect();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].shape, [4]);
}

#[test]
fn mistral_attends_within_its_sliding_window_over_the_whole_context() {
    let dir = copy_model("tiny-llama");
    edit_config(dir.path(), |c| {
        c.insert("model_type".into(), "mistral".into());
        c.insert("sliding_window".into(), 32.into());
    });
    let graph = import(dir.path(), &ImportOptions::default()).unwrap();
    assert_eq!(windows(&graph), [Some(32), Some(32)]);
    assert_eq!(graph.metadata["context_length"], "128");
    assert!(graph.notes.is_empty(), "{:?}", graph.notes);
}

/// Runs all-MiniLM-L6-v2 on one reference case; compares only the tokens the attention mask keeps.
fn check_minilm(case: &str) {
    let graph = import(&minilm(), &ImportOptions::default()).unwrap();
    assert_eq!(graph.symbol_max("sequence"), Some(512));
    let reference = root().join("reference/minilm").join(case);
    let mask = read_npy(&reference.join("attention_mask.npy"));
    let inputs = [
        ("input_ids", read_npy(&reference.join("input_ids.npy"))),
        ("attention_mask", mask.clone()),
        ("token_type_ids", read_npy(&reference.join("token_type_ids.npy"))),
    ];
    let hidden = run(&graph, &inputs);
    let expected = read_npy(&reference.join("last_hidden_state.npy"));
    assert_eq!(hidden.shape, expected.shape);
    let width = expected.shape[2];
    let keep = |v: &[f32]| -> Vec<f32> {
        v.chunks(width).zip(mask.to_i64()).filter(|(_, m)| *m == 1).flat_map(|(row, _)| row.to_vec()).collect()
    };
    let err = relative_l2(&keep(hidden.as_f32().unwrap()), &keep(expected.as_f32().unwrap()));
    println!("minilm {case}: relative L2 of last_hidden_state {err:.3e}");
    assert!(err <= 1e-4, "minilm {case}: relative L2 {err:.3e} > 1e-4");
}

#[test]
fn minilm_s0_matches_transformers() {
    check_minilm("s0");
}

#[test]
fn minilm_s1_matches_transformers() {
    check_minilm("s1");
}

#[test]
fn minilm_s2_matches_transformers() {
    check_minilm("s2");
}

#[test]
fn minilm_padded_batch_matches_transformers() {
    check_minilm("batch3");
}

#[test]
fn minilm_graph_follows_the_conventions() {
    let graph = import(&minilm(), &ImportOptions { max_batch: 2, max_sequence: Some(128), ..Default::default() }).unwrap();
    assert_names_unique(&graph);
    let inputs: Vec<_> = graph.inputs.iter().map(|&id| graph.node(id).name.as_str()).collect();
    assert_eq!(inputs, ["input_ids", "attention_mask", "token_type_ids", "position_ids"]);
    assert_eq!((graph.symbol_max("batch"), graph.symbol_max("sequence")), (Some(2), Some(128)));
    assert_eq!(graph.metadata["architecture"], "bert");
    assert_eq!(graph.metadata["num_layers"], "6");
    // The unused int64 position_ids buffer of the checkpoint is not imported.
    assert!(graph.weights.iter().all(|w| w.name != "embeddings.position_ids"));
    let err = import(&minilm(), &ImportOptions { max_batch: 1, max_sequence: Some(513), ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("512"), "{err}");
}

/// A copy of the fixture model `name` in a temporary folder.
fn copy_model(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("models").join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

fn import_err(dir: &Path) -> String {
    let err: ImportError = import(dir, &ImportOptions::default()).expect_err("import must fail");
    let message = err.to_string();
    println!("{message}");
    message
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{message}` does not mention `{part}`");
    }
}

#[test]
fn unknown_model_type_is_named_with_the_supported_ones() {
    let dir = copy_model("tiny-gpt2");
    edit_config(dir.path(), |c| {
        c.insert("model_type".into(), "t5".into());
    });
    assert_mentions(&import_err(dir.path()), &["config.json", "model_type", "t5", "bert", "gpt2", "llama", "qwen2"]);
}

#[test]
fn missing_or_malformed_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert_mentions(&import_err(dir.path()), &["config.json", "Hugging Face model folder"]);
    std::fs::write(dir.path().join("config.json"), "{\"model_type\": ").unwrap();
    assert_mentions(&import_err(dir.path()), &["config.json", "not valid JSON"]);

    let dir = copy_model("tiny-llama");
    edit_config(dir.path(), |c| {
        c.remove("hidden_size");
    });
    assert_mentions(&import_err(dir.path()), &["config.json", "`hidden_size`", "missing"]);
}

#[test]
fn missing_tensor_is_named_with_the_files_searched() {
    // The config asks for a third layer the weights do not have.
    let dir = copy_model("tiny-gpt2");
    edit_config(dir.path(), |c| {
        c.insert("n_layer".into(), 3.into());
    });
    assert_mentions(&import_err(dir.path()), &["transformer.h.2.ln_1.weight", "not found", "model.safetensors"]);

    let dir = copy_model("tiny-llama");
    edit_config(dir.path(), |c| {
        c.insert("num_hidden_layers".into(), 3.into());
    });
    assert_mentions(
        &import_err(dir.path()),
        &["model.layers.2.", "model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors"],
    );
}

#[test]
fn wrong_shape_is_an_error() {
    let dir = copy_model("tiny-qwen2");
    edit_config(dir.path(), |c| {
        c.insert("intermediate_size".into(), 96.into());
    });
    assert_mentions(
        &import_err(dir.path()),
        &["model.safetensors", "model.layers.0.mlp.gate_proj.weight", "[128, 64]", "[96, 64]"],
    );
}

#[test]
fn unsupported_dtype_is_an_error() {
    // Retype one F32 tensor as I32 in the header: same size, so the file stays well formed.
    let dir = copy_model("tiny-gpt2");
    let path = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let key = br#""transformer.wpe.weight":{"dtype":"F32""#;
    let at = bytes.windows(key.len()).position(|w| w == key).expect("the header lists wpe as F32");
    bytes[at + key.len() - 4] = b'I';
    std::fs::write(&path, bytes).unwrap();
    assert_mentions(&import_err(dir.path()), &["model.safetensors", "transformer.wpe.weight", "I32", "F16"]);
}

#[test]
fn truncated_safetensors_is_an_error_naming_the_file() {
    let dir = copy_model("tiny-qwen2");
    let path = dir.path().join("model.safetensors");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 100).unwrap();
    assert_mentions(&import_err(dir.path()), &["model.safetensors", "truncated or corrupt"]);

    // A file cut inside its header.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(20).unwrap();
    assert_mentions(&import_err(dir.path()), &["model.safetensors", "truncated or corrupt"]);
}

#[test]
fn unsupported_rope_type_is_an_error() {
    let dir = copy_model("tiny-llama");
    edit_config(dir.path(), |c| {
        c.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_theta": 10000.0, "rope_type": "yarn", "factor": 4.0}),
        );
    });
    assert_mentions(&import_err(dir.path()), &["config.json", "rope_parameters.rope_type", "yarn", "llama3"]);
}

/// The interpreter's decoding path (KV cache states, `past`) against transformers' full forward over the greedy
/// continuation: the oracle for the runtimes' decoding.
#[test]
fn interpreter_decodes_with_the_kv_cache_like_transformers() {
    for name in ["tiny-gpt2", "tiny-llama", "tiny-qwen2", "tiny-llama3-rope", "tiny-gemma3", "tiny-gemma3-multimodal", "tiny-phi3", "tiny-mistral"] {
        let graph = import(&root().join("models").join(name), &ImportOptions::default()).unwrap();
        let worst = tfc_fixtures::interpreter_decoding_error(&graph, name);
        println!("{name}: worst relative L2 over the decoding steps {worst:.2e}");
    }
}

#[test]
fn chat_template_and_special_tokens_come_from_tokenizer_config() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(root().join("models/tiny-qwen2")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, model.join(path.file_name().unwrap())).unwrap();
    }
    let template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}";
    let config = serde_json::json!({
        "chat_template": [{"name": "tool_use", "template": "no"}, {"name": "default", "template": template}],
        "bos_token": {"content": "<s>", "lstrip": false},
        "eos_token": "</s>",
    });
    std::fs::write(model.join("tokenizer_config.json"), config.to_string()).unwrap();
    let graph = import(&model, &ImportOptions::default()).unwrap();
    assert_eq!(graph.metadata["chat_template"], template);
    assert_eq!(graph.metadata["bos_token"], "<s>");
    assert_eq!(graph.metadata["eos_token"], "</s>");
}

#[test]
fn decoder_context_is_capped_so_each_kv_cache_fits_the_binding_limit() {
    // tiny-llama: 2 key/value heads of 16 features, so 128 bytes of key cache per token and layer.
    let model = root().join("models/tiny-llama");
    let opts = ImportOptions { max_binding_size: 8192, ..Default::default() };
    let graph = import(&model, &opts).unwrap();
    assert_eq!(graph.metadata["context_length"], "64");
    assert!(graph.notes.iter().any(|n| n.contains("context capped at 64 tokens")), "{:?}", graph.notes);
    let err = import(&model, &ImportOptions { max_sequence: Some(128), ..opts }).unwrap_err().to_string();
    assert!(err.contains("ask for at most 64 tokens"), "{err}");
}
