//! Every op case of the shared suite, compiled to a bundle and run on the native runtime, against the interpreter.

use tfc_compiler::{CompileOptions, Quiet, compile_graph};
use tfc_ir::manifest::Requirements;
use tfc_runtime::{Bundle, Gpu, Session};

#[test]
fn every_op_matches_the_interpreter() {
    let gpu = Gpu::new(&Requirements::default()).expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let cases = tfc_fixtures::op_cases();
    for case in &cases {
        let expected = tfc_ir::interp::run(&case.graph, &case.inputs).unwrap_or_else(|e| panic!("{}: interpreter: {e}", case.name));
        let out = dir.path().join(&case.name);
        let result = compile_graph(case.graph.clone(), None, &out, &CompileOptions::default(), &mut Quiet)
            .map_err(|e| e.to_string())
            .and_then(|_| Bundle::open(&out).map_err(|e| e.to_string()))
            .and_then(|b| Session::with_gpu(&b, gpu.clone()).map_err(|e| e.to_string()))
            .and_then(|mut s| s.run(&case.inputs).map_err(|e| e.to_string()));
        let got = match result {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        let (want, got) = (&expected[0].1, &got[0].1);
        let error = tfc_fixtures::error_against(want, got, case.tolerance);
        println!("{:<45} relative L2 {error:.2e} (tolerance {:.0e})", case.name, case.tolerance);
        if error > case.tolerance || error.is_nan() {
            failures.push(format!("{}: relative L2 {error:.3e} > {:.0e} (shape {:?} vs {:?})", case.name, case.tolerance, got.shape, want.shape));
        }
    }
    assert!(failures.is_empty(), "{} of {} op cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
