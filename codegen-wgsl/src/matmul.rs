//! Batched matmul with broadcast batch axes, in up to four strategies chosen per dispatch from M and N (runtime
//! values):
//!
//! - Matrix-vector, where B is a 2-D `[N, K]` read transposed (a linear layer's weight) with rows of whole units
//!   (K a constant multiple of 4 for f32, of 8 for f16 and bf16), for at most 4 rows of A over all batches
//!   (decoding): `matvec.rs`, which streams B once in 16-byte loads.
//! - Tiled: a T×T output tile per workgroup of 256 invocations (16×16), each computing T/16 × T/16 outputs in
//!   registers as 4-wide groups T/2 apart along each axis (one group for T = 64), so that neighbouring invocations
//!   read neighbouring vec4s of workgroup memory. K advances in slices of 1024/T staged through workgroup memory
//!   (k-major, 16 KiB); the next slice is fetched into registers while the current one is multiplied. T is 128
//!   where that makes enough tiles to occupy a large GPU, else 64 (prompts of tens to hundreds of tokens).
//! - Skinny, otherwise for M ≤ 16 (decoding, short prompts) or too few 64-tiles: each workgroup computes 4 rows of
//!   a few columns, its invocations splitting K, and sums their partial dot products in workgroup memory. The
//!   columns and lanes are laid out so that B is read along its contiguous axis.
//!
//! The dispatch covers whichever is chosen; workgroups past its work return at once. The tiled strategy also
//! serves the block-quantized kernel (`quant_matmul.rs`), whose B is decoded as it is staged.
//!
//! Params: M, N, K, A's strides along m and k, B's along k and n (so one body serves every transpose case), the
//! batch count, then 4 batch dims, A's 4 batch strides and B's 4 (0 where broadcast).

use crate::CodegenError;
use crate::matvec::{MAX_X_ROWS, Matvec};
use crate::shader::{Access, Node, Parts, at_most, expr, product};
use std::fmt::Write;
use tfc_ir::layout::MatmulLayout;
use tfc_ir::{Dim, Expr};

/// The tile sides of the tiled strategy.
const LARGE_TILE: u32 = 128;
const SMALL_TILE: u32 = 64;
/// Elements of one operand's K-slice: one run of 4 per invocation.
const SLICE: u32 = 1024;
const BATCH_AXES: usize = 4;
/// Up to this M, the skinny strategy, over groups of 4 rows.
const SKINNY_ROWS: u32 = 16;
/// Fewer 64-tiles than this leave most of a large GPU idle; the skinny strategy is then faster whatever M is.
const MIN_SMALL_TILES: u32 = 32;
/// From this many 128-tiles (about one wave of workgroups on a large GPU), the large tile.
const MIN_LARGE_TILES: u32 = 128;
/// Pairs of k per lane and step of the skinny strategy's loop.
const SKINNY_UNROLL: u32 = 4;

