//! Batched matmul with broadcast batch axes, in two strategies chosen per dispatch from M (a runtime value):
//!
//! - Tiled: a TILE×TILE output tile per workgroup of 256 invocations (16×16), each computing TM×TN outputs in
//!   registers as two 4-wide groups per axis half a tile apart, so that neighbouring invocations read neighbouring
//!   vec4s of workgroup memory. K advances in slices of BK staged through workgroup memory (k-major, 16 KiB); the
//!   next slice is fetched into registers while the current one is multiplied.
//! - Skinny, for M ≤ 128 (decoding, short prompts): there would be too few tiles to occupy the GPU, so each
//!   workgroup instead computes 4 rows of a few columns, its invocations splitting K, and sums their partial dot
//!   products in workgroup memory. The columns and lanes are laid out so that B is read along its contiguous axis.
//!
//! The dispatch covers whichever is chosen; workgroups past its work return at once.
//!
//! Params: M, N, K, A's strides along m and k, B's along k and n (so one body serves every transpose case), the tile
//! counts along m and n, the batch count, then 4 batch dims, A's 4 batch strides and B's 4 (0 where broadcast).

use crate::CodegenError;
use crate::shader::{Access, Node, Parts, at_most, expr, product};
use tfc_ir::layout::MatmulLayout;
use std::fmt::Write;
use tfc_ir::Expr;

const TILE: u32 = 128;
const BK: u32 = 8;
/// Outputs per invocation along m and n.
const TM: u32 = 8;
const TN: u32 = 8;
const BATCH_AXES: usize = 4;
/// Up to this M, the skinny strategy, over groups of 4 rows.
const SKINNY_ROWS: u32 = 128;
/// Below this many output tiles (about one wave of workgroups on a large GPU) the tiled strategy leaves most of the
/// GPU idle, and the skinny one is faster whatever M is.
const MIN_TILES: u32 = 128;
/// Pairs of k per lane and step of the skinny strategy's loop.
const SKINNY_UNROLL: u32 = 4;

