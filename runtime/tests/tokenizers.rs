//! The native runtime's tokenizers (the `tokenizers` crate behind `Tokenizer`) against the Python `tokenizers`
//! package on a 1,200-line corpus of many scripts, emoji and special tokens: the fixtures the JS runtime's
//! tokenizers are tested with (runtime/js/test/fixtures, made by make_tokenizer_fixtures.py there).

use std::io::Read;
use std::path::{Path, PathBuf};
use tfc_runtime::Tokenizer;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js/test/fixtures")
}

fn read_gz_json(path: &Path) -> serde_json::Value {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

#[test]
fn tokenizers_agree_with_the_python_package_on_the_corpus() {
    let corpus: Vec<String> = serde_json::from_str(&std::fs::read_to_string(fixtures().join("corpus.json")).unwrap()).unwrap();
    assert!(corpus.len() >= 1000);
    let mut cases: Vec<(String, PathBuf)> = ["gpt2", "llama3", "qwen2", "smollm2"]
        .iter()
        .map(|n| (format!("bpe-{n}"), fixtures().join(format!("bpe-{n}.json"))))
        .collect();
    cases.push(("minilm".into(), tfc_fixtures::minilm().join("tokenizer.json")));
    for (name, file) in cases {
        let tokenizer = Tokenizer::from_file(&file).unwrap();
        let expected = read_gz_json(&fixtures().join(format!("expected-{name}.json.gz")));
        for (line, want) in corpus.iter().zip(expected["ids"].as_array().unwrap()) {
            assert_eq!(tokenizer.encode(line, true).unwrap(), ids(want), "{name}: {line:?}");
        }
        for (got, want) in expected["random_ids"].as_array().unwrap().iter().zip(expected["random_decoded"].as_array().unwrap()) {
            assert_eq!(tokenizer.decode(&ids(got)).unwrap(), want.as_str().unwrap(), "{name}: decoding {got}");
        }
        println!("{name}: {} lines and {} random id sequences agree", corpus.len(), expected["random_ids"].as_array().unwrap().len());
    }
}
