//! ONNX nodes onto IR ops. A value is either a node of the IR graph or known at compile time (`Known`: an
//! initializer, a constant, or a folded result); shape arithmetic keeps integers as `Dim`s, so symbolic dimensions
//! flow through Shape/Gather/Concat/… into Reshape and Slice.

mod control;
mod einsum;
mod recurrent;
mod spectral;
mod tfidf;

use super::proto::{AttributeProto, NodeProto};
use super::tensor::{Elem, ExternalFiles, LoadedData, Values, dim_int, int_dim};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use tfc_ir::op::{CompareOp, NearestRounding, PadMode, PoolKind, ReduceKind, ResizeAxis, ResizeMode, SampleMode, SamplePadding, ScaleRounding, Window};
use tfc_ir::{BinaryOp, DType, Dim, Graph, MappedFile, NodeId, Op, Tensor, UnaryOp, Weight, WeightData};

/// The ops of the default domain tfc lowers, each with the oldest opset whose meaning of it `lower` implements. An
/// op means what its schema version in force at the model's opset defines; where a version changed that (an
/// attribute became an input, the input was coerced to 2-D, …), `lower` branches on `ctx.opset`, down to the opset
/// given here, and an older model is refused for this op (`support`). Versions that only widened the types, or added
/// an attribute whose default keeps the old meaning, need no branch. A floor above the op's first version marks a
/// meaning not implemented: the `consumed_inputs` (before 6) and `broadcast`/`axis` (before 7) attributes of the
/// elementwise ops, Concat's default axis (4), Reshape's `shape` attribute (5), Tile's `axis` input (6), Cast's
/// string `to` (6), Selu's defaults (6), `is_test` (7), LpPool's float `p` (2), Pad's `paddings` (2), Split's
/// `split` input (2), ConvTranspose's SAME_UPPER padding (11).
const SUPPORTED: &[(&str, i64)] = &[
    ("Abs", 6), ("Acos", 7), ("Acosh", 9), ("Add", 7), ("AffineGrid", 20), ("And", 7), ("ArgMax", 1), ("ArgMin", 1),
    ("Asin", 7), ("Asinh", 9), ("Atan", 7), ("Atanh", 9), ("Attention", 23), ("AveragePool", 1),
    ("BatchNormalization", 7), ("BitCast", 26), ("BitShift", 11), ("BitwiseAnd", 18), ("BitwiseNot", 18),
    ("BitwiseOr", 18), ("BitwiseXor", 18), ("BlackmanWindow", 17), ("Cast", 6), ("CastLike", 15),
    ("CausalConvWithState", 27), ("Ceil", 6), ("Celu", 12), ("CenterCropPad", 18), ("Clip", 6), ("Col2Im", 18),
    ("Compress", 9), ("Concat", 4), ("Constant", 1), ("ConstantOfShape", 9), ("Conv", 1), ("ConvInteger", 10),
    ("ConvTranspose", 11), ("Cos", 7), ("Cosh", 9), ("CumProd", 26), ("CumSum", 11), ("DeformConv", 19),
    ("DepthToSpace", 1), ("DequantizeLinear", 10), ("Det", 11), ("DFT", 17), ("Div", 7), ("Dropout", 7),
    ("DynamicQuantizeLinear", 11), ("Einsum", 12), ("Elu", 6), ("Equal", 7), ("Erf", 9), ("Exp", 6), ("Expand", 8),
    ("EyeLike", 9), ("Flatten", 1), ("Floor", 6), ("Gather", 1), ("GatherElements", 11), ("GatherND", 11),
    ("Gelu", 20), ("Gemm", 7), ("GlobalAveragePool", 1), ("GlobalLpPool", 2), ("GlobalMaxPool", 1), ("Greater", 7),
    ("GreaterOrEqual", 12), ("GridSample", 16), ("GroupNormalization", 18), ("GRU", 7), ("HammingWindow", 17),
    ("HannWindow", 17), ("Hardmax", 1), ("HardSigmoid", 6), ("HardSwish", 14), ("Identity", 1), ("If", 1),
    ("InstanceNormalization", 6), ("IsInf", 10), ("IsNaN", 9), ("LayerNormalization", 17), ("LeakyRelu", 6),
    ("Less", 7), ("LessOrEqual", 12), ("LinearAttention", 27), ("Log", 6), ("LogSoftmax", 1), ("Loop", 11),
    ("LpNormalization", 1), ("LpPool", 2), ("LRN", 1), ("LSTM", 7), ("MatMul", 1), ("MatMulInteger", 10), ("Max", 6),
    ("MaxPool", 1), ("MaxUnpool", 9), ("Mean", 6), ("MeanVarianceNormalization", 9), ("MelWeightMatrix", 17),
    ("Min", 6), ("Mish", 18), ("Mod", 10), ("Mul", 7), ("Neg", 6), ("NegativeLogLikelihoodLoss", 12), ("Not", 1),
    ("OneHot", 9), ("Or", 7), ("Pad", 2), ("Pow", 7), ("PRelu", 7), ("QLinearConv", 10), ("QLinearMatMul", 10),
    ("QuantizeLinear", 10), ("Range", 11), ("Reciprocal", 6), ("ReduceL1", 1), ("ReduceL2", 1), ("ReduceLogSum", 1),
    ("ReduceLogSumExp", 1), ("ReduceMax", 1), ("ReduceMean", 1), ("ReduceMin", 1), ("ReduceProd", 1),
    ("ReduceSum", 1), ("ReduceSumSquare", 1), ("Relu", 6), ("Reshape", 5), ("Resize", 10), ("ReverseSequence", 10),
    ("RMSNormalization", 23), ("RNN", 7), ("RoiAlign", 10), ("RotaryEmbedding", 23), ("Round", 11), ("Scan", 9),
    ("Scatter", 9), ("ScatterElements", 11), ("ScatterND", 11), ("Selu", 6), ("Shape", 1), ("Shrink", 9),
    ("Sigmoid", 6), ("Sign", 9), ("Sin", 7), ("Sinh", 9), ("Size", 1), ("Slice", 1), ("Softmax", 1),
    ("SoftmaxCrossEntropyLoss", 12), ("Softplus", 1), ("Softsign", 1), ("SpaceToDepth", 1), ("Split", 2), ("Sqrt", 6),
    ("Squeeze", 1), ("STFT", 17), ("Sub", 7), ("Sum", 6), ("Swish", 24), ("Tan", 7), ("Tanh", 6),
    ("TensorScatter", 24), ("TfIdfVectorizer", 9), ("ThresholdedRelu", 10), ("Tile", 6), ("TopK", 1),
    ("Transpose", 1), ("Trilu", 14), ("Unsqueeze", 1), ("Upsample", 7), ("Where", 9), ("Xor", 7),
];

/// Whether tfc lowers an op of a domain at the model's opset for that domain.
pub enum Support {
    Yes,
    /// Not at all.
    No,
    /// Only from this opset on (its meaning in older opsets is not implemented).
    From(i64),
}

pub fn support(domain: &str, op_type: &str, opset: i64) -> Support {
    match SUPPORTED.iter().find(|(op, _)| domain == "ai.onnx" && *op == op_type) {
        None => Support::No,
        Some(&(_, oldest)) if opset < oldest => Support::From(oldest),
        Some(_) => Support::Yes,
    }
}

/// What lowering a node sees besides its inputs: the node, its domain's opset, the model's files, and the values of
/// the graph it is in (which the bodies of If, Loop and Scan read).
pub struct Ctx<'a, 'e> {
    pub node: &'a NodeProto,
    pub opset: i64,
    pub env: &'a mut Env<'e>,
    pub scope: &'a Scope<'a>,
}

/// The model's opsets and files.
pub struct Env<'e> {
    pub opsets: &'e BTreeMap<String, i64>,
    pub external: &'e mut ExternalFiles,
    pub model: &'e Arc<MappedFile>,
}

/// The values a graph's nodes can read: its own (initializers, inputs, outputs of its nodes), then those of the graph
/// it is the body of.
pub struct Scope<'p> {
    pub values: HashMap<String, Value>,
    parent: Option<&'p Scope<'p>>,
}

impl<'p> Scope<'p> {
    pub fn new(parent: Option<&'p Scope<'p>>) -> Scope<'p> {
        Scope { values: HashMap::new(), parent }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).or_else(|| self.parent.and_then(|p| p.get(name)))
    }
}

/// A node that could not be lowered: its position in its graph, and why.
pub struct NodeError {
    pub index: usize,
    pub message: String,
}

/// Lowers a graph's nodes in dependency order (`order`), reading their inputs from `scope` and adding their outputs
/// to it.
pub fn lower_nodes(b: &mut Builder, nodes: &[NodeProto], order: &[usize], scope: &mut Scope, env: &mut Env) -> Result<(), NodeError> {
    for &index in order {
        let node = &nodes[index];
        let fail = |message: String| NodeError { index, message };
        let inputs: Vec<Option<Value>> = node
            .input
            .iter()
            .map(|name| match name.as_str() {
                "" => Ok(None),
                name => scope.get(name).cloned().map(Some).ok_or_else(|| fail(format!("input `{name}` is produced by no node, initializer or graph input"))),
            })
            .collect::<Result<_, _>>()?;
        let opset = env.opsets.get(super::domain(node)).copied().unwrap_or(0);
        let ctx = Ctx { node, opset, env: &mut *env, scope: &*scope };
        let outputs = lower_or_fold(b, ctx, &inputs).map_err(|m| fail(with_sources(&b.graph, scope, m)))?;
        for (name, value) in node.output.iter().zip(outputs) {
            if !name.is_empty() {
                scope.values.insert(name.clone(), value);
            }
        }
    }
    Ok(())
}

/// A "must be a constant" error naming a computed value, with the graph inputs that value is computed from (given
/// at compile time, they would make it one).
fn with_sources(graph: &Graph, scope: &Scope, message: String) -> String {
    let Some(Value::Node { id, .. }) = message.split('`').nth(1).and_then(|name| scope.get(name)).filter(|_| message.contains("must be a constant")) else {
        return message;
    };
    let mut sources = Vec::new();
    let mut seen = HashSet::from([*id]);
    let mut stack = vec![*id];
    while let Some(n) = stack.pop() {
        if let Op::Input { name, .. } = &graph.node(n).op {
            sources.push(format!("`{name}`"));
        }
        stack.extend(graph.inputs_of(n).into_iter().filter(|&i| seen.insert(i)));
    }
    if sources.is_empty() {
        return message;
    }
    sources.sort();
    format!("{message} (it is computed from graph input {})", sources.join(", "))
}

impl Ctx<'_, '_> {
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }
    fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }
    fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }
    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }
    fn string(&self, name: &str) -> Option<String> {
        self.attr(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    /// The base of the IR names of this node's ops.
    fn base(&self) -> String {
        if !self.node.name.is_empty() {
            self.node.name.clone()
        } else {
            self.node.output.first().cloned().unwrap_or_else(|| self.node.op_type.clone())
        }
    }
}

#[derive(Clone)]
pub enum Value {
    Node { id: NodeId, elem: Elem },
    Known(Rc<Known>),
}

pub struct Known {
    pub elem: Elem,
    pub shape: Vec<usize>,
    pub data: KnownData,
}

pub enum KnownData {
    Values(Values),
    /// A float initializer still in its file.
    Weight(Weight),
    /// Integers times a scale (`Cast(int8) · scale`, `DequantizeLinear` of a constant): weight-only quantization,
    /// kept apart so that MatMul and Gather can store `q` as Q8_0 (exactly: block scale 1) and apply the scale to
    /// their results. `scale` broadcasts against the shape.
    Scaled { q: Rc<Vec<i8>>, scale: Rc<Known> },
}

impl Known {
    pub fn from_loaded(l: super::tensor::Loaded) -> Known {
        let data = match l.data {
            LoadedData::Weight(w) => KnownData::Weight(w),
            LoadedData::Values(v) => KnownData::Values(v),
            LoadedData::Int8(q) => KnownData::Scaled { q: Rc::new(q), scale: Known::new(Elem::FLOAT, vec![], Values::F32(vec![1.0])) },
        };
        Known { elem: l.elem, shape: l.shape, data }
    }

    /// A host tensor as a known value of element type `elem` (rounded or wrapped to what it holds).
    pub fn from_tensor(elem: Elem, t: &Tensor) -> Known {
        let values = if elem.is_float() {
            Values::F32(t.to_f32().into_iter().map(|x| elem.round_f32(x)).collect())
        } else {
            Values::Int(t.to_i64().into_iter().map(|x| int_dim(elem.wrap_int(x))).collect())
        };
        Known { elem, shape: t.shape.clone(), data: KnownData::Values(values) }
    }

    fn new(elem: Elem, shape: Vec<usize>, values: Values) -> Rc<Known> {
        Rc::new(Known { elem, shape, data: KnownData::Values(values) })
    }

    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32 (integers converted; a symbolic integer is an error).
    fn f32s(&self) -> Result<Vec<f32>, String> {
        Ok(match &self.data {
            KnownData::Values(Values::F32(v)) => v.clone(),
            KnownData::Values(Values::Int(v)) => v.iter().map(|d| const_int(d).map(|x| x as f32)).collect::<Result<_, _>>()?,
            KnownData::Weight(w) => w.to_f32(),
            KnownData::Scaled { q, scale } => {
                let s = scale.f32s()?;
                let idx = broadcast_index(&scale.shape, &self.shape)?;
                q.iter().zip(idx).map(|(&q, i)| q as f32 * s[i]).collect()
            }
        })
    }

    /// The values as integers (floats truncated, as ONNX's Cast does).
    fn ints(&self) -> Result<Vec<Dim>, String> {
        Ok(match &self.data {
            KnownData::Values(Values::Int(v)) => v.clone(),
            _ => self.f32s()?.iter().map(|&x| int_dim(x as i64)).collect(),
        })
    }

    fn values(&self) -> Result<Values, String> {
        Ok(if self.elem.is_float() { Values::F32(self.f32s()?) } else { Values::Int(self.ints()?) })
    }

    /// The integers, which must all be constants.
    fn const_ints(&self) -> Result<Vec<i64>, String> {
        self.ints()?.iter().map(const_int).collect()
    }
}

/// A known tensor's values (see `Known::values`).
pub fn known_values(k: &Known) -> Result<Values, String> {
    k.values()
}

fn const_int(d: &Dim) -> Result<i64, String> {
    dim_int(d).ok_or_else(|| format!("the value `{d}` depends on a symbolic dimension; fix it with --dim NAME=VALUE"))
}

/// The IR graph being built, with unique node names and each known value turned into a weight at most once.
pub struct Builder {
    pub graph: Graph,
    names: HashSet<String>,
    /// Keyed by the value's address; the `Rc` kept here keeps that address from being reused.
    weights: HashMap<*const Known, (Rc<Known>, NodeId)>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder { graph: Graph::new(), names: HashSet::new(), weights: HashMap::new() }
    }

    pub fn claim(&mut self, name: &str) {
        self.names.insert(name.to_string());
    }

    fn name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}#{k}");
            k += 1;
        }
        name
    }

    fn add(&mut self, base: &str, op: Op, inputs: &[NodeId]) -> Result<NodeId, String> {
        let name = self.name(base);
        self.graph.add(name, op, inputs).map_err(|e| e.message)
    }

    /// The IR node of a value; a known value becomes a weight (integers as i32).
    fn node(&mut self, v: &Value, base: &str) -> Result<NodeId, String> {
        let k = match v {
            Value::Node { id, .. } => return Ok(*id),
            Value::Known(k) => k,
        };
        if let Some((_, id)) = self.weights.get(&Rc::as_ptr(k)) {
            return Ok(*id);
        }
        if let KnownData::Values(Values::Int(v)) = &k.data
            && v.iter().any(|d| dim_int(d).is_none())
        {
            return self.symbolic_ints(k, v, base);
        }
        let name = self.name(base);
        let shape: Vec<u64> = k.shape.iter().map(|&d| d as u64).collect();
        let weight = match (&k.data, k.elem.is_float()) {
            (KnownData::Weight(w), _) => Weight { name, ..w.clone() },
            (_, true) => Weight::from_f32(&name, shape, &k.f32s()?),
            (_, false) => {
                let ints: Vec<i32> = k
                    .const_ints()?
                    .into_iter()
                    .map(|x| i32::try_from(x).map_err(|_| format!("the integer {x} does not fit in i32, tfc's integer type")))
                    .collect::<Result<_, _>>()?;
                Weight { name, dtype: DType::I32, shape, data: WeightData::Owned(Arc::new(bytemuck::cast_slice(&ints).to_vec())) }
            }
        };
        let id = self.graph.weight(weight);
        self.weights.insert(Rc::as_ptr(k), (k.clone(), id));
        Ok(id)
    }

    /// Integers that depend on symbols, computed by the bundle: each symbolic one as the length of a slice of a
    /// ones vector (summed), so that shape values can feed arithmetic, comparisons and indices.
    fn symbolic_ints(&mut self, k: &Rc<Known>, values: &[Dim], base: &str) -> Result<NodeId, String> {
        let maxima: tfc_ir::Env = self.graph.symbols.iter().map(|s| (s.name.clone(), s.max)).collect();
        let mut parts = Vec::new();
        for (i, d) in values.iter().enumerate() {
            let name = format!("{base}.{i}");
            let part = match dim_int(d) {
                Some(c) => self.node(&Value::Known(Known::new(k.elem, vec![1], Values::Int(vec![int_dim(c)]))), &name)?,
                None => {
                    let most = d.eval(&maxima)?;
                    let ones = self.node(&Value::Known(Known::new(Elem::FLOAT, vec![most as usize], Values::F32(vec![1.0; most as usize]))), &format!("{name}.ones"))?;
                    let run = self.add(&format!("{name}.slice"), Op::Slice { axis: 0, start: Dim::from(0u64), end: d.clone() }, &[ones])?;
                    let sum = self.add(&format!("{name}.sum"), Op::Reduce { kind: ReduceKind::Sum, axes: vec![0], keep_dims: true }, &[run])?;
                    self.add(&name, Op::Cast { to: DType::I32 }, &[sum])?
                }
            };
            parts.push(part);
        }
        let all = if parts.len() == 1 { parts[0] } else { self.add(&format!("{base}.concat"), Op::Concat { axis: 0 }, &parts)? };
        let shape = k.shape.iter().map(|&d| Dim::from(d)).collect();
        let id = self.add(base, Op::Reshape { shape }, &[all])?;
        self.weights.insert(Rc::as_ptr(k), (k.clone(), id));
        Ok(id)
    }

    /// The node of a graph output: a known value goes through one kernel (adding zero), so that every output is
    /// computed by the bundle.
    pub fn output_node(&mut self, v: &Value, name: &str) -> Result<NodeId, String> {
        match v {
            Value::Node { id, .. } => Ok(*id),
            Value::Known(k) => {
                let w = self.node(v, &format!("{name}.value"))?;
                let zero = self.node(&scalar(k.elem, 0.0), &format!("{name}.zero"))?;
                self.add(name, Op::Binary(BinaryOp::Add), &[w, zero])
            }
        }
    }

    fn shape(&self, v: &Value) -> Vec<Dim> {
        match v {
            Value::Node { id, .. } => self.graph.node(*id).ty.shape.clone(),
            Value::Known(k) => k.shape.iter().map(|&d| Dim::from(d)).collect(),
        }
    }
}

fn elem(v: &Value) -> Elem {
    match v {
        Value::Node { elem, .. } => *elem,
        Value::Known(k) => k.elem,
    }
}

fn scalar(elem: Elem, x: f64) -> Value {
    let values = if elem.is_float() { Values::F32(vec![x as f32]) } else { Values::Int(vec![int_dim(x as i64)]) };
    Value::Known(Known::new(elem, vec![], values))
}

fn known_of(v: &Value) -> Option<&Rc<Known>> {
    match v {
        Value::Known(k) => Some(k),
        Value::Node { .. } => None,
    }
}

/// Lowers a node, or evaluates it when all its inputs are known (in a scratch graph, with the interpreter).
pub fn lower_or_fold(b: &mut Builder, mut ctx: Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    // CastLike reads only the type of its second input, which need not be known; in the scratch graph it becomes a
    // known zero of that type.
    let type_only = |i: usize| ctx.node.op_type == "CastLike" && i == 1;
    let all_known = inputs.iter().enumerate().all(|(i, v)| type_only(i) || v.as_ref().is_none_or(|v| matches!(v, Value::Known(_))));
    // A body reads values of the enclosing graph, which the scratch graph does not hold; its own nodes fold.
    let has_body = ctx.node.attribute.iter().any(|a| a.g.is_some());
    if !all_known || has_body {
        return lower(b, &mut ctx, inputs);
    }
    let known_inputs: Vec<Option<Value>> =
        inputs.iter().enumerate().map(|(i, v)| v.as_ref().map(|v| if type_only(i) { scalar(elem(v), 0.0) } else { v.clone() })).collect();
    let mut scratch = Builder::new();
    scratch.graph.symbols = b.graph.symbols.clone();
    let outputs = lower(&mut scratch, &mut ctx, &known_inputs)?;
    let pending: Vec<(usize, NodeId, Elem)> = outputs
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match v {
            Value::Node { id, elem } => Some((i, *id, *elem)),
            Value::Known(_) => None,
        })
        .collect();
    if pending.is_empty() {
        return Ok(outputs);
    }
    if pending.iter().any(|(_, id, _)| scratch.graph.node(*id).ty.shape.iter().any(|d| d.as_const().is_none())) {
        // A result of symbolic shape (a known table sliced to `sequence` rows): computed by the bundle.
        return lower(b, &mut ctx, inputs);
    }
    for (i, id, _) in &pending {
        scratch.graph.output(&i.to_string(), *id);
    }
    let results = tfc_ir::interp::run(&scratch.graph, &BTreeMap::new()).map_err(|e| format!("folding constants: {e}"))?;
    let mut outputs = outputs;
    for ((i, _, elem), (_, t)) in pending.into_iter().zip(results) {
        outputs[i] = Value::Known(Rc::new(Known::from_tensor(elem, &t)));
    }
    Ok(outputs)
}

fn input<'v>(inputs: &'v [Option<Value>], i: usize) -> Result<&'v Value, String> {
    inputs.get(i).and_then(Option::as_ref).ok_or_else(|| format!("input {i} is missing"))
}

/// A known input (shape, axes, …), or an error saying it must be.
fn known_input<'v>(node: &NodeProto, inputs: &'v [Option<Value>], i: usize, what: &str) -> Result<&'v Rc<Known>, String> {
    known_of(input(inputs, i)?).ok_or_else(|| format!("{what} (input {i}, `{}`) must be a constant; tfc compiles static graphs (give the graph input it comes from a value: `tfc compile --const NAME=FILE.npy`)", node.input[i]))
}

fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank.max(1) && !(rank == 0 && a == 0) {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

fn unary(b: &mut Builder, ctx: &Ctx, x: &Value, op: UnaryOp) -> Result<Value, String> {
    let id = b.node(x, &format!("{}.x", ctx.base()))?;
    if !elem(x).is_float() {
        return Err(format!("{} takes a float tensor here, not {}", ctx.node.op_type, elem(x).name()));
    }
    Ok(Value::Node { id: b.add(&ctx.base(), Op::Unary(op), &[id])?, elem: elem(x) })
}

fn binary(b: &mut Builder, base: &str, op: BinaryOp, x: &Value, y: &Value) -> Result<Value, String> {
    let e = elem(x);
    if let (Value::Known(kx), Value::Known(ky)) = (x, y)
        && !e.is_float()
        && matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul)
    {
        // Shape arithmetic: integers stay symbolic.
        let shape = tfc_ir::interp::broadcast_shape(&kx.shape, &ky.shape)?;
        let (ix, iy) = (broadcast_index(&kx.shape, &shape)?, broadcast_index(&ky.shape, &shape)?);
        let (vx, vy) = (kx.ints()?, ky.ints()?);
        let out = ix.iter().zip(&iy).map(|(&i, &j)| match op {
            BinaryOp::Add => &vx[i] + &vy[j],
            BinaryOp::Sub => &vx[i] - &vy[j],
            _ => &vx[i] * &vy[j],
        });
        return Ok(Value::Known(Known::new(e, shape, Values::Int(out.map(|d| wrap_dim(e, d)).collect()))));
    }
    let (a, c) = (b.node(x, &format!("{base}.a"))?, b.node(y, &format!("{base}.b"))?);
    Ok(Value::Node { id: b.add(base, Op::Binary(op), &[a, c])?, elem: e })
}

fn wrap_dim(e: Elem, d: Dim) -> Dim {
    match dim_int(&d) {
        Some(x) => int_dim(e.wrap_int(x)),
        None => d,
    }
}

/// The node's op types that lower to one IR op of a kind.
fn unary_op(op_type: &str) -> Option<UnaryOp> {
    Some(match op_type {
        "Abs" => UnaryOp::Abs,
        "Neg" => UnaryOp::Neg,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Sqrt" => UnaryOp::Sqrt,
        "Reciprocal" => UnaryOp::Recip,
        "Tanh" => UnaryOp::Tanh,
        "Erf" => UnaryOp::Erf,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Relu" => UnaryOp::Relu,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Tan" => UnaryOp::Tan,
        "Asin" => UnaryOp::Asin,
        "Acos" => UnaryOp::Acos,
        "Atan" => UnaryOp::Atan,
        "Sinh" => UnaryOp::Sinh,
        "Cosh" => UnaryOp::Cosh,
        "Asinh" => UnaryOp::Asinh,
        "Acosh" => UnaryOp::Acosh,
        "Atanh" => UnaryOp::Atanh,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "Sign" => UnaryOp::Sign,
        "Softplus" => UnaryOp::Softplus,
        _ => return None,
    })
}

