//! ONNX import: a `.onnx` file (or a folder holding `model.onnx`), with its external data, into the IR.
//!
//! The protobuf is decoded with prost from the memory-mapped file (`proto.rs`); initializers stay in the map (or
//! in the external data files) until the bundle writer reads them. Nodes are lowered in order (`lower.rs`); a node
//! whose inputs are all known at compile time is evaluated here instead (shape arithmetic, folded constants), so
//! exported transformer graphs reduce to static kernels. See docs/onnx.md.

mod lower;
pub mod proto;
mod tensor;

use bytes::Bytes;
use lower::{Builder, Env, Known, Scope, Support, Value};
use prost::Message;
use proto::{DimensionValue, ModelProto, NodeProto, ValueInfoProto};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use tensor::{Elem, ExternalFiles};
use tfc_ir::{Dim, Graph, MappedFile, TensorType};

#[derive(Clone, Debug, Default)]
pub struct OnnxOptions {
    pub max_batch: u64,
    /// The largest value of every symbolic dimension other than the batch (default 512).
    pub max_sequence: Option<u64>,
    /// Symbolic input dimensions fixed to a value (`--dim NAME=VALUE`), by their ONNX name.
    pub dims: BTreeMap<String, u64>,
    /// Graph inputs given a value at compile time, which then are constants of the graph (e.g. the shape or axes
    /// inputs of ONNX's test models, which tfc needs to know to compile).
    pub constants: BTreeMap<String, tfc_ir::Tensor>,
}

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{}: {message}", file.display())]
    Model { file: PathBuf, message: String },
    #[error("{}: node `{node}` ({op_type}): {message}", file.display())]
    Node { file: PathBuf, node: String, op_type: String, message: String },
    #[error(
        "{}: {} operator(s) that tfc does not support (see docs/onnx.md for the supported list):\n{}",
        file.display(), ops.len(), ops.iter().map(|o| format!("  {o}")).collect::<Vec<_>>().join("\n")
    )]
    Unsupported { file: PathBuf, ops: Vec<String> },
}

impl OnnxError {
    fn model(file: &Path, message: impl Into<String>) -> OnnxError {
        OnnxError::Model { file: file.to_path_buf(), message: message.into() }
    }
}

/// The model file of `path`: itself, or `model.onnx` in a folder.
pub fn model_file(path: &Path) -> PathBuf {
    if path.is_dir() { path.join("model.onnx") } else { path.to_path_buf() }
}

/// Whether `path` is an ONNX model: a `.onnx` file, or a folder holding `model.onnx`.
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) || (path.is_dir() && path.join("model.onnx").is_file())
}

/// `Bytes` over a memory map, so that prost's byte fields are slices of the file.
struct MapBytes(Arc<MappedFile>);
impl AsRef<[u8]> for MapBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

