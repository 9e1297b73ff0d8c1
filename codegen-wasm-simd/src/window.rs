//! Conv, ConvTranspose, Pool and Resize: one output element at a time, walking its window (for the convolutions also its
//! group's input channels) in the order of the WGSL kernels, with an f32 accumulator. The spatial geometry is baked in (`WindowGeometry`).
//! Threads take runs of output elements.

use crate::asm::{Body, I, Local};
use crate::decode::Format;
use crate::math::{Helper, call};
use crate::{Args, CodegenError, Kernel, Node};
use tfc_ir::layout::{WindowGeometry, contiguous_strides};
use tfc_ir::{NearestRounding, PoolKind, ResizeAxis, ResizeMode, Window};

/// The geometry of `node` (spatial lengths from its operand 0 and output).
fn geometry(node: &Node, kernel: &[u32], window: &Window) -> Result<WindowGeometry, CodegenError> {
    let lengths = |dims: &[tfc_ir::Dim], what: &str| dims.iter().map(|d| node.constant(d, what)).collect::<Result<Vec<_>, _>>();
    let input = lengths(&node.inputs[0].shape[2..], "a spatial axis")?;
    let output = lengths(&node.output.shape[2..], "a spatial output axis")?;
    Ok(WindowGeometry::new(&input, &output, kernel, window))
}

/// The output element `i`'s (batch, channel) plane and its output coordinates.
fn position(b: &mut Body, g: &WindowGeometry, i: Local) -> (Local, [Local; 3]) {
    let [_, o1, o2] = g.output;
    let plane = b.let_i32(|b| {
        b.get(i).u32c(g.output_size()).op(I::I32DivU);
    });
    let q = b.let_i32(|b| {
        b.get(i).u32c(g.output_size()).op(I::I32RemU);
    });
    let p0 = b.let_i32(|b| {
        b.get(q).u32c(o1 * o2).op(I::I32DivU);
    });
    let p1 = b.let_i32(|b| {
        b.get(q).u32c(o2).op(I::I32DivU).u32c(o1).op(I::I32RemU);
    });
    let p2 = b.let_i32(|b| {
        b.get(q).u32c(o2).op(I::I32RemU);
    });
    (plane, [p0, p1, p2])
}

/// Nested loops of `k[axis..]` over `0..ends[axis]`, `inner` in the innermost.
fn kernel_loops(b: &mut Body, axis: usize, k: [Local; 3], ends: &[Local], inner: &dyn Fn(&mut Body)) {
    if axis == 3 {
        return inner(b);
    }
    b.for_range(k[axis], |b| { b.i32c(0); }, ends[axis], 1, |b| kernel_loops(b, axis + 1, k, ends, inner));
}

/// Loops over the window at output position `p`: `visit(b, at, kernel_at)` for positions inside the input (`at` its
/// offset in an input plane), `counted(b)` for those inside the declared padding.
fn window_loop(b: &mut Body, g: &WindowGeometry, p: [Local; 3], visit: &dyn Fn(&mut Body, Local, Local), counted: &dyn Fn(&mut Body)) {
    let k = [b.i32(), b.i32(), b.i32()];
    let s = [b.i32(), b.i32(), b.i32()];
    let ends: Vec<Local> = g.kernel.iter().map(|&n| b.let_i32(|b| { b.u32c(n); })).collect();
    let (at, kernel_at) = (b.i32(), b.i32());
    kernel_loops(b, 0, k, &ends, &|b| {
        // s = p·stride − before + k·dilation
        for a in 0..3 {
            b.get(p[a]).u32c(g.stride[a]).op(I::I32Mul).u32c(g.before[a]).op(I::I32Sub);
            b.get(k[a]).u32c(g.dilation[a]).op(I::I32Mul).op(I::I32Add).set(s[a]);
        }
        // Inside the input on every axis (the unsigned comparison also rejects negative positions).
        for a in 0..3 {
            b.get(s[a]).u32c(g.input[a]).op(I::I32LtU);
        }
        b.op(I::I32And).op(I::I32And).if_(|b| {
            b.get(s[0]).u32c(g.input[1]).op(I::I32Mul).get(s[1]).op(I::I32Add).u32c(g.input[2]).op(I::I32Mul).get(s[2]).op(I::I32Add).set(at);
            b.get(k[0]).u32c(g.kernel[1]).op(I::I32Mul).get(k[1]).op(I::I32Add).u32c(g.kernel[2]).op(I::I32Mul).get(k[2]).op(I::I32Add).set(kernel_at);
            visit(b, at, kernel_at);
        });
        // Inside the declared padding on every axis: −before ≤ s < input + after.
        for a in 0..3 {
            b.get(s[a]).i32c(-(g.before[a] as i32)).op(I::I32GeS).get(s[a]).u32c(g.input[a] + g.after[a]).op(I::I32LtS).op(I::I32And);
        }
        b.op(I::I32And).op(I::I32And).if_(|b| counted(b));
    });
}

