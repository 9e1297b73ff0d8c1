//! Unary, Binary (numpy broadcasting) and Cast. Threads take contiguous runs of output elements; each run is walked
//! four elements at a time (an f32x4), the last vector stored lane by lane where the run ends.

use crate::asm::{Body, I, Local};
use crate::decode::{Format, f32_to_bf16, f32_to_half};
use crate::math::{Helper, call};
use crate::{Args, CodegenError, Kernel, Node};
use tfc_ir::layout::broadcast_axes;
use tfc_ir::{BinaryOp, CompareOp, DType, Dim, Expr, FloatLayout, NarrowFloat, ScaleRounding, UnaryOp};

/// The most axes broadcasting indexes after merging axes that broadcast alike.
const MAX_RANK: usize = 6;

fn product(dims: &[Dim]) -> Expr {
    tfc_ir::dim::product(dims).to_expr()
}

/// For elements `i = start, start + 4, …` below `end`: `value(b, i)` pushes the f32x4 (or i32x4) of elements i..i+4,
/// stored at element i of the 4-byte `out`, lane by lane for the last, partial vector.
pub(crate) fn for_each_vector(b: &mut Body, start: Local, end: Local, out: Local, value: impl FnOnce(&mut Body, Local)) {
    let (i, count) = (b.i32(), b.i32());
    b.for_range(i, |b| { b.get(start); }, end, 4, |b| {
        b.assign(count, |b| {
            b.get(end).get(i).op(I::I32Sub).i32c(4).min_u();
        });
        Format::F32.address(b, out, i);
        value(b, i);
        b.store_lanes(count);
    });
}

/// Pushes `f(x)` for the f32x4 local `x`.
fn apply_unary(b: &mut Body, op: UnaryOp, x: Local) {
    let one_plus_exp_of = |b: &mut Body, scale: f32| {
        b.splat(1.0).get(x).splat(scale).op(I::F32x4Mul);
        call(b, Helper::Exp);
        b.op(I::F32x4Add);
    };
    match op {
        UnaryOp::Neg => {
            b.get(x).op(I::F32x4Neg);
        }
        UnaryOp::Abs => {
            b.get(x).op(I::F32x4Abs);
        }
        UnaryOp::Exp => {
            b.get(x);
            call(b, Helper::Exp);
        }
        UnaryOp::Log => {
            b.get(x);
            call(b, Helper::Log);
        }
        UnaryOp::Sqrt => {
            b.get(x).op(I::F32x4Sqrt);
        }
        UnaryOp::Rsqrt => {
            b.splat(1.0).get(x).op(I::F32x4Sqrt).op(I::F32x4Div);
        }
        UnaryOp::Recip => {
            b.splat(1.0).get(x).op(I::F32x4Div);
        }
        UnaryOp::Tanh => {
            b.get(x);
            call(b, Helper::Tanh);
        }
        UnaryOp::Erf => {
            b.get(x);
            call(b, Helper::Erf);
        }
        UnaryOp::Sigmoid => {
            b.splat(1.0);
            one_plus_exp_of(b, -1.0);
            b.op(I::F32x4Div);
        }
        UnaryOp::Relu => {
            b.get(x).splat(0.0).op(I::F32x4Max);
        }
        // x·Φ(x) = x/2 · erfc(−x/√2), which does not cancel for negative x as 1 + erf(x/√2) would.
        UnaryOp::Gelu => {
            b.get(x).splat(0.5).op(I::F32x4Mul);
            b.get(x).splat(-std::f32::consts::FRAC_1_SQRT_2).op(I::F32x4Mul);
            call(b, Helper::Erfc);
            b.op(I::F32x4Mul);
        }
        // x/2 · (1 + tanh u) = x · sigmoid(2u), u = √(2/π)(x + 0.044715x³), which neither cancels nor overflows.
        UnaryOp::GeluTanh => {
            b.get(x);
            b.splat(1.0);
            b.get(x).get(x).op(I::F32x4Mul).get(x).op(I::F32x4Mul).splat(0.044715).op(I::F32x4Mul).get(x).op(I::F32x4Add);
            b.splat(-1.595_769).op(I::F32x4Mul);
            call(b, Helper::Exp);
            b.op(I::F32x4Add).op(I::F32x4Div);
        }
        UnaryOp::Silu => {
            b.get(x);
            one_plus_exp_of(b, -1.0);
            b.op(I::F32x4Div);
        }
        UnaryOp::Sinh | UnaryOp::Cosh => {
            b.get(x);
            call(b, Helper::Exp);
            b.get(x).op(I::F32x4Neg);
            call(b, Helper::Exp);
            b.op(if op == UnaryOp::Sinh { I::F32x4Sub } else { I::F32x4Add }).splat(0.5).op(I::F32x4Mul);
        }
        UnaryOp::Floor => {
            b.get(x).op(I::F32x4Floor);
        }
        UnaryOp::Ceil => {
            b.get(x).op(I::F32x4Ceil);
        }
        UnaryOp::Round => {
            b.get(x).op(I::F32x4Nearest);
        }
        UnaryOp::Sign => {
            // (x > 0) − (x < 0) as 1.0 or 0.0 lanes.
            b.get(x).splat(0.0).op(I::F32x4Gt).splat(1.0).op(I::V128And);
            b.get(x).splat(0.0).op(I::F32x4Lt).splat(1.0).op(I::V128And);
            b.op(I::F32x4Sub);
        }
        // max(x, 0) + ln(1 + e^−|x|), which overflows for no x.
        UnaryOp::Softplus => {
            b.get(x).splat(0.0).op(I::F32x4Max);
            b.splat(1.0).get(x).op(I::F32x4Abs).op(I::F32x4Neg);
            call(b, Helper::Exp);
            b.op(I::F32x4Add);
            call(b, Helper::Log);
            b.op(I::F32x4Add);
        }
        // The odd function of |x|, so that nothing cancels for negative x.
        UnaryOp::Asinh => {
            let magnitude = b.let_v128(|b| {
                b.get(x).op(I::F32x4Abs);
                b.get(x).get(x).op(I::F32x4Mul).splat(1.0).op(I::F32x4Add).op(I::F32x4Sqrt).op(I::F32x4Add);
                call(b, Helper::Log);
            });
            // |result| with x's sign bit.
            b.get(magnitude).get(x).splat_i32(i32::MIN).op(I::V128And).op(I::V128Or);
        }
        UnaryOp::Acosh => {
            b.get(x).get(x).get(x).op(I::F32x4Mul).splat(1.0).op(I::F32x4Sub).op(I::F32x4Sqrt).op(I::F32x4Add);
            call(b, Helper::Log);
        }
        UnaryOp::Atanh => {
            b.splat(1.0).get(x).op(I::F32x4Add).splat(1.0).get(x).op(I::F32x4Sub).op(I::F32x4Div);
            call(b, Helper::Log);
            b.splat(0.5).op(I::F32x4Mul);
        }
        UnaryOp::Atan => atan(b, x),
        // asin x = atan(x / √((1 − x)(1 + x))); acos x = 2·atan(√((1 − x) / (1 + x))), which keeps its accuracy
        // near x = 1 where π/2 − asin x would cancel.
        UnaryOp::Asin => {
            let ratio = b.let_v128(|b| {
                b.get(x).splat(1.0).get(x).op(I::F32x4Sub).splat(1.0).get(x).op(I::F32x4Add).op(I::F32x4Mul).op(I::F32x4Sqrt).op(I::F32x4Div);
            });
            atan(b, ratio);
        }
        UnaryOp::Acos => {
            let ratio = b.let_v128(|b| {
                b.splat(1.0).get(x).op(I::F32x4Sub).splat(1.0).get(x).op(I::F32x4Add).op(I::F32x4Div).op(I::F32x4Sqrt);
            });
            atan(b, ratio);
            b.splat(2.0).op(I::F32x4Mul);
        }
        UnaryOp::Sin => sin_cos(b, x, 0),
        UnaryOp::Cos => sin_cos(b, x, 1),
        UnaryOp::Tan => {
            sin_cos(b, x, 0);
            sin_cos(b, x, 1);
            b.op(I::F32x4Div);
        }
    }
}

