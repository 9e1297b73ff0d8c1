//! The signal ops of opset 17 on: the window functions and MelWeightMatrix, known at compile time, and DFT and STFT
//! of signals of static length as one MatMul with a constant matrix of cosines and sines (O(n²) per transform, which
//! suits the short frames these models use).

use super::*;
use std::f64::consts::PI;

/// HannWindow, HammingWindow and BlackmanWindow of a known length.
pub(super) fn window(ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let n = known_input(ctx.node, inputs, 0, "the window length")?.const_ints()?.first().copied().ok_or("the window length is empty")?;
    if n < 1 {
        return Err(format!("a window of length {n}"));
    }
    let period = if ctx.int("periodic", 1) != 0 { n } else { n - 1 } as f64;
    let (a0, a1, a2) = match ctx.node.op_type.as_str() {
        "HannWindow" => (0.5, 0.5, 0.0),
        "HammingWindow" => (25.0 / 46.0, 21.0 / 46.0, 0.0),
        _ => (0.42, 0.5, 0.08),
    };
    let values: Vec<f64> = (0..n).map(|i| 2.0 * PI * i as f64 / period).map(|t| a0 - a1 * t.cos() + a2 * (2.0 * t).cos()).collect();
    let e = Elem(ctx.int("output_datatype", 1) as i32);
    e.dtype()?;
    let values = if e.is_float() { Values::F32(values.iter().map(|&v| v as f32).collect()) } else { Values::Int(values.iter().map(|&v| int_dim(v as i64)).collect()) };
    Ok(Value::Known(Known::new(e, vec![n as usize], values)))
}

/// DFT: the transform along `axis` of a signal whose last axis holds real (1) or real and imaginary (2) parts.
pub(super) fn dft(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let x = input(inputs, 0)?;
    let rank = b.shape(x).len();
    let axis = match inputs.get(2).and_then(Option::as_ref) {
        _ if ctx.opset < 20 => ctx.int("axis", 1),
        Some(_) => known_input(ctx.node, inputs, 2, "the axis")?.const_ints()?.first().copied().ok_or("the axis is empty")?,
        None => -2,
    };
    let axis = normalize_axis(axis, rank)?;
    if axis + 1 == rank {
        return Err("the last axis holds the real and imaginary parts; it cannot be transformed".into());
    }
    let length = match inputs.get(1).and_then(Option::as_ref) {
        Some(_) => Some(known_input(ctx.node, inputs, 1, "the DFT length")?.const_ints()?.first().copied().ok_or("the DFT length is empty")?),
        None => None,
    };
    let transform = Transform { inverse: ctx.int("inverse", 0) != 0, onesided: ctx.int("onesided", 0) != 0 };
    transform.apply(b, &ctx.base(), x, axis, length)
}

/// STFT: frames of `frame_length` every `frame_step` samples along axis 1 of [batch, samples, 1 or 2], each
/// weighted by the window and transformed: [batch, frames, bins, 2].
pub(super) fn stft(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let signal = input(inputs, 0)?;
    let shape = const_shape(b, signal)?;
    let [_, samples, parts] = shape[..] else { return Err("needs a signal of shape [batch, samples, 1 or 2]".into()) };
    let scalar_input = |i: usize, what: &str| -> Result<i64, String> {
        known_input(ctx.node, inputs, i, what)?.const_ints()?.first().copied().ok_or_else(|| format!("{what} is empty"))
    };
    let step = scalar_input(1, "the frame step")?;
    let window = inputs.get(2).and_then(Option::as_ref);
    let length = match (inputs.get(3).and_then(Option::as_ref), window) {
        (Some(_), _) => scalar_input(3, "the frame length")?,
        (None, Some(w)) => *const_shape(b, w)?.first().ok_or("the window must be 1-D")? as i64,
        (None, None) => samples as i64,
    };
    if step < 1 || length < 1 || length as u64 > samples {
        return Err(format!("frames of {length} every {step} of a signal of {samples}"));
    }
    let (step, length) = (step as usize, length as usize);
    let frames = 1 + (samples as usize - length) / step;
    let positions: Vec<Dim> = (0..frames).flat_map(|f| (0..length).map(move |i| Dim::from((f * step + i) as u64))).collect();
    let positions = Value::Known(Known::new(Elem::INT64, vec![frames, length], Values::Int(positions)));
    let mut framed = gather(b, &format!("{base}.frames"), signal, &positions, 1)?;
    if let Some(w) = window {
        let w = reshape(b, &format!("{base}.window"), w, vec![Dim::from(length as u64), Dim::from(1u64)])?;
        framed = binary(b, &format!("{base}.weighted"), BinaryOp::Mul, &framed, &w)?;
    }
    // onesided (the default) only for a real signal, whose spectrum is symmetric.
    let onesided = ctx.int("onesided", 1) != 0;
    if onesided && parts == 2 {
        return Err("onesided output of a complex signal".into());
    }
    Transform { inverse: false, onesided }.apply(b, &base, &framed, 2, None)
}

