//! Scaled dot-product attention, flash style. A workgroup of 256 invocations serves 4 rows: (query, head) pairs that
//! read the same key/value head (the heads of a GQA group for one query, or consecutive queries), so each key and
//! value it loads serves 4 rows. It walks the visible keys in blocks of 64:
//!
//! 1. Scores: invocation (r, j) = (lid / 64, lid % 64) computes row r's score for key j. The block's keys go through
//!    workgroup memory 32 features at a time, loaded coalesced; the 4 queries wait there whole.
//! 2. Online softmax: each row's running max and sum are rescaled when the block raises the max; the block's
//!    probabilities go through workgroup memory.
//! 3. Invocation (r, lane) accumulates p·V for row r's output features lane + 64c, from chunks of the block's values
//!    staged through workgroup memory like the keys.
//!
//! With one query per sequence (decoding) there are few rows, so the output features are split over 4 workgroups,
//! each computing the scores again, to occupy more of the GPU.
//!
//! The head sizes d and e are baked in (≤ 256). Params: batch, query count s, query heads H, key count t, key/value
//! heads G, and the number of workgroups the output features are split over.

use crate::CodegenError;
use crate::shader::{Access, Node, Parts, at_most, expr};
use tfc_ir::Expr;

const MAX_HEAD: u32 = 256;
/// Rows per workgroup; 4 rows × 64 keys of a block = 256 invocations.
const ROWS: u64 = 4;
/// The staging buffer for keys and values, in floats: 64 keys × 36 (32 features padded to 9 vec4).
const STAGE: u32 = 64 * 36;

