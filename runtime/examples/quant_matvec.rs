//! Bandwidth of the matrix-vector kernels (`x · Wᵀ`, one row of x; GPU timestamps) for every block format and the
//! float weights, next to the device's copy bandwidth measured in the same run. Prints JSON;
//! `scripts/bench/quant_matvec_device.sh` runs it on the GPU machine. Arguments, if any, name the weight dtypes to
//! measure (`q4_0 f16`); the default is all of them.
//!
//! The weights are random: blocks of random quants with f16 scales in [0.5, 1), floats in [-1, 1). The kernels' speed
//! does not depend on the values, and quantizing 59 M real values per case would take longer than the measurement.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tfc_compiler::pipeline::WasmTarget;
use tfc_compiler::{CompileOptions, Quiet, compile_graph};
use tfc_ir::quant::BlockFormat;
use tfc_ir::manifest::Requirements;
use tfc_ir::{DType, Dim, Graph, Op, Tensor, TensorType, Weight, WeightData};
use tfc_runtime::{Bundle, Gpu, Session};

const ITERATIONS: usize = 50;

/// Random bytes of `dtype` for a `[rows, cols]` weight, with every f16 scale finite.
fn random_weight(dtype: DType, rows: u64, cols: u64, rng: &mut StdRng) -> Weight {
    let mut bytes = vec![0u8; dtype.bytes(rows * cols) as usize];
    rng.fill(&mut bytes[..]);
    let half = |rng: &mut StdRng| half::f16::from_f32(rng.random_range(0.5..1.0)).to_le_bytes();
    match BlockFormat::of(dtype) {
        Some(f) => {
            for block in bytes.chunks_exact_mut(f.block_bytes) {
                let at = if f.halves_first { 0 } else { f.quant_bytes };
                for i in 0..f.halves {
                    block[at + 2 * i..at + 2 * i + 2].copy_from_slice(&half(rng));
                }
            }
        }
        None => {
            for element in bytes.chunks_exact_mut(dtype.size()) {
                let v: f32 = rng.random_range(-1.0..1.0);
                match dtype {
                    DType::F32 => element.copy_from_slice(&v.to_le_bytes()),
                    DType::F16 => element.copy_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                    DType::BF16 => element.copy_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                    other => panic!("no random {other} weights"),
                }
            }
        }
    }
    Weight { name: "w".into(), dtype, shape: vec![rows, cols], data: WeightData::Owned(Arc::new(bytes)) }
}

/// Bytes copied by one copy of the bandwidth baseline.
const COPY_BYTES: u64 = 256 << 20;

/// A copy of 16 bytes per invocation, 256 invocations per workgroup, workgroups laid out (32768, y).
const COPY_KERNEL: &str = "
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * 32768u + wid.x) * 256u + lid;
    if i < arrayLength(&src) {
        dst[i] = src[i];
    }
}
";

/// Device-to-device copy bandwidth (bytes read + written per second) of `copy_buffer_to_buffer` and of a vec4 copy
/// kernel over `COPY_BYTES`: the wall time of 20 back-to-back copies in one submission, median of 5 after a warm-up.
fn copy_bandwidth() -> (String, f64, f64) {
    let limits = BTreeMap::from([("maxStorageBufferBindingSize".to_string(), COPY_BYTES), ("maxBufferSize".to_string(), COPY_BYTES)]);
    let gpu = Gpu::new(&Requirements { features: Vec::new(), limits }).expect("a GPU");
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let buffer = |label| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: COPY_BYTES, usage, mapped_at_creation: false });
    let (src, dst) = (buffer("src"), buffer("dst"));
    let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("copy"), source: wgpu::ShaderSource::Wgsl(COPY_KERNEL.into()) });
    let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("copy"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("copy"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: src.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: dst.as_entire_binding() },
        ],
    });
    let workgroups = COPY_BYTES / 16 / 256;
    let time = |record: &dyn Fn(&mut wgpu::CommandEncoder)| -> f64 {
        let mut samples: Vec<f64> = (0..6)
            .map(|_| {
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                for _ in 0..20 {
                    record(&mut encoder);
                }
                let started = std::time::Instant::now();
                gpu.queue.submit([encoder.finish()]);
                gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
                started.elapsed().as_secs_f64() / 20.0
            })
            .skip(1)
            .collect();
        samples.sort_by(f64::total_cmp);
        (2 * COPY_BYTES) as f64 / samples[samples.len() / 2]
    };
    let buffer_copy = time(&|e| e.copy_buffer_to_buffer(&src, 0, &dst, 0, Some(COPY_BYTES)));
    let kernel_copy = time(&|e| {
        let mut pass = e.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(32768, (workgroups / 32768) as u32, 1);
    });
    (gpu.info.name.clone(), buffer_copy, kernel_copy)
}

