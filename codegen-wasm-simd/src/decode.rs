//! How kernels read and write elements of each storage type. Weights keep their stored dtype in memory and are
//! decoded as they are read, four at a time into an f32x4 or one at a time into an f32; nothing is expanded.
//!
//! Dense formats (`Format`) address element i at `base + i · size`. Block-quantized formats (`Blocks`, ggml's
//! 32-element ones) are read a block at a time by the kernels that take weights in them (matmul's dot strategy and
//! gather): the block's f16 scales once, then its eight groups of four elements. `Format::of` and `Blocks::of`
//! between them match every dtype, so a new `DType` does not compile until it is handled here; the K-quants'
//! 256-element blocks have no decoder yet and are a clear error.

use crate::asm::{Body, I, Local, mem};
use tfc_ir::DType;

/// The storage of an operand's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    F32,
    /// IEEE half precision, decoded exactly (subnormals, infinities and NaN included).
    F16,
    /// The high half of an f32.
    BF16,
    I32,
}

impl Format {
    /// The format of `dtype`, or why kernels cannot read it.
    pub fn of(dtype: DType) -> Result<Format, String> {
        match dtype {
            DType::F32 => Ok(Format::F32),
            DType::F16 => Ok(Format::F16),
            DType::BF16 => Ok(Format::BF16),
            DType::I32 => Ok(Format::I32),
            DType::I64 => Err("i64 tensors are not stored by tfc bundles; cast them to i32".into()),
            block => Err(format!("{block} weights are read only by matmul (as the [N, K] weight) and gather kernels")),
        }
    }

    /// Bytes of one element.
    pub fn size(self) -> u32 {
        match self {
            Format::F32 | Format::I32 => 4,
            Format::F16 | Format::BF16 => 2,
        }
    }

    /// Bytes of four consecutive elements: how far `load4` moves along a row.
    pub fn bytes_per_4(self) -> u32 {
        4 * self.size()
    }

    /// log2 of the element size, to turn an element index into a byte offset.
    pub fn shift(self) -> i32 {
        self.size().trailing_zeros() as i32
    }

    /// Pushes the byte address of element `index` (an i32 local) of the tensor at `base`.
    pub fn address(self, b: &mut Body, base: Local, index: Local) {
        b.get(base).get(index).i32c(self.shift()).op(I::I32Shl).op(I::I32Add);
    }

    /// Replaces the byte address on the stack by the f32x4 of the four elements there (integers converted).
    pub fn load4(self, b: &mut Body) {
        self.load4_at(b, 0);
    }

    /// `load4` of the elements `offset` bytes past the address on the stack.
    pub fn load4_at(self, b: &mut Body, offset: u32) {
        match self {
            Format::F32 => {
                b.v128_load(offset);
            }
            Format::I32 => {
                b.v128_load(offset).op(I::F32x4ConvertI32x4S);
            }
            Format::BF16 => {
                b.op(I::V128Load16x4U(mem(offset, 0))).i32c(16).op(I::I32x4Shl);
            }
            Format::F16 => {
                b.op(I::V128Load16x4U(mem(offset, 0)));
                half_to_f32x4(b);
            }
        }
    }

    /// Replaces the byte address on the stack by the element there as an f32 (integers converted).
    pub fn load1(self, b: &mut Body) {
        self.load1_at(b, 0);
    }

    /// `load1` of the element `offset` bytes past the address on the stack.
    pub fn load1_at(self, b: &mut Body, offset: u32) {
        match self {
            Format::F32 => {
                b.f32_load(offset);
            }
            Format::I32 => {
                b.i32_load(offset).op(I::F32ConvertI32S);
            }
            Format::BF16 => {
                b.op(I::I32Load16U(mem(offset, 1))).i32c(16).op(I::I32Shl).op(I::F32ReinterpretI32);
            }
            Format::F16 => {
                b.op(I::I32Load16U(mem(offset, 1))).op(I::I32x4Splat);
                half_to_f32x4(b);
                b.op(I::F32x4ExtractLane(0));
            }
        }
    }

    /// Stores the f32 in local `value` at the byte address on the stack, in this (float) format: f16 rounded to
    /// nearest, ties to even.
    pub fn store1(self, b: &mut Body, value: Local) {
        match self {
            Format::F32 => {
                b.get(value).f32_store(0);
            }
            Format::F16 => {
                b.get(value);
                f32_to_half(b);
                b.op(I::I32Store16(mem(0, 1)));
            }
            other => unreachable!("kernels store floats as f32 or f16, not {other:?}"),
        }
    }

    /// Replaces the byte address on the stack by the element there as an i32 (floats truncated toward zero,
    /// saturating, as Rust's `as`).
    pub fn load1_i32(self, b: &mut Body) {
        match self {
            Format::I32 => {
                b.i32_load(0);
            }
            float => {
                float.load1(b);
                b.op(I::I32TruncSatF32S);
            }
        }
    }

    /// Pushes an element's bits unchanged (for kernels that only move elements), from the byte address on the stack.
    pub fn load_bits(self, b: &mut Body) {
        match self.size() {
            4 => b.i32_load(0),
            _ => b.op(I::I32Load16U(mem(0, 1))),
        };
    }

