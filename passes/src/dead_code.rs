use std::collections::BTreeSet;
use tfc_ir::{Graph, NodeId};

/// Removes nodes no graph output depends on (graph inputs stay: they are the model's interface), then the weights
/// nothing uses any more.
pub fn eliminate_dead_code(graph: &mut Graph) {
    let mut live: BTreeSet<NodeId> = BTreeSet::new();
    let mut stack: Vec<NodeId> = graph.outputs.iter().map(|(_, id)| *id).collect();
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend(graph.inputs_of(id));
        }
    }
    let dead: Vec<NodeId> = graph.node_ids().filter(|id| !live.contains(id) && !graph.inputs.contains(id)).collect();
    for id in dead {
        graph.remove(id);
    }
    graph.compact_weights();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfc_ir::{BinaryOp, DType, Op, TensorType, UnaryOp, Weight};

    #[test]
    fn removes_unused_nodes_and_weights_and_keeps_results() {
        let mut g = Graph::new();
        let x = g.input("x", TensorType::new(DType::F32, vec![3usize.into()]), None);
        let unused = g.weight(Weight::from_f32("unused", vec![3], &[1.0, 2.0, 3.0]));
        let w = g.weight(Weight::from_f32("w", vec![3], &[0.5, -1.0, 2.0]));
        let _dead = g.add("dead", Op::Binary(BinaryOp::Add), &[x, unused]).unwrap();
        let y = g.add("y", Op::Binary(BinaryOp::Mul), &[x, w]).unwrap();
        let z = g.add("z", Op::Unary(UnaryOp::Exp), &[y]).unwrap();
        g.output("z", z);
        let inputs = [("x".to_string(), tfc_ir::Tensor::f32(vec![3], vec![0.1, 0.2, 0.3]))].into();
        let before = tfc_ir::interp::run(&g, &inputs).unwrap();
        eliminate_dead_code(&mut g);
        assert_eq!(g.len(), 4);
        assert_eq!(g.weights.len(), 1);
        assert_eq!(g.weights[0].name, "w");
        assert_eq!(tfc_ir::interp::run(&g, &inputs).unwrap(), before);
    }
}
