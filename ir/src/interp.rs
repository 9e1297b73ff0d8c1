//! The reference interpreter: runs any graph on the CPU in f32 with f64 accumulation. It is the oracle every pass
//! and backend is checked against, so it favours obviousness over speed.

use crate::dim::{Env, Expr, bind_symbols};
use crate::op::{
    BinaryOp, CompareOp, NarrowFloat, NearestRounding, PadMode, PoolKind, ReduceKind, ResizeAxis, ResizeMode, SampleMode, SamplePadding, ScaleRounding, UnaryOp,
    Window,
};
use crate::tensor::{Data, Tensor};
use crate::{DType, Graph, InputDefault, NodeId, Op};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("{0}")]
    Inputs(String),
    #[error("graph input `{0}` was not given")]
    MissingInput(String),
    #[error("{node} ({op}): {message}")]
    Node { node: String, op: &'static str, message: String },
}

/// Runs `graph` on `inputs` (by input name); inputs with a default may be left out. Returns the graph outputs.
/// States start as zeros and are dropped afterwards (for a decoder: a whole sequence, `past = 0`); see `run_with`
/// to keep them.
pub fn run(graph: &Graph, inputs: &BTreeMap<String, Tensor>) -> Result<Vec<(String, Tensor)>, InterpError> {
    let fresh: Env = graph.symbols.iter().filter(|s| s.name == "past").map(|s| (s.name.clone(), 0)).collect();
    run_with(graph, inputs, &fresh, &mut BTreeMap::new())
}

/// Like `run`, with symbol values no input shape gives (e.g. `past`) and the graph's states by name, which
/// `CacheWrite` updates (a state missing from `states` starts as zeros).
pub fn run_with(
    graph: &Graph,
    inputs: &BTreeMap<String, Tensor>,
    symbols: &Env,
    states: &mut BTreeMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>, InterpError> {
    let declared: Vec<(String, Vec<Expr>)> = graph
        .inputs
        .iter()
        .filter(|&&id| inputs.contains_key(&graph.node(id).name))
        .map(|&id| (graph.node(id).name.clone(), graph.node(id).ty.shape.iter().map(Expr::from).collect()))
        .collect();
    let max: BTreeMap<String, u64> = graph.symbols.iter().map(|s| (s.name.clone(), s.max)).collect();
    let env = bind_symbols(
        declared.iter().map(|(n, d)| (n.as_str(), d.as_slice(), inputs[n].shape.as_slice())),
        symbols,
        &max,
    )
    .map_err(InterpError::Inputs)?;

    let order = graph.topo_order().map_err(|e| InterpError::Node { node: e.node, op: e.op, message: e.message })?;
    let mut remaining_uses: HashMap<NodeId, usize> = HashMap::new();
    for &id in &order {
        for i in graph.inputs_of(id) {
            *remaining_uses.entry(i).or_default() += 1;
        }
    }
    for (_, o) in &graph.outputs {
        *remaining_uses.entry(*o).or_default() += 1;
    }

    let mut values: HashMap<NodeId, Tensor> = HashMap::new();
    for &id in &order {
        if !remaining_uses.contains_key(&id) {
            continue; // dead node
        }
        let node = graph.node(id);
        let operand_ids = graph.inputs_of(id);
        let operands: Vec<&Tensor> = operand_ids.iter().map(|i| &values[i]).collect();
        let err = |message: String| InterpError::Node { node: node.name.clone(), op: node.op.kind(), message };
        let value = match &node.op {
            Op::Input { name, default } => match (inputs.get(name), default) {
                (Some(t), _) => convert(t, node.ty.dtype),
                (None, Some(d)) => {
                    let shape = eval_shape(&node.ty.shape, &env).map_err(err)?;
                    crate::default_input(*d, node.ty.dtype, &shape, &env)
                }
                (None, None) => return Err(InterpError::MissingInput(name.clone())),
            },
            Op::Weight(w) => {
                let w = &graph.weights[w.0];
                let shape = w.shape.iter().map(|&d| d as usize).collect();
                match w.dtype {
                    DType::I32 | DType::I64 => Tensor::i64(shape, w.to_f32().iter().map(|&x| x as i64).collect()),
                    _ => Tensor::f32(shape, w.to_f32()),
                }
            }
            Op::State { name } => states.get(name).cloned().unwrap_or_else(|| {
                let shape: Vec<usize> = node.ty.shape.iter().map(|d| d.as_const().unwrap_or(0) as usize).collect();
                crate::default_input(InputDefault::Zeros, node.ty.dtype, &shape, &env)
            }),
            Op::CacheWrite { offset } => {
                let Op::State { name } = &graph.node(operand_ids[0]).op else {
                    return Err(err("operand 0 must be a State".into()));
                };
                let offset = offset.eval(&env).map_err(err)? as usize;
                // The cache holds its dtype's values: new rows are rounded as they are stored.
                let new = cast(operands[1], node.ty.dtype);
                let (state, rows) = cache_write(operands[0], &new, offset).map_err(err)?;
                states.insert(name.clone(), state);
                rows
            }
            op => eval(op, &operands, &env, node.ty.dtype).map_err(err)?,
        };
        for i in operand_ids {
            let n = remaining_uses.get_mut(&i).unwrap();
            *n -= 1;
            if *n == 0 {
                values.remove(&i);
            }
        }
        values.insert(id, value);
    }
    Ok(graph.outputs.iter().map(|(name, id)| (name.clone(), values[id].clone())).collect())
}

fn eval_shape(shape: &[crate::Dim], env: &Env) -> Result<Vec<usize>, String> {
    shape.iter().map(|d| d.eval(env).map(|v| v as usize)).collect()
}

fn convert(t: &Tensor, to: DType) -> Tensor {
    match to {
        DType::I32 => Tensor::i32(t.shape.clone(), t.to_i64().iter().map(|&x| x as i32).collect()),
        DType::I64 => Tensor::i64(t.shape.clone(), t.to_i64()),
        // Every float dtype (block formats included) holds its values as f32 here.
        _ => Tensor::f32(t.shape.clone(), t.to_f32()),
    }
}

fn eval(op: &Op, x: &[&Tensor], env: &Env, out_dtype: DType) -> Result<Tensor, String> {
    Ok(match op {
        Op::Input { .. } | Op::Weight(_) | Op::State { .. } | Op::CacheWrite { .. } => unreachable!("handled by run"),
        Op::ArgMax => argmax(x[0]),
        Op::Sample => {
            let width = *x[0].shape.last().unwrap();
            let (logits, settings, uniform) = (x[0].to_f32(), x[1].to_f32(), x[2].to_f32());
            let penalized: Vec<i64> = x[3].to_i64();
            let settings = SampleSettings::from_slice(&settings);
            let picks = logits.chunks_exact(width.max(1)).zip(&uniform).map(|(row, &u)| sample(row, &settings, u, &penalized) as i32);
            Tensor::i32(x[2].shape.clone(), picks.collect())
        }
        Op::Gather => gather(x[0], x[1]),
        Op::MatMul { transpose_a, transpose_b } => matmul(x[0], x[1], *transpose_a, *transpose_b)?,
        Op::Binary(b) => binary(*b, x[0], x[1], out_dtype)?,
        Op::Unary(u) => {
            let f = unary_fn(*u);
            Tensor::f32(x[0].shape.clone(), x[0].to_f32().iter().map(|&v| f(v as f64) as f32).collect())
        }
        Op::LayerNorm { eps } => normalize(x, *eps as f64, true),
        Op::RmsNorm { eps } => normalize(x, *eps as f64, false),
        Op::Softmax => softmax(x[0]),
        Op::Reshape { shape } => Tensor { shape: eval_shape(shape, env)?, data: x[0].data.clone() },
        Op::Transpose { perm } => transpose(x[0], perm),
        Op::Slice { axis, start, end } => {
            let (start, end) = (start.eval(env)? as usize, end.eval(env)? as usize);
            if end > x[0].shape[*axis] || start > end {
                return Err(format!("slice {start}..{end} out of range for shape {:?}", x[0].shape));
            }
            slice(x[0], *axis, start, end)
        }
        Op::Concat { axis } => concat(x, *axis, out_dtype),
        Op::Rope { interleaved } => rope(x[0], x[1], x[2], *interleaved),
        Op::Attention { causal, scale, window } => attention(x, *causal, *scale as f64, *window),
        Op::Cast { to } => cast(x[0], *to),
        Op::Compare(c) => compare(*c, x[0], x[1])?,
        Op::Where => select(x[0], x[1], x[2], out_dtype)?,
        Op::Reduce { kind, axes, keep_dims } => reduce(x[0], *kind, axes, *keep_dims),
        Op::Expand { shape } => {
            let shape = eval_shape(shape, env)?;
            let offsets = broadcast_offsets(&x[0].shape, &shape);
            convert(&map_data(x[0], shape, &offsets), out_dtype)
        }
        Op::GatherElements { axis } => gather_elements(x[0], x[1], *axis, out_dtype),
        Op::Pad { pads, mode } => pad(x[0], pads, *mode, out_dtype),
        Op::Cumulative { op, axis, exclusive, reverse } => cumulative(x[0], *op, *axis, *exclusive, *reverse, out_dtype),
        Op::Conv { window, groups } => conv(x, window, *groups),
        Op::Pool { kind, kernel, window } => pool(x[0], *kind, kernel, window),
        Op::Range { start, step, len, dtype } => {
            let values = (0..len.eval(env)?).map(|i| start + i as f64 * step);
            match dtype {
                DType::I32 => Tensor::i32(vec![len.eval(env)? as usize], values.map(|v| v as i32).collect()),
                _ => Tensor::f32(vec![len.eval(env)? as usize], values.map(|v| v as f32).collect()),
            }
        }
        Op::ArgReduce { axis, largest, last } => arg_reduce(x[0], *axis, *largest, *last),
        Op::Resize { shape, axes, mode, extrapolation } => resize(x[0], &eval_shape(shape, env)?, axes, *mode, *extrapolation),
        Op::ConvTranspose { window, groups, output_padding } => conv_transpose(x, window, *groups, output_padding),
        Op::TopK { axis, k, largest } => top_k(x[0], *axis, *k, *largest),
        Op::Bitcast { to: DType::I32 } => Tensor::i32(x[0].shape.clone(), x[0].to_f32().iter().map(|v| v.to_bits() as i32).collect()),
        Op::Bitcast { .. } => Tensor::f32(x[0].shape.clone(), x[0].to_i64().iter().map(|&v| f32::from_bits(v as i32 as u32)).collect()),
        Op::GridSample { mode, padding, align_corners } => grid_sample(x[0], x[1], *mode, *padding, *align_corners),
        Op::ScatterND { reduction } => scatter_nd(x[0], x[1], x[2], *reduction, out_dtype),
        Op::RoundTo { format, saturate } => {
            Tensor::f32(x[0].shape.clone(), x[0].to_f32().iter().map(|&v| round_to(*format, *saturate, v)).collect())
        }
        Op::Classify { nan, pos_inf, neg_inf } => {
            let test = |v: f32| (*nan && v.is_nan()) || (*pos_inf && v == f32::INFINITY) || (*neg_inf && v == f32::NEG_INFINITY);
            Tensor::i32(x[0].shape.clone(), x[0].to_f32().iter().map(|&v| test(v) as i32).collect())
        }
    })
}

/// Offsets into an input of shape `from` for each element of the broadcast output shape `to`.
pub fn broadcast_offsets(from: &[usize], to: &[usize]) -> Vec<usize> {
    let rank = to.len();
    let mut strides = vec![0usize; rank];
    let mut s = 1;
    for i in (0..from.len()).rev() {
        let axis = rank - from.len() + i;
        strides[axis] = if from[i] == 1 { 0 } else { s };
        s *= from[i];
    }
    let numel: usize = to.iter().product();
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; rank];
    let mut offset = 0usize;
    for _ in 0..numel {
        out.push(offset);
        for axis in (0..rank).rev() {
            index[axis] += 1;
            offset += strides[axis];
            if index[axis] < to[axis] {
                break;
            }
            offset -= strides[axis] * index[axis];
            index[axis] = 0;
        }
    }
    out
}

