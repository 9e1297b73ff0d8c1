//! The ONNX importer on small models written here: external data (read in place, confined to the model's folder,
//! checked against its file's length), symbolic dimensions and --dim, shape folding, clear errors (no panic) for
//! malformed protobufs, cycles and unsupported operators, ops of older opsets (their meaning there, or a refusal),
//! and lowerings the backend node suite covers thinly (Einsum equations, Det), against their definitions.

use prost::Message;
use std::collections::BTreeMap;
use std::path::Path;
use tfc_compiler::onnx::proto::{
    AttributeProto, DimensionProto, DimensionValue, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use tfc_compiler::onnx::{self, OnnxOptions};
use tfc_ir::{Tensor, interp};

const FLOAT: i32 = 1;

fn value(name: &str, elem: i32, dims: &[DimensionValue]) -> ValueInfoProto {
    let dim = dims.iter().map(|d| DimensionProto { value: Some(d.clone()) }).collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { tensor_type: Some(TensorTypeProto { elem_type: elem, shape: Some(TensorShapeProto { dim }) }) }),
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, initializer: Vec<TensorProto>, inputs: Vec<ValueInfoProto>, outputs: &[&str], opset: i64) -> ModelProto {
    ModelProto {
        ir_version: 10,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        graph: Some(GraphProto {
            node: nodes,
            name: "test".into(),
            initializer,
            input: inputs,
            output: outputs.iter().map(|o| value(o, FLOAT, &[])).collect(),
        }),
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, m: &ModelProto) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

/// y = x · W with W [4, 3] stored in `location` at `offset` (external data).
fn external_matmul(location: &str, offset: usize, length: Option<usize>) -> ModelProto {
    let mut external_data = vec![
        StringStringEntryProto { key: "location".into(), value: location.into() },
        StringStringEntryProto { key: "offset".into(), value: offset.to_string() },
    ];
    if let Some(l) = length {
        external_data.push(StringStringEntryProto { key: "length".into(), value: l.to_string() });
    }
    let w = TensorProto { name: "W".into(), dims: vec![4, 3], data_type: FLOAT, data_location: 1, external_data, ..Default::default() };
    let x = value("x", FLOAT, &[DimensionValue::DimParam("batch".into()), DimensionValue::DimValue(4)]);
    model(vec![node("MatMul", "mm", &["x", "W"], &["y"])], vec![w], vec![x], &["y"], 17)
}

fn weights_file(dir: &Path, name: &str, padding: usize) -> Vec<f32> {
    let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
    let mut bytes = vec![0u8; padding];
    bytes.extend(w.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join(name), bytes).unwrap();
    w
}

fn import_err(path: &Path) -> String {
    onnx::import(path, &OnnxOptions { max_batch: 4, ..Default::default() }).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn external_data_is_read_in_place_and_the_graph_runs() {
    let dir = tempfile::tempdir().unwrap();
    let w = weights_file(dir.path(), "weights.bin", 16);
    let path = write(dir.path(), "model.onnx", &external_matmul("weights.bin", 16, Some(48)));
    let graph = onnx::import(&path, &OnnxOptions { max_batch: 4, ..Default::default() }).unwrap();
    assert!(matches!(graph.weights[0].data, tfc_ir::WeightData::Mapped { offset: 16, len: 48, .. }), "{:?}", graph.weights[0].data);
    let x: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let out = interp::run(&graph, &BTreeMap::from([("x".to_string(), Tensor::f32(vec![2, 4], x.clone()))])).unwrap();
    let (x, w) = (&x, &w);
    let expected: Vec<f32> = (0..2).flat_map(|r| (0..3).map(move |c| (0..4).map(|k| x[r * 4 + k] * w[k * 3 + c]).sum::<f32>())).collect();
    assert_eq!(out[0].1.to_f32(), expected);
    // A folder holding model.onnx is read too.
    assert!(onnx::import(dir.path(), &OnnxOptions { max_batch: 4, ..Default::default() }).is_ok());
}

#[test]
fn external_data_outside_the_folder_or_past_the_end_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    weights_file(root.path(), "outside.bin", 0);
    weights_file(&dir, "short.bin", 0);
    for (location, offset, length, expected) in [
        ("../outside.bin", 0, None, "leaves the model's folder"),
        ("/etc/passwd", 0, None, "leaves the model's folder"),
        ("short.bin", 8, Some(48), "runs past the end"),
        ("short.bin", usize::MAX - 4, Some(48), "runs past the end"),
        ("short.bin", 0, Some(40), "has 40 bytes, its shape and type need 48"),
        ("missing.bin", 0, None, "cannot open its external data"),
    ] {
        let path = write(&dir, "model.onnx", &external_matmul(location, offset, length));
        let err = import_err(&path);
        assert!(err.contains(expected) && err.contains("initializer `W`"), "{location}: {err}");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(root.path().join("outside.bin"), dir.join("link.bin")).unwrap();
        let path = write(&dir, "model.onnx", &external_matmul("link.bin", 0, None));
        assert!(import_err(&path).contains("outside the model's folder"), "{}", import_err(&path));
    }
}

#[test]
fn malformed_protobufs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    weights_file(dir.path(), "weights.bin", 0);
    let bytes = external_matmul("weights.bin", 0, None).encode_to_vec();
    for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(dir.path().join("cut.onnx"), &bytes[..cut]).unwrap();
        let err = import_err(&dir.path().join("cut.onnx"));
        assert!(err.contains("cut.onnx") && (err.contains("not a valid ONNX protobuf") || err.contains("no graph") || err.contains("opset")), "cut at {cut}: {err}");
    }
    let mut state = 12345u64;
    for n in 0..64 {
        let garbage: Vec<u8> = (0..(n * 37 % 500))
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        std::fs::write(dir.path().join("garbage.onnx"), &garbage).unwrap();
        let _ = onnx::import(&dir.path().join("garbage.onnx"), &OnnxOptions::default()); // an error, never a panic
    }
}

