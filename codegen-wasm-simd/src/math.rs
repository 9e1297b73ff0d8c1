//! f32x4 functions that SIMD128 lacks, accurate to a few ulp so that kernels match the f64 interpreter at f32
//! precision. They are the algorithms of `codegen-wgsl/src/math.rs` (range reductions, series, Press et al.'s erfc),
//! written for four lanes at once: branches become masks and `v128.bitselect`. Each is one function of the module,
//! which kernels call by `Helper::index`.

use crate::asm::{Body, I, Local};
use wasm_encoder::ValType;

/// A helper function of the module. Function indices follow the order of `Helper::ALL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Helper {
    Exp,
    Log,
    Tanh,
    Erfc,
    Erf,
    Pow,
    /// `(positions i32x4, frequencies f32x4) → (cos, sin)` of position · frequency.
    Rotation,
}

const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

impl Helper {
    pub const ALL: [Helper; 7] = [Helper::Exp, Helper::Log, Helper::Tanh, Helper::Erfc, Helper::Erf, Helper::Pow, Helper::Rotation];

    pub fn index(self) -> u32 {
        Helper::ALL.iter().position(|&h| h == self).expect("every helper is in ALL") as u32
    }

    /// (parameter types, result types).
    pub fn signature(self) -> (Vec<ValType>, Vec<ValType>) {
        let v = ValType::V128;
        match self {
            Helper::Pow => (vec![v, v], vec![v]),
            Helper::Rotation => (vec![v, v], vec![v, v]),
            _ => (vec![v], vec![v]),
        }
    }

    pub fn body(self) -> Body {
        let mut b = Body::new(self.signature().0.len() as u32);
        match self {
            Helper::Exp => exp(&mut b),
            Helper::Log => log(&mut b),
            Helper::Tanh => tanh(&mut b),
            Helper::Erfc => erfc(&mut b),
            Helper::Erf => erf(&mut b),
            Helper::Pow => pow(&mut b),
            Helper::Rotation => rotation(&mut b),
        }
        b
    }
}

/// Calls a helper on the operands on the stack.
pub(crate) fn call(b: &mut Body, helper: Helper) {
    b.op(I::Call(helper.index()));
}

/// Pushes the polynomial c0 + x·(c1 + x·(c2 + …)) of the f32x4 local `x`, by Horner's rule.
fn horner(b: &mut Body, x: Local, coefficients: &[f32]) {
    let (last, rest) = coefficients.split_last().expect("a polynomial has coefficients");
    b.splat(*last);
    for &c in rest.iter().rev() {
        b.get(x).op(I::F32x4Mul).splat(c).op(I::F32x4Add);
    }
}

/// Pushes `|x|` and keeps the sign bits of `x` in `sign`.
fn split_sign(b: &mut Body, x: Local, sign: Local) {
    b.get(x).splat_i32(i32::MIN).op(I::V128And).set(sign);
    b.get(x).op(I::F32x4Abs);
}

/// exp(x) to about 1 ulp: 2^n · exp(r) with r = x − n·ln2 (ln2 split in two, Cody & Waite, so that n·LN2_HI is
/// exact) and exp(r) by its Taylor series to r^7 (|r| ≤ ln2/2, truncation error < 6e-9). 2^n is applied in two
/// halves so that results that underflow to subnormals or overflow to infinity come out right; x is clamped to
/// [−104, 89] first, beyond which the result is 0 or infinity anyway (NaN passes through).
fn exp(b: &mut Body) {
    let x = b.param(0);
    let (n, r, p, ni) = (b.v128(), b.v128(), b.v128(), b.v128());
    b.get(x).splat(-104.0).op(I::F32x4PMax).splat(89.0).op(I::F32x4PMin).set(x);
    b.get(x).splat(std::f32::consts::LOG2_E).op(I::F32x4Mul).op(I::F32x4Nearest).set(n);
    b.get(x).get(n).splat(LN2_HI).op(I::F32x4Mul).op(I::F32x4Sub).get(n).splat(LN2_LO).op(I::F32x4Mul).op(I::F32x4Sub).set(r);
    horner(b, r, &[1.0, 1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0]);
    b.set(p);
    b.get(n).op(I::I32x4TruncSatF32x4S).set(ni);
    let scale = |b: &mut Body| {
        b.i32c(127).op(I::I32x4Splat).op(I::I32x4Add).i32c(23).op(I::I32x4Shl).op(I::F32x4Mul);
    };
    b.get(p);
    b.get(ni).i32c(1).op(I::I32x4ShrS);
    scale(b);
    b.get(ni).get(ni).i32c(1).op(I::I32x4ShrS).op(I::I32x4Sub);
    scale(b);
}