/// Compiles `graph` and returns the median GPU time (ms) of each dispatch over `ITERATIONS` profiled runs.
fn time(graph: Graph, inputs: &BTreeMap<String, Tensor>, dir: &std::path::Path) -> Vec<f64> {
    let opts = CompileOptions { max_binding_size: 1 << 30, wasm: WasmTarget::Off, ..Default::default() };
    compile_graph(graph, None, dir, &opts, &mut Quiet).expect("the benchmark graph compiles");
    let mut session = Session::new(&Bundle::open(dir).unwrap()).unwrap();
    for _ in 0..5 {
        session.run(inputs).unwrap();
    }
    let mut per_dispatch: Vec<Vec<f64>> = Vec::new();
    for _ in 0..ITERATIONS {
        let (_, profile) = session.profile(inputs).unwrap();
        assert!(!profile.dispatch_ms.is_empty(), "the adapter has no timestamp queries inside passes");
        per_dispatch.resize(profile.dispatch_ms.len(), Vec::new());
        for (all, ms) in per_dispatch.iter_mut().zip(profile.dispatch_ms) {
            all.push(ms);
        }
    }
    per_dispatch
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(0);

    let (adapter, buffer_copy, kernel_copy) = copy_bandwidth();
    let copy_bytes_per_s = buffer_copy.max(kernel_copy);
    eprintln!("copy: buffer copy {:.0} GB/s, copy kernel {:.0} GB/s", buffer_copy / 1e9, kernel_copy / 1e9);

    let every = DType::BLOCK_FORMATS.into_iter().chain([DType::F16, DType::BF16, DType::F32]);
    let named: Vec<DType> = std::env::args().skip(1).map(|a| DType::from_name(&a).unwrap_or_else(|| panic!("no dtype {a}"))).collect();
    let dtypes: Vec<DType> = if named.is_empty() { every.collect() } else { named };
    let mut cases = Vec::new();
    for (rows, cols) in [(4096u64, 4096u64), (14336, 4096), (4096, 14336)] {
        for &dtype in &dtypes {
            let mut g = Graph::new();
            let x = g.input("x", TensorType::new(DType::F32, vec![Dim::from(1u64), Dim::from(cols)]), None);
            let w = random_weight(dtype, rows, cols, &mut rng);
            let weight_bytes = w.bundle_len();
            let w = g.weight(w);
            let y = g.add("y", Op::MatMul { transpose_a: false, transpose_b: true }, &[x, w]).unwrap();
            g.output("y", y);
            let values: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let inputs = BTreeMap::from([("x".to_string(), Tensor::f32(vec![1, cols as usize], values))]);
            let ms = time(g, &inputs, &dir.path().join(format!("{dtype}-{rows}x{cols}")));
            let bytes = weight_bytes + 4 * (rows + cols);
            let bytes_per_s = bytes as f64 / (ms[0] * 1e-3);
            eprintln!("{dtype} {rows}×{cols}: {:.1} µs, {:.0} GB/s, {:.2} of copy", ms[0] * 1e3, bytes_per_s / 1e9, bytes_per_s / copy_bytes_per_s);
            cases.push(json!({
                "dtype": dtype, "rows": rows, "cols": cols, "bytes": bytes, "median_us": ms[0] * 1e3,
                "bytes_per_s": bytes_per_s, "fraction_of_copy": bytes_per_s / copy_bytes_per_s,
            }));
        }
    }
    let result = json!({
        "adapter": adapter,
        "iterations": ITERATIONS,
        "copy": { "bytes": 2 * COPY_BYTES, "buffer_copy_bytes_per_s": buffer_copy, "kernel_bytes_per_s": kernel_copy, "bytes_per_s": copy_bytes_per_s },
        "matvec": cases,
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
}
