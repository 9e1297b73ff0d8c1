//! The quantizer: f32 rows → ggml blocks.
//!
//! Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 follow the reference rule (the one `gguf.quants.quantize` implements): the scale
//! maps the block's extreme value to the end of the quant range and every quant is rounded with the same f32
//! operations, so the bytes are identical.
//!
//! The K-quants have no single reference rule; ours searches, per sub-block, for the scale (and offset) with the
//! least squared error, each candidate refitted by least squares, then quantizes the sub-block scales against the
//! block's f16 scale(s) and tries the neighbouring integer scales, keeping whichever reconstructs the sub-block best.

use super::decode::{k_scale_min, q3k_scale};
use super::{BlockFormat, QK_K};
use crate::DType;
use half::f16;

/// Quantizes `x` (a multiple of the format's block size) to `format`, appending ggml blocks to `out`.
pub fn quantize_row(format: DType, x: &[f32], out: &mut Vec<u8>) {
    let f = BlockFormat::of(format).unwrap_or_else(|| panic!("{format} is not a block format"));
    assert_eq!(x.len() % f.block_elems, 0, "a row of {} elements is not whole {format} blocks", x.len());
    for block in x.chunks_exact(f.block_elems) {
        let start = out.len();
        match format {
            DType::Q4_0 | DType::Q5_0 => extreme_symmetric(block, if format == DType::Q4_0 { 4 } else { 5 }, out),
            DType::Q4_1 | DType::Q5_1 => min_max(block, if format == DType::Q4_1 { 4 } else { 5 }, out),
            DType::Q8_0 => q8_0(block, out),
            DType::Q2_K => q2_k(block, out),
            DType::Q3_K => q3_k(block, out),
            DType::Q4_K | DType::Q5_K => q45_k(block, format == DType::Q5_K, out),
            DType::Q6_K => q6_k(block, out),
            other => unreachable!("{other} is not a block format"),
        }
        debug_assert_eq!(out.len() - start, f.block_bytes);
    }
}

fn push_half(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
}

fn reciprocal_or_zero(d: f32) -> f32 {
    if d == 0.0 { 0.0 } else { 1.0 / d }
}

/// 32 quants of 4 bits: element j in the low nibble of byte j, element j + 16 in the high nibble; a fifth bit goes
/// to `qh` (bit j for element j) when `bits` is 5.
fn pack_32(q: &[u8; 32], bits: u32, out: &mut Vec<u8>) {
    if bits == 5 {
        let qh = q.iter().enumerate().fold(0u32, |h, (j, &v)| h | (((v >> 4) as u32 & 1) << j));
        out.extend_from_slice(&qh.to_le_bytes());
    }
    out.extend((0..16).map(|j| (q[j] & 15) | ((q[j + 16] & 15) << 4)));
}

/// Q4_0, Q5_0: d = (the value of largest magnitude) / −2^(bits−1), quants truncated from x/d + 2^(bits−1) + ½.
fn extreme_symmetric(x: &[f32], bits: u32, out: &mut Vec<u8>) {
    let half_range = (1u32 << (bits - 1)) as f32;
    let extreme = x.iter().fold(0f32, |e, &v| if v.abs() > e.abs() { v } else { e });
    let d = extreme / -half_range;
    let id = reciprocal_or_zero(d);
    let top = (1u8 << bits) - 1;
    let q: [u8; 32] = std::array::from_fn(|j| ((x[j] * id + (half_range + 0.5)).trunc() as u8).min(top));
    push_half(out, d);
    pack_32(&q, bits, out);
}

/// Q4_1, Q5_1: d = (max − min) / (2^bits − 1), m = min, quants truncated from (x − min)/d + ½.
fn min_max(x: &[f32], bits: u32, out: &mut Vec<u8>) {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let min = x.iter().fold(f32::INFINITY, |a, &v| a.min(v));
    let top = (1u8 << bits) - 1;
    let d = (max - min) / top as f32;
    let id = reciprocal_or_zero(d);
    let q: [u8; 32] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5).trunc() as u8).min(top));
    push_half(out, d);
    push_half(out, min);
    pack_32(&q, bits, out);
}

