//! How kernels read and write elements of each storage type. Weights keep their stored dtype in memory and are
//! decoded as they are read, four at a time into an f32x4 or one at a time into an f32; nothing is expanded.
//!
//! Dense formats (`Format`) address element i at `base + i · size`. Block-quantized formats (`Blocks`: all of
//! ggml's, the 32-element ones and the 256-element K-quants) are read a block at a time by the kernels that take
//! weights in them (matmul's dot strategy and gather): the block's f16 scales once, then sub-block by sub-block
//! (16 or 32 elements sharing a scale), 16 quants per vector load. `Format::of` takes the dense dtypes, `Blocks::of`
//! the block formats.

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

/// Replaces the IEEE half (zero-extended in an i32) on the stack by its f32 value, exactly, as `half_to_f32x4` does
/// for four lanes.
fn half_to_f32(b: &mut Body) {
    let (h, magnitude) = (b.i32(), b.i32());
    b.set(h);
    b.get(h).i32c(0x7fff).op(I::I32And).i32c(13).op(I::I32Shl).set(magnitude);
    b.get(magnitude).u32c(0x7f80_0000).op(I::I32Or);
    b.get(magnitude).op(I::F32ReinterpretI32).f32c(f32::from_bits(0x7780_0000)).op(I::F32Mul).op(I::I32ReinterpretF32);
    b.get(magnitude).u32c(0x7c00 << 13).op(I::I32GeU).op(I::Select);
    b.get(h).i32c(0x8000).op(I::I32And).i32c(16).op(I::I32Shl).op(I::I32Or).op(I::F32ReinterpretI32);
}

/// A ggml block format as a bundle stores its rows: the quant parts of a row's blocks one after another, then their
/// f16 scales (`d`, and `m` or `dmin` for the formats with an offset), padded to 4 bytes
/// (`tfc_ir::quant::BlockFormat::bundle_row_bytes`).
///
/// Kernels walk a block as *sub-blocks* of 16 or 32 consecutive elements that share a scale: every element of
/// sub-block s is `a · q + o`, with q a small integer, `a` the sub-block's scale and `o` its offset (only for the
/// formats with one). Computed in f32 like this, each value is exactly `tfc_ir::quant::decode_block`'s: `a` is the
/// same product (an f16 times a small integer, exact), `a · q` is exact, and where ggml subtracts `dmin · min` the
/// offset is that product negated. A dot product can thus take `a · Σ q·x + o · Σ x` per sub-block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Blocks {
    pub dtype: DType,
    /// Elements per block: 32, or 256 for the K-quants.
    pub elems: u32,
    /// Bytes of a block's quant part.
    pub quant_bytes: u32,
    /// f16 scales per block: 1 (`d`) or 2 (`d`, then `m` or `dmin`).
    pub halves: u32,
}

impl Blocks {
    /// The block format of `dtype`; `None` for a dense dtype.
    pub fn of(dtype: DType) -> Option<Blocks> {
        let f = tfc_ir::quant::BlockFormat::of(dtype)?;
        Some(Blocks { dtype, elems: f.block_elems as u32, quant_bytes: f.quant_bytes as u32, halves: f.halves as u32 })
    }

    /// Pushes the number of blocks in a row of `len` elements (an i32 local, a multiple of `elems`).
    pub fn count(self, b: &mut Body, len: Local) {
        b.get(len).i32c(self.elems.trailing_zeros() as i32).op(I::I32ShrU);
    }

    /// Pushes the bytes of one row of `len` elements.
    pub fn row_bytes(self, b: &mut Body, len: Local) {
        let scales = b.i32();
        // blocks · quant_bytes + (blocks · 2 · halves rounded up to 4)
        self.count(b, len);
        b.i32c((2 * self.halves) as i32).op(I::I32Mul).i32c(3).op(I::I32Add).i32c(!3).op(I::I32And).set(scales);
        self.scales_offset(b, len);
        b.get(scales).op(I::I32Add);
    }

