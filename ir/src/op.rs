//! The operations of the IR and their type rules. Each op's semantics live here (types, shapes) and in
//! `interp.rs` (values); backends implement the same contract.

use crate::{DType, Dim, WeightId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type and symbolic shape of a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<Dim>) -> TensorType {
        TensorType { dtype, shape }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> Dim {
        crate::dim::product(&self.shape)
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// What a runtime puts into a graph input that the caller left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputDefault {
    Zeros,
    Ones,
    /// past, past + 1, … along the last axis (position ids; `past` is the number of cached tokens, 0 without a cache).
    Positions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// Integers: truncated toward zero (C, ONNX); i32::MIN / −1 wraps to i32::MIN.
    Div,
    Max,
    Min,
    Pow,
    /// The remainder with the sign of the divisor (Python's `%`, ONNX Mod with fmod = 0).
    Mod,
    /// The remainder with the sign of the dividend (C's `fmod`, ONNX Mod with fmod = 1).
    Fmod,
    /// Bitwise on the 32 bits of integer operands (booleans included).
    BitAnd,
    BitOr,
    BitXor,
    /// a shifted by b mod 32 bits, integers only; right shifts are logical (as on unsigned values).
    ShiftLeft,
    ShiftRight,
}

impl BinaryOp {
    /// Whether the op takes integer operands only.
    pub fn integer_only(self) -> bool {
        matches!(self, BinaryOp::BitAnd | BinaryOp::BitOr | BinaryOp::BitXor | BinaryOp::ShiftLeft | BinaryOp::ShiftRight)
    }
}

/// Elementwise comparisons: 1 where the relation holds, else 0, as i32 (tfc's booleans).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// How `Op::Reduce` combines the elements of the reduced axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    /// Σ|x|.
    L1,
    /// √Σx².
    L2,
    /// ln Σx.
    LogSum,
    /// ln Σeˣ, computed as m + ln Σe^(x−m) with m the maximum.
    LogSumExp,
    /// Σx².
    SumSquare,
}

/// What `Op::Pad` puts in the new elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    Constant(f32),
    /// Mirrored without repeating the edge: x[1], x[0] | x[0], x[1], …
    Reflect,
    /// Copies of the edge element.
    Edge,
    /// Elements from the other end (periodic).
    Wrap,
}

/// How `Op::Pool` combines a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PoolKind {
    Max,
    /// The mean over the window; with `count_pad`, padding positions count (as zeros) in the divisor.
    Average { count_pad: bool },
    /// (Σ|x|^p)^(1/p).
    Lp(f32),
}

/// Where output coordinate x of a resized axis samples the input: x_in = ((x + shift) · num) / den + offset (each
/// ONNX coordinate_transformation_mode is one choice of these; computed in this order so that exact positions stay
/// exact).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResizeAxis {
    pub shift: f32,
    pub num: f32,
    pub den: f32,
    pub offset: f32,
}

/// How `Op::Resize` interpolates between input elements. With x_in = base + ratio, base an integer and ratio in
/// (0, 1] (so an integral x_in has ratio 1), neighbours are clamped to the axis (edge padding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResizeMode {
    /// One element: base + 1 if ratio > 0.5 (`prefer_ceil`: ≥ 0.5) for rounding; `Floor` takes floor(x_in), `Ceil`
    /// ceil(x_in).
    Nearest(NearestRounding),
    /// base and base + 1 weighted 1 − ratio and ratio.
    Linear,
    /// base − 1 … base + 2 with Keys' cubic weights for coefficient `a`; `exclude_outside` gives neighbours outside
    /// the axis weight 0 and rescales the others to sum to 1.
    Cubic { a: f32, exclude_outside: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestRounding {
    PreferFloor,
    PreferCeil,
    Floor,
    Ceil,
}

/// How `Op::GridSample` interpolates: the nearest element (halves to even), linear, or cubic (Keys, a = −0.75).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleMode {
    Nearest,
    Linear,
    Cubic,
}

/// What `Op::GridSample` reads outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplePadding {
    Zeros,
    /// The nearest edge element.
    Border,
    /// Positions mirrored at the borders (the outer pixel edges, or the centres with `align_corners`).
    Reflection,
}

/// The window geometry of `Op::Conv` and `Op::Pool` over the spatial axes (those after batch and channel).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Padding before and after each spatial axis.
    pub pads: Vec<(usize, usize)>,
    /// Whether a last, partial window (one that starts inside the input or its leading padding) counts.
    pub ceil_mode: bool,
}

impl Window {
    /// The input position (before padding is removed, so possibly negative) that kernel element `k` of the window at
    /// output position `out` reads on spatial axis `axis`.
    pub fn input_position(&self, axis: usize, out: usize, k: usize) -> i64 {
        (out * self.strides[axis] + k * self.dilations[axis]) as i64 - self.pads[axis].0 as i64
    }

