//! Unary, Binary (numpy broadcasting) and Cast: one invocation per output element (per output word for f16/bf16
//! outputs), 256 invocations per workgroup.

use crate::CodegenError;
use crate::math::Helper;
use crate::shader::{Access, Node, Parts, groups_for, is_packed, product};
use tfc_ir::layout::broadcast_axes;
use std::fmt::Write;
use tfc_ir::{BinaryOp, CompareOp, DType, Dim, Expr, NarrowFloat, ScaleRounding, UnaryOp};

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
        UnaryOp::Sin => ("sin", "sin(x)", None),
        UnaryOp::Cos => ("cos", "cos(x)", None),
        UnaryOp::Tan => ("tan", "tan(x)", None),
        // Through atan2, whose builtin is more accurate than asin and acos near ±1 on some drivers.
        UnaryOp::Asin => ("asin", "atan2(x, sqrt((1.0 - x) * (1.0 + x)))", None),
        UnaryOp::Acos => ("acos", "atan2(sqrt((1.0 - x) * (1.0 + x)), x)", None),
        UnaryOp::Atan => ("atan", "atan(x)", None),
        UnaryOp::Sinh => ("sinh", "0.5 * (exp_f32(x) - exp_f32(-x))", Some(Helper::Exp)),
        UnaryOp::Cosh => ("cosh", "0.5 * (exp_f32(x) + exp_f32(-x))", Some(Helper::Exp)),
        // The odd function of |x|, so that nothing cancels for negative x.
        UnaryOp::Asinh => ("asinh", "sign(x) * log_f32(abs(x) + sqrt(x * x + 1.0))", Some(Helper::Log)),
        UnaryOp::Acosh => ("acosh", "log_f32(x + sqrt(x * x - 1.0))", Some(Helper::Log)),
        UnaryOp::Atanh => ("atanh", "0.5 * log_f32((1.0 + x) / (1.0 - x))", Some(Helper::Log)),
        UnaryOp::Floor => ("floor", "floor(x)", None),
        UnaryOp::Ceil => ("ceil", "ceil(x)", None),
        UnaryOp::Round => ("round", "round(x)", None),
        UnaryOp::Sign => ("sign", "sign(x)", None),
        // max(x, 0) + ln(1 + e^−|x|), which overflows for no x.
        UnaryOp::Softplus => ("softplus", "max(x, 0.0) + log_f32(1.0 + exp_f32(-abs(x)))", Some(Helper::Log)),
    };
    let mut parts = Parts::new(format!("unary_{name}"), WORKGROUP);
    parts.summary = format!("out[i] = {expr} with x = in0[i]");
    parts.inputs = vec![(node.inputs[0].dtype, Access::Float)];
    parts.helpers.extend(helper);
    if op == UnaryOp::Softplus {
        parts.helpers.push(Helper::Exp);
    }
    prologue(&mut parts, product(&node.output.shape));
    writeln!(parts.body, "    let x = load_in0(i);\n    out[i] = {expr};").unwrap();
    Ok(parts)
}

pub(crate) fn bitcast(node: &Node, to: DType) -> Result<Parts, CodegenError> {
    let mut parts = Parts::new("bitcast", WORKGROUP);
    let ty = crate::shader::storage_type(to);
    parts.summary = format!("out[i] = bitcast<{ty}>(in0[i])");
    parts.inputs = vec![(node.inputs[0].dtype, Access::Copy)];
    parts.output = to;
    prologue(&mut parts, product(&node.output.shape));
    writeln!(parts.body, "    out[i] = bitcast<{ty}>(load_in0(i));").unwrap();
    Ok(parts)
}

pub(crate) fn classify(node: &Node, nan: bool, pos_inf: bool, neg_inf: bool) -> Result<Parts, CodegenError> {
    let mut tests = Vec::new();
    if nan {
        tests.push("(bits & 0x7fffffffu) > 0x7f800000u");
    }
    if pos_inf {
        tests.push("bits == 0x7f800000u");
    }
    if neg_inf {
        tests.push("bits == 0xff800000u");
    }
    let test = if tests.is_empty() { "false".to_string() } else { tests.join(" || ") };
    let mut parts = Parts::new("classify", WORKGROUP);
    parts.summary = format!("out[i] = 1 where {test} of the bits of in0[i]");
    parts.inputs = vec![(node.inputs[0].dtype, Access::Float)];
    parts.output = DType::I32;
    prologue(&mut parts, product(&node.output.shape));
    writeln!(parts.body, "    let bits = bitcast<u32>(load_in0(i));\n    out[i] = select(0, 1, {test});").unwrap();
    Ok(parts)
}

