//! `tfc inspect`: what a bundle holds and needs, from its manifest alone.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;
use tfc_ir::manifest::Manifest;

pub fn summarise(m: &Manifest) -> Value {
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &m.dispatches {
        *ops.entry(d.op.as_str()).or_default() += 1;
    }
    let mut bytes_per_dtype: BTreeMap<String, u64> = BTreeMap::new();
    let mut parameters = 0u64;
    let mut tensors = Vec::new();
    for w in &m.weights {
        let numel = w.shape.iter().product::<u64>();
        let bytes = w.pieces.iter().map(|p| p.size).sum::<u64>();
        parameters += numel;
        *bytes_per_dtype.entry(w.dtype.to_string()).or_default() += bytes;
        let bits_per_weight = (bytes * 8) as f64 / numel.max(1) as f64;
        tensors.push(json!({ "name": w.name, "dtype": w.dtype, "shape": w.shape, "bytes": bytes, "bits_per_weight": bits_per_weight }));
    }
    let io = |decls: &[tfc_ir::manifest::IoDecl]| -> Vec<Value> {
        decls
            .iter()
            .map(|d| json!({ "name": d.name, "dtype": d.dtype, "shape": d.shape.iter().map(|e| e.to_string()).collect::<Vec<_>>() }))
            .collect()
    };
    json!({
        "format": format!("{} v{}", m.format, m.version),
        "model": m.model,
        "symbols": m.symbols.iter().map(|s| (s.name.clone(), s.max)).collect::<BTreeMap<_, _>>(),
        "inputs": io(&m.inputs),
        "outputs": io(&m.outputs),
        "dispatches": m.dispatches.len(),
        "shaders": m.shaders.len(),
        "ops": ops,
        "parameters": parameters,
        "weight_bytes_per_dtype": bytes_per_dtype,
        "tensors": tensors,
        "chunks": m.chunks.len(),
        "chunk_bytes": m.chunks.iter().map(|c| c.size).sum::<u64>(),
        "requires": { "features": m.requires.features, "limits": m.requires.limits },
        "tokenizer": m.tokenizer,
    })
}

pub fn render(s: &Value) -> String {
    let mut out = String::new();
    let obj = |v: &Value| -> String {
        v.as_object()
            .map(|o| o.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string))).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let io = |v: &Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        let shape: Vec<&str> = d["shape"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
                        format!("{} {}[{}]", d["name"].as_str().unwrap(), d["dtype"].as_str().unwrap(), shape.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    let _ = writeln!(out, "format      {}", s["format"].as_str().unwrap_or(""));
    let _ = writeln!(out, "model       {}", obj(&s["model"]));
    let _ = writeln!(out, "symbols     {}", obj(&s["symbols"]));
    let _ = writeln!(out, "inputs      {}", io(&s["inputs"]));
    let _ = writeln!(out, "outputs     {}", io(&s["outputs"]));
    let _ = writeln!(out, "parameters  {}", s["parameters"]);
    let _ = writeln!(out, "weights     {} (bytes per dtype)", obj(&s["weight_bytes_per_dtype"]));
    let _ = writeln!(out, "chunks      {} ({} bytes)", s["chunks"], s["chunk_bytes"]);
    let _ = writeln!(out, "dispatches  {} using {} shaders", s["dispatches"], s["shaders"]);
    let _ = writeln!(out, "ops         {}", obj(&s["ops"]));
    let _ = writeln!(out, "requires    {}", obj(&s["requires"]["limits"]));
    let _ = writeln!(out, "tokenizer   {}", s["tokenizer"].as_str().unwrap_or("none"));
    let _ = writeln!(out, "\n{:<48} {:<6} {:>16} {:>12} {:>6}", "tensor", "format", "shape", "bytes", "bits");
    for t in s["tensors"].as_array().into_iter().flatten() {
        let shape: Vec<String> = t["shape"].as_array().into_iter().flatten().map(|d| d.to_string()).collect();
        let _ = writeln!(
            out,
            "{:<48} {:<6} {:>16} {:>12} {:>6.2}",
            t["name"].as_str().unwrap_or(""),
            t["dtype"].as_str().unwrap_or(""),
            shape.join("×"),
            t["bytes"].as_u64().unwrap_or(0),
            t["bits_per_weight"].as_f64().unwrap_or(0.0)
        );
    }
    out
}
