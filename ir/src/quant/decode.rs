//! The value of every element of a block, from its quant part and f16 scales: exactly ggml's values, computed with
//! the same f32 operations in the same order (so the results agree bit for bit).

use super::field::*;
use crate::DType;

/// Decodes one block of `format` into `out` (`block_elems` values) from its quant part and its f16 scales `d` and
/// `m` (`m` is `m` for Q4_1/Q5_1, `dmin` for Q2_K/Q4_K/Q5_K, unused otherwise).
pub fn decode_block(format: DType, q: &[u8], d: f32, m: f32, out: &mut [f32]) {
    match format {
        DType::Q4_0 => {
            for (j, y) in out.iter_mut().enumerate() {
                *y = d * (nibble(q, j) as f32 - 8.0);
            }
        }
        DType::Q4_1 => {
            for (j, y) in out.iter_mut().enumerate() {
                *y = d * nibble(q, j) as f32 + m;
            }
        }
        DType::Q5_0 | DType::Q5_1 => {
            let qh = u32::from_le_bytes(q[Q5_QH..Q5_QH + 4].try_into().unwrap());
            for (j, y) in out.iter_mut().enumerate() {
                let v = nibble(&q[Q5_QS..], j) | (((qh >> j) & 1) << 4) as u8;
                *y = if format == DType::Q5_0 { d * (v as f32 - 16.0) } else { d * v as f32 + m };
            }
        }
        DType::Q8_0 => {
            for (y, &v) in out.iter_mut().zip(q) {
                *y = v as i8 as f32 * d;
            }
        }
        DType::Q2_K => {
            for (j, y) in out.iter_mut().enumerate() {
                let (half, shift, l) = (j / 128, (j % 128) / 32, j % 32);
                let v = (q[Q2K_QS + 32 * half + l] >> (2 * shift)) & 3;
                let sc = q[Q2K_SCALES + j / 16];
                *y = (d * (sc & 15) as f32) * v as f32 - m * (sc >> 4) as f32;
            }
        }
        DType::Q3_K => {
            for (j, y) in out.iter_mut().enumerate() {
                let (half, shift, l) = (j / 128, (j % 128) / 32, j % 32);
                let low = ((q[Q3K_QS + 32 * half + l] >> (2 * shift)) & 3) as i32;
                let high = (q[Q3K_HMASK + l] >> (j / 32)) & 1;
                let v = low - if high == 1 { 0 } else { 4 };
                *y = (d * q3k_scale(&q[Q3K_SCALES..], j / 16) as f32) * v as f32;
            }
        }
        DType::Q4_K | DType::Q5_K => {
            let (scales, qs) = if format == DType::Q4_K { (Q4K_SCALES, Q4K_QS) } else { (Q5K_SCALES, Q5K_QS) };
            for (j, y) in out.iter_mut().enumerate() {
                let (sc, mn) = k_scale_min(&q[scales..scales + 12], j / 32);
                let mut v = (q[qs + 32 * (j / 64) + j % 32] >> (4 * ((j / 32) % 2))) & 15;
                if format == DType::Q5_K {
                    v |= ((q[Q5K_QH + j % 32] >> (j / 32)) & 1) << 4;
                }
                *y = (d * sc as f32) * v as f32 - m * mn as f32;
            }
        }
        DType::Q6_K => {
            for (j, y) in out.iter_mut().enumerate() {
                let (half, r) = (j / 128, j % 128);
                let low = (q[Q6K_QL + 64 * half + r % 64] >> (4 * (r / 64))) & 15;
                let high = (q[Q6K_QH + 32 * half + r % 32] >> (2 * (r / 32))) & 3;
                let v = (low | (high << 4)) as i32 - 32;
                *y = (d * q[Q6K_SCALES + j / 16] as i8 as f32) * v as f32;
            }
        }
        other => unreachable!("{other} is not a block format"),
    }
}

/// Element `j` of a 32-element block of 4-bit quants: the low nibbles of `qs[0..16]`, then the high nibbles.
fn nibble(qs: &[u8], j: usize) -> u8 {
    (qs[j % 16] >> (4 * (j / 16))) & 15
}

/// The signed 6-bit scale `i` of 16 packed into Q3_K's 12 bytes: low 4 bits in the nibbles of bytes 0..8, high 2
/// bits in the bit pairs of bytes 8..12; stored with a bias of 32.
pub(super) fn q3k_scale(scales: &[u8], i: usize) -> i32 {
    let low = (scales[i % 8] >> (4 * (i / 8))) & 15;
    let high = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

/// The 6-bit scale and min `i` of 8 packed into the 12 bytes of Q4_K and Q5_K: sub-blocks 0..4 in the low 6 bits of
/// bytes 0..4 (scales) and 4..8 (mins); sub-blocks 4..8 in the nibbles of bytes 8..12 with their high 2 bits in the
/// top bits of bytes 0..8.
pub(super) fn k_scale_min(scales: &[u8], i: usize) -> (u8, u8) {
    if i < 4 {
        (scales[i] & 63, scales[i + 4] & 63)
    } else {
        ((scales[i + 4] & 15) | ((scales[i - 4] >> 6) << 4), (scales[i + 4] >> 4) | ((scales[i] >> 6) << 4))
    }
}
