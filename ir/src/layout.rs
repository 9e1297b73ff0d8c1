//! Shape simplifications every back end applies before generating a kernel, so that kernels index as few
//! axes as possible.

use crate::{Dim, Window};

/// numpy broadcasting of `operands` to `out`, simplified: size-1 output axes are dropped and neighbouring axes that
/// every operand broadcasts alike are merged. Returns the merged dims and, per operand, its element stride on each
/// (0 where it broadcasts); the operands are contiguous.
pub fn broadcast_axes<const N: usize>(out: &[Dim], operands: [&[Dim]; N]) -> (Vec<Dim>, [Vec<Dim>; N]) {
    let one = Dim::from(1u64);
    let rank = out.len();
    let broadcasts = |shape: &[Dim], axis: usize| axis + shape.len() < rank || shape[axis + shape.len() - rank] == one;
    let mut dims: Vec<Dim> = Vec::new();
    let mut flags: Vec<[bool; N]> = Vec::new();
    for (axis, d) in out.iter().enumerate() {
        if *d == one {
            continue;
        }
        let f = operands.map(|s| broadcasts(s, axis));
        if flags.last() == Some(&f) {
            let last = dims.last_mut().expect("flags and dims grow together");
            *last = &*last * d;
        } else {
            dims.push(d.clone());
            flags.push(f);
        }
    }
    let strides = std::array::from_fn(|k| {
        let mut strides = vec![Dim::from(0u64); dims.len()];
        let mut running = one.clone();
        for axis in (0..dims.len()).rev() {
            if !flags[axis][k] {
                strides[axis] = running.clone();
                running = &running * &dims[axis];
            }
        }
        strides
    });
    (dims, strides)
}

/// Input dims and perm with size-1 axes dropped and input axes that stay neighbours in the output merged.
pub fn simplify_transpose(shape: &[Dim], perm: &[usize]) -> (Vec<Dim>, Vec<usize>) {
    let one = Dim::from(1u64);
    let kept: Vec<usize> = (0..shape.len()).filter(|&a| shape[a] != one).collect();
    let renumber = |a: usize| kept.iter().position(|&k| k == a).expect("kept axes are renumbered");
    let perm: Vec<usize> = perm.iter().filter(|&&a| shape[a] != one).map(|&a| renumber(a)).collect();
    let shape: Vec<&Dim> = kept.iter().map(|&a| &shape[a]).collect();
    // Runs of output axes that are consecutive input axes, in output order.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &a in &perm {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == a => *len += 1,
            _ => runs.push((a, 1)),
        }
    }
    let mut by_input: Vec<usize> = (0..runs.len()).collect();
    by_input.sort_by_key(|&r| runs[r].0);
    let dims = by_input.iter().map(|&r| shape[runs[r].0..runs[r].0 + runs[r].1].iter().fold(one.clone(), |acc, d| &acc * *d)).collect();
    let perm = (0..runs.len()).map(|r| by_input.iter().position(|&x| x == r).expect("every run has an input position")).collect();
    (dims, perm)
}

/// Where the elements of a (batched, broadcast, possibly transposed) matrix product are: A(m, k) at
/// `a_batch·batch + m·a_m + k·a_k` of operand 0, B(k, n) likewise with `b_k`, `b_n` — so one kernel body serves every
/// transpose case — with the batch axes merged as far as broadcasting allows and padded in front to `axes`.
pub struct MatmulLayout {
    pub m: Dim,
    pub n: Dim,
    pub k: Dim,
    pub a_m: Dim,
    pub a_k: Dim,
    pub b_k: Dim,
    pub b_n: Dim,
    /// The merged batch axes of the output (`axes` of them, leading ones 1).
    pub batch_dims: Vec<Dim>,
    /// Per operand, its element stride along each batch axis (0 where it broadcasts).
    pub batch_strides: [Vec<Dim>; 2],
}

