use crate::{Result, RuntimeError};
use serde::Serialize;
use tfc_ir::manifest::Manifest;

/// One turn of a conversation.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message { role: role.to_string(), content: content.to_string() }
    }
}

/// A model's chat template (Jinja, as in tokenizer_config.json or a GGUF's `tokenizer.chat_template`), rendered the
/// way transformers renders it: blocks trimmed, Python string methods available, `raise_exception` an error.
pub struct ChatTemplate {
    template: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(template: &str, bos_token: &str, eos_token: &str) -> ChatTemplate {
        ChatTemplate { template: template.to_string(), bos_token: bos_token.to_string(), eos_token: eos_token.to_string() }
    }

    /// The template a bundle carries (`model.chat_template`, with `model.bos_token` and `model.eos_token`).
    pub fn from_manifest(manifest: &Manifest) -> Option<ChatTemplate> {
        let get = |key: &str| manifest.model.get(key).map(String::as_str).unwrap_or("");
        manifest.model.get("chat_template").map(|t| ChatTemplate::new(t, get("bos_token"), get("eos_token")))
    }

    /// The prompt text for `messages`, ending with the cue for the assistant's turn when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.expect("the default delimiters are valid"));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
        });
        let context = minijinja::context! {
            messages => minijinja::value::Serde(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        env.render_str(&self.template, context).map_err(|e| RuntimeError::Input(format!("the chat template failed: {e:#}")))
    }
}