/// Q8_0: d = max |x| / 127, quants rounded half away from zero.
fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = reciprocal_or_zero(d);
    push_half(out, d);
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

fn squared_error(x: &[f32], value: impl Fn(usize) -> f32) -> f32 {
    x.iter().enumerate().map(|(j, &v)| (v - value(j)).powi(2)).sum()
}

/// x ≈ scale·q − offset with q ∈ 0..=nmax and offset ≥ 0: the candidate scales spread around range / nmax, each
/// refitted by least squares on its quants. Returns (scale, offset).
fn fit_affine(x: &[f32], nmax: u8) -> (f32, f32) {
    let min = x.iter().fold(0f32, |a, &v| a.min(v));
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    if max <= min {
        return (0.0, -min);
    }
    let quantize = |scale: f32, offset: f32, j: usize| -> f32 {
        if scale == 0.0 { 0.0 } else { ((x[j] + offset) / scale).round().clamp(0.0, nmax as f32) }
    };
    let mut best = ((max - min) / nmax as f32, -min);
    let mut best_error = squared_error(x, |j| best.0 * quantize(best.0, best.1, j) - best.1);
    for step in 0..=40 {
        let mut candidate = ((max - min) / (nmax as f32 - 1.0 + 0.05 * step as f32), -min);
        for _ in 0..2 {
            let q: Vec<f32> = (0..x.len()).map(|j| quantize(candidate.0, candidate.1, j)).collect();
            candidate = least_squares_affine(x, &q).unwrap_or(candidate);
            let error = squared_error(x, |j| candidate.0 * q[j] - candidate.1);
            if error < best_error {
                (best, best_error) = (candidate, error);
            }
        }
    }
    best
}

/// The (scale, offset ≥ 0) minimising Σ (scale·q − offset − x)² for fixed quants, or `None` if the quants are all
/// equal.
fn least_squares_affine(x: &[f32], q: &[f32]) -> Option<(f32, f32)> {
    let n = x.len() as f64;
    let (mut sq, mut sx, mut sqq, mut sqx) = (0f64, 0f64, 0f64, 0f64);
    for (&v, &k) in x.iter().zip(q) {
        let (v, k) = (v as f64, k as f64);
        sq += k;
        sx += v;
        sqq += k * k;
        sqx += k * v;
    }
    let det = n * sqq - sq * sq;
    if det <= 0.0 {
        return None;
    }
    let scale = (n * sqx - sq * sx) / det;
    let offset = (scale * sq - sx) / n;
    if offset >= 0.0 {
        return Some((scale as f32, offset as f32));
    }
    (sqq > 0.0).then(|| ((sqx / sqq) as f32, 0.0))
}

/// x ≈ scale·q with q ∈ −nmax..nmax−1: candidates map the value of largest magnitude near −nmax (the longer side),
/// each refitted by least squares. Returns the scale (negative when the extreme is positive).
fn fit_symmetric(x: &[f32], nmax: i32) -> f32 {
    let extreme = x.iter().fold(0f32, |e, &v| if v.abs() > e.abs() { v } else { e });
    if extreme == 0.0 {
        return 0.0;
    }
    let quantize = |scale: f32, j: usize| -> f32 {
        if scale == 0.0 { 0.0 } else { (x[j] / scale).round().clamp(-nmax as f32, (nmax - 1) as f32) }
    };
    let mut best = extreme / -(nmax as f32);
    let mut best_error = squared_error(x, |j| best * quantize(best, j));
    for step in -20..=20 {
        let scale = extreme / -(nmax as f32 + 0.05 * step as f32);
        let q: Vec<f32> = (0..x.len()).map(|j| quantize(scale, j)).collect();
        let qq: f32 = q.iter().map(|k| k * k).sum();
        if qq == 0.0 {
            continue;
        }
        let fitted = x.iter().zip(&q).map(|(v, k)| v * k).sum::<f32>() / qq;
        let error = squared_error(x, |j| fitted * q[j]);
        if error < best_error {
            (best, best_error) = (fitted, error);
        }
    }
    best
}