/// numpy broadcasting of two concrete shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(format!("shapes {a:?} and {b:?} do not broadcast ({x} vs {y})")),
        })
        .collect()
}

fn gather(table: &Tensor, indices: &Tensor) -> Tensor {
    let rows = table.shape[0];
    let row: usize = table.shape[1..].iter().product();
    let mut shape = indices.shape.clone();
    shape.extend_from_slice(&table.shape[1..]);
    let idx = indices.to_i64();
    let pick = |i: i64, r: usize| -> Option<usize> { (i >= 0 && (i as usize) < rows).then(|| i as usize * row + r) };
    match &table.data {
        Data::F32(t) => Tensor::f32(shape, idx.iter().flat_map(|&i| (0..row).map(move |r| pick(i, r).map_or(0.0, |o| t[o]))).collect()),
        Data::I32(t) => Tensor::i32(shape, idx.iter().flat_map(|&i| (0..row).map(move |r| pick(i, r).map_or(0, |o| t[o]))).collect()),
        Data::I64(t) => Tensor::i64(shape, idx.iter().flat_map(|&i| (0..row).map(move |r| pick(i, r).map_or(0, |o| t[o]))).collect()),
    }
}

/// Row-major copy of the last two axes of every batch entry, transposed when asked.
fn matrices(t: &Tensor, transpose: bool) -> (Vec<f32>, usize, usize) {
    let (r, c) = (t.shape[t.rank() - 2], t.shape[t.rank() - 1]);
    let v = t.to_f32();
    if !transpose {
        return (v, r, c);
    }
    let mut out = vec![0f32; v.len()];
    for (src, dst) in v.chunks_exact(r * c).zip(out.chunks_exact_mut(r * c)) {
        for i in 0..r {
            for j in 0..c {
                dst[j * r + i] = src[i * c + j];
            }
        }
    }
    (out, c, r)
}

trait Rank {
    fn rank(&self) -> usize;
}
impl Rank for Tensor {
    fn rank(&self) -> usize {
        self.shape.len()
    }
}