/// Pushes the bias (operand 2) of output channel `oc`, or 0 without one.
fn bias(b: &mut Body, node: &Node, args: &Args, formats: &[Format], oc: Local) {
    if node.inputs.len() == 3 {
        formats[2].address(b, args.input(2), oc);
        formats[2].load1(b);
    } else {
        b.f32c(0.0);
    }
}

/// Params: the output element count.
pub(crate) fn conv(node: &Node, window: &Window, groups: usize) -> Result<Kernel, CodegenError> {
    let (x, w) = (node.inputs[0], node.inputs[1]);
    let kernel = w.shape[2..].iter().map(|d| node.constant(d, "a kernel axis")).collect::<Result<Vec<_>, _>>()?;
    let g = geometry(node, &kernel, window)?;
    let formats: Vec<Format> = (0..node.inputs.len()).map(|i| node.format(i)).collect::<Result<_, _>>()?;
    let c = node.constant(&x.shape[1], "the input channels")?;
    let m = node.constant(&w.shape[0], "the output channels")?;
    let (cg, mg) = (c / groups as u32, m / groups as u32);
    let (mut b, args) = Args::new(node.inputs.len());
    let n = args.param(&mut b, 0);
    let (start, end) = args.share(&mut b, n);
    let (i, ic, input, weights, at) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (acc, oc) = (b.f32(), b.i32());
    let channels = b.let_i32(|b| {
        b.u32c(cg);
    });
    b.for_range(i, |b| { b.get(start); }, end, 1, |b| {
        let (plane, p) = position(b, &g, i);
        b.get(plane).u32c(m).op(I::I32RemU).set(oc);
        bias(b, node, &args, &formats, oc);
        b.set(acc);
        b.for_range(ic, |b| { b.i32c(0); }, channels, 1, |b| {
            // The input plane (image, first channel of the group + ic) and the weights of (oc, ic).
            b.get(plane).u32c(m).op(I::I32DivU).u32c(c).op(I::I32Mul);
            b.get(oc).u32c(mg).op(I::I32DivU).u32c(cg).op(I::I32Mul).op(I::I32Add).get(ic).op(I::I32Add).u32c(g.input_size()).op(I::I32Mul).set(input);
            b.get(oc).u32c(cg).op(I::I32Mul).get(ic).op(I::I32Add).u32c(g.kernel_size()).op(I::I32Mul).set(weights);
            window_loop(b, &g, p, &|b, offset, kernel_at| {
                b.get(acc);
                b.get(input).get(offset).op(I::I32Add).set(at);
                formats[0].address(b, args.input(0), at);
                formats[0].load1(b);
                b.get(weights).get(kernel_at).op(I::I32Add).set(at);
                formats[1].address(b, args.input(1), at);
                formats[1].load1(b);
                b.op(I::F32Mul).op(I::F32Add).set(acc);
            }, &|_| {});
        });
        Format::F32.address(b, args.output(), i);
        b.get(acc).f32_store(0);
    });
    Ok(Kernel { name: "conv".into(), body: b, bindings: node.inputs.len() as u32 + 1, params: vec![tfc_ir::dim::product(&node.output.shape).to_expr()] })
}

