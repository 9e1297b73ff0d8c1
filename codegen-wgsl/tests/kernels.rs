//! Every op kind on several shapes: the kernel validates (inside `kernel`), fits WebGPU's default limits, and its params
//! and workgroup count evaluate to what covers the work.

mod common;

use common::{add, c, check, env, input, run, weight};
use tfc_codegen_wgsl::{CodegenError, kernel};
use tfc_ir::{BinaryOp, DType, Graph, InputDefault, Op, UnaryOp};

const UNARY: [UnaryOp; 14] = [
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Sqrt,
    UnaryOp::Rsqrt,
    UnaryOp::Recip,
    UnaryOp::Tanh,
    UnaryOp::Erf,
    UnaryOp::Sigmoid,
    UnaryOp::Relu,
    UnaryOp::Gelu,
    UnaryOp::GeluTanh,
    UnaryOp::Silu,
];
const BINARY: [BinaryOp; 7] =
    [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min, BinaryOp::Pow];

fn unsupported(g: &Graph, node: tfc_ir::NodeId) -> String {
    match kernel(g, node) {
        Err(e @ CodegenError::Unsupported { .. }) => e.to_string(),
        other => panic!("expected an unsupported-op error, got {other:?}"),
    }
}

#[test]
fn inputs_weights_and_reshapes_need_no_kernel() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 128);
    let x = input(&mut g, "x", DType::F32, &[s.clone(), c(6)]);
    let w = weight(&mut g, "w", DType::F16, &[6]);
    let r = add(&mut g, Op::Reshape { shape: vec![s, c(2), c(3)] }, &[x]);
    for id in [x, w, r] {
        assert_eq!(kernel(&g, id).unwrap(), None);
    }
}

#[test]
fn unary_ops_cover_every_element() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let x = input(&mut g, "x", DType::F32, &[c(3), s.clone(), c(77)]);
    let h = weight(&mut g, "h", DType::BF16, &[5, 3]);
    for op in UNARY {
        for (operand, numel) in [(x, 3 * 100 * 77), (h, 15)] {
            let id = add(&mut g, Op::Unary(op), &[operand]);
            let k = check(&g, id, &env(&[("sequence", 100)]));
            assert_eq!(k.params, vec![numel]);
            assert!(k.workgroups * 256 >= numel && (k.workgroups - 1) * 256 < numel);
            assert!(k.kernel.name.starts_with("unary_"));
        }
    }
}

#[test]
fn unary_text_is_independent_of_the_shape() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let a = input(&mut g, "a", DType::F32, &[s, c(8)]);
    let b = input(&mut g, "b", DType::F32, &[c(1000)]);
    let ka = run(&mut g, Op::Unary(UnaryOp::Gelu), &[a], &env(&[("sequence", 3)]));
    let kb = run(&mut g, Op::Unary(UnaryOp::Gelu), &[b], &env(&[]));
    assert_eq!(ka.kernel.wgsl, kb.kernel.wgsl);
    assert_ne!(ka.params, kb.params);
}

#[test]
fn binary_ops_on_floats_and_integers() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let x = input(&mut g, "x", DType::F32, &[s.clone(), c(33)]);
    let y = input(&mut g, "y", DType::F32, &[s.clone(), c(33)]);
    let i = input(&mut g, "i", DType::I32, &[s.clone(), c(33)]);
    let j = input(&mut g, "j", DType::I32, &[c(33)]);
    let e = env(&[("sequence", 9)]);
    for op in BINARY {
        let f = run(&mut g, Op::Binary(op), &[x, y], &e);
        assert_eq!(f.params, vec![9 * 33]);
        assert!(f.kernel.wgsl.contains("array<f32>"));
        let n = run(&mut g, Op::Binary(op), &[i, j], &e);
        assert_eq!(n.params, vec![9 * 33, 33]);
        assert!(n.kernel.wgsl.contains("var<storage, read_write> out: array<i32>"));
        assert_eq!(f.kernel.name, n.kernel.name);
    }
}