fn matmul(a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Result<Tensor, String> {
    let (av, m, k) = matrices(a, transpose_a);
    // B is kept as [N, K] rows so both inner loops run over contiguous memory.
    let (bv, n, kb) = matrices(b, !transpose_b);
    if k != kb {
        return Err(format!("inner dimensions differ: {k} vs {kb}"));
    }
    let batch = broadcast_shape(&a.shape[..a.rank() - 2], &b.shape[..b.rank() - 2])?;
    let a_off = broadcast_offsets(&a.shape[..a.rank() - 2], &batch);
    let b_off = broadcast_offsets(&b.shape[..b.rank() - 2], &batch);
    let mut out = Vec::with_capacity(a_off.len() * m * n);
    for (ao, bo) in a_off.iter().zip(&b_off) {
        let am = &av[ao * m * k..(ao + 1) * m * k];
        let bm = &bv[bo * n * k..(bo + 1) * n * k];
        for i in 0..m {
            let row = &am[i * k..(i + 1) * k];
            for j in 0..n {
                let col = &bm[j * k..(j + 1) * k];
                out.push(row.iter().zip(col).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() as f32);
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    Ok(Tensor::f32(shape, out))
}

fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, out_dtype: DType) -> Result<Tensor, String> {
    let shape = broadcast_shape(&a.shape, &b.shape)?;
    let (ao, bo) = (broadcast_offsets(&a.shape, &shape), broadcast_offsets(&b.shape, &shape));
    if out_dtype.is_int() {
        let (x, y) = (a.to_i64(), b.to_i64());
        let mut out = Vec::with_capacity(ao.len());
        for (&i, &j) in ao.iter().zip(&bo) {
            let (p, q) = (x[i], y[j]);
            out.push(match op {
                BinaryOp::Add => p.wrapping_add(q),
                BinaryOp::Sub => p.wrapping_sub(q),
                BinaryOp::Mul => p.wrapping_mul(q),
                BinaryOp::Div if q == 0 => return Err("integer division by zero".into()),
                BinaryOp::Div => p / q,
                BinaryOp::Max => p.max(q),
                BinaryOp::Min => p.min(q),
                BinaryOp::Pow => p.pow(q.clamp(0, 63) as u32),
                BinaryOp::Mod | BinaryOp::Fmod if q == 0 => return Err("integer remainder by zero".into()),
                BinaryOp::Mod => floor_mod(p % q, q, 0),
                BinaryOp::Fmod => p % q,
                BinaryOp::BitAnd => p & q,
                BinaryOp::BitOr => p | q,
                BinaryOp::BitXor => p ^ q,
                BinaryOp::ShiftLeft => ((p as u32) << (q & 31)) as i32 as i64,
                BinaryOp::ShiftRight => ((p as u32) >> (q & 31)) as i32 as i64,
            });
        }
        return Ok(convert(&Tensor::i64(shape, out), out_dtype));
    }
    let (x, y) = (a.to_f32(), b.to_f32());
    let f = |p: f32, q: f32| -> f32 {
        match op {
            BinaryOp::Add => p + q,
            BinaryOp::Sub => p - q,
            BinaryOp::Mul => p * q,
            BinaryOp::Div => p / q,
            BinaryOp::Max => p.max(q),
            BinaryOp::Min => p.min(q),
            BinaryOp::Pow => (p as f64).powf(q as f64) as f32,
            BinaryOp::Mod => floor_mod(p % q, q, 0.0),
            BinaryOp::Fmod => p % q,
            _ => unreachable!("the type rule keeps {op:?} to integers"),
        }
    };
    Ok(Tensor::f32(shape, ao.iter().zip(&bo).map(|(&i, &j)| f(x[i], y[j])).collect()))
}

/// A truncated remainder `r` of a division by `q`, moved to the sign of `q`.
fn floor_mod<T: PartialOrd + std::ops::Add<Output = T> + Copy>(r: T, q: T, zero: T) -> T {
    if r != zero && (r < zero) != (q < zero) { r + q } else { r }
}

/// The scalar function of a unary op, in f64. Backends approximate these to f32 precision.
pub fn unary_fn(op: UnaryOp) -> fn(f64) -> f64 {
    match op {
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Rsqrt => |x| 1.0 / x.sqrt(),
        UnaryOp::Recip => |x| 1.0 / x,
        UnaryOp::Tanh => f64::tanh,
        UnaryOp::Erf => libm::erf,
        UnaryOp::Sigmoid => |x| 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Relu => |x| x.max(0.0),
        UnaryOp::Gelu => |x| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::GeluTanh => |x| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()),
        UnaryOp::Silu => |x| x / (1.0 + (-x).exp()),
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Tan => f64::tan,
        UnaryOp::Asin => f64::asin,
        UnaryOp::Acos => f64::acos,
        UnaryOp::Atan => f64::atan,
        UnaryOp::Sinh => f64::sinh,
        UnaryOp::Cosh => f64::cosh,
        UnaryOp::Asinh => f64::asinh,
        UnaryOp::Acosh => f64::acosh,
        UnaryOp::Atanh => f64::atanh,
        UnaryOp::Floor => f64::floor,
        UnaryOp::Ceil => f64::ceil,
        UnaryOp::Round => f64::round_ties_even,
        UnaryOp::Sign => |x| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { x },
        UnaryOp::Softplus => |x| x.max(0.0) + (-x.abs()).exp().ln_1p(),
    }
}

/// LayerNorm (`centre`) or RMSNorm over the last axis; `x[1]` is gamma, `x[2]` the optional beta.
fn normalize(x: &[&Tensor], eps: f64, centre: bool) -> Tensor {
    let d = *x[0].shape.last().unwrap();
    let v = x[0].to_f32();
    let gamma = x[1].to_f32();
    let beta = x.get(2).map(|b| b.to_f32());
    let mut out = Vec::with_capacity(v.len());
    for row in v.chunks_exact(d.max(1)) {
        let mean = if centre { row.iter().map(|&a| a as f64).sum::<f64>() / d as f64 } else { 0.0 };
        let var = row.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, &a) in row.iter().enumerate() {
            let y = (a as f64 - mean) * inv * gamma[i] as f64 + beta.as_ref().map_or(0.0, |b| b[i] as f64);
            out.push(y as f32);
        }
    }
    Tensor::f32(x[0].shape.clone(), out)
}

fn softmax(x: &Tensor) -> Tensor {
    let d = *x.shape.last().unwrap();
    let v = x.to_f32();
    let mut out = Vec::with_capacity(v.len());
    for row in v.chunks_exact(d.max(1)) {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let sum: f64 = row.iter().map(|&a| (a as f64 - max).exp()).sum();
        out.extend(row.iter().map(|&a| ((a as f64 - max).exp() / sum) as f32));
    }
    Tensor::f32(x.shape.clone(), out)
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn map_data(t: &Tensor, shape: Vec<usize>, offsets: &[usize]) -> Tensor {
    let data = match &t.data {
        Data::F32(v) => Data::F32(offsets.iter().map(|&o| v[o]).collect()),
        Data::I32(v) => Data::I32(offsets.iter().map(|&o| v[o]).collect()),
        Data::I64(v) => Data::I64(offsets.iter().map(|&o| v[o]).collect()),
    };
    Tensor { shape, data }
}

fn transpose(t: &Tensor, perm: &[usize]) -> Tensor {
    let in_strides = strides(&t.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let numel = t.numel();
    let mut offsets = Vec::with_capacity(numel);
    let out_strides = strides(&shape);
    for linear in 0..numel {
        let mut off = 0;
        for (axis, &p) in perm.iter().enumerate() {
            off += (linear / out_strides[axis]) % shape[axis] * in_strides[p];
        }
        offsets.push(off);
    }
    map_data(t, shape, &offsets)
}

fn slice(t: &Tensor, axis: usize, start: usize, end: usize) -> Tensor {
    let outer: usize = t.shape[..axis].iter().product();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let len = t.shape[axis];
    let offsets: Vec<usize> =
        (0..outer).flat_map(|o| (start * inner..end * inner).map(move |i| o * len * inner + i)).collect();
    let mut shape = t.shape.clone();
    shape[axis] = end - start;
    map_data(t, shape, &offsets)
}

fn concat(parts: &[&Tensor], axis: usize, out_dtype: DType) -> Tensor {
    let outer: usize = parts[0].shape[..axis].iter().product();
    let mut shape = parts[0].shape.clone();
    shape[axis] = parts.iter().map(|p| p.shape[axis]).sum();
    if out_dtype.is_int() {
        let vals: Vec<Vec<i64>> = parts.iter().map(|p| p.to_i64()).collect();
        let mut out = Vec::new();
        for o in 0..outer {
            for (p, v) in parts.iter().zip(&vals) {
                let n = v.len() / outer.max(1);
                out.extend_from_slice(&v[o * n..(o + 1) * n]);
                let _ = p;
            }
        }
        return convert(&Tensor::i64(shape, out), out_dtype);
    }
    let vals: Vec<Vec<f32>> = parts.iter().map(|p| p.to_f32()).collect();
    let mut out = Vec::new();
    for o in 0..outer {
        for v in &vals {
            let n = v.len() / outer.max(1);
            out.extend_from_slice(&v[o * n..(o + 1) * n]);
        }
    }
    Tensor::f32(shape, out)
}

fn rope(x: &Tensor, positions: &Tensor, inv_freq: &Tensor, interleaved: bool) -> Tensor {
    let (b, s, h, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let half = inv_freq.numel();
    let freq = inv_freq.to_f32();
    let pos = positions.to_i64();
    let mut v = x.to_f32();
    for bs in 0..b * s {
        let p = pos[bs] as f64;
        for head in 0..h {
            let base = (bs * h + head) * d;
            for i in 0..half {
                let (i1, i2) = if interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
                let angle = p * freq[i] as f64;
                let (sin, cos) = angle.sin_cos();
                let (x1, x2) = (v[base + i1] as f64, v[base + i2] as f64);
                v[base + i1] = (x1 * cos - x2 * sin) as f32;
                v[base + i2] = (x2 * cos + x1 * sin) as f32;
            }
        }
    }
    Tensor::f32(x.shape.clone(), v)
}

fn attention(x: &[&Tensor], causal: bool, scale: f64, window: Option<u64>) -> Tensor {
    let (q, k, v) = (x[0].to_f32(), x[1].to_f32(), x[2].to_f32());
    let (b, s, heads, d) = (x[0].shape[0], x[0].shape[1], x[0].shape[2], x[0].shape[3]);
    let (t, groups, e) = (x[1].shape[1], x[1].shape[2], x[2].shape[3]);
    let mask = x.get(3).map(|m| m.to_f32());
    let per_group = heads / groups;
    let mut out = vec![0f32; b * s * heads * e];
    for bi in 0..b {
        for hi in 0..heads {
            let g = hi / per_group;
            for i in 0..s {
                let qrow = &q[((bi * s + i) * heads + hi) * d..][..d];
                let visible = |j: usize| {
                    (!causal || j + s <= i + t)
                        && window.is_none_or(|w| j + s + w as usize > i + t)
                        && mask.as_ref().is_none_or(|m| m[bi * t + j] != 0.0)
                };
                let scores: Vec<(usize, f64)> = (0..t)
                    .filter(|&j| visible(j))
                    .map(|j| {
                        let krow = &k[((bi * t + j) * groups + g) * d..][..d];
                        (j, scale * qrow.iter().zip(krow).map(|(&a, &c)| a as f64 * c as f64).sum::<f64>())
                    })
                    .collect();
                let max = scores.iter().fold(f64::NEG_INFINITY, |a, &(_, sc)| a.max(sc));
                let sum: f64 = scores.iter().map(|&(_, sc)| (sc - max).exp()).sum();
                let orow = &mut out[((bi * s + i) * heads + hi) * e..][..e];
                for &(j, sc) in &scores {
                    let p = (sc - max).exp() / sum;
                    let vrow = &v[((bi * t + j) * groups + g) * e..][..e];
                    for (o, &vv) in orow.iter_mut().zip(vrow) {
                        *o += (p * vv as f64) as f32;
                    }
                }
            }
        }
    }
    Tensor::f32(vec![b, s, heads, e], out)
}

fn cast(t: &Tensor, to: DType) -> Tensor {
    match to {
        DType::F32 => Tensor::f32(t.shape.clone(), t.to_f32()),
        DType::F16 => Tensor::f32(t.shape.clone(), t.to_f32().iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()),
        DType::BF16 => Tensor::f32(t.shape.clone(), t.to_f32().iter().map(|&x| half::bf16::from_f32(x).to_f32()).collect()),
        DType::I32 | DType::I64 => convert(&Tensor::i64(t.shape.clone(), t.to_i64()), to),
        block => unreachable!("the type rule of Cast rejects {block}"),
    }
}

/// `x` rounded to `format` (see `Op::RoundTo`). Works on the bits and on exact products with powers of two, as the
/// kernels do, so that every back end gets the same bits.
pub fn round_to(format: NarrowFloat, saturate: bool, x: f32) -> f32 {
    let bits = x.to_bits();
    let (sign, magnitude) = (bits & 0x8000_0000, bits & 0x7fff_ffff);
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let Some(layout) = format.layout() else {
        let NarrowFloat::E8M0(rounding) = format else { unreachable!("only E8M0 has no layout") };
        return f32::from_bits(round_to_e8m0(rounding, saturate, bits));
    };
    if magnitude > 0x7f80_0000 {
        return if layout.nan { x } else { 0.0 };
    }
    // The exponent of x, within the format's normal range: below it, the step is that of the subnormals.
    let (m, max_exponent) = (layout.mantissa_bits as i32, layout.max_exponent());
    let k = ((magnitude >> 23) as i32 - 127).clamp(layout.min_exponent(), max_exponent);
    let rounded = (f32::from_bits(magnitude) * pow2(m - k)).round_ties_even() * pow2(k - m);
    let overflow = magnitude >= pow2(max_exponent + 1).to_bits() || rounded > layout.max;
    let y = if overflow { layout.overflow_bits(saturate) } else { rounded.to_bits() };
    f32::from_bits(if y == 0 && !layout.negative_zero { 0 } else { y | sign })
}

/// The bits of the E8M0 value of |x| for the bits of x.
fn round_to_e8m0(rounding: ScaleRounding, saturate: bool, bits: u32) -> u32 {
    const MIN: u32 = 0x0040_0000; // 2^−127, a subnormal f32
    const MAX: u32 = 0x7f00_0000; // 2^127
    const NAN: u32 = 0x7fc0_0000;
    let magnitude = bits & 0x7fff_ffff;
    if magnitude > 0x7f80_0000 {
        return bits;
    }
    if magnitude < MIN {
        return if saturate { MIN } else { NAN };
    }
    // The biased exponent and the fraction's bits; below 2^−126 the exponent is 0 and the fraction that of x / 2^−127.
    let e = magnitude >> 23;
    let fraction = if magnitude < 0x0080_0000 { (magnitude - MIN) << 1 } else { magnitude & 0x7f_ffff };
    let up = match rounding {
        ScaleRounding::Up => fraction != 0,
        ScaleRounding::Down => false,
        ScaleRounding::Nearest => fraction >= 0x40_0000,
    };
    match e + up as u32 {
        255.. => if saturate { MAX } else { NAN },
        0 => MIN,
        e => e << 23,
    }
}

/// The state with `new` stored at rows `offset..` of axis 1, and its rows `0..offset + s`.
fn cache_write(state: &Tensor, new: &Tensor, offset: usize) -> Result<(Tensor, Tensor), String> {
    let (capacity, s) = (state.shape[1], new.shape[1]);
    if offset + s > capacity {
        return Err(format!("{} rows past {offset} do not fit the cache's {capacity} rows", s));
    }
    let row: usize = state.shape[2..].iter().product();
    let mut values = state.to_f32();
    values[offset * row..(offset + s) * row].copy_from_slice(&new.to_f32());
    let mut shape = state.shape.clone();
    shape[1] = offset + s;
    let rows = Tensor::f32(shape, values[..(offset + s) * row].to_vec());
    Ok((Tensor::f32(state.shape.clone(), values), rows))
}

fn argmax(x: &Tensor) -> Tensor {
    let d = *x.shape.last().unwrap();
    let v = x.to_f32();
    let best = v
        .chunks_exact(d.max(1))
        .map(|row| row.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &a)| if a > b.1 { (i, a) } else { b }).0 as i32)
        .collect();
    Tensor::i32(x.shape[..x.shape.len() - 1].to_vec(), best)
}

fn arg_reduce(x: &Tensor, axis: usize, largest: bool, last: bool) -> Tensor {
    let (len, inner) = (x.shape[axis], x.shape[axis + 1..].iter().product::<usize>());
    let v = x.to_f32();
    let mut out = Vec::with_capacity(v.len() / len.max(1));
    for block in v.chunks_exact((len * inner).max(1)) {
        for i in 0..inner {
            let mut best = 0;
            for k in 1..len {
                let (a, b) = (block[k * inner + i], block[best * inner + i]);
                if (if largest { a > b } else { a < b }) || (last && a == b) {
                    best = k;
                }
            }
            out.push(best as i32);
        }
    }
    let mut shape = x.shape.clone();
    shape.remove(axis);
    Tensor::i32(shape, out)
}

/// The input positions and weights output coordinate `x` of an axis of length `len` reads, or `None` where it
/// extrapolates. Kernels follow the same steps in f32.
fn resize_taps(map: &ResizeAxis, mode: ResizeMode, x: usize, len: usize, extrapolates: bool) -> Option<Vec<(usize, f64)>> {
    let x_in = ((x as f64 + map.shift as f64) * map.num as f64) / map.den as f64 + map.offset as f64;
    let last = len as f64 - 1.0;
    if extrapolates && !(0.0..=last).contains(&x_in) {
        return None;
    }
    // base + ratio with ratio in (0, 1].
    let base = x_in.ceil() - 1.0;
    let ratio = x_in - base;
    let clamp = |i: f64| i.clamp(0.0, last) as usize;
    Some(match mode {
        ResizeMode::Nearest(rounding) => {
            let up = match rounding {
                NearestRounding::PreferFloor => ratio > 0.5,
                NearestRounding::PreferCeil => ratio >= 0.5,
                NearestRounding::Floor => ratio == 1.0,
                NearestRounding::Ceil => true,
            };
            vec![(clamp(base + up as u8 as f64), 1.0)]
        }
        ResizeMode::Linear => vec![(clamp(base), 1.0 - ratio), (clamp(base + 1.0), ratio)],
        ResizeMode::Cubic { a, exclude_outside } => {
            let a = a as f64;
            // Keys' kernel at distances 1 + ratio, ratio, 1 − ratio, 2 − ratio.
            let near = |t: f64| ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
            let far = |t: f64| ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a;
            let mut taps: Vec<(f64, f64)> =
                vec![(base - 1.0, far(1.0 + ratio)), (base, near(ratio)), (base + 1.0, near(1.0 - ratio)), (base + 2.0, far(2.0 - ratio))];
            if exclude_outside {
                for (i, w) in taps.iter_mut() {
                    if *i < 0.0 || *i > last {
                        *w = 0.0;
                    }
                }
                let total: f64 = taps.iter().map(|t| t.1).sum();
                taps.iter_mut().for_each(|t| t.1 /= total);
            }
            taps.into_iter().map(|(i, w)| (clamp(i), w)).collect()
        }
    })
}

fn resize(x: &Tensor, shape: &[usize], axes: &[Option<ResizeAxis>], mode: ResizeMode, extrapolation: Option<f32>) -> Tensor {
    let v = x.to_f32();
    let values = (0..shape.iter().product())
        .map(|o| {
            let c = coordinates(o, shape);
            // Per axis, the (input index, weight) taps; their product over axes is the set of reads.
            let mut reads: Vec<(usize, f64)> = vec![(0, 1.0)];
            for a in 0..shape.len() {
                let taps = match &axes[a] {
                    None => vec![(c[a], 1.0)],
                    Some(map) => match resize_taps(map, mode, c[a], x.shape[a], extrapolation.is_some()) {
                        Some(taps) => taps,
                        None => return extrapolation.unwrap_or(0.0),
                    },
                };
                reads = reads.iter().flat_map(|&(at, w)| taps.iter().map(move |&(i, tw)| (at * x.shape[a] + i, w * tw))).collect();
            }
            reads.iter().map(|&(at, w)| w * v[at] as f64).sum::<f64>() as f32
        })
        .collect();
    Tensor::f32(shape.to_vec(), values)
}

/// `x` mirrored into [lo, hi] (as ONNX's reference: whole periods of the range by division, then one reflection).
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    let (dx, from_low) = if x < lo { (lo - x, true) } else if x > hi { (x - hi, false) } else { return x };
    let periods = (dx / range).trunc();
    let r = dx - periods * range;
    if (periods as i64 % 2 == 0) == from_low { lo + r } else { hi - r }
}

/// The taps (input index or `None` for a zero, weight) of grid coordinate `g` on an axis of `len`.
fn sample_taps(g: f32, len: usize, mode: SampleMode, padding: SamplePadding, align_corners: bool) -> Vec<(Option<usize>, f64)> {
    let d = len as f32;
    // The position in elements, computed in f32 as ONNX's reference does.
    let mut x = (if align_corners { (g + 1.0) / 2.0 * (d - 1.0) } else { ((g + 1.0) * d - 1.0) / 2.0 }) as f64;
    if mode == SampleMode::Nearest {
        x = x.round_ties_even();
    }
    let (lo, hi) = if align_corners { (0.0, len as f64 - 1.0) } else { (-0.5, len as f64 - 0.5) };
    if x < lo || x > hi {
        match padding {
            SamplePadding::Zeros => {}
            SamplePadding::Border => x = x.clamp(0.0, len as f64 - 1.0),
            SamplePadding::Reflection => x = reflect(x, lo, hi),
        }
    }
    let pixel = |i: f64| -> Option<usize> {
        let i = match padding {
            SamplePadding::Zeros => i,
            SamplePadding::Border => i.clamp(0.0, len as f64 - 1.0),
            SamplePadding::Reflection => reflect(i, lo, hi).trunc(),
        };
        (0.0..len as f64).contains(&i).then_some(i as usize)
    };
    let base = x.floor();
    let t = x - base;
    match mode {
        SampleMode::Nearest => vec![(pixel(x.trunc()), 1.0)],
        SampleMode::Linear => vec![(pixel(base), 1.0 - t), (pixel(base + 1.0), t)],
        SampleMode::Cubic => {
            let a = -0.75;
            let near = |t: f64| ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
            let far = |t: f64| ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a;
            vec![(pixel(base - 1.0), far(1.0 + t)), (pixel(base), near(t)), (pixel(base + 1.0), near(1.0 - t)), (pixel(base + 2.0), far(2.0 - t))]
        }
    }
}

fn grid_sample(x: &Tensor, grid: &Tensor, mode: SampleMode, padding: SamplePadding, align_corners: bool) -> Tensor {
    let (n, c, spatial) = (x.shape[0], x.shape[1], &x.shape[2..]);
    let r = spatial.len();
    let out_spatial = &grid.shape[1..=r];
    let (size, osize) = (spatial.iter().product::<usize>(), out_spatial.iter().product::<usize>());
    let (v, g) = (x.to_f32(), grid.to_f32());
    let mut out = Vec::with_capacity(n * c * osize);
    for b in 0..n {
        // Per output position, the reads (input offset within a plane, weight).
        let reads: Vec<Vec<(Option<usize>, f64)>> = (0..osize)
            .map(|o| {
                let position = &g[(b * osize + o) * r..][..r];
                let mut reads = vec![(Some(0), 1.0)];
                for a in 0..r {
                    let taps = sample_taps(position[r - 1 - a], spatial[a], mode, padding, align_corners);
                    reads = reads
                        .iter()
                        .flat_map(|&(at, w)| taps.iter().map(move |&(i, tw)| (at.zip(i).map(|(at, i)| at * spatial[a] + i), w * tw)))
                        .collect();
                }
                reads
            })
            .collect();
        for ch in 0..c {
            let plane = &v[(b * c + ch) * size..][..size];
            out.extend(reads.iter().map(|reads| reads.iter().map(|&(at, w)| at.map_or(0.0, |at| w * plane[at] as f64)).sum::<f64>() as f32));
        }
    }
    let mut shape = vec![n, c];
    shape.extend(out_spatial);
    Tensor::f32(shape, out)
}

fn scatter_nd(data: &Tensor, indices: &Tensor, updates: &Tensor, reduction: Option<BinaryOp>, out_dtype: DType) -> Tensor {
    let k = *indices.shape.last().unwrap();
    let slice: usize = data.shape[k..].iter().product();
    // Each update slice's first target offset, or None out of range.
    let targets: Vec<Option<usize>> = indices
        .to_i64()
        .chunks_exact(k)
        .map(|tuple| {
            let coords: Option<Vec<usize>> = tuple
                .iter()
                .zip(&data.shape)
                .map(|(&i, &d)| usize::try_from(if i < 0 { i + d as i64 } else { i }).ok().filter(|&i| i < d))
                .collect();
            coords.map(|c| offset_of(&c, &data.shape[..k]) * slice)
        })
        .collect();
    fn apply<T: Copy>(out: &mut [T], new: &[T], slice: usize, targets: &[Option<usize>], f: fn(T, T) -> T) {
        for (j, target) in targets.iter().enumerate() {
            if let Some(t) = *target {
                for s in 0..slice {
                    out[t + s] = f(out[t + s], new[j * slice + s]);
                }
            }
        }
    }
    if out_dtype.is_int() {
        let (mut out, new): (Vec<i32>, Vec<i32>) = (data.to_i64().iter().map(|&v| v as i32).collect(), updates.to_i64().iter().map(|&v| v as i32).collect());
        let f: fn(i32, i32) -> i32 = match reduction {
            None => |_, u| u,
            Some(BinaryOp::Add) => i32::wrapping_add,
            Some(BinaryOp::Mul) => i32::wrapping_mul,
            Some(BinaryOp::Max) => i32::max,
            Some(_) => i32::min,
        };
        apply(&mut out, &new, slice, &targets, f);
        return convert(&Tensor::i32(data.shape.clone(), out), out_dtype);
    }
    let (mut out, new) = (data.to_f32(), updates.to_f32());
    let f: fn(f32, f32) -> f32 = match reduction {
        None => |_, u| u,
        Some(BinaryOp::Add) => |a, b| a + b,
        Some(BinaryOp::Mul) => |a, b| a * b,
        Some(BinaryOp::Max) => f32::max,
        Some(_) => f32::min,
    };
    apply(&mut out, &new, slice, &targets, f);
    Tensor::f32(data.shape.clone(), out)
}

fn top_k(x: &Tensor, axis: usize, k: usize, largest: bool) -> Tensor {
    let (len, inner) = (x.shape[axis], x.shape[axis + 1..].iter().product::<usize>());
    let v = x.to_f32();
    let outer = v.len() / (len * inner).max(1);
    let mut out = vec![0i32; outer * k * inner];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| v[(o * len + j) * inner + i];
            let mut order: Vec<usize> = (0..len).collect();
            // A stable sort keeps equal elements in index order.
            order.sort_by(|&a, &b| {
                let (p, q) = if largest { (at(b), at(a)) } else { (at(a), at(b)) };
                p.partial_cmp(&q).unwrap_or(std::cmp::Ordering::Equal)
            });
            for (rank, &j) in order.iter().take(k).enumerate() {
                out[(o * k + rank) * inner + i] = j as i32;
            }
        }
    }
    let mut shape = x.shape.clone();
    shape[axis] = k;
    Tensor::i32(shape, out)
}

