//! .npy files for `tfc run` (inputs in, outputs out).

use anyhow::{Context, Result, bail};
use npyz::WriterBuilder;
use std::path::Path;
use tfc_ir::{Data, Tensor};

pub fn read(path: &Path) -> Result<Tensor> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).with_context(|| format!("{} is not a .npy file", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let type_str = npy.dtype().descr();
    let t = match type_str.as_str() {
        "'<i8'" => Tensor::i64(shape, npy.into_vec::<i64>()?),
        "'<i4'" => Tensor::i32(shape, npy.into_vec::<i32>()?),
        "'<f4'" => Tensor::f32(shape, npy.into_vec::<f32>()?),
        other => bail!("{}: element type {other} is not supported (use int32, int64 or float32)", path.display()),
    };
    Ok(t)
}

pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let writer = std::io::BufWriter::new(file);
    match &t.data {
        Data::F32(v) => write_values(writer, &t.shape, v),
        Data::I32(v) => write_values(writer, &t.shape, v),
        Data::I64(v) => write_values(writer, &t.shape, v),
    }
    .with_context(|| format!("writing {}", path.display()))
}

fn write_values<T: npyz::AutoSerialize + Copy>(writer: impl std::io::Write, shape: &[usize], values: &[T]) -> std::io::Result<()> {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut npy = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(writer).begin_nd()?;
    npy.extend(values.iter().copied())?;
    npy.finish()
}
