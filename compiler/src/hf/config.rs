//! Typed access to `config.json`, with errors that name the file and the key.

use super::ImportError;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// `config.json`, or one object nested in it (`rope_parameters`); `scope` is the key path of that object.
pub(crate) struct Config {
    file: PathBuf,
    scope: String,
    json: Map<String, Value>,
}

impl Config {
    pub fn load(file: &Path) -> Result<Config, ImportError> {
        let text = std::fs::read_to_string(file).map_err(|source| ImportError::Io {
            path: file.to_path_buf(),
            source,
            hint: "point tfc at a Hugging Face model folder (config.json plus model.safetensors)",
        })?;
        let config_error = |message: String| ImportError::Config { file: file.to_path_buf(), message };
        match serde_json::from_str(&text) {
            Ok(Value::Object(json)) => Ok(Config { file: file.to_path_buf(), scope: String::new(), json }),
            Ok(_) => Err(config_error("is not a JSON object; restore the model's original config.json".into())),
            Err(e) => Err(config_error(format!("is not valid JSON ({e}); restore the model's original config.json"))),
        }
    }

    /// A configuration made by an importer of another format; errors name `file`.
    pub fn from_json(file: &Path, json: Map<String, Value>) -> Config {
        Config { file: file.to_path_buf(), scope: String::new(), json }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// An error about `key`; `message` continues the sentence "config key `key` …".
    pub fn error(&self, key: &str, message: impl std::fmt::Display) -> ImportError {
        ImportError::Config { file: self.file.clone(), message: format!("config key `{}{key}` {message}", self.scope) }
    }

    /// Whether `key` is present, even as `null`.
    pub fn has(&self, key: &str) -> bool {
        self.json.contains_key(key)
    }

    /// The value of `key`; a JSON `null` counts as absent (transformers writes unset options as null).
    fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    fn typed<T>(&self, key: &str, what: &str, read: impl Fn(&Value) -> Option<T>) -> Result<Option<T>, ImportError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => read(v).map(Some).ok_or_else(|| self.error(key, format!("must be {what}, is {v}"))),
        }
    }

    pub fn model_type(&self) -> Result<String, ImportError> {
        self.typed("model_type", "a string", |v| v.as_str().map(str::to_string))?
            .ok_or_else(|| self.error("model_type", "is missing; this does not look like a transformers config.json"))
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, ImportError> {
        self.typed(key, "a non-negative integer", Value::as_u64)
    }

    /// A required positive integer.
    pub fn u64(&self, key: &str) -> Result<u64, ImportError> {
        match self.opt_u64(key)? {
            None => Err(self.error(key, "is missing; it is required for this model type, add it to config.json")),
            Some(0) => Err(self.error(key, "is 0; it must be positive")),
            Some(v) => Ok(v),
        }
    }

    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, ImportError> {
        Ok(self.opt_u64(key)?.unwrap_or(default))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, ImportError> {
        self.typed(key, "a number", Value::as_f64)
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, ImportError> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    /// A required number.
    pub fn f64(&self, key: &str) -> Result<f64, ImportError> {
        self.opt_f64(key)?.ok_or_else(|| self.error(key, "is missing; it is required here, add it to config.json"))
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ImportError> {
        Ok(self.typed(key, "true or false", Value::as_bool)?.unwrap_or(default))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<String>, ImportError> {
        self.typed(key, "a string", |v| v.as_str().map(str::to_string))
    }

    pub fn str_or(&self, key: &str, default: &str) -> Result<String, ImportError> {
        Ok(self.opt_str(key)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn opt_str_list(&self, key: &str) -> Result<Option<Vec<String>>, ImportError> {
        self.typed(key, "a list of strings", |v| v.as_array()?.iter().map(|s| s.as_str().map(str::to_string)).collect())
    }

    /// One integer or a list of them (as transformers writes `eos_token_id`).
    pub fn opt_u64_list(&self, key: &str) -> Result<Option<Vec<u64>>, ImportError> {
        self.typed(key, "an integer or a list of integers", |v| match v {
            Value::Array(items) => items.iter().map(Value::as_u64).collect(),
            other => other.as_u64().map(|t| vec![t]),
        })
    }

    /// tokenizer_config.json's `chat_template`: a string, or a list of `{name, template}` of which `default` is taken.
    pub fn chat_template(&self) -> Result<Option<String>, ImportError> {
        self.typed("chat_template", "a string or a list of {name, template}", |v| match v {
            Value::String(t) => Some(t.clone()),
            Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str().map(str::to_string)),
            _ => None,
        })
    }

    /// A special token of tokenizer_config.json: a string, or an object with its `content`.
    pub fn special_token(&self, key: &str) -> Result<Option<String>, ImportError> {
        self.typed(key, "a string or an object with `content`", |v| match v {
            Value::String(t) => Some(t.clone()),
            other => other["content"].as_str().map(str::to_string),
        })
    }

    /// The object under `key`, if present.
    pub fn object(&self, key: &str) -> Result<Option<Config>, ImportError> {
        let json = self.typed(key, "an object", |v| v.as_object().cloned())?;
        Ok(json.map(|json| Config { file: self.file.clone(), scope: format!("{}{key}.", self.scope), json }))
    }
}
