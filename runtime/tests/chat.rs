//! Chat templates rendered as transformers renders them (references made with jinja2 by
//! fixtures/scripts/make_chat_reference.py).

use tfc_runtime::{ChatTemplate, Message};

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