#[test]
fn binary_broadcasting_layouts() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let e = env(&[("sequence", 5)]);
    let x = input(&mut g, "x", DType::F32, &[c(2), s.clone(), c(12)]);
    let bias = weight(&mut g, "bias", DType::F16, &[12]);
    let scalar = input(&mut g, "scalar", DType::F32, &[c(1)]);
    let column = input(&mut g, "column", DType::F32, &[c(2), s.clone(), c(1)]);
    let row = input(&mut g, "row", DType::F32, &[c(1), c(7)]);
    let middle = input(&mut g, "middle", DType::F32, &[c(2), c(1), c(12)]);

    // Bias over leading axes: i % 12.
    let k = run(&mut g, Op::Binary(BinaryOp::Add), &[x, bias], &e);
    assert_eq!(k.params, vec![120, 12]);
    assert!(k.kernel.wgsl.contains("load_in1(i % param(1u))"));
    assert!(k.kernel.wgsl.contains("unpack2x16float"));
    // Scalar: both orders.
    let k = run(&mut g, Op::Binary(BinaryOp::Sub), &[scalar, x], &e);
    assert_eq!(k.params, vec![120]);
    assert!(k.kernel.wgsl.contains("load_in0(0u)"));
    // [2, s, 1] against [1, 7]: merged axes (2·s, 7); a strided (1, 0), b broadcast over leading axes.
    let k = run(&mut g, Op::Binary(BinaryOp::Mul), &[column, row], &e);
    assert_eq!(k.params, vec![70, 7, 10, 7, 1, 0]);
    // [2, s, 12] against [2, 1, 12]: the middle axis broadcasts in b only.
    let k = run(&mut g, Op::Binary(BinaryOp::Div), &[x, middle], &e);
    assert_eq!(k.params, vec![120, 2, 5, 12, 12, 0, 1]);
    assert!(k.kernel.wgsl.contains("load_in0(i)"));
    assert!(k.workgroups * 256 >= 120);
}

#[test]
fn binary_broadcasting_up_to_rank_6() {
    let mut g = Graph::new();
    let a = input(&mut g, "a", DType::F32, &[c(2), c(1), c(3), c(1), c(5), c(1)]);
    let b = input(&mut g, "b", DType::F32, &[c(1), c(4), c(1), c(6), c(1), c(7)]);
    let k = run(&mut g, Op::Binary(BinaryOp::Max), &[a, b], &env(&[]));
    let numel = 2 * 4 * 3 * 6 * 5 * 7;
    assert_eq!(k.params[..7], [numel, 2, 4, 3, 6, 5, 7]);
    assert_eq!(k.params[7..13], [15, 0, 5, 0, 1, 0]);
    assert_eq!(k.params[13..], [0, 42, 0, 7, 0, 1]);

    let a = input(&mut g, "a7", DType::F32, &[c(2), c(1), c(3), c(1), c(5), c(1), c(2)]);
    let b = input(&mut g, "b7", DType::F32, &[c(1), c(4), c(1), c(6), c(1), c(7), c(1)]);
    let id = add(&mut g, Op::Binary(BinaryOp::Max), &[a, b]);
    assert!(unsupported(&g, id).contains("up to 6"));
}

#[test]
fn casts_between_every_dtype() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let e = env(&[("sequence", 3)]);
    let f = input(&mut g, "f", DType::F32, &[s.clone(), c(3)]);
    let i = input(&mut g, "i", DType::I32, &[s.clone(), c(3)]);
    let h = weight(&mut g, "h", DType::F16, &[3, 3]);
    let bh = weight(&mut g, "bh", DType::BF16, &[3, 3]);
    for from in [f, i, h, bh] {
        for to in [DType::F32, DType::I32] {
            let k = run(&mut g, Op::Cast { to }, &[from], &e);
            assert_eq!(k.params, vec![9]);
            assert_eq!(k.workgroups, 1);
        }
        for to in [DType::F16, DType::BF16] {
            // Two elements per invocation, 9 elements → 5 words.
            let k = run(&mut g, Op::Cast { to }, &[from], &e);
            assert_eq!(k.params, vec![5, 9]);
            assert!(k.kernel.wgsl.contains("var<storage, read_write> out: array<u32>"));
        }
    }
    let l = input(&mut g, "l", DType::I64, &[c(4)]);
    let id = add(&mut g, Op::Cast { to: DType::I32 }, &[l]);
    assert!(unsupported(&g, id).contains("is i64"));
    let id = add(&mut g, Op::Cast { to: DType::I64 }, &[f]);
    assert!(unsupported(&g, id).contains("i64"));
}

