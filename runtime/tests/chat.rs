//! Chat templates rendered as transformers renders them (references made with jinja2 by
//! fixtures/scripts/make_chat_reference.py), and reduced to the fixed chat formats bundles carry for tfc.js.

use tfc_compiler::{CompileOptions, Quiet, compile};
use tfc_runtime::{Bundle, ChatTemplate, Message};

fn messages(turns: &[(&str, &str)]) -> Vec<Message> {
    turns.iter().map(|(role, content)| Message::new(role, content)).collect()
}

/// Conversations a chat format must render exactly as the template does.
const CONVERSATIONS: [&[(&str, &str)]; 5] = [
    &[("system", "Be brief."), ("user", "Hi")],
    &[("user", "  Café, 日本語 🎉\n")],
    &[("user", "Hi"), ("assistant", "Hello!"), ("user", "Why is the sky blue?")],
    &[("system", "S"), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")],
    &[("user", "{{ not jinja }}"), ("assistant", "")],
];

/// ChatML as SmolLM2 has it, a Llama-3-like template with a BOS, and one that merges the system message into the
/// first user turn (as Gemma's does), which no fixed texts around each message can express.
const LLAMA3_LIKE: &str = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n\
    {{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
const GEMMA_LIKE: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}\
    {% set rest = messages[1:] %}{% else %}{% set first = '' %}{% set rest = messages %}{% endif %}{% for m in rest %}\
    <start_of_turn>{{ m['role'] }}\n{% if loop.first %}{{ first }}{% endif %}{{ m['content'] }}<end_of_turn>\n{% endfor %}\
    {% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

#[test]
fn chat_formats_render_conversations_as_their_templates_do() {
    let smollm2 = std::fs::read_to_string(tfc_fixtures::root().join("chat/smollm2.jinja")).unwrap();
    for (name, text) in [("smollm2", smollm2.as_str()), ("llama3-like", LLAMA3_LIKE)] {
        let template = ChatTemplate::new(text, "<s>", "</s>");
        let format = template.format().unwrap_or_else(|why| panic!("{name}: {why}"));
        for conversation in CONVERSATIONS {
            for add_generation_prompt in [true, false] {
                let m = messages(conversation);
                let want = template.render(&m, add_generation_prompt).unwrap();
                assert_eq!(format.prompt(&m, add_generation_prompt).unwrap(), want, "{name}: {conversation:?}");
            }
        }
    }
    // Against jinja2's renderings too.
    let dir = tfc_fixtures::root().join("chat");
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let format = ChatTemplate::new(&smollm2, "", "").format().unwrap();
    for case in expected["cases"].as_array().unwrap().iter().filter(|c| c["template"] == "smollm2") {
        let m: Vec<Message> =
            case["messages"].as_array().unwrap().iter().map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
        assert_eq!(format.prompt(&m, true).unwrap(), case["text"].as_str().unwrap());
    }
}

#[test]
fn templates_with_position_dependent_text_have_no_chat_format() {
    let features = std::fs::read_to_string(tfc_fixtures::root().join("chat/features.jinja")).unwrap();
    for (template, why) in [(features.as_str(), "does not render a system message's content once"), (GEMMA_LIKE, "depends on more than their roles")] {
        let error = ChatTemplate::new(template, "<s>", "</s>").format().unwrap_err();
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn bundles_carry_the_chat_format_or_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(tfc_fixtures::root().join("models/tiny-qwen2")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, model.join(path.file_name().unwrap())).unwrap();
    }
    for (template, decomposes) in [(LLAMA3_LIKE, true), (GEMMA_LIKE, false)] {
        let config = serde_json::json!({"chat_template": template, "bos_token": "<s>", "eos_token": "</s>"});
        std::fs::write(model.join("tokenizer_config.json"), config.to_string()).unwrap();
        let out = dir.path().join("bundle");
        let report = compile(&model, &out, &CompileOptions::default(), &mut Quiet).unwrap();
        let bundle = Bundle::open(&out).unwrap();
        let note = report.notes.iter().find(|n| n.contains("no chat format"));
        if decomposes {
            let m = messages(CONVERSATIONS[2]);
            let want = ChatTemplate::from_manifest(&bundle.manifest).unwrap().render(&m, true).unwrap();
            assert_eq!(bundle.manifest.chat.as_ref().unwrap().prompt(&m, true).unwrap(), want);
            assert!(note.is_none(), "{note:?}");
        } else {
            assert!(bundle.manifest.chat.is_none());
            let why = &bundle.manifest.model["chat_format_unavailable"];
            assert!(note.unwrap().contains(why.as_str()), "{note:?}");
        }
    }
}

#[test]
fn chat_templates_render_like_transformers() {
    let dir = tfc_fixtures::root().join("chat");
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let (bos, eos) = (expected["bos_token"].as_str().unwrap(), expected["eos_token"].as_str().unwrap());
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let template = ChatTemplate::new(&std::fs::read_to_string(dir.join(format!("{name}.jinja"))).unwrap(), bos, eos);
        let messages: Vec<Message> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        assert_eq!(template.render(&messages, true).unwrap(), case["text"].as_str().unwrap(), "template {name}");
    }
}

#[test]
fn a_template_that_raises_is_an_error_with_its_message() {
    let template = std::fs::read_to_string(tfc_fixtures::root().join("chat/features.jinja")).unwrap();
    let error = ChatTemplate::new(&template, "<s>", "</s>").render(&[Message::new("tool", "x")], true).unwrap_err();
    assert!(error.to_string().contains("unknown role tool"), "{error}");
}