    /// The output length of a spatial axis of length `input` for kernel length `kernel`, `None` if no window fits.
    pub fn output_len(&self, axis: usize, input: u64, kernel: u64) -> Option<u64> {
        let (stride, dilation) = (self.strides[axis] as u64, self.dilations[axis] as u64);
        let (before, after) = (self.pads[axis].0 as u64, self.pads[axis].1 as u64);
        let span = dilation * (kernel.max(1) - 1) + 1;
        let padded = input + before + after;
        if padded < span {
            return None;
        }
        let fit = padded - span;
        let mut out = if self.ceil_mode { fit.div_ceil(stride) } else { fit / stride } + 1;
        if self.ceil_mode && (out - 1) * stride >= input + before {
            out -= 1;
        }
        Some(out)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Recip,
    Tanh,
    Erf,
    Sigmoid,
    Relu,
    /// x·Φ(x) with the exact normal CDF (erf).
    Gelu,
    /// The tanh approximation of GELU (GPT-2's `gelu_new`).
    GeluTanh,
    /// x·sigmoid(x).
    Silu,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    Floor,
    Ceil,
    /// To the nearest integer, halves to even.
    Round,
    /// −1, 0 or 1.
    Sign,
    /// ln(1 + eˣ).
    Softplus,
}

/// A float format narrower than f16 (ONNX's float8 and float4 types). tfc holds its values in f32; `Op::RoundTo`
/// rounds f32 values to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NarrowFloat {
    /// float8e4m3fn: 4 exponent bits (bias 7), 3 mantissa bits; no infinities (all ones is NaN); max 448.
    E4M3Fn,
    /// float8e4m3fnuz: 4 exponent bits (bias 8), 3 mantissa bits; no infinities and no −0 (its pattern is NaN); max 240.
    E4M3FnUz,
    /// float8e5m2: IEEE 754 with 5 exponent bits (bias 15) and 2 mantissa bits; max 57344.
    E5M2,
    /// float8e5m2fnuz: 5 exponent bits (bias 16), 2 mantissa bits; no infinities and no −0; max 57344.
    E5M2FnUz,
    /// float4e2m1: ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}; no infinities, no NaN.
    E2M1,
    /// float8e8m0, the exponent of an f32 alone (the scales of OCP's MX formats): 2^−127 … 2^127 and NaN, no sign and
    /// no zero. A value between two powers of two goes to one of them as `ScaleRounding` says.
    E8M0(ScaleRounding),
}

/// Where `NarrowFloat::E8M0` puts a value between two powers of two (ONNX Cast's `round_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScaleRounding {
    /// The larger one, unless the value is a power of two.
    Up,
    /// The smaller one.
    Down,
    /// The nearer one; halfway (1.5·2^k) goes up.
    Nearest,
}

/// A sign-exponent-mantissa format: values (−1)^s · 1.m · 2^(e − bias), and subnormals 0.m · 2^(1 − bias) where the
/// exponent field is 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FloatLayout {
    pub exponent_bits: u32,
    pub mantissa_bits: u32,
    pub bias: i32,
    /// The largest finite value.
    pub max: f32,
    pub infinity: bool,
    pub nan: bool,
    pub negative_zero: bool,
}

impl FloatLayout {
    /// The exponent of the smallest normal value.
    pub fn min_exponent(&self) -> i32 {
        1 - self.bias
    }

    /// The exponent of `max`.
    pub fn max_exponent(&self) -> i32 {
        (self.max.to_bits() >> 23) as i32 - 127
    }

    /// The f32 bits of what a magnitude above `max` becomes: `max` when saturating (or without NaN), else infinity
    /// or NaN.
    pub fn overflow_bits(&self, saturate: bool) -> u32 {
        if saturate || !self.nan {
            self.max.to_bits()
        } else if self.infinity {
            0x7f80_0000
        } else {
            0x7fc0_0000
        }
    }
}

