//! Unary, Binary (numpy broadcasting) and Cast: one invocation per output element (per output word for f16/bf16
//! outputs), 256 invocations per workgroup.

use crate::CodegenError;
use crate::math::Helper;
use crate::shader::{Access, Node, Parts, groups_for, is_packed, product};
use tfc_ir::layout::broadcast_axes;
use std::fmt::Write;
use tfc_ir::{BinaryOp, DType, Dim, Expr, UnaryOp};

const WORKGROUP: u32 = 256;
/// The most axes the general broadcasting path indexes (after merging axes that broadcast alike).
const MAX_RANK: usize = 6;

/// The elementwise prologue: `i` is this invocation's element, params[0] the element count.
fn prologue(parts: &mut Parts, count: Expr) {
    parts.param(count.clone());
    parts.workgroups = groups_for(count, WORKGROUP);
    parts.body.push_str("    let i = group * 256u + lid;\n    if i >= param(0u) {\n        return;\n    }\n");
}

pub(crate) fn unary(node: &Node, op: UnaryOp) -> Result<Parts, CodegenError> {
    let (name, expr, helper): (&str, &str, Option<Helper>) = match op {
        UnaryOp::Neg => ("neg", "-x", None),
        UnaryOp::Abs => ("abs", "abs(x)", None),
        UnaryOp::Exp => ("exp", "exp_f32(x)", Some(Helper::Exp)),
        UnaryOp::Log => ("log", "log_f32(x)", Some(Helper::Log)),
        UnaryOp::Sqrt => ("sqrt", "sqrt(x)", None),
        UnaryOp::Rsqrt => ("rsqrt", "inverseSqrt(x)", None),
        UnaryOp::Recip => ("recip", "1.0 / x", None),
        UnaryOp::Tanh => ("tanh", "tanh_f32(x)", Some(Helper::Tanh)),
        UnaryOp::Erf => ("erf", "erf_f32(x)", Some(Helper::Erf)),
        UnaryOp::Sigmoid => ("sigmoid", "1.0 / (1.0 + exp_f32(-x))", Some(Helper::Exp)),
        UnaryOp::Relu => ("relu", "max(x, 0.0)", None),
        // x·Φ(x) = x/2 · erfc(−x/√2), which does not cancel for negative x as 1 + erf(x/√2) would.
        UnaryOp::Gelu => ("gelu", "0.5 * x * erfc_f32(-0.70710678118654752 * x)", Some(Helper::Erfc)),
        // x/2 · (1 + tanh u) = x · sigmoid(2u), u = √(2/π)(x + 0.044715x³), which neither cancels nor overflows.
        UnaryOp::GeluTanh => {
            ("gelu_tanh", "x / (1.0 + exp_f32(-1.5957691216057308 * (x + 0.044715 * x * x * x)))", Some(Helper::Exp))
        }
        UnaryOp::Silu => ("silu", "x / (1.0 + exp_f32(-x))", Some(Helper::Exp)),
    };
    let mut parts = Parts::new(format!("unary_{name}"), WORKGROUP);
    parts.summary = format!("out[i] = {expr} with x = in0[i]");
    parts.inputs = vec![(node.inputs[0].dtype, Access::Float)];
    parts.helpers.extend(helper);
    prologue(&mut parts, product(&node.output.shape));
    writeln!(parts.body, "    let x = load_in0(i);\n    out[i] = {expr};").unwrap();
    Ok(parts)
}

/// How an operand's element offset follows from the output's linear index `i`.
#[derive(Clone, Debug, PartialEq)]
enum Index {
    /// The operand has the output's shape (up to size-1 axes).
    Same,
    /// Broadcast over leading axes only: offset `i % n` for the operand's `n` elements.
    Suffix(Expr),
    /// One element.
    Scalar,
    /// Anything else: per-axis strides over the merged output axes, 0 on broadcast axes.
    Strided(Vec<Dim>),
}

impl Index {
    fn of(dims: &[Dim], strides: Vec<Dim>) -> Index {
        let zero = Dim::from(0u64);
        let broadcast: Vec<bool> = strides.iter().map(|s| *s == zero).collect();
        match broadcast.iter().position(|&b| !b) {
            None => Index::Scalar,
            Some(0) if !broadcast.contains(&true) => Index::Same,
            Some(first) if !broadcast[first..].contains(&true) => Index::Suffix(product(&dims[first..])),
            Some(_) => Index::Strided(strides),
        }
    }
}

