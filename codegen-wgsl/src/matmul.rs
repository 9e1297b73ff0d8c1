//! Batched matmul with broadcast batch axes, in two strategies chosen per dispatch from M (a runtime value):
//!
//! - Tiled: a TILE×TILE output tile per workgroup of 256 invocations (16×16), each computing TM×TN outputs in
//!   registers as two 4-wide groups per axis half a tile apart, so that neighbouring invocations read neighbouring
//!   vec4s of workgroup memory. K advances in slices of BK staged through workgroup memory (k-major, 16 KiB); the
//!   next slice is fetched into registers while the current one is multiplied.
//! - Skinny, for M ≤ 4 (decoding one token): a tile of M×M wastes almost all of its work, so each workgroup
//!   instead computes all M rows of a few columns, its invocations splitting K, and sums their partial dot
//!   products in workgroup memory. The columns and lanes are laid out so that B is read along its contiguous axis.
//!
//! The dispatch covers both; workgroups past the chosen strategy's work return at once.
//!
//! Params: M, N, K, A's strides along m and k, B's along k and n (so one body serves every transpose case), the tile
//! counts along m and n, the batch count, then 4 batch dims, A's 4 batch strides and B's 4 (0 where broadcast).

use crate::CodegenError;
use crate::shader::{Access, Node, Parts, broadcast_axes, expr, product};
use std::fmt::Write;
use tfc_ir::{Dim, Expr};

const TILE: u32 = 128;
const BK: u32 = 16;
/// Outputs per invocation along m and n.
const TM: u32 = 8;
const TN: u32 = 8;
const BATCH_AXES: usize = 4;
const SKINNY_ROWS: u32 = 4;

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

    let tiles_m = Expr::ceil_div(expr(m), Expr::Const(TILE as u64));
    let tiles_n = Expr::ceil_div(expr(n), Expr::Const(TILE as u64));
    let batches = product(out_batch);
    let skinny = Skinny::new(transpose_b);
    let mut parts = Parts::new("matmul", 256);
    parts.summary = format!(
        "A{} × B{}: {TILE}×{TILE} tiles with K-slices of {BK}, or for M ≤ {SKINNY_ROWS} {} columns per workgroup",
        if transpose_a { "ᵀ" } else { "" },
        if transpose_b { "ᵀ" } else { "" },
        skinny.columns,
    );
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, Access::Float)).collect();
    let skinny_blocks = Expr::ceil_div(expr(n), Expr::Const(skinny.columns as u64));
    parts.workgroups = Expr::product(vec![
        Expr::max(vec![Expr::product(vec![tiles_m.clone(), tiles_n.clone()]), skinny_blocks]),
        batches.clone(),
    ]);
    parts.params = vec![expr(m), expr(n), expr(k), expr(&a_m), expr(&a_k), expr(&b_k), expr(&b_n), tiles_m, tiles_n, batches];
    parts.params.extend(dims.iter().map(expr));
    for s in &batch_strides {
        parts.params.extend(s.iter().map(expr));
    }
    parts.decls = decls(transpose_a, transpose_b, &skinny);
    parts.body = BODY.to_string();
    Ok(parts)
}

/// The skinny strategy's layout: `columns` per workgroup, each split over `lanes` invocations along K.
struct Skinny {
    columns: u32,
    lanes: u32,
    /// Whether the lanes of a column are neighbouring invocations (B contiguous along k) rather than the columns.
    lanes_adjacent: bool,
}

impl Skinny {
    fn new(transpose_b: bool) -> Skinny {
        if transpose_b {
            Skinny { columns: 8, lanes: 32, lanes_adjacent: true }
        } else {
            Skinny { columns: 16, lanes: 16, lanes_adjacent: false }
        }
    }
}

/// The tile coordinates (row, k) of this invocation's j-th loaded element of one operand's slice. `k_contiguous`:
/// the operand is contiguous along k, so each invocation reads a run of k; otherwise a run of rows.
fn slice_coord(k_contiguous: bool) -> String {
    let per = TILE * BK / 256;
    if k_contiguous {
        let runs = BK / per;
        format!("vec2<u32>(lid / {runs}u, (lid % {runs}u) * {per}u + j)")
    } else {
        let runs = TILE / per;
        format!("vec2<u32>((lid % {runs}u) * {per}u + j, lid / {runs}u)")
    }
}

