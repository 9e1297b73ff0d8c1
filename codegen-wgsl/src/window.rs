//! Conv, Pool and Resize: one invocation per output element, walking its window (for Conv also its group's input
//! channels; for Resize its interpolation taps) in order. Spatial geometry is baked into the text (see
//! `WindowGeometry`); only the batch may be symbolic. 256 invocations per workgroup.

use crate::CodegenError;
use crate::math::Helper;
use crate::shader::{Access, Node, Parts, expr, groups_for, product};
use std::fmt::Write;
use tfc_ir::layout::WindowGeometry;
use tfc_ir::{NearestRounding, PoolKind, ResizeAxis, ResizeMode, SampleMode, SamplePadding, Window};

const WORKGROUP: u32 = 256;

/// The geometry of `node` (spatial lengths from its operand 0 and output) as baked-in constants.
fn geometry(node: &Node, kernel: &[u32], window: &Window) -> Result<WindowGeometry, CodegenError> {
    let lengths = |dims: &[tfc_ir::Dim], what: &str| dims.iter().map(|d| node.constant(d, what, u32::MAX as u64)).collect::<Result<Vec<_>, _>>();
    let input = lengths(&node.inputs[0].shape[2..], "a spatial axis")?;
    let output = lengths(&node.output.shape[2..], "a spatial output axis")?;
    Ok(WindowGeometry::new(&input, &output, kernel, window))
}

/// WGSL for a window op's geometry.
trait Emit {
    fn prologue(&self, parts: &mut Parts);
    fn window_loop(&self, body: &mut String, visit: &str, counted: &str);
}

impl Emit for WindowGeometry {
    /// The prologue: `i` this invocation's output element, `plane` its (batch, channel) plane, `p` its output
    /// coordinates.
    fn prologue(&self, parts: &mut Parts) {
        let [_, o1, o2] = self.output;
        writeln!(
            parts.body,
            "    let i = group * 256u + lid;
    if i >= param(0u) {{
        return;
    }}
    let plane = i / {size}u;
    let q = i % {size}u;
    let p = vec3<i32>(i32(q / {o12}u), i32((q / {o2}u) % {o1}u), i32(q % {o2}u));",
            size = self.output_size(),
            o12 = o1 * o2,
        )
        .unwrap();
    }

    /// A loop over the window of output position `p`: in `visit`, `at` is the position's offset in an input plane;
    /// it runs for positions inside the input, and `counted` for those inside the declared padding.
    fn window_loop(&self, body: &mut String, visit: &str, counted: &str) {
        let [_, i1, i2] = self.input;
        let v3 = |v: [u32; 3]| format!("vec3<i32>({}, {}, {})", v[0], v[1], v[2]);
        writeln!(
            body,
            "    let origin = p * {stride} - {before};
    for (var k0 = 0; k0 < {k0}; k0++) {{
        for (var k1 = 0; k1 < {k1}; k1++) {{
            for (var k2 = 0; k2 < {k2}; k2++) {{
                let k = vec3<i32>(k0, k1, k2);
                let s = origin + k * {dilation};
                if all(s >= vec3<i32>(0)) && all(s < {input}) {{
                    let at = u32((s.x * {i1} + s.y) * {i2} + s.z);
                    let kernel_at = u32((k0 * {k1} + k1) * {k2} + k2);
                    {visit}
                }}
                if all(s >= -{before}) && all(s < {input} + {after}) {{
                    {counted}
                }}
            }}
        }}
    }}",
            stride = v3(self.stride),
            before = v3(self.before),
            after = v3(self.after),
            dilation = v3(self.dilation),
            input = v3(self.input),
            k0 = self.kernel[0],
            k1 = self.kernel[1],
            k2 = self.kernel[2],
        )
        .unwrap();
    }
}

