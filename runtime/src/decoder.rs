use crate::{Result, RuntimeError, Session};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use tfc_ir::interp::SampleSettings;
use tfc_ir::{Env, Tensor};

/// How the next token is chosen; the default picks the most likely one (greedy).
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    pub settings: SampleSettings,
    /// How many of the latest tokens the repeat penalty looks at (at most the bundle's `penalized` list).
    pub repeat_last_n: usize,
    /// Seeds the random numbers (ChaCha8): the same seed, prompt and settings give the same tokens.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Sampling {
        let settings = SampleSettings { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0 };
        Sampling { settings, repeat_last_n: 64, seed: 0 }
    }
}

/// Text generation on a decoder bundle: the KV cache lives on the GPU in the session's state buffers; each step
/// feeds new tokens after the `past` cached ones and reads back only what it asks for (the next token's id, 4 bytes).
pub struct Decoder {
    session: Session,
    /// Tokens in the cache.
    past: u64,
    /// Rows of the cache.
    context: u64,
    /// The most tokens one run takes (the bundle's `sequence` maximum); longer prompts go in chunks.
    chunk: u64,
    sampling: Sampling,
    rng: ChaCha8Rng,
    /// Every token fed since the last reset (the repeat penalty's window is its tail).
    history: Vec<u32>,
    /// The bundle's room for penalized tokens.
    penalized: usize,
}

/// What one step produced.
pub struct Step {
    /// The most likely next token.
    pub next_token: u32,
    /// The logits after the last fed token, when asked for.
    pub logits: Option<Vec<f32>>,
}

impl Decoder {
    pub fn new(session: Session) -> Result<Decoder> {
        let m = session.manifest();
        let has = |name: &str| m.outputs.iter().any(|o| o.name == name);
        let context = m.model.get("context_length").and_then(|c| c.parse().ok());
        let (Some(context), true, true) = (context, has("next_token"), has("last_logits")) else {
            return Err(RuntimeError::Input(
                "this bundle is not a decoder with a KV cache (recompile a decoder model with this tfc)".into(),
            ));
        };
        let chunk = m.symbols.iter().find(|s| s.name == "sequence").map_or(1, |s| s.max);
        let penalized = m.inputs.iter().find(|i| i.name == "penalized").and_then(|i| i.shape[0].eval(&Env::new()).ok());
        let (true, Some(penalized)) = (m.inputs.iter().any(|i| i.name == "sampling"), penalized) else {
            return Err(RuntimeError::Input("this decoder bundle has no sampling inputs; recompile it with this tfc".into()));
        };
        let sampling = Sampling::default();
        let rng = ChaCha8Rng::seed_from_u64(sampling.seed);
        Ok(Decoder { session, past: 0, context, chunk, sampling, rng, history: Vec::new(), penalized: penalized as usize })
    }

    /// Chooses how later tokens are picked, and restarts the random numbers from `sampling.seed`.
    pub fn set_sampling(&mut self, sampling: Sampling) {
        self.rng = ChaCha8Rng::seed_from_u64(sampling.seed);
        self.sampling = Sampling { repeat_last_n: sampling.repeat_last_n.min(self.penalized), ..sampling };
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Tokens in the cache.
    pub fn past(&self) -> u64 {
        self.past
    }

    pub fn context_length(&self) -> u64 {
        self.context
    }

    /// Forgets every cached token.
    pub fn reset(&mut self) {
        self.session.reset_states();
        self.past = 0;
        self.history.clear();
    }

    /// Appends `tokens` (a prompt, or the last generated token) to the cache and returns the next token, drawn on
    /// the GPU as the sampling settings say, with the logits too if `logits` is set.
    pub fn feed(&mut self, tokens: &[u32], logits: bool) -> Result<Step> {
        if tokens.is_empty() {
            return Err(RuntimeError::Input("no tokens to feed".into()));
        }
        if self.past + tokens.len() as u64 > self.context {
            return Err(RuntimeError::Input(format!(
                "{} tokens after {} cached ones exceed the context length of {}; start a new conversation or compile with a longer --max-sequence",
                tokens.len(),
                self.past,
                self.context
            )));
        }
        let wanted: &[&str] = if logits { &["next_token", "last_logits"] } else { &["next_token"] };
        self.history.extend_from_slice(tokens);
        let mut recent: Vec<i32> = self.history.iter().rev().take(self.sampling.repeat_last_n).map(|&t| t as i32).collect();
        recent.sort_unstable();
        recent.dedup();
        recent.resize(self.penalized, i32::MAX);
        let uniform: f32 = self.rng.random();
        let mut outputs = Vec::new();
        for chunk in tokens.chunks(self.chunk as usize) {
            let ids = Tensor::i64(vec![1, chunk.len()], chunk.iter().map(|&t| t as i64).collect());
            let inputs = BTreeMap::from([
                ("input_ids".to_string(), ids),
                ("sampling".to_string(), Tensor::f32(vec![5], self.sampling.settings.to_vec())),
                ("uniform".to_string(), Tensor::f32(vec![1, 1], vec![uniform])),
                ("penalized".to_string(), Tensor::i32(vec![self.penalized], recent.clone())),
            ]);
            let symbols = Env::from([("past".to_string(), self.past)]);
            outputs = self.session.run_with(&inputs, &symbols, wanted)?;
            self.past += chunk.len() as u64;
        }
        let mut step = Step { next_token: 0, logits: None };
        for (name, t) in outputs {
            match name.as_str() {
                "next_token" => step.next_token = t.to_i64()[0] as u32,
                _ => step.logits = Some(t.to_f32()),
            }
        }
        Ok(step)
    }
}