/// ln(x) to about 1 ulp: x = m·2^e with m in [√½, √2) (subnormals scaled by 2^23 first), ln m = 2·atanh(f) with
/// f = (m − 1)/(m + 1), |f| < 0.172, whose odd series is truncated after f^11 (relative error < 3e-9). ln 0 = −∞,
/// ln ∞ = ∞, and NaN for negative x and NaN.
fn log(b: &mut Body) {
    let x = b.param(0);
    let (subnormal, bits, e, m, small, f, z, result) = (b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128());
    b.get(x).splat(f32::MIN_POSITIVE).op(I::F32x4Lt).set(subnormal);
    b.get(x).splat(8_388_608.0).op(I::F32x4Mul).get(x).get(subnormal).op(I::V128Bitselect).set(bits);
    // e = biased exponent − 126 (so that m is in [0.5, 1)), 23 less for scaled subnormals.
    b.get(bits).i32c(23).op(I::I32x4ShrU).splat_i32(126).op(I::I32x4Sub);
    b.get(subnormal).splat_i32(23).op(I::V128And).op(I::I32x4Sub).set(e);
    b.get(bits).splat_i32(0x007f_ffff).op(I::V128And).splat_i32(0x3f00_0000).op(I::V128Or).set(m);
    b.get(m).splat(std::f32::consts::FRAC_1_SQRT_2).op(I::F32x4Lt).set(small);
    b.get(m).get(m).op(I::F32x4Add).get(m).get(small).op(I::V128Bitselect).set(m);
    // The comparison mask is −1 in the lanes where m was doubled.
    b.get(e).get(small).op(I::I32x4Add).op(I::F32x4ConvertI32x4S).set(e);
    b.get(m).splat(1.0).op(I::F32x4Sub).get(m).splat(1.0).op(I::F32x4Add).op(I::F32x4Div).set(f);
    b.get(f).get(f).op(I::F32x4Mul).set(z);
    // e·LN2_HI + (e·LN2_LO + (2f + 2f·z·series(z)))
    b.get(e).splat(LN2_HI).op(I::F32x4Mul);
    b.get(e).splat(LN2_LO).op(I::F32x4Mul);
    b.get(f).get(f).op(I::F32x4Add);
    b.get(f).get(f).op(I::F32x4Add).get(z).op(I::F32x4Mul);
    horner(b, z, &[1.0 / 3.0, 1.0 / 5.0, 1.0 / 7.0, 1.0 / 9.0, 1.0 / 11.0]);
    b.op(I::F32x4Mul).op(I::F32x4Add).op(I::F32x4Add).op(I::F32x4Add).set(result);
    // Special values: −∞ at 0, ∞ at ∞, NaN below 0 and at NaN.
    b.splat(f32::NEG_INFINITY).get(result).get(x).splat(0.0).op(I::F32x4Eq).op(I::V128Bitselect).set(result);
    b.splat(f32::INFINITY).get(result).get(x).splat(f32::INFINITY).op(I::F32x4Eq).op(I::V128Bitselect).set(result);
    b.splat(f32::NAN).get(result).get(x).splat(0.0).op(I::F32x4Ge).op(I::V128Not).op(I::V128Bitselect);
}

/// tanh: the odd Maclaurin series below |x| = 0.5 (truncated after x^15, relative error < 1e-8), and
/// (1 − e^{−2|x|}) / (1 + e^{−2|x|}) with the sign of x above, where nothing cancels and nothing overflows.
fn tanh(b: &mut Body) {
    let x = b.param(0);
    let (sign, a, z, t, large) = (b.v128(), b.v128(), b.v128(), b.v128(), b.v128());
    split_sign(b, x, sign);
    b.set(a);
    b.get(a).splat(-2.0).op(I::F32x4Mul);
    call(b, Helper::Exp);
    b.set(t);
    b.splat(1.0).get(t).op(I::F32x4Sub).splat(1.0).get(t).op(I::F32x4Add).op(I::F32x4Div).get(sign).op(I::V128Or).set(large);
    b.get(x).get(x).op(I::F32x4Mul).set(z);
    horner(
        b,
        z,
        &[1.0, -0.333_333_34, 0.133_333_33, -0.053_968_254, 0.021_869_488, -0.008_863_236, 0.003_592_128, -0.001_455_834_4],
    );
    b.get(x).op(I::F32x4Mul);
    b.get(large).get(a).splat(0.5).op(I::F32x4Lt).op(I::V128Bitselect);
}