pub(crate) fn conv(node: &Node, window: &Window, groups: usize) -> Result<Parts, CodegenError> {
    let (x, w) = (node.inputs[0], node.inputs[1]);
    let kernel = w.shape[2..].iter().map(|d| node.constant(d, "a kernel axis", 4096)).collect::<Result<Vec<_>, _>>()?;
    let g = geometry(node, &kernel, window)?;
    let c = node.constant(&x.shape[1], "the input channels", u32::MAX as u64)?;
    let m = node.constant(&w.shape[0], "the output channels", u32::MAX as u64)?;
    let (cg, mg) = (c / groups as u32, m / groups as u32);
    let mut parts = Parts::new("conv", WORKGROUP);
    parts.summary = format!("{}-d cross-correlation, {groups} groups, {c} → {m} channels", kernel.len());
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, Access::Float)).collect();
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel];
    g.prologue(&mut parts);
    let ksize: u32 = kernel.iter().product();
    let bias = if node.inputs.len() == 3 { "load_in2(oc)" } else { "0.0" };
    writeln!(
        parts.body,
        "    let oc = plane % {m}u;
    let image = (plane / {m}u) * {c}u + (oc / {mg}u) * {cg}u;
    var acc = {bias};
    for (var ic = 0u; ic < {cg}u; ic++) {{
        let input = (image + ic) * {isize}u;
        let weights = (oc * {cg}u + ic) * {ksize}u;",
        isize = g.input_size(),
    )
    .unwrap();
    g.window_loop(&mut parts.body, "acc += load_in0(input + at) * load_in1(weights + kernel_at);", "");
    parts.body.push_str("    }\n    out[i] = acc;\n");
    Ok(parts)
}

pub(crate) fn conv_transpose(node: &Node, window: &Window, groups: usize) -> Result<Parts, CodegenError> {
    let (x, w) = (node.inputs[0], node.inputs[1]);
    let kernel = w.shape[2..].iter().map(|d| node.constant(d, "a kernel axis", 4096)).collect::<Result<Vec<_>, _>>()?;
    let g = geometry(node, &kernel, window)?;
    let c = node.constant(&x.shape[1], "the input channels", u32::MAX as u64)?;
    let m = node.constant(&node.output.shape[1], "the output channels", u32::MAX as u64)?;
    let (cg, mg) = (c / groups as u32, m / groups as u32);
    let mut parts = Parts::new("conv_transpose", WORKGROUP);
    parts.summary = format!("{}-d transposed convolution, {groups} groups, {c} → {m} channels", kernel.len());
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, Access::Float)).collect();
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel];
    g.prologue(&mut parts);
    let v3 = |v: [u32; 3]| format!("vec3<i32>({}, {}, {})", v[0], v[1], v[2]);
    let bias = if node.inputs.len() == 3 { "load_in2(oc)" } else { "0.0" };
    // Output position p gets x[i]·w[k] wherever i·stride + k·dilation − before = p.
    writeln!(
        parts.body,
        "    let oc = plane % {m}u;
    let image = plane / {m}u;
    let first = (oc / {mg}u) * {cg}u;
    var acc = {bias};
    for (var ic = 0u; ic < {cg}u; ic++) {{
        let input = (image * {c}u + first + ic) * {isize}u;
        let weights = ((first + ic) * {mg}u + oc % {mg}u) * {ksize}u;
        for (var k0 = 0; k0 < {k0}; k0++) {{
            for (var k1 = 0; k1 < {k1}; k1++) {{
                for (var k2 = 0; k2 < {k2}; k2++) {{
                    let t = p + {before} - vec3<i32>(k0, k1, k2) * {dilation};
                    let s = t / {stride};
                    if all(t >= vec3<i32>(0)) && all(s * {stride} == t) && all(s < {input}) {{
                        let at = u32((s.x * {i1} + s.y) * {i2} + s.z);
                        acc += load_in0(input + at) * load_in1(weights + u32((k0 * {k1} + k1) * {k2} + k2));
                    }}
                }}
            }}
        }}
    }}
    out[i] = acc;",
        isize = g.input_size(),
        ksize = kernel.iter().product::<u32>(),
        k0 = g.kernel[0],
        k1 = g.kernel[1],
        k2 = g.kernel[2],
        before = v3(g.before),
        dilation = v3(g.dilation),
        stride = v3(g.stride),
        input = v3(g.input),
        i1 = g.input[1],
        i2 = g.input[2],
    )
    .unwrap();
    Ok(parts)
}

