//! Real SmolLM2-135M-Instruct (Q4_1 GGUF) generating on the native runtime, against llama.cpp's greedy
//! continuations (fixtures/reference/smollm2/greedy.json, made by make_smollm2_generation_reference.py).
//!
//! llama.cpp rounds activations to 8 bits inside its quantized dot products, tfc computes them exactly, so where
//! llama.cpp's two best logits are within `NEAR_TIE` the greedy choice may rightly differ; agreement is required on
//! the first 8 tokens or up to such a near-tie, whichever comes first.

use tfc_compiler::{CompileOptions, Quiet, compile};
use tfc_runtime::{Bundle, ChatTemplate, Decoder, Message, Session, Tokenizer};

const NEAR_TIE: f64 = 0.1;

#[test]
fn smollm2_greedy_generation_agrees_with_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2");
    let opts = CompileOptions { max_sequence: Some(256), ..Default::default() };
    compile(&tfc_fixtures::smollm2_gguf(), &out, &opts, &mut Quiet).unwrap();
    let bundle = Bundle::open(&out).unwrap();
    let tokenizer = Tokenizer::from_bundle(&bundle).unwrap();

    // The GGUF's chat template comes along, rendering as jinja2 does (fixtures/chat, from the same file).
    let chat: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tfc_fixtures::root().join("chat/expected.json")).unwrap()).unwrap();
    let first = &chat["cases"][0];
    assert_eq!(first["template"], "smollm2");
    let template = ChatTemplate::from_manifest(&bundle.manifest).expect("the bundle has the GGUF's chat template");
    let message = first["messages"][0]["content"].as_str().unwrap();
    assert_eq!(template.render(&[Message::new("user", message)], true).unwrap(), first["text"].as_str().unwrap());
    // and reduces to the chat format tfc.js applies, which renders every reference conversation as jinja2 does.
    let format = bundle.manifest.chat.as_ref().expect("the bundle has a chat format");
    for case in chat["cases"].as_array().unwrap().iter().filter(|c| c["template"] == "smollm2") {
        let messages: Vec<Message> =
            case["messages"].as_array().unwrap().iter().map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
        assert_eq!(format.prompt(&messages, true).unwrap(), case["text"].as_str().unwrap());
    }

    let mut decoder = Decoder::new(Session::new(&bundle).unwrap()).unwrap();
    let path = tfc_fixtures::root().join("reference/smollm2/greedy.json");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect() };
    for case in reference["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let prompt_ids = tokenizer.encode(prompt, true).unwrap();
        assert_eq!(prompt_ids, ids(&case["prompt_ids"]), "{prompt:?}: tokens differ from llama.cpp's");
        let want = ids(&case["generated_ids"]);
        decoder.reset();
        let mut next = decoder.feed(&prompt_ids, false).unwrap().next_token;
        let mut got = Vec::new();
        while got.len() < want.len() {
            got.push(next);
            next = decoder.feed(&[next], false).unwrap().next_token;
        }
        let agree = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        let margins: Vec<f64> = case["top2_margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let required = margins.iter().position(|&m| m < NEAR_TIE).map_or(8, |tie| tie.min(8));
        println!("{prompt:?}: {agree} of {} tokens as llama.cpp (required {required}): {:?}", want.len(), tokenizer.decode(&got).unwrap());
        assert!(agree >= required, "{prompt:?}: only the first {agree} tokens agree with llama.cpp ({got:?} vs {want:?})");
    }
}