pub(crate) fn matmul(node: &Node, transpose_a: bool, transpose_b: bool) -> Result<Parts, CodegenError> {
    let out_batch = &node.output.shape[..node.output.shape.len() - 2];
    let layout = MatmulLayout::new(&node.inputs[0].shape, &node.inputs[1].shape, &node.output.shape, transpose_a, transpose_b, BATCH_AXES)
        .map_err(|e| node.error(format!("{} × {}: {e}", node.inputs[0], node.inputs[1])))?;
    let MatmulLayout { m, n, k, a_m, a_k, b_k, b_n, batch_dims: dims, batch_strides } = &layout;

    let tiles_m = Expr::ceil_div(expr(m), Expr::Const(TILE as u64));
    let tiles_n = Expr::ceil_div(expr(n), Expr::Const(TILE as u64));
    let batches = product(out_batch);
    let skinny = Skinny::new(transpose_b);
    let mut parts = Parts::new("matmul", 256);
    parts.summary = format!(
        "A{} × B{}: {TILE}×{TILE} tiles with K-slices of {BK}, or for M ≤ {SKINNY_ROWS} or fewer than {MIN_TILES} tiles 4 rows × {} columns per workgroup",
        if transpose_a { "ᵀ" } else { "" },
        if transpose_b { "ᵀ" } else { "" },
        skinny.columns,
    );
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, Access::Float)).collect();
    // The skinny strategy's column blocks × row groups of 4, when it is the one chosen (`at_most` is 1 or 0, and
    // the larger of two such is their "or").
    let tiles = Expr::product(vec![tiles_m.clone(), tiles_n.clone()]);
    let skinny_groups = Expr::product(vec![
        Expr::ceil_div(expr(n), Expr::Const(skinny.columns as u64)),
        Expr::ceil_div(expr(m), Expr::Const(4)),
        Expr::max(vec![at_most(expr(m), SKINNY_ROWS as u64), at_most(tiles, MIN_TILES as u64 - 1)]),
    ]);
    parts.workgroups = Expr::product(vec![
        Expr::max(vec![Expr::product(vec![tiles_m.clone(), tiles_n.clone()]), skinny_groups]),
        batches.clone(),
    ]);
    parts.params =
        vec![expr(m), expr(n), expr(k), expr(a_m), expr(a_k), expr(b_k), expr(b_n), tiles_m, tiles_n, batches];
    parts.params.extend(dims.iter().map(expr));
    for s in batch_strides {
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

/// Where this invocation's run of 4 elements of an operand's slice starts, as WGSL (row, k) in the tile.
/// `k_contiguous`: the operand is contiguous along k, so the run goes along k; otherwise along its rows.
fn run_start(k_contiguous: bool) -> String {
    if k_contiguous {
        let runs = BK / 4;
        format!("vec2<u32>(lid / {runs}u, (lid % {runs}u) * 4u)")
    } else {
        let runs = TILE / 4;
        format!("vec2<u32>((lid % {runs}u) * 4u, lid / {runs}u)")
    }
}

fn decls(transpose_a: bool, transpose_b: bool, skinny: &Skinny) -> String {
    let vecs = TILE / 4;
    let slice = BK * vecs;
    let mut s = format!("const SKINNY_ROWS: u32 = {SKINNY_ROWS}u;\nconst MIN_TILES: u32 = {MIN_TILES}u;\n\n");
    // An operand's load and store functions, given the params holding its strides along its rows (m for A, n for B)
    // and along k, and its row count.
    let operand = |name: &str, k_contiguous: bool, row_stride: u32, k_stride: u32, rows: u32| -> String {
        let (run_stride, store) = if k_contiguous {
            (
                k_stride,
                format!(
                    "    for (var j = 0u; j < 4u; j++) {{\n        {name}_tile[buffer + (start.y + j) * {vecs}u + start.x / 4u][start.x % 4u] = v[j];\n    }}"
                ),
            )
        } else {
            (row_stride, format!("    {name}_tile[buffer + start.y * {vecs}u + start.x / 4u] = v;"))
        };
        let check = if k_contiguous {
            format!("start.x < param({rows}u) && k + j < param(2u)")
        } else {
            format!("start.x + j < param({rows}u) && k < param(2u)")
        };
        format!(
            "
// This invocation's 4 elements of the {name} slice at k0, in a run along the operand's contiguous axis from tile
// coordinates `start` (row, k); `at` is the address of the first for k0 = 0.
fn load_{name}(at: u32, start: vec2<u32>, k0: u32) -> vec4<f32> {{
    var v = vec4<f32>(0.0);
    let k = k0 + start.y;
    let first = at + k0 * param({k_stride}u);
    for (var j = 0u; j < 4u; j++) {{
        if {check} {{
            v[j] = load_in{input}(first + j * param({run_stride}u));
        }}
    }}
    return v;
}}

fn store_{name}(v: vec4<f32>, start: vec2<u32>, buffer: u32) {{
{store}
}}
",
            input = if name == "a" { 0 } else { 1 },
        )
    };
    write!(
        s,
        "\
// Two buffers of one K-slice of each tile, k-major so that a vec4 holds 4 consecutive rows of A or columns of B:
// a_tile[b·{slice} + k·{vecs} + m/4][m % 4] = A(m0 + m, k0 + k), b_tile[b·{slice} + k·{vecs} + n/4][n % 4] = B(k0 + k, n0 + n).
var<workgroup> a_tile: array<vec4<f32>, {len}>;
var<workgroup> b_tile: array<vec4<f32>, {len}>;

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
{a}{b}
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
        len = 2 * slice,
        a = operand("a", !transpose_a, 3, 4, 0),
        b = operand("b", transpose_b, 6, 5, 1),
    )
    .unwrap();
    writeln!(
        s,
        "
fn tiled(group: u32, lid: u32) {{
    let tiles_m = param(7u);
    let tiles_n = param(8u);
    let tile_n = group % tiles_n;
    let tile_m = (group / tiles_n) % tiles_m;
    let batch = group / tiles_n / tiles_m;
    if batch >= param(9u) {{
        return;
    }}
    let base = batch_offsets(batch);
    let m0 = tile_m * {TILE}u;
    let n0 = tile_n * {TILE}u;
    // This invocation's runs of the A and B slices start at tile coordinates (row, k) a_tile_at and b_tile_at,
    // matrix coordinates a_start and b_start, and addresses a_at and b_at in the first slice.
    let a_tile_at = {a_start};
    let b_tile_at = {b_start};
    let a_start = vec2<u32>(m0, 0u) + a_tile_at;
    let b_start = vec2<u32>(n0, 0u) + b_tile_at;
    let a_at = base.x + a_start.x * param(3u) + a_start.y * param(4u);
    let b_at = base.y + b_start.x * param(6u) + b_start.y * param(5u);
    // This invocation's outputs: rows m0 + 4·ty + (0..4) and {half} more, columns n0 + 4·tx + (0..4) and {half} more.
    let tx = lid % 16u;
    let ty = lid / 16u;",
        a_start = run_start(!transpose_a),
        b_start = run_start(transpose_b),
        half = TILE / 2,
    )
    .unwrap();
    for i in 0..TM {
        for g in 0..TN / 4 {
            writeln!(s, "    var acc{i}_{g} = vec4<f32>(0.0);").unwrap();
        }
    }
    writeln!(
        s,
        "    var a_next = load_a(a_at, a_start, 0u);
    var b_next = load_b(b_at, b_start, 0u);
    let slices = (param(2u) + {last}u) / {BK}u;
    for (var s = 0u; s < slices; s++) {{
        // Alternate buffers, so one barrier per slice keeps writers off the buffer being read.
        let buffer = (s % 2u) * {slice}u;
        store_a(a_next, a_tile_at, buffer);
        store_b(b_next, b_tile_at, buffer);
        workgroupBarrier();
        if s + 1u < slices {{
            a_next = load_a(a_at, a_start, (s + 1u) * {BK}u);
            b_next = load_b(b_at, b_start, (s + 1u) * {BK}u);
        }}
        // The slice's {BK} steps of k, unrolled.",
        last = BK - 1,
    )
    .unwrap();
    let half = TILE / 8;
    for k in 0..BK {
        let row = k * vecs;
        for r in 0..TM / 4 {
            writeln!(s, "        let a{r}_{k} = a_tile[buffer + {}u + ty];", row + r * half).unwrap();
        }
        for g in 0..TN / 4 {
            writeln!(s, "        let b{g}_{k} = b_tile[buffer + {}u + tx];", row + g * half).unwrap();
        }
        for i in 0..TM {
            let lane = ["x", "y", "z", "w"][(i % 4) as usize];
            for g in 0..TN / 4 {
                writeln!(s, "        acc{i}_{g} += a{}_{k}.{lane} * b{g}_{k};", i / 4).unwrap();
            }
        }
    }
    s.push_str("    }\n    let out_base = batch * param(0u) * param(1u);\n");
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
    s.push_str(&skinny_fn(skinny));
    s
}

fn skinny_fn(skinny: &Skinny) -> String {
    let Skinny { columns, lanes, lanes_adjacent } = *skinny;
    let (column, lane, slot) = if lanes_adjacent {
        (format!("lid / {lanes}u"), format!("lid % {lanes}u"), format!("c * {lanes}u + l"))
    } else {
        (format!("lid % {columns}u"), format!("lid / {columns}u"), format!("l * {columns}u + c"))
    };
    let step = 2 * lanes;
    let mut unrolled = String::new();
    for u in 0..SKINNY_UNROLL {
        let k = if u == 0 { "k".to_string() } else { format!("k + {}u", u * step) };
        writeln!(
            unrolled,
            "            acc += a_column(base.x, rows, {k}) * load_in1(b_at + ({k}) * param(5u)) + a_column(base.x, rows, {k} + 1u) * load_in1(b_at + ({k} + 1u) * param(5u));"
        )
        .unwrap();
    }
    format!(
        "
// Column k of the `rows` (1 to 4) rows of A from `base`.
fn a_column(base: u32, rows: u32, k: u32) -> vec4<f32> {{
    let at = base + k * param(4u);
    var v = vec4<f32>(load_in0(at), 0.0, 0.0, 0.0);
    if rows > 1u {{
        v.y = load_in0(at + param(3u));
    }}
    if rows > 2u {{
        v.z = load_in0(at + 2u * param(3u));
    }}
    if rows > 3u {{
        v.w = load_in0(at + 3u * param(3u));
    }}
    return v;
}}

// A group of 4 rows and {columns} columns: {lanes} invocations per column split K in pairs of
// neighbouring k (one word of a 16-bit B), {SKINNY_UNROLL} pairs at a time so that their loads overlap, and their
// partial sums (a vec4 over the rows) meet in a_tile.
fn skinny(group: u32, lid: u32) {{
    let blocks = (param(1u) + {last_column}u) / {columns}u;
    let row_groups = (param(0u) + 3u) / 4u;
    let n0 = (group % blocks) * {columns}u;
    let m0 = ((group / blocks) % row_groups) * 4u;
    let batch = group / blocks / row_groups;
    if batch >= param(9u) {{
        return;
    }}
    let rows = min(4u, param(0u) - m0);
    let base = batch_offsets(batch) + vec2<u32>(m0 * param(3u), 0u);
    let n = n0 + {column};
    let b_at = base.y + n * param(6u);
    var acc = vec4<f32>(0.0);
    if n < param(1u) {{
        var k = 2u * ({lane});
        for (; k + {last_k}u < param(2u); k += {stride}u) {{
{unrolled}        }}
        for (; k < param(2u); k += {step}u) {{
            acc += a_column(base.x, rows, k) * load_in1(b_at + k * param(5u));
            if k + 1u < param(2u) {{
                acc += a_column(base.x, rows, k + 1u) * load_in1(b_at + (k + 1u) * param(5u));
            }}
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
        for (var m = 0u; m < rows; m++) {{
            out[out_base + (m0 + m) * param(1u) + n0 + c] = sum[m];
        }}
    }}
}}
",
        last_column = columns - 1,
        last_k = (SKINNY_UNROLL - 1) * step + 1,
        stride = SKINNY_UNROLL * step,
    )
}

const BODY: &str = "    if param(0u) <= SKINNY_ROWS || param(7u) * param(8u) < MIN_TILES {
        skinny(group, lid);
    } else {
        tiled(group, lid);
    }
";
