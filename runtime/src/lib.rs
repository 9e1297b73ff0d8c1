//! The native executor for tfc bundles: loads a bundle's manifest, shaders and weight chunks (verifying every
//! chunk's sha256), checks the adapter against the bundle's needs, and runs its dispatch schedule with wgpu.

mod bundle;
mod decoder;
mod gpu;
mod session;
mod tokenizer;

pub use bundle::Bundle;
pub use tfc_ir::chat::{ChatTemplate, Message};
pub use decoder::{Decoder, Sampling, Step};
pub use gpu::Gpu;
pub use session::{Profile, Session};
pub use tokenizer::{TextStream, Tokenizer};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Bundle { path: String, message: String },
    #[error("weight chunk {file} is corrupt (sha256 {actual}, the manifest says {expected}); recompile or re-download the bundle")]
    Integrity { file: String, expected: String, actual: String },
    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),
    #[error("this GPU cannot run the bundle: {0}")]
    Limits(String),
    #[error("{0}")]
    Input(String),
    #[error("GPU error: {0}")]
    Gpu(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;