/// Pushes sin (x + quarter·π/2) of the f32x4 local `x`: q = round(x·2/π), r = x − q·π/2 (π/2 split in three, Cody &
/// Waite), then Cephes' sinf or cosf polynomial of r (|r| ≤ π/4) by q + quarter mod 4, negated for 2 and 3.
fn sin_cos(b: &mut Body, x: Local, quarter: i32) {
    let q = b.let_v128(|b| {
        b.get(x).splat(std::f32::consts::FRAC_2_PI).op(I::F32x4Mul).op(I::F32x4Nearest);
    });
    let r = b.let_v128(|b| {
        b.get(x).get(q).splat(1.570_312_5).op(I::F32x4Mul).op(I::F32x4Sub);
        b.get(q).splat(4.837_513e-4).op(I::F32x4Mul).op(I::F32x4Sub);
        b.get(q).splat(7.549_79e-8).op(I::F32x4Mul).op(I::F32x4Sub);
    });
    let n = b.let_v128(|b| {
        b.get(q).op(I::I32x4TruncSatF32x4S).splat_i32(quarter).op(I::I32x4Add);
    });
    let z = b.let_v128(|b| {
        b.get(r).get(r).op(I::F32x4Mul);
    });
    // cos r, then sin r, chosen by bit 0 of n.
    b.splat(2.443_315_7e-5).get(z).op(I::F32x4Mul).splat(-1.388_731_6e-3).op(I::F32x4Add);
    b.get(z).op(I::F32x4Mul).splat(4.166_664_6e-2).op(I::F32x4Add).get(z).op(I::F32x4Mul).get(z).op(I::F32x4Mul);
    b.get(z).splat(0.5).op(I::F32x4Mul).op(I::F32x4Sub).splat(1.0).op(I::F32x4Add);
    b.splat(-1.951_529_6e-4).get(z).op(I::F32x4Mul).splat(8.332_161e-3).op(I::F32x4Add);
    b.get(z).op(I::F32x4Mul).splat(-1.666_665_5e-1).op(I::F32x4Add).get(z).op(I::F32x4Mul).get(r).op(I::F32x4Mul).get(r).op(I::F32x4Add);
    b.get(n).splat_i32(1).op(I::V128And).splat_i32(1).op(I::I32x4Eq).op(I::V128Bitselect);
    // Bit 1 of n flips the sign.
    b.get(n).splat_i32(2).op(I::V128And).i32c(30).op(I::I32x4Shl).op(I::V128Xor);
}

