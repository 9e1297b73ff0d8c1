//! Chat templates: rendering them as transformers does, and reducing one to a fixed [`ChatFormat`] that a runtime
//! without a Jinja engine (tfc.js) can apply.

use crate::manifest::{ChatFormat, Manifest, Turn};
use serde::Serialize;

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

#[derive(Debug, thiserror::Error)]
#[error("the chat template failed: {0:#}")]
pub struct ChatError(#[from] minijinja::Error);

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

    /// The template of a model's metadata (`chat_template`, with `bos_token` and `eos_token`), as the importers
    /// record it and a bundle's `model` carries it.
    pub fn from_metadata(model: &std::collections::BTreeMap<String, String>) -> Option<ChatTemplate> {
        let get = |key: &str| model.get(key).map(String::as_str).unwrap_or("");
        model.get("chat_template").map(|t| ChatTemplate::new(t, get("bos_token"), get("eos_token")))
    }

    /// The template a bundle carries.
    pub fn from_manifest(manifest: &Manifest) -> Option<ChatTemplate> {
        ChatTemplate::from_metadata(&manifest.model)
    }

    /// The prompt text for `messages`, ending with the cue for the assistant's turn when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatError> {
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.expect("the default delimiters are valid"));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
        });
        let context = minijinja::context! {
            messages => minijinja::value::Serde(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        Ok(env.render_str(&self.template, context)?)
    }

    /// The fixed texts around each message that this template renders, found by rendering conversations whose
    /// contents are marker strings and checked on other conversations; an error saying why if the template's output
    /// depends on more than the role of each message (its position, content, or other variables).
    pub fn format(&self) -> Result<ChatFormat, String> {
        let conversation = |roles: &[&str], pad: &str| -> Vec<Message> {
            roles.iter().enumerate().map(|(i, role)| Message::new(role, &format!("{pad}tfc-chat-content-{i}{pad}"))).collect()
        };
        // The texts between the contents of `roles`' messages: one more than there are messages.
        let pieces = |roles: &[&str], add_generation_prompt: bool| -> Result<Vec<String>, String> {
            let messages = conversation(roles, "");
            let mut text = self.render(&messages, add_generation_prompt).map_err(|e| e.to_string())?;
            let mut pieces = Vec::new();
            for m in &messages {
                let (before, after) = match text.split_once(&m.content) {
                    Some((before, after)) if !after.contains(&m.content) => (before.to_string(), after.to_string()),
                    _ => return Err(format!("it does not render a {} message's content once, as given", m.role)),
                };
                pieces.push(before);
                text = after;
            }
            pieces.push(text);
            Ok(pieces)
        };
        // Templates may trim each message's content (Llama 3's does): seen on a padded one.
        let padded = conversation(&["user"], " \n");
        let trim_content = !self.render(&padded, false).map_err(|e| e.to_string())?.contains(&padded[0].content);
        let differ = || "the text between messages depends on more than their roles".to_string();
        let full = pieces(&["system", "user", "assistant", "user", "assistant"], false)?;
        let user_only = pieces(&["user"], false)?;
        let prompted = pieces(&["user"], true)?;
        let assistant_end = full[5].clone();
        let user_start = full[3].strip_prefix(&assistant_end).ok_or_else(differ)?.to_string();
        let user_end = user_only[1].clone();
        let format = ChatFormat {
            system_start: full[0].clone(),
            system_end: full[1].strip_suffix(&user_start).ok_or_else(differ)?.to_string(),
            default_start: user_only[0].strip_suffix(&user_start).ok_or_else(differ)?.to_string(),
            assistant: Turn { start: full[2].strip_prefix(&user_end).ok_or_else(differ)?.to_string(), end: assistant_end },
            user: Turn { start: user_start, end: user_end },
            trim_content,
            generation_prompt: prompted[1].strip_prefix(&user_only[1]).ok_or_else(differ)?.to_string(),
        };
        let checks: [(&[&str], bool); 5] = [
            (&["system", "user"], true),
            (&["user"], true),
            (&["user", "assistant", "user"], true),
            (&["system", "user", "assistant", "user", "assistant"], false),
            (&["user", "assistant"], false),
        ];
        for (roles, add_generation_prompt) in checks {
            let messages = conversation(roles, " \n");
            let rendered = self.render(&messages, add_generation_prompt).map_err(|e| e.to_string())?;
            if format.prompt(&messages, add_generation_prompt) != Some(rendered) {
                return Err(format!("a {} conversation renders differently from the texts around each message", roles.join("/")));
            }
        }
        Ok(format)
    }
}

impl ChatFormat {
    /// The prompt text for `messages` (system only first, then user and assistant); `None` for other roles.
    pub fn prompt(&self, messages: &[Message], add_generation_prompt: bool) -> Option<String> {
        let content = |m: &Message| if self.trim_content { m.content.trim().to_string() } else { m.content.clone() };
        let (mut text, rest) = match messages.split_first() {
            Some((first, rest)) if first.role == "system" => (format!("{}{}{}", self.system_start, content(first), self.system_end), rest),
            _ => (self.default_start.clone(), messages),
        };
        for m in rest {
            let turn = match m.role.as_str() {
                "user" => &self.user,
                "assistant" => &self.assistant,
                _ => return None,
            };
            text += &format!("{}{}{}", turn.start, content(m), turn.end);
        }
        if add_generation_prompt {
            text += &self.generation_prompt;
        }
        Some(text)
    }
}