fn decls(transpose_a: bool, transpose_b: bool, skinny: &Skinny) -> String {
    let per = TILE * BK / 256;
    let vecs = TILE / 4;
    let mut s = format!(
        "\
// The current K-slice of the tiles, k-major so that a vec4 holds 4 consecutive rows of A or columns of B:
// a_tile[k * {vecs} + m / 4][m % 4] = A(m0 + m, k0 + k), b_tile[k * {vecs} + n / 4][n % 4] = B(k0 + k, n0 + n).
var<workgroup> a_tile: array<vec4<f32>, {a_len}>;
var<workgroup> b_tile: array<vec4<f32>, {a_len}>;

// Tile coordinates (m, k) of this invocation's j-th element of the A slice.
fn a_coord(lid: u32, j: u32) -> vec2<u32> {{
    return {a_coord};
}}

// Tile coordinates (n, k) of this invocation's j-th element of the B slice.
fn b_coord(lid: u32, j: u32) -> vec2<u32> {{
    return {b_coord};
}}

// Offsets of A and B for a batch index, over the 4 batch axes, last fastest.
fn batch_offsets(batch: u32) -> vec2<u32> {{
    var offsets = vec2<u32>(0u, 0u);
    var rest = batch;
    for (var k = 0u; k < 4u; k++) {{
        let axis = 3u - k;
        let c = rest % param(10u + axis);
        rest = rest / param(10u + axis);
        offsets += c * vec2<u32>(param(14u + axis), param(18u + axis));
    }}
    return offsets;
}}

fn load_a(base: u32, m0: u32, k0: u32, lid: u32) -> array<f32, {per}> {{
    var v: array<f32, {per}>;
    for (var j = 0u; j < {per}u; j++) {{
        let c = a_coord(lid, j);
        let m = m0 + c.x;
        let k = k0 + c.y;
        if m < param(0u) && k < param(2u) {{
            v[j] = load_in0(base + m * param(3u) + k * param(4u));
        }}
    }}
    return v;
}}

fn load_b(base: u32, n0: u32, k0: u32, lid: u32) -> array<f32, {per}> {{
    var v: array<f32, {per}>;
    for (var j = 0u; j < {per}u; j++) {{
        let c = b_coord(lid, j);
        let n = n0 + c.x;
        let k = k0 + c.y;
        if k < param(2u) && n < param(1u) {{
            v[j] = load_in1(base + k * param(5u) + n * param(6u));
        }}
    }}
    return v;
}}

fn store_tiles(a: array<f32, {per}>, b: array<f32, {per}>, lid: u32) {{
    for (var j = 0u; j < {per}u; j++) {{
        let ca = a_coord(lid, j);
        a_tile[ca.y * {vecs}u + ca.x / 4u][ca.x % 4u] = a[j];
        let cb = b_coord(lid, j);
        b_tile[cb.y * {vecs}u + cb.x / 4u][cb.x % 4u] = b[j];
    }}
}}

// Row m, columns n..n + 3 of the output matrix at `base`, where they exist.
fn store_row(base: u32, m: u32, n: u32, v: vec4<f32>) {{
    if m >= param(0u) {{
        return;
    }}
    for (var j = 0u; j < 4u; j++) {{
        if n + j < param(1u) {{
            out[base + m * param(1u) + n + j] = v[j];
        }}
    }}
}}
",
        a_len = BK * TILE / 4,
        a_coord = slice_coord(!transpose_a),
        b_coord = slice_coord(transpose_b),
    );
    s.push_str(&tiled());
    s.push_str(&skinny_fn(skinny));
    s
}