    /// Stores the bits on the stack (an i32) at the address under them, as `load_bits` read them.
    pub fn store_bits(self, b: &mut Body) {
        match self.size() {
            4 => b.i32_store(0),
            _ => b.op(I::I32Store16(mem(0, 1))),
        };
    }
}

/// Replaces four IEEE halves (zero-extended in i32x4 lanes) by their f32 values. The exponent and mantissa shifted
/// into place and multiplied by 2^112 rebias normals and subnormals alike; infinities and NaN (exponent 31) take the
/// f32 exponent 255 instead; the sign goes back last.
fn half_to_f32x4(b: &mut Body) {
    let (h, magnitude) = (b.v128(), b.v128());
    b.set(h);
    b.get(h).splat_i32(0x7fff).op(I::V128And).i32c(13).op(I::I32x4Shl).set(magnitude);
    b.get(magnitude).splat_i32(0x7f80_0000).op(I::V128Or);
    b.get(magnitude).splat(f32::from_bits(0x7780_0000)).op(I::F32x4Mul);
    b.get(magnitude).splat_i32(0x7c00 << 13).op(I::I32x4GeU);
    b.op(I::V128Bitselect);
    b.get(h).splat_i32(0x8000).op(I::V128And).i32c(16).op(I::I32x4Shl).op(I::V128Or);
}

/// Pushes the f16 bits (in an i32) nearest to the f32 on the stack, ties to even; overflow gives infinity and NaN
/// stays a quiet NaN, as `half::f16::from_f32`.
pub(crate) fn f32_to_half(b: &mut Body) {
    let (x, sign, magnitude) = (b.i32(), b.i32(), b.i32());
    b.op(I::I32ReinterpretF32).tee(x).u32c(0x8000_0000).op(I::I32And).i32c(16).op(I::I32ShrU).set(sign);
    b.get(x).u32c(0x7fff_ffff).op(I::I32And).set(magnitude);
    // ≥ 65520 rounds to infinity; NaN keeps a quiet payload bit.
    b.get(magnitude).u32c(0x477f_f000).op(I::I32GeU).if_else(
        |b| {
            b.u32c(0x7c00).u32c(0x7e00).get(magnitude).u32c(0x7f80_0000).op(I::I32LeU).op(I::Select).set(x);
        },
        |b| {
            b.get(magnitude).u32c(0x3880_0000).op(I::I32LtU).if_else(
                // Below the smallest normal half: adding 0.5 lines the mantissa up with the half's subnormal steps,
                // so the float addition does the rounding.
                |b| {
                    b.get(magnitude).op(I::F32ReinterpretI32).f32c(0.5).op(I::F32Add).op(I::I32ReinterpretF32);
                    b.u32c(0x3f00_0000).op(I::I32Sub).set(x);
                },
                // Rebias the exponent, round to nearest even on the 13 dropped bits, shift into place.
                |b| {
                    b.get(magnitude).u32c(((15u32.wrapping_sub(127)) << 23).wrapping_add(0xfff)).op(I::I32Add);
                    b.get(magnitude).i32c(13).op(I::I32ShrU).i32c(1).op(I::I32And).op(I::I32Add);
                    b.i32c(13).op(I::I32ShrU).set(x);
                },
            );
        },
    );
    b.get(x).get(sign).op(I::I32Or);
}

/// Pushes the bf16 bits (in an i32) nearest to the f32 on the stack, ties to even; NaN stays a quiet NaN, as
/// `half::bf16::from_f32`.
pub(crate) fn f32_to_bf16(b: &mut Body) {
    let x = b.i32();
    b.op(I::I32ReinterpretF32).set(x);
    b.get(x).i32c(16).op(I::I32ShrU).u32c(0x40).op(I::I32Or);
    b.get(x).u32c(0x7fff).op(I::I32Add).get(x).i32c(16).op(I::I32ShrU).i32c(1).op(I::I32And).op(I::I32Add).i32c(16).op(I::I32ShrU);
    b.get(x).u32c(0x7fff_ffff).op(I::I32And).u32c(0x7f80_0000).op(I::I32GtU).op(I::Select);
}

/// A ggml block format with 32-element blocks, as a bundle stores its rows: the quant parts of a row's blocks one
/// after another, then their f16 scales (`d`, and `m` for the formats with an offset), padded to 4 bytes
/// (`tfc_ir::quant::BlockFormat::bundle_row_bytes`). Values are computed as `tfc_ir::quant::decode_block` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Blocks {
    pub dtype: DType,
    /// Bytes of a block's quant part.
    pub quant_bytes: u32,
    /// f16 scales per block: 1 (`d`) or 2 (`d`, `m`).
    pub halves: u32,
}

/// Elements per block of the formats `Blocks` decodes.
pub(crate) const BLOCK: u32 = 32;

