use tfc_ir::{Graph, NodeId, Op};

/// A reshape of a reshape becomes one reshape of the original value; a reshape to the shape it already has
/// disappears. Reshapes are views, so this saves no kernel, but it shortens the chains that later passes match.
pub fn fold_reshapes(graph: &mut Graph) {
    let order = graph.topo_order().expect("passes run on acyclic graphs");
    for id in order {
        let Op::Reshape { shape } = &graph.node(id).op else { continue };
        let source = graph.inputs_of(id)[0];
        if graph.node(source).ty.shape == *shape {
            graph.replace_uses(id, source);
            continue;
        }
        if let Op::Reshape { .. } = graph.node(source).op {
            let original: NodeId = graph.inputs_of(source)[0];
            let name = graph.node(id).name.clone();
            let folded = graph
                .add(format!("{name}.folded"), Op::Reshape { shape: shape.clone() }, &[original])
                .expect("the element count is unchanged");
            graph.replace_uses(id, folded);
        }
    }
    crate::eliminate_dead_code(graph);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfc_ir::{DType, Dim, TensorType, Tensor, UnaryOp};

    #[test]
    fn folds_chains_and_identities_and_keeps_results() {
        let mut g = Graph::new();
        let s = g.symbol("sequence", 16);
        let x = g.input("x", TensorType::new(DType::F32, vec![s.clone(), 6usize.into()]), None);
        let a = g.add("a", Op::Reshape { shape: vec![s.clone(), 2usize.into(), 3usize.into()] }, &[x]).unwrap();
        let b = g.add("b", Op::Reshape { shape: vec![s.clone(), Dim::from(3usize), 2usize.into()] }, &[a]).unwrap();
        let c = g.add("c", Op::Reshape { shape: vec![s.clone(), 3usize.into(), 2usize.into()] }, &[b]).unwrap();
        let y = g.add("y", Op::Unary(UnaryOp::Neg), &[c]).unwrap();
        g.output("y", y);
        let inputs = [("x".to_string(), Tensor::f32(vec![2, 6], (0..12).map(|v| v as f32).collect()))].into();
        let before = tfc_ir::interp::run(&g, &inputs).unwrap();
        fold_reshapes(&mut g);
        let reshapes = g.node_ids().filter(|&n| matches!(g.node(n).op, Op::Reshape { .. })).count();
        assert_eq!(reshapes, 1);
        assert_eq!(tfc_ir::interp::run(&g, &inputs).unwrap(), before);
    }
}