#[test]
fn matmul_every_transpose_and_weight_dtype() {
    let (m, n, k) = (33u64, 70u64, 19u64);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut g = Graph::new();
            let s = g.symbol("sequence", 512);
            let a_shape = if ta { [c(2), c(k), s.clone()] } else { [c(2), s.clone(), c(k)] };
            let a = input(&mut g, "a", DType::F32, &a_shape);
            let b = weight(&mut g, "b", dtype, &if tb { [n, k] } else { [k, n] });
            let id = add(&mut g, Op::MatMul { transpose_a: ta, transpose_b: tb }, &[a, b]);
            let r = check(&g, id, &env(&[("sequence", m)]));
            let (a_m, a_k) = if ta { (1, m) } else { (k, 1) };
            let (b_k, b_n) = if tb { (1, k) } else { (n, 1) };
            assert_eq!(r.params[..8], [m, n, k, a_m, a_k, b_k, b_n, 2]);
            // Batch: [1, 1, 1, 2], A strided by its matrix, B broadcast.
            assert_eq!(r.params[8..], [1, 1, 1, 2, 0, 0, 0, m * k, 0, 0, 0, 0]);
            // Two 64-tiles: the skinny strategy, 9 groups of 4 rows × blocks of 8 (Bᵀ) or 16 columns, per batch entry.
            let columns = if tb { 8 } else { 16 };
            assert_eq!(r.workgroups, 9 * n.div_ceil(columns) * 2);
        }
    }
}

#[test]
fn matmul_strategy_follows_the_tile_count() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 4096);
    let a = input(&mut g, "a", DType::F32, &[s.clone(), c(64)]);
    let w = weight(&mut g, "w", DType::F16, &[1000, 64]);
    let id = add(&mut g, Op::MatMul { transpose_a: false, transpose_b: true }, &[a, w]);
    // N = 1000: 63 matrix-vector groups of 16 rows up to M = 4. Then 16 column tiles of 64, or 125 skinny blocks of 8
    // columns: skinny up to M = 16 and below 32 64-tiles (M ≤ 64); then one workgroup per 64-tile, of which the
    // 128-tiles use the first once there are 128 of those.
    for (m, workgroups) in [(1, 63), (4, 63), (5, 250), (16, 500), (64, 16 * 125), (65, 2 * 16), (1921, 31 * 16), (4096, 64 * 16)] {
        let r = check(&g, id, &env(&[("sequence", m)]));
        assert_eq!(r.workgroups, workgroups, "M = {m}");
    }
    // N = 20000: 313 column 64-tiles, so the tiled strategy from M = 17 on; skinny (2500 blocks) from M = 5, the
    // matrix-vector strategy (1250 groups) below.
    let w = weight(&mut g, "wide", DType::F16, &[20000, 64]);
    let id = add(&mut g, Op::MatMul { transpose_a: false, transpose_b: true }, &[a, w]);
    for (m, workgroups) in [(1, 1250), (5, 2 * 2500), (16, 4 * 2500), (17, 313)] {
        let r = check(&g, id, &env(&[("sequence", m)]));
        assert_eq!(r.workgroups, workgroups, "M = {m}");
    }
}