impl NarrowFloat {
    /// The sign-exponent-mantissa layout; E8M0 has none.
    pub fn layout(self) -> Option<FloatLayout> {
        let layout = |exponent_bits, mantissa_bits, bias, max, infinity, negative_zero| FloatLayout {
            exponent_bits,
            mantissa_bits,
            bias,
            max,
            infinity,
            nan: true,
            negative_zero,
        };
        Some(match self {
            NarrowFloat::E4M3Fn => layout(4, 3, 7, 448.0, false, true),
            NarrowFloat::E4M3FnUz => layout(4, 3, 8, 240.0, false, false),
            NarrowFloat::E5M2 => layout(5, 2, 15, 57344.0, true, true),
            NarrowFloat::E5M2FnUz => layout(5, 2, 16, 57344.0, false, false),
            NarrowFloat::E2M1 => FloatLayout { nan: false, ..layout(2, 1, 1, 6.0, false, true) },
            NarrowFloat::E8M0(_) => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            NarrowFloat::E4M3Fn => "e4m3fn",
            NarrowFloat::E4M3FnUz => "e4m3fnuz",
            NarrowFloat::E5M2 => "e5m2",
            NarrowFloat::E5M2FnUz => "e5m2fnuz",
            NarrowFloat::E2M1 => "e2m1",
            NarrowFloat::E8M0(_) => "e8m0",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Input { name: String, default: Option<InputDefault> },
    Weight(WeightId),
    /// `(table [V, …], indices [… ] int) → indices.shape ++ table.shape[1..]`; an index outside `[0, V)` gives zeros.
    Gather,
    /// numpy matmul on the last two axes, batch axes broadcast; rank ≥ 2 for both operands.
    MatMul { transpose_a: bool, transpose_b: bool },
    /// Elementwise with numpy broadcasting.
    Binary(BinaryOp),
    Unary(UnaryOp),
    /// `(x, gamma[, beta])`, normalised over the last axis.
    LayerNorm { eps: f32 },
    /// `(x, gamma)`: x / sqrt(mean(x²) + eps) · gamma over the last axis.
    RmsNorm { eps: f32 },
    /// Over the last axis.
    Softmax,
    Reshape { shape: Vec<Dim> },
    Transpose { perm: Vec<usize> },
    /// Elements `start..end` of one axis.
    Slice { axis: usize, start: Dim, end: Dim },
    Concat { axis: usize },
    /// Rotary position embedding. `(x [b, s, h, d], positions [b, s] int, inv_freq [r/2] f32)`: rotates the first
    /// r features of every head by angle `position · inv_freq[i]`; the rest pass through. `interleaved` pairs
    /// features (2i, 2i+1) (GPT-J); otherwise (i, i + r/2) (GPT-NeoX, HF Llama).
    Rope { interleaved: bool },
    /// Scaled dot-product attention, `(q [b, s, H, d], k [b, t, G, d], v [b, t, G, e][, key_mask [b, t]]) → [b, s, H, e]`.
    /// Query head h uses key/value head h / (H / G). With `causal`, query i sees key j iff j ≤ i + t − s; a sliding
    /// `window` (causal only) also hides the keys j ≤ i + t − s − window, so a query sees at most `window` keys, its
    /// own included (transformers' `sliding_window` for Mistral, Gemma 3, Qwen2 and Phi-3 means the same:
    /// `kv_idx > q_idx - sliding_window`; so does llama.cpp's `n_swa`). A key whose mask entry is 0 is not seen. A
    /// query that sees no key gets zeros.
    Attention { causal: bool, scale: f32, window: Option<u64> },
    Cast { to: DType },
    /// A tensor kept across runs (a KV cache), zeros when a session starts. Its type has constant dims; only
    /// `CacheWrite` writes it.
    State { name: String },
    /// `(state [1, T, …], new [1, s, …]) → state[:, 0..offset + s]`: stores `new` at rows `offset..offset + s` of the
    /// state's axis 1, where later runs see it, and gives every row stored so far. `offset` is usually `past`. A
    /// float state of a narrower dtype (an f16 KV cache) stores the rows rounded to it (to nearest; a GPU may round
    /// the other way when a value is exactly halfway between, as WGSL allows).
    CacheWrite { offset: Dim },
    /// The index of the largest value over the last axis (the first one on ties), as i32; the axis is removed.
    ArgMax,
    /// Draws a token from each row of logits: `(logits [.., V], settings [5] f32, uniform [..] f32,
    /// penalized [n] i32) → [..] i32`. settings = (temperature, top_k, top_p, min_p, repeat_penalty);
    /// `uniform` holds one number in [0, 1) per row; `penalized` lists distinct token ids in increasing order, padded
    /// with i32::MAX. See `interp::sample` for the exact rule; all zeros settings pick the largest logit.
    Sample,
    /// Elementwise with numpy broadcasting; operands both float or both integer; i32 0/1 out.
    Compare(CompareOp),
    /// `(condition int, a, b)` with numpy broadcasting of all three: a where the condition is nonzero, else b.
    Where,
    /// Combines the elements along `axes` (sorted, distinct, normalised), which are removed, or kept with length 1.
    /// At least one axis. Float in, f32 out.
    Reduce { kind: ReduceKind, axes: Vec<usize>, keep_dims: bool },
    /// numpy broadcasting of the operand to `shape` (which must be the broadcast of the two shapes; ONNX's Expand
    /// takes the broadcast of operand and target, which the importer computes).
    Expand { shape: Vec<Dim> },
    /// `(data, indices int)` of the same rank: out[i…] = data[i… with axis `axis` replaced by indices[i…]]; a
    /// negative index counts from the end; one still out of range gives zero.
    GatherElements { axis: usize },
    /// Adds `pads[a] = (before, after)` elements on each axis a, filled by `mode`. Reflect needs before and after
    /// below the axis length; Edge and Wrap a non-empty axis.
    Pad { pads: Vec<(usize, usize)>, mode: PadMode },
    /// The running `op` (Add, Mul, Max or Min) along `axis`; `exclusive` leaves out the element itself (starting
    /// from the op's identity), `reverse` runs from the end.
    Cumulative { op: BinaryOp, axis: usize, exclusive: bool, reverse: bool },
    /// Cross-correlation, `(x [N, C, s…], w [M, C / groups, k…][, bias [M]]) → [N, M, o…]`, 1 to 3 spatial axes;
    /// padding is zeros. Output lengths by `Window::output_len` (ceil_mode off).
    Conv { window: Window, groups: usize },
    /// `x [N, C, s…] → [N, C, o…]` over windows of `kernel`, 1 to 3 spatial axes. Padding is never the maximum, and
    /// counts as zero for Lp; for Average it counts in the divisor only with `count_pad` (and only padding that
    /// `pads` declares, never the overhang of a ceil-mode window).
    Pool { kind: PoolKind, kernel: Vec<usize>, window: Window },
    /// No operands: `[len]` of `dtype` (f32 or i32), element i = start + i·step (for i32, start and step are whole).
    Range { start: f64, step: f64, len: Dim, dtype: DType },
    /// The index (i32) of the largest (`largest`) or smallest element along `axis`, which is removed; on ties the
    /// first one, or the last with `last`. `ArgMax` is the last-axis, largest, first-tie case for long rows.
    ArgReduce { axis: usize, largest: bool, last: bool },
    /// i32 1 where the float element is a NaN (with `nan`), +∞ (with `pos_inf`) or −∞ (with `neg_inf`), else 0.
    /// Kernels test the bits, which no shader compiler folds away as it may `x != x`.
    Classify { nan: bool, pos_inf: bool, neg_inf: bool },
    /// The indices (i32) of the `k` largest (or smallest) elements along `axis`, which becomes length k, best first;
    /// equal elements in index order. The values are `GatherElements { axis }` of the operand at these indices.
    TopK { axis: usize, k: usize, largest: bool },
    /// `(data, indices int [.., k], updates [.., data.shape[k..]])` → data with each slice `indices[j]` (a negative
    /// index counts from the end; one out of range writes nothing) replaced by `updates[j]`, or combined with it by
    /// `reduction` (Add, Mul, Max or Min), in the order of j (the last write wins). ScatterElements is this with
    /// full coordinates as indices.
    ScatterND { reduction: Option<BinaryOp> },
    /// `(x [N, C, s…], grid [N, o…, r])` → [N, C, o…], 1 to 3 spatial axes (r of them): samples x at the positions
    /// in grid, normalised to [−1, 1] per axis with the last spatial axis first in each position (x, y, z), as ONNX
    /// GridSample: −1 and 1 are the outer edges of the border elements, or their centres with `align_corners`.
    GridSample { mode: SampleMode, padding: SamplePadding, align_corners: bool },
    /// The same 32 bits read as `to`: f32 ↔ i32.
    Bitcast { to: DType },
    /// Each f32 element rounded to `format`, as f32 (ONNX's Cast to a float8 or float4 type; see `interp::round_to`).
    /// Sign-exponent-mantissa formats round to nearest even; a result above the largest finite value, or an infinity,
    /// becomes that value with `saturate` (always for E2M1), else an infinity where the format has them and NaN where
    /// not. NaN stays NaN (E2M1, which has none: +0). Formats without −0 give +0. E8M0 takes |x|; an infinity, or a
    /// result above 2^127, and |x| below 2^−127 (0 too) become 2^127 and 2^−127 with `saturate`, else NaN.
    RoundTo { format: NarrowFloat, saturate: bool },
    /// The transpose (gradient) of `Conv`: `(x [N, C, s…], w [C, M / groups, k…][, bias [M]]) → [N, M, o…]`, 1 to 3
    /// spatial axes, o = stride·(s − 1) + output_padding + dilation·(k − 1) + 1 − pad before − pad after: each input
    /// element adds x·w to output position i·stride + j·dilation − pad before. `window.ceil_mode` must be off.
    ConvTranspose { window: Window, groups: usize, output_padding: Vec<usize> },
    /// Resamples the operand (float) to `shape`: each axis with a `ResizeAxis` (1 to 3 of them, constant lengths)
    /// is interpolated by `mode` (separably: the weights of the axes multiply); the others are kept as they are. With
    /// `extrapolation`, an output whose x_in is outside [0, len − 1] on some resized axis is that value.
    Resize { shape: Vec<Dim>, axes: Vec<Option<ResizeAxis>>, mode: ResizeMode, extrapolation: Option<f32> },
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "Input",
            Op::Weight(_) => "Weight",
            Op::Gather => "Gather",
            Op::MatMul { .. } => "MatMul",
            Op::Binary(_) => "Binary",
            Op::Unary(_) => "Unary",
            Op::LayerNorm { .. } => "LayerNorm",
            Op::RmsNorm { .. } => "RmsNorm",
            Op::Softmax => "Softmax",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Slice { .. } => "Slice",
            Op::Concat { .. } => "Concat",
            Op::Rope { .. } => "Rope",
            Op::Attention { .. } => "Attention",
            Op::Cast { .. } => "Cast",
            Op::State { .. } => "State",
            Op::CacheWrite { .. } => "CacheWrite",
            Op::ArgMax => "ArgMax",
            Op::Sample => "Sample",
            Op::Compare(_) => "Compare",
            Op::Where => "Where",
            Op::Reduce { .. } => "Reduce",
            Op::Expand { .. } => "Expand",
            Op::GatherElements { .. } => "GatherElements",
            Op::Pad { .. } => "Pad",
            Op::Cumulative { .. } => "Cumulative",
            Op::Conv { .. } => "Conv",
            Op::Pool { .. } => "Pool",
            Op::Range { .. } => "Range",
            Op::ArgReduce { .. } => "ArgReduce",
            Op::Classify { .. } => "Classify",
            Op::Resize { .. } => "Resize",
            Op::ConvTranspose { .. } => "ConvTranspose",
            Op::TopK { .. } => "TopK",
            Op::ScatterND { .. } => "ScatterND",
            Op::GridSample { .. } => "GridSample",
            Op::Bitcast { .. } => "Bitcast",
            Op::RoundTo { .. } => "RoundTo",
        }
    }

    /// The output type for the given input types, or why the inputs don't fit this op.
    /// `Input` and `Weight` carry their type themselves and are not inferred here.
    pub fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, String> {
        let arity = |range: std::ops::RangeInclusive<usize>| -> Result<(), String> {
            if range.contains(&inputs.len()) {
                Ok(())
            } else {
                Err(format!("takes {range:?} inputs, got {}", inputs.len()))
            }
        };
        let float = |i: usize| -> Result<(), String> {
            if inputs[i].dtype.is_float() { Ok(()) } else { Err(format!("input {i} must be float, is {}", inputs[i])) }
        };
        let int = |i: usize| -> Result<(), String> {
            if inputs[i].dtype.is_int() { Ok(()) } else { Err(format!("input {i} must be integer, is {}", inputs[i])) }
        };
        let rank = |i: usize, r: usize| -> Result<(), String> {
            if inputs[i].rank() == r { Ok(()) } else { Err(format!("input {i} must have rank {r}, is {}", inputs[i])) }
        };
        let f32_of = |shape: Vec<Dim>| TensorType::new(DType::F32, shape);
        match self {
            Op::Input { .. } | Op::Weight(_) | Op::State { .. } => Err("inputs, weights and states carry their own type".into()),
            Op::Gather => {
                arity(2..=2)?;
                int(1)?;
                let table = inputs[0];
                if table.rank() < 1 {
                    return Err("the table must have rank ≥ 1".into());
                }
                let mut shape = inputs[1].shape.clone();
                shape.extend_from_slice(&table.shape[1..]);
                Ok(TensorType::new(if table.dtype.is_float() { DType::F32 } else { table.dtype }, shape))
            }
            Op::MatMul { transpose_a, transpose_b } => {
                arity(2..=2)?;
                float(0)?;
                float(1)?;
                let (a, b) = (&inputs[0].shape, &inputs[1].shape);
                if a.len() < 2 || b.len() < 2 {
                    return Err(format!("both operands need rank ≥ 2, got {} and {}", inputs[0], inputs[1]));
                }
                let (m, ka) = matrix_dims(a, *transpose_a);
                let (kb, n) = matrix_dims(b, *transpose_b);
                if ka != kb {
                    return Err(format!("inner dimensions differ: {ka} vs {kb} ({} × {})", inputs[0], inputs[1]));
                }
                let mut shape = broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2])?;
                shape.push(m.clone());
                shape.push(n.clone());
                Ok(f32_of(shape))
            }
            Op::Binary(op) => {
                arity(2..=2)?;
                let (a, b) = (inputs[0], inputs[1]);
                if a.dtype.is_float() != b.dtype.is_float() {
                    return Err(format!("operands must both be float or both be integer, got {a} and {b}"));
                }
                if op.integer_only() && a.dtype.is_float() {
                    return Err(format!("{op:?} takes integer operands, got {a} and {b}"));
                }
                let shape = broadcast_shapes(&a.shape, &b.shape)?;
                Ok(TensorType::new(if a.dtype.is_float() { DType::F32 } else { a.dtype }, shape))
            }
            Op::Unary(_) | Op::Softmax => {
                arity(1..=1)?;
                float(0)?;
                Ok(f32_of(inputs[0].shape.clone()))
            }
            Op::LayerNorm { .. } | Op::RmsNorm { .. } => {
                let max_inputs = if matches!(self, Op::LayerNorm { .. }) { 3 } else { 2 };
                arity(2..=max_inputs)?;
                let x = inputs[0];
                let d = x.shape.last().ok_or("x must have rank ≥ 1")?;
                for (i, p) in inputs.iter().enumerate().skip(1) {
                    float(i)?;
                    if p.shape != [d.clone()] {
                        return Err(format!("input {i} must have shape [{d}], is {p}"));
                    }
                }
                Ok(f32_of(x.shape.clone()))
            }
            Op::Reshape { shape } => {
                arity(1..=1)?;
                let from = inputs[0].numel();
                let to = crate::dim::product(shape);
                if from != to {
                    return Err(format!("cannot reshape {} ({from} elements) to {:?} ({to} elements)", inputs[0], shape));
                }
                Ok(TensorType::new(inputs[0].dtype, shape.clone()))
            }
            Op::Transpose { perm } => {
                arity(1..=1)?;
                let mut sorted = perm.clone();
                sorted.sort();
                if sorted != (0..inputs[0].rank()).collect::<Vec<_>>() {
                    return Err(format!("{perm:?} is not a permutation of the axes of {}", inputs[0]));
                }
                Ok(TensorType::new(inputs[0].dtype, perm.iter().map(|&p| inputs[0].shape[p].clone()).collect()))
            }
            Op::Slice { axis, start, end } => {
                arity(1..=1)?;
                let x = inputs[0];
                let len = x.shape.get(*axis).ok_or_else(|| format!("axis {axis} out of range for {x}"))?;
                let out = end - start;
                if let (Some(st), Some(e)) = (start.as_const(), end.as_const())
                    && st > e
                {
                    return Err(format!("slice {st}..{e} is empty backwards"));
                }
                if let (Some(e), Some(l)) = (end.as_const(), len.as_const())
                    && e > l
                {
                    return Err(format!("slice end {e} past the axis length {l}"));
                }
                let mut shape = x.shape.clone();
                shape[*axis] = out;
                Ok(TensorType::new(x.dtype, shape))
            }
            Op::Concat { axis } => {
                arity(1..=usize::MAX)?;
                let first = inputs[0];
                if *axis >= first.rank() {
                    return Err(format!("axis {axis} out of range for {first}"));
                }
                let mut total = Dim::from(0u64);
                for (i, t) in inputs.iter().enumerate() {
                    let same_elsewhere = t.rank() == first.rank()
                        && (0..first.rank()).all(|k| k == *axis || t.shape[k] == first.shape[k]);
                    if !same_elsewhere || t.dtype.is_float() != first.dtype.is_float() {
                        return Err(format!("input {i} ({t}) does not fit input 0 ({first}) on axes other than {axis}"));
                    }
                    total = &total + &t.shape[*axis];
                }
                let mut shape = first.shape.clone();
                shape[*axis] = total;
                Ok(TensorType::new(if first.dtype.is_float() { DType::F32 } else { first.dtype }, shape))
            }
            Op::Rope { .. } => {
                arity(3..=3)?;
                float(0)?;
                int(1)?;
                float(2)?;
                rank(0, 4)?;
                rank(1, 2)?;
                rank(2, 1)?;
                let (x, pos, freq) = (inputs[0], inputs[1], inputs[2]);
                if pos.shape[..] != x.shape[..2] {
                    return Err(format!("positions {pos} must have shape [{}, {}]", x.shape[0], x.shape[1]));
                }
                if let (Some(half), Some(d)) = (freq.shape[0].as_const(), x.shape[3].as_const())
                    && 2 * half > d
                {
                    return Err(format!("{half} frequencies rotate more than the head size {d}"));
                }
                Ok(f32_of(x.shape.clone()))
            }
            Op::Attention { causal, window, .. } => {
                arity(3..=4)?;
                if window.is_some_and(|w| w == 0 || w >= 1 << 30 || !causal) {
                    return Err(format!("a sliding window ({window:?}) needs causal attention and 1 to 2^30 keys"));
                }
                for i in 0..3 {
                    float(i)?;
                    rank(i, 4)?;
                }
                let (q, k, v) = (&inputs[0].shape, &inputs[1].shape, &inputs[2].shape);
                if k[0] != q[0] || v[0] != q[0] || k[1] != v[1] || k[2] != v[2] || k[3] != q[3] {
                    return Err(format!("q {}, k {}, v {} do not fit [b,s,H,d], [b,t,G,d], [b,t,G,e]", inputs[0], inputs[1], inputs[2]));
                }
                if let (Some(h), Some(g)) = (q[2].as_const(), k[2].as_const())
                    && (g == 0 || h % g != 0)
                {
                    return Err(format!("{h} query heads are not a multiple of {g} key/value heads"));
                }
                if let Some(mask) = inputs.get(3)
                    && mask.shape[..] != [k[0].clone(), k[1].clone()]
                {
                    return Err(format!("key mask {mask} must have shape [{}, {}]", k[0], k[1]));
                }
                Ok(f32_of(vec![q[0].clone(), q[1].clone(), q[2].clone(), v[3].clone()]))
            }
            Op::Cast { to } => {
                arity(1..=1)?;
                if to.is_block() {
                    return Err(format!("cannot cast to the block format {to}; weights are quantized by the quantize pass"));
                }
                Ok(TensorType::new(*to, inputs[0].shape.clone()))
            }
            Op::CacheWrite { offset } => {
                arity(2..=2)?;
                let (state, new) = (inputs[0], inputs[1]);
                let one = Dim::from(1u64);
                if state.rank() < 2 || state.shape[0] != one || state.shape.iter().any(|d| d.as_const().is_none()) {
                    return Err(format!("the state must have constant dims and batch 1, is {state}"));
                }
                if new.rank() != state.rank() || new.shape[0] != one || new.shape[2..] != state.shape[2..] || new.dtype.is_float() != state.dtype.is_float() {
                    return Err(format!("{new} does not fit the rows of state {state}"));
                }
                let mut shape = state.shape.clone();
                shape[1] = offset + &new.shape[1];
                Ok(TensorType::new(state.dtype, shape))
            }
            Op::Sample => {
                arity(4..=4)?;
                float(0)?;
                float(1)?;
                float(2)?;
                int(3)?;
                let (logits, settings, uniform) = (&inputs[0].shape, &inputs[1].shape, &inputs[2].shape);
                if logits.is_empty() || settings[..] != [Dim::from(5u64)] || uniform[..] != logits[..logits.len() - 1] {
                    return Err(format!(
                        "takes logits [.., V], settings [5], one uniform number per row and a list of penalized ids; got {}, {}, {}",
                        inputs[0], inputs[1], inputs[2]
                    ));
                }
                rank(3, 1)?;
                Ok(TensorType::new(DType::I32, uniform.clone()))
            }
            Op::Compare(_) => {
                arity(2..=2)?;
                let (a, b) = (inputs[0], inputs[1]);
                if a.dtype.is_float() != b.dtype.is_float() {
                    return Err(format!("operands must both be float or both be integer, got {a} and {b}"));
                }
                Ok(TensorType::new(DType::I32, broadcast_shapes(&a.shape, &b.shape)?))
            }
            Op::Where => {
                arity(3..=3)?;
                int(0)?;
                let (a, b) = (inputs[1], inputs[2]);
                if a.dtype.is_float() != b.dtype.is_float() {
                    return Err(format!("the values must both be float or both be integer, got {a} and {b}"));
                }
                let shape = broadcast_shapes(&inputs[0].shape, &broadcast_shapes(&a.shape, &b.shape)?)?;
                Ok(TensorType::new(if a.dtype.is_float() { DType::F32 } else { a.dtype }, shape))
            }
            Op::Reduce { axes, keep_dims, .. } => {
                arity(1..=1)?;
                float(0)?;
                let x = inputs[0];
                if axes.is_empty() || axes.windows(2).any(|w| w[0] >= w[1]) || axes.last().is_some_and(|&a| a >= x.rank()) {
                    return Err(format!("axes {axes:?} must be one or more, increasing and below the rank of {x}"));
                }
                let mut shape = Vec::new();
                for (a, d) in x.shape.iter().enumerate() {
                    if !axes.contains(&a) {
                        shape.push(d.clone());
                    } else if *keep_dims {
                        shape.push(Dim::from(1u64));
                    }
                }
                Ok(f32_of(shape))
            }
            Op::Expand { shape } => {
                arity(1..=1)?;
                let x = inputs[0];
                if x.rank() > shape.len() || broadcast_shapes(&x.shape, shape)? != *shape {
                    return Err(format!("{x} does not broadcast to {shape:?}"));
                }
                Ok(TensorType::new(x.dtype, shape.clone()))
            }
            Op::GatherElements { axis } => {
                arity(2..=2)?;
                int(1)?;
                let (data, indices) = (inputs[0], inputs[1]);
                if data.rank() != indices.rank() || *axis >= data.rank() {
                    return Err(format!("data {data} and indices {indices} need the same rank, above axis {axis}"));
                }
                Ok(TensorType::new(if data.dtype.is_float() { DType::F32 } else { data.dtype }, indices.shape.clone()))
            }
            Op::Pad { pads, mode } => {
                arity(1..=1)?;
                let x = inputs[0];
                if pads.len() != x.rank() {
                    return Err(format!("{} pads for {x}; give one (before, after) per axis", pads.len()));
                }
                let mut shape = x.shape.clone();
                for (a, &(before, after)) in pads.iter().enumerate() {
                    if before + after == 0 {
                        continue;
                    }
                    let len = x.shape[a].as_const();
                    let fits = match mode {
                        PadMode::Constant(_) => true,
                        PadMode::Reflect => len.is_some_and(|l| (before.max(after) as u64) < l),
                        PadMode::Edge | PadMode::Wrap => len.is_some_and(|l| l > 0),
                    };
                    if !fits {
                        return Err(format!("{mode:?} padding of ({before}, {after}) does not fit axis {a} of {x}"));
                    }
                    shape[a] = &shape[a] + &Dim::from((before + after) as u64);
                }
                Ok(TensorType::new(if x.dtype.is_float() { DType::F32 } else { x.dtype }, shape))
            }
            Op::Cumulative { op, axis, .. } => {
                arity(1..=1)?;
                let x = inputs[0];
                if !matches!(op, BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min) || *axis >= x.rank() {
                    return Err(format!("takes Add, Mul, Max or Min along an axis of {x}, got {op:?} on axis {axis}"));
                }
                Ok(TensorType::new(if x.dtype.is_float() { DType::F32 } else { x.dtype }, x.shape.clone()))
            }
            Op::Conv { window, groups } => {
                arity(2..=3)?;
                for i in 0..inputs.len() {
                    float(i)?;
                }
                let (x, w) = (inputs[0], inputs[1]);
                let spatial = x.rank().saturating_sub(2);
                if !(1..=3).contains(&spatial) || w.rank() != x.rank() {
                    return Err(format!("takes x [N, C, 1 to 3 spatial axes] and w of the same rank, got {x} and {w}"));
                }
                let (c, m) = (x.shape[1].as_const(), w.shape[0].as_const());
                let per_group = w.shape[1].as_const();
                let fits = matches!((c, m, per_group), (Some(c), Some(m), Some(g)) if *groups > 0 && m % *groups as u64 == 0 && c == g * *groups as u64);
                if !fits {
                    return Err(format!("x {x} and w {w} do not fit {groups} groups (w must be [M, C / groups, k…], M a multiple of groups)"));
                }
                if let Some(bias) = inputs.get(2)
                    && bias.shape != [w.shape[0].clone()]
                {
                    return Err(format!("the bias {bias} must have shape [{}]", w.shape[0]));
                }
                let kernel = w.shape[2..].to_vec();
                let mut shape = vec![x.shape[0].clone(), w.shape[0].clone()];
                shape.extend(window_output(window, &x.shape[2..], &kernel)?);
                Ok(f32_of(shape))
            }
            Op::Bitcast { to } => {
                arity(1..=1)?;
                let from = inputs[0].dtype;
                if !matches!((from, to), (DType::F32, DType::I32) | (DType::I32, DType::F32)) {
                    return Err(format!("reinterprets f32 as i32 or i32 as f32, not {from} as {to}"));
                }
                Ok(TensorType::new(*to, inputs[0].shape.clone()))
            }
            Op::GridSample { .. } => {
                arity(2..=2)?;
                float(0)?;
                float(1)?;
                let (x, grid) = (inputs[0], inputs[1]);
                let r = x.rank().saturating_sub(2);
                let fits = (1..=3).contains(&r)
                    && grid.rank() == r + 2
                    && grid.shape[0] == x.shape[0]
                    && grid.shape[r + 1] == Dim::from(r as u64)
                    && x.shape[2..].iter().all(|d| d.as_const().is_some_and(|l| l > 0));
                if !fits {
                    return Err(format!("takes x [N, C, 1 to 3 constant spatial axes] and grid [N, o…, that many], got {x} and {grid}"));
                }
                let mut shape = x.shape[..2].to_vec();
                shape.extend(grid.shape[1..=r].iter().cloned());
                Ok(f32_of(shape))
            }
            Op::ScatterND { reduction } => {
                arity(3..=3)?;
                int(1)?;
                let (data, indices, updates) = (inputs[0], inputs[1], inputs[2]);
                if reduction.is_some_and(|r| !matches!(r, BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min)) {
                    return Err(format!("reduces with Add, Mul, Max or Min, got {reduction:?}"));
                }
                let k = indices.shape.last().and_then(|d| d.as_const()).ok_or_else(|| format!("the indices {indices} need a constant last axis"))? as usize;
                let mut expected = indices.shape[..indices.rank() - 1].to_vec();
                expected.extend(data.shape.get(k..).unwrap_or_default().iter().cloned());
                if k == 0 || k > data.rank() || updates.shape != expected || data.dtype.is_float() != updates.dtype.is_float() {
                    return Err(format!("data {data}, indices {indices} and updates {updates} do not fit (updates must be [{expected:?}] of data's kind)"));
                }
                Ok(TensorType::new(if data.dtype.is_float() { DType::F32 } else { data.dtype }, data.shape.clone()))
            }
            Op::TopK { axis, k, .. } => {
                arity(1..=1)?;
                let x = inputs[0];
                if *axis >= x.rank() || x.shape[*axis].as_const().is_none_or(|len| *k as u64 > len) {
                    return Err(format!("takes the top {k} along a constant axis {axis} of {x} at least that long"));
                }
                let mut shape = x.shape.clone();
                shape[*axis] = Dim::from(*k as u64);
                Ok(TensorType::new(DType::I32, shape))
            }
            Op::ConvTranspose { window, groups, output_padding } => {
                arity(2..=3)?;
                for i in 0..inputs.len() {
                    float(i)?;
                }
                let (x, w) = (inputs[0], inputs[1]);
                let spatial = x.rank().saturating_sub(2);
                if !(1..=3).contains(&spatial) || w.rank() != x.rank() || output_padding.len() != spatial || window.ceil_mode {
                    return Err(format!("takes x [N, C, 1 to 3 spatial axes], w of the same rank and an output padding per spatial axis, got {x}, {w}, {output_padding:?}"));
                }
                let (Some(c), Some(w_c), Some(per_group)) = (x.shape[1].as_const(), w.shape[0].as_const(), w.shape[1].as_const()) else {
                    return Err(format!("channels of x {x} and w {w} must be constant"));
                };
                if *groups == 0 || c != w_c || c % *groups as u64 != 0 {
                    return Err(format!("x {x} and w {w} do not fit {groups} groups (w must be [C, M / groups, k…])"));
                }
                let m = Dim::from(per_group * *groups as u64);
                if let Some(bias) = inputs.get(2)
                    && bias.shape != [m.clone()]
                {
                    return Err(format!("the bias {bias} must have shape [{m}]"));
                }
                check_window(window, spatial)?;
                let mut shape = vec![x.shape[0].clone(), m];
                for a in 0..spatial {
                    let (Some(len), Some(k)) = (x.shape[2 + a].as_const(), w.shape[2 + a].as_const()) else {
                        return Err(format!("spatial axis {a} of {x} and its kernel must be constant"));
                    };
                    let full = window.strides[a] as u64 * len.saturating_sub(1) + output_padding[a] as u64 + window.dilations[a] as u64 * k.saturating_sub(1) + 1;
                    let cut = (window.pads[a].0 + window.pads[a].1) as u64;
                    if len == 0 || k == 0 || full <= cut {
                        return Err(format!("spatial axis {a}: padding {:?} leaves no output", window.pads[a]));
                    }
                    shape.push(Dim::from(full - cut));
                }
                Ok(f32_of(shape))
            }
            Op::Pool { kernel, window, kind } => {
                arity(1..=1)?;
                float(0)?;
                let x = inputs[0];
                let spatial = x.rank().saturating_sub(2);
                if !(1..=3).contains(&spatial) || kernel.len() != spatial {
                    return Err(format!("takes x [N, C, 1 to 3 spatial axes] and a kernel per spatial axis, got {x} and {kernel:?}"));
                }
                if let PoolKind::Lp(p) = kind
                    && !(*p > 0.0 && p.is_finite())
                {
                    return Err(format!("Lp pooling needs a positive finite p, got {p}"));
                }
                let kernel: Vec<Dim> = kernel.iter().map(|&k| Dim::from(k as u64)).collect();
                let mut shape = x.shape[..2].to_vec();
                shape.extend(window_output(window, &x.shape[2..], &kernel)?);
                Ok(f32_of(shape))
            }
            Op::Range { start, step, len, dtype } => {
                arity(0..=0)?;
                let whole = |v: f64| v.fract() == 0.0 && v.abs() < 2f64.powi(31);
                match dtype {
                    DType::F32 => {}
                    DType::I32 if whole(*start) && whole(*step) => {}
                    _ => return Err(format!("makes f32, or i32 from whole start and step; got {dtype} from {start}, {step}")),
                }
                Ok(TensorType::new(*dtype, vec![len.clone()]))
            }
            Op::Resize { shape, axes, .. } => {
                arity(1..=1)?;
                float(0)?;
                let x = inputs[0];
                if shape.len() != x.rank() || axes.len() != x.rank() {
                    return Err(format!("takes an output shape and an axis mapping (or none) per axis of {x}, got {shape:?} and {} mappings", axes.len()));
                }
                let resized: Vec<usize> = (0..x.rank()).filter(|&a| axes[a].is_some()).collect();
                if !(1..=3).contains(&resized.len()) {
                    return Err(format!("resizes 1 to 3 axes, got {}", resized.len()));
                }
                for a in 0..x.rank() {
                    let constant = x.shape[a].as_const().is_some_and(|l| l > 0) && shape[a].as_const().is_some();
                    if axes[a].is_none() && shape[a] != x.shape[a] {
                        return Err(format!("axis {a} is not resized but its length changes from {} to {}", x.shape[a], shape[a]));
                    }
                    if axes[a].is_some() && !constant {
                        return Err(format!("resized axis {a} needs constant, non-empty lengths, got {} to {}", x.shape[a], shape[a]));
                    }
                }
                Ok(f32_of(shape.clone()))
            }
            Op::Classify { .. } => {
                arity(1..=1)?;
                float(0)?;
                Ok(TensorType::new(DType::I32, inputs[0].shape.clone()))
            }
            Op::RoundTo { .. } => {
                arity(1..=1)?;
                float(0)?;
                Ok(f32_of(inputs[0].shape.clone()))
            }
            Op::ArgReduce { axis, .. } => {
                arity(1..=1)?;
                let x = inputs[0];
                if *axis >= x.rank() || x.shape[*axis].as_const() == Some(0) {
                    return Err(format!("axis {axis} must be a non-empty axis of {x}"));
                }
                let mut shape = x.shape.clone();
                shape.remove(*axis);
                Ok(TensorType::new(DType::I32, shape))
            }
            Op::ArgMax => {
                arity(1..=1)?;
                float(0)?;
                let shape = &inputs[0].shape;
                if shape.is_empty() {
                    return Err("needs rank ≥ 1".into());
                }
                Ok(TensorType::new(DType::I32, shape[..shape.len() - 1].to_vec()))
            }
        }
    }
}

