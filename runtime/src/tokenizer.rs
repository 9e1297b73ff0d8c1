use crate::{Bundle, Result, RuntimeError};

/// The bundle's tokenizer (HF tokenizer.json).
pub struct Tokenizer(tokenizers::Tokenizer);

impl Tokenizer {
    pub fn from_bundle(bundle: &Bundle) -> Result<Tokenizer> {
        let file = bundle.manifest.tokenizer.as_ref().ok_or_else(|| {
            RuntimeError::Input("this bundle has no tokenizer (the model folder had no tokenizer.json); pass token ids with --tokens".into())
        })?;
        Tokenizer::from_file(&bundle.dir.join(file))
    }

    /// A tokenizer.json file.
    pub fn from_file(path: &std::path::Path) -> Result<Tokenizer> {
        let json = std::fs::read(path)
            .map_err(|e| RuntimeError::Bundle { path: path.display().to_string(), message: format!("cannot read tokenizer: {e}") })?;
        Tokenizer::from_json(&json, &path.display().to_string())
    }

    /// The text of a tokenizer.json; `source` names it in errors.
    pub fn from_json(json: &[u8], source: &str) -> Result<Tokenizer> {
        let path = || source.to_string();
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| RuntimeError::Bundle { path: path(), message: format!("cannot load tokenizer: {e}") })?;
        // Encode like transformers' tokenizer call: no padding to a fixed length, no silent truncation (a text too
        // long for the bundle is refused by the runtime with the limit named).
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| RuntimeError::Bundle { path: path(), message: format!("cannot configure tokenizer: {e}") })?;
        Ok(Tokenizer(tokenizer))
    }

    /// Token ids of `text`, with the model's special tokens (e.g. [CLS] … [SEP]) when `special` is set; a rendered
    /// chat template brings its own, so it is encoded without.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        self.0
            .encode(text, special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| RuntimeError::Input(format!("cannot tokenize the text: {e}")))
    }
}

impl Tokenizer {
    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.0.decode(ids, true).map_err(|e| RuntimeError::Input(format!("cannot decode tokens: {e}")))
    }
}

/// Turns generated tokens into text as they come, holding back a piece that ends inside a UTF-8 character (or a
/// byte-level token sequence that is not yet a whole character), so no replacement character is ever printed.
pub struct TextStream<'t> {
    tokenizer: &'t Tokenizer,
    ids: Vec<u32>,
    printed: usize,
}

impl<'t> TextStream<'t> {
    pub fn new(tokenizer: &'t Tokenizer) -> TextStream<'t> {
        TextStream { tokenizer, ids: Vec::new(), printed: 0 }
    }

    /// The new text that `id` completes (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{fffd}') || text.len() < self.printed || !text.is_char_boundary(self.printed) {
            return Ok(String::new());
        }
        let piece = text[self.printed..].to_string();
        self.printed = text.len();
        Ok(piece)
    }
}