    /// Pushes the byte offset of the scales of a row's first block from the row's start (rows of `len` elements).
    pub fn scales_offset(self, b: &mut Body, len: Local) {
        self.count(b, len);
        b.i32c(self.quant_bytes as i32).op(I::I32Mul);
    }

    /// Elements per sub-block (sharing one scale and offset).
    pub fn sub_elems(self) -> u32 {
        match self.dtype {
            DType::Q2_K | DType::Q3_K | DType::Q6_K => 16,
            _ => 32,
        }
    }

    pub fn sub_blocks(self) -> u32 {
        self.elems / self.sub_elems()
    }

    /// Whether elements have an offset `o` besides the scale.
    pub fn has_offset(self) -> bool {
        matches!(self.dtype, DType::Q4_1 | DType::Q5_1 | DType::Q2_K | DType::Q4_K | DType::Q5_K)
    }

    /// Sets the f32 locals `d` and `m` from the block's f16 scales at the byte address in `scales` (`m` is left
    /// alone by the formats with one scale).
    pub fn load_scales(self, b: &mut Body, scales: Local, d: Local, m: Local) {
        for (k, target) in [d, m].into_iter().take(self.halves as usize).enumerate() {
            b.get(scales).op(I::I32Load16U(mem(2 * k as u32, 1)));
            half_to_f32(b);
            b.set(target);
        }
    }

    /// Sets `a` and, for the formats with an offset, `o` (f32x4 splats) to the scale and offset of sub-block `s` of
    /// the block whose quant part is at the byte address in `quants`, with f16 scales `d` and `m` (f32 locals).
    pub fn sub_block_scales(self, b: &mut Body, quants: Local, s: u32, (d, m): (Local, Local), (a, o): (Local, Local)) {
        use tfc_ir::quant::field::*;
        let byte = |b: &mut Body, at: usize| {
            b.get(quants).op(I::I32Load8U(mem(at as u32, 0)));
        };
        // Pushes `scale` (an f32 local) times the integer `value` pushes.
        let times = |b: &mut Body, scale: Local, value: &dyn Fn(&mut Body)| {
            b.get(scale);
            value(b);
            b.op(I::F32ConvertI32S).op(I::F32Mul);
        };
        let s_us = s as usize;
        // The 6-bit scale and min of sub-block s of Q4_K and Q5_K (`k_scale_min` in tfc_ir::quant).
        let k_scale_min = |b: &mut Body, at: usize, which: usize| {
            if s_us < 4 {
                byte(b, at + s_us + 4 * which);
                b.i32c(63).op(I::I32And);
            } else {
                byte(b, at + s_us + 4);
                if which == 0 {
                    b.i32c(15).op(I::I32And);
                } else {
                    b.i32c(4).op(I::I32ShrU);
                }
                byte(b, at + s_us - 4 + 4 * which);
                b.i32c(6).op(I::I32ShrU).i32c(4).op(I::I32Shl).op(I::I32Or);
            }
        };
        match self.dtype {
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => {
                b.get(d);
                if self.has_offset() {
                    b.get(m).op(I::F32x4Splat).set(o);
                }
            }
            DType::Q2_K => {
                times(b, d, &|b| {
                    byte(b, Q2K_SCALES + s_us);
                    b.i32c(15).op(I::I32And);
                });
                times(b, m, &|b| {
                    byte(b, Q2K_SCALES + s_us);
                    b.i32c(4).op(I::I32ShrU);
                });
                b.op(I::F32Neg).op(I::F32x4Splat).set(o);
            }
            DType::Q3_K => times(b, d, &|b| {
                // Low 4 bits in the nibbles of bytes 0..8, high 2 bits in the bit pairs of bytes 8..12; biased by 32.
                byte(b, Q3K_SCALES + s_us % 8);
                b.i32c(4 * (s / 8) as i32).op(I::I32ShrU).i32c(15).op(I::I32And);
                byte(b, Q3K_SCALES + 8 + s_us % 4);
                b.i32c(2 * (s / 4) as i32).op(I::I32ShrU).i32c(3).op(I::I32And).i32c(4).op(I::I32Shl).op(I::I32Or);
                b.i32c(32).op(I::I32Sub);
            }),
            DType::Q4_K | DType::Q5_K => {
                let at = if self.dtype == DType::Q4_K { Q4K_SCALES } else { Q5K_SCALES };
                times(b, d, &|b| k_scale_min(b, at, 0));
                times(b, m, &|b| k_scale_min(b, at, 1));
                b.op(I::F32Neg).op(I::F32x4Splat).set(o);
            }
            DType::Q6_K => times(b, d, &|b| {
                b.get(quants).op(I::I32Load8S(mem((Q6K_SCALES + s_us) as u32, 0)));
            }),
            other => unreachable!("{other} is not a block format"),
        }
        b.f32c(1.0 / QUANT_SCALE).op(I::F32Mul).op(I::F32x4Splat).set(a);
    }