/// Pushes atan of the f32x4 local `v`: Cephes' atanf (Moshier), which reduces |v| to |t| ≤ tan(π/8) with
/// atan v = π/2 + atan(−1/v) above tan(3π/8) and π/4 + atan((v − 1)/(v + 1)) above tan(π/8), then a degree-9 odd
/// polynomial (relative error about 1e-7); the sign of v goes back last.
fn atan(b: &mut Body, v: Local) {
    let a = b.let_v128(|b| {
        b.get(v).op(I::F32x4Abs);
    });
    let (big, mid) = (b.v128(), b.v128());
    b.get(a).splat(2.414_213_5).op(I::F32x4Gt).set(big);
    b.get(a).splat(0.414_213_57).op(I::F32x4Gt).set(mid);
    // t = big ? −1/a : mid ? (a − 1)/(a + 1) : a, and y0 = π/2, π/4 or 0 alike.
    let t = b.let_v128(|b| {
        b.splat(-1.0).get(a).op(I::F32x4Div);
        b.get(a).splat(1.0).op(I::F32x4Sub).get(a).splat(1.0).op(I::F32x4Add).op(I::F32x4Div);
        b.get(a).get(mid).op(I::V128Bitselect);
        b.get(big).op(I::V128Bitselect);
    });
    let y0 = b.let_v128(|b| {
        b.splat(std::f32::consts::FRAC_PI_2).splat(std::f32::consts::FRAC_PI_4).splat(0.0).get(mid).op(I::V128Bitselect).get(big).op(I::V128Bitselect);
    });
    let z = b.let_v128(|b| {
        b.get(t).get(t).op(I::F32x4Mul);
    });
    b.splat(8.053_744_5e-2).get(z).op(I::F32x4Mul).splat(-1.387_768_6e-1).op(I::F32x4Add);
    b.get(z).op(I::F32x4Mul).splat(1.997_771_1e-1).op(I::F32x4Add);
    b.get(z).op(I::F32x4Mul).splat(-3.333_295e-1).op(I::F32x4Add);
    b.get(z).op(I::F32x4Mul).get(t).op(I::F32x4Mul).get(t).op(I::F32x4Add).get(y0).op(I::F32x4Add);
    // The result is ≥ 0 for |v|: put v's sign bit on it.
    b.get(v).splat_i32(i32::MIN).op(I::V128And).op(I::V128Or);
}

fn unary_name(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Sin => "sin",
        UnaryOp::Cos => "cos",
        UnaryOp::Tan => "tan",
        UnaryOp::Asin => "asin",
        UnaryOp::Acos => "acos",
        UnaryOp::Atan => "atan",
        UnaryOp::Sinh => "sinh",
        UnaryOp::Cosh => "cosh",
        UnaryOp::Asinh => "asinh",
        UnaryOp::Acosh => "acosh",
        UnaryOp::Atanh => "atanh",
        UnaryOp::Floor => "floor",
        UnaryOp::Ceil => "ceil",
        UnaryOp::Round => "round",
        UnaryOp::Sign => "sign",
        UnaryOp::Softplus => "softplus",
        UnaryOp::Neg => "neg",
        UnaryOp::Abs => "abs",
        UnaryOp::Exp => "exp",
        UnaryOp::Log => "log",
        UnaryOp::Sqrt => "sqrt",
        UnaryOp::Rsqrt => "rsqrt",
        UnaryOp::Recip => "recip",
        UnaryOp::Tanh => "tanh",
        UnaryOp::Erf => "erf",
        UnaryOp::Sigmoid => "sigmoid",
        UnaryOp::Relu => "relu",
        UnaryOp::Gelu => "gelu",
        UnaryOp::GeluTanh => "gelu_tanh",
        UnaryOp::Silu => "silu",
    }
}

/// A kernel of one operand that maps each vector of 4 of its elements: `value` gets them (as f32 or i32 bits) in a
/// v128 local and leaves the output's 4 lanes on the stack. Params: the element count.
fn map_vectors(node: &Node, name: String, value: impl FnOnce(&mut Body, Local)) -> Result<Kernel, CodegenError> {
    let format = node.format(0)?;
    let (mut b, args) = Args::new(1);
    let n = args.param(&mut b, 0);
    let (start, end) = args.share(&mut b, n);
    let (input, x) = (args.input(0), b.v128());
    for_each_vector(&mut b, start, end, args.output(), |b, i| {
        format.address(b, input, i);
        format.load4(b);
        b.set(x);
        value(b, x);
    });
    Ok(Kernel { name, body: b, bindings: 2, params: vec![product(&node.output.shape)] })
}

