//! WGSL scalar functions that the builtins don't provide, or don't provide accurately enough to match the f64
//! interpreter to f32 precision on every driver (WebGPU allows e.g. 3 + 2|x| ulp for `exp`, absolute 2^-21 for `log`
//! near 1, and some drivers' `tanh` returns NaN for large inputs). A kernel lists the ones it calls; each is emitted
//! once, after the ones it depends on.

/// A helper function; the declaration order is the emission order, dependencies first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Helper {
    Exp,
    Log,
    Tanh,
    Erfc,
    Erf,
    Pow,
    Fmod,
    Mod,
    ModI32,
    PowI32,
    Bf16Bits,
    Rotation,
}

impl Helper {
    fn dependencies(self) -> &'static [Helper] {
        match self {
            Helper::Tanh | Helper::Erfc => &[Helper::Exp],
            Helper::Erf => &[Helper::Exp, Helper::Erfc],
            Helper::Mod => &[Helper::Fmod],
            _ => &[],
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Helper::Exp => EXP,
            Helper::Log => LOG,
            Helper::Tanh => TANH,
            Helper::Erfc => ERFC,
            Helper::Erf => ERF,
            Helper::Pow => POW,
            Helper::Fmod => FMOD,
            Helper::Mod => MOD,
            Helper::ModI32 => MOD_I32,
            Helper::PowI32 => POW_I32,
            Helper::Bf16Bits => BF16_BITS,
            Helper::Rotation => ROTATION,
        }
    }
}

/// The helpers with everything they call, deduplicated, in emission order.
pub(crate) fn with_dependencies(helpers: &[Helper]) -> Vec<Helper> {
    let mut all: Vec<Helper> = helpers.iter().flat_map(|h| h.dependencies().iter().copied().chain([*h])).collect();
    all.sort();
    all.dedup();
    all
}

const EXP: &str = "\
// exp(x) to about 1 ulp: 2^n · exp(r) with r = x − n·ln2, |r| ≤ ln2/2, where the builtin is accurate. ln2 is split
// in two (Cody & Waite) so that n·LN2_HI is exact.
fn exp_f32(x: f32) -> f32 {
    if x > 88.72284 {
        return x * 1e38; // overflows to +inf
    }
    if x < -103.97208 {
        return 0.0;
    }
    let n = round(x * 1.442695041);
    let r = (x - n * 0.693145751953125) - n * 1.4286068e-6;
    return ldexp(exp(r), i32(n));
}
";

const LOG: &str = "\
// ln(x) to about 1 ulp: x = m·2^e with m in [√½, √2), ln m = 2·atanh(f) with f = (m − 1)/(m + 1), |f| < 0.172,
// whose odd series is truncated after f^11 (relative error < 3e-9).
fn log_f32(x: f32) -> f32 {
    if !(x > 0.0) || x > 3.4028234e38 {
        return log(x);
    }
    let parts = frexp(x);
    var m = parts.fract;
    var e = f32(parts.exp);
    if m < 0.70710678 {
        m = m * 2.0;
        e = e - 1.0;
    }
    let f = (m - 1.0) / (m + 1.0);
    let z = f * f;
    let series = z * (0.33333333 + z * (0.2 + z * (0.14285714 + z * (0.11111111 + z * 0.09090909))));
    return e * 0.693145751953125 + (e * 1.4286068e-6 + (2.0 * f + 2.0 * f * series));
}
";

const TANH: &str = "\
// tanh without the builtin: the odd Maclaurin series below |x| = 0.5 (truncated after x^15, relative error < 1e-8),
// (1 − e^{−2|x|}) / (1 + e^{−2|x|}) with the sign of x above, where nothing cancels and nothing overflows.
fn tanh_f32(x: f32) -> f32 {
    let a = abs(x);
    if a < 0.5 {
        let z = x * x;
        return x * (1.0 + z * (-0.33333333333 + z * (0.13333333333 + z * (-0.053968253968 + z * (0.021869488536
            + z * (-0.0088632355299 + z * (0.0035921280366 + z * -0.0014558343871)))))));
    }
    let t = exp_f32(-2.0 * a);
    return sign(x) * (1.0 - t) / (1.0 + t);
}
";

const ERFC: &str = "\
// erfc(x) with fractional error < 1.2e-7 everywhere: the Chebyshev fit `erfcc` of Press et al., Numerical Recipes
// (2nd ed., §6.2), for |x|, and erfc(−x) = 2 − erfc(x).
fn erfc_f32(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807
        + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp_f32(poly - z * z);
    return select(2.0 - r, r, x >= 0.0);
}
";