/// Among the integer sub-block scales `around − 1 ..= around + 1` within `range`, the one whose reconstruction
/// error `error(scale)` is least.
fn best_multiple(around: i32, range: (i32, i32), error: impl Fn(i32) -> f32) -> i32 {
    (around - 1..=around + 1)
        .filter(|m| (range.0..=range.1).contains(m))
        .min_by(|&a, &b| error(a).total_cmp(&error(b)))
        .unwrap_or(around.clamp(range.0, range.1))
}

/// A K-quant block with per-sub-block scale and offset (Q2_K, Q4_K, Q5_K): the f16 `d` and `dmin`, the integer
/// scales and mins (≤ `scale_max`), and the quants (≤ `nmax`).
struct AffineBlock {
    d: f16,
    dmin: f16,
    scales: Vec<u8>,
    mins: Vec<u8>,
    q: Vec<u8>,
}

fn affine_block(x: &[f32], sub: usize, nmax: u8, scale_max: u8) -> AffineBlock {
    let fits: Vec<(f32, f32)> = x.chunks_exact(sub).map(|s| fit_affine(s, nmax)).collect();
    let max_scale = fits.iter().fold(0f32, |a, f| a.max(f.0));
    let max_offset = fits.iter().fold(0f32, |a, f| a.max(f.1));
    let d = f16::from_f32(max_scale / scale_max as f32);
    let dmin = f16::from_f32(max_offset / scale_max as f32);
    let (df, dminf) = (d.to_f32(), dmin.to_f32());
    let quants = |s: &[f32], scale: f32, offset: f32| -> Vec<u8> {
        s.iter().map(|&v| if scale > 0.0 { ((v + offset) / scale).round().clamp(0.0, nmax as f32) as u8 } else { 0 }).collect()
    };
    let (mut scales, mut mins, mut q) = (Vec::new(), Vec::new(), Vec::with_capacity(x.len()));
    for (s, &(scale, offset)) in x.chunks_exact(sub).zip(&fits) {
        let error = |sc: i32, m: i32| {
            let (scale, offset) = (df * sc as f32, dminf * m as f32);
            let qs = quants(s, scale, offset);
            squared_error(s, |j| scale * qs[j] as f32 - offset)
        };
        let around = |v: f32, unit: f32| if unit > 0.0 { (v / unit).round() as i32 } else { 0 };
        let m0 = around(offset, dminf).clamp(0, scale_max as i32);
        let sc = best_multiple(around(scale, df), (0, scale_max as i32), |sc| error(sc, m0));
        let m = best_multiple(m0, (0, scale_max as i32), |m| error(sc, m));
        q.extend(quants(s, df * sc as f32, dminf * m as f32));
        scales.push(sc as u8);
        mins.push(m as u8);
    }
    AffineBlock { d, dmin, scales, mins, q }
}

/// A K-quant block with signed per-sub-block scales (Q3_K, Q6_K): the f16 `d`, the integer scales (in `range`),
/// and the quants (in −nmax..nmax−1).
fn symmetric_block(x: &[f32], nmax: i32, range: (i32, i32)) -> (f16, Vec<i32>, Vec<i32>) {
    let sub = 16;
    let fits: Vec<f32> = x.chunks_exact(sub).map(|s| fit_symmetric(s, nmax)).collect();
    let extreme = fits.iter().fold(0f32, |e, &v| if v.abs() > e.abs() { v } else { e });
    // The extreme scale maps to the end of the range with more room (range.0 = −range.1 − 1).
    let d = f16::from_f32(extreme / range.0 as f32);
    let df = d.to_f32();
    let quants = |s: &[f32], scale: f32| -> Vec<i32> {
        s.iter().map(|&v| if scale != 0.0 { (v / scale).round().clamp(-nmax as f32, (nmax - 1) as f32) as i32 } else { 0 }).collect()
    };
    let (mut scales, mut q) = (Vec::new(), Vec::with_capacity(x.len()));
    for (s, &scale) in x.chunks_exact(sub).zip(&fits) {
        let around = if df != 0.0 { (scale / df).round() as i32 } else { 0 };
        let sc = best_multiple(around, range, |sc| {
            let qs = quants(s, df * sc as f32);
            squared_error(s, |j| df * sc as f32 * qs[j] as f32)
        });
        q.extend(quants(s, df * sc as f32));
        scales.push(sc);
    }
    (d, scales, q)
}

