//! llama.cpp's tokenizer test vectors (`models/ggml-vocab-*.gguf` with `.inp`/`.out`, from llama.cpp's source in
//! the llama-cpp-python sdist; installed into fixtures/.cache/llama-vocab by fixtures/scripts/install_llama_vocab.sh):
//! each vocabulary-only GGUF file becomes the tokenizer.json a bundle would carry (the compiler's own conversion),
//! the native runtime's tokenizer encodes every test string as llama.cpp's test-tokenizer-0 does (no special tokens
//! added, none parsed from the text), and the ids must equal llama.cpp's; so must the ids of a few texts with the
//! special tokens added (the beginning and end of text the file asks for, or llama.cpp's defaults). (Tokenizer models tfc does not convert are
//! refused with the model named: compiler/tests/gguf.rs.)
//!
//! For the JS runtime's test (runtime/js/test/tokenizer.test.mjs), which checks the JS tokenizers on the same vectors
//! and against this one on the tokenizer corpus, the converted tokenizer.json files are left in
//! `<target>/tmp/llama-vocab`, with this tokenizer's ids and decodings of the corpus and decodings of the vectors.

use std::path::{Path, PathBuf};
use tfc_compiler::gguf::{GgufFile, tokenizer_json};
use tfc_runtime::Tokenizer;

/// llama.cpp's test vocabularies, all of which tfc converts; every one of their vectors must pass.
const VOCABULARIES: &[&str] = &[
    "aquila",
    "baichuan",
    "bert-bge",
    "command-r",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "gemma-4",
    "gpt-2",
    "gpt-neox",
    "llama-bpe",
    "llama-spm",
    "mpt",
    "nomic-bert-moe",
    "phi-3",
    "qwen2",
    "qwen35",
    "refact",
    "starcoder",
];

fn vocab_dir() -> PathBuf {
    let dir = tfc_fixtures::root().join(".cache/llama-vocab");
    assert!(
        dir.join("ggml-vocab-gpt-2.gguf.out").is_file(),
        "llama.cpp's tokenizer test vectors are missing from {}: run bash fixtures/scripts/install_llama_vocab.sh",
        dir.display()
    );
    dir
}

fn vocab_file(name: &str, ext: &str) -> PathBuf {
    vocab_dir().join(format!("ggml-vocab-{name}.gguf{ext}"))
}

/// The test strings and expected ids, read as test-tokenizer-0 reads them: inputs separated by a marker line,
/// one line of space-separated ids per input. llama.cpp's own, or for a vocabulary that has none, the same texts
/// with llama.cpp's ids from fixtures/reference/llama-vocab (made by fixtures/scripts/make_llama_vocab_references.py).
fn vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let file = |ext| match vocab_file(name, ext) {
        own if own.is_file() => own,
        _ => tfc_fixtures::root().join(format!("reference/llama-vocab/ggml-vocab-{name}.gguf{ext}")),
    };
    let read = |ext| std::fs::read_to_string(file(ext)).unwrap_or_else(|e| panic!("{name}{ext}: {e}"));
    let (inputs, outputs) = (read(".inp"), read(".out"));
    let inputs: Vec<&str> = inputs.split_terminator("\n__ggml_vocab_test__\n").collect();
    let outputs: Vec<&str> = outputs.lines().collect();
    assert_eq!(inputs.len(), outputs.len(), "{name}: {} inputs, {} outputs", inputs.len(), outputs.len());
    let ids = |line: &str| line.split_whitespace().map(|i| i.parse().unwrap()).collect();
    inputs.iter().zip(outputs).map(|(text, line)| (text.to_string(), ids(line))).collect()
}


/// Compares converted tokenizers with llama.cpp's ids: the vectors (no special tokens added) and, where given, texts
/// with special tokens added, collecting the differences. Leaves each tokenizer.json for the JS test with the
/// vectors and this tokenizer's ids and decodings of the corpus.
struct Check {
    corpus: Vec<String>,
    for_js: PathBuf,
    failures: Vec<String>,
}

impl Check {
    fn new() -> Check {
        let for_js = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("llama-vocab");
        let _ = std::fs::remove_dir_all(&for_js);
        std::fs::create_dir_all(&for_js).unwrap();
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("js/test/fixtures/corpus.json");
        let corpus = serde_json::from_str(&std::fs::read_to_string(corpus).unwrap()).unwrap();
        Check { corpus, for_js, failures: Vec::new() }
    }