fn binary_op(op_type: &str) -> Option<BinaryOp> {
    Some(match op_type {
        "Add" | "Sum" | "Mean" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        "Mod" => BinaryOp::Mod,
        _ => return None,
    })
}

fn lower(b: &mut Builder, ctx: &mut Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let base = ctx.base();
    let op_type = ctx.node.op_type.as_str();
    let x = || input(inputs, 0);
    if let Some(op) = unary_op(op_type) {
        let x = x()?;
        if !elem(x).is_float() && matches!(op, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu) {
            // Integers: through the integer Binary ops.
            let zero = scalar(elem(x), 0.0);
            let neg = binary(b, &format!("{base}.neg"), BinaryOp::Sub, &zero, x)?;
            return Ok(vec![match op {
                UnaryOp::Neg => neg,
                UnaryOp::Abs => binary(b, &base, BinaryOp::Max, x, &neg)?,
                _ => binary(b, &base, BinaryOp::Max, x, &zero)?,
            }]);
        }
        return Ok(vec![unary(b, ctx, x, op)?]);
    }
    if let Some(op) = binary_op(op_type) {
        let operands: Vec<&Value> = inputs.iter().flatten().collect();
        let first = *operands.first().ok_or("needs at least one input")?;
        if op == BinaryOp::Mul && operands.len() == 2 && let Some(v) = scale_quantized(operands[0], operands[1])? {
            return Ok(vec![v]);
        }
        if op == BinaryOp::Pow && elem(operands[0]).is_float() != elem(operands[1]).is_float() {
            // Mixed types: computed in f32, the result has the base's type.
            let base_f = cast(b, &format!("{base}.base"), operands[0], Elem::FLOAT)?;
            let exp_f = cast(b, &format!("{base}.exp"), operands[1], Elem::FLOAT)?;
            let y = binary(b, &format!("{base}.f32"), BinaryOp::Pow, &base_f, &exp_f)?;
            return Ok(vec![cast(b, &base, &y, elem(operands[0]))?]);
        }
        let op = if op == BinaryOp::Mod && ctx.int("fmod", 0) != 0 { BinaryOp::Fmod } else { op };
        let mut acc = first.clone();
        for (i, y) in operands.iter().enumerate().skip(1) {
            let name = if i + 1 == operands.len() && op_type != "Mean" { base.clone() } else { format!("{base}.{i}") };
            acc = binary(b, &name, op, &acc, y)?;
        }
        if op_type == "Mean" && operands.len() > 1 {
            acc = binary(b, &base, BinaryOp::Div, &acc, &scalar(elem(first), operands.len() as f64))?;
        }
        return Ok(vec![acc]);
    }
    let one = |v: Value| Ok(vec![v]);
    match op_type {
        "Identity" => one(x()?.clone()),
        "Dropout" => {
            if inputs.get(2).and_then(Option::as_ref).is_some() && known_input(ctx.node, inputs, 2, "the training mode")?.const_ints()?.iter().any(|&t| t != 0) {
                // Training drops at random, unless the ratio is 0.
                let ratio = match inputs.get(1).and_then(Option::as_ref) {
                    Some(_) => known_input(ctx.node, inputs, 1, "the ratio")?.f32s()?.first().copied().unwrap_or(0.5),
                    None => 0.5,
                };
                if ratio != 0.0 {
                    return Err(format!("training mode with a ratio of {ratio} (random) is not supported"));
                }
            }
            // Inference: the input, and a mask that keeps everything (of the input's type before opset 10).
            let x = x()?;
            if ctx.node.output.get(1).is_none_or(|m| m.is_empty()) {
                return one(x.clone());
            }
            let mask = if ctx.opset < 10 { elem(x) } else { Elem::BOOL };
            let ones = expand(b, &format!("{base}.mask"), &scalar(mask, 1.0), &b.shape(x))?;
            Ok(vec![x.clone(), ones])
        }
        "Constant" => one(constant(ctx)?),
        "Cast" => {
            let to = Elem(ctx.int("to", 0) as i32);
            one(cast_narrowing(b, &base, x()?, to, Narrowing::of(ctx)?)?)
        }
        "CastLike" => one(cast_narrowing(b, &base, x()?, elem(input(inputs, 1)?), Narrowing::of(ctx)?)?),
        "Shape" => {
            let shape = b.shape(x()?);
            let rank = shape.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let (start, end) = (clamp(ctx.int("start", 0)), clamp(ctx.int("end", rank)));
            let dims = shape[start..end.max(start)].to_vec();
            one(Value::Known(Known::new(Elem::INT64, vec![dims.len()], Values::Int(dims))))
        }
        "Size" => {
            let n = tfc_ir::dim::product(&b.shape(x()?));
            one(Value::Known(Known::new(Elem::INT64, vec![], Values::Int(vec![n]))))
        }
        "ConstantOfShape" => {
            let shape: Vec<usize> = known_input(ctx.node, inputs, 0, "the shape")?.const_ints()?.iter().map(|&d| d as usize).collect();
            let node = ctx.node;
            let (e, v) = match node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()) {
                Some(t) => {
                    let k = load_tensor(ctx, t)?;
                    (k.elem, k.values()?)
                }
                None => (Elem::FLOAT, Values::F32(vec![0.0])),
            };
            let n: usize = shape.iter().product();
            let values = match v {
                Values::F32(v) => Values::F32(vec![v[0]; n]),
                Values::Int(v) => Values::Int(vec![v[0].clone(); n]),
            };
            one(Value::Known(Known::new(e, shape, values)))
        }
        "Range" => {
            let k = |i| known_input(ctx.node, inputs, i, "Range's start, limit and delta");
            let e = k(0)?.elem;
            let limit = k(1)?.ints()?;
            if !e.is_float() && dim_int(&limit[0]).is_none() {
                return one(symbolic_range(b, &base, e, const_int(&k(0)?.ints()?[0])?, &limit[0], const_int(&k(2)?.ints()?[0])?)?);
            }
            let (start, limit, delta) = (k(0)?.f32s()?[0] as f64, k(1)?.f32s()?[0] as f64, k(2)?.f32s()?[0] as f64);
            let n = ((limit - start) / delta).ceil().max(0.0) as usize;
            let values = if e.is_float() {
                Values::F32((0..n).map(|i| (start + i as f64 * delta) as f32).collect())
            } else {
                Values::Int((0..n).map(|i| int_dim(start as i64 + i as i64 * delta as i64)).collect())
            };
            one(Value::Known(Known::new(e, vec![n], values)))
        }
        "Reshape" => {
            let x = x()?;
            let target = known_input(ctx.node, inputs, 1, "the shape")?.ints()?;
            let shape = reshape_target(&b.shape(x), &target, ctx.int("allowzero", 0) != 0)?;
            one(reshape(b, &base, x, shape)?)
        }
        "Flatten" => {
            let x = x()?;
            let shape = b.shape(x);
            let axis = ctx.int("axis", 1);
            let axis = if axis < 0 { normalize_axis(axis, shape.len())? } else { normalize_axis(axis, shape.len() + 1)? };
            let target = vec![tfc_ir::dim::product(&shape[..axis]), tfc_ir::dim::product(&shape[axis..])];
            one(reshape(b, &base, x, target)?)
        }
        "Squeeze" | "Unsqueeze" => {
            let x = x()?;
            let shape = b.shape(x);
            let axes = match inputs.get(1).and_then(Option::as_ref) {
                _ if ctx.opset < 13 => ctx.ints("axes").unwrap_or_default(),
                Some(_) => known_input(ctx.node, inputs, 1, "the axes")?.const_ints()?,
                None => vec![],
            };
            let target = if op_type == "Squeeze" {
                let axes: Vec<usize> = axes.iter().map(|&a| normalize_axis(a, shape.len())).collect::<Result<_, _>>()?;
                let one_dim = Dim::from(1u64);
                shape.iter().enumerate().filter(|(i, d)| if axes.is_empty() { **d != one_dim } else { !axes.contains(i) }).map(|(_, d)| d.clone()).collect()
            } else {
                let rank = shape.len() + axes.len();
                let mut axes: Vec<usize> = axes.iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_, _>>()?;
                axes.sort();
                let mut rest = shape.iter();
                (0..rank).map(|i| if axes.contains(&i) { Dim::from(1u64) } else { rest.next().cloned().unwrap_or_default() }).collect()
            };
            one(reshape(b, &base, x, target)?)
        }
        "Transpose" => {
            let x = x()?;
            let rank = b.shape(x).len();
            let perm: Vec<usize> = match ctx.ints("perm") {
                Some(p) => p.iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_, _>>()?,
                None => (0..rank).rev().collect(),
            };
            one(transpose(b, &base, x, &perm)?)
        }
        "Concat" => {
            let parts: Vec<&Value> = inputs.iter().flatten().collect();
            let rank = b.shape(parts[0]).len();
            let axis = normalize_axis(ctx.int("axis", 0), rank)?;
            one(concat(b, &base, &parts, axis)?)
        }
        "Slice" => {
            let x = x()?;
            let shape = b.shape(x);
            let (starts, ends, axes, steps) = if ctx.opset < 10 {
                // starts, ends and axes are attributes; no steps.
                let attr = |name: &str| ctx.ints(name).ok_or_else(|| format!("has no `{name}` attribute"));
                let (starts, ends) = (attr("starts")?, attr("ends")?);
                let axes = ctx.ints("axes").unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = vec![1; starts.len()];
                (starts.into_iter().map(int_dim).collect::<Vec<_>>(), ends.into_iter().map(int_dim).collect::<Vec<_>>(), axes, steps)
            } else {
                let starts = known_input(ctx.node, inputs, 1, "starts")?.ints()?;
                let ends = known_input(ctx.node, inputs, 2, "ends")?.ints()?;
                let axes = match inputs.get(3).and_then(Option::as_ref) {
                    Some(_) => known_input(ctx.node, inputs, 3, "axes")?.const_ints()?,
                    None => (0..starts.len() as i64).collect(),
                };
                let steps = match inputs.get(4).and_then(Option::as_ref) {
                    Some(_) => known_input(ctx.node, inputs, 4, "steps")?.const_ints()?,
                    None => vec![1; starts.len()],
                };
                (starts, ends, axes, steps)
            };
            if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
                return Err("starts, ends, axes and steps differ in length".into());
            }
            let mut v = x.clone();
            for i in 0..starts.len() {
                let axis = normalize_axis(axes[i], shape.len())?;
                v = slice(b, &base, &v, axis, &starts[i], &ends[i], steps[i])?;
            }
            one(v)
        }
        "Split" => {
            let x = x()?;
            let shape = b.shape(x);
            let axis = normalize_axis(ctx.int("axis", 0), shape.len())?;
            let outputs = ctx.node.output.len();
            let given = match inputs.get(1).and_then(Option::as_ref) {
                _ if ctx.opset < 13 => ctx.ints("split").filter(|s| !s.is_empty()).map(|s| s.into_iter().map(int_dim).collect()),
                Some(_) => Some(known_input(ctx.node, inputs, 1, "split")?.ints()?),
                None => None,
            };
            let sizes: Vec<Dim> = match given {
                Some(sizes) => sizes,
                None => {
                    let len = shape[axis].as_const().ok_or("splitting a symbolic axis needs the `split` input")? as usize;
                    let parts = if ctx.opset >= 18 { ctx.int("num_outputs", outputs as i64) } else { outputs as i64 }.max(1) as usize;
                    let each = len.div_ceil(parts);
                    (0..parts).map(|i| Dim::from(each.min(len.saturating_sub(i * each)) as u64)).collect()
                }
            };
            let mut start = Dim::from(0u64);
            let mut outs = Vec::new();
            for size in sizes {
                let end = &start + &size;
                outs.push(slice(b, &base, x, axis, &start, &end, 1)?);
                start = end;
            }
            Ok(outs)
        }
        "Gather" => {
            let (data, indices) = (x()?, input(inputs, 1)?);
            let rank = b.shape(data).len();
            let axis = normalize_axis(ctx.int("axis", 0), rank)?;
            one(gather(b, &base, data, indices, axis)?)
        }
        "Expand" => {
            let x = x()?;
            let target = known_input(ctx.node, inputs, 1, "the shape")?.ints()?;
            let shape = tfc_ir::op::broadcast_shapes(&b.shape(x), &target)?;
            one(expand(b, &base, x, &shape)?)
        }
        "Clip" => {
            let (lo, hi) = if ctx.opset < 11 {
                // Attributes, with the float range as their defaults.
                let bound = |name: &str, default: f32| Some(scalar(Elem::FLOAT, ctx.float(name, default) as f64));
                (bound("min", f32::MIN), bound("max", f32::MAX))
            } else {
                (inputs.get(1).cloned().flatten(), inputs.get(2).cloned().flatten())
            };
            let mut v = x()?.clone();
            if let Some(lo) = lo {
                v = binary(b, &format!("{base}.min"), BinaryOp::Max, &v, &lo)?;
            }
            if let Some(hi) = hi {
                v = binary(b, &base, BinaryOp::Min, &v, &hi)?;
            }
            one(v)
        }
        "LeakyRelu" => {
            let x = x()?;
            let alpha = ctx.float("alpha", 0.01);
            let scaled = binary(b, &format!("{base}.scaled"), BinaryOp::Mul, x, &scalar(Elem::FLOAT, alpha as f64))?;
            if (0.0..=1.0).contains(&alpha) {
                one(binary(b, &base, BinaryOp::Max, x, &scaled)?)
            } else {
                Err(format!("alpha = {alpha} outside [0, 1] is not supported"))
            }
        }
        "HardSigmoid" | "HardSwish" => {
            let x = x()?;
            let (alpha, beta) = if op_type == "HardSwish" { (1.0 / 6.0, 0.5) } else { (ctx.float("alpha", 0.2), ctx.float("beta", 0.5)) };
            let y = binary(b, &format!("{base}.ax"), BinaryOp::Mul, x, &scalar(Elem::FLOAT, alpha as f64))?;
            let y = binary(b, &format!("{base}.axb"), BinaryOp::Add, &y, &scalar(Elem::FLOAT, beta as f64))?;
            let y = binary(b, &format!("{base}.lo"), BinaryOp::Max, &y, &scalar(Elem::FLOAT, 0.0))?;
            let name = if op_type == "HardSwish" { format!("{base}.hs") } else { base.clone() };
            let y = binary(b, &name, BinaryOp::Min, &y, &scalar(Elem::FLOAT, 1.0))?;
            one(if op_type == "HardSwish" { binary(b, &base, BinaryOp::Mul, x, &y)? } else { y })
        }
        "Gelu" => {
            let op = match ctx.string("approximate").as_deref() {
                Some("tanh") => UnaryOp::GeluTanh,
                _ => UnaryOp::Gelu,
            };
            one(unary(b, ctx, x()?, op)?)
        }
        "NegativeLogLikelihoodLoss" => one(nll_loss(b, ctx, x()?, input(inputs, 1)?, inputs.get(2).and_then(Option::as_ref))?),
        "SoftmaxCrossEntropyLoss" => {
            let x = x()?;
            let log_prob = softmax_along(b, ctx, x, 1, true)?;
            let loss = nll_loss(b, ctx, &log_prob, input(inputs, 1)?, inputs.get(2).and_then(Option::as_ref))?;
            Ok(vec![loss, log_prob])
        }
        "Softmax" | "LogSoftmax" => {
            let (x, log) = (x()?, op_type == "LogSoftmax");
            if ctx.opset < 13 {
                return one(on_matrix(b, ctx, x, |b, m| softmax_along(b, ctx, m, 1, log))?);
            }
            let axis = normalize_axis(ctx.int("axis", -1), b.shape(x).len())?;
            one(softmax_along(b, ctx, x, axis, log)?)
        }
        "LayerNormalization" | "RMSNormalization" => normalization(b, ctx, inputs),
        "MatMul" => one(matmul(b, &base, x()?, input(inputs, 1)?, false, false)?),
        "Gemm" => {
            let (a, c) = (x()?, input(inputs, 1)?);
            let (alpha, beta) = (ctx.float("alpha", 1.0), ctx.float("beta", 1.0));
            let mut y = matmul(b, &format!("{base}.ab"), a, c, ctx.int("transA", 0) != 0, ctx.int("transB", 0) != 0)?;
            if alpha != 1.0 {
                y = binary(b, &format!("{base}.alpha"), BinaryOp::Mul, &y, &scalar(Elem::FLOAT, alpha as f64))?;
            }
            if let Some(bias) = inputs.get(2).and_then(Option::as_ref) {
                let bias = if beta != 1.0 { binary(b, &format!("{base}.beta"), BinaryOp::Mul, bias, &scalar(Elem::FLOAT, beta as f64))? } else { bias.clone() };
                y = binary(b, &base, BinaryOp::Add, &y, &bias)?;
            }
            one(y)
        }
        "DequantizeLinear" => one(dequantize(b, ctx, inputs)?),
        "Attention" => attention(b, ctx, inputs),
        "TopK" => {
            let x = x()?;
            let shape = b.shape(x);
            let axis = normalize_axis(ctx.int("axis", -1), shape.len())?;
            let k = if ctx.opset < 10 { ctx.attr("k").ok_or("has no `k` attribute")?.i } else { known_input(ctx.node, inputs, 1, "K")?.const_ints()?[0] };
            let largest = ctx.int("largest", 1) != 0;
            let id = b.node(x, &format!("{base}.x"))?;
            let indices = b.add(&format!("{base}.indices"), Op::TopK { axis, k: k.max(0) as usize, largest }, &[id])?;
            let values = b.add(&base, Op::GatherElements { axis }, &[id, indices])?;
            Ok(vec![Value::Node { id: values, elem: elem(x) }, Value::Node { id: indices, elem: Elem::INT64 }])
        }
        "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" => {
            let op = match op_type {
                "BitwiseAnd" => BinaryOp::BitAnd,
                "BitwiseOr" => BinaryOp::BitOr,
                _ => BinaryOp::BitXor,
            };
            one(binary(b, &base, op, x()?, input(inputs, 1)?)?)
        }
        "BitwiseNot" => {
            // ~x = x XOR all ones, wrapped to the type's width.
            let x = x()?;
            let e = elem(x);
            let ones = binary(b, &format!("{base}.xor"), BinaryOp::BitXor, x, &scalar(e, -1.0))?;
            one(if e.wrap_int(-1) == -1 { ones } else { binary(b, &base, BinaryOp::BitAnd, &ones, &scalar(e, e.wrap_int(-1) as f64))? })
        }
        "BitShift" => {
            let left = ctx.string("direction").as_deref() == Some("LEFT");
            let (x, amount) = (x()?, input(inputs, 1)?);
            let e = elem(x);
            let bits = match e.0 {
                2 => 8,
                4 => 16,
                12 => 32,
                13 => 64,
                _ => return Err(format!("shifting {} is not supported (unsigned integers only)", e.name())),
            };
            // tfc holds unsigned integers in i32, so below 2^31: every right shift is exact, and so is a left shift of
            // uint8 and uint16 (masked to their width), but a left shift of wider types can pass 2^31.
            if left && bits > 16 {
                return Err(format!("a left shift of {} is not supported: its result can pass 2^31, past tfc's i32 integers", e.name()));
            }
            let shifted = binary(b, &format!("{base}.shift"), if left { BinaryOp::ShiftLeft } else { BinaryOp::ShiftRight }, x, amount)?;
            let kept = if left { binary(b, &format!("{base}.mask"), BinaryOp::BitAnd, &shifted, &scalar(e, ((1u64 << bits) - 1) as f64))? } else { shifted };
            // The IR shifts by the amount modulo 32; shifting by the type's width or more leaves nothing.
            let within = compare(b, &format!("{base}.within"), CompareOp::Lt, amount, &scalar(elem(amount), bits.min(32) as f64))?;
            one(where_(b, &base, &within, &kept, &scalar(e, 0.0))?)
        }
        "ScatterND" => {
            let reduction = scatter_reduction(ctx)?;
            let (d, i, u) = (b.node(x()?, &format!("{base}.data"))?, b.node(input(inputs, 1)?, &format!("{base}.indices"))?, b.node(input(inputs, 2)?, &format!("{base}.updates"))?);
            one(Value::Node { id: b.add(&base, Op::ScatterND { reduction }, &[d, i, u])?, elem: elem(x()?) })
        }
        "ConvTranspose" => one(conv_transpose(b, ctx, inputs)?),
        "Resize" => one(resize(b, ctx, inputs)?),
        "Upsample" => {
            let scales = if ctx.opset < 9 { ctx.attr("scales").ok_or("has no `scales` attribute")?.floats.clone() } else { known_input(ctx.node, inputs, 1, "the scales")?.f32s()? };
            one(upsample(b, ctx, x()?, &scales)?)
        }
        "Scatter" | "ScatterElements" => one(scatter_elements(b, ctx, x()?, input(inputs, 1)?, input(inputs, 2)?)?),
        "RotaryEmbedding" => one(rotary_embedding(b, ctx, inputs)?),
        "Swish" => {
            let x = x()?;
            let ax = binary(b, &format!("{base}.ax"), BinaryOp::Mul, x, &scalar(Elem::FLOAT, ctx.float("alpha", 1.0) as f64))?;
            let gate = unary_named(b, &format!("{base}.gate"), &ax, UnaryOp::Sigmoid)?;
            one(binary(b, &base, BinaryOp::Mul, x, &gate)?)
        }
        "EyeLike" => {
            let x = x()?;
            let shape = const_shape(b, x)?;
            let [n, m] = shape[..] else { return Err("needs a 2-D input".into()) };
            let e = match ctx.int("dtype", 0) {
                0 => elem(x),
                t => Elem(t as i32),
            };
            e.dtype()?;
            let k = ctx.int("k", 0);
            let on = |i: u64| (i % m) as i64 - (i / m) as i64 == k;
            let values = if e.is_float() {
                Values::F32((0..n * m).map(|i| if on(i) { 1.0 } else { 0.0 }).collect())
            } else {
                Values::Int((0..n * m).map(|i| Dim::from(u64::from(on(i)))).collect())
            };
            one(Value::Known(Known::new(e, vec![n as usize, m as usize], values)))
        }
        "GroupNormalization" => one(group_norm(b, ctx, inputs)?),
        "AffineGrid" => {
            // The normalised coordinates (x, y[, z], 1) of every output position times θᵀ.
            let theta = x()?;
            let size = known_input(ctx.node, inputs, 1, "the size")?.const_ints()?;
            let spatial: Vec<usize> = size.get(2..).ok_or("size needs N, C and 2 or 3 spatial lengths")?.iter().map(|&v| v as usize).collect();
            if !(2..=3).contains(&spatial.len()) {
                return Err("size needs N, C and 2 or 3 spatial lengths".into());
            }
            let align = ctx.int("align_corners", 0) != 0;
            let coord = |i: usize, n: usize| -> f64 {
                if align { if n == 1 { -1.0 } else { -1.0 + 2.0 * i as f64 / (n - 1) as f64 } } else { -1.0 + (2 * i + 1) as f64 / n as f64 }
            };
            let points: usize = spatial.iter().product();
            let mut base_grid = Vec::with_capacity(points * (spatial.len() + 1));
            for p in 0..points {
                let at = unravel(p, &spatial);
                for a in (0..spatial.len()).rev() {
                    base_grid.push(coord(at[a], spatial[a]) as f32);
                }
                base_grid.push(1.0);
            }
            let base_grid = Value::Known(Known::new(Elem::FLOAT, vec![1, points, spatial.len() + 1], Values::F32(base_grid)));
            let grid = matmul(b, &format!("{base}.grid"), &base_grid, theta, false, true)?;
            let mut shape = vec![Dim::from(size[0] as u64)];
            shape.extend(spatial.iter().map(|&d| Dim::from(d as u64)));
            shape.push(Dim::from(spatial.len() as u64));
            one(reshape(b, &base, &grid, shape)?)
        }
        "BitCast" => {
            let x = x()?;
            let to = Elem(ctx.int("to", 0) as i32);
            let dtype = match (elem(x).0, to.0) {
                (1, 6) => DType::I32,
                (6, 1) => DType::F32,
                (from, _) if from == to.0 => return one(x.clone()),
                (2..=6 | 9 | 12, 2..=6 | 9 | 12) if elem(x).bits() == to.bits() => {
                    // Integers of one width: the same bits read as the other type.
                    return one(if to.bits() < Some(32) { wrap(b, &base, x, to)? } else { cast(b, &base, x, to)? });
                }
                _ => return Err(format!("bit casts between {} and {} are not supported (float and int32 only)", elem(x).name(), to.name())),
            };
            let id = b.node(x, &format!("{base}.x"))?;
            one(Value::Node { id: b.add(&base, Op::Bitcast { to: dtype }, &[id])?, elem: to })
        }
        "GridSample" => {
            let (x, grid) = (x()?, input(inputs, 1)?);
            let mode = match ctx.string("mode").as_deref().unwrap_or("linear") {
                "nearest" => SampleMode::Nearest,
                "linear" | "bilinear" => SampleMode::Linear,
                "cubic" | "bicubic" => SampleMode::Cubic,
                other => return Err(format!("mode {other:?} is not supported")),
            };
            let padding = match ctx.string("padding_mode").as_deref().unwrap_or("zeros") {
                "zeros" => SamplePadding::Zeros,
                "border" => SamplePadding::Border,
                "reflection" => SamplePadding::Reflection,
                other => return Err(format!("padding_mode {other:?} is not supported")),
            };
            let (a, g) = (b.node(x, &format!("{base}.x"))?, b.node(grid, &format!("{base}.grid"))?);
            let op = Op::GridSample { mode, padding, align_corners: ctx.int("align_corners", 0) != 0 };
            one(Value::Node { id: b.add(&base, op, &[a, g])?, elem: elem(x) })
        }
        "Hardmax" => {
            let x = x()?;
            if ctx.opset < 13 {
                return one(on_matrix(b, ctx, x, |b, m| hardmax_along(b, &format!("{base}.rows"), m, 1))?);
            }
            let axis = normalize_axis(ctx.int("axis", -1), b.shape(x).len())?;
            one(hardmax_along(b, &base, x, axis)?)
        }
        "CenterCropPad" => {
            let x = x()?;
            let shape = const_shape(b, x)?;
            let target = known_input(ctx.node, inputs, 1, "the shape")?.const_ints()?;
            let axes: Vec<usize> = match ctx.ints("axes") {
                Some(a) => a.iter().map(|&a| normalize_axis(a, shape.len())).collect::<Result<_, _>>()?,
                None => (0..shape.len()).collect(),
            };
            let mut v = x.clone();
            let mut pads = vec![(0usize, 0usize); shape.len()];
            for (&axis, &want) in axes.iter().zip(&target) {
                let (have, want) = (shape[axis] as i64, want);
                if want < have {
                    let start = (have - want) / 2;
                    v = slice(b, &format!("{base}.crop{axis}"), &v, axis, &int_dim(start), &int_dim(start + want), 1)?;
                } else if want > have {
                    let before = ((want - have) / 2) as usize;
                    pads[axis] = (before, (want - have) as usize - before);
                }
            }
            if pads.iter().any(|&p| p != (0, 0)) {
                let id = b.node(&v, &format!("{base}.cropped"))?;
                v = Value::Node { id: b.add(&base, Op::Pad { pads, mode: PadMode::Constant(0.0) }, &[id])?, elem: elem(x) };
            }
            one(v)
        }
        "QLinearMatMul" => {
            let q = |i: usize| input(inputs, i);
            let rank = b.shape(q(0)?).len();
            // a's zero point and scale are per tensor or per row, b's per tensor or per column.
            let a = centred(b, &format!("{base}.a"), q(0)?, Some(q(2)?), rank - 2)?;
            let c = centred(b, &format!("{base}.b"), q(3)?, Some(q(5)?), rank - 1)?;
            // Integer products summed in f32 (exact below 2^24), rescaled and requantized.
            let product = matmul(b, &format!("{base}.product"), &a, &c, false, false)?;
            let a_scale = along(b, &format!("{base}.a_scale"), q(1)?, rank - 2, rank)?;
            let scale = binary(b, &format!("{base}.scale"), BinaryOp::Mul, &a_scale, q(4)?)?;
            let scale = binary(b, &format!("{base}.rescale"), BinaryOp::Div, &scale, q(6)?)?;
            let y = binary(b, &format!("{base}.scaled"), BinaryOp::Mul, &product, &scale)?;
            one(quantize_values(b, &base, &y, &scalar(Elem::FLOAT, 1.0), Some(q(7)?), elem(q(7)?), true)?)
        }
        "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => {
            let op = match op_type {
                "Equal" => CompareOp::Eq,
                "Less" => CompareOp::Lt,
                "LessOrEqual" => CompareOp::Le,
                "Greater" => CompareOp::Gt,
                _ => CompareOp::Ge,
            };
            one(compare(b, &base, op, x()?, input(inputs, 1)?)?)
        }
        "Not" => one(binary(b, &base, BinaryOp::Sub, &scalar(Elem::BOOL, 1.0), x()?)?),
        "And" => one(binary(b, &base, BinaryOp::Min, x()?, input(inputs, 1)?)?),
        "Or" => one(binary(b, &base, BinaryOp::Max, x()?, input(inputs, 1)?)?),
        "Xor" => one(compare(b, &base, CompareOp::Ne, x()?, input(inputs, 1)?)?),
        "IsNaN" | "IsInf" => {
            let x = x()?;
            let op = if op_type == "IsNaN" {
                Op::Classify { nan: true, pos_inf: false, neg_inf: false }
            } else {
                Op::Classify { nan: false, pos_inf: ctx.int("detect_positive", 1) != 0, neg_inf: ctx.int("detect_negative", 1) != 0 }
            };
            let id = b.node(x, &format!("{base}.x"))?;
            one(Value::Node { id: b.add(&base, op, &[id])?, elem: Elem::BOOL })
        }
        "Where" => one(where_(b, &base, x()?, input(inputs, 1)?, input(inputs, 2)?)?),
        "Softsign" => {
            let x = x()?;
            let a = unary(b, ctx, x, UnaryOp::Abs)?;
            let d = binary(b, &format!("{base}.den"), BinaryOp::Add, &a, &scalar(Elem::FLOAT, 1.0))?;
            one(binary(b, &base, BinaryOp::Div, x, &d)?)
        }
        "Elu" | "Selu" | "Celu" => {
            let x = x()?;
            let (alpha, gamma) = match op_type {
                "Selu" => (ctx.float("alpha", 1.673_263_2), ctx.float("gamma", 1.050_701)),
                _ => (ctx.float("alpha", 1.0), 1.0),
            };
            // alpha·(exp(x / a) − 1) below zero (a = alpha for Celu, else 1), x above.
            let inner = if op_type == "Celu" { binary(b, &format!("{base}.scaled"), BinaryOp::Div, x, &scalar(Elem::FLOAT, alpha as f64))? } else { x.clone() };
            let e = unary(b, ctx, &inner, UnaryOp::Exp)?;
            let e = binary(b, &format!("{base}.em1"), BinaryOp::Sub, &e, &scalar(Elem::FLOAT, 1.0))?;
            let neg = binary(b, &format!("{base}.neg"), BinaryOp::Mul, &e, &scalar(Elem::FLOAT, alpha as f64))?;
            let positive = compare(b, &format!("{base}.pos"), CompareOp::Gt, x, &scalar(Elem::FLOAT, 0.0))?;
            let y = where_(b, &format!("{base}.where"), &positive, x, &neg)?;
            one(if gamma != 1.0 { binary(b, &base, BinaryOp::Mul, &y, &scalar(Elem::FLOAT, gamma as f64))? } else { y })
        }
        "ThresholdedRelu" => {
            let x = x()?;
            let above = compare(b, &format!("{base}.above"), CompareOp::Gt, x, &scalar(Elem::FLOAT, ctx.float("alpha", 1.0) as f64))?;
            one(where_(b, &base, &above, x, &scalar(Elem::FLOAT, 0.0))?)
        }
        "PRelu" => {
            let (x, slope) = (x()?, input(inputs, 1)?);
            let scaled = binary(b, &format!("{base}.scaled"), BinaryOp::Mul, x, slope)?;
            let negative = compare(b, &format!("{base}.neg"), CompareOp::Lt, x, &scalar(elem(x), 0.0))?;
            one(where_(b, &base, &negative, &scaled, x)?)
        }
        "Mish" => {
            let x = x()?;
            let sp = unary(b, ctx, x, UnaryOp::Softplus)?;
            let t = unary(b, ctx, &sp, UnaryOp::Tanh)?;
            one(binary(b, &base, BinaryOp::Mul, x, &t)?)
        }
        "Shrink" => {
            let x = x()?;
            let (bias, lambd) = (ctx.float("bias", 0.0) as f64, ctx.float("lambd", 0.5) as f64);
            let e = elem(x);
            let low = compare(b, &format!("{base}.low"), CompareOp::Lt, x, &scalar(e, -lambd))?;
            let high = compare(b, &format!("{base}.high"), CompareOp::Gt, x, &scalar(e, lambd))?;
            let plus = binary(b, &format!("{base}.plus"), BinaryOp::Add, x, &scalar(e, bias))?;
            let minus = binary(b, &format!("{base}.minus"), BinaryOp::Sub, x, &scalar(e, bias))?;
            let upper = where_(b, &format!("{base}.upper"), &high, &minus, &scalar(e, 0.0))?;
            one(where_(b, &base, &low, &plus, &upper)?)
        }
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceLogSum"
        | "ReduceLogSumExp" | "ReduceSumSquare" => one(reduce(b, ctx, inputs)?),
        "ArgMax" | "ArgMin" => {
            let x = x()?;
            let shape = b.shape(x);
            let axis = normalize_axis(ctx.int("axis", 0), shape.len())?;
            let op = Op::ArgReduce { axis, largest: op_type == "ArgMax", last: ctx.int("select_last_index", 0) != 0 };
            let id = b.node(x, &format!("{base}.x"))?;
            let y = Value::Node { id: b.add(&format!("{base}.arg"), op, &[id])?, elem: Elem::INT64 };
            let mut out = shape.clone();
            if ctx.int("keepdims", 1) != 0 {
                out[axis] = Dim::from(1u64);
            } else {
                out.remove(axis);
            }
            one(reshape(b, &base, &y, out)?)
        }
        "GatherElements" => {
            let (data, indices) = (x()?, input(inputs, 1)?);
            let axis = normalize_axis(ctx.int("axis", 0), b.shape(data).len())?;
            let (d, i) = (b.node(data, &format!("{base}.data"))?, b.node(indices, &format!("{base}.indices"))?);
            one(Value::Node { id: b.add(&base, Op::GatherElements { axis }, &[d, i])?, elem: elem(data) })
        }
        "GatherND" => one(gather_nd(b, ctx, x()?, input(inputs, 1)?)?),
        "Pad" => one(pad(b, ctx, inputs)?),
        "CumSum" | "CumProd" => {
            let x = x()?;
            let axis = known_input(ctx.node, inputs, 1, "the axis")?.const_ints()?[0];
            let axis = normalize_axis(axis, b.shape(x).len())?;
            let running = if op_type == "CumSum" { BinaryOp::Add } else { BinaryOp::Mul };
            let op = Op::Cumulative { op: running, axis, exclusive: ctx.int("exclusive", 0) != 0, reverse: ctx.int("reverse", 0) != 0 };
            let id = b.node(x, &format!("{base}.x"))?;
            one(Value::Node { id: b.add(&base, op, &[id])?, elem: elem(x) })
        }
        "Trilu" => {
            let x = x()?;
            let shape = b.shape(x);
            let (n, m) = match (shape[shape.len() - 2].as_const(), shape[shape.len() - 1].as_const()) {
                (Some(n), Some(m)) => (n as i64, m as i64),
                _ => return Err("Trilu of a matrix with symbolic dimensions is not supported; fix them with --dim".into()),
            };
            let k = match inputs.get(1).and_then(Option::as_ref) {
                Some(_) => known_input(ctx.node, inputs, 1, "k")?.const_ints()?[0],
                None => 0,
            };
            let upper = ctx.int("upper", 1) != 0;
            let keep: Vec<Dim> = (0..n * m).map(|i| Dim::from(u64::from(if upper { i % m - i / m >= k } else { i % m - i / m <= k }))).collect();
            let mask = Value::Known(Known::new(Elem::BOOL, vec![n as usize, m as usize], Values::Int(keep)));
            one(where_(b, &base, &mask, x, &scalar(elem(x), 0.0))?)
        }
        "Conv" => one(conv(b, ctx, inputs)?),
        "MaxPool" | "AveragePool" | "LpPool" => pool(b, ctx, x()?),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let x = x()?;
            let axes: Vec<usize> = (2..b.shape(x).len()).collect();
            let kind = match op_type {
                "GlobalAveragePool" => ReduceKind::Mean,
                "GlobalMaxPool" => ReduceKind::Max,
                _ if ctx.int("p", 2) == 2 => ReduceKind::L2,
                _ if ctx.int("p", 2) == 1 => ReduceKind::L1,
                _ => return Err("GlobalLpPool with p other than 1 or 2 is not supported".into()),
            };
            let id = b.node(x, &format!("{base}.x"))?;
            one(Value::Node { id: b.add(&base, Op::Reduce { kind, axes, keep_dims: true }, &[id])?, elem: elem(x) })
        }
        "BatchNormalization" | "InstanceNormalization" => channel_norm(b, ctx, inputs),
        "LpNormalization" => {
            let x = x()?;
            let axis = normalize_axis(ctx.int("axis", -1), b.shape(x).len())?;
            let kind = match ctx.int("p", 2) {
                1 => ReduceKind::L1,
                2 => ReduceKind::L2,
                p => return Err(format!("p = {p} is not supported (1 or 2)")),
            };
            let id = b.node(x, &format!("{base}.x"))?;
            let norm = Value::Node { id: b.add(&format!("{base}.norm"), Op::Reduce { kind, axes: vec![axis], keep_dims: true }, &[id])?, elem: elem(x) };
            // A zero vector stays zero (its norm is taken as 1).
            let zero = compare(b, &format!("{base}.zero"), CompareOp::Eq, &norm, &scalar(Elem::FLOAT, 0.0))?;
            let norm = where_(b, &format!("{base}.safe"), &zero, &scalar(Elem::FLOAT, 1.0), &norm)?;
            one(binary(b, &base, BinaryOp::Div, x, &norm)?)
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let x = x()?;
            let shape: Vec<u64> = b.shape(x).iter().map(|d| d.as_const().ok_or("symbolic dimensions; fix them with --dim")).collect::<Result<_, _>>()?;
            let [n, c, h, w] = shape[..] else { return Err("needs a 4-D input".into()) };
            let bs = ctx.int("blocksize", 1) as u64;
            let dims = |v: &[u64]| v.iter().map(|&d| Dim::from(d)).collect::<Vec<_>>();
            let (split, perm, out) = if op_type == "SpaceToDepth" {
                (dims(&[n, c, h / bs, bs, w / bs, bs]), vec![0, 3, 5, 1, 2, 4], dims(&[n, c * bs * bs, h / bs, w / bs]))
            } else if ctx.string("mode").as_deref() == Some("CRD") {
                (dims(&[n, c / (bs * bs), bs, bs, h, w]), vec![0, 1, 4, 2, 5, 3], dims(&[n, c / (bs * bs), h * bs, w * bs]))
            } else {
                (dims(&[n, bs, bs, c / (bs * bs), h, w]), vec![0, 3, 4, 1, 5, 2], dims(&[n, c / (bs * bs), h * bs, w * bs]))
            };
            let v = reshape(b, &format!("{base}.split"), x, split)?;
            let v = transpose(b, &format!("{base}.perm"), &v, &perm)?;
            one(reshape(b, &base, &v, out)?)
        }
        "Tile" => {
            let x = x()?;
            let repeats = known_input(ctx.node, inputs, 1, "repeats")?.const_ints()?;
            let mut shape = b.shape(x);
            if repeats.len() != shape.len() || repeats.iter().any(|&r| r < 0) {
                return Err(format!("repeats {repeats:?} for an input of rank {}", shape.len()));
            }
            // One axis at a time (so that kernels see at most one more axis): [… d …] → [… 1, d …] → [… r, d …] → [… r·d …].
            let mut v = x.clone();
            for (a, &r) in repeats.iter().enumerate().filter(|&(_, &r)| r != 1) {
                let r = Dim::from(r as u64);
                let mut split = shape.clone();
                split.insert(a, Dim::from(1u64));
                let mut expanded = shape.clone();
                expanded.insert(a, r.clone());
                v = reshape(b, &format!("{base}.split{a}"), &v, split)?;
                v = expand(b, &format!("{base}.expand{a}"), &v, &expanded)?;
                shape[a] = &shape[a] * &r;
                v = reshape(b, &format!("{base}.axis{a}"), &v, shape.clone())?;
            }
            one(v)
        }
        "QuantizeLinear" => one(quantize(b, ctx, inputs)?),
        "DynamicQuantizeLinear" => dynamic_quantize(b, ctx, x()?),
        "MatMulInteger" => {
            let (a, c) = (x()?, input(inputs, 1)?);
            let rank = b.shape(a).len().max(2);
            // a's zero point is per tensor or per row, b's per tensor or per column.
            let a = centred(b, &format!("{base}.a"), a, inputs.get(2).and_then(Option::as_ref), rank - 2)?;
            let c = centred(b, &format!("{base}.b"), c, inputs.get(3).and_then(Option::as_ref), rank - 1)?;
            // Integer products summed in f32: exact while the sums stay below 2^24.
            let y = matmul(b, &format!("{base}.f32"), &a, &c, false, false)?;
            one(cast(b, &base, &y, Elem(6))?)
        }
        "ConvInteger" => {
            let (x, w) = (x()?, input(inputs, 1)?);
            // x's zero point is per tensor, w's per tensor or per output channel.
            let x = centred(b, &format!("{base}.x"), x, inputs.get(2).and_then(Option::as_ref), 1)?;
            let w = centred(b, &format!("{base}.w"), w, inputs.get(3).and_then(Option::as_ref), 0)?;
            // Integer products summed in f32: exact while the sums stay below 2^24.
            let y = conv(b, ctx, &[Some(x), Some(w)])?;
            one(cast(b, &format!("{base}.int"), &y, Elem(6))?)
        }
        "QLinearConv" => {
            let q = |i: usize| input(inputs, i);
            let x = centred(b, &format!("{base}.x"), q(0)?, Some(q(2)?), 1)?;
            let w = centred(b, &format!("{base}.w"), q(3)?, Some(q(5)?), 0)?;
            let mut operands = vec![Some(x), Some(w)];
            if let Some(bias) = inputs.get(8).and_then(Option::as_ref) {
                operands.push(Some(cast(b, &format!("{base}.bias"), bias, Elem::FLOAT)?));
            }
            // The int32 accumulator (exact in f32 below 2^24), rescaled (w's scale per output channel) and requantized.
            let acc = conv(b, ctx, &operands)?;
            let rank = b.shape(&acc).len();
            let w_scale = along(b, &format!("{base}.w_scale"), q(4)?, 1, rank)?;
            let scale = binary(b, &format!("{base}.scale"), BinaryOp::Mul, q(1)?, &w_scale)?;
            let scale = binary(b, &format!("{base}.rescale"), BinaryOp::Div, &scale, q(6)?)?;
            let y = binary(b, &format!("{base}.scaled"), BinaryOp::Mul, &acc, &scale)?;
            one(quantize_values(b, &format!("{base}.q"), &y, &scalar(Elem::FLOAT, 1.0), Some(q(7)?), elem(q(7)?), true)?)
        }
        "OneHot" => one(one_hot(b, ctx, inputs)?),
        "Einsum" => one(einsum::einsum(b, ctx, inputs)?),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => one(spectral::window(ctx, inputs)?),
        "DFT" => one(spectral::dft(b, ctx, inputs)?),
        "STFT" => one(spectral::stft(b, ctx, inputs)?),
        "MelWeightMatrix" => one(spectral::mel_weight_matrix(ctx, inputs)?),
        "ReverseSequence" => one(reverse_sequence(b, ctx, x()?, input(inputs, 1)?)?),
        "MeanVarianceNormalization" => {
            // (x − mean) / (√variance + 1e-9) over `axes`.
            let x = x()?;
            let rank = b.shape(x).len();
            let mut axes: Vec<usize> = ctx.ints("axes").unwrap_or(vec![0, 2, 3]).iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_, _>>()?;
            axes.sort();
            axes.dedup();
            let mean = |b: &mut Builder, v: &Value, name: &str| -> Result<Value, String> {
                let id = b.node(v, &format!("{base}.{name}_in"))?;
                Ok(Value::Node { id: b.add(&format!("{base}.{name}"), Op::Reduce { kind: ReduceKind::Mean, axes: axes.clone(), keep_dims: true }, &[id])?, elem: Elem::FLOAT })
            };
            let m = mean(b, x, "mean")?;
            let centred = binary(b, &format!("{base}.centred"), BinaryOp::Sub, x, &m)?;
            let squares = binary(b, &format!("{base}.squares"), BinaryOp::Mul, &centred, &centred)?;
            let variance = mean(b, &squares, "variance")?;
            let std = unary_named(b, &format!("{base}.std"), &variance, UnaryOp::Sqrt)?;
            let den = binary(b, &format!("{base}.den"), BinaryOp::Add, &std, &scalar(Elem::FLOAT, 1e-9))?;
            one(binary(b, &base, BinaryOp::Div, &centred, &den)?)
        }
        "LRN" => one(lrn(b, ctx, x()?)?),
        "Det" => one(det(b, ctx, x()?)?),
        "CausalConvWithState" => causal_conv(b, ctx, inputs),
        "Col2Im" => one(col2im(b, ctx, inputs)?),
        "Compress" => {
            let x = x()?;
            let condition = known_input(ctx.node, inputs, 1, "the condition")?.const_ints()?;
            let (v, axis) = match ctx.attr("axis") {
                Some(a) => (x.clone(), normalize_axis(a.i, b.shape(x).len())?),
                None => (reshape(b, &format!("{base}.flat"), x, vec![tfc_ir::dim::product(&b.shape(x))])?, 0),
            };
            let kept: Vec<Dim> = condition.iter().enumerate().filter(|&(_, &c)| c != 0).map(|(i, _)| Dim::from(i as u64)).collect();
            let indices = Known::new(Elem::INT64, vec![kept.len()], Values::Int(kept));
            one(gather(b, &base, &v, &Value::Known(indices), axis)?)
        }
        "MaxUnpool" => one(max_unpool(b, ctx, inputs)?),
        "TensorScatter" => one(tensor_scatter(b, ctx, inputs)?),
        "LinearAttention" => linear_attention(b, ctx, inputs),
        "RNN" | "GRU" | "LSTM" => recurrent::recurrent(b, ctx, inputs),
        "If" => control::if_(b, ctx, inputs),
        "Loop" => control::loop_(b, ctx, inputs),
        "Scan" => control::scan(b, ctx, inputs),
        "TfIdfVectorizer" => one(tfidf::tfidf(b, ctx, x()?)?),
        "DeformConv" => one(deform_conv(b, ctx, inputs)?),
        "RoiAlign" => one(roi_align(b, ctx, inputs)?),
        other => Err(format!("no lowering for {other} (internal error: listed as supported)")),
    }
}

