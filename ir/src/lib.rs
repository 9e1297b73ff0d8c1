//! tfc's intermediate representation: a typed dataflow graph over tensors with symbolic shapes, the weights it
//! refers to (memory-mapped from their source files), the bundle manifest types, chat templates, and the reference
//! interpreter that defines what every op means.

pub mod chat;
pub mod dim;
pub mod dtype;
pub mod graph;
pub mod interp;
pub mod layout;
pub mod manifest;
pub mod op;
pub mod quant;
pub mod tensor;
pub mod weight;

pub use dim::{Dim, Env, Expr};
pub use dtype::DType;
pub use graph::{Graph, GraphError, Node, NodeId, Symbol};
pub use op::{
    BinaryOp, CompareOp, FloatLayout, InputDefault, NarrowFloat, NearestRounding, Op, PadMode, PoolKind, ReduceKind, ResizeAxis, ResizeMode, SampleMode, SamplePadding, ScaleRounding,
    TensorType, UnaryOp, Window,
};
pub use tensor::{Data, Tensor, relative_l2};
pub use weight::{MappedFile, Weight, WeightData, WeightId};

/// The value a runtime feeds to an input the caller left out. Positions count from the symbol `past` (the tokens
/// already in a KV cache) when `env` has it, else from 0.
pub fn default_input(default: InputDefault, dtype: DType, shape: &[usize], env: &Env) -> Tensor {
    let numel: usize = shape.iter().product();
    let last = shape.last().copied().unwrap_or(1).max(1);
    let first = env.get("past").copied().unwrap_or(0) as i64;
    let value = |i: usize| -> i64 {
        match default {
            InputDefault::Zeros => 0,
            InputDefault::Ones => 1,
            InputDefault::Positions => first + (i % last) as i64,
        }
    };
    match dtype {
        DType::I32 => Tensor::i32(shape.to_vec(), (0..numel).map(|i| value(i) as i32).collect()),
        DType::I64 => Tensor::i64(shape.to_vec(), (0..numel).map(value).collect()),
        _ => Tensor::f32(shape.to_vec(), (0..numel).map(|i| value(i) as f32).collect()),
    }
}