/// erfc(x) with fractional error < 1.2e-7 everywhere: the Chebyshev fit `erfcc` of Press et al., Numerical Recipes
/// (2nd ed., §6.2), for |x|, and erfc(−x) = 2 − erfc(x).
fn erfc(b: &mut Body) {
    let x = b.param(0);
    let (z, t, r) = (b.v128(), b.v128(), b.v128());
    b.get(x).op(I::F32x4Abs).set(z);
    b.splat(1.0).splat(1.0).get(z).splat(0.5).op(I::F32x4Mul).op(I::F32x4Add).op(I::F32x4Div).set(t);
    horner(
        b,
        t,
        &[-1.265_512_2, 1.000_023_7, 0.374_091_96, 0.096_784_18, -0.186_288_06, 0.278_868_07, -1.135_204, 1.488_515_9, -0.822_152_23, 0.170_872_77],
    );
    b.get(z).get(z).op(I::F32x4Mul).op(I::F32x4Sub);
    call(b, Helper::Exp);
    b.get(t).op(I::F32x4Mul).set(r);
    b.get(r).splat(2.0).get(r).op(I::F32x4Sub).get(x).splat(0.0).op(I::F32x4Ge).op(I::V128Bitselect);
}

/// erf(x) with |error| ≤ 1.2e-7·erfc(|x|): the Maclaurin series 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
/// (Abramowitz & Stegun 7.1.5) below |x| = 0.5, truncated after x^15 (relative error < 1e-10); 1 − erfc(|x|) with the
/// sign of x above.
fn erf(b: &mut Body) {
    let x = b.param(0);
    let (sign, a, z, large) = (b.v128(), b.v128(), b.v128(), b.v128());
    split_sign(b, x, sign);
    b.tee(a);
    call(b, Helper::Erfc);
    b.set(large);
    b.splat(1.0).get(large).op(I::F32x4Sub).get(sign).op(I::V128Or).set(large);
    b.get(x).get(x).op(I::F32x4Mul).set(z);
    horner(
        b,
        z,
        &[1.0, -0.333_333_34, 0.1, -0.023_809_524, 0.004_629_63, -0.000_757_575_76, 0.000_106_837_6, -0.000_013_227_513],
    );
    b.get(x).op(I::F32x4Mul).splat(std::f32::consts::FRAC_2_SQRT_PI).op(I::F32x4Mul);
    b.get(large).get(a).splat(0.5).op(I::F32x4Lt).op(I::V128Bitselect);
}

/// x^y as powf: repeated squaring for integral |y| < 2^24 (negative bases included; the lanes square together until
/// every exponent is used up), exp(y·ln x) otherwise, which is NaN for a negative base as powf is.
fn pow(b: &mut Body) {
    let (x, y) = (b.param(0), b.param(1));
    let (integral, n, base, r, odd) = (b.v128(), b.v128(), b.v128(), b.v128(), b.v128());
    b.get(y).get(y).op(I::F32x4Trunc).op(I::F32x4Eq).get(y).op(I::F32x4Abs).splat(16_777_216.0).op(I::F32x4Lt).op(I::V128And).set(integral);
    b.get(y).op(I::F32x4Abs).op(I::I32x4TruncSatF32x4U).get(integral).op(I::V128And).set(n);
    b.get(x).set(base);
    b.splat(1.0).set(r);
    b.while_(
        |b| {
            b.get(n).op(I::V128AnyTrue);
        },
        |b| {
            b.get(n).splat_i32(1).op(I::V128And).splat_i32(0).op(I::I32x4Ne).set(odd);
            b.get(r).get(base).op(I::F32x4Mul).get(r).get(odd).op(I::V128Bitselect).set(r);
            b.get(n).i32c(1).op(I::I32x4ShrU).set(n);
            b.get(base).get(base).op(I::F32x4Mul).set(base);
        },
    );
    b.splat(1.0).get(r).op(I::F32x4Div).get(r).get(y).splat(0.0).op(I::F32x4Lt).op(I::V128Bitselect).set(r);
    b.get(r);
    b.get(x);
    call(b, Helper::Log);
    b.get(y).op(I::F32x4Mul);
    call(b, Helper::Exp);
    b.get(integral).op(I::V128Bitselect);
}