#[derive(Clone, Copy)]
struct Transform {
    inverse: bool,
    onesided: bool,
}

impl Transform {
    /// The transform of `x` along `axis` (its last axis holding 1 or 2 parts) as x · M: the axis is moved next to the
    /// parts, the two are flattened to [n · parts], multiplied by M [n · parts, bins · outputs] and split again.
    fn apply(self, b: &mut Builder, base: &str, x: &Value, axis: usize, length: Option<i64>) -> Result<Value, String> {
        let shape = const_shape(b, x)?;
        let rank = shape.len();
        let (n, parts) = (shape[axis] as usize, shape[rank - 1] as usize);
        if !(1..=2).contains(&parts) {
            return Err(format!("the last axis holds {parts} parts (1: real, 2: real and imaginary)"));
        }
        // The transform's length: given, or the signal's (for the inverse of a one-sided spectrum, the even length).
        let len = match length {
            Some(l) if l >= 1 => l as usize,
            Some(l) => return Err(format!("a DFT length of {l}")),
            None if self.inverse && self.onesided => 2 * n.saturating_sub(1),
            None => n,
        };
        if len == 0 {
            return Err("a transform of length 0".into());
        }
        let (bins, outputs, matrix) = self.matrix(n, parts, len);
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(axis, rank - 2);
        let moved = transpose(b, &format!("{base}.moved"), x, &perm)?;
        let mut rows: Vec<Dim> = const_shape(b, &moved)?.iter().map(|&d| Dim::from(d)).collect();
        rows.truncate(rank - 2);
        let flat = reshape(b, &format!("{base}.flat"), &moved, [rows.clone(), vec![Dim::from((n * parts) as u64)]].concat())?;
        let m = Value::Known(Known::new(Elem::FLOAT, vec![n * parts, bins * outputs], Values::F32(matrix)));
        let y = matmul(b, &format!("{base}.matmul"), &flat, &m, false, false)?;
        let y = reshape(b, &format!("{base}.bins"), &y, [rows, vec![Dim::from(bins as u64), Dim::from(outputs as u64)]].concat())?;
        transpose(b, base, &y, &perm)
    }