pub(crate) fn unary(node: &Node, op: UnaryOp) -> Result<Kernel, CodegenError> {
    map_vectors(node, format!("unary_{}", unary_name(op)), |b, x| apply_unary(b, op, x))
}

/// How an operand's element follows from the output's linear index.
enum Index {
    /// The operand has the output's shape (up to size-1 axes).
    Same,
    /// Broadcast over leading axes only: element `i % n` of the operand's `n` (a param index).
    Suffix(usize),
    /// One element.
    Scalar,
    /// Per-axis strides over the merged output axes (0 where it broadcasts); the param index of the first stride.
    Strided(usize),
}

/// An operand's broadcasting over the merged output axes, from its strides there (0 where it broadcasts).
#[derive(Clone, Copy, PartialEq)]
enum Pattern {
    Same,
    /// Broadcast over the axes before this one only.
    Suffix(usize),
    Scalar,
    Strided,
}

impl Pattern {
    fn of(strides: &[Dim]) -> Pattern {
        let broadcast: Vec<bool> = strides.iter().map(|d| *d == Dim::from(0u64)).collect();
        match broadcast.iter().position(|&x| !x) {
            None => Pattern::Scalar,
            Some(0) if !broadcast.contains(&true) => Pattern::Same,
            Some(first) if !broadcast[first..].contains(&true) => Pattern::Suffix(first),
            Some(_) => Pattern::Strided,
        }
    }
}

/// The broadcasting of a binary op: the merged output axes (param index of the first dim, rank) and each operand's
/// index, with the params they read.
struct Broadcast {
    dims: (usize, usize),
    index: Vec<Index>,
    params: Vec<Expr>,
}

impl Broadcast {
    fn new(node: &Node) -> Result<Broadcast, CodegenError> {
        let out = &node.output.shape;
        let shapes: Vec<&[Dim]> = node.inputs.iter().map(|t| &t.shape[..]).collect();
        let (dims, strides) = match shapes[..] {
            [a, b] => {
                let (dims, [sa, sb]) = broadcast_axes(out, [a, b]);
                (dims, vec![sa, sb])
            }
            [a, b, c] => {
                let (dims, [sa, sb, sc]) = broadcast_axes(out, [a, b, c]);
                (dims, vec![sa, sb, sc])
            }
            _ => unreachable!("elementwise kernels take two or three operands"),
        };
        let patterns: Vec<Pattern> = strides.iter().map(|s| Pattern::of(s)).collect();
        let strided = patterns.contains(&Pattern::Strided);
        if strided && dims.len() > MAX_RANK {
            let operands: Vec<String> = node.inputs.iter().map(|t| t.to_string()).collect();
            return Err(node.error(format!(
                "broadcasting {} needs {} index axes; kernels handle up to {MAX_RANK}: reshape the operands to merge axes",
                operands.join(" with "),
                dims.len()
            )));
        }
        // params: the element count, the merged dims if an operand is strided, then each operand's suffix length or
        // strides.
        let mut params = vec![product(out)];
        let first_dim = params.len();
        if strided {
            params.extend(dims.iter().map(Dim::to_expr));
        }
        let index = (0..patterns.len()).map(|k| match patterns[k] {
            Pattern::Same => Index::Same,
            Pattern::Scalar => Index::Scalar,
            Pattern::Suffix(first) => {
                params.push(product(&dims[first..]));
                Index::Suffix(params.len() - 1)
            }
            Pattern::Strided => {
                params.extend(strides[k].iter().map(Dim::to_expr));
                Index::Strided(params.len() - strides[k].len())
            }
        }).collect();
        Ok(Broadcast { dims: (first_dim, dims.len()), index, params })
    }
}

/// The params of one operand's index, loaded once at the start of the kernel.
enum Loaded {
    Same,
    Suffix(Local),
    Scalar,
    /// (dims, strides) over the merged axes.
    Strided(Vec<Local>, Vec<Local>),
}

impl Loaded {
    fn new(b: &mut Body, args: &Args, broadcast: &Broadcast, index: &Index) -> Loaded {
        let (first_dim, rank) = broadcast.dims;
        match *index {
            Index::Same => Loaded::Same,
            Index::Scalar => Loaded::Scalar,
            Index::Suffix(p) => Loaded::Suffix(args.param(b, p)),
            Index::Strided(p) => {
                let dims = (0..rank).map(|a| args.param(b, first_dim + a)).collect();
                let strides = (0..rank).map(|a| args.param(b, p + a)).collect();
                Loaded::Strided(dims, strides)
            }
        }
    }