fn constant(ctx: &mut Ctx) -> Result<Value, String> {
    let node = ctx.node;
    let a = node.attribute.first().ok_or("has no value attribute")?;
    let known = match a.name.as_str() {
        "value" => load_tensor(ctx, a.t.as_ref().ok_or("`value` holds no tensor")?)?,
        "value_float" => Known::new(Elem::FLOAT, vec![], Values::F32(vec![a.f])),
        "value_floats" => Known::new(Elem::FLOAT, vec![a.floats.len()], Values::F32(a.floats.clone())),
        "value_int" => Known::new(Elem::INT64, vec![], Values::Int(vec![int_dim(a.i)])),
        "value_ints" => Known::new(Elem::INT64, vec![a.ints.len()], Values::Int(a.ints.iter().map(|&x| int_dim(x)).collect())),
        other => return Err(format!("constant attribute `{other}` is not supported (strings and sparse tensors are not)")),
    };
    Ok(Value::Known(known))
}

fn load_tensor(ctx: &mut Ctx, t: &super::proto::TensorProto) -> Result<Rc<Known>, String> {
    Ok(Rc::new(Known::from_loaded(super::tensor::load(t, ctx.env.model, ctx.env.external)?)))
}

/// What Cast's `saturate` and `round_mode` ask of a cast to a float8 type (see `Op::RoundTo`).
#[derive(Clone, Copy)]
struct Narrowing {
    saturate: bool,
    e8m0: ScaleRounding,
}

/// ONNX's defaults: saturate, and round float8e8m0 up.
const NARROWING: Narrowing = Narrowing { saturate: true, e8m0: ScaleRounding::Up };

impl Narrowing {
    fn of(ctx: &Ctx) -> Result<Narrowing, String> {
        let e8m0 = match ctx.string("round_mode").as_deref().unwrap_or("up") {
            "up" => ScaleRounding::Up,
            "down" => ScaleRounding::Down,
            "nearest" => ScaleRounding::Nearest,
            other => return Err(format!("round_mode {other:?} is not one of up, down, nearest")),
        };
        Ok(Narrowing { saturate: ctx.int("saturate", 1) != 0, e8m0 })
    }
}

fn cast(b: &mut Builder, base: &str, x: &Value, to: Elem) -> Result<Value, String> {
    cast_narrowing(b, base, x, to, NARROWING)
}

/// A cast to `to`: floats round to it (f16, bf16, float8, float4), integers wrap to its range (floats truncated
/// first), as ONNX's Cast.
fn cast_narrowing(b: &mut Builder, base: &str, x: &Value, to: Elem, narrowing: Narrowing) -> Result<Value, String> {
    to.dtype()?;
    let from = elem(x);
    if let Value::Known(k) = x {
        if let KnownData::Scaled { q, scale } = &k.data
            && to.is_float()
            && to.narrow_float(narrowing.e8m0).is_none()
            && k.numel() >= QUANTIZED_MIN_NUMEL
        {
            // int8 weights: keep the integers for MatMul/Gather (see KnownData::Scaled).
            return Ok(Value::Known(Rc::new(Known { elem: to, shape: k.shape.clone(), data: KnownData::Scaled { q: q.clone(), scale: scale.clone() } })));
        }
        if !to.is_float() && !from.is_float() {
            let values = k.ints()?.into_iter().map(|d| wrap_dim(to, d)).collect();
            return Ok(Value::Known(Known::new(to, k.shape.clone(), Values::Int(values))));
        }
    }
    if to.0 == Elem::BOOL.0 {
        return compare(b, base, CompareOp::Ne, x, &scalar(from, 0.0));
    }
    if let Some(format) = to.narrow_float(narrowing.e8m0) {
        let f = if from.is_float() { x.clone() } else { cast(b, &format!("{base}.f32"), x, Elem::FLOAT)? };
        let id = b.node(&f, &format!("{base}.x"))?;
        return Ok(Value::Node { id: b.add(base, Op::RoundTo { format, saturate: narrowing.saturate }, &[id])?, elem: to });
    }
    let id = b.node(x, &format!("{base}.x"))?;
    if to.is_float() {
        // A Cast to f16/bf16 rounds; the value stays f32 (tfc's activations are f32).
        let id = match to.0 {
            10 | 16 => {
                let rounded = b.add(base, Op::Cast { to: if to.0 == 10 { DType::F16 } else { DType::BF16 } }, &[id])?;
                b.add(&format!("{base}.f32"), Op::Cast { to: DType::F32 }, &[rounded])?
            }
            _ => b.add(base, Op::Cast { to: DType::F32 }, &[id])?,
        };
        return Ok(Value::Node { id, elem: to });
    }
    // Integer types are all i32 in tfc: a float is truncated, and a value that may not fit `to` wrapped into it.
    let fits = matches!((from.int_range(), to.int_range()), (Some((lo, hi)), Some((to_lo, to_hi))) if to_lo <= lo && hi <= to_hi);
    let wraps = !fits && to.bits() < Some(32);
    let id = match (from.is_float(), wraps) {
        (true, true) => b.add(&format!("{base}.i32"), Op::Cast { to: DType::I32 }, &[id])?,
        (true, false) => b.add(base, Op::Cast { to: DType::I32 }, &[id])?,
        (false, _) => id,
    };
    let v = Value::Node { id, elem: to };
    if wraps { wrap(b, base, &v, to) } else { Ok(v) }
}