const ERF: &str = "\
// erf(x) with |error| ≤ 1.2e-7·erfc(|x|): the Maclaurin series 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
// (Abramowitz & Stegun 7.1.5) below |x| = 0.5, truncated after x^15 (relative error < 1e-10); 1 − erfc(|x|) with the
// sign of x above.
fn erf_f32(x: f32) -> f32 {
    if abs(x) < 0.5 {
        let z = x * x;
        return 1.1283791671 * x * (1.0 + z * (-0.33333333333 + z * (0.1 + z * (-0.02380952381 + z * (0.0046296296296
            + z * (-0.00075757575758 + z * (0.00010683760684 + z * -0.000013227513228)))))));
    }
    return sign(x) * (1.0 - erfc_f32(abs(x)));
}
";

const POW: &str = "\
// x^y as powf: repeated squaring for integral |y| < 2^24 (negative bases included), exp2(y·log2 x) otherwise, which
// is NaN for a negative base as powf is.
fn pow_f32(x: f32, y: f32) -> f32 {
    if y == trunc(y) && abs(y) < 16777216.0 {
        var n = u32(abs(y));
        var base = x;
        var r = 1.0;
        loop {
            if (n & 1u) != 0u {
                r = r * base;
            }
            n = n >> 1u;
            if n == 0u {
                break;
            }
            base = base * base;
        }
        return select(r, 1.0 / r, y < 0.0);
    }
    return exp2(y * log2(x));
}
";

const POW_I32: &str = "\
// a^b with wrapping multiplication and b clamped to [0, 63], as the interpreter's i64 pow truncated to i32.
fn pow_i32(a: i32, b: i32) -> i32 {
    var n = u32(clamp(b, 0, 63));
    var base = a;
    var r = 1;
    loop {
        if (n & 1u) != 0u {
            r = r * base;
        }
        n = n >> 1u;
        if n == 0u {
            break;
        }
        base = base * base;
    }
    return r;
}
";

const FMOD: &str = "\
// The remainder of x / y with the sign of x, as C's fmod: x − y·trunc(x / y), exact while the quotient fits 24 bits.
fn fmod_f32(x: f32, y: f32) -> f32 {
    return x - y * trunc(x / y);
}
";

const MOD: &str = "\
// The remainder of x / y with the sign of y (Python's %).
fn mod_f32(x: f32, y: f32) -> f32 {
    let r = fmod_f32(x, y);
    return select(r, r + y, r != 0.0 && (r < 0.0) != (y < 0.0));
}
";

const MOD_I32: &str = "\
// The remainder of a / b with the sign of b (Python's %).
fn mod_i32(a: i32, b: i32) -> i32 {
    let r = a % b;
    return select(r, r + b, r != 0 && (r < 0) != (b < 0));
}
";

const BF16_BITS: &str = "\
// The bf16 nearest to x (ties to even; NaN stays a quiet NaN), as half::bf16::from_f32, in the low 16 bits.
fn bf16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if (b & 0x7fffffffu) > 0x7f800000u {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}
";

const ROTATION: &str = "\
// t − 2π·round(t / 2π), with 2π split in three (Cody & Waite) so that n·C1 and n·C2 are exact for |n| < 2^15.
fn reduce_angle(t: f32) -> f32 {
    let n = round(t * 0.15915494);
    return ((t - n * 6.28125) - n * 0.001934051513671875) - n * 1.2556659e-6;
}

// (cos, sin) of position·freq. The f32 product alone would be off by up to position·freq·2^-24 and the builtins lose
// accuracy on large arguments, so the product is taken as four exact partial products of the factors' 12-bit halves
// (for |position| < 2^24), each reduced modulo 2π before they are added.
fn rotation(position: i32, freq: f32) -> vec2<f32> {
    let p_lo = position & 0xfff;
    let p = vec2<f32>(f32(position - p_lo), f32(p_lo));
    let f_hi = bitcast<f32>(bitcast<u32>(freq) & 0xfffff000u);
    let f = vec2<f32>(f_hi, freq - f_hi);
    let r = (reduce_angle(p.x * f.x) + reduce_angle(p.x * f.y)) + (reduce_angle(p.y * f.x) + reduce_angle(p.y * f.y));
    return vec2<f32>(cos(r), sin(r));
}
";
