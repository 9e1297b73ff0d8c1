//! Shape simplifications every back end applies before generating a kernel, so that kernels index as few
//! axes as possible.

use crate::Dim;

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