/// An integer wrapped into the range of `to` (narrower than 32 bits) as a C cast does: its low bits, read as signed
/// or unsigned.
fn wrap(b: &mut Builder, base: &str, x: &Value, to: Elem) -> Result<Value, String> {
    let bits = to.bits().ok_or_else(|| format!("{} is not an integer type", to.name()))?;
    let masked = binary(b, &format!("{base}.mask"), BinaryOp::BitAnd, x, &scalar(elem(x), ((1u64 << bits) - 1) as f64))?;
    if to.int_range().is_some_and(|(lo, _)| lo == 0) {
        return Ok(Value::Node { id: b.node(&masked, base)?, elem: to });
    }
    let sign = scalar(elem(x), (1u64 << (bits - 1)) as f64);
    let flipped = binary(b, &format!("{base}.flip"), BinaryOp::BitXor, &masked, &sign)?;
    let v = binary(b, base, BinaryOp::Sub, &flipped, &sign)?;
    Ok(Value::Node { id: b.node(&v, base)?, elem: to })
}

/// A per-tensor value as it is, or a 1-D one (more than one element) reshaped to lie along `axis` of a tensor of
/// rank `rank` (a per-row or per-channel zero point or scale).
fn along(b: &mut Builder, base: &str, v: &Value, axis: usize, rank: usize) -> Result<Value, String> {
    let shape = b.shape(v);
    if shape.len() != 1 || shape[0] == Dim::from(1u64) {
        return Ok(v.clone());
    }
    let mut target = vec![Dim::from(1u64); rank];
    target[axis] = shape[0].clone();
    reshape(b, base, v, target)
}

/// Quantized integers minus their zero point (per tensor, or per slice of `axis`), in f32.
fn centred(b: &mut Builder, base: &str, v: &Value, zero_point: Option<&Value>, axis: usize) -> Result<Value, String> {
    let f = cast(b, base, v, Elem::FLOAT)?;
    let Some(z) = zero_point else { return Ok(f) };
    let z = cast(b, &format!("{base}_zp"), z, Elem::FLOAT)?;
    let z = along(b, &format!("{base}_zp_axis"), &z, axis, b.shape(&f).len())?;
    binary(b, &format!("{base}_centred"), BinaryOp::Sub, &f, &z)
}

/// Constants this large that are int8 (or dequantized int8) are treated as quantized weights.
const QUANTIZED_MIN_NUMEL: usize = 1024;

/// `Scaled · scale` for a known per-tensor, per-row or per-column scale: the product stays `Scaled`.
fn scale_quantized(x: &Value, y: &Value) -> Result<Option<Value>, String> {
    let (Some(kx), Some(ky)) = (known_of(x), known_of(y)) else { return Ok(None) };
    let (scaled, factor) = match (&kx.data, &ky.data) {
        (KnownData::Scaled { .. }, _) => (kx, ky),
        (_, KnownData::Scaled { .. }) => (ky, kx),
        _ => return Ok(None),
    };
    let KnownData::Scaled { q, scale } = &scaled.data else { unreachable!() };
    if !factor.elem.is_float() || tfc_ir::interp::broadcast_shape(&scaled.shape, &factor.shape).ok().as_ref() != Some(&scaled.shape) {
        return Ok(None);
    }
    let s = scale.f32s()?;
    if s.iter().any(|&v| v != 1.0) {
        return Ok(None);
    }
    Ok(Some(Value::Known(Rc::new(Known {
        elem: factor.elem,
        shape: scaled.shape.clone(),
        data: KnownData::Scaled { q: q.clone(), scale: factor.clone() },
    }))))
}

fn dequantize(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let (x, scale) = (input(inputs, 0)?, input(inputs, 1)?);
    let x_shape = b.shape(x);
    let out = match ctx.int("output_dtype", 0) {
        0 => elem(scale),
        t => Elem(t as i32),
    };
    let scale = quant_param(b, ctx, scale, &x_shape, "scale")?;
    let zero_point = inputs.get(2).and_then(Option::as_ref).map(|z| quant_param(b, ctx, z, &x_shape, "zp")).transpose()?;
    if let (Value::Known(kx), Some(Value::Known(ks))) = (x, known_of(&scale).map(|k| Value::Known(k.clone())))
        && matches!(kx.elem.0, 2 | 3)
        && kx.numel() >= QUANTIZED_MIN_NUMEL
    {
        let zp: Vec<i64> = match &zero_point {
            Some(Value::Known(z)) => z.const_ints()?,
            Some(_) => return Err("the zero point must be a constant".into()),
            None => vec![0],
        };
        let zshape = zero_point.as_ref().map_or(vec![], |z| known_of(z).map_or(vec![], |k| k.shape.clone()));
        let zi = broadcast_index(&zshape, &kx.shape)?;
        let raw: Vec<i64> = match &kx.data {
            KnownData::Scaled { q, .. } => q.iter().map(|&v| v as i64).collect(),
            _ => kx.const_ints()?,
        };
        let q: Option<Vec<i8>> = raw.iter().zip(zi).map(|(&v, i)| i8::try_from(v - zp[i]).ok()).collect();
        if let Some(q) = q {
            return Ok(Value::Known(Rc::new(Known { elem: ks.elem, shape: kx.shape.clone(), data: KnownData::Scaled { q: Rc::new(q), scale: ks } })));
        }
    }
    let mut v = cast(b, &format!("{base}.float"), x, Elem::FLOAT)?;
    if let Some(z) = zero_point {
        let z = cast(b, &format!("{base}.zp"), &z, Elem::FLOAT)?;
        v = binary(b, &format!("{base}.sub"), BinaryOp::Sub, &v, &z)?;
    }
    if matches!(out.0, 10 | 16) {
        let y = binary(b, &format!("{base}.mul"), BinaryOp::Mul, &v, &scale)?;
        return cast(b, &base, &y, out);
    }
    binary(b, &base, BinaryOp::Mul, &v, &scale)
}

/// A scale or zero point of QuantizeLinear/DequantizeLinear, made to broadcast against x: one element as a scalar,
/// a vector along `axis` (per axis), or with `block_size` B, a tensor of x's shape but ⌈len / B⌉ along `axis`, each
/// of whose elements is repeated B times there (blocked).
fn quant_param(b: &mut Builder, ctx: &Ctx, v: &Value, x_shape: &[Dim], name: &str) -> Result<Value, String> {
    let base = format!("{}.{name}", ctx.base());
    let (shape, rank) = (b.shape(v), x_shape.len());
    if shape.iter().all(|d| *d == Dim::from(1u64)) {
        return reshape(b, &base, v, vec![]);
    }
    let block = ctx.int("block_size", 0);
    if block <= 0 {
        if block < 0 {
            return Err(format!("block_size {block} must be positive"));
        }
        if shape.len() != 1 || rank == 0 {
            return Ok(v.clone());
        }
        let axis = normalize_axis(ctx.int("axis", 1), rank)?;
        let target: Vec<Dim> = (0..rank).map(|i| if i == axis { shape[0].clone() } else { Dim::from(1u64) }).collect();
        return reshape(b, &base, v, target);
    }
    let axis = normalize_axis(ctx.int("axis", 1), rank)?;
    let (block, len, blocks) = (block as u64, x_shape[axis].as_const(), shape.get(axis).and_then(Dim::as_const));
    let fits = shape.len() == rank
        && (0..rank).all(|a| a == axis || shape[a] == x_shape[a])
        && matches!((len, blocks), (Some(len), Some(blocks)) if blocks > 0 && blocks * block >= len && (blocks - 1) * block < len);
    if !fits {
        return Err(format!("the {name} {shape:?} does not fit blocks of {block} along axis {axis} of x {x_shape:?}"));
    }
    // [.., S, ..] → [.., S, 1, ..] → [.., S, B, ..] → [.., S·B, ..] → its first len along the axis.
    let (len, blocks) = (len.unwrap_or(0), blocks.unwrap_or(0));
    let mut split = shape.clone();
    split.insert(axis + 1, Dim::from(1u64));
    let v = reshape(b, &format!("{base}.split"), v, split.clone())?;
    split[axis + 1] = Dim::from(block);
    let v = expand(b, &format!("{base}.repeat"), &v, &split)?;
    let mut joined = shape.clone();
    joined[axis] = Dim::from(blocks * block);
    let v = reshape(b, &format!("{base}.join"), &v, joined)?;
    slice(b, &base, &v, axis, &Dim::from(0u64), &Dim::from(len), 1)
}

fn normalization(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let base = ctx.base();
    let x = input(inputs, 0)?;
    let shape = b.shape(x);
    let axis = normalize_axis(ctx.int("axis", -1), shape.len())?;
    let eps = ctx.float("epsilon", 1e-5);
    // Normalised over axes axis.., which become one axis for the IR op.
    let d = tfc_ir::dim::product(&shape[axis..]);
    let mut flat_shape = shape[..axis].to_vec();
    flat_shape.push(d.clone());
    let flat = reshape(b, &format!("{base}.flat"), x, flat_shape)?;
    let mut operands = vec![b.node(&flat, &base)?];
    for (i, p) in inputs.iter().enumerate().skip(1).take(2) {
        let Some(p) = p else { continue };
        let p = expand(b, &format!("{base}.p{i}"), p, &shape[axis..])?;
        let p = reshape(b, &format!("{base}.p{i}.flat"), &p, vec![d.clone()])?;
        operands.push(b.node(&p, &format!("{base}.p{i}"))?);
    }
    let op = if ctx.node.op_type == "RMSNormalization" { Op::RmsNorm { eps } } else { Op::LayerNorm { eps } };
    let y = Value::Node { id: b.add(&format!("{base}.norm"), op, &operands)?, elem: elem(x) };
    let mut outputs = vec![reshape(b, &base, &y, shape.clone())?];
    if ctx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        if ctx.node.op_type != "LayerNormalization" {
            return Err("only LayerNormalization has mean and inverse standard deviation outputs".into());
        }
        // Mean and 1/√(variance + ε) over the normalised axes, which are kept with length 1.
        let axes: Vec<usize> = (axis..shape.len()).collect();
        let id = b.node(x, &format!("{base}.x"))?;
        let mean = b.add(&format!("{base}.mean"), Op::Reduce { kind: ReduceKind::Mean, axes: axes.clone(), keep_dims: true }, &[id])?;
        let mean = Value::Node { id: mean, elem: Elem::FLOAT };
        let centred = binary(b, &format!("{base}.centred"), BinaryOp::Sub, x, &mean)?;
        let squares = binary(b, &format!("{base}.squares"), BinaryOp::Mul, &centred, &centred)?;
        let sq = b.node(&squares, &format!("{base}.sq"))?;
        let var = b.add(&format!("{base}.var"), Op::Reduce { kind: ReduceKind::Mean, axes, keep_dims: true }, &[sq])?;
        let var = binary(b, &format!("{base}.var_eps"), BinaryOp::Add, &Value::Node { id: var, elem: Elem::FLOAT }, &scalar(Elem::FLOAT, eps as f64))?;
        let inv = unary_named(b, &format!("{base}.inv_std"), &var, UnaryOp::Rsqrt)?;
        outputs.extend([mean, inv]);
    }
    Ok(outputs)
}

fn matmul(b: &mut Builder, base: &str, x: &Value, w: &Value, transpose_a: bool, transpose_b: bool) -> Result<Value, String> {
    let (xs, ws) = (b.shape(x), b.shape(w));
    // Rank-1 operands are made matrices and the added axis removed afterwards, as numpy does.
    let x2 = if xs.len() == 1 { reshape(b, &format!("{base}.row"), x, vec![Dim::from(1u64), xs[0].clone()])? } else { x.clone() };
    let w2 = if ws.len() == 1 { reshape(b, &format!("{base}.col"), w, vec![ws[0].clone(), Dim::from(1u64)])? } else { w.clone() };
    let a = b.node(&x2, &format!("{base}.a"))?;
    let y = match known_of(&w2).map(|k| (k, &k.data)) {
        Some((k, KnownData::Scaled { q, scale })) if k.elem.is_float() && k.shape.len() == 2 && !transpose_b && k.shape[0] % 32 == 0 && column_scale(scale, k.shape[1]) => {
            // x · (q · s) = (x · q) · s for a scale per column: q is stored as Q8_0 with block scale 1, exactly.
            let wq = b.graph.weight(q8_weight(&format!("{base}.weight_q"), q, k.shape[0], k.shape[1]));
            let y = b.add(&format!("{base}.q"), Op::MatMul { transpose_a, transpose_b: true }, &[a, wq])?;
            let s = b.node(&Value::Known(scale.clone()), &format!("{base}.scale"))?;
            b.add(base, Op::Binary(BinaryOp::Mul), &[y, s])?
        }
        _ => {
            let c = b.node(&w2, &format!("{base}.b"))?;
            b.add(base, Op::MatMul { transpose_a, transpose_b }, &[a, c])?
        }
    };
    let mut y = Value::Node { id: y, elem: Elem::FLOAT };
    if xs.len() == 1 || ws.len() == 1 {
        let mut shape = b.shape(&y);
        if ws.len() == 1 {
            shape.pop();
        }
        if xs.len() == 1 {
            shape.remove(shape.len() - if ws.len() == 1 { 1 } else { 2 });
        }
        y = reshape(b, &format!("{base}.squeeze"), &y, shape)?;
    }
    Ok(y)
}

/// Whether `scale` is one number or one per column of an `[K, N]` matrix.
fn column_scale(scale: &Known, n: usize) -> bool {
    scale.numel() == 1 || (scale.numel() == n && scale.shape.last() == Some(&n))
}

/// `q [K, N]` as a Q8_0 weight of shape `[N, K]` (rows of K, blocks of 32 along them) with every block scale 1.
fn q8_weight(name: &str, q: &[i8], k: usize, n: usize) -> Weight {
    let one = half::f16::from_f32(1.0).to_le_bytes();
    let mut bytes = Vec::with_capacity(n * k / 32 * 34);
    for col in 0..n {
        for block in 0..k / 32 {
            bytes.extend_from_slice(&one);
            bytes.extend((0..32).map(|i| q[(block * 32 + i) * n + col] as u8));
        }
    }
    Weight { name: name.to_string(), dtype: DType::Q8_0, shape: vec![n as u64, k as u64], data: WeightData::Owned(Arc::new(bytes)) }
}

fn reshape_target(shape: &[Dim], target: &[Dim], allow_zero: bool) -> Result<Vec<Dim>, String> {
    let mut out: Vec<Option<Dim>> = Vec::new();
    for (i, d) in target.iter().enumerate() {
        out.push(match dim_int(d) {
            Some(0) if !allow_zero => Some(shape.get(i).cloned().ok_or_else(|| format!("0 at axis {i} copies no input axis"))?),
            Some(-1) => None,
            Some(v) if v < 0 => return Err(format!("shape value {v} is not valid")),
            _ => Some(d.clone()),
        });
    }
    let unknown: Vec<usize> = out.iter().enumerate().filter(|(_, d)| d.is_none()).map(|(i, _)| i).collect();
    if unknown.len() > 1 {
        return Err("more than one -1 in the shape".into());
    }
    if let Some(&u) = unknown.first() {
        // The inferred axis: cancel the factors the input and the known output axes share, divide the rest.
        let mut rest: Vec<Dim> = shape.to_vec();
        let mut known: Vec<Dim> = Vec::new();
        for d in out.iter().flatten() {
            match rest.iter().position(|r| r == d) {
                Some(p) => {
                    rest.remove(p);
                }
                None => known.push(d.clone()),
            }
        }
        // What is left: the constant factors divide, the symbolic ones stay.
        let (constant, symbolic): (Vec<Dim>, Vec<Dim>) = rest.into_iter().partition(|d| d.as_const().is_some());
        let (num, den) = (tfc_ir::dim::product(&constant).as_const(), tfc_ir::dim::product(&known).as_const());
        let value = match (num, den) {
            (Some(n), Some(d)) if d > 0 && n % d == 0 => &Dim::from(n / d) * &tfc_ir::dim::product(&symbolic),
            _ => return Err(format!("cannot infer the -1 axis of {target:?} from {shape:?}; fix symbolic dimensions with --dim")),
        };
        out[u] = Some(value);
    }
    Ok(out.into_iter().flatten().collect())
}

fn reshape(b: &mut Builder, base: &str, x: &Value, shape: Vec<Dim>) -> Result<Value, String> {
    if b.shape(x) == shape {
        return Ok(x.clone());
    }
    if let Value::Known(k) = x {
        let dims: Vec<usize> = shape.iter().map(|d| d.as_const().map(|v| v as usize).ok_or("a symbolic shape")).collect::<Result<_, _>>()?;
        if dims.iter().product::<usize>() != k.numel() {
            return Err(format!("cannot reshape {:?} to {dims:?}", k.shape));
        }
        let data = match &k.data {
            KnownData::Values(v) => KnownData::Values(v.clone()),
            KnownData::Weight(w) => KnownData::Weight(Weight { shape: dims.iter().map(|&d| d as u64).collect(), ..w.clone() }),
            KnownData::Scaled { q, scale } if scale.numel() == 1 => KnownData::Scaled { q: q.clone(), scale: scale.clone() },
            KnownData::Scaled { .. } => KnownData::Values(k.values()?),
        };
        return Ok(Value::Known(Rc::new(Known { elem: k.elem, shape: dims, data })));
    }
    let id = b.node(x, base)?;
    Ok(Value::Node { id: b.add(base, Op::Reshape { shape }, &[id])?, elem: elem(x) })
}

fn transpose(b: &mut Builder, base: &str, x: &Value, perm: &[usize]) -> Result<Value, String> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
    }
    if let Value::Known(k) = x {
        let shape: Vec<usize> = perm.iter().map(|&p| k.shape[p]).collect();
        let strides = strides(&k.shape);
        let idx: Vec<usize> = (0..k.numel()).map(|i| unravel(i, &shape).iter().zip(perm).map(|(c, &p)| c * strides[p]).sum()).collect();
        return pick(k, shape, &idx);
    }
    let id = b.node(x, base)?;
    Ok(Value::Node { id: b.add(base, Op::Transpose { perm: perm.to_vec() }, &[id])?, elem: elem(x) })
}

fn concat(b: &mut Builder, base: &str, parts: &[&Value], axis: usize) -> Result<Value, String> {
    if parts.len() == 1 {
        return Ok(parts[0].clone());
    }
    let e = elem(parts[0]);
    if let Some(ks) = parts.iter().map(|p| known_of(p)).collect::<Option<Vec<_>>>() {
        let mut shape = ks[0].shape.clone();
        shape[axis] = ks.iter().map(|k| k.shape[axis]).sum();
        let outer: usize = shape[..axis].iter().product();
        let mut f = Vec::new();
        let mut ints = Vec::new();
        let values: Vec<Values> = ks.iter().map(|k| k.values()).collect::<Result<_, _>>()?;
        for o in 0..outer {
            for (k, v) in ks.iter().zip(&values) {
                let inner: usize = k.shape[axis..].iter().product();
                match v {
                    Values::F32(v) => f.extend_from_slice(&v[o * inner..(o + 1) * inner]),
                    Values::Int(v) => ints.extend_from_slice(&v[o * inner..(o + 1) * inner]),
                }
            }
        }
        let values = if e.is_float() { Values::F32(f) } else { Values::Int(ints) };
        return Ok(Value::Known(Known::new(e, shape, values)));
    }
    let ids: Vec<NodeId> = parts.iter().enumerate().map(|(i, p)| b.node(p, &format!("{base}.{i}"))).collect::<Result<_, _>>()?;
    Ok(Value::Node { id: b.add(base, Op::Concat { axis }, &ids)?, elem: e })
}

fn slice(b: &mut Builder, base: &str, x: &Value, axis: usize, start: &Dim, end: &Dim, step: i64) -> Result<Value, String> {
    let len = b.shape(x)[axis].clone();
    // Clamped as ONNX does: negative values count from the end, then into [0, len].
    let resolve = |v: &Dim, upper: bool| -> Result<Dim, String> {
        let Some(c) = dim_int(v) else { return Ok(v.clone()) };
        match len.as_const() {
            Some(l) => {
                let l = l as i64;
                let c = if c < 0 { c + l } else { c };
                let (lo, hi) = if step < 0 { (-1, l - 1) } else { (0, l) };
                Ok(int_dim(c.clamp(lo, hi)))
            }
            None if c < 0 => Ok(&len - &Dim::from(c.unsigned_abs())),
            None if upper && c >= i32::MAX as i64 => Ok(len.clone()),
            None => Ok(Dim::from(c as u64)),
        }
    };
    let (s, e) = (resolve(start, false)?, resolve(end, true)?);
    if step == 0 {
        return Err("a slice step of 0".into());
    }
    let positions: Option<Vec<usize>> = match (dim_int(&s), dim_int(&e)) {
        (Some(s), Some(e)) if step > 0 => Some((s..e.max(s)).step_by(step as usize).map(|p| p as usize).collect()),
        (Some(s), Some(e)) => Some(std::iter::successors(Some(s), |p| Some(p + step)).take_while(|&p| p > e).map(|p| p as usize).collect()),
        _ => None,
    };
    if let (Value::Known(k), Some(p)) = (x, &positions) {
        return select_along(k, axis, p);
    }
    if step < 0 {
        // Backwards: a Gather of the positions.
        let p = positions.ok_or("a negative slice step with symbolic bounds is not supported; fix them with --dim")?;
        let indices = Known::new(Elem::INT64, vec![p.len()], Values::Int(p.iter().map(|&i| Dim::from(i as u64)).collect()));
        return gather(b, base, x, &Value::Known(indices), axis);
    }
    if step != 1 {
        return strided_slice(b, base, x, axis, &s, &e, step);
    }
    if s == Dim::from(0u64) && e == len {
        return Ok(x.clone());
    }
    let e = match (dim_int(&s), dim_int(&e)) {
        (Some(a), Some(z)) if z < a => s.clone(),
        _ => e,
    };
    let id = b.node(x, base)?;
    Ok(Value::Node { id: b.add(base, Op::Slice { axis, start: s, end: e }, &[id])?, elem: elem(x) })
}

fn gather(b: &mut Builder, base: &str, data: &Value, indices: &Value, axis: usize) -> Result<Value, String> {
    let shape = b.shape(data);
    let len = shape[axis].as_const();
    // Negative indices count from the end; with a known axis length they are resolved here.
    let indices = match (known_of(indices), len) {
        (Some(k), Some(l)) => {
            let fixed = k.const_ints()?.into_iter().map(|i| int_dim(if i < 0 { i + l as i64 } else { i })).collect();
            Value::Known(Known::new(Elem::INT64, k.shape.clone(), Values::Int(fixed)))
        }
        (None, Some(l)) => {
            binary(b, &format!("{base}.wrapped"), BinaryOp::Mod, indices, &scalar(Elem::INT64, l as f64))?
        }
        _ => indices.clone(),
    };
    if let (Some(k), Some(ki)) = (known_of(data), known_of(&indices)) {
        let idx = ki.const_ints()?;
        let l = k.shape[axis] as i64;
        if let Some(bad) = idx.iter().find(|&&i| i < 0 || i >= l) {
            return Err(format!("index {bad} is out of range for an axis of length {l}"));
        }
        let positions: Vec<usize> = idx.iter().map(|&i| i as usize).collect();
        let picked = select_along(k, axis, &positions)?;
        let mut out_shape = k.shape[..axis].to_vec();
        out_shape.extend_from_slice(&ki.shape);
        out_shape.extend_from_slice(&k.shape[axis + 1..]);
        return reshape(b, base, &picked, out_shape.iter().map(|&d| Dim::from(d)).collect());
    }
    let index_rank = b.shape(&indices).len();
    let mut perm: Vec<usize> = (0..shape.len()).collect();
    perm.remove(axis);
    perm.insert(0, axis);
    let table = transpose(b, &format!("{base}.table"), data, &perm)?;
    let ids = b.node(&indices, &format!("{base}.indices"))?;
    let y = match known_of(&table).map(|k| (k, &k.data)) {
        Some((k, KnownData::Scaled { q, scale })) if k.elem.is_float() && k.shape.len() == 2 && k.shape[1] % 32 == 0 && row_scale(scale, k.shape[0]) => {
            // Rows of q · s: the rows of q (Q8_0, block scale 1) times the rows' scales.
            let (rows, cols) = (k.shape[0], k.shape[1]);
            let transposed: Vec<i8> = (0..rows * cols).map(|i| q[(i % rows) * cols + i / rows]).collect();
            let wq = b.graph.weight(q8_weight(&format!("{base}.table_q"), &transposed, cols, rows));
            let y = b.add(&format!("{base}.q"), Op::Gather, &[wq, ids])?;
            let s = reshape(b, &format!("{base}.scales"), &Value::Known(scale.clone()), vec![Dim::from(scale.numel() as u64), Dim::from(1u64)])?;
            let s = b.node(&s, &format!("{base}.scales"))?;
            let s = if scale.numel() == 1 { s } else { b.add(&format!("{base}.row_scale"), Op::Gather, &[s, ids])? };
            b.add(base, Op::Binary(BinaryOp::Mul), &[y, s])?
        }
        _ => {
            let t = b.node(&table, &format!("{base}.table"))?;
            b.add(base, Op::Gather, &[t, ids])?
        }
    };
    let y = Value::Node { id: y, elem: elem(data) };
    if axis == 0 {
        return Ok(y);
    }
    // [indices…, data axes before axis…, after…] → [before…, indices…, after…]
    let mut perm: Vec<usize> = (index_rank..index_rank + axis).collect();
    perm.extend(0..index_rank);
    perm.extend(index_rank + axis..index_rank + shape.len() - 1);
    transpose(b, &format!("{base}.out"), &y, &perm)
}