pub(crate) fn matmul(node: &Node, transpose_a: bool, transpose_b: bool) -> Result<Parts, CodegenError> {
    let out_batch = &node.output.shape[..node.output.shape.len() - 2];
    let layout = MatmulLayout::new(&node.inputs[0].shape, &node.inputs[1].shape, &node.output.shape, transpose_a, transpose_b, BATCH_AXES)
        .map_err(|e| node.error(format!("{} × {}: {e}", node.inputs[0], node.inputs[1])))?;
    let MatmulLayout { m, n, k, a_m, a_k, b_k, b_n, batch_dims: dims, batch_strides } = &layout;

    let batches = product(out_batch);
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let matvec = match b.shape.last().and_then(Dim::as_const) {
        Some(k) if !transpose_a && transpose_b && b.rank() == 2 && k <= u32::MAX as u64 => Matvec::float(a.dtype, b.dtype, k as u32),
        _ => None,
    };
    let skinny = Skinny::new(transpose_b);
    let mut parts = Parts::new("matmul", 256);
    parts.summary = format!(
        "A{} × B{}: {}{LARGE_TILE}- or {SMALL_TILE}-tiles, or for M ≤ {SKINNY_ROWS} or few tiles 4 rows × {} columns per workgroup",
        if transpose_a { "ᵀ" } else { "" },
        if transpose_b { "ᵀ" } else { "" },
        if matvec.is_some() { format!("for ≤ {MAX_X_ROWS} rows a matrix-vector product, else ") } else { String::new() },
        skinny.columns,
    );
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, Access::Float)).collect();
    // The skinny strategy's column blocks × row groups of 4, when it is the one chosen (`at_most` is 1 or 0, the
    // larger of two such is their "or", and subtracting one that implies it is "but not"); the tiled strategies
    // need at most one workgroup per 64-tile.
    let small_tiles = tile_count(&expr(m), &expr(n), SMALL_TILE);
    let mut skinny_chosen = Expr::max(vec![at_most(expr(m), SKINNY_ROWS as u64), at_most(small_tiles.clone(), MIN_SMALL_TILES as u64 - 1)]);
    let x_rows = Expr::product(vec![expr(m), batches.clone()]);
    if matvec.is_some() {
        skinny_chosen = Expr::Sub(Box::new(skinny_chosen), Box::new(at_most(x_rows.clone(), MAX_X_ROWS as u64)));
    }
    let skinny_groups = Expr::product(vec![
        Expr::ceil_div(expr(n), Expr::Const(skinny.columns as u64)),
        Expr::ceil_div(expr(m), Expr::Const(4)),
        skinny_chosen,
    ]);
    let mut workgroups = vec![Expr::product(vec![Expr::max(vec![small_tiles, skinny_groups]), batches.clone()])];
    if matvec.is_some() {
        workgroups.push(Expr::product(vec![Matvec::workgroups(expr(n)), at_most(x_rows, MAX_X_ROWS as u64)]));
    }
    parts.workgroups = Expr::max(workgroups);
    parts.params = vec![expr(m), expr(n), expr(k), expr(a_m), expr(a_k), expr(b_k), expr(b_n), batches];
    parts.params.extend(dims.iter().map(expr));
    for s in batch_strides {
        parts.params.extend(s.iter().map(expr));
    }
    parts.decls = tiled_decls(BOperand::Float { transpose_a, transpose_b });
    parts.decls.push_str(&skinny_fn(&skinny));
    let mut choice = String::from("    ");
    if let Some(matvec) = &matvec {
        matvec.add_to(&mut parts);
        write!(choice, "if param(0u) * param(7u) <= {MAX_X_ROWS}u {{\n        matvec(group, lid);\n    }} else ").unwrap();
    }
    parts.body = format!(
        "{choice}if param(0u) <= {SKINNY_ROWS}u || tiles({SMALL_TILE}u) < {MIN_SMALL_TILES}u {{
        skinny(group, lid);
    }} else {{
{}    }}
",
        tiled_choice()
    );
    Ok(parts)
}

/// The number of T×T tiles over an M×N output.
pub(crate) fn tile_count(m: &Expr, n: &Expr, tile: u32) -> Expr {
    Expr::product(vec![Expr::ceil_div(m.clone(), Expr::Const(tile as u64)), Expr::ceil_div(n.clone(), Expr::Const(tile as u64))])
}

/// The WGSL statements that run the tiled strategy with the tile that suits the dispatch.
pub(crate) fn tiled_choice() -> String {
    format!(
        "        if tiles({LARGE_TILE}u) >= {MIN_LARGE_TILES}u {{
            tiled_{LARGE_TILE}(group, lid);
        }} else {{
            tiled_{SMALL_TILE}(group, lid);
        }}
"
    )
}

/// How the tiled strategy reads B.
#[derive(Clone, Copy)]
pub(crate) enum BOperand {
    /// A float tensor through `load_in1`, with A's and B's transposition.
    Float { transpose_a: bool, transpose_b: bool },
    /// A block-quantized `[N, K]` weight (B = Wᵀ) through `decode4_in1(row, k)`; A is not transposed.
    Block,
}

/// Where this invocation's run of 4 elements of an operand's slice starts, as WGSL (row, k) in a tile of side
/// `tile`. `k_contiguous`: the operand is contiguous along k, so the run goes along k; otherwise along its rows.
fn run_start(k_contiguous: bool, tile: u32) -> String {
    if k_contiguous {
        let runs = SLICE / tile / 4;
        format!("vec2<u32>(lid / {runs}u, (lid % {runs}u) * 4u)")
    } else {
        let runs = tile / 4;
        format!("vec2<u32>((lid % {runs}u) * 4u, lid / {runs}u)")
    }
}

