//! Rotary position embedding: one invocation per output element, 256 per workgroup. Each element of a rotated pair
//! computes its own rotation (both read the same pair), so every output is written once.
//! Params: the element count, the head size d, the head count, the number of rotated pairs r/2.

use crate::CodegenError;
use crate::math::Helper;
use crate::shader::{Access, Node, Parts, expr, groups_for, product};

pub(crate) fn rope(node: &Node, interleaved: bool) -> Result<Parts, CodegenError> {
    let x = node.inputs[0];
    let mut parts = Parts::new("rope", 256);
    parts.summary = format!(
        "rotate feature pairs {} of every head by position · inv_freq",
        if interleaved { "(2i, 2i + 1)" } else { "(i, i + r/2)" }
    );
    parts.inputs =
        vec![(x.dtype, Access::Float), (node.inputs[1].dtype, Access::Int), (node.inputs[2].dtype, Access::Float)];
    parts.helpers.push(Helper::Rotation);
    let numel = product(&x.shape);
    parts.workgroups = groups_for(numel.clone(), 256);
    parts.params = vec![numel, expr(&x.shape[3]), expr(&x.shape[2]), expr(&node.inputs[2].shape[0])];
    let pair = if interleaved {
        "    let first = (f & 1u) == 0u;\n    let pair = f / 2u;\n    let partner = f ^ 1u;\n"
    } else {
        "    let first = f < half;\n    let pair = select(f - half, f, first);\n    let partner = select(f - half, f + half, first);\n"
    };
    parts.body = format!(
        "    let i = group * 256u + lid;
    if i >= param(0u) {{
        return;
    }}
    let d = param(1u);
    let half = param(3u);
    let f = i % d;
    let row = i / d;
    if f >= 2u * half {{
        out[i] = load_in0(i);
        return;
    }}
{pair}    let rot = rotation(load_in1(row / param(2u)), load_in2(pair));
    let x = load_in0(i);
    let other = load_in0(i - f + partner);
    // The first of a pair becomes x1·cos − x2·sin, the second x2·cos + x1·sin.
    out[i] = x * rot.x + select(other, -other, first) * rot.y;
"
    );
    Ok(parts)
}