/// Whether `scale` is one number or one per row of a `[V, D]` table.
fn row_scale(scale: &Known, rows: usize) -> bool {
    scale.numel() == 1 || (scale.numel() == rows && scale.shape.first() == Some(&rows))
}

fn expand(b: &mut Builder, base: &str, x: &Value, shape: &[Dim]) -> Result<Value, String> {
    let from = b.shape(x);
    let full = tfc_ir::op::broadcast_shapes(&from, shape)?;
    if full == from {
        return Ok(x.clone());
    }
    if let (Value::Known(k), Some(dims)) = (x, full.iter().map(|d| d.as_const().map(|v| v as usize)).collect::<Option<Vec<usize>>>()) {
        let idx = broadcast_index(&k.shape, &dims)?;
        return pick(k, dims, &idx);
    }
    let id = b.node(x, &format!("{base}.x"))?;
    Ok(Value::Node { id: b.add(base, Op::Expand { shape: full }, &[id])?, elem: elem(x) })
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0usize; shape.len()];
    for a in (0..shape.len()).rev() {
        let d = shape[a].max(1);
        c[a] = i % d;
        i /= d;
    }
    c
}

/// For each element of `to`, the position of the element of a tensor of shape `from` broadcast onto it.
fn broadcast_index(from: &[usize], to: &[usize]) -> Result<Vec<usize>, String> {
    if tfc_ir::interp::broadcast_shape(from, to)? != to {
        return Err(format!("shape {from:?} does not broadcast to {to:?}"));
    }
    Ok(tfc_ir::interp::broadcast_offsets(from, to))
}

/// The elements at positions `idx` of a known tensor, as a tensor of `shape`.
fn pick(k: &Known, shape: Vec<usize>, idx: &[usize]) -> Result<Value, String> {
    let values = match k.values()? {
        Values::F32(v) => Values::F32(idx.iter().map(|&i| v[i]).collect()),
        Values::Int(v) => Values::Int(idx.iter().map(|&i| v[i].clone()).collect()),
    };
    Ok(Value::Known(Known::new(k.elem, shape, values)))
}

/// The entries `positions` of axis `axis`.
fn select_along(k: &Known, axis: usize, positions: &[usize]) -> Result<Value, String> {
    let mut shape = k.shape.clone();
    shape[axis] = positions.len();
    let st = strides(&k.shape);
    let idx: Vec<usize> = (0..shape.iter().product())
        .map(|i| {
            let c = unravel(i, &shape);
            c.iter().enumerate().map(|(a, &x)| if a == axis { positions[x] * st[a] } else { x * st[a] }).sum()
        })
        .collect();
    pick(k, shape, &idx)
}

fn compare(b: &mut Builder, base: &str, op: CompareOp, x: &Value, y: &Value) -> Result<Value, String> {
    let (a, c) = (b.node(x, &format!("{base}.a"))?, b.node(y, &format!("{base}.b"))?);
    Ok(Value::Node { id: b.add(base, Op::Compare(op), &[a, c])?, elem: Elem::BOOL })
}

fn where_(b: &mut Builder, base: &str, cond: &Value, x: &Value, y: &Value) -> Result<Value, String> {
    let c = b.node(cond, &format!("{base}.cond"))?;
    let (a, d) = (b.node(x, &format!("{base}.a"))?, b.node(y, &format!("{base}.b"))?);
    Ok(Value::Node { id: b.add(base, Op::Where, &[c, a, d])?, elem: elem(x) })
}

/// The axes of a Reduce*/… node: its `axes` input (opset 18; ReduceSum from 13) or attribute.
fn reduce_axes(ctx: &Ctx, inputs: &[Option<Value>], rank: usize) -> Result<Option<Vec<usize>>, String> {
    let axes = match inputs.get(1).and_then(Option::as_ref) {
        Some(_) => Some(known_input(ctx.node, inputs, 1, "the axes")?.const_ints()?),
        None => ctx.ints("axes"),
    };
    let axes: Vec<usize> = axes.unwrap_or_default().iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_, _>>()?;
    if axes.is_empty() {
        return Ok(if ctx.int("noop_with_empty_axes", 0) != 0 { None } else { Some((0..rank).collect()) });
    }
    let mut axes = axes;
    axes.sort();
    axes.dedup();
    Ok(Some(axes))
}

fn reduce(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let x = input(inputs, 0)?;
    let rank = b.shape(x).len();
    let Some(axes) = reduce_axes(ctx, inputs, rank)? else { return Ok(x.clone()) };
    let kind = match ctx.node.op_type.as_str() {
        "ReduceSum" => ReduceKind::Sum,
        "ReduceMean" => ReduceKind::Mean,
        "ReduceMax" => ReduceKind::Max,
        "ReduceMin" => ReduceKind::Min,
        "ReduceProd" => ReduceKind::Prod,
        "ReduceL1" => ReduceKind::L1,
        "ReduceL2" => ReduceKind::L2,
        "ReduceLogSum" => ReduceKind::LogSum,
        "ReduceLogSumExp" => ReduceKind::LogSumExp,
        _ => ReduceKind::SumSquare,
    };
    let e = elem(x);
    let xf = if e.is_float() { x.clone() } else { cast(b, &format!("{base}.float"), x, Elem::FLOAT)? };
    let id = b.node(&xf, &format!("{base}.x"))?;
    let keep_dims = ctx.int("keepdims", 1) != 0;
    let y = Value::Node { id: b.add(&base, Op::Reduce { kind, axes, keep_dims }, &[id])?, elem: Elem::FLOAT };
    if e.is_float() { Ok(y) } else { cast(b, &format!("{base}.int"), &y, e) }
}

/// GatherND as a Gather on the leading axes flattened into one: row = Σ index[j] · stride[j], plus, with batch_dims,
/// the batch entry's position times the rows of one entry.
fn gather_nd(b: &mut Builder, ctx: &Ctx, data: &Value, indices: &Value) -> Result<Value, String> {
    let base = ctx.base();
    let (shape, ishape) = (b.shape(data), b.shape(indices));
    let batch_dims = usize::try_from(ctx.int("batch_dims", 0)).map_err(|_| "a negative batch_dims")?;
    let k = ishape.last().and_then(Dim::as_const).ok_or("the last axis of the indices must have a constant length")? as usize;
    if k == 0 || batch_dims + k > shape.len() || batch_dims >= ishape.len() || shape[..batch_dims] != ishape[..batch_dims] {
        return Err(format!("indices {ishape:?} with batch_dims {batch_dims} do not fit data {shape:?}"));
    }
    let indexed = &shape[batch_dims..batch_dims + k];
    let mut row = None;
    for j in 0..k {
        let stride = tfc_ir::dim::product(&indexed[j + 1..]);
        let part = slice(b, &format!("{base}.i{j}"), indices, ishape.len() - 1, &Dim::from(j as u64), &Dim::from(j as u64 + 1), 1)?;
        // Negative indices count from the end.
        let len = Value::Known(Known::new(Elem::INT64, vec![], Values::Int(vec![indexed[j].clone()])));
        let part = binary(b, &format!("{base}.i{j}.wrapped"), BinaryOp::Mod, &part, &len)?;
        let stride = Value::Known(Known::new(Elem::INT64, vec![], Values::Int(vec![stride])));
        let term = binary(b, &format!("{base}.i{j}.scaled"), BinaryOp::Mul, &part, &stride)?;
        row = Some(match row {
            None => term,
            Some(r) => binary(b, &format!("{base}.i{j}.sum"), BinaryOp::Add, &r, &term)?,
        });
    }
    let mut row = reshape(b, &format!("{base}.rows"), &row.expect("k ≥ 1"), ishape[..ishape.len() - 1].to_vec())?;
    if batch_dims > 0 {
        let batches: Vec<usize> = ishape[..batch_dims].iter().map(|d| d.as_const().map(|v| v as usize).ok_or("symbolic batch axes")).collect::<Result<_, _>>()?;
        let per_entry = tfc_ir::dim::product(indexed);
        let mut along = batches.clone();
        along.extend(std::iter::repeat_n(1, ishape.len() - 1 - batch_dims));
        let first = Values::Int((0..batches.iter().product::<usize>()).map(|e| &Dim::from(e as u64) * &per_entry).collect());
        row = binary(b, &format!("{base}.batch_rows"), BinaryOp::Add, &row, &Value::Known(Known::new(Elem::INT64, along, first)))?;
    }
    let mut table_shape = vec![tfc_ir::dim::product(&shape[..batch_dims + k])];
    table_shape.extend_from_slice(&shape[batch_dims + k..]);
    let table = reshape(b, &format!("{base}.table"), data, table_shape)?;
    gather(b, &base, &table, &row, 0)
}

fn pad(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let x = input(inputs, 0)?;
    let rank = b.shape(x).len();
    // Before opset 11 the pads and the constant value are attributes.
    let pads = if ctx.opset < 11 { ctx.ints("pads").ok_or("has no `pads` attribute")? } else { known_input(ctx.node, inputs, 1, "the pads")?.const_ints()? };
    let axes: Vec<usize> = match inputs.get(3).and_then(Option::as_ref) {
        Some(_) => known_input(ctx.node, inputs, 3, "the axes")?.const_ints()?.iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    if pads.iter().any(|&p| p < 0) {
        return Err("negative pads (cropping) are not supported".into());
    }
    let mut all = vec![(0usize, 0usize); rank];
    for (i, &a) in axes.iter().enumerate() {
        all[a] = (pads[i] as usize, pads[axes.len() + i] as usize);
    }
    let value = match inputs.get(2).and_then(Option::as_ref) {
        _ if ctx.opset < 11 => ctx.float("value", 0.0),
        Some(_) => known_input(ctx.node, inputs, 2, "the constant value")?.f32s()?.first().copied().unwrap_or(0.0),
        None => 0.0,
    };
    let mode = match ctx.string("mode").as_deref().unwrap_or("constant") {
        "constant" => return pad_constant(b, &base, x, all, value),
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => return Err(format!("mode {other:?} is not supported")),
    };
    let id = b.node(x, &format!("{base}.x"))?;
    Ok(Value::Node { id: b.add(&base, Op::Pad { pads: all, mode }, &[id])?, elem: elem(x) })
}

/// `x` padded with `value`. Kernels take a finite fill; an infinite or NaN one is put in by a Where over a known mask
/// of the padding.
fn pad_constant(b: &mut Builder, base: &str, x: &Value, pads: Vec<(usize, usize)>, value: f32) -> Result<Value, String> {
    let id = b.node(x, &format!("{base}.x"))?;
    let fill = if value.is_finite() { value } else { 0.0 };
    let padded = Value::Node { id: b.add(base, Op::Pad { pads: pads.clone(), mode: PadMode::Constant(fill) }, &[id])?, elem: elem(x) };
    if value.is_finite() {
        return Ok(padded);
    }
    let shape = const_shape(b, x)?;
    let out: Vec<usize> = shape.iter().zip(&pads).map(|(&d, &(lo, hi))| d as usize + lo + hi).collect();
    let outside: Vec<Dim> = (0..out.iter().product())
        .map(|i| unravel(i, &out))
        .map(|at| Dim::from(u64::from(at.iter().zip(&pads).zip(&shape).any(|((&p, &(lo, _)), &d)| p < lo || p >= lo + d as usize))))
        .collect();
    let outside = Value::Known(Known::new(Elem::BOOL, out, Values::Int(outside)));
    where_(b, &format!("{base}.filled"), &outside, &scalar(elem(x), value as f64), &padded)
}

/// The window of a Conv or pool node over `spatial` axes of the given lengths and kernel.
fn window(ctx: &Ctx, input: &[u64], kernel: &[u64]) -> Result<Window, String> {
    let n = kernel.len();
    let or_ones = |name: &str| ctx.ints(name).filter(|v| !v.is_empty()).unwrap_or(vec![1; n]).iter().map(|&v| v as usize).collect::<Vec<_>>();
    let (strides, dilations) = (or_ones("strides"), or_ones("dilations"));
    let auto_pad = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let pads: Vec<(usize, usize)> = match auto_pad.as_str() {
        "NOTSET" => {
            let p = ctx.ints("pads").unwrap_or(vec![0; 2 * n]);
            (0..n).map(|i| (p[i] as usize, p[n + i] as usize)).collect()
        }
        "VALID" => vec![(0, 0); n],
        "SAME_UPPER" | "SAME_LOWER" => (0..n)
            .map(|i| {
                let out = input[i].div_ceil(strides[i] as u64);
                let span = (kernel[i] - 1) * dilations[i] as u64 + 1;
                let total = ((out - 1) * strides[i] as u64 + span).saturating_sub(input[i]) as usize;
                if auto_pad == "SAME_UPPER" { (total / 2, total - total / 2) } else { (total - total / 2, total / 2) }
            })
            .collect(),
        other => return Err(format!("auto_pad {other:?} is not supported")),
    };
    Ok(Window { strides, dilations, pads, ceil_mode: ctx.int("ceil_mode", 0) != 0 })
}

fn const_shape(b: &Builder, v: &Value) -> Result<Vec<u64>, String> {
    b.shape(v).iter().map(|d| d.as_const().ok_or_else(|| "symbolic dimensions are not supported here; fix them with --dim".to_string())).collect()
}

fn conv(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let (x, w) = (input(inputs, 0)?, input(inputs, 1)?);
    let (xs, ws) = (const_shape(b, x)?, const_shape(b, w)?);
    let window = window(ctx, &xs[2..], &ws[2..])?;
    let mut ids = vec![b.node(x, &format!("{base}.x"))?, b.node(w, &format!("{base}.w"))?];
    if let Some(bias) = inputs.get(2).and_then(Option::as_ref) {
        ids.push(b.node(bias, &format!("{base}.bias"))?);
    }
    let groups = ctx.int("group", 1) as usize;
    Ok(Value::Node { id: b.add(&base, Op::Conv { window, groups }, &ids)?, elem: elem(x) })
}

fn pool(b: &mut Builder, ctx: &Ctx, x: &Value) -> Result<Vec<Value>, String> {
    let base = ctx.base();
    let kernel: Vec<usize> = ctx.ints("kernel_shape").ok_or("has no kernel_shape")?.iter().map(|&k| k as usize).collect();
    let xs = const_shape(b, x)?;
    let k64: Vec<u64> = kernel.iter().map(|&k| k as u64).collect();
    let window = window(ctx, &xs[2..], &k64)?;
    let kind = match ctx.node.op_type.as_str() {
        "MaxPool" => PoolKind::Max,
        "AveragePool" => PoolKind::Average { count_pad: ctx.int("count_include_pad", 0) != 0 },
        _ => PoolKind::Lp(ctx.int("p", 2) as f32),
    };
    let e = elem(x);
    let y = if e.is_float() {
        let id = b.node(x, &format!("{base}.x"))?;
        Value::Node { id: b.add(&base, Op::Pool { kind, kernel: kernel.clone(), window: window.clone() }, &[id])?, elem: e }
    } else if kind == PoolKind::Max && matches!(e, Elem::UINT8 | Elem::INT8) {
        // The maximum of 8-bit integers, exact in f32.
        let xf = cast(b, &format!("{base}.float"), x, Elem::FLOAT)?;
        let id = b.node(&xf, &format!("{base}.float"))?;
        let y = Value::Node { id: b.add(&format!("{base}.max"), Op::Pool { kind, kernel: kernel.clone(), window: window.clone() }, &[id])?, elem: Elem::FLOAT };
        cast(b, &base, &y, e)?
    } else {
        return Err(format!("{} of {} is not supported", ctx.node.op_type, e.name()));
    };
    if ctx.node.output.get(1).is_none_or(|o| o.is_empty()) {
        return Ok(vec![y]);
    }
    let column_major = ctx.int("storage_order", 0) != 0;
    Ok(vec![y, max_pool_indices(b, &base, x, &xs, &kernel, &window, column_major)?])
}

/// MaxPool's indices output: for every window, the position of its first largest element in the flattened input
/// (N, C and the spatial axes, row-major; the spatial axes column-major with `column_major`). The windows' elements
/// (a sentinel −∞ for those in the padding) are gathered from the flattened spatial axes, ArgMax picks one, and a
/// known table maps it back to its position.
fn max_pool_indices(b: &mut Builder, base: &str, x: &Value, xs: &[u64], kernel: &[usize], window: &Window, column_major: bool) -> Result<Value, String> {
    let spatial: Vec<usize> = xs[2..].iter().map(|&v| v as usize).collect();
    let out: Vec<usize> = (0..spatial.len())
        .map(|a| window.output_len(a, spatial[a] as u64, kernel[a] as u64).map(|v| v as usize).ok_or("no window fits"))
        .collect::<Result<_, _>>()?;
    let (positions, taps, windows): (usize, usize, usize) = (spatial.iter().product(), kernel.iter().product(), out.iter().product());
    let row_major = strides(&spatial);
    let reported = if column_major { (0..spatial.len()).map(|a| spatial[..a].iter().product()).collect() } else { row_major.clone() };
    // Per window and kernel element: its input coordinates, if inside the input.
    let taps_at: Vec<Option<Vec<usize>>> = (0..windows * taps)
        .map(|i| {
            let (at_out, at_k) = (unravel(i / taps, &out), unravel(i % taps, kernel));
            (0..spatial.len()).map(|a| usize::try_from(window.input_position(a, at_out[a], at_k[a])).ok().filter(|&p| p < spatial[a])).collect()
        })
        .collect();
    let flat_by = |st: &[usize]| -> Vec<Dim> {
        taps_at.iter().map(|at| Dim::from(at.as_ref().map_or(positions, |at| at.iter().zip(st).map(|(p, s)| p * s).sum()) as u64)).collect()
    };
    let (table, positions_reported) = (flat_by(&row_major), flat_by(&reported));
    let (n, c) = (xs[0], xs[1]);
    let d = |v: u64| Dim::from(v);
    let flat = reshape(b, &format!("{base}.flat"), x, vec![d(n), d(c), d(positions as u64)])?;
    let flat = cast(b, &format!("{base}.flat_f32"), &flat, Elem::FLOAT)?;
    let flat = pad_constant(b, &format!("{base}.sentinel"), &flat, vec![(0, 0), (0, 0), (0, 1)], f32::NEG_INFINITY)?;
    let table = Value::Known(Known::new(Elem::INT64, vec![windows, taps], Values::Int(table)));
    let gathered = gather(b, &format!("{base}.windows"), &flat, &table, 2)?;
    let id = b.node(&gathered, &format!("{base}.windows"))?;
    let best = Value::Node { id: b.add(&format!("{base}.best"), Op::ArgReduce { axis: 3, largest: true, last: false }, &[id])?, elem: Elem::INT64 };
    let best = reshape(b, &format!("{base}.best_col"), &best, vec![d(n), d(c), d(windows as u64), d(1)])?;
    let reported = Value::Known(Known::new(Elem::INT64, vec![windows, taps], Values::Int(positions_reported)));
    let table = expand(b, &format!("{base}.table"), &reported, &[d(n), d(c), d(windows as u64), d(taps as u64)])?;
    let (t, i) = (b.node(&table, &format!("{base}.table"))?, b.node(&best, &format!("{base}.best_col"))?);
    let picked = Value::Node { id: b.add(&format!("{base}.picked"), Op::GatherElements { axis: 3 }, &[t, i])?, elem: Elem::INT64 };
    let planes = Known::new(Elem::INT64, vec![n as usize, c as usize, 1, 1], Values::Int((0..n * c).map(|p| Dim::from(p * positions as u64)).collect()));
    let indices = binary(b, &format!("{base}.indices_flat"), BinaryOp::Add, &picked, &Value::Known(planes))?;
    let mut shape = vec![d(n), d(c)];
    shape.extend(out.iter().map(|&v| d(v as u64)));
    reshape(b, &format!("{base}.indices"), &indices, shape)
}

/// BatchNormalization and InstanceNormalization, per channel (axis 1): with the given mean and variance (inference),
/// or those of the batch (training mode, opset 14 on; the running statistics are also given out) or of each
/// instance's spatial axes.
fn channel_norm(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let base = ctx.base();
    let batch_norm = ctx.node.op_type == "BatchNormalization";
    let training = batch_norm && ctx.opset >= 14 && ctx.int("training_mode", 0) != 0;
    if !training && ctx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("the statistics outputs of training mode are not supported before opset 14".into());
    }
    if ctx.int("spatial", 1) == 0 {
        return Err("spatial = 0 (statistics per channel and position, before opset 9) is not supported".into());
    }
    let x = input(inputs, 0)?;
    let shape = b.shape(x);
    let per_channel = |b: &mut Builder, v: &Value, name: &str| -> Result<Value, String> {
        let mut s = vec![Dim::from(1u64); shape.len()];
        s[1] = shape[1].clone();
        reshape(b, &format!("{base}.{name}"), v, s)
    };
    let eps = scalar(Elem::FLOAT, ctx.float("epsilon", 1e-5) as f64);
    let (mean, var) = match (batch_norm, training) {
        (true, false) => (per_channel(b, input(inputs, 3)?, "mean")?, per_channel(b, input(inputs, 4)?, "var")?),
        (true, true) => statistics(b, &base, x, [0].into_iter().chain(2..shape.len()).collect())?,
        (false, _) => statistics(b, &base, x, (2..shape.len()).collect())?,
    };
    let centred = binary(b, &format!("{base}.sub"), BinaryOp::Sub, x, &mean)?;
    let v = binary(b, &format!("{base}.var_eps"), BinaryOp::Add, &var, &eps)?;
    let std = unary(b, ctx, &v, UnaryOp::Sqrt)?;
    let normed = binary(b, &format!("{base}.div"), BinaryOp::Div, &centred, &std)?;
    let scale = per_channel(b, input(inputs, 1)?, "scale")?;
    let bias = per_channel(b, input(inputs, 2)?, "bias")?;
    let scaled = binary(b, &format!("{base}.mul"), BinaryOp::Mul, &normed, &scale)?;
    let y = binary(b, &base, BinaryOp::Add, &scaled, &bias)?;
    if !training {
        return Ok(vec![y]);
    }
    // running = given · momentum + batch · (1 − momentum)
    let momentum = ctx.float("momentum", 0.9) as f64;
    let mut outputs = vec![y];
    for (i, batch, name) in [(3, &mean, "running_mean"), (4, &var, "running_var")] {
        let given = binary(b, &format!("{base}.{name}_kept"), BinaryOp::Mul, input(inputs, i)?, &scalar(Elem::FLOAT, momentum))?;
        let batch = reshape(b, &format!("{base}.{name}_batch"), batch, vec![shape[1].clone()])?;
        let batch = binary(b, &format!("{base}.{name}_new"), BinaryOp::Mul, &batch, &scalar(Elem::FLOAT, 1.0 - momentum))?;
        outputs.push(binary(b, &format!("{base}.{name}"), BinaryOp::Add, &given, &batch)?);
    }
    Ok(outputs)
}

/// The mean and (population) variance of `x` over `axes`, which are kept with length 1.
fn statistics(b: &mut Builder, base: &str, x: &Value, axes: Vec<usize>) -> Result<(Value, Value), String> {
    let shape = b.shape(x);
    let id = b.node(x, &format!("{base}.x"))?;
    let mean = Value::Node { id: b.add(&format!("{base}.mean"), Op::Reduce { kind: ReduceKind::Mean, axes: axes.clone(), keep_dims: true }, &[id])?, elem: Elem::FLOAT };
    let centred = binary(b, &format!("{base}.centred"), BinaryOp::Sub, x, &mean)?;
    let c = b.node(&centred, &format!("{base}.c"))?;
    let var = Value::Node { id: b.add(&format!("{base}.var"), Op::Reduce { kind: ReduceKind::SumSquare, axes: axes.clone(), keep_dims: true }, &[c])?, elem: Elem::FLOAT };
    let count: u64 = axes.iter().map(|&a| shape[a].as_const().unwrap_or(1)).product();
    let var = binary(b, &format!("{base}.var_mean"), BinaryOp::Div, &var, &scalar(Elem::FLOAT, count as f64))?;
    Ok((mean, var))
}

