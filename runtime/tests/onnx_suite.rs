//! The ONNX backend node test suite (onnx 1.22.0, installed by fixtures/scripts/install_onnx_node_tests.sh) through
//! tfc's importer, a bundle and the native runtime, compared with the suite's tolerances (rtol 1e-3, atol 1e-7, as
//! onnx's backend runner). Writes docs/onnx-coverage.md. A case tfc cannot import must fail with the
//! unsupported-operator error or another clear import error, never run to a wrong answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tfc_compiler::onnx::{self, OnnxError, OnnxOptions};
use tfc_compiler::pipeline::WasmTarget;
use tfc_compiler::{CompileOptions, Quiet, compile_graph};
use tfc_ir::Tensor;
use tfc_ir::manifest::Requirements;
use tfc_runtime::{Bundle, Gpu, Session};

/// The pass rate over default-domain, non-training cases this build reaches; raise it as ops land.
const MIN_PASS_RATE: f64 = 0.94;
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;
/// Cases whose stored outputs are less precise than ATOL, with the absolute tolerance they are compared with and why
/// (onnx's loader takes such an override from a case's data.json; these cases have none).
const ATOL_OVERRIDES: &[(&str, f64, &str)] = &[
    ("test_dft_inverse", 2e-6, IFFT_COMPLEX64),
    ("test_dft_inverse_opset19", 2e-6, IFFT_COMPLEX64),
];
const IFFT_COMPLEX64: &str = "made by numpy's ifft in complex64, whose imaginary parts of the bins that are exactly real are off by up to \
     1.5e-6 (the exact transform, in f64, is farther than 1e-7 from them in 10 places)";
/// Ops of the training domain, which an inference compiler leaves out of its figure.
const TRAINING_DOMAIN: &str = "ai.onnx.preview.training";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Outcome {
    Pass,
    /// Refused with the unsupported-operator error.
    Unsupported,
    /// Refused with another import error (a dtype tfc cannot represent, a shape input that is not constant, …).
    Refused,
    /// Imported, but failed to compile or run.
    Failed,
    /// Ran and gave numbers outside the tolerance.
    Wrong,
}

fn suite_dir() -> PathBuf {
    let dir = tfc_fixtures::root().join(".cache/onnx-node-tests/node");
    assert!(dir.is_dir(), "{} is missing: run fixtures/scripts/install_onnx_node_tests.sh", dir.display());
    dir
}