    fn tokenizer(&mut self, name: &str, gguf: &GgufFile, cases: &[(String, Vec<u32>)], with_special: &[(String, Vec<u32>)]) {
        let json = tokenizer_json(gguf).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tokenizer = Tokenizer::from_json(json.as_bytes(), name).unwrap();
        let mut passed = 0;
        for (text, want) in cases {
            let got = tokenizer.encode(text, false).unwrap();
            if &got == want {
                passed += 1;
            } else {
                self.failures.push(format!("{name}: {text:?}\n    got      {got:?}\n    expected {want:?}"));
            }
        }
        println!("{name}: {passed}/{} vectors pass", cases.len());
        for (text, want) in with_special {
            let got = tokenizer.encode(text, true).unwrap();
            if &got != want {
                self.failures.push(format!("{name}, special tokens added: {text:?}\n    got      {got:?}\n    expected {want:?}"));
            }
        }
        let corpus_ids: Vec<Vec<u32>> = self.corpus.iter().map(|line| tokenizer.encode(line, true).unwrap()).collect();
        let decode = |ids: &Vec<u32>| tokenizer.decode(ids).unwrap();
        let expected = serde_json::json!({
            "vectors": cases,
            "vectors_decoded": cases.iter().map(|(_, ids)| decode(ids)).collect::<Vec<_>>(),
            "corpus_ids": corpus_ids,
            "corpus_decoded": corpus_ids.iter().map(decode).collect::<Vec<_>>(),
        });
        std::fs::write(self.for_js.join(format!("{name}.json")), json).unwrap();
        std::fs::write(self.for_js.join(format!("{name}.expected.json")), expected.to_string()).unwrap();
    }

    fn assert_none_failed(self) {
        assert!(self.failures.is_empty(), "{} vectors fail:\n{}", self.failures.len(), self.failures.join("\n"));
    }
}

fn reference_json(name: &str) -> serde_json::Value {
    let path = tfc_fixtures::root().join("reference/llama-vocab").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(value: &serde_json::Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

#[test]
fn converted_tokenizers_give_llama_cpps_ids_on_its_test_vectors() {
    let with_special = reference_json("with-special-tokens.json");
    let by_rule = reference_json("pre-tokenizers.json");
    let mut check = Check::new();
    for name in VOCABULARIES {
        let gguf = GgufFile::open(&vocab_file(name, "")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let special: Vec<(String, Vec<u32>)> = with_special[name].as_object().unwrap().iter().map(|(t, i)| (t.clone(), ids(i))).collect();
        check.tokenizer(name, &gguf, &vectors(name), &special);
    }
    // The byte-level BPE splitting rules no vocabulary of the set uses, on llama-bpe's vocabulary and merges.
    let texts: Vec<String> = vectors("llama-bpe").into_iter().map(|(text, _)| text).collect();
    let llama_bpe = std::fs::read(vocab_file("llama-bpe", "")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (rule, rule_ids) in by_rule.as_object().unwrap() {
        let file = dir.path().join(format!("{rule}.gguf"));
        std::fs::write(&file, with_pre(&llama_bpe, rule)).unwrap();
        let cases: Vec<(String, Vec<u32>)> = texts.iter().cloned().zip(rule_ids.as_array().unwrap().iter().map(ids)).collect();
        check.tokenizer(&format!("pre-{rule}"), &GgufFile::open(&file).unwrap(), &cases, &[]);
    }
    check.assert_none_failed();
}

/// A GGUF file's bytes with its `tokenizer.ggml.pre` string replaced (a vocabulary-only file has no tensor offsets
/// to move), as fixtures/scripts/make_llama_vocab_references.py made llama.cpp's references.
fn with_pre(gguf: &[u8], name: &str) -> Vec<u8> {
    let key = b"tokenizer.ggml.pre";
    let mut pattern = (key.len() as u64).to_le_bytes().to_vec();
    pattern.extend(key);
    let at = gguf.windows(pattern.len()).position(|w| w == pattern).expect("the file names a pre-tokenizer") + pattern.len();
    assert_eq!(gguf[at..at + 4], 8u32.to_le_bytes(), "a string value");
    let length = u64::from_le_bytes(gguf[at + 4..at + 12].try_into().unwrap()) as usize;
    [&gguf[..at + 4], &(name.len() as u64).to_le_bytes(), name.as_bytes(), &gguf[at + 12 + length..]].concat()
}

/// Every vocabulary in llama.cpp's set is claimed, so that a new one gets a decision.
#[test]
fn every_vocabulary_is_claimed() {
    let mut names: Vec<String> = std::fs::read_dir(vocab_dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("ggml-vocab-")?.strip_suffix(".gguf").map(String::from))
        .collect();
    names.sort();
    let unclaimed: Vec<&String> = names.iter().filter(|n| !VOCABULARIES.contains(&n.as_str())).collect();
    assert!(unclaimed.is_empty(), "vocabularies that this test does not claim: {unclaimed:?}");
}
