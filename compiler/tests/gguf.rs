//! The GGUF reader on hostile input, the block decoders and the quantizer against the `gguf` package and llama.cpp,
//! and the tokenizer conversion against llama.cpp's tokenizer (references made by
//! fixtures/scripts/make_gguf_references.py).

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::path::Path;
use tfc_compiler::gguf::GgufFile;
use tfc_ir::{DType, Weight, WeightData};

fn reference(name: &str) -> Json {
    let path = tfc_fixtures::root().join("reference/gguf").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn sha256_f32(values: &[f32]) -> String {
    Sha256::digest(bytemuck::cast_slice::<f32, u8>(values)).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The file a decode.json / quantize.json entry names.
fn fixture_file(name: &str) -> std::path::PathBuf {
    if name.starts_with("SmolLM2") { tfc_fixtures::smollm2_gguf() } else { tfc_fixtures::gguf_model(name) }
}

/// A tensor of a GGUF file as a weight.
fn gguf_weight(gguf: &GgufFile, name: &str) -> Weight {
    let t = gguf.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
    Weight {
        name: name.into(),
        dtype: t.dtype,
        shape: t.shape(),
        data: WeightData::Mapped { file: gguf.map.clone(), offset: t.offset, len: t.len },
    }
}

#[test]
fn every_block_format_decodes_to_the_gguf_packages_values_bit_for_bit() {
    let mut formats = std::collections::BTreeSet::new();
    for (file, tensors) in reference("decode.json").as_object().unwrap() {
        let gguf = GgufFile::open(&fixture_file(file)).unwrap();
        for (name, want) in tensors.as_object().unwrap() {
            let w = gguf_weight(&gguf, name);
            assert_eq!(w.dtype.name(), want["dtype"].as_str().unwrap(), "{file}: {name}");
            assert_eq!(sha256_f32(&w.to_f32()), want["sha256"].as_str().unwrap(), "{file}: {name} ({})", w.dtype);
            formats.insert(w.dtype);
        }
    }
    assert_eq!(formats.len(), 10, "formats covered: {formats:?}");
}

/// The real weight matrix a quantize.json entry names (`minilm:<tensor>` or `smollm2:<tensor>`, decoded).
fn source_values(source: &str) -> Vec<f32> {
    let (model, tensor) = source.split_once(':').unwrap();
    match model {
        "minilm" => {
            let bytes = std::fs::read(tfc_fixtures::minilm().join("model.safetensors")).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            st.tensor(tensor).unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        }
        "smollm2" => gguf_weight(&GgufFile::open(&tfc_fixtures::smollm2_gguf()).unwrap(), tensor).to_f32(),
        other => panic!("unknown source {other}"),
    }
}

#[test]
fn quantizer_matches_gguf_bytes_and_llama_cpp_error() {
    for (source, want) in reference("quantize.json").as_object().unwrap() {
        let values = source_values(source);
        assert_eq!(sha256_f32(&values), want["source_sha256"].as_str().unwrap(), "{source}: not the reference's input");
        let row = want["shape"][1].as_u64().unwrap() as usize;
        let quantize = |dtype: DType| {
            let mut bytes = Vec::new();
            for r in values.chunks(row) {
                tfc_ir::quant::quantize_row(dtype, r, &mut bytes);
            }
            bytes
        };
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0] {
            assert_eq!(sha256(&quantize(dtype)), want[dtype.name()].as_str().unwrap(), "{source}: {dtype} bytes differ from gguf.quants.quantize");
        }
        for dtype in [DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K] {
            let mut decoded = Vec::new();
            tfc_ir::quant::BlockFormat::of(dtype).unwrap().decode(&quantize(dtype), &mut decoded);
            let rms = (values.iter().zip(&decoded).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
            let llama = want[format!("{}_llama_cpp_rms", dtype.name())].as_f64().unwrap();
            println!("{source} {dtype}: RMS error {rms:.4e}, llama.cpp {llama:.4e} ({:.3}×)", rms / llama);
            assert!(rms <= 1.02 * llama, "{source} {dtype}: RMS error {rms:.4e} > 1.02 × llama.cpp's {llama:.4e}");
        }
    }
}

#[test]
fn smollm2_tokenizer_gives_llama_cpps_ids() {
    let gguf = GgufFile::open(&tfc_fixtures::smollm2_gguf()).unwrap();
    let json = tfc_compiler::gguf::tokenizer_json(&gguf).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
    for (text, ids) in reference("smollm2/tokens.json").as_object().unwrap() {
        let want: Vec<u32> = ids.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
        let got = tokenizer.encode(text.as_str(), false).unwrap();
        assert_eq!(got.get_ids(), want, "{text:?}");
    }
}

/// A tokenizer model tfc does not convert (here RWKV's), or a byte-level BPE splitting rule it does not, is refused
/// with its name (and for a rule, the ones tfc converts); the bundle then has none.
#[test]
fn unconverted_tokenizers_are_named() {
    for (model, pre, named) in [("rwkv", "default", &["`rwkv`"][..]), ("gpt2", "kimi-k2", &["`kimi-k2`", "llama-bpe"])] {
        let file = FileBuilder::header(0, 4)
            .kv("general.architecture", "llama")
            .kv("tokenizer.ggml.model", model)
            .kv("tokenizer.ggml.pre", pre)
            .strings("tokenizer.ggml.tokens", &["a".to_string(), "b".to_string()])
            .data(0);
        let dir = tempfile::tempdir().unwrap();
        let error = tfc_compiler::gguf::tokenizer_json(&file.open(dir.path()).unwrap()).unwrap_err();
        assert!(named.iter().all(|n| error.contains(n)), "{error}");
    }
}

/// MiniLM's WordPiece vocabulary spelled as llama.cpp's converter writes it into a BERT GGUF (a word's first piece
/// with `▁`, continuations without `##`): the converted tokenizer must give MiniLM's own ids.
#[test]
fn wordpiece_tokenizer_gives_the_reference_tokenizers_ids() {
    let mut reference = tokenizers::Tokenizer::from_file(tfc_fixtures::minilm().join("tokenizer.json")).unwrap();
    reference.with_padding(None);
    let mut vocab: Vec<(String, u32)> = reference.get_vocab(true).into_iter().collect();
    vocab.sort_by_key(|&(_, id)| id);
    let special = |t: &str| t.starts_with('[') && t.ends_with(']');
    let tokens: Vec<String> = vocab
        .iter()
        .map(|(t, _)| match t.strip_prefix("##") {
            _ if special(t) => t.clone(),
            Some(rest) => rest.to_string(),
            None => format!("\u{2581}{t}"),
        })
        .collect();
    let types: Vec<u32> = vocab.iter().map(|(t, _)| if special(t) { 3 } else { 1 }).collect();
    let id = |t: &str| vocab.iter().find(|(v, _)| v == t).unwrap().1;
    let file = FileBuilder::header(0, 7)
        .kv("general.architecture", "bert")
        .kv("tokenizer.ggml.model", "bert")
        .strings("tokenizer.ggml.tokens", &tokens)
        .u32s("tokenizer.ggml.token_type", &types)
        .kv_u32("tokenizer.ggml.unknown_token_id", id("[UNK]"))
        .kv_u32("tokenizer.ggml.cls_token_id", id("[CLS]"))
        .kv_u32("tokenizer.ggml.seperator_token_id", id("[SEP]"))
        .data(0);
    let dir = tempfile::tempdir().unwrap();
    let json = tfc_compiler::gguf::tokenizer_json(&file.open(dir.path()).unwrap()).unwrap();
    let converted = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
    let sentences: Vec<String> = serde_json::from_str(&std::fs::read_to_string(tfc_fixtures::root().join("reference/minilm/sentences.json")).unwrap()).unwrap();
    for text in sentences {
        let want = reference.encode(text.as_str(), true).unwrap();
        assert_eq!(converted.encode(text.as_str(), true).unwrap().get_ids(), want.get_ids(), "{text:?}");
    }
}

/// A small valid GGUF file, built field by field so tests can make it lie.
struct FileBuilder {
    bytes: Vec<u8>,
}

impl FileBuilder {
    fn header(tensors: u64, kvs: u64) -> FileBuilder {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(tensors.to_le_bytes());
        bytes.extend(kvs.to_le_bytes());
        FileBuilder { bytes }
    }

    fn string(mut self, s: &str) -> Self {
        self.bytes.extend((s.len() as u64).to_le_bytes());
        self.bytes.extend(s.as_bytes());
        self
    }

    fn u32(mut self, v: u32) -> Self {
        self.bytes.extend(v.to_le_bytes());
        self
    }

    fn u64(mut self, v: u64) -> Self {
        self.bytes.extend(v.to_le_bytes());
        self
    }

    /// A string metadata pair.
    fn kv(self, key: &str, value: &str) -> Self {
        self.string(key).u32(8).string(value)
    }

    fn kv_u32(self, key: &str, value: u32) -> Self {
        self.string(key).u32(4).u32(value)
    }

    /// An array-of-strings metadata pair.
    fn strings(self, key: &str, values: &[String]) -> Self {
        values.iter().fold(self.string(key).u32(9).u32(8).u64(values.len() as u64), |b, v| b.string(v))
    }

    /// An array-of-u32 metadata pair.
    fn u32s(self, key: &str, values: &[u32]) -> Self {
        values.iter().fold(self.string(key).u32(9).u32(4).u64(values.len() as u64), |b, &v| b.u32(v))
    }

    /// A 2-D tensor info `[rows, 32]` of `ggml_type` at data offset `offset`.
    fn tensor(self, name: &str, rows: u64, ggml_type: u32, offset: u64) -> Self {
        self.string(name).u32(2).u64(32).u64(rows).u32(ggml_type).u64(offset)
    }

    /// Pads to the default alignment and appends `data` bytes.
    fn data(mut self, data: usize) -> Self {
        self.bytes.resize(self.bytes.len().next_multiple_of(32) + data, 0);
        self
    }

    fn open(self, dir: &Path) -> Result<GgufFile, String> {
        let path = dir.join("model.gguf");
        std::fs::write(&path, &self.bytes).unwrap();
        GgufFile::open(&path).map_err(|e| e.to_string())
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let valid = || FileBuilder::header(1, 1).kv("general.architecture", "llama").tensor("w", 2, 8, 0);
    // Two Q8_0 rows of 32: 2 blocks of 34 bytes.
    let ok = valid().data(68).open(dir.path()).unwrap();
    assert_eq!((ok.tensors[0].dtype, ok.tensors[0].shape()), (DType::Q8_0, vec![2, 32]));

    let cases: Vec<(&str, FileBuilder, &str)> = vec![
        ("data past the end", valid().data(67), "runs past the end of the file"),
        ("an unknown quant type", FileBuilder::header(1, 0).tensor("w", 2, 99, 0).data(68), "unknown ggml type 99"),
        ("an unsupported quant type", FileBuilder::header(1, 0).tensor("w", 2, 16, 0).data(68), "ggml type 16 (IQ2_XXS)"),
        ("a lying tensor count", FileBuilder::header(1 << 40, 1).kv("general.architecture", "llama").data(68), "the tensor count is 1099511627776"),
        ("one tensor too many", FileBuilder::header(2, 1).kv("general.architecture", "llama").tensor("w", 2, 8, 0), "the name of tensor 1"),
        ("a lying metadata count", FileBuilder::header(0, u64::MAX), "the metadata count"),
        ("a huge string length", FileBuilder::header(0, 1).u64(u64::MAX - 3).data(64), "the length of metadata key 0"),
        ("an unaligned offset", FileBuilder::header(1, 0).tensor("w", 2, 8, 4).data(100), "not a multiple of the alignment"),
        ("not GGUF", FileBuilder { bytes: b"GGML....".to_vec() }, "not a GGUF file"),
        ("version 1", FileBuilder { bytes: [b"GGUF".as_slice(), &1u32.to_le_bytes()].concat() }, "version 1 is not supported"),
    ];
    for (what, file, expected) in cases {
        let err = file.open(dir.path()).err().unwrap_or_else(|| panic!("{what}: accepted"));
        println!("{what}: {err}");
        assert!(err.contains("model.gguf") && err.contains(expected), "{what}: {err}");
    }
}

#[test]
fn an_unsupported_architecture_is_an_error_listing_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = FileBuilder::header(0, 1).kv("general.architecture", "mamba").data(0);
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, &file.bytes).unwrap();
    let err = tfc_compiler::load_graph(&path, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("architecture `mamba` is not supported") && err.contains("llama, qwen2"), "{err}");
}

/// tiny-gemma3 and tiny-gpt2 converted by llama.cpp's convert_hf_to_gguf.py (Gemma's norms stored as 1 + w, no
/// query_pre_attn_scalar, llama.cpp's fixed local/global pattern; GPT-2's Conv1D matrices transposed), imported and
/// run by the interpreter, against transformers on the HF models: the prompt's logits and every decoding step.
#[test]
fn ggufs_from_llama_cpps_converter_match_transformers() {
    for (name, architecture) in [("tiny-gemma3", "gemma3"), ("tiny-gpt2", "gpt2")] {
        let file = tfc_fixtures::gguf_model(&format!("{name}-f32.gguf"));
        let graph = tfc_compiler::load_graph(&file, &Default::default()).unwrap();
        assert_eq!(graph.metadata["architecture"], architecture);
        let r = tfc_fixtures::reference(name);
        let inputs = [("input_ids".to_string(), r["input_ids"].clone())].into();
        let outputs = tfc_ir::interp::run(&graph, &inputs).unwrap();
        let logits = &outputs.iter().find(|(n, _)| n == "logits").unwrap().1;
        let error = tfc_ir::relative_l2(&logits.to_f32(), &r["logits"].to_f32());
        let worst = tfc_fixtures::interpreter_decoding_error(&graph, name);
        println!("{name} GGUF: relative L2 {error:.2e} on the prompt, at worst {worst:.2e} while decoding");
        assert!(error <= 1e-4, "{name}: relative L2 {error:.3e} > 1e-4");
    }
}