/// Pushes t − 2π·round(t / 2π) for the f32x4 local `t`, with 2π split in three (Cody & Waite) so that n·C1 and n·C2
/// are exact for |n| < 2^15.
fn reduce_angle(b: &mut Body, t: Local) {
    let n = b.v128();
    b.get(t).splat(0.159_154_94).op(I::F32x4Mul).op(I::F32x4Nearest).set(n);
    b.get(t);
    for c in [6.281_25, 0.001_934_051_5, 1.255_665_9e-6] {
        b.get(n).splat(c).op(I::F32x4Mul).op(I::F32x4Sub);
    }
}

/// (cos, sin) of position·freq. The f32 product alone would be off by up to position·freq·2^-24, so the product is
/// taken as four exact partial products of the factors' 12-bit halves (for |position| < 2^24), each reduced modulo
/// 2π before they are added. The sum, reduced once more to [−π, π], is split into a quadrant q and z = r − q·π/2
/// (π/2 in three parts), |z| ≤ π/4, where the Taylor series of sin (to z^11) and cos (to z^12) are accurate to 1e-11.
fn rotation(b: &mut Body) {
    let (position, freq) = (b.param(0), b.param(1));
    let (p_lo, p_hi, f_hi, f_lo, product, r, q, z, z2, s, c, swap) =
        (b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128());
    b.get(position).splat_i32(0xfff).op(I::V128And).set(p_lo);
    b.get(position).get(p_lo).op(I::I32x4Sub).op(I::F32x4ConvertI32x4S).set(p_hi);
    b.get(p_lo).op(I::F32x4ConvertI32x4S).set(p_lo);
    b.get(freq).splat_i32(0xffff_f000_u32 as i32).op(I::V128And).set(f_hi);
    b.get(freq).get(f_hi).op(I::F32x4Sub).set(f_lo);
    let mut first = true;
    for (p, f) in [(p_hi, f_hi), (p_hi, f_lo), (p_lo, f_hi), (p_lo, f_lo)] {
        b.get(p).get(f).op(I::F32x4Mul).set(product);
        reduce_angle(b, product);
        if !first {
            b.op(I::F32x4Add);
        }
        first = false;
    }
    b.set(r);
    reduce_angle(b, r);
    b.set(r);
    b.get(r).splat(std::f32::consts::FRAC_2_PI).op(I::F32x4Mul).op(I::F32x4Nearest).set(q);
    b.get(r);
    for part in [1.570_312_5, 4.837_513e-4, 7.549_79e-8] {
        b.get(q).splat(part).op(I::F32x4Mul).op(I::F32x4Sub);
    }
    b.set(z);
    b.get(z).get(z).op(I::F32x4Mul).set(z2);
    horner(b, z2, &[1.0, -1.0 / 6.0, 1.0 / 120.0, -1.0 / 5040.0, 1.0 / 362_880.0, -1.0 / 39_916_800.0]);
    b.get(z).op(I::F32x4Mul).set(s);
    horner(b, z2, &[1.0, -1.0 / 2.0, 1.0 / 24.0, -1.0 / 720.0, 1.0 / 40_320.0, -1.0 / 3_628_800.0, 1.0 / 479_001_600.0]);
    b.set(c);
    // Quadrant q (mod 4) turns (cos z, sin z) into (c, s), (−s, c), (−c, −s), (s, −c).
    b.get(q).op(I::I32x4TruncSatF32x4S).set(q);
    b.get(q).splat_i32(1).op(I::V128And).splat_i32(0).op(I::I32x4Ne).set(swap);
    let sign_where = |b: &mut Body, bit_test: i32, add: i32| {
        // −0.0's bits in the lanes where ((q + add) & bit_test) != 0.
        b.get(q).splat_i32(add).op(I::I32x4Add).splat_i32(bit_test).op(I::V128And).splat_i32(0).op(I::I32x4Ne);
        b.splat_i32(i32::MIN).op(I::V128And);
    };
    b.get(s).get(c).get(swap).op(I::V128Bitselect);
    sign_where(b, 2, 1);
    b.op(I::V128Xor);
    b.get(c).get(s).get(swap).op(I::V128Bitselect);
    sign_where(b, 2, 0);
    b.op(I::V128Xor);
}