    /// Sets `bytes[v]` (`sub_elems / 16` of them) to the quants of elements 16·v … 16·v + 15 of sub-block `s` of the
    /// block whose quant part is at the byte address in `quants`: one byte lane per element, signed for the signed
    /// formats. `scratch` is a v128 local the decoder may overwrite.
    pub fn sub_block_quants(self, b: &mut Body, quants: Local, s: u32, bytes: &[Local], scratch: Local) {
        use tfc_ir::quant::field::*;
        let load = |b: &mut Body, at: u32| {
            b.get(quants).v128_load(at);
        };
        // Moves bit `from` of every byte lane to bit `to`, keeping only it.
        let move_bit = |b: &mut Body, from: u32, to: u32, width: u32| {
            if from > to {
                b.i32c((from - to) as i32).op(I::I8x16ShrU);
            } else if to > from {
                b.i32c((to - from) as i32).op(I::I8x16Shl);
            }
            b.op(I::V128Const(i8x16_bits((((1u32 << width) - 1) << to) as u8)));
            b.op(I::V128And);
        };
        let low_nibbles = |b: &mut Body| {
            b.op(I::V128Const(i8x16_bits(15))).op(I::V128And);
        };
        let high_nibbles = |b: &mut Body| {
            b.i32c(4).op(I::I8x16ShrU);
        };
        // Q5_0/Q5_1: bit j of the u32 qh is the fifth bit of element j: for the 16 elements of bytes[v], bytes 2v and
        // 2v + 1 of qh, each spread over 8 lanes and tested against one bit per lane.
        let fifth_bits = |b: &mut Body, v: u32| {
            let spread: [u8; 16] = std::array::from_fn(|lane| (2 * v as usize + lane / 8) as u8);
            let bits: [u8; 16] = std::array::from_fn(|lane| 1 << (lane % 8));
            let bits = i128::from_le_bytes(bits);
            b.get(quants).op(I::V128Load32Splat(mem(Q5_QH as u32, 0))).get(scratch).op(I::I8x16Shuffle(spread));
            b.op(I::V128Const(bits)).op(I::V128And).op(I::V128Const(bits)).op(I::I8x16Eq);
            b.op(I::V128Const(i8x16_bits(16))).op(I::V128And).op(I::V128Or);
        };
        let subtract = |b: &mut Body, bias: u8| {
            b.op(I::V128Const(i8x16_bits(bias))).op(I::I8x16Sub);
        };
        match self.dtype {
            DType::Q8_0 => {
                for (v, &target) in bytes.iter().enumerate() {
                    load(b, 16 * v as u32);
                    b.set(target);
                }
            }
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => {
                let qs = if matches!(self.dtype, DType::Q5_0 | DType::Q5_1) { Q5_QS as u32 } else { 0 };
                load(b, qs);
                b.tee(scratch);
                low_nibbles(b);
                b.set(bytes[0]);
                b.get(scratch);
                high_nibbles(b);
                b.set(bytes[1]);
                for (v, &target) in bytes.iter().enumerate() {
                    b.get(target);
                    if matches!(self.dtype, DType::Q5_0 | DType::Q5_1) {
                        fifth_bits(b, v as u32);
                    }
                    match self.dtype {
                        DType::Q4_0 => subtract(b, 8),
                        DType::Q5_0 => subtract(b, 16),
                        _ => {}
                    }
                    b.set(target);
                }
            }
            DType::Q2_K | DType::Q3_K => {
                // Sub-block s: 2-bit quants at shift 2·((s % 8) / 2) of qs[32·(s / 8) + 16·(s % 2) …].
                let qs = if self.dtype == DType::Q2_K { Q2K_QS } else { Q3K_QS } as u32;
                load(b, qs + 32 * (s / 8) + 16 * (s % 2));
                move_bit(b, 2 * ((s % 8) / 2), 0, 2);
                if self.dtype == DType::Q3_K {
                    // The high bit from hmask[16·(s % 2) …], bit s / 2; set means no −4.
                    load(b, Q3K_HMASK as u32 + 16 * (s % 2));
                    move_bit(b, s / 2, 2, 1);
                    b.op(I::V128Or);
                    subtract(b, 4);
                }
                b.set(bytes[0]);
            }
            DType::Q4_K | DType::Q5_K => {
                // Sub-block s: the low (s even) or high nibbles of qs[32·(s / 2) …]; Q5_K's fifth bits are bit s of qh.
                let qs = if self.dtype == DType::Q4_K { Q4K_QS } else { Q5K_QS } as u32;
                for (v, &target) in bytes.iter().enumerate() {
                    load(b, qs + 32 * (s / 2) + 16 * v as u32);
                    if s % 2 == 0 {
                        low_nibbles(b);
                    } else {
                        high_nibbles(b);
                    }
                    if self.dtype == DType::Q5_K {
                        load(b, Q5K_QH as u32 + 16 * v as u32);
                        move_bit(b, s, 4, 1);
                        b.op(I::V128Or);
                    }
                    b.set(target);
                }
            }
            DType::Q6_K => {
                // Sub-block s = 8·half + t: nibble t / 4 of ql[64·half + 16·(t % 4) …], bits 2·(t / 2) of
                // qh[32·half + 16·(t % 2) …] as bits 4 and 5, minus 32.
                let (half, t) = (s / 8, s % 8);
                load(b, Q6K_QL as u32 + 64 * half + 16 * (t % 4));
                if t < 4 {
                    low_nibbles(b);
                } else {
                    high_nibbles(b);
                }
                load(b, Q6K_QH as u32 + 32 * half + 16 * (t % 2));
                move_bit(b, 2 * (t / 2), 4, 2);
                b.op(I::V128Or);
                subtract(b, 32);
                b.set(bytes[0]);
            }
            other => unreachable!("{other} is not a block format"),
        }
    }