#[test]
fn matrix_vector_products_for_every_weight_dtype() {
    // Rows of 2048 are whole quads in every format; rows of 1280 (5 K-quant blocks) are not for Q2_K, Q3_K, Q4_K and
    // Q6_K, and rows of 1312 (41 blocks of 32) not for the formats with 32-element blocks. The formats whose units
    // are no quads (5-word Q5_0 and Q5_1 blocks, 27-, 35- and 43-word Q3_K, Q4_K and Q5_K blocks) read words.
    let words = [DType::Q5_0, DType::Q5_1, DType::Q3_K, DType::Q4_K, DType::Q5_K];
    for dtype in [DType::F32, DType::F16, DType::BF16].into_iter().chain(DType::BLOCK_FORMATS) {
        for k in [1280u64, 1312, 2048] {
            if !k.is_multiple_of(dtype.block_elems() as u64) {
                continue;
            }
            let mut g = Graph::new();
            let s = g.symbol("sequence", 512);
            let x = input(&mut g, "x", DType::F32, &[c(2), s, c(k)]);
            let w = g.weight(tfc_ir::Weight {
                name: "w".into(),
                dtype,
                shape: vec![37, k],
                data: tfc_ir::WeightData::Owned(std::sync::Arc::new(vec![0u8; dtype.bytes(37 * k) as usize])),
            });
            let id = add(&mut g, Op::MatMul { transpose_a: false, transpose_b: true }, &[x, w]);
            // R = 2 · M rows of x, up to 4: the matrix-vector strategy, 3 groups of 16 rows of W.
            for (m, workgroups) in [(1, 3), (2, 3)] {
                let r = check(&g, id, &env(&[("sequence", m)]));
                assert_eq!(r.workgroups, workgroups, "{dtype} × {k}, M = {m}");
            }
            let kernel = check(&g, id, &env(&[("sequence", 1)])).kernel;
            let quads = tfc_ir::quant::BlockFormat::of(dtype).is_none_or(|f| f.bundle_row_bytes(k as usize) % 16 == 0 && !words.contains(&dtype));
            assert!(kernel.wgsl.contains("fn matvec("), "{dtype} × {k}");
            assert_eq!(kernel.wgsl.contains("in1: array<vec4<"), quads, "{dtype} × {k}");
            assert!(kernel.wgsl.contains("in0: array<vec4<f32>>"), "{dtype} × {k}");
        }
    }
}

#[test]
fn matmul_text_is_shared_across_shapes() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let a = input(&mut g, "a", DType::F32, &[s.clone(), c(768)]);
    let w1 = weight(&mut g, "w1", DType::F32, &[768, 3072]);
    let w2 = weight(&mut g, "w2", DType::F32, &[5, 3072, 7]);
    let h = add(&mut g, Op::MatMul { transpose_a: false, transpose_b: false }, &[a, w1]);
    let o = add(&mut g, Op::MatMul { transpose_a: false, transpose_b: false }, &[h, w2]);
    assert_eq!(kernel(&g, h).unwrap().unwrap().wgsl, kernel(&g, o).unwrap().unwrap().wgsl);
}

#[test]
fn norms_run_one_workgroup_per_row() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let e = env(&[("sequence", 7)]);
    let x = input(&mut g, "x", DType::F32, &[c(2), s.clone(), c(300)]);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let gamma = weight(&mut g, "gamma", dtype, &[300]);
        let beta = weight(&mut g, "beta", dtype, &[300]);
        for (op, operands) in [
            (Op::LayerNorm { eps: 1e-5 }, vec![x, gamma, beta]),
            (Op::LayerNorm { eps: 1e-12 }, vec![x, gamma]),
            (Op::RmsNorm { eps: 1e-6 }, vec![x, gamma]),
        ] {
            let k = run(&mut g, op, &operands, &e);
            assert_eq!(k.params, vec![14, 300]);
            assert_eq!(k.workgroups, 14);
        }
    }
    let k = run(&mut g, Op::Softmax, &[x], &e);
    assert_eq!((k.params, k.workgroups), (vec![14, 300], 14));
}