pub(crate) fn pool(node: &Node, kind: PoolKind, kernel: &[usize], window: &Window) -> Result<Parts, CodegenError> {
    let kernel: Vec<u32> = kernel.iter().map(|&k| k as u32).collect();
    let g = geometry(node, &kernel, window)?;
    let (name, init, visit, finish) = match kind {
        PoolKind::Max => ("max", "bitcast<f32>(0xff800000u)", "acc = max(acc, x);".to_string(), "acc".to_string()),
        PoolKind::Average { count_pad: false } => ("average", "0.0", "acc += x;\n                    count += 1u;".to_string(), "acc / f32(count)".to_string()),
        PoolKind::Average { count_pad: true } => ("average_pad", "0.0", "acc += x;".to_string(), "acc / f32(count)".to_string()),
        PoolKind::Lp(p) => {
            let p = node.literal(p, "p")?;
            ("lp", "0.0", format!("acc += pow_f32(abs(x), {p});"), format!("pow_f32(acc, 1.0 / {p})"))
        }
    };
    let mut parts = Parts::new(format!("pool_{name}"), WORKGROUP);
    parts.summary = format!("{kind:?} pooling over {:?} windows", kernel);
    parts.inputs = vec![(node.inputs[0].dtype, Access::Float)];
    if matches!(kind, PoolKind::Lp(_)) {
        parts.helpers.push(Helper::Pow);
    }
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel];
    g.prologue(&mut parts);
    writeln!(parts.body, "    let input = plane * {}u;\n    var acc = {init};\n    var count = 0u;", g.input_size()).unwrap();
    let counted = if kind == (PoolKind::Average { count_pad: true }) { "count += 1u;" } else { "" };
    g.window_loop(&mut parts.body, &format!("let x = load_in0(input + at);\n                    {visit}"), counted);
    writeln!(parts.body, "    out[i] = {finish};").unwrap();
    Ok(parts)
}

/// Resize: one invocation per output element, which sums its taps (the product of each resized axis's
/// neighbours and weights, as `tfc_ir::interp::resize_taps`). Params: the count, the output dims, the input strides.
pub(crate) fn resize(node: &Node, axes: &[Option<ResizeAxis>], mode: ResizeMode, extrapolation: Option<f32>) -> Result<Parts, CodegenError> {
    let x = node.inputs[0];
    let rank = x.rank();
    let (name, taps) = match mode {
        ResizeMode::Nearest(_) => ("resize_nearest", 1),
        ResizeMode::Linear => ("resize_linear", 2),
        ResizeMode::Cubic { .. } => ("resize_cubic", 4),
    };
    let mut parts = Parts::new(name, WORKGROUP);
    parts.summary = format!("{mode:?} over {} axes", axes.iter().flatten().count());
    parts.inputs = vec![(x.dtype, Access::Float)];
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel];
    parts.params.extend(node.output.shape.iter().map(expr));
    parts.params.extend(tfc_ir::layout::contiguous_strides(&x.shape).iter().map(expr));

    let body = match mode {
        ResizeMode::Nearest(rounding) => {
            let up = match rounding {
                NearestRounding::PreferFloor => "ratio > 0.5",
                NearestRounding::PreferCeil => "ratio >= 0.5",
                NearestRounding::Floor => "ratio == 1.0",
                NearestRounding::Ceil => "true",
            };
            format!("    t.at[0] = clamp_index(base + select(0.0, 1.0, {up}), len);\n    t.w[0] = 1.0;\n")
        }
        ResizeMode::Linear => "    t.at[0] = clamp_index(base, len);\n    t.at[1] = clamp_index(base + 1.0, len);\n    t.w[0] = 1.0 - ratio;\n    t.w[1] = ratio;\n".to_string(),
        ResizeMode::Cubic { a, exclude_outside } => {
            let a = node.literal(a, "the cubic coefficient")?;
            let mut s = format!(
                "    // Keys' kernel at distances 1 + ratio, ratio, 1 − ratio, 2 − ratio.
    let d = vec4<f32>(1.0 + ratio, ratio, 1.0 - ratio, 2.0 - ratio);
    let near = (({a} + 2.0) * d - ({a} + 3.0)) * d * d + 1.0;
    let far = (({a} * d - 5.0 * {a}) * d + 8.0 * {a}) * d - 4.0 * {a};
    var w = vec4<f32>(far.x, near.y, near.z, far.w);
    for (var k = 0; k < 4; k++) {{
        t.at[k] = clamp_index(base - 1.0 + f32(k), len);
    }}
"
            );
            if exclude_outside {
                s.push_str(
                    "    let position = vec4<f32>(base - 1.0, base, base + 1.0, base + 2.0);
    w = select(w, vec4<f32>(0.0), (position < vec4<f32>(0.0)) | (position > vec4<f32>(f32(len - 1))));
    w = w / (w.x + w.y + w.z + w.w);
",
                );
            }
            s.push_str("    for (var k = 0; k < 4; k++) {\n        t.w[k] = w[k];\n    }\n");
            s
        }
    };
    writeln!(
        parts.decls,
        "struct Taps {{
    at: array<u32, {taps}>,
    w: array<f32, {taps}>,
}}