/// The settings operand of `Op::Sample`.
#[derive(Clone, Copy, Debug)]
pub struct SampleSettings {
    /// 0 (or less) picks the largest logit.
    pub temperature: f32,
    /// Keep only the k most likely tokens (ties at the k-th kept too); 0 keeps all.
    pub top_k: u32,
    /// Keep the most likely tokens whose probabilities add up to at least this; 1 (or more, or 0) keeps all.
    pub top_p: f32,
    /// Keep tokens at least this fraction as likely as the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Logits of penalized tokens are divided by this when positive, multiplied when negative; 0 or 1 is off.
    pub repeat_penalty: f32,
}

impl SampleSettings {
    pub fn from_slice(v: &[f32]) -> SampleSettings {
        SampleSettings { temperature: v[0], top_k: v[1].max(0.0) as u32, top_p: v[2], min_p: v[3], repeat_penalty: v[4] }
    }

    pub fn to_vec(self) -> Vec<f32> {
        vec![self.temperature, self.top_k as f32, self.top_p, self.min_p, self.repeat_penalty]
    }
}

/// Bisection steps that find a probability threshold; 2^-40 is far below any probability that matters.
pub const SAMPLE_SEARCH_STEPS: u32 = 40;

/// The token `Op::Sample` draws from one row of logits with the uniform number `u`. Every backend follows these
/// steps in f32, so they agree but for rounding in sums:
/// 1. penalize: logits of the tokens in `penalized` are divided by the penalty when positive, multiplied otherwise;
/// 2. temperature ≤ 0: the first largest logit;
/// 3. weights w = exp((logit − max) / temperature), so the largest is 1;
/// 4. keep w ≥ the k-th largest weight (top-k), and w ≥ min_p (min-p);
/// 5. top-p: among those, keep w ≥ t for the largest t whose kept weights sum to ≥ top_p of the kept total;
///    thresholds in 4 and 5 are found by bisection on [0, 1] in `SAMPLE_SEARCH_STEPS` steps;
/// 6. walk the kept tokens in index order and take the first whose running weight passes u times their total.
/// The most likely token is always kept (its weight is 1).
pub fn sample(logits: &[f32], s: &SampleSettings, u: f32, penalized: &[i64]) -> usize {
    let penalty_on = s.repeat_penalty > 0.0 && s.repeat_penalty != 1.0;
    let logit = |i: usize| -> f32 {
        let l = logits[i];
        if penalty_on && penalized.binary_search(&(i as i64)).is_ok() {
            if l > 0.0 { l / s.repeat_penalty } else { l * s.repeat_penalty }
        } else {
            l
        }
    };
    let (mut best, mut max) = (0usize, f32::NEG_INFINITY);
    for i in 0..logits.len() {
        if logit(i) > max {
            (best, max) = (i, logit(i));
        }
    }
    if s.temperature <= 0.0 {
        return best;
    }
    let weight = |i: usize| ((logit(i) - max) / s.temperature).exp();
    // The largest threshold in [0, 1] for which `enough(t)` holds, by bisection.
    let search = |enough: &dyn Fn(f32) -> bool| -> f32 {
        let (mut lo, mut hi) = (0f32, 1f32);
        for _ in 0..SAMPLE_SEARCH_STEPS {
            let mid = 0.5 * (lo + hi);
            if enough(mid) { lo = mid } else { hi = mid }
        }
        lo
    };
    let mut floor = s.min_p.max(0.0);
    if s.top_k > 0 {
        let count = |t: f32| (0..logits.len()).filter(|&i| weight(i) >= t).count();
        floor = floor.max(search(&|t| count(t) >= s.top_k as usize));
    }
    let kept_sum = |t: f32| (0..logits.len()).map(weight).filter(|&w| w >= t).sum::<f32>();
    if s.top_p > 0.0 && s.top_p < 1.0 {
        let total = kept_sum(floor);
        floor = floor.max(search(&|t| kept_sum(t.max(floor)) >= s.top_p * total));
    }
    let target = u * kept_sum(floor);
    let mut running = 0f32;
    for i in 0..logits.len() {
        let w = weight(i);
        if w >= floor {
            running += w;
            if running > target {
                return i;
            }
        }
    }
    best // only reached through rounding, with u close to 1
}