#[test]
fn gather_tables_of_every_dtype() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let e = env(&[("sequence", 11)]);
    let ids = input(&mut g, "ids", DType::I32, &[c(1), s.clone()]);
    for dtype in [DType::F32, DType::F16, DType::BF16, DType::I32] {
        let table = weight(&mut g, "table", dtype, &[1000, 33]);
        let k = run(&mut g, Op::Gather, &[table, ids], &e);
        assert_eq!(k.params, vec![11 * 33, 33, 1000]);
        assert_eq!(k.workgroups, 2);
    }
    let vector = weight(&mut g, "vector", DType::F32, &[50]);
    let k = run(&mut g, Op::Gather, &[vector, ids], &e);
    assert_eq!(k.params, vec![11, 1, 50]);

    let long = g.input("long", tfc_ir::TensorType::new(DType::I64, vec![c(1), s]), Some(InputDefault::Positions));
    let table = weight(&mut g, "t", DType::F32, &[10, 4]);
    let id = add(&mut g, Op::Gather, &[table, long]);
    let message = unsupported(&g, id);
    assert!(message.contains("operand 1 is i64") && message.contains("i32"), "{message}");
}

#[test]
fn transposes() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let e = env(&[("sequence", 10)]);
    let x = input(&mut g, "x", DType::F32, &[c(2), s.clone(), c(12), c(64)]);
    // [b, s, h, d] → [b, h, s, d]: the inner axis stays, a plain gather over 4 axes.
    let k = run(&mut g, Op::Transpose { perm: vec![0, 2, 1, 3] }, &[x], &e);
    assert_eq!(k.params, vec![15360, 2, 12, 10, 64, 7680, 64, 768, 1]);
    assert_eq!(k.workgroups, 60);
    // [b, s, h, d] → [b, h, d, s], merged to [b, s, h·d] → [b, h·d, s]: tiled over (s, h·d), batch b.
    let k = run(&mut g, Op::Transpose { perm: vec![0, 2, 3, 1] }, &[x], &e);
    assert!(k.kernel.wgsl.contains("var<workgroup> tile"));
    assert_eq!(k.params, [10, 768, 1, 24, 2, 768, 10, 2, 10 * 768, 768 * 10]);
    assert_eq!(k.workgroups, 2 * 24);
    // Merged: [s, 12·64] → [12·64, s].
    let k = run(&mut g, Op::Transpose { perm: vec![2, 3, 0, 1] }, &[x], &e);
    assert_eq!(k.params[..7], [20, 768, 1, 24, 1, 768, 20]);
    // Identity after dropping size-1 axes and merging.
    let y = input(&mut g, "y", DType::I32, &[c(1), c(3), c(4)]);
    let k = run(&mut g, Op::Transpose { perm: vec![1, 0, 2] }, &[y], &e);
    assert_eq!(k.params, vec![12]);

    // Every permutation of rank 3 and a few of rank 5 and 6, float and integer.
    let z = input(&mut g, "z", DType::F32, &[c(3), s.clone(), c(5)]);
    let zi = input(&mut g, "zi", DType::I32, &[c(3), s.clone(), c(5)]);
    for perm in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
        for t in [z, zi] {
            let k = run(&mut g, Op::Transpose { perm: perm.to_vec() }, &[t], &e);
            assert!(k.workgroups * 256 >= 150);
        }
    }
    let r6 = input(&mut g, "r6", DType::F32, &[c(2), c(3), c(4), c(5), c(6), c(7)]);
    for perm in [vec![5, 4, 3, 2, 1, 0], vec![1, 3, 5, 0, 2, 4], vec![0, 2, 1, 4, 3, 5]] {
        run(&mut g, Op::Transpose { perm }, &[r6], &e);
    }
    let r7 = input(&mut g, "r7", DType::F32, &[c(2), c(3), c(2), c(3), c(2), c(3), c(2)]);
    let id = add(&mut g, Op::Transpose { perm: vec![6, 5, 4, 3, 2, 1, 0] }, &[r7]);
    assert!(unsupported(&g, id).contains("up to 6"));
}

#[test]
fn half_weights_move_as_16_bit_patterns() {
    let mut g = Graph::new();
    let e = env(&[]);
    for dtype in [DType::F16, DType::BF16] {
        let w = weight(&mut g, "w", dtype, &[5, 7]);
        let k = run(&mut g, Op::Transpose { perm: vec![1, 0] }, &[w], &e);
        assert_eq!(k.params, vec![35, 7, 5, 1, 7]);
        assert_eq!(k.workgroups, 1);
        assert!(k.kernel.wgsl.contains("0xffffu"));
        let k = run(&mut g, Op::Slice { axis: 1, start: c(2), end: c(5) }, &[w], &e);
        assert_eq!(k.params, vec![15, 3, 7, 2]);
    }
}