pub fn import(path: &Path, opts: &OnnxOptions) -> Result<Graph, OnnxError> {
    let file = model_file(path);
    let map = MappedFile::open(&file).map_err(|e| OnnxError::model(&file, format!("cannot read: {e}")))?;
    let model = ModelProto::decode(Bytes::from_owner(MapBytes(map.clone()))).map_err(|e| {
        OnnxError::model(&file, format!("not a valid ONNX protobuf ({e}); the file is truncated or not an ONNX model"))
    })?;
    let opsets = opsets(&file, &model)?;
    let onnx_graph = model.graph.as_ref().ok_or_else(|| OnnxError::model(&file, "the model has no graph"))?;
    let order = topological_order(&onnx_graph.node).map_err(|m| OnnxError::model(&file, m))?;
    let functions: HashSet<(&str, &str)> = model.functions.iter().map(|f| (f.domain.as_str(), f.name.as_str())).collect();
    let mut unsupported = Vec::new();
    list_unsupported(&onnx_graph.node, &opsets, &functions, &mut unsupported);
    if !unsupported.is_empty() {
        return Err(OnnxError::Unsupported { file, ops: unsupported });
    }

    let mut b = Builder::new();
    let mut scope = Scope::new(None);
    let mut external = ExternalFiles::new(&file);
    for t in &onnx_graph.initializer {
        let loaded = tensor::load(t, &map, &mut external)
            .map_err(|m| OnnxError::model(&file, format!("initializer `{}`: {m}", t.name)))?;
        scope.values.insert(t.name.clone(), Value::Known(Rc::new(Known::from_loaded(loaded))));
    }
    for input in &onnx_graph.input {
        if scope.values.contains_key(&input.name) {
            continue; // an initializer with a default value: tfc takes the default
        }
        if let Some(t) = opts.constants.get(&input.name) {
            let elem = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).map_or(Elem::FLOAT, |t| Elem(t.elem_type));
            scope.values.insert(input.name.clone(), Value::Known(Rc::new(Known::from_tensor(elem, t))));
            continue;
        }
        let (elem, shape) = input_type(&mut b.graph, input, opts).map_err(|m| OnnxError::model(&file, format!("input `{}`: {m}", input.name)))?;
        let dtype = elem.dtype().map_err(|m| OnnxError::model(&file, format!("input `{}`: {m}", input.name)))?;
        let id = b.graph.input(&input.name, TensorType::new(dtype, shape), None);
        b.claim(&input.name);
        scope.values.insert(input.name.clone(), Value::Node { id, elem });
    }

    let mut env = Env { opsets: &opsets, external: &mut external, model: &map };
    lower::lower_nodes(&mut b, &onnx_graph.node, &order, &mut scope, &mut env).map_err(|e| {
        let node = &onnx_graph.node[e.index];
        OnnxError::Node { file: file.clone(), node: node.name.clone(), op_type: node.op_type.clone(), message: e.message }
    })?;

    for output in &onnx_graph.output {
        let value = scope
            .get(&output.name)
            .ok_or_else(|| OnnxError::model(&file, format!("graph output `{}` is produced by no node", output.name)))?;
        let id = b.output_node(value, &output.name).map_err(|m| OnnxError::model(&file, format!("graph output `{}`: {m}", output.name)))?;
        b.graph.output(&output.name, id);
    }
    let mut graph = b.graph;
    graph.metadata.insert("architecture".into(), "onnx".into());
    graph.metadata.insert("source".into(), file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()));
    if !model.producer_name.is_empty() {
        graph.metadata.insert("onnx_producer".into(), model.producer_name.clone());
    }
    Ok(graph)
}

/// One line for each node, in `nodes` and in the graphs of their attributes (the bodies of If, Loop and Scan), whose
/// op tfc does not lower at the model's opset.
fn list_unsupported(nodes: &[NodeProto], opsets: &BTreeMap<String, i64>, functions: &HashSet<(&str, &str)>, found: &mut Vec<String>) {
    for n in nodes {
        let opset = opsets.get(domain(n)).copied().unwrap_or(0);
        let why = match lower::support(domain(n), &n.op_type, opset) {
            _ if functions.contains(&(n.domain.as_str(), n.op_type.as_str())) => Some(String::new()),
            Support::Yes => None,
            Support::No => Some(String::new()),
            Support::From(v) => Some(format!(
                ": tfc implements this op as defined from opset {v} on; convert the model (onnx.version_converter.convert_version(model, {v}))"
            )),
        };
        if let Some(why) = why {
            found.push(format!("{} (node `{}`, domain {}, opset {opset}){why}", n.op_type, n.name, domain(n)));
        }
        for body in n.attribute.iter().filter_map(|a| a.g.as_deref()) {
            list_unsupported(&body.node, opsets, functions, found);
        }
    }
}

pub(crate) fn domain(n: &NodeProto) -> &str {
    if n.domain.is_empty() { "ai.onnx" } else { &n.domain }
}

fn opsets(file: &Path, model: &ModelProto) -> Result<BTreeMap<String, i64>, OnnxError> {
    let opsets: BTreeMap<String, i64> = model
        .opset_import
        .iter()
        .map(|o| (if o.domain.is_empty() { "ai.onnx".to_string() } else { o.domain.clone() }, o.version))
        .collect();
    // Which ops a model's opset allows, and what they mean there, is checked per node (`lower::support`).
    if opsets.contains_key("ai.onnx") || model.graph.as_ref().is_some_and(|g| g.node.is_empty()) {
        Ok(opsets)
    } else {
        Err(OnnxError::model(file, "the model imports no opset of the default domain (ai.onnx)"))
    }
}

