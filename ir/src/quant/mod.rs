//! ggml's block-quantized weight formats: the one place that knows their layouts. The CPU decoder and the
//! quantizer here, the WGSL decoders (`tfc-codegen-wgsl`) and the bundle layout all take their facts from this
//! module.
//!
//! A format stores each run of `block_elems` consecutive elements of a row as a block of `block_bytes` bytes: one or
//! two f16 scales (`d`, then `m` or `dmin` where the format has an offset) and the block's *quant part*, everything
//! else (packed quants and, for the K-quants, packed sub-block scales). In ggml's blocks the f16 scales come first
//! or last, so the quant part is one contiguous run of a multiple of 4 bytes.
//!
//! Sources: ggml's `ggml-common.h` (the block structs, with the sizes asserted here too) and its dequantization
//! rules (`dequantize_row_*`); the field offsets below are those of the quant part.

mod decode;
mod encode;

pub use decode::decode_block;
pub use encode::quantize_row;

use crate::DType;

/// Elements per block of the K-quants (`QK_K`).
pub const QK_K: usize = 256;

/// Offsets in bytes of the fields of each format's quant part. Q4_0, Q4_1 and Q8_0 hold only `qs`, at 0.
pub mod field {
    /// Q5_0, Q5_1: `qh[4]` (the fifth bits, a little-endian u32), then `qs[16]`.
    pub const Q5_QH: usize = 0;
    pub const Q5_QS: usize = 4;
    /// Q2_K: `scales[16]` (scale in the low nibble, min in the high), `qs[64]`.
    pub const Q2K_SCALES: usize = 0;
    pub const Q2K_QS: usize = 16;
    /// Q3_K: `hmask[32]`, `qs[64]`, `scales[12]` (sixteen 6-bit scales).
    pub const Q3K_HMASK: usize = 0;
    pub const Q3K_QS: usize = 32;
    pub const Q3K_SCALES: usize = 96;
    /// Q4_K: `scales[12]` (eight 6-bit scales and mins), `qs[128]`.
    pub const Q4K_SCALES: usize = 0;
    pub const Q4K_QS: usize = 12;
    /// Q5_K: `scales[12]`, `qh[32]`, `qs[128]`.
    pub const Q5K_SCALES: usize = 0;
    pub const Q5K_QH: usize = 12;
    pub const Q5K_QS: usize = 44;
    /// Q6_K: `ql[128]`, `qh[64]`, `scales[16]` (i8).
    pub const Q6K_QL: usize = 0;
    pub const Q6K_QH: usize = 128;
    pub const Q6K_SCALES: usize = 192;
}

/// The layout of one block format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockFormat {
    pub dtype: DType,
    pub block_elems: usize,
    /// Bytes per block in ggml's layout.
    pub block_bytes: usize,
    /// Bytes of the quant part (a multiple of 4).
    pub quant_bytes: usize,
    /// How many f16 scales a block has: 1 (`d`) or 2 (`d`, then `m` or `dmin`).
    pub halves: usize,
    /// Whether ggml puts the f16 scales before the quant part (otherwise after it).
    pub halves_first: bool,
}

const fn format(dtype: DType, block_elems: usize, quant_bytes: usize, halves: usize, halves_first: bool) -> BlockFormat {
    BlockFormat { dtype, block_elems, block_bytes: quant_bytes + 2 * halves, quant_bytes, halves, halves_first }
}

const FORMATS: [BlockFormat; 10] = [
    format(DType::Q4_0, 32, 16, 1, true),
    format(DType::Q4_1, 32, 16, 2, true),
    format(DType::Q5_0, 32, field::Q5_QS + 16, 1, true),
    format(DType::Q5_1, 32, field::Q5_QS + 16, 2, true),
    format(DType::Q8_0, 32, 32, 1, true),
    format(DType::Q2_K, QK_K, field::Q2K_QS + 64, 2, false),
    format(DType::Q3_K, QK_K, field::Q3K_SCALES + 12, 1, false),
    format(DType::Q4_K, QK_K, field::Q4K_QS + 128, 2, true),
    format(DType::Q5_K, QK_K, field::Q5K_QS + 128, 2, true),
    format(DType::Q6_K, QK_K, field::Q6K_SCALES + 16, 1, false),
];

