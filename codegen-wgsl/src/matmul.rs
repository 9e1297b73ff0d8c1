//! Batched matmul with broadcast batch axes: a 64×64 output tile per workgroup of 256 invocations (16×16), each
//! computing a 4×4 block in registers, over K-slices of 16 staged through workgroup memory (8 KiB). The next slice is
//! fetched into registers while the current one is multiplied.
//!
//! Params: M, N, K, A's strides along m and k, B's along k and n (so one body serves every transpose case), the tile
//! counts along m and n, the batch count, then 4 batch dims, A's 4 batch strides and B's 4 (0 where broadcast).

use crate::CodegenError;
use crate::shader::{Access, Node, Parts, broadcast_axes, expr, product};
use tfc_ir::{Dim, Expr};

const TILE: u64 = 64;
const BATCH_AXES: usize = 4;

pub(crate) fn matmul(node: &Node, transpose_a: bool, transpose_b: bool) -> Result<Parts, CodegenError> {
    let (a, b) = (&node.inputs[0].shape, &node.inputs[1].shape);
    let (ra, ca) = (&a[a.len() - 2], &a[a.len() - 1]);
    let (rb, cb) = (&b[b.len() - 2], &b[b.len() - 1]);
    let (m, k) = if transpose_a { (ca, ra) } else { (ra, ca) };
    let n = if transpose_b { rb } else { cb };
    let one = Dim::from(1u64);
    // Element strides of A(m, k) and B(k, n) within one matrix.
    let (a_m, a_k) = if transpose_a { (one.clone(), m.clone()) } else { (k.clone(), one.clone()) };
    let (b_k, b_n) = if transpose_b { (one.clone(), k.clone()) } else { (n.clone(), one.clone()) };

    let out_batch = &node.output.shape[..node.output.shape.len() - 2];
    let (mut dims, strides) = broadcast_axes(out_batch, &[&a[..a.len() - 2], &b[..b.len() - 2]]);
    if dims.len() > BATCH_AXES {
        return Err(node.error(format!(
            "{} × {} has {} batch axes that broadcast differently; the kernel takes up to {BATCH_AXES}: reshape to merge them",
            node.inputs[0], node.inputs[1], dims.len()
        )));
    }
    let matrix_a = ra * ca;
    let matrix_b = rb * cb;
    let mut batch_strides: Vec<Vec<Dim>> = strides
        .into_iter()
        .zip([&matrix_a, &matrix_b])
        .map(|(s, size)| s.iter().map(|x| x * size).collect())
        .collect();
    // Pad at the front: leading axes of size 1 and stride 0 change nothing.
    while dims.len() < BATCH_AXES {
        dims.insert(0, one.clone());
        for s in &mut batch_strides {
            s.insert(0, Dim::from(0u64));
        }
    }

    let tiles_m = Expr::ceil_div(expr(m), Expr::Const(TILE));
    let tiles_n = Expr::ceil_div(expr(n), Expr::Const(TILE));
    let batches = product(out_batch);
    let mut parts = Parts::new("matmul", 256);
    parts.summary = format!(
        "A{} × B{}, 64×64 tiles, K-slices of 16",
        if transpose_a { "ᵀ" } else { "" },
        if transpose_b { "ᵀ" } else { "" }
    );
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, Access::Float)).collect();
    parts.workgroups = Expr::product(vec![tiles_m.clone(), tiles_n.clone(), batches.clone()]);
    parts.params = vec![expr(m), expr(n), expr(k), expr(&a_m), expr(&a_k), expr(&b_k), expr(&b_n), tiles_m, tiles_n, batches];
    parts.params.extend(dims.iter().map(expr));
    for s in &batch_strides {
        parts.params.extend(s.iter().map(expr));
    }

    // Each invocation loads 4 elements of each tile per slice, 4 consecutive ones along the operand's contiguous
    // axis so that neighbouring invocations read neighbouring addresses: (row, k) for A, (k, col) for B.
    let a_coord = if transpose_a { "vec2<u32>((lid % 16u) * 4u + j, lid / 16u)" } else { "vec2<u32>(lid / 4u, (lid % 4u) * 4u + j)" };
    let b_coord = if transpose_b { "vec2<u32>((lid % 4u) * 4u + j, lid / 4u)" } else { "vec2<u32>(lid / 16u, (lid % 16u) * 4u + j)" };
    parts.decls = DECLS.replace("{a_coord}", a_coord).replace("{b_coord}", b_coord);
    parts.body = BODY.to_string();
    Ok(parts)
}

