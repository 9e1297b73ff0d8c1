//! tfc's compiler: importers from model checkpoints into the IR, the pipeline driver and the bundle writer.

pub mod gguf;
pub mod hf;
pub mod onnx;
pub mod pipeline;
pub mod schedule;
pub mod writer;

pub use pipeline::{CompileError, CompileOptions, CompileReport, Progress, Quiet, compile, compile_graph, load_graph};