    /// Pushes the operand's element index for output element `e` (an i32 local).
    fn element(&self, b: &mut Body, e: Local) {
        match self {
            Loaded::Same => {
                b.get(e);
            }
            Loaded::Scalar => {
                b.i32c(0);
            }
            Loaded::Suffix(n) => {
                b.get(e).get(*n).op(I::I32RemU);
            }
            Loaded::Strided(dims, strides) => {
                // The output coordinates over the merged axes, last fastest, times the operand's strides.
                let (rest, offset) = (b.i32(), b.i32());
                b.get(e).set(rest).i32c(0).set(offset);
                for axis in (0..dims.len()).rev() {
                    b.get(offset).get(rest).get(dims[axis]).op(I::I32RemU).get(strides[axis]).op(I::I32Mul).op(I::I32Add).set(offset);
                    b.get(rest).get(dims[axis]).op(I::I32DivU).set(rest);
                }
                b.get(offset);
            }
        }
    }

    /// Pushes the f32x4 of the operand's elements for output elements i..i+4.
    fn load4(&self, b: &mut Body, format: Format, base: Local, i: Local) {
        let gather = |b: &mut Body| {
            let (e, at) = (b.i32(), b.i32());
            b.splat(0.0);
            for lane in 0..4u8 {
                b.assign(e, |b| {
                    b.get(i).i32c(lane as i32).op(I::I32Add);
                });
                b.assign(at, |b| self.element(b, e));
                format.address(b, base, at);
                format.load1(b);
                b.op(I::F32x4ReplaceLane(lane));
            }
        };
        match self {
            Loaded::Same => {
                format.address(b, base, i);
                format.load4(b);
            }
            Loaded::Scalar => {
                b.get(base);
                format.load1(b);
                b.op(I::F32x4Splat);
            }
            Loaded::Suffix(n) => {
                // Four consecutive elements unless they wrap around the end of the operand.
                let (j, v) = (b.i32(), b.v128());
                b.get(i).get(*n).op(I::I32RemU).tee(j).i32c(4).op(I::I32Add).get(*n).op(I::I32LeU).if_else(
                    |b| {
                        format.address(b, base, j);
                        format.load4(b);
                        b.set(v);
                    },
                    |b| {
                        gather(b);
                        b.set(v);
                    },
                );
                b.get(v);
            }
            Loaded::Strided(..) => gather(b),
        }
    }
}

fn binary_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
        BinaryOp::Max => "max",
        BinaryOp::Min => "min",
        BinaryOp::Pow => "pow",
        BinaryOp::Mod => "mod",
        BinaryOp::Fmod => "fmod",
        BinaryOp::BitAnd => "bit_and",
        BinaryOp::BitOr => "bit_or",
        BinaryOp::BitXor => "bit_xor",
        BinaryOp::ShiftLeft => "shift_left",
        BinaryOp::ShiftRight => "shift_right",
    }
}

/// Params: the element count, then the merged dims (if an operand is strided), then each operand's suffix length
/// or strides.
pub(crate) fn binary(node: &Node, op: BinaryOp) -> Result<Kernel, CodegenError> {
    let formats = [node.format(0)?, node.format(1)?];
    let broadcast = Broadcast::new(node)?;
    let (mut b, args) = Args::new(2);
    let n = args.param(&mut b, 0);
    let (start, end) = args.share(&mut b, n);
    let loaded = [0, 1].map(|k| Loaded::new(&mut b, &args, &broadcast, &broadcast.index[k]));
    if node.output.dtype == DType::I32 {
        integer_elements(&mut b, &args, &loaded, formats, (start, end), |b, x, y, q, r| integer_binary(b, op, x, y, q, r));
    } else {
        let (x, y) = (b.v128(), b.v128());
        for_each_vector(&mut b, start, end, args.output(), |b, i| {
            loaded[0].load4(b, formats[0], args.input(0), i);
            b.set(x);
            loaded[1].load4(b, formats[1], args.input(1), i);
            b.set(y);
            b.get(x).get(y);
            match op {
                BinaryOp::Add => b.op(I::F32x4Add),
                BinaryOp::Sub => b.op(I::F32x4Sub),
                BinaryOp::Mul => b.op(I::F32x4Mul),
                BinaryOp::Div => b.op(I::F32x4Div),
                BinaryOp::Max => b.op(I::F32x4Max),
                BinaryOp::Min => b.op(I::F32x4Min),
                BinaryOp::Pow => {
                    call(b, Helper::Pow);
                    b
                }
                BinaryOp::BitAnd | BinaryOp::BitOr | BinaryOp::BitXor | BinaryOp::ShiftLeft | BinaryOp::ShiftRight => {
                    unreachable!("the type rule keeps {op:?} to integers")
                }
                BinaryOp::Fmod | BinaryOp::Mod => {
                    // r = x − y·trunc(x / y), moved to the sign of y for Mod.
                    let r = b.v128();
                    b.op(I::F32x4Div).op(I::F32x4Trunc).get(y).op(I::F32x4Mul).set(r);
                    b.get(x).get(r).op(I::F32x4Sub).set(r);
                    b.get(r);
                    if op == BinaryOp::Mod {
                        // Add y where r ≠ 0 and its sign differs from y's.
                        b.get(y).splat(0.0);
                        b.get(r).splat(0.0).op(I::F32x4Ne);
                        b.get(r).splat(0.0).op(I::F32x4Lt).get(y).splat(0.0).op(I::F32x4Lt).op(I::V128Xor);
                        b.op(I::V128And).op(I::V128Bitselect).op(I::F32x4Add);
                    }
                    b
                }
            };
        });
    }
    Ok(Kernel { name: format!("binary_{}", binary_name(op)), body: b, bindings: 3, params: broadcast.params })
}