fn compare(op: CompareOp, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let shape = broadcast_shape(&a.shape, &b.shape)?;
    let (ao, bo) = (broadcast_offsets(&a.shape, &shape), broadcast_offsets(&b.shape, &shape));
    fn test<T: PartialOrd>(op: CompareOp, p: T, q: T) -> i32 {
        (match op {
            CompareOp::Eq => p == q,
            CompareOp::Ne => p != q,
            CompareOp::Lt => p < q,
            CompareOp::Le => p <= q,
            CompareOp::Gt => p > q,
            CompareOp::Ge => p >= q,
        }) as i32
    }
    let out = if a.dtype().is_int() {
        let (x, y) = (a.to_i64(), b.to_i64());
        ao.iter().zip(&bo).map(|(&i, &j)| test(op, x[i], y[j])).collect()
    } else {
        let (x, y) = (a.to_f32(), b.to_f32());
        ao.iter().zip(&bo).map(|(&i, &j)| test(op, x[i], y[j])).collect()
    };
    Ok(Tensor::i32(shape, out))
}

fn select(condition: &Tensor, a: &Tensor, b: &Tensor, out_dtype: DType) -> Result<Tensor, String> {
    let shape = broadcast_shape(&condition.shape, &broadcast_shape(&a.shape, &b.shape)?)?;
    let [co, ao, bo] = [condition, a, b].map(|t| broadcast_offsets(&t.shape, &shape));
    let c = condition.to_i64();
    let pick = |k: usize| if c[co[k]] != 0 { (true, ao[k]) } else { (false, bo[k]) };
    Ok(if out_dtype.is_int() {
        let (x, y) = (a.to_i64(), b.to_i64());
        let out = (0..co.len()).map(|k| match pick(k) { (true, i) => x[i], (false, j) => y[j] }).collect();
        convert(&Tensor::i64(shape, out), out_dtype)
    } else {
        let (x, y) = (a.to_f32(), b.to_f32());
        Tensor::f32(shape, (0..co.len()).map(|k| match pick(k) { (true, i) => x[i], (false, j) => y[j] }).collect())
    })
}