/// Checks that a window has an entry per spatial axis (`n` of them) and positive strides and dilations.
fn check_window(window: &Window, n: usize) -> Result<(), String> {
    if window.strides.len() != n || window.dilations.len() != n || window.pads.len() != n {
        return Err(format!("strides, dilations and pads need one entry per spatial axis ({n}), got {window:?}"));
    }
    if window.strides.contains(&0) || window.dilations.contains(&0) {
        return Err(format!("strides and dilations must be positive, got {window:?}"));
    }
    Ok(())
}

/// The output lengths of windows over `input`, all constant.
fn window_output(window: &Window, input: &[Dim], kernel: &[Dim]) -> Result<Vec<Dim>, String> {
    let n = input.len();
    check_window(window, n)?;
    if kernel.len() != n {
        return Err(format!("the kernel needs one entry per spatial axis ({n}), got {kernel:?}"));
    }
    (0..n)
        .map(|a| {
            let (Some(len), Some(k)) = (input[a].as_const(), kernel[a].as_const()) else {
                return Err(format!("spatial axis {a} ({}) and its kernel ({}) must be constant", input[a], kernel[a]));
            };
            window.output_len(a, len, k).map(Dim::from).ok_or_else(|| format!("no window of {k} fits spatial axis {a} of length {len} with {window:?}"))
        })
        .collect()
}

/// (rows, cols) of the matrix in the last two axes, swapped when `transposed`.
fn matrix_dims(shape: &[Dim], transposed: bool) -> (&Dim, &Dim) {
    let (r, c) = (&shape[shape.len() - 2], &shape[shape.len() - 1]);
    if transposed { (c, r) } else { (r, c) }
}

/// numpy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, String> {
    let rank = a.len().max(b.len());
    let one = Dim::from(1u64);
    let at = |s: &[Dim], i: usize| -> Dim { if i + s.len() >= rank { s[i + s.len() - rank].clone() } else { one.clone() } };
    (0..rank)
        .map(|i| {
            let (x, y) = (at(a, i), at(b, i));
            if x == y || y == one {
                Ok(x)
            } else if x == one {
                Ok(y)
            } else {
                Err(format!("shapes {a:?} and {b:?} do not broadcast (axis {i}: {x} vs {y})"))
            }
        })
        .collect()
}