/// saturate(x / scale + zero_point) in `to`: integers round halves to even and clamp to the type's range, float8
/// and float4 types round as Cast does (`saturate` for float8).
fn quantize_values(b: &mut Builder, base: &str, x: &Value, scale: &Value, zero_point: Option<&Value>, to: Elem, saturate: bool) -> Result<Value, String> {
    let v = binary(b, &format!("{base}.div"), BinaryOp::Div, x, scale)?;
    let add_zero_point = |b: &mut Builder, v: Value| -> Result<Value, String> {
        let Some(z) = zero_point else { return Ok(v) };
        let z = cast(b, &format!("{base}.zp"), z, Elem::FLOAT)?;
        binary(b, &format!("{base}.add"), BinaryOp::Add, &v, &z)
    };
    if matches!(to.0, 17..=20 | 23) {
        // float8 (but e8m0, which holds scales) and float4.
        let v = add_zero_point(b, v)?;
        return cast_narrowing(b, base, &v, to, Narrowing { saturate, ..NARROWING });
    }
    let (lo, hi) = match (to.0, to.int_range()) {
        (2..=5 | 21 | 22 | 25 | 26, Some(range)) => range,
        _ => {
            return Err(format!(
                "quantizing to {} is not supported (uint8, int8, uint16, int16, uint4, int4, uint2, int2, float8 types, float4e2m1)",
                to.name()
            ));
        }
    };
    let v = unary_named(b, &format!("{base}.round"), &v, UnaryOp::Round)?;
    let v = add_zero_point(b, v)?;
    let v = binary(b, &format!("{base}.lo"), BinaryOp::Max, &v, &scalar(Elem::FLOAT, lo as f64))?;
    let v = binary(b, &format!("{base}.hi"), BinaryOp::Min, &v, &scalar(Elem::FLOAT, hi as f64))?;
    // In range: the i32 cast needs no wrapping.
    let id = b.node(&v, &format!("{base}.x"))?;
    Ok(Value::Node { id: b.add(base, Op::Cast { to: DType::I32 }, &[id])?, elem: to })
}

fn unary_named(b: &mut Builder, base: &str, x: &Value, op: UnaryOp) -> Result<Value, String> {
    let id = b.node(x, &format!("{base}.x"))?;
    Ok(Value::Node { id: b.add(base, Op::Unary(op), &[id])?, elem: elem(x) })
}

fn quantize(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let x = input(inputs, 0)?;
    let x_shape = b.shape(x);
    let scale = quant_param(b, ctx, input(inputs, 1)?, &x_shape, "scale")?;
    let zero_point = inputs.get(2).and_then(Option::as_ref).map(|z| quant_param(b, ctx, z, &x_shape, "zp")).transpose()?;
    let to = match (&zero_point, ctx.int("output_dtype", 0)) {
        (Some(z), _) => elem(z),
        (None, 0) => Elem::UINT8,
        (None, t) => Elem(t as i32),
    };
    quantize_values(b, &ctx.base(), x, &scale, zero_point.as_ref(), to, ctx.int("saturate", 1) != 0)
}

/// DynamicQuantizeLinear: uint8 with scale (max(0, max x) − min(0, min x)) / 255 and the zero point that maps 0.
fn dynamic_quantize(b: &mut Builder, ctx: &Ctx, x: &Value) -> Result<Vec<Value>, String> {
    let base = ctx.base();
    let axes: Vec<usize> = (0..b.shape(x).len()).collect();
    let id = b.node(x, &format!("{base}.x"))?;
    let mut extreme = |kind: ReduceKind, name: &str| -> Result<Value, String> {
        let r = b.add(&format!("{base}.{name}"), Op::Reduce { kind, axes: axes.clone(), keep_dims: false }, &[id])?;
        let op = if kind == ReduceKind::Max { BinaryOp::Max } else { BinaryOp::Min };
        binary(b, &format!("{base}.{name}0"), op, &Value::Node { id: r, elem: Elem::FLOAT }, &scalar(Elem::FLOAT, 0.0))
    };
    let (max, min) = (extreme(ReduceKind::Max, "max")?, extreme(ReduceKind::Min, "min")?);
    let range = binary(b, &format!("{base}.range"), BinaryOp::Sub, &max, &min)?;
    let scale = binary(b, &format!("{base}.scale"), BinaryOp::Div, &range, &scalar(Elem::FLOAT, 255.0))?;
    let zp = binary(b, &format!("{base}.neg_min"), BinaryOp::Sub, &scalar(Elem::FLOAT, 0.0), &min)?;
    let zp = quantize_values(b, &format!("{base}.zero_point"), &zp, &scale, None, Elem::UINT8, true)?;
    let y = quantize_values(b, &base, x, &scale, Some(&zp), Elem::UINT8, true)?;
    Ok(vec![y, scale, zp])
}

/// start, start + delta, … below a symbolic limit, computed by the bundle.
fn symbolic_range(b: &mut Builder, base: &str, e: Elem, start: i64, limit: &Dim, delta: i64) -> Result<Value, String> {
    if delta != 1 {
        return Err(format!("a range with step {delta} up to the symbolic `{limit}` is not supported; fix it with --dim"));
    }
    let op = Op::Range { start: start as f64, step: 1.0, len: limit - &int_dim(start), dtype: DType::I32 };
    Ok(Value::Node { id: b.add(base, op, &[])?, elem: e })
}

/// ONNX Attention (opset 23) from basic ops, as its reference computes it: heads split for 3-D inputs, past keys and
/// values prepended, Q·Kᵀ scaled (√scale on each side), softcap, the mask (bool: attend where true; float: added),
/// the causal mask and the keys past nonpad_kv_seqlen as an additive bias, softmax, ·V. Key/value heads are repeated
/// for grouped queries.
fn attention(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let base = ctx.base();
    let opt = |i: usize| inputs.get(i).and_then(Option::as_ref);
    let three_d = b.shape(input(inputs, 0)?).len() == 3;
    let heads = |b: &mut Builder, v: &Value, n: i64, name: &str| -> Result<Value, String> {
        if !three_d {
            return Ok(v.clone());
        }
        let s = b.shape(v);
        let n = Dim::from(n.max(1) as u64);
        let d = reshape_target(&s, &[s[0].clone(), s[1].clone(), n.clone(), int_dim(-1)], true)?;
        let v = reshape(b, &format!("{base}.{name}.heads"), v, d)?;
        transpose(b, &format!("{base}.{name}.bhsd"), &v, &[0, 2, 1, 3])
    };
    let q = heads(b, input(inputs, 0)?, ctx.int("q_num_heads", 0), "q")?;
    let k = heads(b, input(inputs, 1)?, ctx.int("kv_num_heads", 0), "k")?;
    let v = heads(b, input(inputs, 2)?, ctx.int("kv_num_heads", 0), "v")?;
    let (qs, ks) = (const_shape(b, &q)?, const_shape(b, &k)?);
    let scale = match ctx.attr("scale") {
        Some(a) => a.f as f64,
        None => 1.0 / (qs[3] as f64).sqrt(),
    };
    let k = match opt(4) {
        Some(past) => concat(b, &format!("{base}.present_key"), &[past, &k], 2)?,
        None => k,
    };
    let v = match opt(5) {
        Some(past) => concat(b, &format!("{base}.present_value"), &[past, &v], 2)?,
        None => v,
    };
    let past = opt(4).map_or(Ok(0), |p| const_shape(b, p).map(|s| s[2]))?;
    let (present_key, present_value) = (k.clone(), v.clone());
    let total = const_shape(b, &k)?[2];
    let (q_len, q_heads, kv_heads) = (qs[2], qs[1], ks[1]);
    // Grouped queries: each key/value head repeated q_heads / kv_heads times, next to itself.
    let repeat = |b: &mut Builder, x: &Value, name: &str| -> Result<Value, String> {
        if q_heads == kv_heads || kv_heads == 0 || q_heads % kv_heads != 0 {
            return Ok(x.clone());
        }
        let s = b.shape(x);
        let r = Dim::from(q_heads / kv_heads);
        let one = Dim::from(1u64);
        let x = reshape(b, &format!("{base}.{name}.group"), x, vec![s[0].clone(), s[1].clone(), one, s[2].clone(), s[3].clone()])?;
        let x = expand(b, &format!("{base}.{name}.repeat"), &x, &[s[0].clone(), s[1].clone(), r.clone(), s[2].clone(), s[3].clone()])?;
        reshape(b, &format!("{base}.{name}.repeated"), &x, vec![s[0].clone(), &s[1] * &r, s[2].clone(), s[3].clone()])
    };
    let (k, v) = (repeat(b, &k, "k")?, repeat(b, &v, "v")?);
    let root = scalar(Elem::FLOAT, scale.sqrt());
    let qs_ = binary(b, &format!("{base}.q_scaled"), BinaryOp::Mul, &q, &root)?;
    let ks_ = binary(b, &format!("{base}.k_scaled"), BinaryOp::Mul, &k, &root)?;
    let mut scores = matmul(b, &format!("{base}.qk"), &qs_, &ks_, false, true)?;
    let softcap = ctx.float("softcap", 0.0);
    if softcap > 0.0 {
        let cap = scalar(Elem::FLOAT, softcap as f64);
        let t = binary(b, &format!("{base}.cap_div"), BinaryOp::Div, &scores, &cap)?;
        let t = unary_named(b, &format!("{base}.cap_tanh"), &t, UnaryOp::Tanh)?;
        scores = binary(b, &format!("{base}.capped"), BinaryOp::Mul, &t, &cap)?;
    }
    let mut bias: Option<Value> = None;
    if let Some(mask) = opt(3) {
        let ms = const_shape(b, mask)?;
        let bool_mask = !elem(mask).is_float();
        let mut mask = mask.clone();
        let width = *ms.last().ok_or("the mask needs rank ≥ 1")?;
        if width < total {
            let mut pads = vec![(0usize, 0usize); ms.len()];
            pads[ms.len() - 1] = (0, (total - width) as usize);
            let fill = if bool_mask { 0.0 } else { f32::NEG_INFINITY };
            mask = pad_constant(b, &format!("{base}.mask_pad"), &mask, pads, fill)?;
        }
        if bool_mask {
            mask = where_(b, &format!("{base}.mask_bias"), &mask, &scalar(Elem::FLOAT, 0.0), &scalar(Elem::FLOAT, f64::NEG_INFINITY))?;
        }
        bias = Some(mask);
    }
    if ctx.int("is_causal", 0) != 0 {
        let (n, m) = (q_len as usize, total as usize);
        let values = (0..n * m).map(|i| if (i % m) as u64 > past + (i / m) as u64 { f32::NEG_INFINITY } else { 0.0 }).collect();
        let causal = Value::Known(Known::new(Elem::FLOAT, vec![n, m], Values::F32(values)));
        bias = Some(match bias {
            Some(mask) => binary(b, &format!("{base}.causal_mask"), BinaryOp::Add, &mask, &causal)?,
            None => causal,
        });
    }
    if let Some(lengths) = opt(6) {
        // Keys at or past each batch entry's non-padding length are hidden.
        let keys = Value::Known(Known::new(Elem::INT64, vec![1, 1, 1, total as usize], Values::Int((0..total).map(Dim::from).collect())));
        let one = Dim::from(1u64);
        let lengths = reshape(b, &format!("{base}.kv_lengths"), lengths, vec![Dim::from(qs[0]), one.clone(), one.clone(), one])?;
        let valid = compare(b, &format!("{base}.kv_valid"), CompareOp::Lt, &keys, &lengths)?;
        let padding = where_(b, &format!("{base}.kv_padding"), &valid, &scalar(Elem::FLOAT, 0.0), &scalar(Elem::FLOAT, f64::NEG_INFINITY))?;
        bias = Some(match bias {
            Some(mask) => binary(b, &format!("{base}.padded_mask"), BinaryOp::Add, &mask, &padding)?,
            None => padding,
        });
    }
    let with_bias = match &bias {
        Some(bias) => binary(b, &format!("{base}.biased"), BinaryOp::Add, &scores, bias)?,
        None => scores.clone(),
    };
    let sm_in = b.node(&with_bias, &format!("{base}.scores"))?;
    let probs = Value::Node { id: b.add(&format!("{base}.softmax"), Op::Softmax, &[sm_in])?, elem: Elem::FLOAT };
    let mut y = matmul(b, &format!("{base}.pv"), &probs, &v, false, false)?;
    if three_d {
        y = transpose(b, &format!("{base}.bshd"), &y, &[0, 2, 1, 3])?;
        let s = b.shape(&y);
        y = reshape(b, &base, &y, vec![s[0].clone(), s[1].clone(), &s[2] * &s[3]])?;
    }
    let qk_output = match ctx.int("qk_matmul_output_mode", 0) {
        0 | 1 => scores,
        2 => with_bias,
        _ => probs,
    };
    Ok(vec![y, present_key, present_value, qk_output])
}

fn scatter_reduction(ctx: &Ctx) -> Result<Option<BinaryOp>, String> {
    Ok(match ctx.string("reduction").as_deref().unwrap_or("none") {
        "none" => None,
        "add" => Some(BinaryOp::Add),
        "mul" => Some(BinaryOp::Mul),
        "max" => Some(BinaryOp::Max),
        "min" => Some(BinaryOp::Min),
        other => return Err(format!("reduction {other:?} is not supported")),
    })
}

/// ScatterElements as ScatterND: each index becomes a full coordinate tuple (its own position on the other axes).
fn scatter_elements(b: &mut Builder, ctx: &Ctx, data: &Value, indices: &Value, updates: &Value) -> Result<Value, String> {
    let base = ctx.base();
    let reduction = scatter_reduction(ctx)?;
    let ishape = const_shape(b, indices)?;
    let rank = ishape.len();
    let axis = normalize_axis(ctx.int("axis", 0), rank)?;
    let mut coords = Vec::new();
    let mut tuple_shape: Vec<Dim> = ishape.iter().map(|&d| Dim::from(d)).collect();
    tuple_shape.push(Dim::from(1u64));
    for a in 0..rank {
        let coord = if a == axis {
            indices.clone()
        } else {
            let st = strides(&ishape.iter().map(|&d| d as usize).collect::<Vec<_>>());
            let n: usize = ishape.iter().product::<u64>() as usize;
            let values = (0..n).map(|i| Dim::from(((i / st[a]) % ishape[a] as usize) as u64)).collect();
            Value::Known(Known::new(Elem::INT64, ishape.iter().map(|&d| d as usize).collect(), Values::Int(values)))
        };
        coords.push(reshape(b, &format!("{base}.coord{a}"), &coord, tuple_shape.clone())?);
    }
    let refs: Vec<&Value> = coords.iter().collect();
    let tuples = concat(b, &format!("{base}.tuples"), &refs, rank)?;
    let (d, i, u) = (b.node(data, &format!("{base}.data"))?, b.node(&tuples, &format!("{base}.indices"))?, b.node(updates, &format!("{base}.updates"))?);
    Ok(Value::Node { id: b.add(&base, Op::ScatterND { reduction }, &[d, i, u])?, elem: elem(data) })
}

fn conv_transpose(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let (x, w) = (input(inputs, 0)?, input(inputs, 1)?);
    let (xs, ws) = (const_shape(b, x)?, const_shape(b, w)?);
    let n = xs.len() - 2;
    let kernel: Vec<u64> = match ctx.ints("kernel_shape") {
        Some(k) if !k.is_empty() => k.iter().map(|&v| v as u64).collect(),
        _ => ws[2..].to_vec(),
    };
    let or = |name: &str, default: usize| ctx.ints(name).filter(|v| !v.is_empty()).unwrap_or(vec![default as i64; n]).iter().map(|&v| v as usize).collect::<Vec<_>>();
    let (strides, dilations, mut output_padding) = (or("strides", 1), or("dilations", 1), or("output_padding", 0));
    let full = |i: usize, extra: usize| strides[i] as u64 * (xs[2 + i] - 1) + extra as u64 + dilations[i] as u64 * (kernel[i] - 1) + 1;
    let auto_pad = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let pads: Vec<(usize, usize)> = if let Some(out) = ctx.ints("output_shape").filter(|v| !v.is_empty()) {
        let out = &out[out.len() - n..];
        (0..n)
            .map(|i| {
                let natural = full(i, output_padding[i]) as i64;
                if natural < out[i] {
                    // A longer output than the kernels reach: extra (zero-input) rows at the end.
                    output_padding[i] += (out[i] - natural) as usize;
                    return (0, 0);
                }
                let total = (natural - out[i]) as usize;
                if auto_pad == "SAME_UPPER" { (total / 2, total - total / 2) } else { (total - total / 2, total / 2) }
            })
            .collect()
    } else {
        match auto_pad.as_str() {
            "NOTSET" => {
                let p = ctx.ints("pads").unwrap_or(vec![0; 2 * n]);
                (0..n).map(|i| (p[i] as usize, p[n + i] as usize)).collect()
            }
            "VALID" => vec![(0, 0); n],
            _ => (0..n)
                .map(|i| {
                    let total = full(i, output_padding[i]).saturating_sub(xs[2 + i] * strides[i] as u64) as usize;
                    if auto_pad == "SAME_UPPER" { (total / 2, total - total / 2) } else { (total - total / 2, total / 2) }
                })
                .collect(),
        }
    };
    let window = Window { strides, dilations, pads, ceil_mode: false };
    let mut ids = vec![b.node(x, &format!("{base}.x"))?, b.node(w, &format!("{base}.w"))?];
    if let Some(bias) = inputs.get(2).and_then(Option::as_ref) {
        ids.push(b.node(bias, &format!("{base}.bias"))?);
    }
    let groups = ctx.int("group", 1) as usize;
    Ok(Value::Node { id: b.add(&base, Op::ConvTranspose { window, groups, output_padding }, &ids)?, elem: elem(x) })
}

/// Upsample, and Resize before opset 11: output lengths floor(length · scale), output x sampling the input at x / scale
/// ("asymmetric"), by the element at or below it (nearest; upsampling only) or linearly.
fn upsample(b: &mut Builder, ctx: &Ctx, x: &Value, scales: &[f32]) -> Result<Value, String> {
    let base = ctx.base();
    let shape = const_shape(b, x)?;
    if scales.len() != shape.len() {
        return Err(format!("{} scales for an input of rank {}", scales.len(), shape.len()));
    }
    let mode = match ctx.string("mode").as_deref().unwrap_or("nearest") {
        "nearest" if scales.iter().any(|&s| s < 1.0) => return Err("nearest downsampling (a scale below 1) is not supported".into()),
        "nearest" => ResizeMode::Nearest(NearestRounding::Floor),
        "linear" | "bilinear" => ResizeMode::Linear,
        other => return Err(format!("mode {other:?} is not supported")),
    };
    let out: Vec<Dim> = shape.iter().zip(scales).map(|(&d, &s)| Dim::from((d as f64 * s as f64).floor() as u64)).collect();
    let axes: Vec<Option<ResizeAxis>> =
        scales.iter().map(|&s| (s != 1.0).then_some(ResizeAxis { shift: 0.0, num: 1.0, den: s, offset: 0.0 })).collect();
    if axes.iter().all(Option::is_none) {
        return Ok(x.clone());
    }
    let id = b.node(x, &format!("{base}.x"))?;
    let op = Op::Resize { shape: out, axes, mode, extrapolation: None };
    Ok(Value::Node { id: b.add(&base, op, &[id])?, elem: elem(x) })
}

