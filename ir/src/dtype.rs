use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor.
///
/// Activations are always `F32` (or `I32` for indices). `F16`, `BF16` and the block-quantized formats of ggml
/// (`Q4_0` … `Q6_K`, see [`crate::quant`]) appear as weight storage types and are decoded to f32 when a kernel
/// reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(non_camel_case_types)] // ggml's names for its formats
pub enum DType {
    F32,
    F16,
    BF16,
    I32,
    I64,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

impl DType {
    /// Every block-quantized format, in the order of ggml's type ids.
    pub const BLOCK_FORMATS: [DType; 10] = [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q2_K,
        DType::Q3_K,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];

    /// Bytes per storage unit: one element, or one block of [`DType::block_elems`] elements for a block format.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
            block => crate::quant::BlockFormat::of(block).expect("a block format").block_bytes,
        }
    }

    /// Elements per storage unit: 1, or the block size of a block format.
    pub fn block_elems(self) -> usize {
        crate::quant::BlockFormat::of(self).map_or(1, |f| f.block_elems)
    }

    /// Bytes of `numel` elements stored contiguously (for a block format, `numel` is a multiple of the block size).
    pub fn bytes(self, numel: u64) -> u64 {
        numel / self.block_elems() as u64 * self.size() as u64
    }

    pub fn is_block(self) -> bool {
        self.block_elems() > 1
    }

    /// Whether the values are real numbers (read as f32 by kernels), including the block formats.
    pub fn is_float(self) -> bool {
        !self.is_int()
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q8_0 => "q8_0",
            DType::Q2_K => "q2_k",
            DType::Q3_K => "q3_k",
            DType::Q4_K => "q4_k",
            DType::Q5_K => "q5_k",
            DType::Q6_K => "q6_k",
        }
    }

    /// The dtype named `name` (as [`DType::name`] writes it), if any.
    pub fn from_name(name: &str) -> Option<DType> {
        [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64]
            .into_iter()
            .chain(DType::BLOCK_FORMATS)
            .find(|d| d.name() == name)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
