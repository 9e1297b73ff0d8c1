//! Kernels for decoding: storing new keys/values into a KV cache, and picking the most likely token.

use crate::CodegenError;
use crate::shader::{Access, Node, Parts, expr, groups_for, product};
use tfc_ir::{DType, Dim, Expr};

/// `CacheWrite`: copies the new rows into the state (bound as the output) starting at row `offset`. Its node's only
/// operand here is the new rows; the state is written in place. An f16 state takes two values per invocation,
/// packed into one word (so its rows must have an even length; no shader-f16 needed).
pub(crate) fn cache_write(node: &Node, offset: &Dim) -> Result<Parts, CodegenError> {
    let new = node.inputs[0];
    let row = product(&new.shape[2..]);
    let mut parts = Parts::new("cache_write", 256);
    parts.summary = "new rows into the cache at row `past`".to_string();
    parts.inputs = vec![(new.dtype, Access::Float)];
    parts.output = node.output.dtype;
    let count = Expr::product(vec![expr(&new.shape[1]), row.clone()]);
    let first = Expr::product(vec![expr(offset), row]);
    match node.output.dtype {
        DType::F32 => {
            parts.workgroups = groups_for(count.clone(), 256);
            parts.params = vec![count, first];
            parts.body = "\
    let i = group * 256u + lid;
    if i < param(0u) {
        out[param(1u) + i] = load_in0(i);
    }
"
            .to_string();
        }
        DType::F16 => {
            let row_len = tfc_ir::dim::product(&new.shape[2..]).as_const();
            if row_len.is_none_or(|n| n % 2 == 1) {
                return Err(node.error("an f16 cache needs rows of an even, constant length (two values per word)"));
            }
            let words = Expr::ceil_div(count, Expr::Const(2));
            parts.workgroups = groups_for(words.clone(), 256);
            parts.params = vec![words, Expr::ceil_div(first, Expr::Const(2))];
            parts.body = "\
    let i = group * 256u + lid;
    if i < param(0u) {
        out[param(1u) + i] = pack2x16float(vec2<f32>(load_in0(2u * i), load_in0(2u * i + 1u)));
    }
"
            .to_string();
        }
        other => return Err(node.error(format!("KV caches are stored as f32 or f16, not {other}"))),
    }
    Ok(parts)
}

/// `ArgMax` over the last axis: one workgroup per row; each invocation scans a strided part of the row, then a tree
/// reduction keeps the larger value, or the lower index on ties (the first maximum, as the interpreter).
pub(crate) fn argmax(node: &Node) -> Result<Parts, CodegenError> {
    let x = node.inputs[0];
    let mut parts = Parts::new("argmax", 256);
    parts.summary = "index of the largest value of each row".to_string();
    parts.inputs = vec![(x.dtype, Access::Float)];
    parts.output = node.output.dtype;
    let rows = product(&x.shape[..x.rank() - 1]);
    parts.workgroups = rows.clone();
    parts.params = vec![rows, expr(x.shape.last().unwrap())];
    parts.decls = "\
var<workgroup> best_value: array<f32, 256>;
var<workgroup> best_index: array<u32, 256>;

fn better(value: f32, index: u32, than_value: f32, than_index: u32) -> bool {
    return value > than_value || (value == than_value && index < than_index);
}
"
    .to_string();
    parts.body = "\
    let row = group;
    if row >= param(0u) {
        return;
    }
    let width = param(1u);
    var value = -3.4028234e38f;
    var index = 0xffffffffu;
    for (var i = lid; i < width; i += 256u) {
        let v = load_in0(row * width + i);
        if better(v, i, value, index) {
            value = v;
            index = i;
        }
    }
    best_value[lid] = value;
    best_index[lid] = index;
    for (var half = 128u; half > 0u; half >>= 1u) {
        workgroupBarrier();
        if lid < half && better(best_value[lid + half], best_index[lid + half], best_value[lid], best_index[lid]) {
            best_value[lid] = best_value[lid + half];
            best_index[lid] = best_index[lid + half];
        }
    }
    if lid == 0u {
        out[row] = i32(select(best_index[0], 0u, best_index[0] >= width));
    }
"
    .to_string();
    Ok(parts)
}