#[test]
fn cycles_old_opsets_and_unsupported_ops_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let x = || value("x", FLOAT, &[DimensionValue::DimValue(2)]);
    let cycle = model(vec![node("Add", "first", &["x", "b"], &["a"]), node("Relu", "second", &["a"], &["b"])], vec![], vec![x()], &["a"], 17);
    let err = import_err(&write(dir.path(), "cycle.onnx", &cycle));
    assert!(err.contains("cycle") && (err.contains("`first`") || err.contains("`second`")), "{err}");

    let old = model(vec![node("Relu", "r", &["x"], &["y"])], vec![], vec![x()], &["y"], 5);
    let err = import_err(&write(dir.path(), "old.onnx", &old));
    assert!(err.contains("Relu (node `r`, domain ai.onnx, opset 5): tfc implements this op as defined from opset 6 on"), "{err}");
    assert!(err.contains("convert_version(model, 6)"), "{err}");

    let unknown = model(
        vec![node("Relu", "r", &["x"], &["a"]), node("NonMaxSuppression", "nms", &["a"], &["b"]), node("StringNormalizer", "sn", &["b"], &["y"])],
        vec![],
        vec![x()],
        &["y"],
        17,
    );
    let err = import_err(&write(dir.path(), "unknown.onnx", &unknown));
    assert!(err.contains("2 operator(s)"), "{err}");
    assert!(err.contains("NonMaxSuppression (node `nms`, domain ai.onnx, opset 17)"), "{err}");
    assert!(err.contains("StringNormalizer (node `sn`, domain ai.onnx, opset 17)"), "{err}");
}

