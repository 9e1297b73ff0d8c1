//! Host tensors: the values the interpreter computes and the runtimes take and return.

use crate::DType;

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape {shape:?} does not match {} values", values.len());
        Tensor { shape, data: Data::F32(values) }
    }

    pub fn i32(shape: Vec<usize>, values: Vec<i32>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape {shape:?} does not match {} values", values.len());
        Tensor { shape, data: Data::I32(values) }
    }

    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape {shape:?} does not match {} values", values.len());
        Tensor { shape, data: Data::I64(values) }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn dtype(&self) -> DType {
        match self.data {
            Data::F32(_) => DType::F32,
            Data::I32(_) => DType::I32,
            Data::I64(_) => DType::I64,
        }
    }

    /// The values as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as i64 (floats truncated toward zero).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
        }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }
}

/// ‖a − b‖₂ / ‖b‖₂ (b is the reference). Computed in f64.
pub fn relative_l2(a: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(a.len(), reference.len(), "relative_l2 of slices of different lengths");
    let (mut diff, mut norm) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(reference) {
        diff += (x as f64 - y as f64).powi(2);
        norm += (y as f64).powi(2);
    }
    if norm == 0.0 { diff.sqrt() } else { (diff / norm).sqrt() }
}