pub(crate) fn binary(node: &Node, op: BinaryOp) -> Result<Parts, CodegenError> {
    let int = node.output.dtype == DType::I32;
    let (name, expr, helper) = match (op, int) {
        (BinaryOp::Add, _) => ("add", "a + b", None),
        (BinaryOp::Sub, _) => ("sub", "a - b", None),
        (BinaryOp::Mul, _) => ("mul", "a * b", None),
        (BinaryOp::Div, false) => ("div", "a / b", None),
        (BinaryOp::Div, true) => ("div", "div_i32(a, b)", Some(Helper::DivI32)),
        (BinaryOp::Max, _) => ("max", "max(a, b)", None),
        (BinaryOp::Min, _) => ("min", "min(a, b)", None),
        (BinaryOp::Pow, false) => ("pow", "pow_f32(a, b)", Some(Helper::Pow)),
        (BinaryOp::Pow, true) => ("pow", "pow_i32(a, b)", Some(Helper::PowI32)),
    };
    let access = if int { Access::Int } else { Access::Float };
    let mut parts = Parts::new(format!("binary_{name}"), WORKGROUP);
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, access)).collect();
    parts.output = node.output.dtype;
    parts.helpers.extend(helper);
    prologue(&mut parts, product(&node.output.shape));

    let (dims, strides) = broadcast_axes(&node.output.shape, [&node.inputs[0].shape, &node.inputs[1].shape]);
    let index: Vec<Index> = strides.into_iter().map(|s| Index::of(&dims, s)).collect();
    let strided = index.iter().any(|x| matches!(x, Index::Strided(_)));
    if strided && dims.len() > MAX_RANK {
        return Err(node.error(format!(
            "broadcasting {} with {} needs {} index axes; kernels handle up to {MAX_RANK}: reshape the operands to merge axes",
            node.inputs[0], node.inputs[1], dims.len()
        )));
    }
    let mut offsets = Vec::new();
    for (k, ix) in index.iter().enumerate() {
        offsets.push(match ix {
            Index::Same => "i".to_string(),
            Index::Scalar => "0u".to_string(),
            Index::Suffix(n) => format!("i % param({}u)", parts.param(n.clone())),
            Index::Strided(_) => format!("offsets[{k}]"),
        });
    }
    if strided {
        // params: the merged output dims, then each strided operand's strides.
        let rank = dims.len();
        let first_dim = parts.params.len();
        parts.params.extend(dims.iter().map(Dim::to_expr));
        writeln!(
            parts.body,
            "    // Output coordinates over the {rank} merged axes, last fastest, give each operand's offset."
        )
        .unwrap();
        writeln!(parts.body, "    var offsets = vec2<u32>(0u, 0u);\n    var rest = i;").unwrap();
        writeln!(parts.body, "    for (var k = 0u; k < {rank}u; k++) {{\n        let axis = {}u - k;", rank - 1)
            .unwrap();
        writeln!(
            parts.body,
            "        let c = rest % param({first_dim}u + axis);\n        rest = rest / param({first_dim}u + axis);"
        )
        .unwrap();
        for (k, ix) in index.iter().enumerate() {
            if let Index::Strided(strides) = ix {
                let first = parts.params.len();
                parts.params.extend(strides.iter().map(Dim::to_expr));
                writeln!(parts.body, "        offsets[{k}] += c * param({first}u + axis);").unwrap();
            }
        }
        parts.body.push_str("    }\n");
    }
    writeln!(
        parts.body,
        "    let a = load_in0({});\n    let b = load_in1({});\n    out[i] = {expr};",
        offsets[0], offsets[1]
    )
    .unwrap();
    let describe = |ix: &Index| match ix {
        Index::Same => "same shape",
        Index::Suffix(_) => "broadcast over leading axes",
        Index::Scalar => "scalar",
        Index::Strided(_) => "strided",
    };
    parts.summary = format!("out[i] = {expr}; a: {}, b: {}", describe(&index[0]), describe(&index[1]));
    Ok(parts)
}

pub(crate) fn cast(node: &Node, to: DType) -> Result<Parts, CodegenError> {
    // The accessor converts: to i32 it truncates floats toward zero (WGSL's conversion saturates, as Rust's `as`),
    // to a float it converts integers and decodes f16/bf16.
    let access = if to == DType::I32 { Access::Int } else { Access::Float };
    let mut parts = Parts::new("cast", WORKGROUP);
    parts.inputs = vec![(node.inputs[0].dtype, access)];
    parts.output = to;
    let numel = product(&node.output.shape);
    if !is_packed(to) {
        parts.summary = format!("out[i] = {to}(in0[i])");
        prologue(&mut parts, numel);
        parts.body.push_str("    out[i] = load_in0(i);\n");
        return Ok(parts);
    }
    // One invocation per output word: elements 2w and 2w + 1, the second zero past the end.
    let encode = match to {
        DType::F16 => "pack2x16float(vec2<f32>(lo, hi))",
        _ => {
            parts.helpers.push(Helper::Bf16Bits);
            "bf16_bits(lo) | (bf16_bits(hi) << 16u)"
        }
    };
    parts.summary = format!("in0 rounded to {to}, two elements per word");
    prologue(&mut parts, Expr::ceil_div(numel.clone(), Expr::Const(2)));
    parts.param(numel);
    parts.body.push_str(&format!(
        "    let lo = load_in0(2u * i);\n    var hi = 0.0;\n    if 2u * i + 1u < param(1u) {{\n        hi = load_in0(2u * i + 1u);\n    }}\n    out[i] = {encode};\n"
    ));
    Ok(parts)
}