/// An exported-transformer-style reshape: y = Reshape(x, Concat(Shape(x)[0], Shape(x)[1] * 2, 2)) of x [batch, seq, 4].
#[test]
fn shape_arithmetic_folds_over_symbolic_dimensions_and_dim_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let ints = |name: &str, v: &[i64]| TensorProto { name: name.into(), dims: vec![v.len() as i64], data_type: 7, int64_data: v.to_vec(), ..Default::default() };
    let mut gather0 = node("Gather", "g0", &["shape", "zero"], &["d0"]);
    gather0.attribute.push(AttributeProto { name: "axis".into(), r#type: 2, i: 0, ..Default::default() });
    let nodes = vec![
        node("Shape", "shape", &["x"], &["shape"]),
        gather0,
        node("Gather", "g1", &["shape", "one"], &["d1"]),
        node("Mul", "twice", &["d1", "two"], &["d1x2"]),
        node("Concat", "cat", &["d0", "d1x2", "two"], &["target"]),
        node("Reshape", "reshape", &["x", "target"], &["y"]),
    ];
    let mut nodes = nodes;
    nodes[4].attribute.push(AttributeProto { name: "axis".into(), r#type: 2, i: 0, ..Default::default() });
    let x = value("x", FLOAT, &[DimensionValue::DimParam("batch".into()), DimensionValue::DimParam("seq".into()), DimensionValue::DimValue(4)]);
    let m = model(nodes, vec![ints("zero", &[0]), ints("one", &[1]), ints("two", &[2])], vec![x], &["y"], 17);
    let path = write(dir.path(), "reshape.onnx", &m);
    let graph = onnx::import(&path, &OnnxOptions { max_batch: 2, max_sequence: Some(16), ..Default::default() }).unwrap();
    let y = graph.outputs[0].1;
    assert_eq!(graph.node(y).ty.to_string(), "f32[batch, 2*seq, 2]");
    assert!(graph.node_ids().all(|n| !matches!(graph.node(n).op, tfc_ir::Op::Concat { .. } | tfc_ir::Op::Gather)), "shape arithmetic left in the graph");
    let fixed = OnnxOptions { max_batch: 2, dims: BTreeMap::from([("batch".into(), 1), ("seq".into(), 3)]), ..Default::default() };
    let graph = onnx::import(&path, &fixed).unwrap();
    assert_eq!(graph.node(graph.outputs[0].1).ty.to_string(), "f32[1, 6, 2]");
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let out = interp::run(&graph, &BTreeMap::from([("x".to_string(), Tensor::f32(vec![1, 3, 4], x.clone()))])).unwrap();
    assert_eq!(out[0].1.shape, vec![1, 6, 2]);
    assert_eq!(out[0].1.to_f32(), x);
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: 2, i, ..Default::default() }
}

/// An op keeps the meaning of the model's opset: Softmax before opset 13 normalises the input coerced to a matrix
/// at `axis`, Clip before opset 11 takes its bounds as attributes and Unsqueeze before 13 its axes.
#[test]
fn ops_of_older_opsets_keep_their_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let dims = [DimensionValue::DimValue(2), DimensionValue::DimValue(2), DimensionValue::DimValue(3)];
    let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.25).collect();
    let run = |m: &ModelProto, name: &str| -> Tensor {
        let graph = onnx::import(&write(dir.path(), name, m), &OnnxOptions::default()).unwrap();
        interp::run(&graph, &BTreeMap::from([("x".to_string(), Tensor::f32(vec![2, 2, 3], x.clone()))])).unwrap().remove(0).1
    };
    let softmax = |opset: i64| {
        let mut n = node("Softmax", "s", &["x"], &["y"]);
        n.attribute.push(int_attr("axis", 1));
        model(vec![n], vec![], vec![value("x", FLOAT, &dims)], &["y"], opset)
    };
    // Opset 11: each batch's 6 values sum to 1. Opset 13: each pair along axis 1 does.
    let old = run(&softmax(11), "softmax11.onnx").to_f32();
    assert!((old[..6].iter().sum::<f32>() - 1.0).abs() < 1e-6 && (old[0] + old[3] - 1.0).abs() > 0.1, "{old:?}");
    let new = run(&softmax(13), "softmax13.onnx").to_f32();
    assert!((new[0] + new[3] - 1.0).abs() < 1e-6, "{new:?}");

    let mut clip = node("Clip", "c", &["x"], &["y"]);
    clip.attribute.push(AttributeProto { name: "max".into(), r#type: 1, f: 1.0, ..Default::default() });
    let clipped = run(&model(vec![clip], vec![], vec![value("x", FLOAT, &dims)], &["y"], 6), "clip6.onnx").to_f32();
    assert_eq!(clipped, x.iter().map(|&v| v.min(1.0)).collect::<Vec<_>>());

    let mut unsqueeze = node("Unsqueeze", "u", &["x"], &["y"]);
    unsqueeze.attribute.push(AttributeProto { name: "axes".into(), r#type: 7, ints: vec![0, 3], ..Default::default() });
    let expanded = run(&model(vec![unsqueeze], vec![], vec![value("x", FLOAT, &dims)], &["y"], 11), "unsqueeze11.onnx");
    assert_eq!(expanded.shape, vec![1, 2, 2, 1, 3]);
}

/// Runs a one-node model of float inputs (named `x0`, `x1`, …) through the importer and the interpreter.
fn run_node(dir: &Path, n: NodeProto, inputs: &[Tensor], opset: i64) -> Tensor {
    let names: Vec<String> = (0..inputs.len()).map(|i| format!("x{i}")).collect();
    let mut n = n;
    n.input = names.clone();
    n.output = vec!["y".into()];
    let values = names.iter().zip(inputs).map(|(name, t)| value(name, FLOAT, &t.shape.iter().map(|&d| DimensionValue::DimValue(d as i64)).collect::<Vec<_>>())).collect();
    let path = write(dir, &format!("{}.onnx", n.op_type), &model(vec![n], vec![], values, &["y"], opset));
    let graph = onnx::import(&path, &OnnxOptions::default()).unwrap();
    let feeds = names.into_iter().zip(inputs.iter().cloned()).collect();
    interp::run(&graph, &feeds).unwrap().remove(0).1
}

/// A tensor of the given shape with distinct, small values.
fn ramp(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::f32(shape.to_vec(), (0..n).map(|i| (((i * 7 + seed * 13) % 11) as f32 - 5.0) * 0.25).collect())
}

/// Einsum by its definition: every assignment of the labels, the product of the operands' elements summed into the
/// output element. `specs` have no ellipsis; `output` is explicit.
fn einsum_reference(specs: &[&str], output: &str, operands: &[Tensor]) -> Vec<f32> {
    let mut size = std::collections::BTreeMap::new();
    for (spec, t) in specs.iter().zip(operands) {
        for (c, &d) in spec.chars().zip(&t.shape) {
            size.insert(c, d);
        }
    }
    let labels: Vec<char> = size.keys().copied().collect();
    let out_shape: Vec<usize> = output.chars().map(|c| size[&c]).collect();
    let mut out = vec![0f64; out_shape.iter().product()];
    let total: usize = labels.iter().map(|c| size[c]).product();
    let offset = |spec: &str, at: &dyn Fn(char) -> usize, shape: &[usize]| spec.chars().zip(shape).fold(0, |acc, (c, &d)| acc * d + at(c));
    for mut i in 0..total {
        let mut value = std::collections::BTreeMap::new();
        for c in labels.iter().rev() {
            value.insert(*c, i % size[c]);
            i /= size[c];
        }
        let at = |c: char| value[&c];
        let product: f64 = specs.iter().zip(operands).map(|(s, t)| t.to_f32()[offset(s, &at, &t.shape)] as f64).product();
        out[offset(output, &at, &out_shape)] += product;
    }
    out.iter().map(|&v| v as f32).collect()
}

#[test]
fn einsum_equations_match_their_definition() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&[usize]])] = &[
        ("ij,jk->ik", "ik", &[&[3, 4], &[4, 5]]),
        ("bij,bjk->bik", "bik", &[&[2, 3, 4], &[2, 4, 5]]),
        ("ij,ij->ij", "ij", &[&[3, 4], &[3, 4]]),
        ("i,j->ij", "ij", &[&[3], &[4]]),
        ("ij->", "", &[&[3, 4]]),
        ("ii->i", "i", &[&[4, 4]]),
        ("iij->j", "j", &[&[3, 3, 2]]),
        ("ji", "ij", &[&[3, 4]]),
        ("abc,cd,de->abe", "abe", &[&[2, 3, 4], &[4, 3], &[3, 5]]),
        ("bn,anm,bm->ba", "ba", &[&[2, 3], &[4, 3, 5], &[2, 5]]),
        ("ijk,jil->kl", "kl", &[&[2, 3, 4], &[3, 2, 5]]),
    ];
    for (equation, output, shapes) in cases {
        let operands: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| ramp(s, i)).collect();
        let mut n = node("Einsum", "e", &[], &[]);
        n.attribute.push(AttributeProto { name: "equation".into(), r#type: 3, s: equation.to_string().into(), ..Default::default() });
        let y = run_node(dir.path(), n, &operands, 12);
        let specs: Vec<&str> = equation.split("->").next().unwrap().split(',').collect();
        let expected = einsum_reference(&specs, output, &operands);
        let got = y.to_f32();
        assert_eq!(got.len(), expected.len(), "{equation}");
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{equation}: {got:?} vs {expected:?}");
        }
    }
    // An ellipsis stands for the same leading axes everywhere: a batched matmul over two batch axes.
    let (x, w) = (ramp(&[2, 3, 4, 5], 0), ramp(&[2, 3, 5, 2], 1));
    let mut n = node("Einsum", "e", &[], &[]);
    n.attribute.push(AttributeProto { name: "equation".into(), r#type: 3, s: "...ij,...jk->...ik".to_string().into(), ..Default::default() });
    let y = run_node(dir.path(), n, &[x.clone(), w.clone()], 12);
    assert_eq!(y.to_f32(), einsum_reference(&["abij", "abjk"], "abik", &[x, w]));
}

#[test]
fn det_of_3x3_and_4x4_matrices() {
    let dir = tempfile::tempdir().unwrap();
    // det [[2, 0, 1, 3], [1, 1, 0, 2], [0, 3, 1, 1], [4, 1, 2, 0]] = −32; its leading 3×3 minor's is 5.
    let m4 = [2.0, 0.0, 1.0, 3.0, 1.0, 1.0, 0.0, 2.0, 0.0, 3.0, 1.0, 1.0, 4.0, 1.0, 2.0, 0.0f32];
    let y = run_node(dir.path(), node("Det", "d", &[], &[]), &[Tensor::f32(vec![4, 4], m4.to_vec())], 22);
    assert_eq!(y.shape, Vec::<usize>::new());
    assert!((y.to_f32()[0] + 32.0).abs() < 1e-4, "{:?}", y.to_f32());
    let m3: Vec<f32> = [0, 1, 2, 4, 5, 6, 8, 9, 10].iter().map(|&i| m4[i]).collect();
    let y = run_node(dir.path(), node("Det", "d", &[], &[]), &[Tensor::f32(vec![1, 3, 3], m3)], 22);
    assert!((y.to_f32()[0] - 5.0).abs() < 1e-4, "{:?}", y.to_f32());
}

/// DFT by its definition, for a signal [n, parts] (parts 1: real, 2: complex) along axis 0: the forward transform
/// of the first `len` samples (zero-padded), its inverse, or the inverse of a one-sided spectrum (real out).
fn dft_reference(x: &[f32], n: usize, parts: usize, len: usize, inverse: bool, onesided: bool) -> Vec<f32> {
    let at = |j: usize| -> (f64, f64) {
        if j >= n { (0.0, 0.0) } else { (x[j * parts] as f64, if parts == 2 { x[j * parts + 1] as f64 } else { 0.0 }) }
    };
    // The full spectrum of a one-sided one: X[len − j] = conj(X[j]).
    let input = |j: usize| -> (f64, f64) {
        if inverse && onesided && j > len / 2 {
            let (a, b) = at(len - j);
            (a, -b)
        } else if inverse && onesided && j >= n {
            (0.0, 0.0)
        } else {
            at(j)
        }
    };
    let bins = if onesided && !inverse { len / 2 + 1 } else { len };
    let sign = if inverse { 1.0 } else { -1.0 };
    let mut out = Vec::new();
    for k in 0..bins {
        let (mut re, mut im) = (0.0, 0.0);
        for j in 0..len {
            let (a, b) = input(j);
            let t = sign * 2.0 * std::f64::consts::PI * (j * k) as f64 / len as f64;
            re += a * t.cos() - b * t.sin();
            im += a * t.sin() + b * t.cos();
        }
        let scale = if inverse { len as f64 } else { 1.0 };
        out.push((re / scale) as f32);
        if !(inverse && onesided) {
            out.push((im / scale) as f32);
        }
    }
    out
}

#[test]
fn dft_lengths_and_directions_match_the_definition() {
    let dir = tempfile::tempdir().unwrap();
    // (samples, parts, dft_length, inverse, onesided)
    let cases = [(6, 1, 8, false, false), (6, 1, 4, false, true), (5, 2, 4, true, false), (5, 2, 7, false, false), (4, 2, 7, true, true), (4, 2, 6, true, true)];
    for (n, parts, len, inverse, onesided) in cases {
        let x = ramp(&[1, n, parts], n + len);
        let mut dft = node("DFT", "dft", &["x", "len"], &["y"]);
        dft.attribute.extend([int_attr("axis", 1), int_attr("inverse", inverse as i64), int_attr("onesided", onesided as i64)]);
        let length = TensorProto { name: "len".into(), dims: vec![], data_type: 7, int64_data: vec![len as i64], ..Default::default() };
        let shape: Vec<DimensionValue> = [1, n, parts].iter().map(|&d| DimensionValue::DimValue(d as i64)).collect();
        let m = model(vec![dft], vec![length], vec![value("x", FLOAT, &shape)], &["y"], 19);
        let graph = onnx::import(&write(dir.path(), "dft.onnx", &m), &OnnxOptions::default()).unwrap();
        let y = interp::run(&graph, &BTreeMap::from([("x".to_string(), x.clone())])).unwrap().remove(0).1.to_f32();
        let expected = dft_reference(&x.to_f32(), n, parts, len, inverse, onesided);
        assert_eq!(y.len(), expected.len(), "{n} {parts} {len} {inverse} {onesided}");
        for (g, e) in y.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-4, "{n} {parts} {len} {inverse} {onesided}: {y:?} vs {expected:?}");
        }
    }
}