fn clamp_index(i: f32, len: i32) -> u32 {{
    return u32(clamp(i32(i), 0, len - 1));
}}

// The input positions and weights of source coordinate x_in = base + ratio, ratio in (0, 1].
fn taps(x_in: f32, len: i32) -> Taps {{
    let base = ceil(x_in) - 1.0;
    let ratio = x_in - base;
    var t: Taps;
{body}    return t;
}}"
    )
    .unwrap();

    let b = &mut parts.body;
    b.push_str("    let i = group * 256u + lid;\n    if i >= param(0u) {\n        return;\n    }\n    var rest = i;\n    var offset = 0u;\n");
    for a in (0..rank).rev() {
        writeln!(b, "    let c{a} = rest % param({}u);\n    rest = rest / param({}u);", 1 + a, 1 + a).unwrap();
    }
    let resized: Vec<usize> = (0..rank).filter(|&a| axes[a].is_some()).collect();
    for a in 0..rank {
        let Some(map) = &axes[a] else {
            writeln!(b, "    offset += c{a} * param({}u);", 1 + rank + a).unwrap();
            continue;
        };
        let len = node.constant(&x.shape[a], "a resized axis", i32::MAX as u64)?;
        let [shift, num, den, off] = [map.shift, map.num, map.den, map.offset].map(|v| node.literal(v, "the resize mapping"));
        writeln!(b, "    let x{a} = ((f32(c{a}) + {}) * {}) / {} + {};", shift?, num?, den?, off?).unwrap();
        if let Some(value) = extrapolation {
            let value = node.literal(value, "the extrapolation value")?;
            writeln!(b, "    if x{a} < 0.0 || x{a} > {}.0 {{\n        out[i] = {value};\n        return;\n    }}", len - 1).unwrap();
        }
        writeln!(b, "    var t{a} = taps(x{a}, {len});").unwrap();
    }
    b.push_str("    var acc = 0.0;\n");
    let mut indent = String::from("    ");
    for &a in &resized {
        writeln!(b, "{indent}for (var k{a} = 0; k{a} < {taps}; k{a}++) {{").unwrap();
        indent.push_str("    ");
    }
    let weight: Vec<String> = resized.iter().map(|a| format!("t{a}.w[k{a}]")).collect();
    let at: Vec<String> = resized.iter().map(|&a| format!("t{a}.at[k{a}] * param({}u)", 1 + rank + a)).collect();
    writeln!(b, "{indent}acc += {} * load_in0(offset + {});", weight.join(" * "), at.join(" + ")).unwrap();
    for _ in &resized {
        indent.truncate(indent.len() - 4);
        writeln!(b, "{indent}}}").unwrap();
    }
    b.push_str("    out[i] = acc;\n");
    Ok(parts)
}

