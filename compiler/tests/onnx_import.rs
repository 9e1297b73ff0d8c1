//! The ONNX importer on small models written here: external data (read in place, confined to the model's folder,
//! checked against its file's length), symbolic dimensions and --dim, shape folding, and clear errors (no panic) for
//! malformed protobufs, cycles, old opsets and unsupported operators.

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

    let old = model(vec![node("Relu", "r", &["x"], &["y"])], vec![], vec![x()], &["y"], 11);
    let err = import_err(&write(dir.path(), "old.onnx", &old));
    assert!(err.contains("opset 11") && err.contains("13 and later"), "{err}");

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