/// The coordinates of element `linear` of a contiguous tensor of `shape`.
fn coordinates(mut linear: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        c[a] = linear % shape[a].max(1);
        linear /= shape[a].max(1);
    }
    c
}

fn offset_of(coords: &[usize], shape: &[usize]) -> usize {
    coords.iter().zip(shape).fold(0, |acc, (&c, &d)| acc * d + c)
}

fn reduce(x: &Tensor, kind: ReduceKind, axes: &[usize], keep_dims: bool) -> Tensor {
    let kept: Vec<usize> = (0..x.shape.len()).filter(|a| !axes.contains(a)).collect();
    let kept_shape: Vec<usize> = kept.iter().map(|&a| x.shape[a]).collect();
    let mut groups: Vec<Vec<f64>> = vec![Vec::new(); kept_shape.iter().product()];
    for (i, &v) in x.to_f32().iter().enumerate() {
        let c = coordinates(i, &x.shape);
        let k: Vec<usize> = kept.iter().map(|&a| c[a]).collect();
        groups[offset_of(&k, &kept_shape)].push(v as f64);
    }
    let combine = |g: &Vec<f64>| -> f64 {
        let sum = |f: fn(f64) -> f64| g.iter().map(|&v| f(v)).sum::<f64>();
        match kind {
            ReduceKind::Sum => sum(|v| v),
            ReduceKind::Mean => sum(|v| v) / g.len() as f64,
            ReduceKind::Max => g.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ReduceKind::Min => g.iter().copied().fold(f64::INFINITY, f64::min),
            ReduceKind::Prod => g.iter().product(),
            ReduceKind::L1 => sum(f64::abs),
            ReduceKind::L2 => sum(|v| v * v).sqrt(),
            ReduceKind::LogSum => sum(|v| v).ln(),
            ReduceKind::LogSumExp => {
                let m = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if m.is_infinite() { m } else { m + g.iter().map(|&v| (v - m).exp()).sum::<f64>().ln() }
            }
            ReduceKind::SumSquare => sum(|v| v * v),
        }
    };
    let shape = if keep_dims { x.shape.iter().enumerate().map(|(a, &d)| if axes.contains(&a) { 1 } else { d }).collect() } else { kept_shape };
    Tensor::f32(shape, groups.iter().map(|g| combine(g) as f32).collect())
}

