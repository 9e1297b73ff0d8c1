//! Lowers a graph to the manifest's buffers, shaders and dispatch schedule: one kernel per op (reshapes are views),
//! activation buffers shared between values whose lifetimes don't overlap.

use std::collections::BTreeMap;
use tfc_codegen_wgsl::Kernel;
use tfc_ir::manifest::{Buffer, BufferKind, Dispatch, IoDecl, Shader};
use tfc_ir::{Env, Expr, Graph, NodeId, Op};

/// The schedule of a graph, before weights are written.
pub struct Schedule {
    pub buffers: Vec<Buffer>,
    /// Weight index → buffer index.
    pub weight_buffers: BTreeMap<usize, usize>,
    pub inputs: Vec<IoDecl>,
    pub outputs: Vec<IoDecl>,
    pub dispatches: Vec<Dispatch>,
    /// Distinct shader texts with their kernel names, in first-use order; `Dispatch::shader` indexes this.
    pub shaders: Vec<(Shader, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Graph(#[from] tfc_ir::GraphError),
    #[error(transparent)]
    Codegen(#[from] tfc_codegen_wgsl::CodegenError),
}

pub fn schedule(graph: &Graph) -> Result<Schedule, ScheduleError> {
    let order = graph.topo_order()?;
    let position: BTreeMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();

    // Views share the storage of the value they reshape; a cache write's result is a view of its state.
    let mut root: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    for &id in &order {
        let r = match graph.node(id).op {
            Op::Reshape { .. } | Op::CacheWrite { .. } => root[&graph.inputs_of(id)[0]],
            _ => id,
        };
        root.insert(id, r);
    }
    // Last position at which each storage root is read; graph outputs live to the end.
    let mut last_use: BTreeMap<NodeId, usize> = BTreeMap::new();
    for &id in &order {
        for i in graph.inputs_of(id) {
            let e = last_use.entry(root[&i]).or_default();
            *e = (*e).max(position[&id]);
        }
    }
    for (_, o) in &graph.outputs {
        last_use.insert(root[o], usize::MAX);
    }

    let mut buffers: Vec<Buffer> = Vec::new();
    let mut storage: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut weight_buffers = BTreeMap::new();
    let mut inputs = Vec::new();
    let mut dispatches = Vec::new();
    let mut shaders: Vec<(Shader, String)> = Vec::new();
    // Activation buffers free for reuse, and (release position, buffer) of those in use.
    let mut free: Vec<usize> = Vec::new();
    let mut busy: Vec<(usize, usize)> = Vec::new();
    let at_max: Env = graph.symbols.iter().map(|s| (s.name.clone(), s.max)).collect();
    let needed_by = output_cones(graph);

    for &id in &order {
        let node = graph.node(id);
        let bytes = Expr::product(vec![node.ty.numel().to_expr(), Expr::Const(node.ty.dtype.size() as u64)]);
        match &node.op {
            Op::Input { name, default } => {
                storage.insert(id, buffers.len());
                inputs.push(IoDecl {
                    name: name.clone(),
                    dtype: node.ty.dtype,
                    shape: node.ty.shape.iter().map(Expr::from).collect(),
                    buffer: buffers.len(),
                    default: *default,
                });
                buffers.push(Buffer { kind: BufferKind::Input, size: bytes });
                continue;
            }
            Op::Weight(w) => {
                storage.insert(id, buffers.len());
                weight_buffers.insert(w.0, buffers.len());
                let padded = graph.weights[w.0].bundle_len();
                buffers.push(Buffer { kind: BufferKind::Weight, size: Expr::Const(padded) });
                continue;
            }
            Op::State { .. } => {
                storage.insert(id, buffers.len());
                buffers.push(Buffer { kind: BufferKind::State, size: bytes });
                continue;
            }
            Op::Reshape { .. } => continue,
            Op::CacheWrite { .. } => {
                // Writes into its state's buffer in place: the state is the output binding, not an operand.
                let new = graph.inputs_of(id)[1];
                let kernel = tfc_codegen_wgsl::kernel(graph, id)?.expect("cache writes have a kernel");
                let shader = add_shader(&mut shaders, kernel.clone());
                dispatches.push(Dispatch {
                    node: node.name.clone(),
                    op: node.op.kind().to_string(),
                    shader,
                    bindings: vec![storage[&root[&new]], storage[&root[&id]]],
                    params: kernel.params,
                    workgroups: kernel.workgroups,
                    needed_by: needed_by[&id].clone(),
                });
                continue;
            }
            _ => {}
        }

        let here = position[&id];
        busy.retain(|&(release, b)| {
            let done = release < here;
            if done {
                free.push(b);
            }
            !done
        });
        let size_at_max = |e: &Expr| e.eval(&at_max).unwrap_or(u64::MAX);
        let need = size_at_max(&bytes);
        // Best fit: the smallest free buffer that is big enough, else the largest one (which then grows).
        free.sort_by_key(|&b| (size_at_max(&buffers[b].size), b));
        let pick = free.iter().position(|&b| size_at_max(&buffers[b].size) >= need).or(free.len().checked_sub(1));
        let buffer = match pick {
            Some(i) => {
                let b = free.remove(i);
                buffers[b].size = Expr::max(vec![buffers[b].size.clone(), bytes]);
                b
            }
            None => {
                buffers.push(Buffer { kind: BufferKind::Activation, size: bytes });
                buffers.len() - 1
            }
        };
        storage.insert(id, buffer);
        busy.push((last_use.get(&id).copied().unwrap_or(here), buffer));

        let kernel: Kernel = tfc_codegen_wgsl::kernel(graph, id)?.expect("every op other than inputs, weights and reshapes has a kernel");
        let shader = add_shader(&mut shaders, kernel.clone());
        let mut bindings: Vec<usize> = graph.inputs_of(id).iter().map(|i| storage[&root[i]]).collect();
        bindings.push(buffer);
        dispatches.push(Dispatch {
            node: node.name.clone(),
            op: node.op.kind().to_string(),
            shader,
            bindings,
            params: kernel.params,
            workgroups: kernel.workgroups,
            needed_by: needed_by.get(&id).cloned().unwrap_or_default(),
        });
    }

    let outputs = graph
        .outputs
        .iter()
        .map(|(name, id)| {
            let ty = &graph.node(*id).ty;
            IoDecl {
                name: name.clone(),
                dtype: ty.dtype,
                shape: ty.shape.iter().map(Expr::from).collect(),
                buffer: storage[&root[id]],
                default: None,
            }
        })
        .collect();
    Ok(Schedule { buffers, weight_buffers, inputs, outputs, dispatches, shaders })
}

/// For every node, the indices of the graph outputs that depend on it.
fn output_cones(graph: &Graph) -> BTreeMap<NodeId, Vec<usize>> {
    let mut cones: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (index, (_, output)) in graph.outputs.iter().enumerate() {
        let mut stack = vec![*output];
        while let Some(id) = stack.pop() {
            let users = cones.entry(id).or_default();
            if users.last() != Some(&index) {
                users.push(index);
                stack.extend(graph.inputs_of(id));
            }
        }
    }
    cones
}

/// The index of the kernel's shader, added if no earlier kernel had the same text.
fn add_shader(shaders: &mut Vec<(Shader, String)>, kernel: Kernel) -> usize {
    if let Some(s) = shaders.iter().position(|(_, text)| *text == kernel.wgsl) {
        return s;
    }
    let file = format!("shaders/{}-{}.wgsl", kernel.name, &crate::writer::sha256_hex(kernel.wgsl.as_bytes())[..12]);
    shaders.push((Shader { file, entry_point: kernel.entry_point, workgroup_size: kernel.workgroup_size }, kernel.wgsl));
    shaders.len() - 1
}
