//! Row-wise ops over the last axis: LayerNorm, RmsNorm and Softmax. One workgroup of 256 invocations per row; each
//! invocation strides through the row (coalesced), then the workgroup combines the partial results in workgroup
//! memory by a tree reduction. Params: the row count, the row length.

use crate::CodegenError;
use crate::shader::{Access, Node, Parts, expr, product};
use std::fmt::Write;

const WORKGROUP: u32 = 256;

fn rows(node: &Node, name: &str, summary: String) -> Parts {
    let shape = &node.output.shape;
    let rows = product(&shape[..shape.len() - 1]);
    let mut parts = Parts::new(name, WORKGROUP);
    parts.summary = summary;
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, Access::Float)).collect();
    parts.params = vec![rows.clone(), expr(&shape[shape.len() - 1])];
    parts.workgroups = rows;
    parts.body.push_str(
        "    if group >= param(0u) {\n        return;\n    }\n    let d = param(1u);\n    let base = group * d;\n",
    );
    parts
}

const SUM: &str = "\
var<workgroup> partial: array<f32, 256>;

// The sum of `v` over the workgroup, returned to every invocation.
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // `partial` is written again by the next reduction.
    workgroupBarrier();
    return total;
}
";

/// LayerNorm (`centre`, with optional beta) or RmsNorm: two passes for the mean and the variance about it, a third
/// to write; the row is read from global memory each time (it stays in cache).
pub(crate) fn norm(node: &Node, eps: f32, centre: bool) -> Result<Parts, CodegenError> {
    let eps = node.literal(eps, "eps")?;
    let beta = node.inputs.len() == 3;
    let (name, summary) = if centre {
        ("layer_norm", format!("(x - mean) / sqrt(var + {eps}) * gamma{} over rows", if beta { " + beta" } else { "" }))
    } else {
        ("rms_norm", format!("x / sqrt(mean(x²) + {eps}) * gamma over rows"))
    };
    let mut parts = rows(node, name, summary);
    parts.decls = SUM.to_string();
    let b = &mut parts.body;
    if centre {
        b.push_str("    var sum = 0.0;\n    for (var i = lid; i < d; i += 256u) {\n        sum += load_in0(base + i);\n    }\n");
        b.push_str("    let mean = workgroup_sum(sum, lid) / f32(d);\n");
    } else {
        b.push_str("    let mean = 0.0;\n");
    }
    b.push_str("    var squares = 0.0;\n    for (var i = lid; i < d; i += 256u) {\n        let c = load_in0(base + i) - mean;\n        squares += c * c;\n    }\n");
    writeln!(b, "    let inv = inverseSqrt(workgroup_sum(squares, lid) / f32(d) + {eps});").unwrap();
    let shift = if beta { " + load_in2(i)" } else { "" };
    writeln!(b, "    for (var i = lid; i < d; i += 256u) {{\n        out[base + i] = (load_in0(base + i) - mean) * inv * load_in1(i){shift};\n    }}")
        .unwrap();
    Ok(parts)
}

/// Softmax in two passes: the running max and the sum of exp(x − max) rescaled whenever the max grows (the online
/// normaliser of Milakov & Gimelshein, 2018), reduced over the workgroup as (max, sum) pairs; then the outputs.
pub(crate) fn softmax(node: &Node) -> Result<Parts, CodegenError> {
    let mut parts = rows(node, "softmax", "exp(x - max) / sum(exp(x - max)) over rows".to_string());
    parts.decls = SOFTMAX_DECLS.to_string();
    parts.body.push_str(SOFTMAX_BODY);
    Ok(parts)
}

const SOFTMAX_DECLS: &str = "\
// The lowest f32: the max of nothing, without an infinity that would make exp(−inf − (−inf)) NaN.
const LOWEST: f32 = -3.4028234e38;

var<workgroup> partial_max: array<f32, 256>;
var<workgroup> partial_sum: array<f32, 256>;
";

const SOFTMAX_BODY: &str = "\
    var m = LOWEST;
    var s = 0.0;
    for (var i = lid; i < d; i += 256u) {
        let x = load_in0(base + i);
        if x > m {
            s = s * exp(m - x) + 1.0;
            m = x;
        } else {
            s += exp(x - m);
        }
    }
    partial_max[lid] = m;
    partial_sum[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            let m1 = partial_max[lid];
            let m2 = partial_max[lid + stride];
            let top = max(m1, m2);
            partial_sum[lid] = partial_sum[lid] * exp(m1 - top) + partial_sum[lid + stride] * exp(m2 - top);
            partial_max[lid] = top;
        }
        workgroupBarrier();
    }
    let row_max = partial_max[0];
    let row_sum = partial_sum[0];
    for (var i = lid; i < d; i += 256u) {
        out[base + i] = exp(load_in0(base + i) - row_max) / row_sum;
    }
";
