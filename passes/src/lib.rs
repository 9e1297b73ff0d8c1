//! IR → IR passes. Each pass keeps the interpreter's results unchanged (its tests check that), except `quantize`,
//! which changes the weights' values by design (its test bounds the change).

mod dead_code;
mod quantize;
mod reshape;
mod split_weights;

pub use dead_code::eliminate_dead_code;
pub use quantize::quantize;
pub use reshape::fold_reshapes;
pub use split_weights::split_large_weights;

/// The default pipeline, in order.
pub fn optimize(graph: &mut tfc_ir::Graph) {
    fold_reshapes(graph);
    eliminate_dead_code(graph);
}
