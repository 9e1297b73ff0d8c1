//! Token sampling on the GPU: the distribution it draws from a known logit vector, against one computed here
//! independently (sorting, no bisection), and its agreement with the interpreter draw by draw.

use std::collections::BTreeMap;
use tfc_compiler::{CompileOptions, Quiet, compile_graph};
use tfc_ir::interp::SampleSettings;
use tfc_ir::{DType, Dim, Graph, Op, Tensor, TensorType};
use tfc_runtime::{Bundle, Session};

const VOCAB: usize = 300;
const DRAWS: usize = 4000;

/// Logits with a spread of likely and unlikely tokens, some equal.
fn logits() -> Vec<f32> {
    (0..VOCAB).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 8.0 + if i % 50 == 0 { 3.0 } else { 0.0 }).collect()
}

/// The distribution `Op::Sample` defines, computed the direct way: sort by weight, cut, normalise.
fn expected(logits: &[f32], s: &SampleSettings, penalized: &[usize]) -> Vec<f64> {
    let l: Vec<f64> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let p = s.repeat_penalty as f64;
            if penalized.contains(&i) && p > 0.0 && p != 1.0 { if l > 0.0 { l as f64 / p } else { l as f64 * p } } else { l as f64 }
        })
        .collect();
    let max = l.iter().cloned().fold(f64::MIN, f64::max);
    let w: Vec<f64> = l.iter().map(|&x| ((x - max) / s.temperature as f64).exp()).collect();
    let mut sorted = w.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut floor = s.min_p as f64;
    if s.top_k > 0 {
        floor = floor.max(sorted[s.top_k as usize - 1]);
    }
    if s.top_p > 0.0 && s.top_p < 1.0 {
        let total: f64 = sorted.iter().filter(|&&x| x >= floor).sum();
        let mut running = 0.0;
        for &x in sorted.iter().filter(|&&x| x >= floor) {
            running += x;
            if running >= s.top_p as f64 * total {
                floor = x;
                break;
            }
        }
    }
    let total: f64 = w.iter().filter(|&&x| x >= floor).sum();
    w.iter().map(|&x| if x >= floor { x / total } else { 0.0 }).collect()
}

#[test]
fn gpu_sampling_draws_the_defined_distribution_and_agrees_with_the_interpreter() {
    let mut g = Graph::new();
    let row = |d: usize| Dim::from(d);
    let l = g.input("logits", TensorType::new(DType::F32, vec![row(DRAWS), row(VOCAB)]), None);
    let s = g.input("settings", TensorType::new(DType::F32, vec![row(5)]), None);
    let u = g.input("uniform", TensorType::new(DType::F32, vec![row(DRAWS)]), None);
    let p = g.input("penalized", TensorType::new(DType::I32, vec![row(8)]), None);
    let y = g.add("sample", Op::Sample, &[l, s, u, p]).unwrap();
    g.output("token", y);
    let dir = tempfile::tempdir().unwrap();
    compile_graph(g.clone(), None, &dir.path().join("b"), &CompileOptions::default(), &mut Quiet).unwrap();
    let mut session = Session::new(&Bundle::open(&dir.path().join("b")).unwrap()).unwrap();

    let row_logits = logits();
    let penalized = [0usize, 50, 100, 150, 200];
    let mut listed: Vec<i32> = penalized.iter().map(|&t| t as i32).collect();
    listed.resize(8, i32::MAX);
    let settings = [
        SampleSettings { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0 },
        SampleSettings { temperature: 0.7, top_k: 20, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0 },
        SampleSettings { temperature: 1.3, top_k: 0, top_p: 0.9, min_p: 0.0, repeat_penalty: 1.0 },
        SampleSettings { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.05, repeat_penalty: 1.0 },
        SampleSettings { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.02, repeat_penalty: 1.5 },
        SampleSettings { temperature: 0.0, top_k: 0, top_p: 0.0, min_p: 0.0, repeat_penalty: 1.5 },
    ];
    for s in settings {
        // Stratified uniform numbers: the counts then follow the distribution to within one draw per token.
        let uniform: Vec<f32> = (0..DRAWS).map(|i| (i as f32 + 0.5) / DRAWS as f32).collect();
        let inputs = BTreeMap::from([
            ("logits".to_string(), Tensor::f32(vec![DRAWS, VOCAB], row_logits.repeat(DRAWS))),
            ("settings".to_string(), Tensor::f32(vec![5], s.to_vec())),
            ("uniform".to_string(), Tensor::f32(vec![DRAWS], uniform)),
            ("penalized".to_string(), Tensor::i32(vec![8], listed.clone())),
        ]);
        let gpu = session.run(&inputs).unwrap()[0].1.to_i64();
        let oracle = tfc_ir::interp::run(&g, &inputs).unwrap()[0].1.to_i64();
        let agree = gpu.iter().zip(&oracle).filter(|(a, b)| a == b).count();
        assert!(agree * 1000 >= DRAWS * 999, "{s:?}: the GPU and the interpreter agree on {agree} of {DRAWS} draws");

        let want = if s.temperature > 0.0 {
            expected(&row_logits, &s, &penalized)
        } else {
            let best = tfc_ir::interp::sample(&row_logits, &s, 0.5, &penalized.map(|t| t as i64));
            (0..VOCAB).map(|i| (i == best) as u8 as f64).collect()
        };
        let mut counts = vec![0f64; VOCAB];
        for &t in &gpu {
            counts[t as usize] += 1.0 / DRAWS as f64;
        }
        let distance: f64 = counts.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0;
        let kept = want.iter().filter(|&&p| p > 0.0).count();
        println!("{s:?}: {kept} tokens kept, total variation {distance:.4}, GPU = interpreter on {agree}/{DRAWS}");
        assert!(distance <= (kept as f64 / DRAWS as f64).max(0.002), "{s:?}: total variation {distance:.4}");
        assert!(gpu.iter().all(|&t| want[t as usize] > 0.0), "{s:?}: drew a token outside the kept set");
    }
}

/// The uniform numbers a seed gives, as the JS runtime must reproduce them (runtime/js/test/fixtures/chacha8.json,
/// checked there by generate.test.mjs): 70 draws cross ChaCha's 16-word blocks and rand_chacha's 4-block buffer.
#[test]
fn seeded_uniform_numbers_match_the_js_runtime_fixture() {
    use rand::{Rng, SeedableRng};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js/test/fixtures/chacha8.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let seed: u64 = case["seed"].as_str().unwrap().parse().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let draws: Vec<f32> = (0..70).map(|_| rng.random()).collect();
        let want: Vec<f32> = case["uniform"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(draws, want, "seed {seed}: {}", serde_json::to_string(&draws).unwrap());
    }
}