impl Blocks {
    /// The block format of `dtype`; `None` for a dense dtype; an error for a block format without a decoder.
    pub fn of(dtype: DType) -> Result<Option<Blocks>, String> {
        let Some(f) = tfc_ir::quant::BlockFormat::of(dtype) else { return Ok(None) };
        match dtype {
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => {
                debug_assert_eq!(f.block_elems, BLOCK as usize);
                Ok(Some(Blocks { dtype, quant_bytes: f.quant_bytes as u32, halves: f.halves as u32 }))
            }
            DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K => Err(format!(
                "{dtype} weights are not decoded by the WASM fallback yet (its decoders cover q4_0, q4_1, q5_0, q5_1 and q8_0); compile with --target webgpu or another --quant"
            )),
            dense => unreachable!("{dense} has no block format"),
        }
    }

    /// Pushes the bytes of one row of `len` elements (a multiple of 32, an i32 local).
    pub fn row_bytes(self, b: &mut Body, len: Local) {
        let scales = b.i32();
        // blocks · quant_bytes + (blocks · 2 · halves rounded up to 4)
        b.get(len).i32c(5).op(I::I32ShrU).i32c((2 * self.halves) as i32).op(I::I32Mul).i32c(3).op(I::I32Add).i32c(!3).op(I::I32And).set(scales);
        b.get(len).i32c(5).op(I::I32ShrU).i32c(self.quant_bytes as i32).op(I::I32Mul).get(scales).op(I::I32Add);
    }

    /// Pushes the byte offset of the scales of a row's first block from the row's start (rows of `len` elements).
    pub fn scales_offset(self, b: &mut Body, len: Local) {
        b.get(len).i32c(5).op(I::I32ShrU).i32c(self.quant_bytes as i32).op(I::I32Mul);
    }

    /// Sets `d` and `m` (f32x4 splats) from the block scales at the byte address in `scales` (`m` is unused by the
    /// formats without an offset).
    pub fn load_scales(self, b: &mut Body, scales: Local, d: Local, m: Local) {
        for (k, target) in [d, m].into_iter().take(self.halves as usize).enumerate() {
            b.get(scales).op(I::I32Load16U(mem(2 * k as u32, 1))).op(I::I32x4Splat);
            half_to_f32x4(b);
            b.set(target);
        }
    }

    /// Pushes the f32x4 of elements 4·group … 4·group + 3 of the block whose quant part is at the byte address in
    /// `quants`, with its scales `d` and `m`.
    pub fn decode_group(self, b: &mut Body, quants: Local, group: u32, d: Local, m: Local) {
        // Four bytes to four i32 lanes, sign- or zero-extended.
        let widen = |b: &mut Body, offset: u32, signed: bool| {
            b.get(quants).op(I::V128Load32Zero(mem(offset, 0)));
            if signed {
                b.op(I::I16x8ExtendLowI8x16S).op(I::I32x4ExtendLowI16x8S);
            } else {
                b.op(I::I16x8ExtendLowI8x16U).op(I::I32x4ExtendLowI16x8U);
            }
        };
        // The 4-bit quants of elements 4·group…: low nibbles of qs[0..16] hold elements 0..16, high nibbles 16..32.
        let nibbles = |b: &mut Body, qs: u32| {
            widen(b, qs + 4 * (group % 4), false);
            if group >= 4 {
                b.i32c(4).op(I::I32x4ShrU);
            }
            b.splat_i32(15).op(I::V128And);
        };
        // The fifth bits of Q5: bit j of the u32 qh, for j = 4·group + lane, moved to bit 4.
        let fifth_bits = |b: &mut Body| {
            let bits: [i32; 4] = std::array::from_fn(|lane| 1 << (4 * group as usize + lane));
            let lanes = bits.iter().enumerate().fold(0i128, |v, (lane, &bit)| v | ((bit as u32 as i128) << (32 * lane)));
            b.get(quants).op(I::V128Load32Splat(mem(0, 2))).op(I::V128Const(lanes)).op(I::V128And);
            b.splat_i32(0).op(I::I32x4Ne).splat_i32(16).op(I::V128And).op(I::V128Or);
        };
        match self.dtype {
            DType::Q8_0 => {
                widen(b, 4 * group, true);
                b.op(I::F32x4ConvertI32x4S).get(d).op(I::F32x4Mul);
            }
            DType::Q4_0 => {
                b.get(d);
                nibbles(b, 0);
                b.op(I::F32x4ConvertI32x4U).splat(8.0).op(I::F32x4Sub).op(I::F32x4Mul);
            }
            DType::Q4_1 => {
                b.get(d);
                nibbles(b, 0);
                b.op(I::F32x4ConvertI32x4U).op(I::F32x4Mul).get(m).op(I::F32x4Add);
            }
            DType::Q5_0 => {
                b.get(d);
                nibbles(b, 4);
                fifth_bits(b);
                b.op(I::F32x4ConvertI32x4U).splat(16.0).op(I::F32x4Sub).op(I::F32x4Mul);
            }
            DType::Q5_1 => {
                b.get(d);
                nibbles(b, 4);
                fifth_bits(b);
                b.op(I::F32x4ConvertI32x4U).op(I::F32x4Mul).get(m).op(I::F32x4Add);
            }
            other => unreachable!("Blocks::of gives no block decoder for {other}"),
        }
    }
}

