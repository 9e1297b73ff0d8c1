use std::sync::Arc;
use tfc_ir::{DType, Graph, NodeId, Op, Weight, WeightData};

/// Weights with fewer elements than this stay as they are: they cost little and are often precision-sensitive
/// (e.g. token type tables).
const SMALL: u64 = 1024;

/// Stores every weight matrix of the graph in `target` (a float dtype or a block format), from its f32, f16 or bf16
/// values. A matrix is a rank-2 weight read only as a MatMul operand or a Gather table; block formats quantize its
/// rows (the last axis). Everything else keeps its dtype: vectors (norms, biases), small tensors, weights other
/// ops read, and weights already block-quantized. A matrix whose rows are not whole blocks of `target` takes the
/// nearest format whose blocks fit ([`fallback`]).
///
/// Quantized weights are held in memory (about the size of the bundle's weights) until the bundle is written.
pub fn quantize(graph: &mut Graph, target: DType) -> Result<(), String> {
    if !target.is_float() {
        return Err(format!("cannot quantize weights to {target}: choose f32, f16, bf16 or a block format"));
    }
    let matrices: Vec<NodeId> = graph.node_ids().filter(|&id| is_matrix(graph, id)).collect();
    for id in matrices {
        let Op::Weight(w) = graph.node(id).op else { unreachable!("matrices are weights") };
        let weight = &graph.weights[w.0];
        let dtype = storage_for(target, weight.row_len(), weight.dtype);
        if dtype == weight.dtype {
            continue;
        }
        let converted = convert(weight, dtype);
        graph.set_weight(id, converted);
    }
    Ok(())
}

/// Whether the node is a weight that [`quantize`] stores in the target format.
fn is_matrix(graph: &Graph, id: NodeId) -> bool {
    let Some(w) = graph.weight_of(id) else { return false };
    let read_as_matrix = graph.users_of(id).iter().all(|&user| {
        let operands = graph.inputs_of(user);
        match graph.node(user).op {
            Op::MatMul { .. } => operands[0] != id,
            Op::Gather => operands[1] != id,
            _ => false,
        }
    });
    w.shape.len() == 2 && w.numel() >= SMALL && w.dtype.is_float() && !w.dtype.is_block() && read_as_matrix
}

/// The dtype a matrix with rows of `row_len` elements, stored as `source`, takes for `target`.
fn storage_for(target: DType, row_len: u64, source: DType) -> DType {
    let mut dtype = target;
    while !row_len.is_multiple_of(dtype.block_elems() as u64) {
        dtype = fallback(dtype, source);
    }
    dtype
}

/// The format tried when a row is not whole blocks of `dtype` (llama.cpp's choices for the K-quants): the 32-element
/// format closest in size, then f16, or the source dtype when it is no wider than f16.
fn fallback(dtype: DType, source: DType) -> DType {
    match dtype {
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        _ if source == DType::F32 => DType::F16,
        _ => source,
    }
}

/// The weight's values stored as `dtype` (rows quantized for a block format).
fn convert(weight: &Weight, dtype: DType) -> Weight {
    let values = weight.to_f32();
    let bytes: Vec<u8> = match dtype {
        DType::F32 => bytemuck::cast_slice(&values).to_vec(),
        DType::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        DType::BF16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        block => quantize_rows(block, &values, weight.row_len() as usize),
    };
    Weight { name: weight.name.clone(), dtype, shape: weight.shape.clone(), data: WeightData::Owned(Arc::new(bytes)) }
}

/// The rows of `values` quantized to `block`, spread over the machine's cores (the bytes are the same in any case).
fn quantize_rows(block: DType, values: &[f32], row_len: usize) -> Vec<u8> {
    let rows: Vec<&[f32]> = values.chunks(row_len).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = rows
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut bytes = Vec::new();
                    for row in chunk {
                        tfc_ir::quant::quantize_row(block, row, &mut bytes);
                    }
                    bytes
                })
            })
            .collect();
        parts.into_iter().flat_map(|part| part.join().expect("quantizing a row does not panic")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfc_ir::{Tensor, TensorType, relative_l2};

    #[test]
    fn matrices_take_the_target_or_its_fallback_and_the_rest_stays() {
        let mut g = Graph::new();
        let x = g.input("x", TensorType::new(DType::F32, vec![3usize.into(), 512usize.into()]), None);
        let values = |n: usize| (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 60.0).collect::<Vec<f32>>();
        let w = g.weight(Weight::from_f32("w", vec![96, 512], &values(96 * 512)));
        let narrow = g.weight(Weight::from_f32("narrow", vec![96, 96], &values(96 * 96)));
        let gamma = g.weight(Weight::from_f32("gamma", vec![96], &values(96)));
        let h = g.add("h", Op::MatMul { transpose_a: false, transpose_b: true }, &[x, w]).unwrap();
        let h = g.add("h2", Op::MatMul { transpose_a: false, transpose_b: true }, &[h, narrow]).unwrap();
        let y = g.add("y", Op::RmsNorm { eps: 1e-6 }, &[h, gamma]).unwrap();
        g.output("y", y);
        let inputs = [("x".to_string(), Tensor::f32(vec![3, 512], values(3 * 512)))].into();
        let before = tfc_ir::interp::run(&g, &inputs).unwrap();
        quantize(&mut g, DType::Q4_K).unwrap();
        let dtypes: Vec<(String, DType)> = g.weights.iter().map(|w| (w.name.clone(), w.dtype)).collect();
        // Rows of 512 are whole Q4_K blocks; rows of 96 fall back to Q5_0; the norm stays f32.
        assert_eq!(dtypes, [("w".into(), DType::Q4_K), ("narrow".into(), DType::Q5_0), ("gamma".into(), DType::F32)]);
        let after = tfc_ir::interp::run(&g, &inputs).unwrap();
        let error = relative_l2(&after[0].1.to_f32(), &before[0].1.to_f32());
        assert!(error < 0.05, "relative L2 {error}");
    }
}