fn snake(op: &str) -> String {
    let mut s = String::new();
    for (i, c) in op.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 && !op[..i].ends_with(|p: char| p.is_ascii_uppercase()) {
            s.push('_');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

/// The op a case tests: of all the suite's op types, the one whose name is the longest prefix of the case name,
/// else the case's first op.
fn op_under_test(case: &str, ops: &[(String, String)], all_ops: &BTreeSet<String>) -> String {
    let name = case.trim_start_matches("test_");
    all_ops
        .iter()
        .filter(|op| name.starts_with(&snake(op)) || name.replace('_', "").starts_with(&op.to_ascii_lowercase()))
        .max_by_key(|op| op.len())
        .or(ops.first().map(|(_, op)| op))
        .cloned()
        .unwrap_or_else(|| "(empty)".into())
}

fn read_set(dir: &Path, prefix: &str) -> Vec<Tensor> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    files.sort_by_key(|p| p.file_stem().unwrap().to_string_lossy().trim_start_matches(prefix).parse::<usize>().unwrap_or(0));
    files.iter().map(|p| onnx::read_tensor(p).map(|(_, t)| t).unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// Whether `actual` is within the suite's tolerance of `expected` (NaN equal to NaN, shapes equal).
fn close(actual: &Tensor, expected: &Tensor, atol: f64) -> Result<(), String> {
    if actual.shape != expected.shape {
        return Err(format!("shape {:?}, expected {:?}", actual.shape, expected.shape));
    }
    let (a, e) = (actual.to_f32(), expected.to_f32());
    for (i, (&x, &y)) in a.iter().zip(&e).enumerate() {
        let ok = (x.is_nan() && y.is_nan()) || x == y || ((x as f64 - y as f64).abs() <= atol + RTOL * (y as f64).abs());
        if !ok {
            return Err(format!("element {i}: {x}, expected {y}"));
        }
    }
    Ok(())
}

fn data_set(dir: &Path) -> Option<PathBuf> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    sets.sort();
    sets.into_iter().next()
}

/// Imports a case. tfc compiles static graphs: a case whose shape, axes, scales or pads come in as graph inputs is
/// imported again with those inputs (each named by the importer's error) bound to the test data's values
/// (`OnnxOptions::constants`), and says so.
fn import_case(model: &Path, set: &Path) -> Result<(tfc_ir::Graph, bool), OnnxError> {
    let mut data: Option<BTreeMap<String, Tensor>> = None;
    let mut opts = OnnxOptions { max_batch: 8, ..Default::default() };
    loop {
        match onnx::import(model, &opts) {
            Err(OnnxError::Node { message, .. }) if message.contains("must be a constant") => {
                let data = match &data {
                    Some(d) => d,
                    None => data.insert(onnx::input_names(model)?.into_iter().zip(read_set(set, "input_")).collect()),
                };
                // The input named, or the first graph input it is computed from that is not bound yet.
                let names: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
                match names.iter().find(|n| data.contains_key(**n) && !opts.constants.contains_key(**n)) {
                    Some(name) => opts.constants.insert(name.to_string(), data[*name].clone()),
                    None => return onnx::import(model, &opts).map(|g| (g, true)),
                };
            }
            other => return other.map(|g| (g, !opts.constants.is_empty())),
        }
    }
}

fn run_case(dir: &Path, gpu: &Gpu, scratch: &Path) -> (Outcome, String) {
    let model = dir.join("model.onnx");
    let Some(set) = data_set(dir) else { return (Outcome::Failed, "no test data set".into()) };
    let (graph, bound) = match import_case(&model, &set) {
        Ok(g) => g,
        Err(e @ OnnxError::Unsupported { .. }) => return (Outcome::Unsupported, first_line(&e.to_string())),
        Err(e) => return (Outcome::Refused, first_line(&e.to_string())),
    };
    let input_names: Vec<String> = graph.inputs.iter().map(|&i| graph.node(i).name.clone()).collect();
    let opts = CompileOptions { wasm: WasmTarget::Off, ..Default::default() };
    let bundle_dir = scratch.join(dir.file_name().unwrap());
    if let Err(e) = compile_graph(graph, None, &bundle_dir, &opts, &mut Quiet) {
        return (Outcome::Failed, format!("compile: {}", first_line(&e.to_string())));
    }
    let result = (|| -> Result<Vec<(String, Tensor)>, String> {
        let bundle = Bundle::open(&bundle_dir).map_err(|e| e.to_string())?;
        let mut session = Session::with_gpu(&bundle, gpu.clone()).map_err(|e| e.to_string())?;
        let all = onnx::input_names(&model).map_err(|e| e.to_string())?;
        let inputs: BTreeMap<String, Tensor> =
            all.into_iter().zip(read_set(&set, "input_")).filter(|(n, _)| input_names.contains(n)).collect();
        let outputs = session.run(&inputs).map_err(|e| e.to_string())?;
        let expected = read_set(&set, "output_");
        let case = dir.file_name().unwrap().to_string_lossy();
        let atol = ATOL_OVERRIDES.iter().find(|o| o.0 == case).map_or(ATOL, |o| o.1);
        for (i, ((name, actual), expected)) in outputs.iter().zip(&expected).enumerate() {
            close(actual, expected, atol).map_err(|m| format!("WRONG output {i} `{name}`: {m}"))?;
        }
        Ok(outputs)
    })();
    let _ = std::fs::remove_dir_all(&bundle_dir);
    match result {
        Ok(_) => (Outcome::Pass, if bound { "inputs bound at compile time".into() } else { String::new() }),
        Err(m) if m.starts_with("WRONG") => (Outcome::Wrong, m),
        Err(m) => (Outcome::Failed, first_line(&m)),
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").to_string();
    if s.lines().count() > 1 { format!("{line} {}", s.lines().nth(1).unwrap().trim()) } else { line }
}

#[test]
fn onnx_backend_node_suite() {
    let root = suite_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    let filter = std::env::var("TFC_ONNX_CASES").ok();
    let gpu = Gpu::new(&Requirements::default()).expect("a wgpu adapter (lavapipe on a CPU)");
    let scratch = tempfile::tempdir().unwrap();
    let case_ops: Vec<Vec<(String, String)>> = cases.iter().map(|dir| onnx::node_ops(dir).unwrap_or_default()).collect();
    let all_ops: BTreeSet<String> = case_ops.iter().flatten().map(|(_, op)| op.clone()).collect();
    // (case, op, counted in the figure, outcome, detail)
    let mut results = Vec::new();
    for (dir, ops) in cases.iter().zip(&case_ops) {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        if filter.as_ref().is_some_and(|f| !case.contains(f.as_str())) {
            continue;
        }
        let counted = ops.iter().all(|(d, _)| d == "ai.onnx") && !ops.iter().any(|(d, _)| d == TRAINING_DOMAIN);
        let (outcome, detail) = run_case(dir, &gpu, scratch.path());
        if std::env::var("TFC_ONNX_VERBOSE").is_ok() {
            eprintln!("{case}: {outcome:?} {detail}");
        }
        results.push((case.clone(), op_under_test(&case, ops, &all_ops), counted, outcome, detail));
    }
    if filter.is_some() {
        return;
    }
    let counted: Vec<_> = results.iter().filter(|r| r.2).collect();
    let passed = counted.iter().filter(|r| r.3 == Outcome::Pass).count();
    let rate = passed as f64 / counted.len() as f64;
    std::fs::write(tfc_fixtures::root().join("../docs/onnx-coverage.md"), coverage_table(&results, passed, counted.len())).unwrap();
    let wrong: Vec<String> = results.iter().filter(|r| r.3 == Outcome::Wrong).map(|r| format!("{}: {}", r.0, r.4)).collect();
    assert!(wrong.is_empty(), "cases that ran to a wrong answer:\n{}", wrong.join("\n"));
    assert!(rate >= MIN_PASS_RATE, "pass rate {rate:.3} ({passed}/{}) fell below {MIN_PASS_RATE}", counted.len());
}

fn coverage_table(results: &[(String, String, bool, Outcome, String)], passed: usize, counted: usize) -> String {
    let mut by_op: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for (_, op, _, outcome, _) in results {
        by_op.entry(op).or_default()[*outcome as usize] += 1;
    }
    let total = |o: Outcome| results.iter().filter(|r| r.3 == o).count();
    let mut s = String::new();
    writeln!(s, "# ONNX backend node test suite coverage\n").unwrap();
    writeln!(
        s,
        "Written by `runtime/tests/onnx_suite.rs` (do not edit): every case of `onnx/backend/test/data/node` of the onnx 1.22.0 \
         wheel imported by tfc, compiled to a bundle and run on the native runtime (wgpu; lavapipe in CI), outputs compared with \
         the suite's tolerances (rtol 1e-3, atol 1e-7).\n"
    )
    .unwrap();
    writeln!(
        s,
        "**Pass rate over the {counted} cases whose ops are all in the default ai.onnx domain and not training ops: {passed}/{counted} = {:.1}%.**\n",
        100.0 * passed as f64 / counted as f64
    )
    .unwrap();
    writeln!(
        s,
        "All {} cases: {} pass, {} refused with the unsupported-operator error, {} refused with another import error, \
         {} failed to compile or run, {} wrong answers.\n",
        results.len(),
        total(Outcome::Pass),
        total(Outcome::Unsupported),
        total(Outcome::Refused),
        total(Outcome::Failed),
        total(Outcome::Wrong)
    )
    .unwrap();
    writeln!(s, "| op under test | cases | pass | unsupported op | other import error | compile/run failure | wrong |").unwrap();
    writeln!(s, "|---|---|---|---|---|---|---|").unwrap();
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by_key(|(op, c)| (std::cmp::Reverse(c.iter().sum::<usize>()), *op));
    for (op, c) in ops {
        writeln!(s, "| {op} | {} | {} | {} | {} | {} | {} |", c.iter().sum::<usize>(), c[0], c[1], c[2], c[3], c[4]).unwrap();
    }
    let bound = results.iter().filter(|r| r.3 == Outcome::Pass && !r.4.is_empty()).count();
    writeln!(
        s,
        "\n{bound} of the passing cases take shapes, axes, scales, pads or similar as graph inputs; tfc compiles static graphs, so \
         those inputs (the ones the importer named as needing a value) were bound to the test data's values at compile time (`OnnxOptions::constants`, `tfc compile --const`) and \
         the other inputs ran on the GPU.\n"
    )
    .unwrap();
    for (case, atol, why) in ATOL_OVERRIDES {
        writeln!(s, "`{case}` is compared with atol {atol:e}: its outputs were {why}.\n").unwrap();
    }
    writeln!(s, "\n## Cases that import but fail\n").unwrap();
    // Paths relative to the suite's folder, so the page doesn't depend on where the checkout lives.
    let prefix = format!("{}/", suite_dir().display());
    for (case, _, _, outcome, detail) in results {
        if matches!(outcome, Outcome::Failed | Outcome::Refused) {
            writeln!(s, "- `{case}` ({outcome:?}): {}", detail.replace(&prefix, "").replace('|', "\\|")).unwrap();
        }
    }
    s
}