/// `Op::RoundTo`, on the bits as `interp::round_to`: the products with powers of two are exact and `round` rounds
/// halves to even, so every driver gets the interpreter's bits.
pub(crate) fn round_to(node: &Node, format: NarrowFloat, saturate: bool) -> Result<Parts, CodegenError> {
    let mut parts = Parts::new(format!("round_to_{}", format.name()), WORKGROUP);
    parts.summary = format!("out[i] = in0[i] rounded to {} (saturate {saturate})", format.name());
    parts.inputs = vec![(node.inputs[0].dtype, Access::Float)];
    prologue(&mut parts, product(&node.output.shape));
    parts.body.push_str("    let bits = bitcast<u32>(load_in0(i));\n    let magnitude = bits & 0x7fffffffu;\n");
    let body = match format.layout() {
        Some(layout) => {
            let (m, min_exponent, max_exponent) = (layout.mantissa_bits as i32, layout.min_exponent(), layout.max_exponent());
            let overflow = layout.overflow_bits(saturate);
            let sign = if layout.negative_zero { "y | (bits & 0x80000000u)" } else { "select(y, y | (bits & 0x80000000u), y != 0u)" };
            let nan = if layout.nan { "bits" } else { "0u" };
            format!(
                "    // x rounded to a multiple of 2^(k − {m}), k its exponent within the format's normal range.
    let k = clamp(i32(magnitude >> 23u) - 127, {min_exponent}, {max_exponent});
    let rounded = round(bitcast<f32>(magnitude) * bitcast<f32>(u32({} - k) << 23u)) * bitcast<f32>(u32({} + k) << 23u);
    var y = select(bitcast<u32>(rounded), {overflow:#x}u, magnitude >= {:#x}u || rounded > {:?});
    y = {sign};
    out[i] = bitcast<f32>(select(y, {nan}, magnitude > 0x7f800000u));\n",
                127 + m,
                127 - m,
                ((max_exponent + 128) as u32) << 23,
                layout.max,
            )
        }
        None => {
            let NarrowFloat::E8M0(rounding) = format else { unreachable!("only E8M0 has no layout") };
            let up = match rounding {
                ScaleRounding::Up => "fraction != 0u",
                ScaleRounding::Down => "false",
                ScaleRounding::Nearest => "fraction >= 0x400000u",
            };
            let (over, under) = if saturate { ("0x7f000000u", "0x400000u") } else { ("0x7fc00000u", "0x7fc00000u") };
            format!(
                "    // Below 2^−126 the exponent is 0 and the fraction that of x / 2^−127.
    let low = magnitude < 0x800000u;
    let fraction = select(magnitude & 0x7fffffu, (magnitude - 0x400000u) << 1u, low);
    let e = (magnitude >> 23u) + select(0u, 1u, {up});
    var y = select(e << 23u, 0x400000u, e == 0u);
    y = select(y, {over}, e > 254u);
    y = select(y, {under}, magnitude < 0x400000u);
    out[i] = bitcast<f32>(select(y, bits, magnitude > 0x7f800000u));\n"
            )
        }
    };
    parts.body.push_str(&body);
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
        // Integers truncate toward zero, as the interpreter.
        (BinaryOp::Div, _) => ("div", "a / b", None),
        (BinaryOp::Max, _) => ("max", "max(a, b)", None),
        (BinaryOp::Min, _) => ("min", "min(a, b)", None),
        (BinaryOp::Pow, false) => ("pow", "pow_f32(a, b)", Some(Helper::Pow)),
        (BinaryOp::Pow, true) => ("pow", "pow_i32(a, b)", Some(Helper::PowI32)),
        (BinaryOp::Fmod, false) => ("fmod", "fmod_f32(a, b)", Some(Helper::Fmod)),
        (BinaryOp::Fmod, true) => ("fmod", "a % b", None),
        (BinaryOp::Mod, false) => ("mod", "mod_f32(a, b)", Some(Helper::Mod)),
        (BinaryOp::Mod, true) => ("mod", "mod_i32(a, b)", Some(Helper::ModI32)),
        (BinaryOp::BitAnd, _) => ("bit_and", "a & b", None),
        (BinaryOp::BitOr, _) => ("bit_or", "a | b", None),
        (BinaryOp::BitXor, _) => ("bit_xor", "a ^ b", None),
        (BinaryOp::ShiftLeft, _) => ("shift_left", "a << (u32(b) & 31u)", None),
        (BinaryOp::ShiftRight, _) => ("shift_right", "bitcast<i32>(bitcast<u32>(a) >> (u32(b) & 31u))", None),
    };
    let access = if int { Access::Int } else { Access::Float };
    let mut parts = Parts::new(format!("binary_{name}"), WORKGROUP);
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, access)).collect();
    parts.helpers.extend(helper);
    broadcast(node, parts, &["a", "b"], expr)
}