/// The tiled strategy's declarations: workgroup memory, batch offsets, and `tiled_128` and `tiled_64`, with the
/// params layout of `matmul`.
pub(crate) fn tiled_decls(b: BOperand) -> String {
    let (transpose_a, b_k_contiguous) = match b {
        BOperand::Float { transpose_a, transpose_b } => (transpose_a, transpose_b),
        BOperand::Block => (false, true),
    };
    let slice_vecs = SLICE / 4;
    let mut s = format!(
        "\
// Two buffers of one K-slice of each tile, k-major so that a vec4 holds 4 consecutive rows of A or columns of B:
// for tile side T, a_tile[b·{slice_vecs} + k·T/4 + m/4][m % 4] = A(m0 + m, k0 + k), and b_tile likewise B(k0 + k, n0 + n).
var<workgroup> a_tile: array<vec4<f32>, {len}>;
var<workgroup> b_tile: array<vec4<f32>, {len}>;

// The number of T×T tiles over the output.
fn tiles(t: u32) -> u32 {{
    return ((param(0u) + t - 1u) / t) * ((param(1u) + t - 1u) / t);
}}

// Offsets of A and B for a batch index, over the 4 batch axes, last fastest.
fn batch_offsets(batch: u32) -> vec2<u32> {{
    var offsets = vec2<u32>(0u, 0u);
    var rest = batch;
    for (var k = 0u; k < 4u; k++) {{
        let axis = 3u - k;
        let c = rest % param(8u + axis);
        rest = rest / param(8u + axis);
        offsets += c * vec2<u32>(param(12u + axis), param(16u + axis));
    }}
    return offsets;
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
        len = 2 * slice_vecs,
    );
    s.push_str(&run_loader("a", 0, 0, 4, if transpose_a { 3 } else { 4 }, !transpose_a));
    match b {
        BOperand::Float { .. } => s.push_str(&run_loader("b", 1, 1, 5, if b_k_contiguous { 5 } else { 6 }, b_k_contiguous)),
        BOperand::Block => s.push_str(
            "
// This invocation's 4 elements of the B slice at k0: row start.x of W, k0 + start.y.. along it (zeros past N).
fn load_b(at: u32, start: vec2<u32>, k0: u32) -> vec4<f32> {
    if start.x >= param(1u) {
        return vec4<f32>(0.0);
    }
    return decode4_in1(start.x, k0 + start.y);
}
",
        ),
    }
    for tile in [LARGE_TILE, SMALL_TILE] {
        s.push_str(&tiled_fn(tile, !transpose_a, b_k_contiguous));
    }
    s
}

/// `load_NAME`: this invocation's 4 elements of an operand's slice at k0 (binding `input`), in a run from tile
/// coordinates `start` (row, k); `at` is the address of the first for k0 = 0. The params at `rows`, `k_stride` and
/// `run_stride` hold the operand's row count and its strides along k and along the run.
fn run_loader(name: &str, input: u32, rows: u32, k_stride: u32, run_stride: u32, k_contiguous: bool) -> String {
    let inside = if k_contiguous {
        format!("start.x < param({rows}u) && k + j < param(2u)")
    } else {
        format!("start.x + j < param({rows}u) && k < param(2u)")
    };
    format!(
        "
fn load_{name}(at: u32, start: vec2<u32>, k0: u32) -> vec4<f32> {{
    var v = vec4<f32>(0.0);
    let k = k0 + start.y;
    let first = at + k0 * param({k_stride}u);
    for (var j = 0u; j < 4u; j++) {{
        if {inside} {{
            v[j] = load_in{input}(first + j * param({run_stride}u));
        }}
    }}
    return v;
}}
"
    )
}

/// Stores a run of 4 elements of an operand's slice into its tile of side `tile`.
fn store_run(name: &str, k_contiguous: bool, tile: u32) -> String {
    let vecs = tile / 4;
    if k_contiguous {
        format!("    for (var j = 0u; j < 4u; j++) {{\n        {name}_tile[buffer + ({name}_tile_at.y + j) * {vecs}u + {name}_tile_at.x / 4u][{name}_tile_at.x % 4u] = {name}_next[j];\n    }}\n")
    } else {
        format!("    {name}_tile[buffer + {name}_tile_at.y * {vecs}u + {name}_tile_at.x / 4u] = {name}_next;\n")
    }
}

/// `tiled_T`: one T×T output tile, T/16 × T/16 outputs per invocation.
fn tiled_fn(tile: u32, a_k_contiguous: bool, b_k_contiguous: bool) -> String {
    let outputs = tile / 16;
    let groups = outputs / 4;
    let bk = SLICE / tile;
    let vecs = tile / 4;
    let mut s = String::new();
    writeln!(
        s,
        "
fn tiled_{tile}(group: u32, lid: u32) {{
    let tiles_m = (param(0u) + {last}u) / {tile}u;
    let tiles_n = (param(1u) + {last}u) / {tile}u;
    let tile_n = group % tiles_n;
    let tile_m = (group / tiles_n) % tiles_m;
    let batch = group / tiles_n / tiles_m;
    if batch >= param(7u) {{
        return;
    }}
    let base = batch_offsets(batch);
    let m0 = tile_m * {tile}u;
    let n0 = tile_n * {tile}u;
    // This invocation's runs of the A and B slices start at tile coordinates (row, k) a_tile_at and b_tile_at,
    // matrix coordinates a_start and b_start, and addresses a_at and b_at in the first slice.
    let a_tile_at = {a_start};
    let b_tile_at = {b_start};
    let a_start = vec2<u32>(m0, 0u) + a_tile_at;
    let b_start = vec2<u32>(n0, 0u) + b_tile_at;
    let a_at = base.x + a_start.x * param(3u) + a_start.y * param(4u);
    let b_at = base.y + b_start.x * param(6u) + b_start.y * param(5u);
    // This invocation's outputs: rows m0 + 4·ty + (0..4) (and {half} more for two groups), columns likewise from n0 + 4·tx.
    let tx = lid % 16u;
    let ty = lid / 16u;",
        last = tile - 1,
        a_start = run_start(a_k_contiguous, tile),
        b_start = run_start(b_k_contiguous, tile),
        half = tile / 2,
    )
    .unwrap();
    for i in 0..outputs {
        for g in 0..groups {
            writeln!(s, "    var acc{i}_{g} = vec4<f32>(0.0);").unwrap();
        }
    }
    writeln!(
        s,
        "    var a_next = load_a(a_at, a_start, 0u);
    var b_next = load_b(b_at, b_start, 0u);
    let slices = (param(2u) + {last_k}u) / {bk}u;
    for (var s = 0u; s < slices; s++) {{
        // Alternate buffers, so one barrier per slice keeps writers off the buffer being read.
        let buffer = (s % 2u) * {slice_vecs}u;
{store_a}{store_b}        workgroupBarrier();
        if s + 1u < slices {{
            a_next = load_a(a_at, a_start, (s + 1u) * {bk}u);
            b_next = load_b(b_at, b_start, (s + 1u) * {bk}u);
        }}
        // The slice's {bk} steps of k, unrolled.",
        last_k = bk - 1,
        slice_vecs = SLICE / 4,
        store_a = store_run("a", a_k_contiguous, tile),
        store_b = store_run("b", b_k_contiguous, tile),
    )
    .unwrap();
    let half = tile / 8;
    for k in 0..bk {
        let row = k * vecs;
        for r in 0..groups {
            writeln!(s, "        let a{r}_{k} = a_tile[buffer + {}u + ty];", row + r * half).unwrap();
        }
        for g in 0..groups {
            writeln!(s, "        let b{g}_{k} = b_tile[buffer + {}u + tx];", row + g * half).unwrap();
        }
        for i in 0..outputs {
            let lane = ["x", "y", "z", "w"][(i % 4) as usize];
            for g in 0..groups {
                writeln!(s, "        acc{i}_{g} += a{}_{k}.{lane} * b{g}_{k};", i / 4).unwrap();
            }
        }
    }
    s.push_str("    }\n    let out_base = batch * param(0u) * param(1u);\n");
    for i in 0..outputs {
        for g in 0..groups {
            writeln!(
                s,
                "    store_row(out_base, m0 + 4u * ty + {}u, n0 + 4u * tx + {}u, acc{i}_{g});",
                (i / 4) * (tile / 2) + i % 4,
                g * (tile / 2)
            )
            .unwrap();
        }
    }
    s.push_str("}\n");
    s
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
    if batch >= param(7u) {{
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
