use tfc_ir::{BinaryOp, DType, Graph, NodeId, Op, Weight, WeightData};

/// The most operands one Concat takes (a kernel binds its operands and output within WebGPU's default of
/// 8 storage buffers per stage).
const MAX_CONCAT: usize = 7;

/// Splits every weight whose bytes (padded to 4) exceed `max_bytes` into blocks of whole rows that fit, so no
/// binding exceeds the limit, and rewrites its users onto the blocks:
/// - `MatMul(a, w)` with `w` as `[N, K]` (transposed): one product per block, concatenated on the last axis;
/// - `MatMul(a, w)` with `w` as `[K, N]`: the matching slices of `a` times each block, summed;
/// - `Gather(w, i)`: each block gathers `i − first row` (out-of-range rows give zeros), summed.
///
/// The blocks are made once per weight, so a weight shared by several users (tied embeddings) stays one copy.
/// Any other user of an oversized weight is an error naming the weight and the op.
pub fn split_large_weights(graph: &mut Graph, max_bytes: u64) -> Result<(), String> {
    let oversized: Vec<NodeId> = graph
        .node_ids()
        .filter(|&id| graph.weight_of(id).is_some_and(|w| w.bundle_len() > max_bytes))
        .collect();
    for weight_node in oversized {
        let weight = graph.weight_of(weight_node).unwrap().clone();
        let blocks = row_blocks(&weight, max_bytes)?;
        let parts: Vec<(u64, NodeId)> =
            blocks.iter().map(|&(start, end)| (start, graph.weight(weight.slice_rows(start, end)))).collect();
        for user in graph.users_of(weight_node) {
            let node = graph.node(user).clone();
            let operands = graph.inputs_of(user);
            let name = &node.name;
            let replacement = match node.op {
                Op::MatMul { transpose_b: true, .. } if operands[1] == weight_node && weight.shape.len() == 2 => {
                    let products = parts
                        .iter()
                        .map(|&(start, part)| add(graph, format!("{name}.rows{start}"), node.op.clone(), &[operands[0], part]))
                        .collect::<Result<Vec<_>, _>>()?;
                    let axis = node.ty.rank() - 1;
                    concat_all(graph, name, products, axis)?
                }
                Op::MatMul { transpose_a, transpose_b: false } if operands[1] == weight_node && weight.shape.len() == 2 => {
                    let a = operands[0];
                    let axis = graph.node(a).ty.rank() - if transpose_a { 2 } else { 1 };
                    let mut products = Vec::new();
                    for (&(start, end), &(_, part)) in blocks.iter().zip(&parts) {
                        let slice = Op::Slice { axis, start: start.into(), end: end.into() };
                        let a_part = add(graph, format!("{name}.a{start}"), slice, &[a])?;
                        products.push(add(graph, format!("{name}.k{start}"), node.op.clone(), &[a_part, part])?);
                    }
                    sum_all(graph, name, products)?
                }
                Op::Gather if operands[0] == weight_node => {
                    let indices = operands[1];
                    let index_dtype = graph.node(indices).ty.dtype;
                    let mut gathered = Vec::new();
                    for &(start, part) in &parts {
                        let shifted = if start == 0 {
                            indices
                        } else {
                            let offset = graph.weight(int_scalar(&format!("{name}.offset{start}"), start, index_dtype));
                            add(graph, format!("{name}.index{start}"), Op::Binary(BinaryOp::Sub), &[indices, offset])?
                        };
                        gathered.push(add(graph, format!("{name}.rows{start}"), Op::Gather, &[part, shifted])?);
                    }
                    sum_all(graph, name, gathered)?
                }
                ref op => {
                    return Err(format!(
                        "weight `{}` ({} bytes) is larger than the {max_bytes}-byte binding limit and is used by {name} ({}), which tfc cannot split; raise the binding limit",
                        weight.name,
                        weight.bundle_len(),
                        op.kind()
                    ));
                }
            };
            graph.replace_uses(user, replacement);
        }
    }
    crate::eliminate_dead_code(graph);
    Ok(())
}

/// Row ranges of at most `max_bytes` each (whole rows; every block but the last has the same size).
fn row_blocks(weight: &Weight, max_bytes: u64) -> Result<Vec<(u64, u64)>, String> {
    let rows = weight.shape.first().copied().unwrap_or(1);
    let row_bytes = weight.bundle_len() / rows.max(1);
    let per_block = (max_bytes / 4 * 4) / row_bytes.max(1);
    if per_block == 0 || weight.shape.len() < 2 {
        return Err(format!(
            "weight `{}` {:?} cannot be split into row blocks of at most {max_bytes} bytes; raise the binding limit",
            weight.name, weight.shape
        ));
    }
    Ok((0..rows).step_by(per_block as usize).map(|start| (start, (start + per_block).min(rows))).collect())
}