/// Resize: output lengths from `sizes` (with the aspect-ratio policy) or `scales`, and per resized axis the affine
/// map from output to input coordinates of the coordinate transformation mode (see `ResizeAxis`).
fn resize(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    if ctx.opset < 11 {
        return upsample(b, ctx, input(inputs, 0)?, &known_input(ctx.node, inputs, 1, "the scales")?.f32s()?);
    }
    if ctx.int("antialias", 0) != 0 {
        return Err("antialias = 1 is not supported".into());
    }
    let x = input(inputs, 0)?;
    let shape = const_shape(b, x)?;
    let rank = shape.len();
    let axes: Vec<usize> = match ctx.ints("axes") {
        Some(a) if !a.is_empty() => a.iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_, _>>()?,
        _ => (0..rank).collect(),
    };
    let present = |i: usize| inputs.get(i).and_then(Option::as_ref).and_then(known_of).filter(|k| k.numel() > 0);
    for i in 1..4 {
        if inputs.get(i).and_then(Option::as_ref).is_some() {
            known_input(ctx.node, inputs, i, "roi, scales and sizes")?;
        }
    }
    let mut scales = vec![1f64; rank];
    let mut out: Vec<u64> = shape.clone();
    if let Some(sizes) = present(3) {
        let sizes = sizes.const_ints()?;
        for (&a, &s) in axes.iter().zip(&sizes) {
            scales[a] = s as f64 / shape[a] as f64;
            out[a] = s as u64;
        }
        let policy = ctx.string("keep_aspect_ratio_policy").unwrap_or_else(|| "stretch".into());
        if policy != "stretch" {
            let chosen = axes.iter().map(|&a| scales[a]);
            let scale = if policy == "not_larger" { chosen.fold(f64::INFINITY, f64::min) } else { chosen.fold(0.0, f64::max) };
            for &a in &axes {
                scales[a] = scale;
                out[a] = (scale * shape[a] as f64 + 0.5) as u64;
            }
        }
    } else if let Some(given) = present(2) {
        for (&a, &s) in axes.iter().zip(&given.f32s()?) {
            scales[a] = s as f64;
            out[a] = (s as f64 * shape[a] as f64) as u64;
        }
    } else {
        return Err("needs scales or sizes".into());
    }
    let roi: Vec<f32> = present(1).map(|k| k.f32s()).transpose()?.unwrap_or_default();
    let mode_name = ctx.string("coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into());
    let mut per_axis: Vec<Option<ResizeAxis>> = vec![None; rank];
    for (i, &a) in axes.iter().enumerate() {
        // The reference maps coordinates with the unrounded output length (input length · scale).
        let (input_len, output_len, scale) = (shape[a] as f32, (shape[a] as f64 * scales[a]) as f32, scales[a] as f32);
        let axis = |shift: f32, num: f32, den: f32, offset: f32| ResizeAxis { shift, num, den, offset };
        per_axis[a] = Some(match mode_name.as_str() {
            "half_pixel" => axis(0.5, 1.0, scale, -0.5),
            "asymmetric" => axis(0.0, 1.0, scale, 0.0),
            "align_corners" if out[a] == 1 => axis(0.0, 0.0, 1.0, 0.0),
            "align_corners" => axis(0.0, input_len - 1.0, output_len - 1.0, 0.0),
            "pytorch_half_pixel" if out[a] == 1 => axis(0.0, 0.0, 1.0, -0.5),
            "pytorch_half_pixel" => axis(0.5, 1.0, scale, -0.5),
            "half_pixel_symmetric" => axis(0.5, 1.0, scale, input_len / 2.0 * (1.0 - out[a] as f32 / (scale * input_len)) - 0.5),
            "tf_crop_and_resize" => {
                let n = axes.len();
                let (start, end) = (*roi.get(i).ok_or("tf_crop_and_resize needs roi")?, *roi.get(n + i).ok_or("tf_crop_and_resize needs roi")?);
                if out[a] == 1 {
                    axis(0.0, 0.0, 1.0, (start + end) * (input_len - 1.0) / 2.0)
                } else {
                    axis(0.0, (end - start) * (input_len - 1.0), output_len - 1.0, start * (input_len - 1.0))
                }
            }
            other => return Err(format!("coordinate_transformation_mode {other:?} is not supported")),
        });
        if out[a] == shape[a] && (shape[a] == 1 || per_axis[a].is_some_and(|m| m.num == m.den && m.offset + m.shift == 0.0)) {
            per_axis[a] = None; // the identity
        }
    }
    let mode = match ctx.string("mode").as_deref().unwrap_or("nearest") {
        "nearest" => ResizeMode::Nearest(match ctx.string("nearest_mode").as_deref().unwrap_or("round_prefer_floor") {
            "round_prefer_floor" => NearestRounding::PreferFloor,
            "round_prefer_ceil" => NearestRounding::PreferCeil,
            "floor" => NearestRounding::Floor,
            "ceil" => NearestRounding::Ceil,
            other => return Err(format!("nearest_mode {other:?} is not supported")),
        }),
        "linear" => ResizeMode::Linear,
        "cubic" => ResizeMode::Cubic { a: ctx.float("cubic_coeff_a", -0.75), exclude_outside: ctx.int("exclude_outside", 0) != 0 },
        other => return Err(format!("mode {other:?} is not supported")),
    };
    let extrapolation = (mode_name == "tf_crop_and_resize").then(|| ctx.float("extrapolation_value", 0.0));
    if per_axis.iter().all(Option::is_none) {
        return Ok(x.clone());
    }
    let id = b.node(x, &format!("{base}.x"))?;
    let op = Op::Resize { shape: out.iter().map(|&d| Dim::from(d)).collect(), axes: per_axis, mode, extrapolation };
    Ok(Value::Node { id: b.add(&base, op, &[id])?, elem: elem(x) })
}

/// 1 at the first largest element along `axis`, 0 elsewhere: its index compared with every position.
fn hardmax_along(b: &mut Builder, base: &str, x: &Value, axis: usize) -> Result<Value, String> {
    let shape = const_shape(b, x)?;
    let id = b.node(x, &format!("{base}.x"))?;
    let arg = b.add(&format!("{base}.arg"), Op::ArgReduce { axis, largest: true, last: false }, &[id])?;
    let mut kept: Vec<Dim> = shape.iter().map(|&d| Dim::from(d)).collect();
    kept[axis] = Dim::from(1u64);
    let arg = reshape(b, &format!("{base}.kept"), &Value::Node { id: arg, elem: Elem::INT64 }, kept)?;
    let mut along = vec![1usize; shape.len()];
    along[axis] = shape[axis] as usize;
    let positions = Known::new(Elem::INT64, along, Values::Int((0..shape[axis]).map(Dim::from).collect()));
    let hit = compare(b, &format!("{base}.hit"), CompareOp::Eq, &Value::Known(positions), &arg)?;
    cast(b, base, &hit, elem(x))
}

/// Softmax, LogSoftmax and Hardmax before opset 13: `x` coerced to a matrix at `axis` (default 1), [a0·…·a(axis−1),
/// a(axis)·…·a(n−1)], the op applied along its rows by `f`, and the result given x's shape back.
fn on_matrix(b: &mut Builder, ctx: &Ctx, x: &Value, f: impl FnOnce(&mut Builder, &Value) -> Result<Value, String>) -> Result<Value, String> {
    let base = ctx.base();
    let shape = b.shape(x);
    let axis = normalize_axis(ctx.int("axis", 1), shape.len())?;
    let rows = vec![tfc_ir::dim::product(&shape[..axis]), tfc_ir::dim::product(&shape[axis..])];
    let m = reshape(b, &format!("{base}.matrix"), x, rows)?;
    let y = f(b, &m)?;
    reshape(b, &base, &y, shape)
}

/// Softmax (or its log) along `axis`, which is moved last for the IR op and back.
fn softmax_along(b: &mut Builder, ctx: &Ctx, x: &Value, axis: usize, log: bool) -> Result<Value, String> {
    let base = ctx.base();
    let rank = b.shape(x).len();
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(axis, rank - 1);
    let t = transpose(b, &format!("{base}.in"), x, &perm)?;
    let t = b.node(&t, &base)?;
    let mut y = Value::Node { id: b.add(&format!("{base}.softmax"), Op::Softmax, &[t])?, elem: elem(x) };
    if log {
        y = unary_named(b, &format!("{base}.log"), &y, UnaryOp::Log)?;
    }
    transpose(b, &format!("{base}.out"), &y, &perm)
}

/// NegativeLogLikelihoodLoss: −input[n, target, d…] · weight[target], 0 where target is ignore_index; reduced by
/// sum, or by mean (divided by the weights' sum), or not at all.
fn nll_loss(b: &mut Builder, ctx: &Ctx, input_: &Value, target: &Value, weight: Option<&Value>) -> Result<Value, String> {
    let base = ctx.base();
    let ignored = match ctx.attr("ignore_index") {
        Some(a) => Some(compare(b, &format!("{base}.ignored"), CompareOp::Eq, target, &scalar(elem(target), a.i as f64))?),
        None => None,
    };
    let safe = match &ignored {
        Some(i) => where_(b, &format!("{base}.safe_target"), i, &scalar(elem(target), 0.0), target)?,
        None => target.clone(),
    };
    let tshape = b.shape(&safe);
    let mut column = tshape.clone();
    column.insert(1, Dim::from(1u64));
    let index = reshape(b, &format!("{base}.index"), &safe, column)?;
    let (x, i) = (b.node(input_, &format!("{base}.x"))?, b.node(&index, &format!("{base}.i"))?);
    let picked = Value::Node { id: b.add(&format!("{base}.picked"), Op::GatherElements { axis: 1 }, &[x, i])?, elem: Elem::FLOAT };
    let picked = reshape(b, &format!("{base}.picked_flat"), &picked, tshape.clone())?;
    let mut w = match weight {
        Some(w) => gather(b, &format!("{base}.weight"), w, &safe, 0)?,
        None => expand(b, &format!("{base}.ones"), &scalar(Elem::FLOAT, 1.0), &tshape)?,
    };
    if let Some(i) = &ignored {
        w = where_(b, &format!("{base}.weight_kept"), i, &scalar(Elem::FLOAT, 0.0), &w)?;
    }
    let weighted = binary(b, &format!("{base}.weighted"), BinaryOp::Mul, &picked, &w)?;
    let loss = binary(b, &format!("{base}.loss"), BinaryOp::Sub, &scalar(Elem::FLOAT, 0.0), &weighted)?;
    let all: Vec<usize> = (0..tshape.len()).collect();
    let sum = |b: &mut Builder, v: &Value, name: &str| -> Result<Value, String> {
        let id = b.node(v, &format!("{base}.{name}_in"))?;
        Ok(Value::Node { id: b.add(&format!("{base}.{name}"), Op::Reduce { kind: ReduceKind::Sum, axes: all.clone(), keep_dims: false }, &[id])?, elem: Elem::FLOAT })
    };
    match ctx.string("reduction").as_deref().unwrap_or("mean") {
        "none" => Ok(loss),
        "sum" => sum(b, &loss, "sum"),
        "mean" => {
            let total = sum(b, &loss, "sum")?;
            let weights = sum(b, &w, "weights")?;
            binary(b, &base, BinaryOp::Div, &total, &weights)
        }
        other => Err(format!("reduction {other:?} is not supported")),
    }
}

/// RotaryEmbedding (opset 23) from basic ops: the first `rotary_embedding_dim` features of each head rotated by the
/// cached cos/sin (picked by position_ids when given), halves or interleaved pairs.
fn rotary_embedding(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let x = input(inputs, 0)?;
    let shape = const_shape(b, x)?;
    let d = |v: u64| Dim::from(v);
    let x4 = if shape.len() == 4 {
        transpose(b, &format!("{base}.bshd"), x, &[0, 2, 1, 3])?
    } else {
        let heads = ctx.int("num_heads", 0);
        if heads <= 0 {
            return Err("a 3-D input needs num_heads".into());
        }
        let heads = heads as u64;
        reshape(b, &format!("{base}.heads"), x, vec![d(shape[0]), d(shape[1]), d(heads), d(shape[2] / heads)])?
    };
    let s4 = const_shape(b, &x4)?;
    let head = s4[3];
    let r = match ctx.int("rotary_embedding_dim", 0) {
        0 => head,
        r => r as u64,
    };
    let half = r / 2;
    let rot = slice(b, &format!("{base}.rot"), &x4, 3, &d(0), &d(r), 1)?;
    let cache = |b: &mut Builder, i: usize, name: &str| -> Result<Value, String> {
        let c = input(inputs, i)?;
        let c = match inputs.get(3).and_then(Option::as_ref) {
            Some(pos) => gather(b, &format!("{base}.{name}"), c, pos, 0)?,
            None => c.clone(),
        };
        reshape(b, &format!("{base}.{name}.heads"), &c, vec![d(s4[0]), d(s4[1]), d(1), d(half)])
    };
    let (cos, sin) = (cache(b, 1, "cos")?, cache(b, 2, "sin")?);
    let interleaved = ctx.int("interleaved", 0) != 0;
    let pair = |b: &mut Builder, k: u64| -> Result<Value, String> {
        if interleaved {
            let pairs = reshape(b, &format!("{base}.pairs"), &rot, vec![d(s4[0]), d(s4[1]), d(s4[2]), d(half), d(2)])?;
            let one = slice(b, &format!("{base}.x{k}"), &pairs, 4, &d(k), &d(k + 1), 1)?;
            reshape(b, &format!("{base}.x{k}.flat"), &one, vec![d(s4[0]), d(s4[1]), d(s4[2]), d(half)])
        } else {
            slice(b, &format!("{base}.x{k}"), &rot, 3, &d(k * half), &d((k + 1) * half), 1)
        }
    };
    let (x1, x2) = (pair(b, 0)?, pair(b, 1)?);
    let mul = |b: &mut Builder, p: &Value, q: &Value, name: &str| binary(b, &format!("{base}.{name}"), BinaryOp::Mul, p, q);
    let (c1, s2, s1, c2) = (mul(b, &cos, &x1, "c1")?, mul(b, &sin, &x2, "s2")?, mul(b, &sin, &x1, "s1")?, mul(b, &cos, &x2, "c2")?);
    let real = binary(b, &format!("{base}.real"), BinaryOp::Sub, &c1, &s2)?;
    let imag = binary(b, &format!("{base}.imag"), BinaryOp::Add, &s1, &c2)?;
    let rotated = if interleaved {
        let col = vec![d(s4[0]), d(s4[1]), d(s4[2]), d(half), d(1)];
        let (re, im) = (reshape(b, &format!("{base}.re"), &real, col.clone())?, reshape(b, &format!("{base}.im"), &imag, col)?);
        let both = concat(b, &format!("{base}.interleave"), &[&re, &im], 4)?;
        reshape(b, &format!("{base}.rotated"), &both, vec![d(s4[0]), d(s4[1]), d(s4[2]), d(r)])?
    } else {
        concat(b, &format!("{base}.rotated"), &[&real, &imag], 3)?
    };
    let out = if r < head {
        let rest = slice(b, &format!("{base}.pass"), &x4, 3, &d(r), &d(head), 1)?;
        concat(b, &format!("{base}.joined"), &[&rotated, &rest], 3)?
    } else {
        rotated
    };
    if shape.len() == 4 {
        transpose(b, &base, &out, &[0, 2, 1, 3])
    } else {
        reshape(b, &base, &out, shape.iter().map(|&v| d(v)).collect())
    }
}

/// Every `step`-th element of `start..end` along `axis` (step > 1): the range, padded to whole groups of `step`,
/// viewed as [groups, step], and the first of each group.
fn strided_slice(b: &mut Builder, base: &str, x: &Value, axis: usize, start: &Dim, end: &Dim, step: i64) -> Result<Value, String> {
    let shape = const_shape(b, x)?;
    let (Some(s), Some(e)) = (dim_int(start), dim_int(end)) else {
        return Err("a strided slice with symbolic bounds is not supported; fix them with --dim".into());
    };
    let (s, e, k) = (s as u64, (e.max(s)) as u64, step as u64);
    let groups = (e - s).div_ceil(k);
    if groups == 0 {
        return slice(b, base, x, axis, &Dim::from(s), &Dim::from(s), 1);
    }
    let stop = (s + groups * k).min(shape[axis]);
    let mut v = slice(b, &format!("{base}.range"), x, axis, &Dim::from(s), &Dim::from(stop), 1)?;
    if stop < s + groups * k {
        let mut pads = vec![(0usize, 0usize); shape.len()];
        pads[axis] = (0, (s + groups * k - stop) as usize);
        let id = b.node(&v, &format!("{base}.range"))?;
        v = Value::Node { id: b.add(&format!("{base}.whole"), Op::Pad { pads, mode: PadMode::Edge }, &[id])?, elem: elem(x) };
    }
    let mut grouped: Vec<Dim> = shape.iter().map(|&d| Dim::from(d)).collect();
    grouped[axis] = Dim::from(groups);
    grouped.insert(axis + 1, Dim::from(k));
    let v = reshape(b, &format!("{base}.groups"), &v, grouped.clone())?;
    let v = slice(b, &format!("{base}.first"), &v, axis + 1, &Dim::from(0u64), &Dim::from(1u64), 1)?;
    grouped.remove(axis + 1);
    reshape(b, base, &v, grouped)
}

/// GroupNormalization (opset 21: scale and bias per channel): each group of channels normalised over its channels
/// and spatial positions, then scaled and shifted per channel.
fn group_norm(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let x = input(inputs, 0)?;
    let shape = const_shape(b, x)?;
    let groups = ctx.int("num_groups", 1).max(1) as u64;
    let (n, c) = (shape[0], shape[1]);
    if c % groups != 0 {
        return Err(format!("{c} channels do not split into {groups} groups"));
    }
    let per_group: u64 = shape[1..].iter().product::<u64>() / groups;
    let d = |v: u64| Dim::from(v);
    let flat = reshape(b, &format!("{base}.groups"), x, vec![d(n), d(groups), d(per_group)])?;
    let ones = Value::Known(Known::new(Elem::FLOAT, vec![per_group as usize], Values::F32(vec![1.0; per_group as usize])));
    let (f, g) = (b.node(&flat, &format!("{base}.flat"))?, b.node(&ones, &format!("{base}.unit"))?);
    let normed = Value::Node { id: b.add(&format!("{base}.norm"), Op::LayerNorm { eps: ctx.float("epsilon", 1e-5) }, &[f, g])?, elem: Elem::FLOAT };
    let normed = reshape(b, &format!("{base}.shape"), &normed, shape.iter().map(|&v| d(v)).collect())?;
    let mut channel = vec![d(1); shape.len()];
    channel[1] = d(c);
    let per_channel = |b: &mut Builder, i: usize, name: &str| -> Result<Value, String> {
        let v = input(inputs, i)?;
        if const_shape(b, v)? != [c] {
            return Err(format!("{name} must have one value per channel ({c}); the opset-18 per-group form is not supported"));
        }
        reshape(b, &format!("{base}.{name}"), v, channel.clone())
    };
    let (scale, bias) = (per_channel(b, 1, "scale")?, per_channel(b, 2, "bias")?);
    let scaled = binary(b, &format!("{base}.scaled"), BinaryOp::Mul, &normed, &scale)?;
    binary(b, &base, BinaryOp::Add, &scaled, &bias)
}

/// OneHot: `on` where an index (negative ones counting from the end of `depth`) equals the position along the new
/// axis, `off` elsewhere; an index outside [−depth, depth) gives a row of `off`.
fn one_hot(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let indices = input(inputs, 0)?;
    let depth = known_input(ctx.node, inputs, 1, "the depth")?.f32s()?.first().copied().ok_or("the depth is empty")? as i64;
    if depth < 1 {
        return Err(format!("a depth of {depth}"));
    }
    let values = input(inputs, 2)?;
    let mut shape = b.shape(indices);
    let axis = normalize_axis(ctx.int("axis", -1), shape.len() + 1)?;
    let index = if elem(indices).is_float() { cast(b, &format!("{base}.int"), indices, Elem::INT64)? } else { indices.clone() };
    let negative = compare(b, &format!("{base}.negative"), CompareOp::Lt, &index, &scalar(Elem::INT64, 0.0))?;
    let from_end = binary(b, &format!("{base}.from_end"), BinaryOp::Add, &index, &scalar(Elem::INT64, depth as f64))?;
    let index = where_(b, &format!("{base}.index"), &negative, &from_end, &index)?;
    shape.insert(axis, Dim::from(1u64));
    let index = reshape(b, &format!("{base}.column"), &index, shape.clone())?;
    let mut positions = vec![1usize; shape.len()];
    positions[axis] = depth as usize;
    let positions = Known::new(Elem::INT64, positions, Values::Int((0..depth).map(int_dim).collect()));
    let hit = compare(b, &format!("{base}.hit"), CompareOp::Eq, &Value::Known(positions), &index)?;
    let pick = |b: &mut Builder, i: u64, name: &str| -> Result<Value, String> {
        let v = slice(b, &format!("{base}.{name}"), values, 0, &Dim::from(i), &Dim::from(i + 1), 1)?;
        reshape(b, &format!("{base}.{name}_scalar"), &v, vec![])
    };
    let (off, on) = (pick(b, 0, "off")?, pick(b, 1, "on")?);
    where_(b, &base, &hit, &on, &off)
}

/// ReverseSequence: along the time axis, the first `len[b]` elements of each batch entry reversed, the rest kept; a
/// GatherElements at index len − 1 − t for t < len, else t.
fn reverse_sequence(b: &mut Builder, ctx: &Ctx, x: &Value, lens: &Value) -> Result<Value, String> {
    let base = ctx.base();
    let shape = b.shape(x);
    let rank = shape.len();
    let (batch_axis, time_axis) = (normalize_axis(ctx.int("batch_axis", 1), rank)?, normalize_axis(ctx.int("time_axis", 0), rank)?);
    let steps = shape[time_axis].as_const().ok_or("a symbolic time axis is not supported; fix it with --dim")?;
    let mut along_time = vec![1usize; rank];
    along_time[time_axis] = steps as usize;
    let times = Value::Known(Known::new(Elem::INT64, along_time, Values::Int((0..steps).map(Dim::from).collect())));
    let mut along_batch = vec![Dim::from(1u64); rank];
    along_batch[batch_axis] = shape[batch_axis].clone();
    let lens = reshape(b, &format!("{base}.lens"), lens, along_batch)?;
    let last = binary(b, &format!("{base}.last"), BinaryOp::Sub, &lens, &scalar(Elem::INT64, 1.0))?;
    let reversed = binary(b, &format!("{base}.reversed"), BinaryOp::Sub, &last, &times)?;
    let inside = compare(b, &format!("{base}.inside"), CompareOp::Lt, &times, &lens)?;
    let index = where_(b, &format!("{base}.index"), &inside, &reversed, &times)?;
    let index = expand(b, &format!("{base}.indices"), &index, &shape)?;
    let (d, i) = (b.node(x, &format!("{base}.x"))?, b.node(&index, &format!("{base}.indices"))?);
    Ok(Value::Node { id: b.add(&base, Op::GatherElements { axis: time_axis }, &[d, i])?, elem: elem(x) })
}

/// LRN: x / (bias + alpha/size · Σ x²)^beta, the sum over the `size` channels c − ⌊(size−1)/2⌋ … c + ⌈(size−1)/2⌉
/// (those that exist): an average pool of the squares over the channel axis, padding counted, is that sum / size.
fn lrn(b: &mut Builder, ctx: &Ctx, x: &Value) -> Result<Value, String> {
    let base = ctx.base();
    let shape = const_shape(b, x)?;
    if shape.len() < 3 {
        return Err("needs an input of rank 3 or more (N, C, …)".into());
    }
    let size = ctx.int("size", 0);
    if size < 1 {
        return Err("needs a size of at least 1".into());
    }
    let size = size as usize;
    let (alpha, beta, bias) = (ctx.float("alpha", 1e-4) as f64, ctx.float("beta", 0.75) as f64, ctx.float("bias", 1.0) as f64);
    let squares = binary(b, &format!("{base}.squares"), BinaryOp::Mul, x, x)?;
    let d = |v: u64| Dim::from(v);
    let rows = reshape(b, &format!("{base}.rows"), &squares, vec![d(shape[0]), d(1), d(shape[1]), d(shape[2..].iter().product())])?;
    let window = Window { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![((size - 1) / 2, size / 2), (0, 0)], ceil_mode: false };
    let pool = Op::Pool { kind: PoolKind::Average { count_pad: true }, kernel: vec![size, 1], window };
    let id = b.node(&rows, &format!("{base}.rows"))?;
    let mean = Value::Node { id: b.add(&format!("{base}.window_mean"), pool, &[id])?, elem: Elem::FLOAT };
    let mean = reshape(b, &format!("{base}.mean"), &mean, shape.iter().map(|&v| d(v)).collect())?;
    let scaled = binary(b, &format!("{base}.scaled"), BinaryOp::Mul, &mean, &scalar(Elem::FLOAT, alpha))?;
    let shifted = binary(b, &format!("{base}.shifted"), BinaryOp::Add, &scaled, &scalar(Elem::FLOAT, bias))?;
    let den = binary(b, &format!("{base}.den"), BinaryOp::Pow, &shifted, &scalar(Elem::FLOAT, beta))?;
    binary(b, &base, BinaryOp::Div, x, &den)
}

/// The largest matrices Det computes (by the Leibniz formula: a sum over the n! permutations).
const DET_MAX: usize = 4;

/// Det of the last two axes by the Leibniz formula: the matrices flattened, the n entries (i, p(i)) of every
/// permutation p gathered and multiplied, and the products summed with the permutations' signs.
fn det(b: &mut Builder, ctx: &Ctx, x: &Value) -> Result<Value, String> {
    let base = ctx.base();
    let shape = const_shape(b, x)?;
    let r = shape.len();
    if r < 2 || shape[r - 1] != shape[r - 2] {
        return Err("needs square matrices in the last two axes".into());
    }
    let n = shape[r - 1] as usize;
    if n > DET_MAX {
        return Err(format!("{n}×{n} matrices are not supported (up to {DET_MAX}×{DET_MAX})"));
    }
    let mut perms: Vec<Vec<usize>> = vec![vec![]];
    for k in 0..n {
        perms = perms.into_iter().flat_map(|p| (0..=k).map(move |at| { let mut q = p.clone(); q.insert(at, k); q })).collect();
    }
    let sign = |p: &[usize]| -> f32 {
        let inversions = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).filter(|&(i, j)| p[i] > p[j]).count();
        if inversions % 2 == 0 { 1.0 } else { -1.0 }
    };
    let batch: Vec<Dim> = shape[..r - 2].iter().map(|&v| Dim::from(v)).collect();
    let mut flat = batch.clone();
    flat.push(Dim::from((n * n) as u64));
    let flat = reshape(b, &format!("{base}.flat"), x, flat)?;
    let entries: Vec<Dim> = perms.iter().flat_map(|p| p.iter().enumerate().map(|(i, &j)| Dim::from((i * n + j) as u64))).collect();
    let entries = Value::Known(Known::new(Elem::INT64, vec![perms.len(), n], Values::Int(entries)));
    let picked = gather(b, &format!("{base}.entries"), &flat, &entries, r - 2)?;
    let id = b.node(&picked, &format!("{base}.entries"))?;
    let products = Value::Node { id: b.add(&format!("{base}.products"), Op::Reduce { kind: ReduceKind::Prod, axes: vec![r - 1], keep_dims: false }, &[id])?, elem: Elem::FLOAT };
    let signs = Value::Known(Known::new(Elem::FLOAT, vec![perms.len()], Values::F32(perms.iter().map(|p| sign(p)).collect())));
    let terms = binary(b, &format!("{base}.terms"), BinaryOp::Mul, &products, &signs)?;
    let id = b.node(&terms, &format!("{base}.terms"))?;
    Ok(Value::Node { id: b.add(&base, Op::Reduce { kind: ReduceKind::Sum, axes: vec![r - 2], keep_dims: false }, &[id])?, elem: elem(x) })
}

/// CausalConvWithState (opset 27): the input after the past state (zeros without one) along the time axis, a
/// depthwise convolution over it without padding (with SiLU when asked), and its last k − 1 steps as the next state.
fn causal_conv(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let base = ctx.base();
    let (x, w) = (input(inputs, 0)?, input(inputs, 1)?);
    let (xs, ws) = (const_shape(b, x)?, const_shape(b, w)?);
    let (&[_, channels, steps], &[_, _, k]) = (&xs[..], &ws[..]) else { return Err("needs an input and weight of rank 3".into()) };
    if k == 0 {
        return Err("a kernel of length 0".into());
    }
    let past = (k - 1) as usize;
    let padded = match inputs.get(3).and_then(Option::as_ref) {
        Some(state) => concat(b, &format!("{base}.padded"), &[state, x], 2)?,
        None => {
            let id = b.node(x, &format!("{base}.x"))?;
            Value::Node { id: b.add(&format!("{base}.padded"), Op::Pad { pads: vec![(0, 0), (0, 0), (past, 0)], mode: PadMode::Constant(0.0) }, &[id])?, elem: elem(x) }
        }
    };
    let mut ids = vec![b.node(&padded, &format!("{base}.padded"))?, b.node(w, &format!("{base}.w"))?];
    if let Some(bias) = inputs.get(2).and_then(Option::as_ref) {
        ids.push(b.node(bias, &format!("{base}.bias"))?);
    }
    let window = Window { strides: vec![1], dilations: vec![1], pads: vec![(0, 0)], ceil_mode: false };
    let y = Value::Node { id: b.add(&format!("{base}.conv"), Op::Conv { window, groups: channels as usize }, &ids)?, elem: elem(x) };
    let y = match ctx.string("activation").as_deref().unwrap_or("none") {
        "none" => y,
        "silu" | "swish" => {
            let gate = unary_named(b, &format!("{base}.gate"), &y, UnaryOp::Sigmoid)?;
            binary(b, &format!("{base}.silu"), BinaryOp::Mul, &y, &gate)?
        }
        other => return Err(format!("activation {other:?} is not supported")),
    };
    let state = slice(b, &format!("{base}.state"), &padded, 2, &Dim::from(steps), &Dim::from(steps + past as u64), 1)?;
    Ok(vec![y, state])
}

/// Col2Im: the columns [N, C · Πblock, L] summed into an image [N, C, image…], as a ConvTranspose of the columns
/// (their L blocks laid out on the grid of block positions) with one kernel per block element, 1 at that element.
fn col2im(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let x = input(inputs, 0)?;
    let image: Vec<usize> = known_input(ctx.node, inputs, 1, "the image shape")?.const_ints()?.iter().map(|&v| v as usize).collect();
    let block: Vec<usize> = known_input(ctx.node, inputs, 2, "the block shape")?.const_ints()?.iter().map(|&v| v as usize).collect();
    let n = image.len();
    let shape = const_shape(b, x)?;
    let [batch, rows, _] = shape[..] else { return Err("needs columns of shape [N, C · Πblock, L]".into()) };
    let per_block: usize = block.iter().product();
    if n == 0 || block.len() != n || per_block == 0 || !(rows as usize).is_multiple_of(per_block) {
        return Err(format!("{rows} rows are not whole blocks of {block:?}"));
    }
    let channels = rows as usize / per_block;
    let or = |name: &str, default: usize, len: usize| ctx.ints(name).filter(|v| !v.is_empty()).unwrap_or(vec![default as i64; len]).iter().map(|&v| v as usize).collect::<Vec<_>>();
    let (strides, dilations, pads) = (or("strides", 1, n), or("dilations", 1, n), or("pads", 0, 2 * n));
    // Block positions per axis, and the rows an exact fit leaves over at the end.
    let mut grid = Vec::new();
    let mut output_padding = Vec::new();
    for a in 0..n {
        let span = image[a] + pads[a] + pads[n + a];
        let reach = dilations[a] * (block[a] - 1) + 1;
        if span < reach || strides[a] == 0 {
            return Err(format!("blocks of {} do not fit axis {a} of the image", block[a]));
        }
        grid.push((span - reach) / strides[a] + 1);
        output_padding.push((span - reach) % strides[a]);
    }
    let mut columns = vec![Dim::from(batch), Dim::from(rows)];
    columns.extend(grid.iter().map(|&g| Dim::from(g as u64)));
    let columns = reshape(b, &format!("{base}.grid"), x, columns)?;
    let mut kernel = vec![0f32; rows as usize * per_block];
    for r in 0..rows as usize {
        kernel[r * per_block + r % per_block] = 1.0;
    }
    let mut kernel_shape = vec![rows as usize, 1];
    kernel_shape.extend(&block);
    let kernel = Value::Known(Known::new(Elem::FLOAT, kernel_shape, Values::F32(kernel)));
    let window = Window { strides, dilations, pads: (0..n).map(|a| (pads[a], pads[n + a])).collect(), ceil_mode: false };
    let ids = [b.node(&columns, &format!("{base}.columns"))?, b.node(&kernel, &format!("{base}.kernel"))?];
    let op = Op::ConvTranspose { window, groups: channels, output_padding };
    Ok(Value::Node { id: b.add(&base, op, &ids)?, elem: elem(x) })
}