/// An elementwise op on two broadcast operands read as i32, one element at a time: `combine(b, x, y, q, r)` pushes
/// the i32 result of the locals x and y (q and r are scratch locals).
fn integer_elements(
    b: &mut Body,
    args: &Args,
    loaded: &[Loaded; 2],
    formats: [Format; 2],
    (start, end): (Local, Local),
    combine: impl FnOnce(&mut Body, Local, Local, Local, Local),
) {
    let (e, at, x, y, q, r) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let out = args.output();
    b.for_range(e, |b| { b.get(start); }, end, 1, |b| {
        for (k, value) in [x, y].into_iter().enumerate() {
            b.assign(at, |b| loaded[k].element(b, e));
            formats[k].address(b, args.input(k), at);
            formats[k].load1_i32(b);
            b.set(value);
        }
        Format::I32.address(b, out, e);
        combine(b, x, y, q, r);
        b.i32_store(0);
    });
}

/// Integer binary ops as the interpreter's i64 arithmetic truncated to i32: wrapping add/sub/mul, division
/// truncated toward zero (division by zero traps, which the runtime reports), and a^clamp(b, 0, 63).
fn integer_binary(b: &mut Body, op: BinaryOp, x: Local, y: Local, q: Local, r: Local) {
    // One instruction on (x, y); WASM's shifts take the count mod 32, as the IR.
    let single = match op {
        BinaryOp::Add => Some(I::I32Add),
        BinaryOp::Sub => Some(I::I32Sub),
        BinaryOp::Mul => Some(I::I32Mul),
        BinaryOp::BitAnd => Some(I::I32And),
        BinaryOp::BitOr => Some(I::I32Or),
        BinaryOp::BitXor => Some(I::I32Xor),
        BinaryOp::ShiftLeft => Some(I::I32Shl),
        BinaryOp::ShiftRight => Some(I::I32ShrU),
        _ => None,
    };
    if let Some(instruction) = single {
        b.get(x).get(y).op(instruction);
        return;
    }
    match op {
        BinaryOp::Max => {
            b.get(x).get(y).get(x).get(y).op(I::I32GtS).op(I::Select);
        }
        BinaryOp::Min => {
            b.get(x).get(y).get(x).get(y).op(I::I32LtS).op(I::Select);
        }
        BinaryOp::Div => {
            // x / −1 is −x, wrapping (i32.div_s would trap on i32::MIN).
            b.get(y).i32c(-1).op(I::I32Eq).if_else(
                |b| {
                    b.i32c(0).get(x).op(I::I32Sub).set(q);
                },
                |b| {
                    b.get(x).get(y).op(I::I32DivS).set(q);
                },
            );
            b.get(q);
        }
        BinaryOp::Fmod | BinaryOp::Mod => {
            // i32.rem_s traps on a zero divisor, as the interpreter refuses it.
            b.get(x).get(y).op(I::I32RemS).set(r);
            if op == BinaryOp::Mod {
                b.get(r).i32c(0).op(I::I32Ne).get(r).i32c(0).op(I::I32LtS).get(y).i32c(0).op(I::I32LtS).op(I::I32Ne).op(I::I32And).if_(|b| {
                    b.get(r).get(y).op(I::I32Add).set(r);
                });
            }
            b.get(r);
        }
        BinaryOp::Pow => {
            // Repeated squaring with wrapping multiplication; r is the running power, q the exponent left.
            b.get(y).i32c(0).get(y).i32c(0).op(I::I32GtS).op(I::Select).i32c(63).min_u().set(q);
            b.i32c(1).set(r);
            b.while_(
                |b| {
                    b.get(q);
                },
                |b| {
                    b.get(q).i32c(1).op(I::I32And).if_(|b| {
                        b.get(r).get(x).op(I::I32Mul).set(r);
                    });
                    b.get(x).get(x).op(I::I32Mul).set(x);
                    b.get(q).i32c(1).op(I::I32ShrU).set(q);
                },
            );
            b.get(r);
        }
        _ => unreachable!("{op:?} is one instruction, emitted above"),
    }
}