// The block sizes of ggml-common.h's static assertions.
const _: () = {
    let ggml_sizes = [18, 20, 22, 24, 34, 84, 110, 144, 176, 210];
    let mut i = 0;
    while i < FORMATS.len() {
        assert!(FORMATS[i].block_bytes == ggml_sizes[i]);
        assert!(FORMATS[i].quant_bytes.is_multiple_of(4));
        i += 1;
    }
};

impl BlockFormat {
    /// The layout of `dtype`, or `None` for element types.
    pub fn of(dtype: DType) -> Option<&'static BlockFormat> {
        FORMATS.iter().find(|f| f.dtype == dtype)
    }

    /// The quant part and the f16 scales (`m` is 0 where the format has one scale) of one ggml block.
    pub fn split<'a>(&self, block: &'a [u8]) -> (&'a [u8], f32, f32) {
        let (halves, quant) = if self.halves_first {
            let (h, q) = block.split_at(2 * self.halves);
            (h, q)
        } else {
            let (q, h) = block.split_at(self.quant_bytes);
            (h, q)
        };
        let half = |i: usize| half::f16::from_le_bytes([halves[2 * i], halves[2 * i + 1]]).to_f32();
        (quant, half(0), if self.halves == 2 { half(1) } else { 0.0 })
    }

    /// Decodes whole ggml blocks (`ggml.len()` a multiple of `block_bytes`), appending to `out`.
    pub fn decode(&self, ggml: &[u8], out: &mut Vec<f32>) {
        for block in ggml.chunks_exact(self.block_bytes) {
            let (quant, d, m) = self.split(block);
            let at = out.len();
            out.resize(at + self.block_elems, 0.0);
            decode_block(self.dtype, quant, d, m, &mut out[at..]);
        }
    }

    /// Bytes of one row of `row_len` elements (a multiple of `block_elems`) in the bundle's layout: the quant parts
    /// of the row's blocks, then their f16 scales, zero-padded to a multiple of 4.
    pub fn bundle_row_bytes(&self, row_len: usize) -> usize {
        let blocks = row_len / self.block_elems;
        blocks * self.quant_bytes + (blocks * 2 * self.halves).next_multiple_of(4)
    }

    /// Appends one row, given as ggml blocks, in the bundle's layout (see [`BlockFormat::bundle_row_bytes`]).
    pub fn repack_row(&self, ggml_row: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        for block in ggml_row.chunks_exact(self.block_bytes) {
            out.extend_from_slice(self.split(block).0);
        }
        for block in ggml_row.chunks_exact(self.block_bytes) {
            let halves = if self.halves_first { &block[..2 * self.halves] } else { &block[self.quant_bytes..] };
            out.extend_from_slice(halves);
        }
        let padded = start + (out.len() - start).next_multiple_of(4);
        out.resize(padded, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_format_has_a_layout_and_quantizes_to_what_it_decodes() {
        for dtype in DType::BLOCK_FORMATS {
            let f = BlockFormat::of(dtype).unwrap();
            let values: Vec<f32> = (0..2 * f.block_elems).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
            let mut ggml = Vec::new();
            quantize_row(dtype, &values, &mut ggml);
            assert_eq!(ggml.len(), 2 * f.block_bytes, "{dtype}");
            let mut decoded = Vec::new();
            f.decode(&ggml, &mut decoded);
            let rms = (values.iter().zip(&decoded).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / values.len() as f32).sqrt();
            // The values span ±3; even 2 bits per weight keep the error well below that.
            assert!(rms < 0.5, "{dtype}: rms {rms}");
        }
    }

    #[test]
    fn the_bundle_layout_keeps_every_byte_of_a_row() {
        for dtype in DType::BLOCK_FORMATS {
            let f = BlockFormat::of(dtype).unwrap();
            let row: Vec<u8> = (0..3 * f.block_bytes).map(|i| (i * 7 % 251) as u8).collect();
            let mut packed = Vec::new();
            f.repack_row(&row, &mut packed);
            assert_eq!(packed.len(), f.bundle_row_bytes(3 * f.block_elems), "{dtype}");
            let mut sorted_in = row.clone();
            let mut sorted_out = packed[..row.len()].to_vec();
            sorted_in.sort();
            sorted_out.sort();
            assert_eq!(sorted_in, sorted_out, "{dtype}");
            assert!(packed[row.len()..].iter().all(|&b| b == 0));
        }
    }
}