/// GridSample: one invocation per output element, which sums the taps of its grid position over each spatial axis
/// (as `tfc_ir::interp`'s `sample_taps`). Params: the count, the output positions per plane, the channels.
pub(crate) fn grid_sample(node: &Node, mode: SampleMode, padding: SamplePadding, align_corners: bool) -> Result<Parts, CodegenError> {
    let (x, grid) = (node.inputs[0], node.inputs[1]);
    let spatial = x.shape[2..].iter().map(|d| node.constant(d, "a spatial axis", i32::MAX as u64)).collect::<Result<Vec<_>, _>>()?;
    let r = spatial.len();
    let taps = match mode {
        SampleMode::Nearest => 1,
        SampleMode::Linear => 2,
        SampleMode::Cubic => 4,
    };
    let mut parts = Parts::new(format!("grid_sample_{}", format!("{mode:?}_{padding:?}").to_lowercase()), WORKGROUP);
    parts.summary = format!("{mode:?} sampling of {r} axes, {padding:?} padding, align_corners {align_corners}");
    parts.inputs = vec![(x.dtype, Access::Float), (grid.dtype, Access::Float)];
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel, product(&grid.shape[1..=r]), expr(&x.shape[1])];
    let (position, lo, hi) = if align_corners {
        ("(g + 1.0) / 2.0 * (d - 1.0)", "0.0", "d - 1.0")
    } else {
        ("((g + 1.0) * d - 1.0) / 2.0", "-0.5", "d - 0.5")
    };
    let (outside, pixel) = match padding {
        SamplePadding::Zeros => ("", "i"),
        SamplePadding::Border => ("x = clamp(x, 0.0, d - 1.0);", "clamp(i, 0.0, d - 1.0)"),
        SamplePadding::Reflection => ("x = reflect(x, lo, hi);", "trunc(reflect(i, lo, hi))"),
    };
    let rounding = if mode == SampleMode::Nearest { "    x = round(x);\n" } else { "" };
    let fill = match mode {
        SampleMode::Nearest => "    s.at[0] = pixel(trunc(x), d);\n    s.w[0] = 1.0;\n".to_string(),
        SampleMode::Linear => "    s.at[0] = pixel(base, d);\n    s.at[1] = pixel(base + 1.0, d);\n    s.w[0] = 1.0 - t;\n    s.w[1] = t;\n".to_string(),
        SampleMode::Cubic => "    // Keys' kernel (a = −0.75) at distances 1 + t, t, 1 − t, 2 − t.
    let e = vec4<f32>(1.0 + t, t, 1.0 - t, 2.0 - t);
    let near = (1.25 * e - 2.25) * e * e + 1.0;
    let far = ((-0.75 * e + 3.75) * e - 6.0) * e + 3.0;
    let w = vec4<f32>(far.x, near.y, near.z, far.w);
    for (var k = 0; k < 4; k++) {
        s.at[k] = pixel(base - 1.0 + f32(k), d);
        s.w[k] = w[k];
    }
"
        .to_string(),
    };
    writeln!(
        parts.decls,
        "struct Taps {{
    // −1 reads a zero.
    at: array<i32, {taps}>,
    w: array<f32, {taps}>,
}}

// x mirrored into [lo, hi]: whole periods of the range by division, then one reflection.
fn reflect(x: f32, lo: f32, hi: f32) -> f32 {{
    let range = hi - lo;
    if x < lo || x > hi {{
        let dx = select(x - hi, lo - x, x < lo);
        let periods = trunc(dx / range);
        let r = dx - periods * range;
        let even = (u32(periods) & 1u) == 0u;
        return select(lo + r, hi - r, even == (x > hi));
    }}
    return x;
}}

// The index an element position reads after padding, −1 for a zero.
fn pixel(i: f32, d: f32) -> i32 {{
    let lo = {lo};
    let hi = {hi};
    let j = {pixel};
    return select(-1, i32(j), j >= 0.0 && j < d);
}}

// The taps of normalised grid coordinate g on an axis of d elements.
fn taps(g: f32, d: f32) -> Taps {{
    var x = {position};
{rounding}    let lo = {lo};
    let hi = {hi};
    if x < lo || x > hi {{
        {outside}
    }}
    let base = floor(x);
    let t = x - base;
    var s: Taps;
{fill}    return s;
}}"
    )
    .unwrap();
    let b = &mut parts.body;
    writeln!(
        b,
        "    let i = group * 256u + lid;
    if i >= param(0u) {{
        return;
    }}
    let positions = param(1u);
    let plane = i / positions;
    let position = (plane / param(2u)) * positions + i % positions;
    let input = plane * {size}u;",
        size = spatial.iter().product::<u32>()
    )
    .unwrap();
    for (a, len) in spatial.iter().enumerate() {
        writeln!(b, "    var t{a} = taps(load_in1(position * {r}u + {}u), {len}.0);", r - 1 - a).unwrap();
    }
    b.push_str("    var acc = 0.0;\n");
    let mut indent = String::from("    ");
    for a in 0..r {
        writeln!(b, "{indent}for (var k{a} = 0; k{a} < {taps}; k{a}++) {{").unwrap();
        indent.push_str("    ");
    }
    let valid: Vec<String> = (0..r).map(|a| format!("t{a}.at[k{a}] >= 0")).collect();
    let weight: Vec<String> = (0..r).map(|a| format!("t{a}.w[k{a}]")).collect();
    let mut at = String::from("0");
    for (a, len) in spatial.iter().enumerate() {
        at = format!("({at}) * {len} + t{a}.at[k{a}]");
    }
    writeln!(b, "{indent}if {} {{\n{indent}    acc += {} * load_in0(input + u32({at}));\n{indent}}}", valid.join(" && "), weight.join(" * ")).unwrap();
    for _ in 0..r {
        indent.truncate(indent.len() - 4);
        writeln!(b, "{indent}}}").unwrap();
    }
    b.push_str("    out[i] = acc;\n");
    Ok(parts)
}