pub(crate) fn attention(node: &Node, causal: bool, scale: f32, window: Option<u64>) -> Result<Parts, CodegenError> {
    let (q, k, v) = (node.inputs[0], node.inputs[1], node.inputs[2]);
    let d = node.constant(&q.shape[3], "the head size d of q and k", MAX_HEAD as u64)?;
    let e = node.constant(&v.shape[3], "the head size e of v", MAX_HEAD as u64)?;
    if d == 0 || e == 0 {
        return Err(node.error("heads of size 0 have nothing to attend with"));
    }
    let scale = node.literal(scale, "scale")?;
    let masked = node.inputs.len() == 4;
    let mut parts = Parts::new("attention", 256);
    parts.summary = format!(
        "softmax({scale} · q·kᵀ) · v{}{}{}, d = {d}, e = {e}",
        if causal { ", causal" } else { "" },
        window.map(|w| format!(", window {w}")).unwrap_or_default(),
        if masked { ", key mask" } else { "" }
    );
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, Access::Float)).collect();
    // With one query per sequence, 4 splits.
    let splits = Expr::sum(vec![Expr::Const(1), Expr::product(vec![Expr::Const(3), at_most(expr(&q.shape[1]), 1)])]);
    parts.params = vec![
        expr(&q.shape[0]),
        expr(&q.shape[1]),
        expr(&q.shape[2]),
        expr(&k.shape[1]),
        expr(&k.shape[2]),
        splits.clone(),
    ];
    // Per batch entry and key/value head, the s · H/G rows sharing it in blocks of 4, each block `splits` times.
    let row_blocks = Expr::ceil_div(
        tfc_ir::dim::product(&[q.shape[1].clone(), q.shape[2].clone()]).to_expr(),
        Expr::product(vec![expr(&k.shape[2]), Expr::Const(ROWS)]),
    );
    parts.workgroups = Expr::product(vec![expr(&q.shape[0]), expr(&k.shape[2]), row_blocks, splits]);
    let key_end = if causal {
        "// The keys query i sees: j + s ≤ i + t.\nfn key_end(i: u32) -> u32 {\n    let s = param(1u);\n    let t = param(3u);\n    return select(0u, min(t, i + t + 1u - s), i + t + 1u > s);\n}\n"
    } else {
        "fn key_end(i: u32) -> u32 {\n    return param(3u);\n}\n"
    };
    let mut seen = String::from(if masked { "key < row_end && load_in3(b * t + key) != 0.0" } else { "key < row_end" });
    // With a sliding window, the walk starts at the first key the workgroup's first row sees.
    let (key_start, first_key, row_start) = match window {
        Some(w) => {
            seen = format!("key >= row_start && {seen}");
            (
                format!(
                    "// The first key query i sees: j + s + {w} > i + t.\nfn key_start(i: u32) -> u32 {{\n    let last = i + param(3u) + 1u;\n    return select(0u, last - param(1u) - {w}u, last > param(1u) + {w}u);\n}}\n"
                ),
                "key_start(first / per_group)",
                "    let row_start = key_start(row / per_group);\n",
            )
        }
        None => (String::new(), "0u", ""),
    };
    // Values are staged in chunks of the most keys (a power of two) whose features take 8 loads per invocation.
    let value_keys = (1..=64u32).rev().find(|&n| n.is_power_of_two() && n * e <= 2048).unwrap();
    parts.decls = format!(
        "const D: u32 = {d}u;
const E: u32 = {e}u;
// Keys per chunk of staged values.
const VALUE_KEYS: u32 = {value_keys}u;
// The score of a key that is not seen; also the running max before any key is seen.
const LOWEST: f32 = -3.4028234e38;

// The rows' queries, each zero-padded to {d_pad} features.
var<workgroup> q_rows: array<vec4<f32>, {q_len}>;
// Keys: 32 features of 64 keys, key j at stage[9j .. 9j + 8] (the padding spreads a vec4 read of 8 keys over all
// banks). Values: VALUE_KEYS keys × the features this workgroup computes, as floats.
var<workgroup> stage: array<vec4<f32>, {stage_len}>;
var<workgroup> scores: array<vec4<f32>, 64>;
var<workgroup> probs: array<f32, 256>;

{key_end}{key_start}",
        d_pad = d.div_ceil(32) * 32,
        q_len = ROWS as u32 * d.div_ceil(32) * 8,
        stage_len = STAGE / 4,
    );
    parts.body = format!(
        "    let s = param(1u);
    let heads = param(2u);
    let t = param(3u);
    let groups = param(4u);
    let splits = param(5u);
    let per_group = heads / groups;
    // Rows ρ of a key/value head: query ρ / per_group, head g·per_group + ρ % per_group.
    let rows = s * per_group;
    let blocks = (rows + {last_row}u) / {ROWS}u;
    let split = group % splits;
    let first = ((group / splits) % blocks) * {ROWS}u;
    let g = (group / splits / blocks) % groups;
    let b = group / splits / blocks / groups;
    if b >= param(0u) {{
        return;
    }}
    // This workgroup's output features f0..f1.
    let split_width = (E + splits - 1u) / splits;
    let f0 = min(E, split * split_width);
    let f1 = min(E, f0 + split_width);
    let q_width = {q_width}u;
    for (var x = lid; x < {ROWS}u * q_width * 4u; x += 256u) {{
        let row = first + x / (q_width * 4u);
        let c = x % (q_width * 4u);
        var value = 0.0;
        if row < rows && c < D {{
            let h = g * per_group + row % per_group;
            value = load_in0(((b * s + row / per_group) * heads + h) * D + c);
        }}
        q_rows[x / 4u][x % 4u] = value;
    }}
    // The workgroup's keys reach as far as its last row's.
    let block_end = key_end(min(first + {last_row}u, rows - 1u) / per_group);
    let r = lid / 64u;
    let lane = lid % 64u;
    let row = first + r;
    let row_valid = row < rows;
    let row_end = select(0u, key_end(row / per_group), row_valid);
{row_start}    let kv = b * t * groups + g;
    var m = LOWEST;
    var l = 0.0;
{accumulators}    for (var j0 = {first_key}; j0 < block_end; j0 += 64u) {{
        // Four partial sums over the features keep the multiply-adds from waiting on each other.
        var qk = vec4<f32>(0.0);
        for (var c0 = 0u; c0 < D; c0 += 32u) {{
            workgroupBarrier();
            for (var x = lid; x < 64u * 32u; x += 256u) {{
                let key = j0 + x / 32u;
                let c = c0 + x % 32u;
                var value = 0.0;
                if key < t && c < D {{
                    value = load_in1((kv + key * groups) * D + c);
                }}
                stage[(x / 32u) * 9u + (x % 32u) / 4u][x % 4u] = value;
            }}
            workgroupBarrier();
            for (var c = 0u; c < 8u; c++) {{
                qk += q_rows[r * q_width + c0 / 4u + c] * stage[lane * 9u + c];
            }}
        }}
        let key = j0 + lane;
        let seen = {seen};
        let score = select(LOWEST, {scale} * (qk.x + qk.y + qk.z + qk.w), seen);
        scores[lid / 4u][lid % 4u] = score;
        workgroupBarrier();
        var block_max = vec4<f32>(LOWEST);
        for (var x = 0u; x < 16u; x++) {{
            block_max = max(block_max, scores[r * 16u + x]);
        }}
        let m_new = max(m, max(max(block_max.x, block_max.y), max(block_max.z, block_max.w)));
        probs[lid] = select(0.0, exp(score - m_new), seen);
        let correction = exp(m - m_new);
        m = m_new;
        l *= correction;
{rescale}        let keys = min(64u, block_end - j0);
        let width = f1 - f0;
        for (var k0 = 0u; k0 < keys; k0 += VALUE_KEYS) {{
            workgroupBarrier();
            for (var x = lid; x < VALUE_KEYS * width; x += 256u) {{
                let key = j0 + k0 + x / width;
                var value = 0.0;
                if key < t {{
                    value = load_in2((kv + key * groups) * E + f0 + x % width);
                }}
                stage[x / 4u][x % 4u] = value;
            }}
            workgroupBarrier();
            for (var kk = 0u; kk < min(VALUE_KEYS, keys - k0); kk++) {{
                let p = probs[r * 64u + k0 + kk];
                l += p;
{accumulate}            }}
        }}
    }}
    if !row_valid {{
        return;
    }}
    // A query that sees no key outputs zeros.
    let out_row = ((b * s + row / per_group) * heads + g * per_group + row % per_group) * E;
{store}",
        last_row = ROWS - 1,
        accumulators = per_feature(e, "    var acc{c} = 0.0;\n"),
        rescale = per_feature(e, "        acc{c} *= correction;\n"),
        accumulate = per_feature(
            e,
            "                if lane{f} < width {\n                    let x = kk * width + lane{f};\n                    acc{c} += p * stage[x / 4u][x % 4u];\n                }\n"
        ),
        store = per_feature(
            e,
            "    if f0 + lane{f} < f1 {\n        out[out_row + f0 + lane{f}] = select(0.0, acc{c} / l, l > 0.0);\n    }\n"
        ),
        q_width = d.div_ceil(32) * 8,
    );
    Ok(parts)
}

/// `line` once per output feature an invocation accumulates, `acc{c}` for feature `lane{f}` (f = "", " + 64u", …):
/// named variables rather than an array, so that they stay in registers.
fn per_feature(e: u32, line: &str) -> String {
    (0..e.div_ceil(64))
        .map(|c| {
            let offset = if c == 0 { String::new() } else { format!(" + {}u", 64 * c) };
            line.replace("{c}", &c.to_string()).replace("{f}", &offset)
        })
        .collect()
}