/// One recurrent op by its equations (ONNX's operator docs), in f64: `op` RNN/GRU/LSTM with default activations,
/// X [T, B, I], weights [D, G·H, …], optional bias, lengths, initial state and peepholes. Returns Y [T, D, B, H]
/// flattened and Y_h [D, B, H].
#[allow(clippy::too_many_arguments)]
fn recurrent_reference(op: &str, x: &Tensor, w: &Tensor, r: &Tensor, bias: Option<&Tensor>, lens: &[usize], h0: Option<&Tensor>, c0: Option<&Tensor>, p: Option<&Tensor>, reverse: &[bool], before_reset: bool, clip: Option<f64>) -> (Vec<f32>, Vec<f32>) {
    let (t_len, batch, inputs) = (x.shape[0], x.shape[1], x.shape[2]);
    let hidden = r.shape[2];
    let gates = w.shape[1] / hidden;
    let (x, w, r) = (x.to_f32(), w.to_f32(), r.to_f32());
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let clipped = |v: f64| clip.map_or(v, |c| v.clamp(-c, c));
    let dirs = reverse.len();
    let mut y = vec![0f32; t_len * dirs * batch * hidden];
    let mut y_h = vec![0f32; dirs * batch * hidden];
    for (d, &rev) in reverse.iter().enumerate() {
        let at = |m: &[f32], rows: usize, cols: usize, g: usize, j: usize, k: usize| m[((d * rows) + g * hidden + j) * cols + k] as f64;
        let bias_of = |half: usize, g: usize, j: usize| bias.map_or(0.0, |b| b.to_f32()[d * 2 * gates * hidden + half * gates * hidden + g * hidden + j] as f64);
        for n in 0..batch {
            let mut h: Vec<f64> = (0..hidden).map(|j| h0.map_or(0.0, |t| t.to_f32()[(d * batch + n) * hidden + j] as f64)).collect();
            let mut c: Vec<f64> = (0..hidden).map(|j| c0.map_or(0.0, |t| t.to_f32()[(d * batch + n) * hidden + j] as f64)).collect();
            let steps: Vec<usize> = if rev { (0..lens[n]).rev().collect() } else { (0..lens[n]).collect() };
            for t in steps {
                let xw = |g: usize, j: usize| (0..inputs).map(|k| x[(t * batch + n) * inputs + k] as f64 * at(&w, gates * hidden, inputs, g, j, k)).sum::<f64>() + bias_of(0, g, j);
                let hr = |g: usize, j: usize, h: &[f64]| (0..hidden).map(|k| h[k] * at(&r, gates * hidden, hidden, g, j, k)).sum::<f64>() + bias_of(1, g, j);
                let peep = |k: usize, j: usize| p.map_or(0.0, |p| p.to_f32()[d * 3 * hidden + k * hidden + j] as f64);
                let new_h: Vec<f64> = match op {
                    "RNN" => (0..hidden).map(|j| clipped(xw(0, j) + hr(0, j, &h)).tanh()).collect(),
                    "GRU" => {
                        let z: Vec<f64> = (0..hidden).map(|j| sig(clipped(xw(0, j) + hr(0, j, &h)))).collect();
                        let rg: Vec<f64> = (0..hidden).map(|j| sig(clipped(xw(1, j) + hr(1, j, &h)))).collect();
                        let reset: Vec<f64> = (0..hidden).map(|j| rg[j] * h[j]).collect();
                        (0..hidden)
                            .map(|j| {
                                let inner = if before_reset { rg[j] * hr(2, j, &h) } else { hr(2, j, &reset) };
                                let cand = clipped(xw(2, j) + inner).tanh();
                                (1.0 - z[j]) * cand + z[j] * h[j]
                            })
                            .collect()
                    }
                    _ => {
                        let gate = |g: usize, j: usize| xw(g, j) + hr(g, j, &h);
                        let new_c: Vec<f64> = (0..hidden)
                            .map(|j| {
                                let i = sig(clipped(gate(0, j) + peep(0, j) * c[j]));
                                let f = sig(clipped(gate(2, j) + peep(2, j) * c[j]));
                                f * c[j] + i * clipped(gate(3, j)).tanh()
                            })
                            .collect();
                        let out = (0..hidden).map(|j| sig(clipped(gate(1, j) + peep(1, j) * new_c[j])) * clipped(new_c[j]).tanh()).collect();
                        c = new_c;
                        out
                    }
                };
                h = new_h;
                for j in 0..hidden {
                    y[((t * dirs + d) * batch + n) * hidden + j] = h[j] as f32;
                }
            }
            for j in 0..hidden {
                y_h[(d * batch + n) * hidden + j] = h[j] as f32;
            }
        }
    }
    (y, y_h)
}