#[test]
fn slices() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let p = g.symbol("past", 512);
    let e = env(&[("sequence", 6), ("past", 4)]);
    let total = &p + &s;
    let x = input(&mut g, "x", DType::F32, &[c(2), total.clone(), c(8), c(16)]);
    let k = run(&mut g, Op::Slice { axis: 1, start: c(0), end: s.clone() }, &[x], &e);
    // Blocks of 6·128 elements out of the input's 10·128.
    assert_eq!(k.params, vec![2 * 6 * 128, 6 * 128, 10 * 128, 0]);
    assert_eq!(k.workgroups, 6);
    let k = run(&mut g, Op::Slice { axis: 1, start: c(1), end: c(3) }, &[x], &e);
    assert_eq!(k.params, vec![2 * 2 * 128, 2 * 128, 10 * 128, 128]);
    assert_eq!(k.workgroups, 2);
    let k = run(&mut g, Op::Slice { axis: 3, start: c(3), end: c(11) }, &[x], &e);
    assert_eq!(k.params, vec![2 * 10 * 8 * 8, 8, 16, 3]);
    let i = input(&mut g, "i", DType::I32, &[c(3), c(5)]);
    let k = run(&mut g, Op::Slice { axis: 0, start: c(1), end: c(2) }, &[i], &e);
    assert_eq!(k.params, vec![5, 5, 15, 5]);
}

#[test]
fn concats_of_up_to_7_inputs() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let p = g.symbol("past", 512);
    let e = env(&[("sequence", 3), ("past", 5)]);
    let past = input(&mut g, "past_k", DType::F32, &[c(1), p.clone(), c(4), c(8)]);
    let new = input(&mut g, "k", DType::F32, &[c(1), s.clone(), c(4), c(8)]);
    let k = run(&mut g, Op::Concat { axis: 1 }, &[past, new], &e);
    assert_eq!(k.params, vec![8 * 32, 8 * 32, 5 * 32, 3 * 32]);
    assert_eq!(k.workgroups, 1);

    let parts: Vec<_> = (0..7)
        .map(|i| weight(&mut g, &format!("w{i}"), [DType::F32, DType::F16, DType::BF16][i % 3], &[2, i as u64 + 1]))
        .collect();
    let k = run(&mut g, Op::Concat { axis: 1 }, &parts, &e);
    assert_eq!(k.params, vec![56, 28, 1, 2, 3, 4, 5, 6, 7]);

    let ints: Vec<_> = (0..3).map(|i| input(&mut g, &format!("i{i}"), DType::I32, &[c(4), s.clone()])).collect();
    let k = run(&mut g, Op::Concat { axis: 0 }, &ints, &e);
    assert_eq!(k.params, vec![36, 36, 12, 12, 12]);
    let k = run(&mut g, Op::Concat { axis: 0 }, &ints[..1], &e);
    assert_eq!(k.params, vec![12, 12, 12]);

    let eight: Vec<_> = (0..8).map(|i| input(&mut g, &format!("e{i}"), DType::F32, &[c(2)])).collect();
    let id = add(&mut g, Op::Concat { axis: 0 }, &eight);
    assert!(unsupported(&g, id).contains("at most 7"));
}

#[test]
fn rope_both_layouts() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let e = env(&[("sequence", 9)]);
    let x = input(&mut g, "x", DType::F32, &[c(2), s.clone(), c(4), c(64)]);
    let pos = input(&mut g, "pos", DType::I32, &[c(2), s.clone()]);
    for (half, freq_dtype) in [(32u64, DType::F32), (16, DType::F32), (8, DType::F16)] {
        let freq = weight(&mut g, "inv_freq", freq_dtype, &[half]);
        for interleaved in [false, true] {
            let k = run(&mut g, Op::Rope { interleaved }, &[x, pos, freq], &e);
            assert_eq!(k.params, vec![2 * 9 * 4 * 64, 64, 4, half]);
            assert_eq!(k.workgroups, 18);
        }
    }
}