/// A tensor of `shape` whose element k is `t`'s element `offsets[k]`, or `fill` where that is `None`.
fn gather_or_fill(t: &Tensor, shape: Vec<usize>, offsets: &[Option<usize>], fill: f32, out_dtype: DType) -> Tensor {
    if out_dtype.is_int() {
        let v = t.to_i64();
        convert(&Tensor::i64(shape, offsets.iter().map(|o| o.map_or(fill as i64, |o| v[o])).collect()), out_dtype)
    } else {
        let v = t.to_f32();
        Tensor::f32(shape, offsets.iter().map(|o| o.map_or(fill, |o| v[o])).collect())
    }
}

fn gather_elements(data: &Tensor, indices: &Tensor, axis: usize, out_dtype: DType) -> Tensor {
    let len = data.shape[axis] as i64;
    let offsets: Vec<Option<usize>> = indices
        .to_i64()
        .iter()
        .enumerate()
        .map(|(i, &index)| {
            let index = if index < 0 { index + len } else { index };
            let mut c = coordinates(i, &indices.shape);
            c[axis] = usize::try_from(index).ok().filter(|&x| x < len as usize)?;
            c.iter().zip(&data.shape).all(|(&c, &d)| c < d).then(|| offset_of(&c, &data.shape))
        })
        .collect();
    gather_or_fill(data, indices.shape.clone(), &offsets, 0.0, out_dtype)
}

fn pad(x: &Tensor, pads: &[(usize, usize)], mode: PadMode, out_dtype: DType) -> Tensor {
    let shape: Vec<usize> = x.shape.iter().zip(pads).map(|(&d, &(b, e))| d + b + e).collect();
    let source = |c: usize, before: usize, len: usize| -> Option<usize> {
        let i = c as i64 - before as i64;
        let n = len as i64;
        if (0..n).contains(&i) {
            return Some(i as usize);
        }
        let i = match mode {
            PadMode::Constant(_) => return None,
            PadMode::Edge => i.clamp(0, n - 1),
            PadMode::Wrap => i.rem_euclid(n),
            PadMode::Reflect if i < 0 => -i,
            PadMode::Reflect => 2 * (n - 1) - i,
        };
        Some(i as usize)
    };
    let offsets: Vec<Option<usize>> = (0..shape.iter().product())
        .map(|o| {
            let c = coordinates(o, &shape);
            let src: Option<Vec<usize>> = (0..shape.len()).map(|a| source(c[a], pads[a].0, x.shape[a])).collect();
            src.map(|s| offset_of(&s, &x.shape))
        })
        .collect();
    let fill = if let PadMode::Constant(v) = mode { v } else { 0.0 };
    gather_or_fill(x, shape, &offsets, fill, out_dtype)
}