fn int_scalar(name: &str, value: u64, dtype: DType) -> Weight {
    let bytes = match dtype {
        DType::I64 => (value as i64).to_le_bytes().to_vec(),
        _ => (value as i32).to_le_bytes().to_vec(),
    };
    Weight { name: name.to_string(), dtype, shape: vec![1], data: WeightData::Owned(std::sync::Arc::new(bytes)) }
}

fn add(graph: &mut Graph, name: String, op: Op, operands: &[NodeId]) -> Result<NodeId, String> {
    graph.add(name, op, operands).map_err(|e| e.to_string())
}

fn sum_all(graph: &mut Graph, name: &str, terms: Vec<NodeId>) -> Result<NodeId, String> {
    let mut total = terms[0];
    for (i, &t) in terms.iter().enumerate().skip(1) {
        total = add(graph, format!("{name}.sum{i}"), Op::Binary(BinaryOp::Add), &[total, t])?;
    }
    Ok(total)
}

/// Concatenates `parts` on `axis` in groups of at most `MAX_CONCAT`.
fn concat_all(graph: &mut Graph, name: &str, mut parts: Vec<NodeId>, axis: usize) -> Result<NodeId, String> {
    let mut level = 0;
    while parts.len() > 1 {
        let mut next = Vec::new();
        for (i, group) in parts.chunks(MAX_CONCAT).enumerate() {
            next.push(if group.len() == 1 {
                group[0]
            } else {
                add(graph, format!("{name}.concat{level}_{i}"), Op::Concat { axis }, group)?
            });
        }
        parts = next;
        level += 1;
    }
    Ok(parts[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;
    use tfc_ir::{Tensor, TensorType, relative_l2};

    /// A tied embedding (gather + transposed matmul) and an untransposed matmul, all on oversized weights.
    fn graph() -> (Graph, Map<String, Tensor>) {
        let mut g = Graph::new();
        let ids = g.input("ids", TensorType::new(DType::I32, vec![1usize.into(), 6usize.into()]), None);
        let table: Vec<f32> = (0..50 * 16).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let emb = g.weight(Weight::from_f32("emb", vec![50, 16], &table));
        let up: Vec<f32> = (0..16 * 40).map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0).collect();
        let w_up = g.weight(Weight::from_f32("up", vec![16, 40], &up));
        let x = g.add("embed", Op::Gather, &[emb, ids]).unwrap();
        let logits = g.add("lm_head", Op::MatMul { transpose_a: false, transpose_b: true }, &[x, emb]).unwrap();
        let h = g.add("up", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, w_up]).unwrap();
        g.output("logits", logits);
        g.output("h", h);
        let inputs = Map::from([("ids".to_string(), Tensor::i32(vec![1, 6], vec![0, 7, 49, 13, 26, 48]))]);
        (g, inputs)
    }

    #[test]
    fn split_weights_keep_results_and_share_blocks() {
        let (mut g, inputs) = graph();
        let before = tfc_ir::interp::run(&g, &inputs).unwrap();
        split_large_weights(&mut g, 640).unwrap();
        for w in &g.weights {
            assert!(w.bytes().len() <= 640, "{} has {} bytes", w.name, w.bytes().len());
        }
        // emb (3200 bytes) → 5 blocks of 10 rows, shared by the gather and the matmul; up (2560) → 4 blocks.
        assert_eq!(g.weights.iter().filter(|w| w.name.starts_with("emb[")).count(), 5);
        assert_eq!(g.weights.iter().filter(|w| w.name.starts_with("up[")).count(), 4);
        let after = tfc_ir::interp::run(&g, &inputs).unwrap();
        for ((name, b), (_, a)) in before.iter().zip(&after) {
            assert_eq!(a.shape, b.shape);
            let error = relative_l2(&a.to_f32(), &b.to_f32());
            assert!(error < 1e-6, "{name}: relative L2 {error:.2e}");
        }
    }

    #[test]
    fn a_row_larger_than_the_limit_is_an_error_naming_the_weight() {
        let (mut g, _) = graph();
        let err = split_large_weights(&mut g, 32).unwrap_err();
        assert!(err.contains("emb"), "{err}");
    }
}