pub(crate) fn compare(node: &Node, op: CompareOp) -> Result<Parts, CodegenError> {
    let (name, relation) = match op {
        CompareOp::Eq => ("eq", "=="),
        CompareOp::Ne => ("ne", "!="),
        CompareOp::Lt => ("lt", "<"),
        CompareOp::Le => ("le", "<="),
        CompareOp::Gt => ("gt", ">"),
        CompareOp::Ge => ("ge", ">="),
    };
    let access = if node.inputs[0].dtype.is_float() { Access::Float } else { Access::Int };
    let mut parts = Parts::new(format!("compare_{name}"), WORKGROUP);
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, access)).collect();
    broadcast(node, parts, &["a", "b"], &format!("select(0, 1, a {relation} b)"))
}

pub(crate) fn select(node: &Node) -> Result<Parts, CodegenError> {
    let access = if node.output.dtype.is_float() { Access::Float } else { Access::Int };
    let mut parts = Parts::new("where", WORKGROUP);
    parts.inputs = vec![(node.inputs[0].dtype, Access::Int), (node.inputs[1].dtype, access), (node.inputs[2].dtype, access)];
    broadcast(node, parts, &["c", "a", "b"], "select(b, a, c != 0)")
}

/// An elementwise kernel over operands broadcast to the output: operand k is loaded as `names[k]`, and the output
/// element is `expr` of them. `parts` has the name, inputs and helpers.
fn broadcast(node: &Node, mut parts: Parts, names: &[&str], expr: &str) -> Result<Parts, CodegenError> {
    parts.output = node.output.dtype;
    prologue(&mut parts, product(&node.output.shape));
    let shapes: Vec<&[Dim]> = node.inputs.iter().map(|t| &t.shape[..]).collect();
    let (dims, strides) = match shapes[..] {
        [a, b] => {
            let (dims, [sa, sb]) = broadcast_axes(&node.output.shape, [a, b]);
            (dims, vec![sa, sb])
        }
        [a, b, c] => {
            let (dims, [sa, sb, sc]) = broadcast_axes(&node.output.shape, [a, b, c]);
            (dims, vec![sa, sb, sc])
        }
        _ => unreachable!("elementwise kernels take two or three operands"),
    };
    let index: Vec<Index> = strides.into_iter().map(|s| Index::of(&dims, s)).collect();
    let strided = index.iter().any(|x| matches!(x, Index::Strided(_)));
    if strided && dims.len() > MAX_RANK {
        let operands: Vec<String> = node.inputs.iter().map(|t| t.to_string()).collect();
        return Err(node.error(format!(
            "broadcasting {} needs {} index axes; kernels handle up to {MAX_RANK}: reshape the operands to merge axes",
            operands.join(" with "),
            dims.len()
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
        writeln!(parts.body, "    var offsets = array<u32, {}>();\n    var rest = i;", index.len()).unwrap();
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
    for (k, name) in names.iter().enumerate() {
        writeln!(parts.body, "    let {name} = load_in{k}({});", offsets[k]).unwrap();
    }
    writeln!(parts.body, "    out[i] = {expr};").unwrap();
    let describe = |ix: &Index| match ix {
        Index::Same => "same shape",
        Index::Suffix(_) => "broadcast over leading axes",
        Index::Scalar => "scalar",
        Index::Strided(_) => "strided",
    };
    let operands: Vec<String> = names.iter().zip(&index).map(|(n, ix)| format!("{n}: {}", describe(ix))).collect();
    parts.summary = format!("out[i] = {expr}; {}", operands.join(", "));
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