impl MatmulLayout {
    /// The layout of `a × b` (shapes of rank ≥ 2) into `out`, or an error if more than `axes` batch axes remain.
    pub fn new(a: &[Dim], b: &[Dim], out: &[Dim], transpose_a: bool, transpose_b: bool, axes: usize) -> Result<MatmulLayout, String> {
        let (ra, ca) = (&a[a.len() - 2], &a[a.len() - 1]);
        let (rb, cb) = (&b[b.len() - 2], &b[b.len() - 1]);
        let (m, k) = if transpose_a { (ca, ra) } else { (ra, ca) };
        let n = if transpose_b { rb } else { cb };
        let (one, zero) = (Dim::from(1u64), Dim::from(0u64));
        let (a_m, a_k) = if transpose_a { (one.clone(), m.clone()) } else { (k.clone(), one.clone()) };
        let (b_k, b_n) = if transpose_b { (one.clone(), k.clone()) } else { (n.clone(), one.clone()) };
        let (mut batch_dims, strides) = broadcast_axes(&out[..out.len() - 2], [&a[..a.len() - 2], &b[..b.len() - 2]]);
        if batch_dims.len() > axes {
            return Err(format!("{} batch axes broadcast differently; the kernel takes up to {axes}: reshape to merge them", batch_dims.len()));
        }
        let matrix = [ra * ca, rb * cb];
        let mut batch_strides = [0, 1].map(|i| strides[i].iter().map(|s| s * &matrix[i]).collect::<Vec<Dim>>());
        // Leading axes of size 1 and stride 0 change nothing.
        while batch_dims.len() < axes {
            batch_dims.insert(0, one.clone());
            for s in &mut batch_strides {
                s.insert(0, zero.clone());
            }
        }
        Ok(MatmulLayout { m: m.clone(), n: n.clone(), k: k.clone(), a_m, a_k, b_k, b_n, batch_dims, batch_strides })
    }
}

/// The element strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: &[Dim]) -> Vec<Dim> {
    let mut s = vec![Dim::from(1u64); shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = &s[i + 1] * &shape[i + 1];
    }
    s
}

/// The axes of a reduction over `axes` of a contiguous tensor of `shape`, size-1 axes dropped and neighbours that
/// are both kept or both reduced merged: (dims, element strides) of the kept axes, then of the reduced ones.
#[allow(clippy::type_complexity)]
pub fn reduce_axes(shape: &[Dim], axes: &[usize]) -> ((Vec<Dim>, Vec<Dim>), (Vec<Dim>, Vec<Dim>)) {
    let one = Dim::from(1u64);
    let mut groups: Vec<(bool, Dim, Dim)> = Vec::new(); // (reduced, dim, stride), innermost first
    let mut stride = one.clone();
    for a in (0..shape.len()).rev() {
        if shape[a] == one {
            continue;
        }
        let reduced = axes.contains(&a);
        match groups.last_mut() {
            Some((r, d, _)) if *r == reduced => *d = &*d * &shape[a],
            _ => groups.push((reduced, shape[a].clone(), stride.clone())),
        }
        stride = &stride * &shape[a];
    }
    groups.reverse();
    let pick = |reduced: bool| groups.iter().filter(|g| g.0 == reduced).map(|g| (g.1.clone(), g.2.clone())).unzip();
    (pick(false), pick(true))
}

/// The geometry of a window op (Conv, ConvTranspose, Pool) over exactly 3 spatial axes, which kernels bake in: 1 or 2
/// spatial axes become the last of 3, the others of length 1 with a kernel of 1, stride 1, dilation 1, no padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowGeometry {
    pub input: [u32; 3],
    pub output: [u32; 3],
    pub kernel: [u32; 3],
    pub stride: [u32; 3],
    pub dilation: [u32; 3],
    /// Padding before and after each axis.
    pub before: [u32; 3],
    pub after: [u32; 3],
}

impl WindowGeometry {
    /// From the input, output and kernel lengths of the op's 1 to 3 spatial axes.
    pub fn new(input: &[u32], output: &[u32], kernel: &[u32], window: &Window) -> WindowGeometry {
        let n = kernel.len();
        let spatial = |v: &dyn Fn(usize) -> u32, pad: u32| -> [u32; 3] { std::array::from_fn(|a| if a + n >= 3 { v(a + n - 3) } else { pad }) };
        WindowGeometry {
            input: spatial(&|a| input[a], 1),
            output: spatial(&|a| output[a], 1),
            kernel: spatial(&|a| kernel[a], 1),
            stride: spatial(&|a| window.strides[a] as u32, 1),
            dilation: spatial(&|a| window.dilations[a] as u32, 1),
            before: spatial(&|a| window.pads[a].0 as u32, 0),
            after: spatial(&|a| window.pads[a].1 as u32, 0),
        }
    }

    pub fn input_size(&self) -> u32 {
        self.input.iter().product()
    }

    pub fn output_size(&self) -> u32 {
        self.output.iter().product()
    }

    pub fn kernel_size(&self) -> u32 {
        self.kernel.iter().product()
    }
}