#[test]
fn recurrent_ops_match_their_equations() {
    let dir = tempfile::tempdir().unwrap();
    let (steps, batch, inputs, hidden) = (3usize, 2usize, 2usize, 3usize);
    let lens = [3usize, 1];
    // (op, direction, linear_before_reset, clip, peepholes)
    let cases = [
        ("GRU", "bidirectional", true, None, false),
        ("GRU", "forward", false, Some(0.5), false),
        ("LSTM", "bidirectional", false, None, true),
        ("LSTM", "reverse", false, Some(0.7), false),
        ("RNN", "reverse", false, None, false),
    ];
    for (i, (op, direction, before_reset, clip, peepholes)) in cases.into_iter().enumerate() {
        let dirs = if direction == "bidirectional" { 2 } else { 1 };
        let gates = match op {
            "RNN" => 1,
            "GRU" => 3,
            _ => 4,
        };
        let x = ramp(&[steps, batch, inputs], i);
        let w = ramp(&[dirs, gates * hidden, inputs], i + 1);
        let r = ramp(&[dirs, gates * hidden, hidden], i + 2);
        let bias = ramp(&[dirs, 2 * gates * hidden], i + 3);
        let h0 = ramp(&[dirs, batch, hidden], i + 4);
        let c0 = ramp(&[dirs, batch, hidden], i + 5);
        let p = ramp(&[dirs, 3 * hidden], i + 6);
        let mut n = node(op, "rnn", &[], &[]);
        n.attribute.push(int_attr("hidden_size", hidden as i64));
        n.attribute.push(AttributeProto { name: "direction".into(), r#type: 3, s: direction.to_string().into(), ..Default::default() });
        if before_reset {
            n.attribute.push(int_attr("linear_before_reset", 1));
        }
        if let Some(c) = clip {
            n.attribute.push(AttributeProto { name: "clip".into(), r#type: 1, f: c as f32, ..Default::default() });
        }
        let lengths = TensorProto { name: "lens".into(), dims: vec![batch as i64], data_type: 6, int32_data: lens.iter().map(|&l| l as i32).collect(), ..Default::default() };
        let mut feeds = vec![x.clone(), w.clone(), r.clone(), bias.clone(), h0.clone()];
        let mut names = vec!["x0", "x1", "x2", "x3", "lens", "x4"];
        if op == "LSTM" {
            feeds.push(c0.clone());
            names.push("x5");
            if peepholes {
                feeds.push(p.clone());
                names.push("x6");
            }
        }
        n.input = names.iter().map(|s| s.to_string()).collect();
        n.output = vec!["y".into(), "y_h".into()];
        let values = feeds.iter().enumerate().map(|(k, t)| value(&format!("x{k}"), FLOAT, &t.shape.iter().map(|&d| DimensionValue::DimValue(d as i64)).collect::<Vec<_>>())).collect();
        let mut m = model(vec![n], vec![lengths], values, &["y", "y_h"], 22);
        m.graph.as_mut().unwrap().output[0] = value("y", FLOAT, &[]);
        let graph = onnx::import(&write(dir.path(), "rnn.onnx", &m), &OnnxOptions::default()).unwrap();
        let run: BTreeMap<String, Tensor> = feeds.iter().enumerate().map(|(k, t)| (format!("x{k}"), t.clone())).collect();
        let out = interp::run(&graph, &run).unwrap();
        let reverse: Vec<bool> = match direction {
            "forward" => vec![false],
            "reverse" => vec![true],
            _ => vec![false, true],
        };
        let (c0, p) = (if op == "LSTM" { Some(&c0) } else { None }, if peepholes { Some(&p) } else { None });
        let (y, y_h) = recurrent_reference(op, &x, &w, &r, Some(&bias), &lens, Some(&h0), c0, p, &reverse, before_reset, clip);
        for (got, want, what) in [(out[0].1.to_f32(), y, "Y"), (out[1].1.to_f32(), y_h, "Y_h")] {
            assert_eq!(got.len(), want.len(), "{op} {direction}: {what}");
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() <= 1e-5, "{op} {direction} {what}: {got:?} vs {want:?}");
            }
        }
    }
}

fn graph_attr(name: &str, nodes: Vec<NodeProto>, inputs: &[&str], outputs: &[&str]) -> AttributeProto {
    let g = GraphProto {
        node: nodes,
        name: name.into(),
        input: inputs.iter().map(|i| value(i, FLOAT, &[])).collect(),
        output: outputs.iter().map(|o| value(o, FLOAT, &[])).collect(),
        ..Default::default()
    };
    AttributeProto { name: name.into(), r#type: 5, g: Some(Box::new(g)), ..Default::default() }
}

/// If, Loop and Scan: bodies that read the enclosing graph's runtime input, a loop that its condition ends early,
/// and a scan over two inputs in opposite directions whose output is stacked along axis 1.
#[test]
fn control_flow_bodies_are_lowered_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::f32(vec![2], vec![1.5, -2.0]);
    let scalar_int = |name: &str, data_type: i32, v: i64| TensorProto { name: name.into(), dims: vec![], data_type, int64_data: vec![v], int32_data: vec![v as i32], ..Default::default() };
    let run = |m: &ModelProto, name: &str| -> Vec<Tensor> {
        let graph = onnx::import(&write(dir.path(), name, m), &OnnxOptions::default()).unwrap();
        interp::run(&graph, &BTreeMap::from([("x".to_string(), x.clone())])).unwrap().into_iter().map(|(_, t)| t).collect()
    };
    let x_in = || value("x", FLOAT, &[DimensionValue::DimValue(2)]);

    for (cond, expected) in [(1, vec![2.5, -1.0]), (0, vec![3.0, -4.0])] {
        let mut n = node("If", "if", &["cond"], &["y"]);
        n.attribute.push(graph_attr("then_branch", vec![node("Add", "plus", &["x", "one"], &["t"])], &[], &["t"]));
        n.attribute.push(graph_attr("else_branch", vec![node("Mul", "times", &["x", "two"], &["e"])], &[], &["e"]));
        let consts = vec![scalar_int("cond", 9, cond), TensorProto { name: "one".into(), data_type: FLOAT, float_data: vec![1.0], ..Default::default() }, TensorProto { name: "two".into(), data_type: FLOAT, float_data: vec![2.0], ..Default::default() }];
        assert_eq!(run(&model(vec![n], consts, vec![x_in()], &["y"], 13), "if.onnx")[0].to_f32(), expected);
    }

    // acc += x while i < 3 (the condition, computed from the iteration number, ends the loop after i = 3).
    let mut n = node("Loop", "loop", &["trips", "", "zero"], &["acc", "history"]);
    let body = vec![
        node("Add", "acc", &["acc_in", "x"], &["acc_out"]),
        node("Less", "more", &["i", "three"], &["cond_out"]),
        node("Identity", "seen", &["acc_out"], &["scan_out"]),
    ];
    n.attribute.push(graph_attr("body", body, &["i", "cond_in", "acc_in"], &["cond_out", "acc_out", "scan_out"]));
    let consts = vec![scalar_int("trips", 7, 10), scalar_int("three", 7, 3), TensorProto { name: "zero".into(), dims: vec![2], data_type: FLOAT, float_data: vec![0.0, 0.0], ..Default::default() }];
    let mut m = model(vec![n], consts, vec![x_in()], &["acc", "history"], 13);
    m.graph.as_mut().unwrap().output[1] = value("history", FLOAT, &[]);
    let out = run(&m, "loop.onnx");
    assert_eq!(out[0].to_f32(), vec![6.0, -8.0]);
    assert_eq!(out[1].shape, vec![4, 2]);
    assert_eq!(out[1].to_f32(), vec![1.5, -2.0, 3.0, -4.0, 4.5, -6.0, 6.0, -8.0]);

    // s += a·b over a [3, 2] forward and b [3, 2] backward; scan output a − b stacked along axis 1.
    let a = TensorProto { name: "a".into(), dims: vec![3, 2], data_type: FLOAT, float_data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], ..Default::default() };
    let b = TensorProto { name: "b".into(), dims: vec![3, 2], data_type: FLOAT, float_data: vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0], ..Default::default() };
    let mut n = node("Scan", "scan", &["x", "a", "b"], &["s", "diffs"]);
    let body = vec![node("Mul", "prod", &["ai", "bi"], &["p"]), node("Add", "sum", &["s_in", "p"], &["s_out"]), node("Sub", "diff", &["ai", "bi"], &["d"])];
    n.attribute.push(graph_attr("body", body, &["s_in", "ai", "bi"], &["s_out", "d"]));
    n.attribute.push(int_attr("num_scan_inputs", 2));
    n.attribute.push(AttributeProto { name: "scan_input_directions".into(), r#type: 7, ints: vec![0, 1], ..Default::default() });
    n.attribute.push(AttributeProto { name: "scan_output_axes".into(), r#type: 7, ints: vec![1], ..Default::default() });
    let mut m = model(vec![n], vec![a, b], vec![x_in()], &["s", "diffs"], 13);
    m.graph.as_mut().unwrap().output[1] = value("diffs", FLOAT, &[]);
    let out = run(&m, "scan.onnx");
    // Step t pairs a row t with b row 2 − t: (1,2)·(2.5,3) + (3,4)·(1.5,2) + (5,6)·(0.5,1), plus x.
    assert_eq!(out[0].to_f32(), vec![1.5 + 2.5 + 4.5 + 2.5, -2.0 + 6.0 + 8.0 + 6.0]);
    assert_eq!(out[1].shape, vec![2, 3]);
    assert_eq!(out[1].to_f32(), vec![-1.5, 1.5, 4.5, -1.0, 2.0, 5.0]);
}

#[test]
fn tfidf_modes_weigh_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    // Tokens 1 2 1 2 3; pool: unigrams 1 and 3 (columns 0, 1), the bigram 1 2 (column 2): counts 2, 1, 2.
    for (mode, expected) in [("TF", [2.0, 1.0, 2.0]), ("IDF", [0.5, 2.0, 3.0]), ("TFIDF", [1.0, 2.0, 6.0])] {
        let mut n = node("TfIdfVectorizer", "tfidf", &["x"], &["y"]);
        n.attribute.extend([
            int_attr("min_gram_length", 1),
            int_attr("max_gram_length", 2),
            int_attr("max_skip_count", 1),
            AttributeProto { name: "mode".into(), r#type: 3, s: mode.to_string().into(), ..Default::default() },
            AttributeProto { name: "pool_int64s".into(), r#type: 7, ints: vec![1, 3, 1, 2], ..Default::default() },
            AttributeProto { name: "ngram_counts".into(), r#type: 7, ints: vec![0, 2], ..Default::default() },
            AttributeProto { name: "ngram_indexes".into(), r#type: 7, ints: vec![0, 1, 2], ..Default::default() },
        ]);
        if mode != "TF" {
            n.attribute.push(AttributeProto { name: "weights".into(), r#type: 6, floats: vec![0.5, 2.0, 3.0], ..Default::default() });
        }
        let m = model(vec![n], vec![], vec![value("x", 7, &[DimensionValue::DimValue(5)])], &["y"], 9);
        let graph = onnx::import(&write(dir.path(), "tfidf.onnx", &m), &OnnxOptions::default()).unwrap();
        let y = interp::run(&graph, &BTreeMap::from([("x".to_string(), Tensor::i64(vec![5], vec![1, 2, 1, 2, 3]))])).unwrap().remove(0).1;
        assert_eq!(y.to_f32(), expected, "{mode}");
    }
}

/// DeformConv with zero offsets samples the window's own elements: it is Conv (groups, strides, dilations, pads).
#[test]
fn deform_conv_without_offsets_is_conv() {
    let dir = tempfile::tempdir().unwrap();
    let (x, w) = (ramp(&[1, 4, 5, 6], 1), ramp(&[6, 2, 2, 3], 2));
    let attrs = || {
        vec![
            int_attr("group", 2),
            AttributeProto { name: "strides".into(), r#type: 7, ints: vec![2, 1], ..Default::default() },
            AttributeProto { name: "dilations".into(), r#type: 7, ints: vec![1, 2], ..Default::default() },
            AttributeProto { name: "pads".into(), r#type: 7, ints: vec![1, 0, 0, 1], ..Default::default() },
        ]
    };
    let mut conv = node("Conv", "conv", &[], &[]);
    conv.attribute = attrs();
    let expected = run_node(dir.path(), conv, &[x.clone(), w.clone()], 19);
    assert_eq!(expected.shape, vec![1, 6, 3, 3]);
    let mut deform = node("DeformConv", "deform", &[], &[]);
    deform.attribute = attrs();
    deform.attribute.push(int_attr("offset_group", 2));
    let offsets = Tensor::f32(vec![1, 24, 3, 3], vec![0.0; 216]);
    let got = run_node(dir.path(), deform, &[x, w, offsets], 19);
    for (g, e) in got.to_f32().iter().zip(expected.to_f32()) {
        assert!((g - e).abs() <= 1e-5, "{:?} vs {:?}", got.to_f32(), expected.to_f32());
    }
}

/// Initializers of the packed types (4- and 2-bit integers, float8, float4) decode to their values, from raw_data and
/// from int32_data (a byte per int32), the first element in the lowest bits; a byte count that does not fit the
/// shape is an error.
#[test]
fn narrow_element_types_decode_from_their_packed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = |data_type: i32, n: i64, bytes: &[u8]| TensorProto { dims: vec![n], data_type, raw_data: bytes.to_vec().into(), ..Default::default() };
    let fields = |data_type: i32, n: i64, bytes: &[i32]| TensorProto { dims: vec![n], data_type, int32_data: bytes.to_vec(), ..Default::default() };
    let cases = [
        ("int4", raw(22, 3, &[0x8f, 0x07]), vec![-1.0, -8.0, 7.0]),
        ("uint2", fields(25, 5, &[0b11_10_01_00, 0b10]), vec![0.0, 1.0, 2.0, 3.0, 2.0]),
        ("e4m3fn", fields(17, 3, &[0x7f, 0xfe, 0x01]), vec![f32::NAN, -448.0, 2f32.powi(-9)]),
        ("e4m3fnuz", raw(18, 2, &[0x80, 0x7f]), vec![f32::NAN, 240.0]),
        ("e5m2", raw(19, 4, &[0x7c, 0xfc, 0x7b, 0x7d]), vec![f32::INFINITY, f32::NEG_INFINITY, 57344.0, f32::NAN]),
        ("e2m1", raw(23, 3, &[0x7f, 0x05]), vec![-6.0, 6.0, 3.0]),
        ("e8m0", raw(24, 3, &[127, 255, 130]), vec![1.0, f32::NAN, 8.0]),
    ];
    let nodes = cases.iter().map(|(name, ..)| node("Identity", name, &[&format!("{name}_w")], &[name])).collect();
    let initializers = cases.iter().map(|(name, t, _)| TensorProto { name: format!("{name}_w"), ..t.clone() }).collect();
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let path = write(dir.path(), "narrow.onnx", &model(nodes, initializers, vec![], &names, 21));
    let outputs: BTreeMap<String, Tensor> = interp::run(&onnx::import(&path, &OnnxOptions::default()).unwrap(), &BTreeMap::new()).unwrap().into_iter().collect();
    for (name, _, want) in &cases {
        let got = outputs[*name].to_f32();
        assert!(got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g == w || (g.is_nan() && w.is_nan())), "{name}: {got:?}, expected {want:?}");
    }

    let short = model(vec![node("Identity", "i", &["w"], &["y"])], vec![TensorProto { name: "w".into(), ..raw(22, 3, &[0x12]) }], vec![], &["y"], 21);
    let err = import_err(&write(dir.path(), "short.onnx", &short));
    assert!(err.contains("initializer `w`") && err.contains("has 1 bytes of raw_data, its shape and type need 2"), "{err}");
}
