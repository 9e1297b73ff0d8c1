//! Scaled dot-product attention, flash style: one workgroup of 64 invocations per (batch, query, head) walks the
//! visible keys in blocks of 64. Each invocation scores one key of the block against the query (held in workgroup
//! memory); the block's probabilities, relative to the running max, go through workgroup memory; then each
//! invocation accumulates p·V for its output features f = lid + 64c, rescaling its sums whenever the max grows
//! (online softmax), and divides by the sum at the end. Head sizes d and e are baked in (≤ 256).
//! Params: batch, query count s, query heads H, key count t, key/value heads G.

use crate::CodegenError;
use crate::shader::{Access, Node, Parts, expr, product};

const WORKGROUP: u32 = 64;
const MAX_HEAD: u64 = 256;

pub(crate) fn attention(node: &Node, causal: bool, scale: f32) -> Result<Parts, CodegenError> {
    let (q, k, v) = (node.inputs[0], node.inputs[1], node.inputs[2]);
    let d = node.constant(&q.shape[3], "the head size d of q and k", MAX_HEAD)?;
    let e = node.constant(&v.shape[3], "the head size e of v", MAX_HEAD)?;
    if d == 0 || e == 0 {
        return Err(node.error("heads of size 0 have nothing to attend with"));
    }
    let scale = node.literal(scale, "scale")?;
    let masked = node.inputs.len() == 4;
    let mut parts = Parts::new("attention", WORKGROUP);
    parts.summary = format!(
        "softmax({scale} · q·kᵀ) · v{}{}, d = {d}, e = {e}",
        if causal { ", causal" } else { "" },
        if masked { ", key mask" } else { "" }
    );
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, Access::Float)).collect();
    parts.params = vec![expr(&q.shape[0]), expr(&q.shape[1]), expr(&q.shape[2]), expr(&k.shape[1]), expr(&k.shape[2])];
    parts.workgroups = product(&q.shape[..3]);
    parts.decls = format!(
        "const D: u32 = {d}u;
const E: u32 = {e}u;
// Output features per invocation.
const PER_THREAD: u32 = {}u;
// The score of a key that is not seen; also the running max before any key is seen.
const LOWEST: f32 = -3.4028235e38;

var<workgroup> q_row: array<f32, D>;
var<workgroup> scores: array<f32, 64>;
var<workgroup> probs: array<f32, 64>;
",
        e.div_ceil(WORKGROUP)
    );
    let end = if causal {
        "    // Query i sees key j iff j + s ≤ i + t.\n    let end = select(0u, min(t, i + t + 1u - s), i + t + 1u > s);\n"
    } else {
        "    let end = t;\n"
    };
    let seen = if masked { "j < end && load_in3(b * t + j) != 0.0" } else { "j < end" };
    parts.body = format!(
        "    let s = param(1u);
    let heads = param(2u);
    let t = param(3u);
    let groups = param(4u);
    let h = group % heads;
    let i = (group / heads) % s;
    let b = group / heads / s;
    if b >= param(0u) {{
        return;
    }}
    let g = h / (heads / groups);
    let q_base = ((b * s + i) * heads + h) * D;
    for (var c = lid; c < D; c += 64u) {{
        q_row[c] = load_in0(q_base + c);
    }}
    workgroupBarrier();
{end}    var m = LOWEST;
    var l = 0.0;
    var acc: array<f32, PER_THREAD>;
    for (var j0 = 0u; j0 < end; j0 += 64u) {{
        let j = j0 + lid;
        var score = LOWEST;
        if {seen} {{
            let k_base = ((b * t + j) * groups + g) * D;
            var qk = 0.0;
            for (var c = 0u; c < D; c++) {{
                qk += q_row[c] * load_in1(k_base + c);
            }}
            score = {scale} * qk;
        }}
        scores[lid] = score;
        workgroupBarrier();
        var block_max = LOWEST;
        for (var jj = 0u; jj < 64u; jj++) {{
            block_max = max(block_max, scores[jj]);
        }}
        let m_new = max(m, block_max);
        probs[lid] = select(0.0, exp(score - m_new), score > LOWEST);
        workgroupBarrier();
        let correction = exp(m - m_new);
        m = m_new;
        l *= correction;
        for (var c = 0u; c < PER_THREAD; c++) {{
            acc[c] *= correction;
        }}
        for (var jj = 0u; jj < min(64u, end - j0); jj++) {{
            let p = probs[jj];
            if p != 0.0 {{
                l += p;
                let v_base = ((b * t + j0 + jj) * groups + g) * E;
                for (var c = 0u; c < PER_THREAD; c++) {{
                    let f = lid + 64u * c;
                    if f < E {{
                        acc[c] += p * load_in2(v_base + f);
                    }}
                }}
            }}
        }}
        // scores and probs are written again for the next block.
        workgroupBarrier();
    }}
    // A query that sees no key outputs zeros.
    let out_base = ((b * s + i) * heads + h) * E;
    for (var c = 0u; c < PER_THREAD; c++) {{
        let f = lid + 64u * c;
        if f < E {{
            out[out_base + f] = select(0.0, acc[c] / l, l > 0.0);
        }}
    }}
"
    );
    Ok(parts)
}
