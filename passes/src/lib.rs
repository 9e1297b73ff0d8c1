//! IR → IR passes. Each pass keeps the interpreter's results unchanged (its tests check that).

mod dead_code;
mod reshape;

pub use dead_code::eliminate_dead_code;
pub use reshape::fold_reshapes;

/// The default pipeline, in order.
pub fn optimize(graph: &mut tfc_ir::Graph) {
    fold_reshapes(graph);
    eliminate_dead_code(graph);
}