    /// (bins, outputs per bin, M): row j · parts + p of M is input element j's part p (real, imaginary), column
    /// k · outputs + q output bin k's part q. Input elements past the transform's length are dropped, missing ones
    /// are zeros. Forward: X[k] = Σ x[j] e^{−2πijk/len}; inverse: x[k] = Σ X[j] e^{2πijk/len} / len; the inverse of a
    /// one-sided spectrum (j ≤ len/2) is real, each bin but the first and the middle one counting for its mirror too.
    fn matrix(self, n: usize, parts: usize, len: usize) -> (usize, usize, Vec<f32>) {
        let real_out = self.inverse && self.onesided;
        let bins = if self.onesided && !self.inverse { len / 2 + 1 } else { len };
        let outputs = if real_out { 1 } else { 2 };
        let used = if real_out { n.min(len / 2 + 1) } else { n.min(len) };
        let sign = if self.inverse { 1.0 } else { -1.0 };
        let mut m = vec![0f32; n * parts * bins * outputs];
        for j in 0..used {
            let weight = match (real_out, j) {
                (false, _) => 1.0,
                (true, 0) => 1.0,
                (true, j) if 2 * j == len => 1.0,
                (true, _) => 2.0,
            } / if self.inverse { len as f64 } else { 1.0 };
            for k in 0..bins {
                // e^{iθ} = cos θ + i sin θ; (a + ib)(c + is) = (ac − bs) + i(as + bc).
                let theta = sign * 2.0 * PI * ((j * k) % len) as f64 / len as f64;
                let (c, s) = (weight * theta.cos(), weight * theta.sin());
                let row = |p: usize| (j * parts + p) * bins * outputs + k * outputs;
                m[row(0)] = c as f32;
                if outputs == 2 {
                    m[row(0) + 1] = s as f32;
                }
                if parts == 2 {
                    m[row(1)] = -s as f32;
                    if outputs == 2 {
                        m[row(1) + 1] = c as f32;
                    }
                }
            }
        }
        (bins, outputs, m)
    }
}

/// MelWeightMatrix of known arguments: [dft_length / 2 + 1, num_mel_bins] triangles on the mel scale, each rising
/// from its left edge bin to 1 at its centre and falling to its right edge (bins as ONNX's reference places them).
pub(super) fn mel_weight_matrix(ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let arg = |i: usize, what: &str| -> Result<f64, String> {
        known_input(ctx.node, inputs, i, what)?.f32s()?.first().map(|&v| v as f64).ok_or_else(|| format!("{what} is empty"))
    };
    let (mels, dft_length, rate) = (arg(0, "the number of mel bins")? as i64, arg(1, "the DFT length")? as i64, arg(2, "the sample rate")?);
    let (low, high) = (arg(3, "the lower edge")?, arg(4, "the upper edge")?);
    if mels < 1 || dft_length < 1 || rate <= 0.0 {
        return Err(format!("{mels} mel bins of a DFT of {dft_length} at {rate} Hz"));
    }
    let (mels, bins) = (mels as usize, dft_length as usize / 2 + 1);
    let mel = |hz: f64| 2595.0 * (1.0 + hz / 700.0).log10();
    let step = (mel(high) - mel(low)) / (mels + 2) as f64;
    let edges: Vec<usize> = (0..mels + 2)
        .map(|i| 700.0 * (10f64.powf((i as f64 * step + mel(low)) / 2595.0) - 1.0))
        .map(|hz| ((dft_length + 1) as f64 * hz / rate).floor().max(0.0) as usize)
        .collect();
    let mut m = vec![0f32; bins * mels];
    let mut set = |row: usize, col: usize, v: f64| -> Result<(), String> {
        *m.get_mut(row * mels + col).ok_or("a mel band reaches past the spectrum's bins")? = v as f32;
        Ok(())
    };
    for i in 0..mels {
        let (left, centre, right) = (edges[i], edges[i + 1], edges[i + 2]);
        if centre == left {
            set(centre, i, 1.0)?;
        } else {
            for j in left..=centre {
                set(j, i, (j - left) as f64 / (centre - left) as f64)?;
            }
        }
        for j in centre..right {
            set(j, i, (right - j) as f64 / (right - centre) as f64)?;
        }
    }
    let e = Elem(ctx.int("output_datatype", 1) as i32);
    e.dtype()?;
    let values = if e.is_float() { Values::F32(m) } else { Values::Int(m.iter().map(|&v| int_dim(v as i64)).collect()) };
    Ok(Value::Known(Known::new(e, vec![bins, mels], values)))
}