#[test]
fn attention_variants() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let p = g.symbol("past", 512);
    let t = &p + &s;
    let e = env(&[("sequence", 5), ("past", 70)]);
    for (heads, groups, d, ev_) in
        [(8u64, 8u64, 64u64, 64u64), (8, 2, 128, 128), (4, 1, 80, 96), (2, 2, 256, 256), (3, 1, 1, 300)]
    {
        let q = input(&mut g, "q", DType::F32, &[c(2), s.clone(), c(heads), c(d)]);
        let k = input(&mut g, "k", DType::F32, &[c(2), t.clone(), c(groups), c(d)]);
        let v = input(&mut g, "v", DType::F32, &[c(2), t.clone(), c(groups), c(ev_)]);
        let mask_i = input(&mut g, "mask", DType::I32, &[c(2), t.clone()]);
        let mask_f = input(&mut g, "maskf", DType::F32, &[c(2), t.clone()]);
        for causal in [false, true] {
            for operands in [vec![q, k, v], vec![q, k, v, mask_i], vec![q, k, v, mask_f]] {
                let id = add(&mut g, Op::Attention { causal, scale: 0.125, window: None }, &operands);
                if ev_ > 256 {
                    assert!(unsupported(&g, id).contains("at most 256"));
                    continue;
                }
                let r = check(&g, id, &e);
                assert_eq!(r.params, vec![2, 5, heads, 75, groups, 1]);
                // Per batch entry and key/value head, the 5 · H/G rows that share it, in blocks of 4.
                assert_eq!(r.workgroups, 2 * groups * (5 * heads / groups).div_ceil(4));
            }
        }
    }
    let q = input(&mut g, "qs", DType::F32, &[c(1), s.clone(), c(2), s.clone()]);
    let id = add(&mut g, Op::Attention { causal: false, scale: 1.0, window: None }, &[q, q, q]);
    assert!(unsupported(&g, id).contains("constant"));
}

#[test]
fn attention_decoding_splits_the_features() {
    let mut g = Graph::new();
    let s = g.symbol("sequence", 512);
    let p = g.symbol("past", 512);
    let t = &p + &s;
    let q = input(&mut g, "q", DType::F32, &[c(1), s.clone(), c(32), c(128)]);
    let k = input(&mut g, "k", DType::F32, &[c(1), t.clone(), c(8), c(128)]);
    let v = input(&mut g, "v", DType::F32, &[c(1), t.clone(), c(8), c(128)]);
    let id = add(&mut g, Op::Attention { causal: true, scale: 0.088, window: None }, &[q, k, v]);
    let decode = check(&g, id, &env(&[("sequence", 1), ("past", 99)]));
    assert_eq!(decode.params, vec![1, 1, 32, 100, 8, 4]);
    assert_eq!(decode.workgroups, 8 * 4);
    let prefill = check(&g, id, &env(&[("sequence", 7), ("past", 0)]));
    assert_eq!(prefill.params, vec![1, 7, 32, 7, 8, 1]);
    assert_eq!(prefill.workgroups, 8 * 7);
}

#[test]
fn attention_with_half_key_values_and_odd_scale() {
    let mut g = Graph::new();
    let q = input(&mut g, "q", DType::F32, &[c(1), c(3), c(4), c(16)]);
    let k = weight(&mut g, "k", DType::F16, &[1, 100, 2, 16]);
    let v = weight(&mut g, "v", DType::BF16, &[1, 100, 2, 24]);
    let r = run(&mut g, Op::Attention { causal: true, scale: 0.1 / 3.0, window: None }, &[q, k, v], &env(&[]));
    assert_eq!(r.params, vec![1, 3, 4, 100, 2, 1]);
    assert_eq!(r.workgroups, 2 * 2);
    let id = add(&mut g, Op::Attention { causal: true, scale: f32::NAN, window: None }, &[q, k, v]);
    assert!(unsupported(&g, id).contains("finite"));
}