    /// Groups of four elements in a sub-block.
    pub fn groups(self) -> u32 {
        self.sub_elems() / 4
    }

    /// Pushes the f32x4 of group `group` (four quants, in order) of a sub-block whose byte vectors are `bytes`, each
    /// quant times 2^24 (`QUANT_SCALE`): one swizzle puts a byte at the top of each i32 lane, which the conversion to
    /// f32 reads with its sign.
    pub fn push_group(self, b: &mut Body, bytes: &[Local], group: u32) {
        let (source, quarter) = (bytes[group as usize / 4], group % 4);
        let lanes: [u8; 16] = std::array::from_fn(|i| if i % 4 == 3 { (4 * quarter + i as u32 / 4) as u8 } else { 0x80 });
        b.get(source).op(I::V128Const(i128::from_le_bytes(lanes))).op(I::I8x16Swizzle);
        b.op(I::F32x4ConvertI32x4S);
    }
}

/// What `push_group` scales the quants by (a power of two, so the scaling is exact), and `sub_block_scales`
/// the scale `a` by its inverse.
const QUANT_SCALE: f32 = (1 << 24) as f32;

/// The bits of an i8x16 constant with every lane `v`.
fn i8x16_bits(v: u8) -> i128 {
    i128::from_le_bytes([v; 16])
}