fn cumulative(x: &Tensor, op: BinaryOp, axis: usize, exclusive: bool, reverse: bool, out_dtype: DType) -> Tensor {
    let (len, inner) = (x.shape[axis], x.shape[axis + 1..].iter().product::<usize>());
    // Every line along the axis, in place: element k becomes the running value up to (or, exclusive, before) it.
    fn scan<T: Copy>(values: &mut [T], len: usize, inner: usize, identity: T, f: impl Fn(T, T) -> T, exclusive: bool, reverse: bool) {
        for block in values.chunks_exact_mut((len * inner).max(1)) {
            for i in 0..inner {
                let mut acc = identity;
                for k in 0..len {
                    let at = if reverse { len - 1 - k } else { k } * inner + i;
                    let next = f(acc, block[at]);
                    block[at] = if exclusive { acc } else { next };
                    acc = next;
                }
            }
        }
    }
    if out_dtype.is_int() {
        // Wrapping i32 arithmetic, as the kernels; Max and Min start from the ends of i32.
        let mut v: Vec<i32> = x.to_i64().iter().map(|&a| a as i32).collect();
        let (identity, f): (i32, fn(i32, i32) -> i32) = match op {
            BinaryOp::Add => (0, i32::wrapping_add),
            BinaryOp::Mul => (1, i32::wrapping_mul),
            BinaryOp::Max => (i32::MIN, i32::max),
            _ => (i32::MAX, i32::min),
        };
        scan(&mut v, len, inner, identity, f, exclusive, reverse);
        return convert(&Tensor::i32(x.shape.clone(), v), out_dtype);
    }
    let mut v: Vec<f64> = x.to_f32().iter().map(|&a| a as f64).collect();
    let (identity, f): (f64, fn(f64, f64) -> f64) = match op {
        BinaryOp::Add => (0.0, |a, b| a + b),
        BinaryOp::Mul => (1.0, |a, b| a * b),
        BinaryOp::Max => (f64::NEG_INFINITY, f64::max),
        _ => (f64::INFINITY, f64::min),
    };
    scan(&mut v, len, inner, identity, f, exclusive, reverse);
    Tensor::f32(x.shape.clone(), v.iter().map(|&a| a as f32).collect())
}

/// For each output position of a window op over spatial `input` dims: the positions of the window's `kernel`
/// elements in the input, `None` for those in padding (or past a ceil-mode window's end).
fn windows(input: &[usize], kernel: &[usize], window: &Window) -> (Vec<usize>, Vec<Vec<Option<usize>>>) {
    let out: Vec<usize> =
        (0..input.len()).map(|a| window.output_len(a, input[a] as u64, kernel[a] as u64).expect("checked by the type rule") as usize).collect();
    let positions = (0..out.iter().product())
        .map(|o| {
            let oc = coordinates(o, &out);
            (0..kernel.iter().product())
                .map(|k| {
                    let kc = coordinates(k, kernel);
                    let c: Option<Vec<usize>> = (0..input.len())
                        .map(|a| {
                            let at = window.input_position(a, oc[a], kc[a]);
                            (0..input[a] as i64).contains(&at).then_some(at as usize)
                        })
                        .collect();
                    c.map(|c| offset_of(&c, input))
                })
                .collect()
        })
        .collect();
    (out, positions)
}

fn conv(x: &[&Tensor], window: &Window, groups: usize) -> Tensor {
    let (input, weights) = (x[0], x[1]);
    let (n, c, m) = (input.shape[0], input.shape[1], weights.shape[0]);
    let spatial = &input.shape[2..];
    let kernel = &weights.shape[2..];
    let (out, positions) = windows(spatial, kernel, window);
    let (xv, wv) = (input.to_f32(), weights.to_f32());
    let bias = x.get(2).map(|b| b.to_f32());
    let (size, ksize) = (spatial.iter().product::<usize>(), kernel.iter().product::<usize>());
    let (cg, mg) = (c / groups, m / groups);
    let mut values = Vec::with_capacity(n * m * positions.len());
    for b in 0..n {
        for oc in 0..m {
            let g = oc / mg;
            for window_positions in &positions {
                let mut acc = bias.as_ref().map_or(0.0, |bias| bias[oc] as f64);
                for ic in 0..cg {
                    let plane = &xv[(b * c + g * cg + ic) * size..][..size];
                    let w = &wv[(oc * cg + ic) * ksize..][..ksize];
                    for (k, p) in window_positions.iter().enumerate() {
                        if let Some(p) = p {
                            acc += plane[*p] as f64 * w[k] as f64;
                        }
                    }
                }
                values.push(acc as f32);
            }
        }
    }
    let mut shape = vec![n, m];
    shape.extend(out);
    Tensor::f32(shape, values)
}

fn conv_transpose(x: &[&Tensor], window: &Window, groups: usize, output_padding: &[usize]) -> Tensor {
    let (input, weights) = (x[0], x[1]);
    let (n, c) = (input.shape[0], input.shape[1]);
    let (m, spatial, kernel) = (weights.shape[1] * groups, &input.shape[2..], &weights.shape[2..]);
    let mut out_shape = vec![n, m];
    out_shape.extend((0..spatial.len()).map(|a| {
        window.strides[a] * (spatial[a] - 1) + output_padding[a] + window.dilations[a] * (kernel[a] - 1) + 1 - window.pads[a].0 - window.pads[a].1
    }));
    let out_spatial = &out_shape[2..];
    let (xv, wv) = (input.to_f32(), weights.to_f32());
    let (size, ksize, osize) = (spatial.iter().product::<usize>(), kernel.iter().product::<usize>(), out_spatial.iter().product::<usize>());
    let (cg, mg) = (c / groups, m / groups);
    let mut out = vec![0f64; n * m * osize];
    for b in 0..n {
        for ic in 0..c {
            let g = ic / cg;
            for i in 0..size {
                let ic_coords = coordinates(i, spatial);
                let value = xv[(b * c + ic) * size + i] as f64;
                for k in 0..ksize {
                    let kc = coordinates(k, kernel);
                    let target: Option<Vec<usize>> = (0..spatial.len())
                        .map(|a| {
                            // The input position of the transposed window is this output's.
                            let at = window.input_position(a, ic_coords[a], kc[a]);
                            (0..out_spatial[a] as i64).contains(&at).then_some(at as usize)
                        })
                        .collect();
                    let Some(target) = target else { continue };
                    let o = offset_of(&target, out_spatial);
                    for om in 0..mg {
                        let w = wv[(ic * mg + om) * ksize + k] as f64;
                        out[(b * m + g * mg + om) * osize + o] += value * w;
                    }
                }
            }
        }
    }
    if let Some(bias) = x.get(2) {
        let bias = bias.to_f32();
        for (i, v) in out.iter_mut().enumerate() {
            *v += bias[(i / osize) % m] as f64;
        }
    }
    Tensor::f32(out_shape.clone(), out.iter().map(|&v| v as f32).collect())
}

fn pool(x: &Tensor, kind: PoolKind, kernel: &[usize], window: &Window) -> Tensor {
    let spatial = &x.shape[2..];
    let (out, positions) = windows(spatial, kernel, window);
    let size: usize = spatial.iter().product();
    let v = x.to_f32();
    // With count_pad, the divisor counts positions inside the declared padding too: those within
    // [−before, len + after) on every axis.
    let padded_counts: Vec<usize> = (0..positions.len())
        .map(|o| {
            let oc = coordinates(o, &out);
            (0..spatial.len())
                .map(|a| {
                    (0..kernel[a])
                        .filter(|&k| {
                            let at = window.input_position(a, oc[a], k);
                            at >= -(window.pads[a].0 as i64) && at < (spatial[a] + window.pads[a].1) as i64
                        })
                        .count()
                })
                .product()
        })
        .collect();
    let mut values = Vec::with_capacity(x.shape[0] * x.shape[1] * positions.len());
    for plane in v.chunks_exact(size.max(1)).take(x.shape[0] * x.shape[1]) {
        for (o, window_positions) in positions.iter().enumerate() {
            let inside = window_positions.iter().flatten().map(|&p| plane[p] as f64);
            let value = match kind {
                PoolKind::Max => inside.fold(f64::NEG_INFINITY, f64::max),
                PoolKind::Average { count_pad } => {
                    let count = if count_pad { padded_counts[o] } else { window_positions.iter().flatten().count() };
                    inside.sum::<f64>() / count as f64
                }
                PoolKind::Lp(p) => inside.map(|a| a.abs().powf(p as f64)).sum::<f64>().powf(1.0 / p as f64),
            };
            values.push(value as f32);
        }
    }
    let mut shape = x.shape[..2].to_vec();
    shape.extend(out);
    Tensor::f32(shape, values)
}