/// The nodes in an order where each comes after the producers of its inputs (ONNX asks for that order; a model that
/// breaks it is still read), or an error naming a node on a cycle.
pub(crate) fn topological_order(nodes: &[NodeProto]) -> Result<Vec<usize>, String> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o, i).is_some() {
                return Err(format!("value `{o}` is produced by more than one node"));
            }
        }
    }
    // 0 unvisited, 1 on the current path, 2 done. Iterative depth-first search: models have 10⁴–10⁵ nodes.
    let mut state = vec![0u8; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    for root in 0..nodes.len() {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            let inputs = &nodes[n].input;
            if *next < inputs.len() {
                let input = &inputs[*next];
                *next += 1;
                if let Some(&p) = producer.get(input.as_str()) {
                    match state[p] {
                        0 => {
                            state[p] = 1;
                            stack.push((p, 0));
                        }
                        1 => {
                            let name = if nodes[p].name.is_empty() { &nodes[p].op_type } else { &nodes[p].name };
                            return Err(format!("the graph has a cycle through node `{name}` (value `{input}`)"));
                        }
                        _ => {}
                    }
                }
            } else {
                state[n] = 2;
                order.push(n);
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// The tfc symbol an ONNX dimension name maps to, and its maximum.
fn symbol_for(name: &str, opts: &OnnxOptions) -> (String, u64) {
    let max_sequence = opts.max_sequence.unwrap_or(512);
    match name {
        "batch" | "batch_size" | "N" => ("batch".into(), opts.max_batch),
        "sequence" | "sequence_length" | "seq_len" | "seq_length" => ("sequence".into(), max_sequence),
        other => {
            let clean: String = other.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
            let clean = if clean.starts_with(|c: char| c.is_ascii_alphabetic()) { clean } else { format!("d_{clean}") };
            (clean, max_sequence)
        }
    }
}

fn input_type(graph: &mut Graph, input: &ValueInfoProto, opts: &OnnxOptions) -> Result<(Elem, Vec<Dim>), String> {
    let t = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or("is not a tensor (sequence, map and optional inputs are not supported)")?;
    let shape = t.shape.as_ref().ok_or("has no shape; give the model input shapes (onnx.tools.update_model_dims)")?;
    let dims = shape
        .dim
        .iter()
        .enumerate()
        .map(|(axis, d)| match &d.value {
            Some(DimensionValue::DimValue(v)) if *v >= 0 => Ok(Dim::from(*v as u64)),
            Some(DimensionValue::DimParam(p)) if !p.is_empty() => Ok(match opts.dims.get(p) {
                Some(&v) => Dim::from(v),
                None => {
                    let (sym, max) = symbol_for(p, opts);
                    graph.symbol(&sym, max)
                }
            }),
            _ => Err(format!("axis {axis} has neither a size nor a name; name it in the model, or export with fixed shapes")),
        })
        .collect::<Result<_, _>>()?;
    Ok((Elem(t.elem_type), dims))
}


/// The model at `path`, decoded from a copy in memory (for small models: tests and listings).
fn read_model(path: &Path) -> Result<ModelProto, OnnxError> {
    let file = model_file(path);
    let bytes = std::fs::read(&file).map_err(|e| OnnxError::model(&file, format!("cannot read: {e}")))?;
    ModelProto::decode(bytes.as_slice()).map_err(|e| OnnxError::model(&file, format!("not a valid ONNX protobuf ({e})")))
}

/// The (domain, op type) of every node of the model at `path`, in file order.
pub fn node_ops(path: &Path) -> Result<Vec<(String, String)>, OnnxError> {
    let model = read_model(path)?;
    Ok(model.graph.iter().flat_map(|g| &g.node).map(|n| (domain(n).to_string(), n.op_type.clone())).collect())
}

/// The names of the graph inputs of the model at `path` that are not initializers, in order.
pub fn input_names(path: &Path) -> Result<Vec<String>, OnnxError> {
    let g = read_model(path)?.graph.unwrap_or_default();
    let initializers: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    Ok(g.input.iter().filter(|i| !initializers.contains(i.name.as_str())).map(|i| i.name.clone()).collect())
}

/// A serialized TensorProto (the `.pb` inputs and outputs of ONNX test data) as a host tensor: floats as f32,
/// integers and bool as i64. Returns its name too.
pub fn read_tensor(path: &Path) -> Result<(String, tfc_ir::Tensor), OnnxError> {
    let map = MappedFile::open(path).map_err(|e| OnnxError::model(path, format!("cannot read: {e}")))?;
    let t = proto::TensorProto::decode(Bytes::from_owner(MapBytes(map.clone())))
        .map_err(|e| OnnxError::model(path, format!("not a valid TensorProto ({e})")))?;
    let loaded = tensor::load(&t, &map, &mut ExternalFiles::new(path)).map_err(|m| OnnxError::model(path, m))?;
    let shape = loaded.shape.clone();
    let known = Known::from_loaded(loaded);
    let tensor = match lower::known_values(&known).map_err(|m| OnnxError::model(path, m))? {
        tensor::Values::F32(v) => tfc_ir::Tensor::f32(shape, v),
        tensor::Values::Int(v) => tfc_ir::Tensor::i64(shape, v.iter().map(|d| tensor::dim_int(d).unwrap_or(0)).collect()),
    };
    Ok((t.name, tensor))
}