/// MaxUnpool: zeros of the shape the pooling's attributes imply, with each value of X written at its index I into
/// them (flattened), then zeros appended at the end of each axis up to `output_shape` when given.
fn max_unpool(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let (x, indices) = (input(inputs, 0)?, input(inputs, 1)?);
    let xs = const_shape(b, x)?;
    let kernel = ctx.ints("kernel_shape").ok_or("has no kernel_shape")?;
    let n = kernel.len();
    if xs.len() != n + 2 {
        return Err(format!("a kernel of {n} axes for an input of rank {}", xs.len()));
    }
    let strides = ctx.ints("strides").filter(|v| !v.is_empty()).unwrap_or(vec![1; n]);
    let pads = ctx.ints("pads").filter(|v| !v.is_empty()).unwrap_or(vec![0; 2 * n]);
    let mut unpooled = xs[..2].to_vec();
    unpooled.extend((0..n).map(|a| ((xs[2 + a] as i64 - 1) * strides[a] + kernel[a] - pads[a] - pads[n + a]).max(0) as u64));
    let total: u64 = unpooled.iter().product();
    let count: u64 = xs.iter().product();
    let zeros = Value::Known(Known::new(Elem::FLOAT, vec![total as usize], Values::F32(vec![0.0; total as usize])));
    let positions = reshape(b, &format!("{base}.positions"), indices, vec![Dim::from(count), Dim::from(1u64)])?;
    let values = reshape(b, &format!("{base}.values"), x, vec![Dim::from(count)])?;
    let ids = [b.node(&zeros, &format!("{base}.zeros"))?, b.node(&positions, &format!("{base}.positions"))?, b.node(&values, &format!("{base}.values"))?];
    let flat = Value::Node { id: b.add(&format!("{base}.flat"), Op::ScatterND { reduction: None }, &ids)?, elem: elem(x) };
    let y = reshape(b, &format!("{base}.unpooled"), &flat, unpooled.iter().map(|&v| Dim::from(v)).collect())?;
    let Some(_) = inputs.get(2).and_then(Option::as_ref) else { return Ok(y) };
    let out = known_input(ctx.node, inputs, 2, "the output shape")?.const_ints()?;
    if out.len() != unpooled.len() || out.iter().zip(&unpooled).any(|(&o, &u)| o < u as i64) {
        return Err(format!("an output shape {out:?} smaller than the unpooled {unpooled:?}"));
    }
    let pads = out.iter().zip(&unpooled).map(|(&o, &u)| (0, o as usize - u as usize)).collect();
    let id = b.node(&y, &format!("{base}.unpooled"))?;
    Ok(Value::Node { id: b.add(&base, Op::Pad { pads, mode: PadMode::Constant(0.0) }, &[id])?, elem: elem(x) })
}

/// TensorScatter (opset 24): the cache with the update's rows written from each batch entry's write index along the
/// sequence axis (wrapping around in circular mode); each cache row t takes update row t − index where that is one.
fn tensor_scatter(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let (cache, update) = (input(inputs, 0)?, input(inputs, 1)?);
    let shape = const_shape(b, cache)?;
    let rank = shape.len();
    let axis = normalize_axis(ctx.int("axis", -2), rank)?;
    if axis == 0 {
        return Err("the sequence axis cannot be the batch axis".into());
    }
    let (rows, written) = (shape[axis], const_shape(b, update)?[axis]);
    let circular = match ctx.string("mode").as_deref().unwrap_or("linear") {
        "linear" => false,
        "circular" if written <= rows => true,
        "circular" => return Err("a circular update longer than the cache is not supported".into()),
        other => return Err(format!("mode {other:?} is not supported")),
    };
    let mut along = vec![1usize; rank];
    along[axis] = rows as usize;
    let positions = Value::Known(Known::new(Elem::INT64, along, Values::Int((0..rows).map(Dim::from).collect())));
    let mut per_batch = vec![Dim::from(1u64); rank];
    per_batch[0] = Dim::from(shape[0]);
    let start = match inputs.get(2).and_then(Option::as_ref) {
        Some(w) => reshape(b, &format!("{base}.start"), w, per_batch)?,
        None => scalar(Elem::INT64, 0.0),
    };
    let mut offset = binary(b, &format!("{base}.offset"), BinaryOp::Sub, &positions, &start)?;
    if circular {
        offset = binary(b, &format!("{base}.wrapped"), BinaryOp::Mod, &offset, &scalar(Elem::INT64, rows as f64))?;
    }
    let from = compare(b, &format!("{base}.from"), CompareOp::Ge, &offset, &scalar(Elem::INT64, 0.0))?;
    let before = compare(b, &format!("{base}.before"), CompareOp::Lt, &offset, &scalar(Elem::INT64, written as f64))?;
    let inside = binary(b, &format!("{base}.inside"), BinaryOp::Min, &from, &before)?;
    let row = where_(b, &format!("{base}.row"), &inside, &offset, &scalar(Elem::INT64, 0.0))?;
    let row = expand(b, &format!("{base}.rows"), &row, &shape.iter().map(|&v| Dim::from(v)).collect::<Vec<_>>())?;
    let (u, r) = (b.node(update, &format!("{base}.update"))?, b.node(&row, &format!("{base}.rows"))?);
    let taken = Value::Node { id: b.add(&format!("{base}.taken"), Op::GatherElements { axis }, &[u, r])?, elem: elem(cache) };
    where_(b, &base, &inside, &taken, cache)
}

/// LinearAttention (opset 27) as its recurrence, unrolled over the (static) sequence: per step the state [B, H_kv,
/// d_k, d_v] decays by exp(decay) ("gated"), the value is corrected by what the state already holds for the key
/// ("delta": β · (v − Sᵀk)), k ⊗ v is added, and each query head reads scale · qᵀS from its key/value head.
fn linear_attention(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let base = ctx.base();
    let rule = ctx.string("update_rule").unwrap_or_else(|| "gated_delta".into());
    let (gated, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        other => return Err(format!("update_rule {other:?} is not supported")),
    };
    let (q_heads, kv_heads) = (ctx.int("q_num_heads", 0), ctx.int("kv_num_heads", 0));
    if q_heads <= 0 || kv_heads <= 0 || q_heads % kv_heads != 0 {
        return Err(format!("q_num_heads {q_heads} must be a positive multiple of kv_num_heads {kv_heads}"));
    }
    let (q_heads, kv_heads) = (q_heads as u64, kv_heads as u64);
    let opt = |i: usize| inputs.get(i).and_then(Option::as_ref);
    let (q, k, v) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let (qs, vs) = (const_shape(b, q)?, const_shape(b, v)?);
    let (&[batch, steps, q_width], &[_, _, v_width]) = (&qs[..], &vs[..]) else { return Err("query, key and value must be [B, T, H·D]".into()) };
    let (dk, dv, group) = (q_width / q_heads, v_width / kv_heads, q_heads / kv_heads);
    let d = |v: u64| Dim::from(v);
    // [B, T, H·D] → [B, H, T, D]
    let heads = |b: &mut Builder, x: &Value, h: u64, name: &str| -> Result<Value, String> {
        let width = *const_shape(b, x)?.last().ok_or("a rank-3 input")?;
        let x = reshape(b, &format!("{base}.{name}_heads"), x, vec![d(batch), d(steps), d(h), d(width / h)])?;
        transpose(b, &format!("{base}.{name}_bhtd"), &x, &[0, 2, 1, 3])
    };
    let (q4, k4, v4) = (heads(b, q, q_heads, "q")?, heads(b, k, kv_heads, "k")?, heads(b, v, kv_heads, "v")?);
    let decay = match opt(4) {
        Some(g) if gated => {
            let g = heads(b, g, kv_heads, "decay")?;
            Some(unary_named(b, &format!("{base}.decay_exp"), &g, UnaryOp::Exp)?)
        }
        None if !gated => None,
        _ => return Err(format!("update_rule {rule:?} {} the decay input", if gated { "needs" } else { "takes no" })),
    };
    let beta = match opt(5) {
        Some(beta) if delta => {
            let width = *const_shape(b, beta)?.last().ok_or("a rank-3 beta")?;
            Some(heads(b, beta, width, "beta")?)
        }
        None if !delta => None,
        _ => return Err(format!("update_rule {rule:?} {} the beta input", if delta { "needs" } else { "takes no" })),
    };
    let scale = match ctx.float("scale", 0.0) {
        0.0 => 1.0 / (dk as f64).sqrt(),
        s => s as f64,
    };
    let mut state = match opt(3) {
        Some(past) => past.clone(),
        None => {
            let n = (batch * kv_heads * dk * dv) as usize;
            Value::Known(Known::new(Elem::FLOAT, vec![batch as usize, kv_heads as usize, dk as usize, dv as usize], Values::F32(vec![0.0; n])))
        }
    };
    let step = |b: &mut Builder, x: &Value, t: u64, name: &str| slice(b, &format!("{base}.{name}{t}"), x, 2, &d(t), &d(t + 1), 1);
    let mut outputs = Vec::new();
    for t in 0..steps {
        let k_row = step(b, &k4, t, "k")?;
        let k_col = reshape(b, &format!("{base}.k_col{t}"), &k_row, vec![d(batch), d(kv_heads), d(dk), d(1)])?;
        let mut v_t = step(b, &v4, t, "v")?;
        if let Some(decay) = &decay {
            let g = step(b, decay, t, "g")?;
            let width = *const_shape(b, &g)?.last().ok_or("a rank-4 decay")?;
            let g = reshape(b, &format!("{base}.g_col{t}"), &g, vec![d(batch), d(kv_heads), d(width), d(1)])?;
            state = binary(b, &format!("{base}.decayed{t}"), BinaryOp::Mul, &state, &g)?;
        }
        if let Some(beta) = &beta {
            let held = matmul(b, &format!("{base}.held{t}"), &k_row, &state, false, false)?;
            let diff = binary(b, &format!("{base}.diff{t}"), BinaryOp::Sub, &v_t, &held)?;
            let beta_t = step(b, beta, t, "beta")?;
            v_t = binary(b, &format!("{base}.delta{t}"), BinaryOp::Mul, &beta_t, &diff)?;
        }
        let written = binary(b, &format!("{base}.outer{t}"), BinaryOp::Mul, &k_col, &v_t)?;
        state = binary(b, &format!("{base}.state{t}"), BinaryOp::Add, &state, &written)?;
        // Query heads h·group … h·group + group − 1 read key/value head h.
        let q_t = step(b, &q4, t, "q")?;
        let q_t = reshape(b, &format!("{base}.q_groups{t}"), &q_t, vec![d(batch), d(kv_heads), d(group), d(dk)])?;
        let read = matmul(b, &format!("{base}.read{t}"), &q_t, &state, false, false)?;
        let read = reshape(b, &format!("{base}.read_heads{t}"), &read, vec![d(batch), d(q_heads), d(1), d(dv)])?;
        outputs.push(binary(b, &format!("{base}.out{t}"), BinaryOp::Mul, &read, &scalar(Elem::FLOAT, scale))?);
    }
    let all: Vec<&Value> = outputs.iter().collect();
    let y = concat(b, &format!("{base}.steps"), &all, 2)?;
    let y = transpose(b, &format!("{base}.bthd"), &y, &[0, 2, 1, 3])?;
    let y = reshape(b, &base, &y, vec![d(batch), d(steps), d(q_heads * dv)])?;
    Ok(vec![Value::Node { id: b.node(&y, &base)?, elem: elem(q) }, state])
}

/// DeformConv (2-D): each kernel element samples the input bilinearly (GridSample, zeros outside) at its place in the
/// window moved by its offset (per offset group of channels), times its mask; the samples [N, C · k, positions] are
/// then weighted by one MatMul per group.
fn deform_conv(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let (x, w, offset) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let (xs, ws, os) = (const_shape(b, x)?, const_shape(b, w)?, const_shape(b, offset)?);
    let (&[n, c, h, wd], &[m, per_group, kh, kw], &[_, _, oh, ow]) = (&xs[..], &ws[..], &os[..]) else {
        return Err("only 2-D DeformConv is supported (X [N, C, H, W])".into());
    };
    let (groups, offset_groups) = (ctx.int("group", 1).max(1) as u64, ctx.int("offset_group", 1).max(1) as u64);
    if c != per_group * groups || m % groups != 0 || c % offset_groups != 0 || h < 2 || wd < 2 {
        return Err(format!("X {xs:?}, W {ws:?}, group {groups} and offset_group {offset_groups} do not fit (or the input is narrower than 2)"));
    }
    let or = |name: &str, default: i64, len: usize| ctx.ints(name).filter(|v| !v.is_empty()).unwrap_or(vec![default; len]);
    let (strides, dilations, pads) = (or("strides", 1, 2), or("dilations", 1, 2), or("pads", 0, 4));
    let taps = (kh * kw) as usize;
    let d = |v: u64| Dim::from(v);
    // The window's own sampling positions (y, x) per kernel element and output position, normalised for GridSample
    // (align_corners: −1 and 1 are the centres of the first and last elements).
    let (oh_, ow_) = (oh as usize, ow as usize);
    let mut places = vec![0f32; taps * 2 * oh_ * ow_];
    for k in 0..taps {
        for (axis, at) in [k / kw as usize, k % kw as usize].into_iter().enumerate() {
            for i in 0..oh_ * ow_ {
                let out = if axis == 0 { i / ow_ } else { i % ow_ } as i64;
                let p = out * strides[axis] - pads[axis] + at as i64 * dilations[axis];
                places[(k * 2 + axis) * oh_ * ow_ + i] = p as f32;
            }
        }
    }
    let places = Value::Known(Known::new(Elem::FLOAT, vec![1, 1, taps, 2, oh_, ow_], Values::F32(places)));
    let offset = reshape(b, &format!("{base}.offset"), offset, vec![d(n), d(offset_groups), d(taps as u64), d(2), d(oh), d(ow)])?;
    let at = binary(b, &format!("{base}.at"), BinaryOp::Add, &offset, &places)?;
    let scale = Value::Known(Known::new(Elem::FLOAT, vec![1, 1, 1, 2, 1, 1], Values::F32(vec![2.0 / (h - 1) as f32, 2.0 / (wd - 1) as f32])));
    let at = binary(b, &format!("{base}.at_scaled"), BinaryOp::Mul, &at, &scale)?;
    let at = binary(b, &format!("{base}.at_normalised"), BinaryOp::Sub, &at, &scalar(Elem::FLOAT, 1.0))?;
    // [N, G, k, 2, oh, ow] → [N, G, k, oh, ow, (x, y)]
    let at = transpose(b, &format!("{base}.at_last"), &at, &[0, 1, 2, 4, 5, 3])?;
    let xy = Value::Known(Known::new(Elem::INT64, vec![2], Values::Int(vec![Dim::from(1u64), Dim::from(0u64)])));
    let grid = gather(b, &format!("{base}.grid"), &at, &xy, 5)?;
    let mask = match inputs.get(4).and_then(Option::as_ref) {
        Some(mask) => Some(reshape(b, &format!("{base}.mask"), mask, vec![d(n), d(offset_groups), d(1), d(taps as u64), d(oh), d(ow)])?),
        None => None,
    };
    let per_offset_group = c / offset_groups;
    let mut sampled = Vec::new();
    for g in 0..offset_groups {
        let name = format!("{base}.og{g}");
        let xg = slice(b, &format!("{name}.x"), x, 1, &d(g * per_offset_group), &d((g + 1) * per_offset_group), 1)?;
        let grid_g = slice(b, &format!("{name}.grid"), &grid, 1, &d(g), &d(g + 1), 1)?;
        let grid_g = reshape(b, &format!("{name}.grid_flat"), &grid_g, vec![d(n), d(taps as u64 * oh), d(ow), d(2)])?;
        let (xi, gi) = (b.node(&xg, &format!("{name}.x"))?, b.node(&grid_g, &format!("{name}.grid_flat"))?);
        let op = Op::GridSample { mode: SampleMode::Linear, padding: SamplePadding::Zeros, align_corners: true };
        let s = Value::Node { id: b.add(&format!("{name}.sampled"), op, &[xi, gi])?, elem: elem(x) };
        let mut s = reshape(b, &format!("{name}.taps"), &s, vec![d(n), d(per_offset_group), d(taps as u64), d(oh), d(ow)])?;
        if let Some(mask) = &mask {
            let mg = slice(b, &format!("{name}.mask"), mask, 1, &d(g), &d(g + 1), 1)?;
            let mg = reshape(b, &format!("{name}.mask_taps"), &mg, vec![d(n), d(1), d(taps as u64), d(oh), d(ow)])?;
            s = binary(b, &format!("{name}.masked"), BinaryOp::Mul, &s, &mg)?;
        }
        sampled.push(s);
    }
    let columns = concat(b, &format!("{base}.columns"), &sampled.iter().collect::<Vec<_>>(), 1)?;
    let columns = reshape(b, &format!("{base}.columns_flat"), &columns, vec![d(n), d(c * taps as u64), d(oh * ow)])?;
    let weights = reshape(b, &format!("{base}.w_flat"), w, vec![d(m), d(per_group * taps as u64)])?;
    let per_out = m / groups;
    let mut outs = Vec::new();
    for g in 0..groups {
        let wg = slice(b, &format!("{base}.g{g}.w"), &weights, 0, &d(g * per_out), &d((g + 1) * per_out), 1)?;
        let cg = slice(b, &format!("{base}.g{g}.columns"), &columns, 1, &d(g * per_group * taps as u64), &d((g + 1) * per_group * taps as u64), 1)?;
        outs.push(matmul(b, &format!("{base}.g{g}.out"), &wg, &cg, false, false)?);
    }
    let mut y = concat(b, &format!("{base}.out"), &outs.iter().collect::<Vec<_>>(), 1)?;
    if let Some(bias) = inputs.get(3).and_then(Option::as_ref) {
        let bias = reshape(b, &format!("{base}.bias"), bias, vec![d(m), d(1)])?;
        y = binary(b, &format!("{base}.biased"), BinaryOp::Add, &y, &bias)?;
    }
    reshape(b, &base, &y, vec![d(n), d(m), d(oh), d(ow)])
}

/// RoiAlign (average): per region, `sampling_ratio`² points in each output bin sampled bilinearly (GridSample with
/// border padding: positions in [−1, 0) or past the last element take the edge, as RoiAlign's interpolation does;
/// those outside [−1, length] count as zero) and averaged.
fn roi_align(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let (x, rois, batch) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let xs = const_shape(b, x)?;
    let &[_, c, h, w] = &xs[..] else { return Err("needs X of shape [N, C, H, W]".into()) };
    let regions = *const_shape(b, rois)?.first().ok_or("rois must be [R, 4]")?;
    if ctx.string("mode").as_deref().unwrap_or("avg") != "avg" {
        return Err("mode \"max\" (the maximum of the weighted corners) is not supported".into());
    }
    let ratio = ctx.int("sampling_ratio", 0);
    if ratio < 1 {
        return Err("an adaptive sampling_ratio (0, from each region's size at run time) is not supported".into());
    }
    if h < 2 || w < 2 {
        return Err("an input narrower than 2".into());
    }
    let (sr, oh, ow) = (ratio as u64, ctx.int("output_height", 1).max(1) as u64, ctx.int("output_width", 1).max(1) as u64);
    let default_mode = if ctx.opset < 16 { "output_half_pixel" } else { "half_pixel" };
    let half_pixel = match ctx.string("coordinate_transformation_mode").as_deref().unwrap_or(default_mode) {
        "half_pixel" => true,
        "output_half_pixel" => false,
        other => return Err(format!("coordinate_transformation_mode {other:?} is not supported")),
    };
    let scale = ctx.float("spatial_scale", 1.0) as f64;
    let d = |v: u64| Dim::from(v);
    let column = |b: &mut Builder, i: u64, name: &str| -> Result<Value, String> {
        let v = slice(b, &format!("{base}.{name}"), rois, 1, &d(i), &d(i + 1), 1)?;
        let v = binary(b, &format!("{base}.{name}_scaled"), BinaryOp::Mul, &v, &scalar(Elem::FLOAT, scale))?;
        binary(b, &format!("{base}.{name}_shifted"), BinaryOp::Sub, &v, &scalar(Elem::FLOAT, if half_pixel { 0.5 } else { 0.0 }))
    };
    // Sample positions start + u · extent, u = (bin + (i + 0.5) / ratio) / bins, as [R, 1, bins · ratio] (x) or
    // [R, bins · ratio, 1] (y), normalised for GridSample (align_corners), with a mask of those inside [−1, length].
    let axis = |b: &mut Builder, lo: u64, hi: u64, bins: u64, len: u64, name: &str, along: usize| -> Result<(Value, Value), String> {
        let (start, end) = (column(b, lo, &format!("{name}0"))?, column(b, hi, &format!("{name}1"))?);
        let mut extent = binary(b, &format!("{base}.{name}_extent"), BinaryOp::Sub, &end, &start)?;
        if !half_pixel {
            extent = binary(b, &format!("{base}.{name}_extent1"), BinaryOp::Max, &extent, &scalar(Elem::FLOAT, 1.0))?;
        }
        let n = (bins * sr) as usize;
        let u: Vec<f32> = (0..n).map(|i| (((i as u64 / sr) as f64 + ((i as u64 % sr) as f64 + 0.5) / sr as f64) / bins as f64) as f32).collect();
        let mut shape = vec![1, 1, 1];
        shape[along] = n;
        let u = Value::Known(Known::new(Elem::FLOAT, shape, Values::F32(u)));
        let (start, extent) = (reshape(b, &format!("{base}.{name}_start"), &start, vec![d(regions), d(1), d(1)])?, reshape(b, &format!("{base}.{name}_len"), &extent, vec![d(regions), d(1), d(1)])?);
        let at = binary(b, &format!("{base}.{name}_steps"), BinaryOp::Mul, &u, &extent)?;
        let at = binary(b, &format!("{base}.{name}_at"), BinaryOp::Add, &at, &start)?;
        let low = compare(b, &format!("{base}.{name}_low"), CompareOp::Ge, &at, &scalar(Elem::FLOAT, -1.0))?;
        let high = compare(b, &format!("{base}.{name}_high"), CompareOp::Le, &at, &scalar(Elem::FLOAT, len as f64))?;
        let inside = binary(b, &format!("{base}.{name}_inside"), BinaryOp::Min, &low, &high)?;
        let g = binary(b, &format!("{base}.{name}_grid"), BinaryOp::Mul, &at, &scalar(Elem::FLOAT, 2.0 / (len - 1) as f64))?;
        Ok((binary(b, &format!("{base}.{name}_normalised"), BinaryOp::Sub, &g, &scalar(Elem::FLOAT, 1.0))?, inside))
    };
    let (gx, inside_x) = axis(b, 0, 2, ow, w, "x", 2)?;
    let (gy, inside_y) = axis(b, 1, 3, oh, h, "y", 1)?;
    let full = [d(regions), d(oh * sr), d(ow * sr), d(1)];
    let gx = reshape(b, &format!("{base}.gx4"), &gx, vec![d(regions), d(1), d(ow * sr), d(1)])?;
    let gx = expand(b, &format!("{base}.gx"), &gx, &full)?;
    let gy = reshape(b, &format!("{base}.gy4"), &gy, vec![d(regions), d(oh * sr), d(1), d(1)])?;
    let gy = expand(b, &format!("{base}.gy"), &gy, &full)?;
    let grid = concat(b, &format!("{base}.grid"), &[&gx, &gy], 3)?;
    let images = gather(b, &format!("{base}.images"), x, batch, 0)?;
    let (xi, gi) = (b.node(&images, &format!("{base}.images"))?, b.node(&grid, &format!("{base}.grid"))?);
    let op = Op::GridSample { mode: SampleMode::Linear, padding: SamplePadding::Border, align_corners: true };
    let sampled = Value::Node { id: b.add(&format!("{base}.sampled"), op, &[xi, gi])?, elem: elem(x) };
    let inside = binary(b, &format!("{base}.inside"), BinaryOp::Min, &inside_y, &inside_x)?;
    let inside = reshape(b, &format!("{base}.inside4"), &inside, vec![d(regions), d(1), d(oh * sr), d(ow * sr)])?;
    let sampled = where_(b, &format!("{base}.kept"), &inside, &sampled, &scalar(Elem::FLOAT, 0.0))?;
    let bins = reshape(b, &format!("{base}.bins"), &sampled, vec![d(regions), d(c), d(oh), d(sr), d(ow), d(sr)])?;
    let id = b.node(&bins, &format!("{base}.bins"))?;
    Ok(Value::Node { id: b.add(&base, Op::Reduce { kind: ReduceKind::Mean, axes: vec![3, 5], keep_dims: false }, &[id])?, elem: elem(x) })
}