/// `Sample`: one workgroup per row follows `tfc_ir::interp::sample` step by step. Thresholds are bisected with
/// workgroup-wide counts and sums; the draw splits the row into one contiguous range per invocation, so a prefix
/// sum over the ranges finds the invocation whose range holds the crossing, which then walks it in index order.
pub(crate) fn sample(node: &Node) -> Result<Parts, CodegenError> {
    let (logits, penalized) = (node.inputs[0], node.inputs[3]);
    let listed = node.constant(&penalized.shape[0], "the penalized-token list", 256)?.max(1);
    let mut parts = Parts::new("sample", 256);
    parts.summary = "a token drawn from each row (temperature, top-k, min-p, top-p, repeat penalty)".to_string();
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, if t.dtype.is_int() { Access::Int } else { Access::Float })).collect();
    parts.output = node.output.dtype;
    let rows = product(&logits.shape[..logits.rank() - 1]);
    parts.workgroups = rows.clone();
    parts.params = vec![rows, expr(logits.shape.last().unwrap()), expr(&penalized.shape[0])];
    parts.decls = format!(
        "\
const LISTED: u32 = {listed}u;
const STEPS: u32 = {steps}u;
var<workgroup> listed: array<i32, LISTED>;
var<workgroup> sums: array<f32, 256>;
var<workgroup> counts: array<u32, 256>;
var<workgroup> best_value: array<f32, 256>;
var<workgroup> best_index: array<u32, 256>;
var<workgroup> shared_max: f32;
// The settings operand, copied so that branches around barriers read it through workgroupUniformLoad (WGSL's
// uniformity rules: every invocation must take the same branch).
var<workgroup> settings: array<f32, 5>;

fn is_penalized(i: i32) -> bool {{
    var lo = 0u;
    var hi = min(param(2u), LISTED);
    while lo < hi {{
        let mid = (lo + hi) / 2u;
        if listed[mid] < i {{ lo = mid + 1u; }} else {{ hi = mid; }}
    }}
    return lo < min(param(2u), LISTED) && listed[lo] == i;
}}

fn logit(base: u32, i: u32) -> f32 {{
    let l = load_in0(base + i);
    let penalty = load_in1(4u);
    if penalty > 0.0 && penalty != 1.0 && is_penalized(i32(i)) {{
        return select(l * penalty, l / penalty, l > 0.0);
    }}
    return l;
}}

fn weight(base: u32, i: u32) -> f32 {{
    return exp((logit(base, i) - shared_max) / load_in1(0u));
}}

fn total_f32(v: f32, lid: u32) -> f32 {{
    sums[lid] = v;
    for (var half = 128u; half > 0u; half >>= 1u) {{
        workgroupBarrier();
        if lid < half {{ sums[lid] += sums[lid + half]; }}
    }}
    workgroupBarrier();
    let total = sums[0];
    workgroupBarrier();
    return total;
}}

fn total_u32(v: u32, lid: u32) -> u32 {{
    counts[lid] = v;
    for (var half = 128u; half > 0u; half >>= 1u) {{
        workgroupBarrier();
        if lid < half {{ counts[lid] += counts[lid + half]; }}
    }}
    workgroupBarrier();
    let total = counts[0];
    workgroupBarrier();
    return total;
}}

// Total weight of the row's tokens with weight ≥ t.
fn kept_weight(base: u32, width: u32, t: f32, lid: u32) -> f32 {{
    var sum = 0.0;
    for (var i = lid; i < width; i += 256u) {{
        let w = weight(base, i);
        if w >= t {{ sum += w; }}
    }}
    return total_f32(sum, lid);
}}

// Number of the row's tokens with weight ≥ t.
fn kept_count(base: u32, width: u32, t: f32, lid: u32) -> u32 {{
    var n = 0u;
    for (var i = lid; i < width; i += 256u) {{
        if weight(base, i) >= t {{ n += 1u; }}
    }}
    return total_u32(n, lid);
}}
",
        steps = tfc_ir::interp::SAMPLE_SEARCH_STEPS
    );
    parts.body = "\
    let row = group;
    if row >= param(0u) {
        return;
    }
    let width = param(1u);
    let base = row * width;
    for (var j = lid; j < LISTED; j += 256u) {
        listed[j] = select(2147483647, load_in3(j), j < param(2u));
    }
    if lid < 5u {
        settings[lid] = load_in1(lid);
    }
    workgroupBarrier();

    var value = -3.4028234e38f;
    var index = 0xffffffffu;
    for (var i = lid; i < width; i += 256u) {
        let l = logit(base, i);
        if l > value || (l == value && i < index) {
            value = l;
            index = i;
        }
    }
    best_value[lid] = value;
    best_index[lid] = index;
    for (var half = 128u; half > 0u; half >>= 1u) {
        workgroupBarrier();
        let v = best_value[lid + half];
        if lid < half && (v > best_value[lid] || (v == best_value[lid] && best_index[lid + half] < best_index[lid])) {
            best_value[lid] = v;
            best_index[lid] = best_index[lid + half];
        }
    }
    workgroupBarrier();
    let best = select(best_index[0], 0u, best_index[0] >= width);
    if lid == 0u {
        shared_max = best_value[0];
        out[row] = i32(best);
    }
    workgroupBarrier();
    if workgroupUniformLoad(&settings[0]) <= 0.0 {
        return;
    }

    var floor = max(load_in1(3u), 0.0);
    let top_k = u32(max(workgroupUniformLoad(&settings[1]), 0.0));
    if top_k > 0u {
        var lo = 0.0;
        var hi = 1.0;
        for (var step = 0u; step < STEPS; step++) {
            let mid = 0.5 * (lo + hi);
            if kept_count(base, width, mid, lid) >= top_k { lo = mid; } else { hi = mid; }
        }
        floor = max(floor, lo);
    }
    let top_p = workgroupUniformLoad(&settings[2]);
    if top_p > 0.0 && top_p < 1.0 {
        let total = kept_weight(base, width, floor, lid);
        var lo = 0.0;
        var hi = 1.0;
        for (var step = 0u; step < STEPS; step++) {
            let mid = 0.5 * (lo + hi);
            if kept_weight(base, width, max(mid, floor), lid) >= top_p * total { lo = mid; } else { hi = mid; }
        }
        floor = max(floor, lo);
    }

    // The draw: invocation `lid` owns tokens [start, end); prefix sums over the invocations locate the crossing.
    let span = (width + 255u) / 256u;
    let start = min(lid * span, width);
    let end = min(start + span, width);
    var mine = 0.0;
    for (var i = start; i < end; i++) {
        let w = weight(base, i);
        if w >= floor { mine += w; }
    }
    sums[lid] = mine;
    workgroupBarrier();
    if lid == 0u {
        var running = 0.0;
        for (var j = 0u; j < 256u; j++) {
            let own = sums[j];
            sums[j] = running;
            running += own;
        }
        best_value[0] = running;
    }
    workgroupBarrier();
    let goal = load_in2(row) * best_value[0];
    var running = sums[lid];
    if running <= goal && running + mine > goal {
        for (var i = start; i < end; i++) {
            let w = weight(base, i);
            if w >= floor {
                running += w;
                if running > goal {
                    out[row] = i32(i);
                    break;
                }
            }
        }
    }
"
    .to_string();
    Ok(parts)
}