fn q2_k(x: &[f32], out: &mut Vec<u8>) {
    let b = affine_block(x, 16, 3, 15);
    out.extend(b.scales.iter().zip(&b.mins).map(|(&s, &m)| s | (m << 4)));
    let mut qs = [0u8; QK_K / 4];
    for (j, &v) in b.q.iter().enumerate() {
        qs[32 * (j / 128) + j % 32] |= v << (2 * ((j % 128) / 32));
    }
    out.extend_from_slice(&qs);
    out.extend_from_slice(&b.d.to_le_bytes());
    out.extend_from_slice(&b.dmin.to_le_bytes());
}

fn q3_k(x: &[f32], out: &mut Vec<u8>) {
    let (d, scales, q) = symmetric_block(x, 4, (-32, 31));
    let (mut hmask, mut qs, mut packed) = ([0u8; QK_K / 8], [0u8; QK_K / 4], [0u8; 12]);
    for (j, &v) in q.iter().enumerate() {
        let biased = (v + 4) as u8;
        qs[32 * (j / 128) + j % 32] |= (biased & 3) << (2 * ((j % 128) / 32));
        hmask[j % 32] |= (biased >> 2) << (j / 32);
    }
    for (i, &s) in scales.iter().enumerate() {
        let biased = (s + 32) as u8;
        packed[i % 8] |= (biased & 15) << (4 * (i / 8));
        packed[8 + i % 4] |= (biased >> 4) << (2 * (i / 4));
    }
    debug_assert!(scales.iter().enumerate().all(|(i, &s)| q3k_scale(&packed, i) == s));
    out.extend_from_slice(&hmask);
    out.extend_from_slice(&qs);
    out.extend_from_slice(&packed);
    out.extend_from_slice(&d.to_le_bytes());
}

fn q45_k(x: &[f32], five_bits: bool, out: &mut Vec<u8>) {
    let b = affine_block(x, 32, if five_bits { 31 } else { 15 }, 63);
    let mut packed = [0u8; 12];
    for i in 0..4 {
        packed[i] = b.scales[i] | ((b.scales[i + 4] >> 4) << 6);
        packed[i + 4] = b.mins[i] | ((b.mins[i + 4] >> 4) << 6);
        packed[i + 8] = (b.scales[i + 4] & 15) | ((b.mins[i + 4] & 15) << 4);
    }
    debug_assert!((0..8).all(|i| k_scale_min(&packed, i) == (b.scales[i], b.mins[i])));
    let (mut qh, mut qs) = ([0u8; 32], [0u8; QK_K / 2]);
    for (j, &v) in b.q.iter().enumerate() {
        qs[32 * (j / 64) + j % 32] |= (v & 15) << (4 * ((j / 32) % 2));
        qh[j % 32] |= (v >> 4) << (j / 32);
    }
    out.extend_from_slice(&b.d.to_le_bytes());
    out.extend_from_slice(&b.dmin.to_le_bytes());
    out.extend_from_slice(&packed);
    if five_bits {
        out.extend_from_slice(&qh);
    }
    out.extend_from_slice(&qs);
}

fn q6_k(x: &[f32], out: &mut Vec<u8>) {
    let (d, scales, q) = symmetric_block(x, 32, (-128, 127));
    let (mut ql, mut qh) = ([0u8; QK_K / 2], [0u8; QK_K / 4]);
    for (j, &v) in q.iter().enumerate() {
        let (half, r, biased) = (j / 128, j % 128, (v + 32) as u8);
        ql[64 * half + r % 64] |= (biased & 15) << (4 * (r / 64));
        qh[32 * half + r % 32] |= (biased >> 4) << (2 * (r / 32));
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(scales.iter().map(|&s| s as i8 as u8));
    out.extend_from_slice(&d.to_le_bytes());
}