/// `(condition, a, b)` broadcast: a where the condition is nonzero, else b, one element at a time (a and b decoded
/// to f32 for a float output). Params as `binary`'s, for three operands.
pub(crate) fn select(node: &Node) -> Result<Kernel, CodegenError> {
    let formats = [node.format(0)?, node.format(1)?, node.format(2)?];
    let int = node.output.dtype == DType::I32;
    let broadcast = Broadcast::new(node)?;
    let (mut b, args) = Args::new(3);
    let n = args.param(&mut b, 0);
    let (start, end) = args.share(&mut b, n);
    let loaded: Vec<Loaded> = broadcast.index.iter().map(|ix| Loaded::new(&mut b, &args, &broadcast, ix)).collect();
    let (e, at) = (b.i32(), b.i32());
    b.for_range(e, |b| { b.get(start); }, end, 1, |b| {
        Format::I32.address(b, args.output(), e);
        // Both values, then the condition: `select` keeps the first where it is nonzero.
        for k in [1, 2, 0] {
            b.assign(at, |b| loaded[k].element(b, e));
            formats[k].address(b, args.input(k), at);
            if int || k == 0 { formats[k].load1_i32(b) } else { formats[k].load1(b) }
        }
        b.op(I::Select);
        if int { b.i32_store(0) } else { b.f32_store(0) };
    });
    Ok(Kernel { name: "where".into(), body: b, bindings: 4, params: broadcast.params })
}

/// 1 (i32) where the bits of the element are a NaN, +∞ or −∞ as asked, else 0.
pub(crate) fn classify(node: &Node, nan: bool, pos_inf: bool, neg_inf: bool) -> Result<Kernel, CodegenError> {
    map_vectors(node, "classify".into(), |b, bits| {
        b.splat_i32(0);
        if nan {
            b.get(bits).splat_i32(0x7fff_ffff).op(I::V128And).splat_i32(0x7f80_0000).op(I::I32x4GtS).op(I::V128Or);
        }
        if pos_inf {
            b.get(bits).splat_i32(0x7f80_0000).op(I::I32x4Eq).op(I::V128Or);
        }
        if neg_inf {
            b.get(bits).splat_i32(0xff80_0000u32 as i32).op(I::I32x4Eq).op(I::V128Or);
        }
        b.splat_i32(1).op(I::V128And);
    })
}

/// `Op::RoundTo`, lane by lane as `interp::round_to`: on the bits, and exact products with powers of two.
pub(crate) fn round_to(node: &Node, format: NarrowFloat, saturate: bool) -> Result<Kernel, CodegenError> {
    map_vectors(node, format!("round_to_{}", format.name()), |b, bits| {
        let magnitude = b.v128();
        b.get(bits).splat_i32(0x7fff_ffff).op(I::V128And).set(magnitude);
        match (format.layout(), format) {
            (Some(layout), _) => round_to_layout(b, layout, saturate, bits, magnitude),
            (None, NarrowFloat::E8M0(rounding)) => round_to_e8m0(b, rounding, saturate, bits, magnitude),
            (None, _) => unreachable!("only E8M0 has no layout"),
        }
    })
}

fn round_to_layout(b: &mut Body, layout: FloatLayout, saturate: bool, bits: Local, magnitude: Local) {
    let (m, max_exponent) = (layout.mantissa_bits as i32, layout.max_exponent());
    // The exponent of x within the format's normal range, and x rounded to a multiple of 2^(k − m).
    let k = b.let_v128(|b| {
        b.get(magnitude).i32c(23).op(I::I32x4ShrU).splat_i32(127).op(I::I32x4Sub);
        b.splat_i32(max_exponent).op(I::I32x4MinS).splat_i32(layout.min_exponent()).op(I::I32x4MaxS);
    });
    let rounded = b.let_v128(|b| {
        b.get(magnitude).splat_i32(127 + m).get(k).op(I::I32x4Sub).i32c(23).op(I::I32x4Shl).op(I::F32x4Mul).op(I::F32x4Nearest);
        b.get(k).splat_i32(127 - m).op(I::I32x4Add).i32c(23).op(I::I32x4Shl).op(I::F32x4Mul);
    });
    let y = b.let_v128(|b| {
        b.splat_i32(layout.overflow_bits(saturate) as i32).get(rounded);
        b.get(magnitude).splat_i32((max_exponent + 128) << 23).op(I::I32x4GeS);
        b.get(rounded).splat(layout.max).op(I::F32x4Gt).op(I::V128Or).op(I::V128Bitselect);
    });
    // x's sign, except on a zero of a format without −0.
    b.get(y).get(bits).splat_i32(i32::MIN).op(I::V128And);
    if !layout.negative_zero {
        b.get(y).splat_i32(0).op(I::I32x4Ne).op(I::V128And);
    }
    b.op(I::V128Or).set(y);
    if layout.nan {
        b.get(bits);
    } else {
        b.splat_i32(0);
    }
    b.get(y).get(magnitude).splat_i32(0x7f80_0000).op(I::I32x4GtS).op(I::V128Bitselect);
}