const DECLS: &str = "\
// The current K-slice of the tiles, k-major so that a vec4 holds 4 consecutive rows of A or columns of B:
// a_tile[k * 16 + m / 4][m % 4] = A(m0 + m, k0 + k), b_tile[k * 16 + n / 4][n % 4] = B(k0 + k, n0 + n).
var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

// Tile coordinates (m, k) of this invocation's j-th element of the A slice.
fn a_coord(lid: u32, j: u32) -> vec2<u32> {
    return {a_coord};
}

// Tile coordinates (k, n) of this invocation's j-th element of the B slice.
fn b_coord(lid: u32, j: u32) -> vec2<u32> {
    return {b_coord};
}

fn load_a(base: u32, m0: u32, k0: u32, lid: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let c = a_coord(lid, j);
        let m = m0 + c.x;
        let k = k0 + c.y;
        if m < param(0u) && k < param(2u) {
            v[j] = load_in0(base + m * param(3u) + k * param(4u));
        }
    }
    return v;
}

fn load_b(base: u32, n0: u32, k0: u32, lid: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let c = b_coord(lid, j);
        let k = k0 + c.x;
        let n = n0 + c.y;
        if k < param(2u) && n < param(1u) {
            v[j] = load_in1(base + k * param(5u) + n * param(6u));
        }
    }
    return v;
}

fn store_tiles(a: vec4<f32>, b: vec4<f32>, lid: u32) {
    for (var j = 0u; j < 4u; j++) {
        let ca = a_coord(lid, j);
        a_tile[ca.y * 16u + ca.x / 4u][ca.x % 4u] = a[j];
        let cb = b_coord(lid, j);
        b_tile[cb.x * 16u + cb.y / 4u][cb.y % 4u] = b[j];
    }
}

// Row m, columns n..n + 3 of the output matrix at `base`, where they exist.
fn store_row(base: u32, m: u32, n: u32, v: vec4<f32>) {
    if m >= param(0u) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if n + j < param(1u) {
            out[base + m * param(1u) + n + j] = v[j];
        }
    }
}
";

const BODY: &str = "\
    let tiles_m = param(7u);
    let tiles_n = param(8u);
    let tile_n = group % tiles_n;
    let tile_m = (group / tiles_n) % tiles_m;
    let batch = group / tiles_n / tiles_m;
    if batch >= param(9u) {
        return;
    }
    var a_base = 0u;
    var b_base = 0u;
    var rest = batch;
    for (var k = 0u; k < 4u; k++) {
        let axis = 3u - k;
        let c = rest % param(10u + axis);
        rest = rest / param(10u + axis);
        a_base += c * param(14u + axis);
        b_base += c * param(18u + axis);
    }
    let m0 = tile_m * 64u;
    let n0 = tile_n * 64u;
    // This invocation's outputs: rows m0 + 4·ty + (0..4), columns n0 + 4·tx + (0..4).
    let tx = lid % 16u;
    let ty = lid / 16u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var a_next = load_a(a_base, m0, 0u, lid);
    var b_next = load_b(b_base, n0, 0u, lid);
    let slices = (param(2u) + 15u) / 16u;
    for (var s = 0u; s < slices; s++) {
        store_tiles(a_next, b_next, lid);
        workgroupBarrier();
        if s + 1u < slices {
            a_next = load_a(a_base, m0, (s + 1u) * 16u, lid);
            b_next = load_b(b_base, n0, (s + 1u) * 16u, lid);
        }
        for (var k = 0u; k < 16u; k++) {
            let a = a_tile[k * 16u + ty];
            let b = b_tile[k * 16u + tx];
            acc0 += a.x * b;
            acc1 += a.y * b;
            acc2 += a.z * b;
            acc3 += a.w * b;
        }
        workgroupBarrier();
    }
    let out_base = batch * param(0u) * param(1u);
    store_row(out_base, m0 + 4u * ty, n0 + 4u * tx, acc0);
    store_row(out_base, m0 + 4u * ty + 1u, n0 + 4u * tx, acc1);
    store_row(out_base, m0 + 4u * ty + 2u, n0 + 4u * tx, acc2);
    store_row(out_base, m0 + 4u * ty + 3u, n0 + 4u * tx, acc3);
";
