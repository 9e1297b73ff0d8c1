//! Graph building and kernel checks shared by the tests (each test binary uses part of them).
#![allow(dead_code)]

use std::sync::Arc;
use tfc_codegen_wgsl::{Kernel, kernel};
use tfc_ir::{DType, Dim, Env, Graph, NodeId, Op, TensorType, Weight, WeightData};

pub fn c(v: u64) -> Dim {
    Dim::from(v)
}

pub fn input(g: &mut Graph, name: &str, dtype: DType, dims: &[Dim]) -> NodeId {
    g.input(name, TensorType::new(dtype, dims.to_vec()), None)
}

/// A zero-filled weight of any dtype.
pub fn weight(g: &mut Graph, name: &str, dtype: DType, shape: &[u64]) -> NodeId {
    let bytes = shape.iter().product::<u64>() as usize * dtype.size();
    g.weight(Weight {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        data: WeightData::Owned(Arc::new(vec![0u8; bytes])),
    })
}

pub fn add(g: &mut Graph, op: Op, inputs: &[NodeId]) -> NodeId {
    let name = format!("node{}", g.len());
    g.add(name, op, inputs).unwrap()
}

pub fn env(pairs: &[(&str, u64)]) -> Env {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

/// What a kernel evaluates to for one set of symbol values.
pub struct Evaluated {
    pub kernel: Kernel,
    pub params: Vec<u64>,
    pub workgroups: u64,
}

/// The node's kernel (which `kernel` validated already), checked against WebGPU's default limits, with its params
/// and workgroup count evaluated under `env`.
pub fn check(g: &Graph, node: NodeId, env: &Env) -> Evaluated {
    let k = kernel(g, node).unwrap_or_else(|e| panic!("{e}")).expect("a kernel");
    assert_eq!(k.entry_point, "main");
    assert!(k.workgroup_size >= 1 && k.workgroup_size <= 256, "{} invocations per workgroup", k.workgroup_size);
    assert!(!k.name.is_empty() && k.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "name {:?}", k.name);
    check_limits(&k, g.inputs_of(node).len());
    let params: Vec<u64> = k.params.iter().map(|p| p.eval(env).unwrap()).collect();
    assert!(params.iter().all(|&p| p <= u32::MAX as u64), "params {params:?} do not fit u32");
    let workgroups = k.workgroups.eval(env).unwrap();
    Evaluated { kernel: k, params, workgroups }
}

/// Bindings as the runtime expects them, at most 8 storage buffers and at most 16 KiB of workgroup memory, and a
/// params uniform big enough for the params.
fn check_limits(k: &Kernel, operands: usize) {
    let module = naga::front::wgsl::parse_str(&k.wgsl).unwrap();
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    let mut storage = 0;
    let mut workgroup_bytes = 0;
    for (_, var) in module.global_variables.iter() {
        match var.space {
            naga::AddressSpace::Storage { access } => {
                let b = var.binding.as_ref().unwrap();
                assert_eq!(b.group, 0);
                let store = access.contains(naga::StorageAccess::STORE);
                assert_eq!(store, b.binding as usize == operands, "binding {} of {}", b.binding, k.name);
                storage += 1;
            }
            naga::AddressSpace::Uniform => {
                let b = var.binding.as_ref().unwrap();
                assert_eq!((b.group, b.binding as usize), (0, operands + 1));
                let words = layouter[var.ty].size as usize / 16;
                assert_eq!(words, k.params.len().div_ceil(4).max(1), "params uniform of {}", k.name);
            }
            naga::AddressSpace::WorkGroup => workgroup_bytes += layouter[var.ty].size,
            _ => {}
        }
    }
    assert_eq!(storage, operands + 1);
    assert!(storage <= 8);
    assert!(workgroup_bytes <= 16384, "{} uses {workgroup_bytes} bytes of workgroup memory", k.name);
}

/// Adds a node and checks its kernel.
pub fn run(g: &mut Graph, op: Op, inputs: &[NodeId], env: &Env) -> Evaluated {
    let id = add(g, op, inputs);
    check(g, id, env)
}