/// ConvTranspose: output position p gets x[s]·w[k] wherever s·stride + k·dilation − before = p. Params: the output
/// element count.
pub(crate) fn conv_transpose(node: &Node, window: &Window, groups: usize) -> Result<Kernel, CodegenError> {
    let (x, w) = (node.inputs[0], node.inputs[1]);
    let kernel = w.shape[2..].iter().map(|d| node.constant(d, "a kernel axis")).collect::<Result<Vec<_>, _>>()?;
    let g = geometry(node, &kernel, window)?;
    let formats: Vec<Format> = (0..node.inputs.len()).map(|i| node.format(i)).collect::<Result<_, _>>()?;
    let c = node.constant(&x.shape[1], "the input channels")?;
    let m = node.constant(&node.output.shape[1], "the output channels")?;
    let (cg, mg) = (c / groups as u32, m / groups as u32);
    let (mut b, args) = Args::new(node.inputs.len());
    let n = args.param(&mut b, 0);
    let (start, end) = args.share(&mut b, n);
    let (i, ic, input, weights, at, oc, first) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let k = [b.i32(), b.i32(), b.i32()];
    let (t, s) = ([b.i32(), b.i32(), b.i32()], [b.i32(), b.i32(), b.i32()]);
    let acc = b.f32();
    let channels = b.let_i32(|b| {
        b.u32c(cg);
    });
    let ends: Vec<Local> = g.kernel.iter().map(|&e| b.let_i32(|b| { b.u32c(e); })).collect();
    b.for_range(i, |b| { b.get(start); }, end, 1, |b| {
        let (plane, p) = position(b, &g, i);
        b.get(plane).u32c(m).op(I::I32RemU).set(oc);
        b.get(oc).u32c(mg).op(I::I32DivU).u32c(cg).op(I::I32Mul).set(first);
        bias(b, node, &args, &formats, oc);
        b.set(acc);
        b.for_range(ic, |b| { b.i32c(0); }, channels, 1, |b| {
            b.get(plane).u32c(m).op(I::I32DivU).u32c(c).op(I::I32Mul).get(first).op(I::I32Add).get(ic).op(I::I32Add).u32c(g.input_size()).op(I::I32Mul).set(input);
            b.get(first).get(ic).op(I::I32Add).u32c(mg).op(I::I32Mul).get(oc).u32c(mg).op(I::I32RemU).op(I::I32Add).u32c(g.kernel_size()).op(I::I32Mul).set(weights);
            kernel_loops(b, 0, k, &ends, &|b| {
                // t = p + before − k·dilation must be s·stride for an s inside the input, on every axis.
                for a in 0..3 {
                    b.get(p[a]).u32c(g.before[a]).op(I::I32Add).get(k[a]).u32c(g.dilation[a]).op(I::I32Mul).op(I::I32Sub).set(t[a]);
                    b.get(t[a]).u32c(g.stride[a]).op(I::I32DivS).set(s[a]);
                }
                for a in 0..3 {
                    b.get(t[a]).i32c(0).op(I::I32GeS);
                    b.get(s[a]).u32c(g.stride[a]).op(I::I32Mul).get(t[a]).op(I::I32Eq).op(I::I32And);
                    b.get(s[a]).u32c(g.input[a]).op(I::I32LtS).op(I::I32And);
                }
                b.op(I::I32And).op(I::I32And).if_(|b| {
                    b.get(acc);
                    b.get(s[0]).u32c(g.input[1]).op(I::I32Mul).get(s[1]).op(I::I32Add).u32c(g.input[2]).op(I::I32Mul).get(s[2]).op(I::I32Add).get(input).op(I::I32Add).set(at);
                    formats[0].address(b, args.input(0), at);
                    formats[0].load1(b);
                    b.get(k[0]).u32c(g.kernel[1]).op(I::I32Mul).get(k[1]).op(I::I32Add).u32c(g.kernel[2]).op(I::I32Mul).get(k[2]).op(I::I32Add).get(weights).op(I::I32Add).set(at);
                    formats[1].address(b, args.input(1), at);
                    formats[1].load1(b);
                    b.op(I::F32Mul).op(I::F32Add).set(acc);
                });
            });
        });
        Format::F32.address(b, args.output(), i);
        b.get(acc).f32_store(0);
    });
    Ok(Kernel { name: "conv_transpose".into(), body: b, bindings: node.inputs.len() as u32 + 1, params: vec![tfc_ir::dim::product(&node.output.shape).to_expr()] })
}

