//! Every op case of the shared suite gives a fallback module that validates (running them is `cli/tests/wasm.rs`),
//! except ops without a WASM kernel yet, which must say so.

use tfc_ir::Op;

#[test]
fn every_op_case_compiles_to_a_valid_module() {
    let mut failures = Vec::new();
    for case in tfc_fixtures::op_cases() {
        let g = &case.graph;
        let nodes: Vec<_> = g
            .topo_order()
            .unwrap()
            .into_iter()
            .filter(|&id| !matches!(g.node(id).op, Op::Input { .. } | Op::Weight(_) | Op::State { .. } | Op::Reshape { .. }))
            .collect();
        match tfc_codegen_wasm_simd::fallback(g, &nodes) {
            Ok(f) => assert_eq!(f.dispatches.len(), nodes.len()),
            // Ops the fallback has no kernel for yet must say so.
            Err(e) if e.to_string().contains(tfc_codegen_wasm_simd::NO_KERNEL) => {}
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
