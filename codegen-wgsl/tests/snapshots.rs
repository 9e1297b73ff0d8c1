//! The WGSL of a few representative kernels, so that every change to a kernel's text shows up in review.
//! Update with `INSTA_UPDATE=always cargo test -p tfc-codegen-wgsl --test snapshots`.

mod common;

use common::{add, c, input, weight};
use tfc_codegen_wgsl::kernel;
use tfc_ir::{BinaryOp, DType, Graph, NarrowFloat, NodeId, Op, ScaleRounding};

fn wgsl(g: &Graph, node: NodeId) -> String {
    kernel(g, node).unwrap().unwrap().wgsl
}

#[test]
fn matmul_with_half_weight() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let x = input(&mut g, "x", DType::F32, &[c(1), s, c(64)]);
    let w = weight(&mut g, "w", DType::F16, &[96, 64]);
    let y = add(&mut g, Op::MatMul { transpose_a: false, transpose_b: true }, &[x, w]);
    insta::assert_snapshot!("matmul", wgsl(&g, y));
}

#[test]
fn layer_norm() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let x = input(&mut g, "x", DType::F32, &[s, c(768)]);
    let gamma = weight(&mut g, "gamma", DType::F32, &[768]);
    let beta = weight(&mut g, "beta", DType::BF16, &[768]);
    let y = add(&mut g, Op::LayerNorm { eps: 1e-5 }, &[x, gamma, beta]);
    insta::assert_snapshot!("layer_norm", wgsl(&g, y));
}

#[test]
fn causal_gqa_attention_with_mask() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let q = input(&mut g, "q", DType::F32, &[c(1), s.clone(), c(8), c(64)]);
    let k = input(&mut g, "k", DType::F32, &[c(1), s.clone(), c(2), c(64)]);
    let v = input(&mut g, "v", DType::F32, &[c(1), s.clone(), c(2), c(64)]);
    let mask = input(&mut g, "mask", DType::I32, &[c(1), s]);
    let y = add(&mut g, Op::Attention { causal: true, scale: 0.125, window: None }, &[q, k, v, mask]);
    insta::assert_snapshot!("attention", wgsl(&g, y));
}

#[test]
fn broadcast_add() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let x = input(&mut g, "x", DType::F32, &[c(2), s.clone(), c(1)]);
    let y = input(&mut g, "y", DType::F32, &[c(1), s, c(16)]);
    let z = add(&mut g, Op::Binary(BinaryOp::Add), &[x, y]);
    insta::assert_snapshot!("binary_add_broadcast", wgsl(&g, z));
}

#[test]
fn tiled_transpose() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let x = input(&mut g, "x", DType::F32, &[c(1), s, c(12), c(64)]);
    let y = add(&mut g, Op::Transpose { perm: vec![0, 2, 3, 1] }, &[x]);
    insta::assert_snapshot!("transpose_tiled", wgsl(&g, y));
}

#[test]
fn round_to_narrow_floats() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[c(1000)]);
    let y = add(&mut g, Op::RoundTo { format: NarrowFloat::E4M3FnUz, saturate: false }, &[x]);
    insta::assert_snapshot!("round_to_e4m3fnuz", wgsl(&g, y));
    let y = add(&mut g, Op::RoundTo { format: NarrowFloat::E8M0(ScaleRounding::Nearest), saturate: true }, &[x]);
    insta::assert_snapshot!("round_to_e8m0", wgsl(&g, y));
}