/// Params: the output element count.
pub(crate) fn pool(node: &Node, kind: PoolKind, kernel: &[usize], window: &Window) -> Result<Kernel, CodegenError> {
    let kernel: Vec<u32> = kernel.iter().map(|&k| k as u32).collect();
    let g = geometry(node, &kernel, window)?;
    let format = node.format(0)?;
    let p_value = if let PoolKind::Lp(p) = kind { node.finite(p, "p")? } else { 0.0 };
    let (mut b, args) = Args::new(1);
    let n = args.param(&mut b, 0);
    let (start, end) = args.share(&mut b, n);
    let (i, input, at, count) = (b.i32(), b.i32(), b.i32(), b.i32());
    let (acc, x) = (b.f32(), b.f32());
    b.for_range(i, |b| { b.get(start); }, end, 1, |b| {
        let (plane, p) = position(b, &g, i);
        b.get(plane).u32c(g.input_size()).op(I::I32Mul).set(input);
        b.f32c(if kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 }).set(acc);
        b.i32c(0).set(count);
        let count_pad = kind == (PoolKind::Average { count_pad: true });
        window_loop(b, &g, p, &|b, offset, _| {
            b.get(input).get(offset).op(I::I32Add).set(at);
            format.address(b, args.input(0), at);
            format.load1(b);
            b.set(x);
            b.get(acc);
            match kind {
                PoolKind::Max => {
                    b.get(x).op(I::F32Max);
                }
                PoolKind::Average { .. } => {
                    b.get(x).op(I::F32Add);
                }
                PoolKind::Lp(_) => {
                    b.get(x).op(I::F32Abs).op(I::F32x4Splat).splat(p_value);
                    call(b, Helper::Pow);
                    b.op(I::F32x4ExtractLane(0)).op(I::F32Add);
                }
            }
            b.set(acc);
            if !count_pad {
                b.add_to(count, 1);
            }
        }, &|b| {
            if count_pad {
                b.add_to(count, 1);
            }
        });
        Format::F32.address(b, args.output(), i);
        b.get(acc);
        match kind {
            PoolKind::Max => {}
            PoolKind::Average { .. } => {
                b.get(count).op(I::F32ConvertI32U).op(I::F32Div);
            }
            PoolKind::Lp(_) => {
                b.op(I::F32x4Splat).splat(1.0 / p_value);
                call(b, Helper::Pow);
                b.op(I::F32x4ExtractLane(0));
            }
        }
        b.f32_store(0);
    });
    let name = match kind {
        PoolKind::Max => "pool_max",
        PoolKind::Average { .. } => "pool_average",
        PoolKind::Lp(_) => "pool_lp",
    };
    Ok(Kernel { name: name.into(), body: b, bindings: 2, params: vec![tfc_ir::dim::product(&node.output.shape).to_expr()] })
}

