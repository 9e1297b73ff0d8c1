//! How kernels read and write elements of each storage type. Weights keep their stored dtype in memory and are
//! decoded as they are read, four at a time into an f32x4 or one at a time into an f32; nothing is expanded.
//!
//! Extension point for block-quantized weights (ggml's Q8_0, Q4_0, … as new `DType` variants): `Format::of` matches
//! every dtype, so a new variant does not compile until it has a format here. A block format's `load4` reads the
//! four elements of one group inside a block (their quants and the block's scale) and returns them as an f32x4,
//! exactly like the dense formats below; kernels that stream weights (matmul, gather) read elements only through
//! `load4` and `load1`, and step through a row `bytes_per_4` at a time, which a block format defines per group.

use crate::asm::{Body, I, mem};
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
            block => Err(format!(
                "{block} weights are not decoded by the WASM fallback yet; compile with --target webgpu, or without --quant"
            )),
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
    pub fn address(self, b: &mut Body, base: crate::asm::Local, index: crate::asm::Local) {
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