fn round_to_e8m0(b: &mut Body, rounding: ScaleRounding, saturate: bool, bits: Local, magnitude: Local) {
    const MIN: i32 = 0x0040_0000; // 2^−127
    const MAX: i32 = 0x7f00_0000; // 2^127
    const NAN: i32 = 0x7fc0_0000;
    // The biased exponent, plus 1 where rounding goes up; below 2^−126 the fraction is that of x / 2^−127.
    let fraction = b.let_v128(|b| {
        b.get(magnitude).splat_i32(MIN).op(I::I32x4Sub).i32c(1).op(I::I32x4Shl);
        b.get(magnitude).splat_i32(0x7f_ffff).op(I::V128And);
        b.get(magnitude).splat_i32(0x80_0000).op(I::I32x4LtS).op(I::V128Bitselect);
    });
    let e = b.let_v128(|b| {
        b.get(magnitude).i32c(23).op(I::I32x4ShrU);
        match rounding {
            ScaleRounding::Up => {
                b.get(fraction).splat_i32(0).op(I::I32x4Ne).op(I::I32x4Sub);
            }
            ScaleRounding::Down => {}
            ScaleRounding::Nearest => {
                b.get(fraction).splat_i32(0x40_0000).op(I::I32x4GeS).op(I::I32x4Sub);
            }
        }
    });
    let (over, under) = if saturate { (MAX, MIN) } else { (NAN, NAN) };
    let y = b.let_v128(|b| {
        b.splat_i32(MIN).get(e).i32c(23).op(I::I32x4Shl).get(e).splat_i32(0).op(I::I32x4Eq).op(I::V128Bitselect);
    });
    b.splat_i32(over).get(y).get(e).splat_i32(254).op(I::I32x4GtS).op(I::V128Bitselect).set(y);
    b.splat_i32(under).get(y).get(magnitude).splat_i32(MIN).op(I::I32x4LtS).op(I::V128Bitselect).set(y);
    b.get(bits).get(y).get(magnitude).splat_i32(0x7f80_0000).op(I::I32x4GtS).op(I::V128Bitselect);
}

/// Like `binary`, with 1 or 0 as i32 out.
pub(crate) fn compare(node: &Node, op: CompareOp) -> Result<Kernel, CodegenError> {
    let formats = [node.format(0)?, node.format(1)?];
    let broadcast = Broadcast::new(node)?;
    let (mut b, args) = Args::new(2);
    let n = args.param(&mut b, 0);
    let (start, end) = args.share(&mut b, n);
    let loaded = [0, 1].map(|k| Loaded::new(&mut b, &args, &broadcast, &broadcast.index[k]));
    let (name, float, int) = match op {
        CompareOp::Eq => ("eq", I::F32x4Eq, I::I32Eq),
        CompareOp::Ne => ("ne", I::F32x4Ne, I::I32Ne),
        CompareOp::Lt => ("lt", I::F32x4Lt, I::I32LtS),
        CompareOp::Le => ("le", I::F32x4Le, I::I32LeS),
        CompareOp::Gt => ("gt", I::F32x4Gt, I::I32GtS),
        CompareOp::Ge => ("ge", I::F32x4Ge, I::I32GeS),
    };
    if node.inputs[0].dtype.is_int() {
        integer_elements(&mut b, &args, &loaded, formats, (start, end), |b, x, y, _, _| {
            b.get(x).get(y).op(int);
        });
    } else {
        let x = b.v128();
        for_each_vector(&mut b, start, end, args.output(), |b, i| {
            loaded[0].load4(b, formats[0], args.input(0), i);
            b.set(x);
            b.get(x);
            loaded[1].load4(b, formats[1], args.input(1), i);
            b.op(float).splat_i32(1).op(I::V128And);
        });
    }
    Ok(Kernel { name: format!("compare_{name}"), body: b, bindings: 3, params: broadcast.params })
}

/// Params: the element count.
pub(crate) fn cast(node: &Node, to: DType) -> Result<Kernel, CodegenError> {
    let from = node.format(0)?;
    let out_format = node.output_format()?;
    let (mut b, args) = Args::new(1);
    let n = args.param(&mut b, 0);
    let (start, end) = args.share(&mut b, n);
    let input = args.input(0);
    match to {
        DType::F32 | DType::I32 => for_each_vector(&mut b, start, end, args.output(), |b, i| {
            from.address(b, input, i);
            match (from, to) {
                (Format::I32, DType::I32) => b.v128_load(0),
                (_, DType::I32) => {
                    from.load4(b);
                    b.op(I::I32x4TruncSatF32x4S)
                }
                _ => {
                    from.load4(b);
                    b
                }
            };
        }),
        DType::F16 | DType::BF16 => {
            let e = b.i32();
            b.for_range(e, |b| { b.get(start); }, end, 1, |b| {
                out_format.address(b, args.output(), e);
                from.address(b, input, e);
                from.load1(b);
                if to == DType::F16 { f32_to_half(b) } else { f32_to_bf16(b) }
                out_format.store_bits(b);
            });
        }
        DType::I64 => return Err(node.error("casts to i64 are not stored by tfc bundles; cast to i32")),
        block => return Err(node.error(format!("casts to the block format {block} are not kernels (weights are quantized when compiled)"))),
    }
    Ok(Kernel { name: "cast".into(), body: b, bindings: 2, params: vec![product(&node.output.shape)] })
}