/// Resize, one output element at a time: per resized axis its taps (as the WGSL kernel's), then the weighted sum over
/// their product, unrolled. Params: the count, the output dims, the input strides.
pub(crate) fn resize(node: &Node, axes: &[Option<ResizeAxis>], mode: ResizeMode, extrapolation: Option<f32>) -> Result<Kernel, CodegenError> {
    let x = node.inputs[0];
    let format = node.format(0)?;
    let rank = x.rank();
    let taps: usize = match mode {
        ResizeMode::Nearest(_) => 1,
        ResizeMode::Linear => 2,
        ResizeMode::Cubic { .. } => 4,
    };
    let mut params = vec![tfc_ir::dim::product(&node.output.shape).to_expr()];
    params.extend(node.output.shape.iter().map(|d| d.to_expr()));
    params.extend(contiguous_strides(&x.shape).iter().map(|d| d.to_expr()));
    let (mut b, args) = Args::new(1);
    let n = args.param(&mut b, 0);
    let dims: Vec<Local> = (0..rank).map(|a| args.param(&mut b, 1 + a)).collect();
    let strides: Vec<Local> = (0..rank).map(|a| args.param(&mut b, 1 + rank + a)).collect();
    let (start, end) = args.share(&mut b, n);
    let (o, rest, offset, c, outside, at) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (x_in, base, ratio, acc, total) = (b.f32(), b.f32(), b.f32(), b.f32(), b.f32());
    let resized: Vec<usize> = (0..rank).filter(|&a| axes[a].is_some()).collect();
    // Per resized axis: tap offsets (already times the axis stride) and weights.
    let tap_at: Vec<Vec<Local>> = resized.iter().map(|_| (0..taps).map(|_| b.i32()).collect()).collect();
    let tap_w: Vec<Vec<Local>> = resized.iter().map(|_| (0..taps).map(|_| b.f32()).collect()).collect();
    let mut literals = Vec::new();
    for &a in &resized {
        let map = axes[a].expect("resized");
        let len = node.constant(&x.shape[a], "a resized axis")?;
        literals.push((map, len));
    }
    b.for_range(o, |b| { b.get(start); }, end, 1, |b| {
        b.get(o).set(rest).i32c(0).set(offset).i32c(0).set(outside);
        for a in (0..rank).rev() {
            b.get(rest).get(dims[a]).op(I::I32RemU).set(c);
            b.get(rest).get(dims[a]).op(I::I32DivU).set(rest);
            let Some(j) = resized.iter().position(|&r| r == a) else {
                b.get(offset).get(c).get(strides[a]).op(I::I32Mul).op(I::I32Add).set(offset);
                continue;
            };
            let (map, len) = literals[j];
            let last = len as f32 - 1.0;
            // x_in = ((c + shift)·num)/den + offset = base + ratio, ratio in (0, 1].
            b.get(c).op(I::F32ConvertI32U).f32c(map.shift).op(I::F32Add).f32c(map.num).op(I::F32Mul).f32c(map.den).op(I::F32Div).f32c(map.offset).op(I::F32Add).set(x_in);
            if extrapolation.is_some() {
                b.get(outside).get(x_in).f32c(0.0).op(I::F32Lt).get(x_in).f32c(last).op(I::F32Gt).op(I::I32Or).op(I::I32Or).set(outside);
            }
            b.get(x_in).op(I::F32Ceil).f32c(1.0).op(I::F32Sub).set(base);
            b.get(x_in).get(base).op(I::F32Sub).set(ratio);
            // Tap t reads base + t − (taps − 1) / 2 clamped to the axis; `shift_up` (a comparison of ratio with a
            // threshold) moves a nearest tap up by one where it holds.
            let index = |b: &mut Body, t: usize, shift_up: Option<(I<'static>, f32)>| {
                b.get(base).f32c(t as f32 - ((taps - 1) / 2) as f32).op(I::F32Add);
                if let Some((test, threshold)) = shift_up {
                    b.f32c(1.0).f32c(0.0).get(ratio).f32c(threshold).op(test).op(I::Select).op(I::F32Add);
                }
                b.f32c(0.0).op(I::F32Max).f32c(last).op(I::F32Min).op(I::I32TruncSatF32S).get(strides[a]).op(I::I32Mul);
            };
            match mode {
                ResizeMode::Nearest(rounding) => {
                    match rounding {
                        NearestRounding::PreferFloor => index(b, 0, Some((I::F32Gt, 0.5))),
                        NearestRounding::PreferCeil => index(b, 0, Some((I::F32Ge, 0.5))),
                        NearestRounding::Floor => index(b, 0, Some((I::F32Eq, 1.0))),
                        // ratio ≤ 1 always: "≤ 1" is always up.
                        NearestRounding::Ceil => index(b, 0, Some((I::F32Le, 1.0))),
                    }
                    b.set(tap_at[j][0]).f32c(1.0).set(tap_w[j][0]);
                }
                ResizeMode::Linear => {
                    for t in 0..2 {
                        index(b, t, None);
                        b.set(tap_at[j][t]);
                    }
                    b.f32c(1.0).get(ratio).op(I::F32Sub).set(tap_w[j][0]);
                    b.get(ratio).set(tap_w[j][1]);
                }
                ResizeMode::Cubic { a: coeff, exclude_outside } => {
                    for t in 0..4 {
                        index(b, t, None);
                        b.set(tap_at[j][t]);
                        // Keys' kernel at distance d = |ratio + 1 − t|: near for t = 1, 2, far for t = 0, 3.
                        let d = b.let_f32(|b| {
                            b.get(ratio).f32c(1.0 - t as f32).op(I::F32Add).op(I::F32Abs);
                        });
                        if t == 1 || t == 2 {
                            b.f32c(coeff + 2.0).get(d).op(I::F32Mul).f32c(coeff + 3.0).op(I::F32Sub).get(d).op(I::F32Mul).get(d).op(I::F32Mul).f32c(1.0).op(I::F32Add);
                        } else {
                            b.f32c(coeff).get(d).op(I::F32Mul).f32c(5.0 * coeff).op(I::F32Sub).get(d).op(I::F32Mul).f32c(8.0 * coeff).op(I::F32Add).get(d).op(I::F32Mul).f32c(4.0 * coeff).op(I::F32Sub);
                        }
                        if exclude_outside {
                            // Weight 0 for a tap outside the axis.
                            b.f32c(0.0);
                            b.get(base).f32c(t as f32 - 1.0).op(I::F32Add).f32c(0.0).op(I::F32Ge);
                            b.get(base).f32c(t as f32 - 1.0).op(I::F32Add).f32c(last).op(I::F32Le).op(I::I32And).op(I::Select);
                        }
                        b.set(tap_w[j][t]);
                    }
                    if exclude_outside {
                        b.get(tap_w[j][0]).get(tap_w[j][1]).op(I::F32Add).get(tap_w[j][2]).op(I::F32Add).get(tap_w[j][3]).op(I::F32Add).set(total);
                        for t in 0..4 {
                            b.get(tap_w[j][t]).get(total).op(I::F32Div).set(tap_w[j][t]);
                        }
                    }
                }
            }
        }
        // The weighted sum over every combination of taps, outer axes' weights first.
        b.f32c(0.0).set(acc);
        for combination in 0..taps.pow(resized.len() as u32) {
            let picks: Vec<usize> = (0..resized.len()).map(|j| combination / taps.pow((resized.len() - 1 - j) as u32) % taps).collect();
            b.get(offset);
            for (j, &t) in picks.iter().enumerate() {
                b.get(tap_at[j][t]).op(I::I32Add);
            }
            b.set(at);
            b.get(acc);
            for (j, &t) in picks.iter().enumerate() {
                b.get(tap_w[j][t]);
                if j > 0 {
                    b.op(I::F32Mul);
                }
            }
            format.address(b, args.input(0), at);
            format.load1(b);
            b.op(I::F32Mul).op(I::F32Add).set(acc);
        }
        Format::F32.address(b, args.output(), o);
        match extrapolation {
            Some(value) => {
                b.f32c(value).get(acc).get(outside).op(I::Select);
            }
            None => {
                b.get(acc);
            }
        }
        b.f32_store(0);
    });
    let name = match mode {
        ResizeMode::Nearest(_) => "resize_nearest",
        ResizeMode::Linear => "resize_linear",
        ResizeMode::Cubic { .. } => "resize_cubic",
    };
    Ok(Kernel { name: name.into(), body: b, bindings: 2, params })
}