/// The tiled strategy, with the TM×TN accumulators as named vec4s (rows i, column groups g) so that they stay in
/// registers.
fn tiled() -> String {
    let vecs = TILE / 4;
    let half = TILE / 8;
    let mut s = String::new();
    writeln!(s, "\nfn tiled(group: u32, lid: u32) {{").unwrap();
    s.push_str(
        "    let tiles_m = param(7u);
    let tiles_n = param(8u);
    let tile_n = group % tiles_n;
    let tile_m = (group / tiles_n) % tiles_m;
    let batch = group / tiles_n / tiles_m;
    if batch >= param(9u) {
        return;
    }
    let base = batch_offsets(batch);
",
    );
    writeln!(
        s,
        "    let m0 = tile_m * {TILE}u;
    let n0 = tile_n * {TILE}u;
    // This invocation's rows are m0 + 4·ty + (0..4) and {half4} more, its columns n0 + 4·tx + (0..4) and {half4} more.
    let tx = lid % 16u;
    let ty = lid / 16u;",
        half4 = TILE / 2
    )
    .unwrap();
    for i in 0..TM {
        for g in 0..TN / 4 {
            writeln!(s, "    var acc{i}_{g} = vec4<f32>(0.0);").unwrap();
        }
    }
    writeln!(
        s,
        "    var a_next = load_a(base.x, m0, 0u, lid);
    var b_next = load_b(base.y, n0, 0u, lid);
    let slices = (param(2u) + {}u) / {BK}u;
    for (var s = 0u; s < slices; s++) {{
        store_tiles(a_next, b_next, lid);
        workgroupBarrier();
        if s + 1u < slices {{
            a_next = load_a(base.x, m0, (s + 1u) * {BK}u, lid);
            b_next = load_b(base.y, n0, (s + 1u) * {BK}u, lid);
        }}
        for (var k = 0u; k < {BK}u; k++) {{",
        BK - 1
    )
    .unwrap();
    for r in 0..TM / 4 {
        writeln!(s, "            let a{r} = a_tile[k * {vecs}u + ty + {}u];", r * half).unwrap();
    }
    for g in 0..TN / 4 {
        writeln!(s, "            let b{g} = b_tile[k * {vecs}u + tx + {}u];", g * half).unwrap();
    }
    for i in 0..TM {
        let lane = ["x", "y", "z", "w"][(i % 4) as usize];
        for g in 0..TN / 4 {
            writeln!(s, "            acc{i}_{g} += a{}.{lane} * b{g};", i / 4).unwrap();
        }
    }
    s.push_str("        }\n        workgroupBarrier();\n    }\n    let out_base = batch * param(0u) * param(1u);\n");
    for i in 0..TM {
        for g in 0..TN / 4 {
            writeln!(
                s,
                "    store_row(out_base, m0 + 4u * ty + {}u, n0 + 4u * tx + {}u, acc{i}_{g});",
                (i / 4) * (TILE / 2) + i % 4,
                g * (TILE / 2)
            )
            .unwrap();
        }
    }
    s.push_str("}\n");
    s
}

fn skinny_fn(skinny: &Skinny) -> String {
    let Skinny { columns, lanes, lanes_adjacent } = *skinny;
    let (column, lane, slot) = if lanes_adjacent {
        (format!("lid / {lanes}u"), format!("lid % {lanes}u"), format!("c * {lanes}u + l"))
    } else {
        (format!("lid % {columns}u"), format!("lid / {columns}u"), format!("l * {columns}u + c"))
    };
    format!(
        "
// Up to {SKINNY_ROWS} rows of A at column k.
fn a_column(base: u32, k: u32) -> vec4<f32> {{
    var v = vec4<f32>(0.0);
    for (var m = 0u; m < {SKINNY_ROWS}u; m++) {{
        if m < param(0u) {{
            v[m] = load_in0(base + m * param(3u) + k * param(4u));
        }}
    }}
    return v;
}}

// All M ≤ {SKINNY_ROWS} rows of {columns} columns: {lanes} invocations per column split K, and their partial sums (a
// vec4 over the rows) meet in a_tile.
fn skinny(group: u32, lid: u32) {{
    let blocks = (param(1u) + {}u) / {columns}u;
    let n0 = (group % blocks) * {columns}u;
    let batch = group / blocks;
    if batch >= param(9u) {{
        return;
    }}
    let base = batch_offsets(batch);
    let n = n0 + {column};
    var acc = vec4<f32>(0.0);
    if n < param(1u) {{
        for (var k = {lane}; k < param(2u); k += {lanes}u) {{
            acc += a_column(base.x, k) * load_in1(base.y + k * param(5u) + n * param(6u));
        }}
    }}
    a_tile[lid] = acc;
    workgroupBarrier();
    let c = lid;
    if c < {columns}u && n0 + c < param(1u) {{
        var sum = vec4<f32>(0.0);
        for (var l = 0u; l < {lanes}u; l++) {{
            sum += a_tile[{slot}];
        }}
        let out_base = batch * param(0u) * param(1u);
        for (var m = 0u; m < param(0u); m++) {{
            out[out_base + m * param(1u) + n0 + c] = sum[m];
        }}
    }}
}}
",
        columns - 1
    )
}

const BODY: &str = "    if param(0u) <= 4u {
        skinny(group, lid);
    } else {
        tiled(group, lid);
    }
";
