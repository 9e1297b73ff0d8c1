//! Conv, ConvTranspose and Pool: one output element at a time, walking its window (for the convolutions also its
//! group's input channels) in the order of the WGSL kernels, with an f32 accumulator. The spatial geometry is baked in (`WindowGeometry`).
//! Threads take runs of output elements.

use crate::asm::{Body, I, Local};
use crate::decode::Format;
use crate::math::{Helper, call};
use crate::{Args, CodegenError, Kernel, Node};
use tfc_ir::layout::WindowGeometry;
use tfc_ir::{PoolKind, Window};

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
        if node.inputs.len() == 3 {
            formats[2].address(b, args.input(2), oc);
            formats[2].load1(b);
        } else {
            b.f32c(0.0);
        }
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
        if node.inputs.len() == 3 {
            formats[2].address(b, args.input(2), oc);
            formats[2].load1(b);
        } else {
            b.f32c(0.0);
        }
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
