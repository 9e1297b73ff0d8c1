//! Bandwidth of the quantized matrix-vector kernels (`x · Wᵀ`, one row of x) next to a copy kernel in the same run,
//! from GPU timestamps. Prints JSON; `scripts/bench/quant_matvec_device.sh` runs it on the GPU machine.
//!
//! The weights are random blocks (random quants, f16 scales in [0.5, 1)): the kernels' speed does not depend on the
//! values, and quantizing 59 M real values per case would take longer than the measurement.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tfc_compiler::pipeline::WasmTarget;
use tfc_compiler::{CompileOptions, Quiet, compile_graph};
use tfc_ir::quant::BlockFormat;
use tfc_ir::{DType, Dim, Graph, Op, Tensor, TensorType, UnaryOp, Weight, WeightData};
use tfc_runtime::{Bundle, Session};

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
            assert_eq!(dtype, DType::F16);
            for h in bytes.chunks_exact_mut(2) {
                h.copy_from_slice(&half(rng));
            }
        }
    }
    Weight { name: "w".into(), dtype, shape: vec![rows, cols], data: WeightData::Owned(Arc::new(bytes)) }
}

/// Compiles `graph` and returns the median GPU time (ms) of each dispatch over `ITERATIONS` profiled runs.
fn time(graph: Graph, inputs: &BTreeMap<String, Tensor>, dir: &std::path::Path) -> (String, Vec<f64>) {
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
    let medians = per_dispatch
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    (session.adapter_name().to_string(), medians)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(0);

    // The copy baseline: y = −x over 64 Mi f32 (256 MiB read, 256 MiB written).
    let n = 64u64 << 20;
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, vec![Dim::from(n)]), None);
    let y = g.add("y", Op::Unary(UnaryOp::Neg), &[x]).unwrap();
    g.output("y", y);
    let inputs = BTreeMap::from([("x".to_string(), Tensor::f32(vec![n as usize], vec![1.0; n as usize]))]);
    let (adapter, ms) = time(g, &inputs, &dir.path().join("copy"));
    let copy_bytes_per_s = (2 * 4 * n) as f64 / (ms[0] * 1e-3);

    let mut cases = Vec::new();
    for (rows, cols) in [(4096u64, 4096u64), (14336, 4096), (4096, 14336)] {
        for dtype in [DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::F16] {
            let mut g = Graph::new();
            let x = g.input("x", TensorType::new(DType::F32, vec![Dim::from(1u64), Dim::from(cols)]), None);
            let w = random_weight(dtype, rows, cols, &mut rng);
            let weight_bytes = w.bundle_len();
            let w = g.weight(w);
            let y = g.add("y", Op::MatMul { transpose_a: false, transpose_b: true }, &[x, w]).unwrap();
            g.output("y", y);
            let values: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let inputs = BTreeMap::from([("x".to_string(), Tensor::f32(vec![1, cols as usize], values))]);
            let (_, ms) = time(g, &inputs, &dir.path().join(format!("{dtype}-{rows}x{cols}")));
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
        "copy": { "bytes": 2 * 4 * n, "median_us": ms[0] * 1e3, "bytes_per_s": copy_bytes_per_s },
        "matvec": cases,
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
}
