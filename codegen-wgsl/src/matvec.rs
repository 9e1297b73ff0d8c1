//! The matrix-vector strategy of the matmul kernels: `x · Wᵀ` for up to 4 rows of x (decoding steps) and a weight
//! W `[N, K]` stored along K, in f32, f16, bf16 or a block format (the bundle's layout, see `quant.rs`).
//!
//! A workgroup computes 16 rows of W. Its 256 invocations are 8 rows × 32 k-lanes, rows fastest, and each takes 2
//! rows (r and r + 8) so that every x value it loads serves both. A k-lane walks its rows in units, 32 units apart:
//! a unit is a run of a row read together (a quad of 4 floats or 8 halves, a Q4_0 or Q8_0 block, a quarter of a
//! K-quant block), whose words are loaded as whole quads (16 bytes) where the layout allows and decoded all at once.
//! A quant becomes an exact float without an integer conversion: OR-ed into the mantissa of 2²³, minus 2²³ and the
//! format's zero point. Each group of weights that shares a scale adds `d · Σ q·x + m · Σ x` (`m` where the format
//! has an offset), with x read as vec4s; neighbouring k-lanes read neighbouring units, so a warp's loads of W are
//! runs of whole sectors and its loads of x hit a few lines. The 32 partial sums of each output meet in workgroup
//! memory (`a_tile`, `b_tile` of the tiled strategy's declarations), in two steps.
//!
//! It expects the params of `matmul.rs`: N at 1, and R = param(0) · param(7) rows of x, contiguous along K.

use crate::shader::{Binding, Parts};
use std::fmt::Write;
use tfc_ir::quant::BlockFormat;
use tfc_ir::{DType, Expr};

/// Rows of x up to which the strategy runs.
pub(crate) const MAX_X_ROWS: u32 = 4;
/// Rows of W across neighbouring invocations.
const LANE_ROWS: u32 = 8;
/// Rows of W per invocation.
const ROWS_PER_LANE: u32 = 2;
/// Invocations splitting each row: the workgroup of 256 over `LANE_ROWS`.
const K_LANES: u32 = 256 / LANE_ROWS;
/// Rows of W per workgroup.
const GROUP_ROWS: u32 = LANE_ROWS * ROWS_PER_LANE;
/// The WGSL expression of R, the rows of x.
const X_ROWS: &str = "param(0u) * param(7u)";

/// The strategy for x (operand 0) times Wᵀ (operand 1) with rows of `k` elements.
pub(crate) struct Matvec {
    weight: DType,
    k: u32,
    /// x is f32 (read in quads) rather than converted element by element.
    x_quads: bool,
    /// W's rows are whole quads, so it is bound in quads.
    w_quads: bool,
}

impl Matvec {
    /// The strategy for a block-quantized weight of dtype `weight` with rows of `k` elements (whole blocks).
    pub fn block(x: DType, weight: DType, k: u32) -> Matvec {
        let f = BlockFormat::of(weight).expect("a block format");
        Matvec::with_row_bytes(x, weight, k, f.bundle_row_bytes(k as usize))
    }

    /// The strategy for a float weight of dtype `weight` with rows of `k` elements, where it has one: f32, f16 or
    /// bf16 rows of whole units (4 f32 or 8 halves).
    pub fn float(x: DType, weight: DType, k: u32) -> Option<Matvec> {
        let float = matches!(weight, DType::F32 | DType::F16 | DType::BF16);
        (float && k > 0 && k.is_multiple_of(unit(weight, 0).elems)).then(|| Matvec::with_row_bytes(x, weight, k, weight.size() * k as usize))
    }

    fn with_row_bytes(x: DType, weight: DType, k: u32, row_bytes: usize) -> Matvec {
        let w_quads = unit(weight, 0).quads && row_bytes.is_multiple_of(16);
        Matvec { weight, k, x_quads: x == DType::F32, w_quads }
    }

    /// Workgroups for N rows of W.
    pub fn workgroups(n: Expr) -> Expr {
        Expr::ceil_div(n, Expr::Const(GROUP_ROWS as u64))
    }

    /// Binds the operands as the strategy reads them and adds its declarations, `matvec(group, lid)` among them.
    pub fn add_to(&self, parts: &mut Parts) {
        parts.quads = [(0, self.x_quads), (1, self.w_quads)].into_iter().filter(|&(_, q)| q).map(|(i, _)| i).collect();
        let x_row_quads = self.k / 4;
        let x_quad = if self.x_quads {
            format!("return in0[m * {x_row_quads}u + q];")
        } else {
            format!("let at = 4u * (m * {x_row_quads}u + q);\n    return vec4<f32>(load_in0(at), load_in0(at + 1u), load_in0(at + 2u), load_in0(at + 3u));")
        };
        let w = Binding { var: "in1".into(), quads: self.w_quads };
        let row_words = self.row_words();
        let storage = crate::shader::storage_type(self.weight);
        let w_quad = if self.w_quads {
            format!("return in1[row * {}u + q];", row_words / 4)
        } else {
            let words: Vec<String> = (0..4).map(|j| w.word(&format!("at + {j}u"))).collect();
            format!("let at = row * {row_words}u + 4u * q;\n    return vec4<{storage}>({});", words.join(", "))
        };
        write!(
            parts.decls,
            "
// Quad q (elements 4q..4q + 3) of row m of x.
fn x_quad(m: u32, q: u32) -> vec4<f32> {{
    {x_quad}
}}

// Quad q of rows 0..3 of x as the columns of a matrix, rows past R repeating the last.
fn x_rows(q: u32) -> mat4x4<f32> {{
    let last = {X_ROWS} - 1u;
    return mat4x4<f32>(x_quad(0u, q), x_quad(min(1u, last), q), x_quad(min(2u, last), q), x_quad(min(3u, last), q));
}}

// Word i and quad q (words 4q..4q + 3) of row `row` of W.
fn w_word(row: u32, i: u32) -> {storage} {{
    return {};
}}

fn w_quad(row: u32, q: u32) -> vec4<{storage}> {{
    {w_quad}
}}

// The fields of `mask` bits at bits shift, 8 + shift, 16 + shift and 24 + shift of w.
fn fields(w: u32, shift: u32, mask: u32) -> vec4<u32> {{
    return (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(mask);
}}

// v − zero as exact floats, for v < 2²³: v in the mantissa of 2²³, minus 2²³ + zero.
fn exact(v: vec4<u32>, zero: f32) -> vec4<f32> {{
    return bitcast<vec4<f32>>(v | vec4<u32>(0x4b000000u)) - (8388608.0 + zero);
}}
{}",
            w.word(&format!("row * {row_words}u + i")),
            self.kernel(),
        )
        .unwrap();
    }

    /// Words per row of W in the bundle.
    fn row_words(&self) -> usize {
        match BlockFormat::of(self.weight) {
            Some(f) => f.bundle_row_bytes(self.k as usize) / 4,
            None => self.weight.size() * self.k as usize / 4,
        }
    }

    fn kernel(&self) -> String {
        // The f16 scales of a block format's row follow the quant parts of its blocks.
        let scales_at = BlockFormat::of(self.weight).map_or(0, |f| (self.k as usize / f.block_elems) * f.quant_bytes / 4);
        let unit = unit(self.weight, scales_at);
        let units = self.k / unit.elems;
        let mut s = format!(
            "
// Rows n0..n0 + {GROUP_ROWS} of x · Wᵀ for R ≤ {MAX_X_ROWS}: invocation lid takes rows n0 + lid % {LANE_ROWS} and n0 + {LANE_ROWS} + lid % {LANE_ROWS}, units
// lid / {LANE_ROWS}, lid / {LANE_ROWS} + {K_LANES}, … of their {units} units of {elems} elements.
fn matvec(group: u32, lid: u32) {{
    let n0 = group * {GROUP_ROWS}u;
    if n0 >= param(1u) {{
        return;
    }}
    let rows = {X_ROWS};
    // Rows past N read the last row and are not stored.
    let last = param(1u) - 1u;
",
            elems = unit.elems,
        );
        for rw in 0..ROWS_PER_LANE {
            writeln!(s, "    let row_{rw} = min(n0 + {}u + lid % {LANE_ROWS}u, last);", rw * LANE_ROWS).unwrap();
        }
        // Accumulators: a vec4 over the rows of x.
        for rw in 0..ROWS_PER_LANE {
            writeln!(s, "    var acc_{rw} = vec4<f32>(0.0);").unwrap();
        }
        writeln!(s, "    var u = lid / {LANE_ROWS}u;").unwrap();
        let branch = |one_row: bool| {
            let unrolled = unit.unroll.min(units.div_ceil(K_LANES));
            let mut b = format!(
                "        for (; u + {}u < {units}u; u += {}u) {{\n{}        }}\n",
                (unrolled - 1) * K_LANES,
                unrolled * K_LANES,
                unit.code(unrolled, one_row),
            );
            if unrolled > 1 && !units.is_multiple_of(unrolled * K_LANES) {
                write!(b, "        for (; u < {units}u; u += {K_LANES}u) {{\n{}        }}\n", unit.code(1, one_row)).unwrap();
            }
            b
        };
        write!(s, "    if rows == 1u {{\n{}    }} else {{\n{}    }}\n", branch(true), branch(false)).unwrap();
        let parts = 128 / GROUP_ROWS;
        write!(
            s,
            "    // Each row's {K_LANES} partial sums: {} invocations add 4 each, then {GROUP_ROWS} add {parts} each.
    a_tile[lid] = acc_0;
    a_tile[256u + lid] = acc_1;
    workgroupBarrier();
    if lid < 128u {{
        let row = lid % {GROUP_ROWS}u;
        let at = (row / {LANE_ROWS}u) * 256u + row % {LANE_ROWS}u + (lid / {GROUP_ROWS}u) * {}u;
        b_tile[lid] = (a_tile[at] + a_tile[at + {LANE_ROWS}u]) + (a_tile[at + {}u] + a_tile[at + {}u]);
    }}
    workgroupBarrier();
    if lid < {GROUP_ROWS}u {{
        var sum = vec4<f32>(0.0);
        for (var i = 0u; i < {parts}u; i++) {{
            sum += b_tile[i * {GROUP_ROWS}u + lid];
        }}
        let n = n0 + lid;
        if n < param(1u) {{
            for (var m = 0u; m < rows; m++) {{
                out[m * param(1u) + n] = sum[m];
            }}
        }}
    }}
}}
",
            128,
            4 * LANE_ROWS,
            2 * LANE_ROWS,
            3 * LANE_ROWS,
        )
        .unwrap();
        s
    }
}

/// A unit of a row: the WGSL that reads it, in templates where `#` stands for the unit's suffix and `$` for the
/// row's (`u#` is the unit, `row$` the row of W). Offsets in a row of W are in words (`w_word`) or quads
/// (`w_quad`), those in a row of x in quads.
struct Unit {
    elems: u32,
    /// Whether it loads quads of W (which then, where its rows are whole quads, is bound in quads).
    quads: bool,
    /// Units per loop iteration, so that each invocation has several loads in flight.
    unroll: u32,
    /// Statements shared by the rows.
    setup: String,
    /// Statements loading the unit of row `$`.
    load: String,
    groups: Vec<Group>,
}

/// Quads of weights that share a scale, adding `scale · Σ dot(value, x) + offset · Σ x`.
struct Group {
    /// The quad of x (with `#`), and the 4 weights it meets before scaling (a vec4<f32>).
    quads: Vec<(String, String)>,
    scale: Option<String>,
    offset: Option<String>,
}

fn subst(template: &str, unit: u32, row: u32) -> String {
    template.replace('#', &format!("_{unit}")).replace('$', &format!("_{row}"))
}

impl Unit {
    /// The statements for `count` units from `u`, for one row of x (dot products) or up to 4 (a vec4 over them).
    fn code(&self, count: u32, one_row: bool) -> String {
        let mut s = String::new();
        let mut line = |text: String| {
            for l in text.lines() {
                writeln!(s, "            {l}").unwrap();
            }
        };
        for i in 0..count {
            line(format!("let u_{i} = u + {}u;", i * K_LANES));
            line(subst(&self.setup, i, 0));
            for rw in 0..ROWS_PER_LANE {
                line(subst(&self.load, i, rw));
            }
        }
        // Per group, in a block of its own: the sums for each row and Σ x, a quad of x at a time.
        let (zero, x) = if one_row { ("0.0", "x_quad(0u, ") } else { ("vec4<f32>(0.0)", "x_rows(") };
        for i in 0..count {
            for group in &self.groups {
                line("{".into());
                for rw in 0..ROWS_PER_LANE {
                    line(format!("    var sum_{rw} = {zero};"));
                }
                if group.offset.is_some() {
                    line(format!("    var sum_x = {zero};"));
                }
                for (j, (at, value)) in group.quads.iter().enumerate() {
                    line(format!("    let x_{j} = {x}{});", subst(at, i, 0)));
                    for rw in 0..ROWS_PER_LANE {
                        let value = subst(value, i, rw);
                        line(if one_row { format!("    sum_{rw} += dot({value}, x_{j});") } else { format!("    sum_{rw} += {value} * x_{j};") });
                    }
                    if group.offset.is_some() {
                        line(if one_row { format!("    sum_x += dot(x_{j}, vec4<f32>(1.0));") } else { format!("    sum_x += vec4<f32>(1.0) * x_{j};") });
                    }
                }
                for rw in 0..ROWS_PER_LANE {
                    let mut term = match &group.scale {
                        Some(scale) => format!("{} * sum_{rw}", subst(scale, i, rw)),
                        None => format!("sum_{rw}"),
                    };
                    if let Some(offset) = &group.offset {
                        write!(term, " + {} * sum_x", subst(offset, i, rw)).unwrap();
                    }
                    line(format!("    acc_{rw}{} += {term};", if one_row { ".x" } else { "" }));
                }
                line("}".into());
            }
        }
        s
    }
}

/// Words at..at + 3 of row `row$` (`at` a WGSL expression with `#`) as a vec4, for a layout where they need not
/// form a quad.
fn words(at: &str) -> String {
    format!("vec4<u32>(w_word(row$, {at}), w_word(row$, {at} + 1u), w_word(row$, {at} + 2u), w_word(row$, {at} + 3u))")
}

/// The unit of each weight dtype, whose row's f16 scales (block formats) start at word `scales_at`.
fn unit(dtype: DType, scales_at: usize) -> Unit {
    // The f16 scale `d` of block `block` (two per word).
    let d = |block: &str| format!("let d#$ = unpack2x16float(w_word(row$, {scales_at}u + {block} / 2u))[{block} & 1u];");
    // The f16 scales `d` and `m` (or `dmin`) of block `block`.
    let dm = |block: &str| format!("let dm#$ = unpack2x16float(w_word(row$, {scales_at}u + {block}));");
    let one = |scale: &str| Some(scale.to_string());
    match dtype {
        DType::F32 => Unit {
            elems: 4,
            quads: true,
            unroll: 4,
            setup: String::new(),
            load: "let v#$ = w_quad(row$, u#);".into(),
            groups: vec![Group { quads: vec![("u#".into(), "v#$".into())], scale: None, offset: None }],
        },
        DType::F16 | DType::BF16 => {
            let (lo, hi) = if dtype == DType::F16 {
                ("vec4<f32>(unpack2x16float(h#$.x), unpack2x16float(h#$.y))", "vec4<f32>(unpack2x16float(h#$.z), unpack2x16float(h#$.w))")
            } else {
                // bf16 is the high half of an f32.
                (
                    "bitcast<vec4<f32>>(vec4<u32>(h#$.x << 16u, h#$.x & 0xffff0000u, h#$.y << 16u, h#$.y & 0xffff0000u))",
                    "bitcast<vec4<f32>>(vec4<u32>(h#$.z << 16u, h#$.z & 0xffff0000u, h#$.w << 16u, h#$.w & 0xffff0000u))",
                )
            };
            Unit {
                elems: 8,
                quads: true,
                unroll: 4,
                setup: String::new(),
                load: "let h#$ = w_quad(row$, u#);".into(),
                groups: vec![Group { quads: vec![("2u * u#".into(), lo.into()), ("2u * u# + 1u".into(), hi.into())], scale: None, offset: None }],
            }
        }
        // A block: a quad of nibbles, the low ones elements 0..16, the high ones 16..32.
        DType::Q4_0 | DType::Q4_1 => {
            let (zero, scale_load, scale, offset) =
                if dtype == DType::Q4_0 { (8.0, d("u#"), "d#$", None) } else { (0.0, dm("u#"), "dm#$.x", one("dm#$.y")) };
            Unit {
                elems: 32,
                quads: true,
                unroll: 2,
                setup: String::new(),
                load: format!("let q#$ = w_quad(row$, u#);\n{scale_load}"),
                groups: vec![Group {
                    quads: (0..8).map(|i| (format!("8u * u# + {i}u"), format!("exact(fields(q#$[{}], {}u, 15u), {zero:?})", i % 4, 4 * (i / 4)))).collect(),
                    scale: one(scale),
                    offset,
                }],
            }
        }
        // A block: the fifth bits (a word), then 16 bytes of nibbles as in Q4_0; 5 words, so no quads.
        DType::Q5_0 | DType::Q5_1 => {
            let (zero, scale_load, scale, offset) =
                if dtype == DType::Q5_0 { (16.0, d("u#"), "d#$", None) } else { (0.0, dm("u#"), "dm#$.x", one("dm#$.y")) };
            Unit {
                elems: 32,
                quads: false,
                unroll: 2,
                setup: String::new(),
                load: format!("let qh#$ = w_word(row$, 5u * u#);\nlet qs#$ = {};\n{scale_load}", words("5u * u# + 1u")),
                groups: vec![Group {
                    quads: (0..8)
                        .map(|i| {
                            // Element e's fifth bit is bit e of qh: moved to bit 4 of each lane.
                            let fifth = format!("((vec4<u32>(qh#$ >> {}u) << vec4<u32>(4u, 3u, 2u, 1u)) & vec4<u32>(16u))", 4 * i);
                            (format!("8u * u# + {i}u"), format!("exact(fields(qs#$[{}], {}u, 15u) | {fifth}, {zero:?})", i % 4, 4 * (i / 4)))
                        })
                        .collect(),
                    scale: one(scale),
                    offset,
                }],
            }
        }
        // A block: two quads of signed bytes, read as bytes + 128.
        DType::Q8_0 => Unit {
            elems: 32,
            quads: true,
            unroll: 2,
            setup: String::new(),
            load: format!("let qa#$ = w_quad(row$, 2u * u#);\nlet qb#$ = w_quad(row$, 2u * u# + 1u);\n{}", d("u#")),
            groups: vec![Group {
                quads: (0..8)
                    .map(|i| (format!("8u * u# + {i}u"), format!("exact(fields(q{}#$[{}] ^ 0x80808080u, 0u, 255u), 128.0)", ["a", "b"][i / 4], i % 4)))
                    .collect(),
                scale: one("d#$"),
                offset: None,
            }],
        },
        // Quarter v of a block (h = v / 2, o = v % 2): qs[32h + 16o..][..16] (Q2_K: quad 1 + v of the block's 5;
        // Q3_K: words 8 + 4v of its 27), 2 bits at shifts 2s of each byte for elements 128h + 32s + 16o + … (s < 4),
        // and a scale per 16 elements (8h + 2s + o): Q2_K's a byte (scale | min << 4) of the first quad; Q3_K's 6
        // bits in scales[12] (words 24..27), with a third bit per element in hmask[16o..][..16] (words 4o..), bit
        // 4h + s.
        DType::Q2_K | DType::Q3_K => {
            let q3 = dtype == DType::Q3_K;
            let setup = "let b# = u# / 4u;\nlet v# = u# % 4u;\nlet h# = v# / 2u;\nlet o# = v# % 2u;\nlet at# = 64u * b# + 32u * h# + 4u * o#;".to_string();
            let mut load = String::new();
            if q3 {
                writeln!(load, "let w#$ = 27u * b#;\nlet q#$ = {};\nlet m#$ = {};", words("w#$ + 8u + 4u * v#"), words("w#$ + 4u * o#")).unwrap();
                load.push_str("let s0#$ = w_word(row$, w#$ + 24u);\nlet s1#$ = w_word(row$, w#$ + 25u);\nlet s2#$ = w_word(row$, w#$ + 26u);\n");
                load.push_str(&d("b#"));
                for s in 0..4 {
                    // Scale 8h + 2s + o: its low 4 bits in byte 2s + o (nibble h), its high 2 in byte 8 + (2s + o) % 4
                    // (bits 2(2h + s / 2)).
                    let shift = format!("8u * o# + {}u", 16 * (s % 2));
                    write!(
                        load,
                        "\nlet sc{s}#$ = f32(i32(((s{}#$ >> ({shift} + 4u * h#)) & 15u) | (((s2#$ >> ({shift} + 4u * h# + {}u)) & 3u) << 4u)) - 32);",
                        s / 2,
                        2 * (s / 2)
                    )
                    .unwrap();
                }
            } else {
                load.push_str("let q#$ = w_quad(row$, 5u * b# + 1u + v#);\n");
                load.push_str("let sa#$ = w_word(row$, 20u * b# + 2u * h#);\nlet sb#$ = w_word(row$, 20u * b# + 2u * h# + 1u);\n");
                load.push_str(&dm("b#"));
                for s in 0..4 {
                    write!(load, "\nlet sc{s}#$ = (s{}#$ >> (8u * o# + {}u)) & 255u;", ["a", "b"][s / 2], 16 * (s % 2)).unwrap();
                }
            }
            Unit {
                elems: 64,
                quads: !q3,
                unroll: 1,
                setup,
                load,
                groups: (0..4)
                    .map(|s| Group {
                        quads: (0..4)
                            .map(|c| {
                                let low = format!("fields(q#$[{c}], {}u, 3u)", 2 * s);
                                let value = if q3 {
                                    format!("exact({low} | (fields(m#$[{c}], 4u * h# + {s}u, 1u) << vec4<u32>(2u)), 4.0)")
                                } else {
                                    format!("exact({low}, 0.0)")
                                };
                                (format!("at# + {}u", 8 * s + c), value)
                            })
                            .collect(),
                        scale: Some(if q3 { format!("d#$ * sc{s}#$") } else { format!("dm#$.x * f32(sc{s}#$ & 15u)") }),
                        offset: (!q3).then(|| format!("-dm#$.y * f32(sc{s}#$ >> 4u)")),
                    })
                    .collect(),
            }
        }
        // Sub-blocks 2p and 2p + 1 of a block (p = u % 4): 32 bytes of qs, their low nibbles the first, their high
        // ones the second; Q5_K's fifth bits are bits 2p and 2p + 1 of qh[32]. Scales and mins of 6 bits in
        // scales[12] (words 0..3). Blocks of 35 and 43 words, so no quads.
        DType::Q4_K | DType::Q5_K => {
            let q5 = dtype == DType::Q5_K;
            let (stride, qs) = if q5 { (43, 11) } else { (35, 3) };
            let mut load = format!(
                "let w#$ = {stride}u * b#;\nlet qa#$ = {};\nlet qb#$ = {};\n",
                words(&format!("w#$ + {qs}u + 8u * p#")),
                words(&format!("w#$ + {}u + 8u * p#", qs + 4))
            );
            if q5 {
                writeln!(load, "let ha#$ = {};\nlet hb#$ = {};", words("w#$ + 3u"), words("w#$ + 7u")).unwrap();
            }
            load.push_str("let s0#$ = w_word(row$, w#$);\nlet s1#$ = w_word(row$, w#$ + 1u);\nlet s2#$ = w_word(row$, w#$ + 2u);\n");
            load.push_str(&dm("b#"));
            for t in 0..2 {
                // Sub-block s = 2p + t: for s < 4 the scale is byte s & 63 and the min byte s + 4 & 63; else the
                // nibbles of byte s + 4 with the top bits of bytes s − 4 and s. Byte s % 4 of each word.
                write!(
                    load,
                    "
let lo{t}#$ = (s0#$ >> (16u * (p# % 2u) + {sh}u)) & 255u;
let mid{t}#$ = (s1#$ >> (16u * (p# % 2u) + {sh}u)) & 255u;
let hi{t}#$ = (s2#$ >> (16u * (p# % 2u) + {sh}u)) & 255u;
let sc{t}#$ = select((hi{t}#$ & 15u) | ((lo{t}#$ >> 6u) << 4u), lo{t}#$ & 63u, p# < 2u);
let mn{t}#$ = select((hi{t}#$ >> 4u) | ((mid{t}#$ >> 6u) << 4u), mid{t}#$ & 63u, p# < 2u);",
                    sh = 8 * t
                )
                .unwrap();
            }
            Unit {
                elems: 64,
                quads: false,
                unroll: 1,
                setup: "let b# = u# / 4u;\nlet p# = u# % 4u;\nlet at# = 64u * b# + 16u * p#;".into(),
                load,
                groups: (0..2)
                    .map(|t| Group {
                        quads: (0..8)
                            .map(|c| {
                                let (q, h) = (["qa", "qb"][c / 4], ["ha", "hb"][c / 4]);
                                let nibbles = format!("fields({q}#$[{}], {}u, 15u)", c % 4, 4 * t);
                                let value = if q5 {
                                    format!("exact({nibbles} | (fields({h}#$[{}], 2u * p# + {t}u, 1u) << vec4<u32>(4u)), 0.0)", c % 4)
                                } else {
                                    format!("exact({nibbles}, 0.0)")
                                };
                                (format!("at# + {}u", 8 * t + c), value)
                            })
                            .collect(),
                        scale: Some(format!("dm#$.x * f32(sc{t}#$)")),
                        offset: Some(format!("-dm#$.y * f32(mn{t}#$)")),
                    })
                    .collect(),
            }
        }
        // Quarter t of a block of 13 quads (h = t / 2, o = t % 2): elements 128h + 16o + 32g + … for g < 4, their
        // low 4 bits in the nibble g / 2 of ql quad 4h + o + 2(g % 2), their high 2 at shift 2g of qh quad
        // 8 + 2h + o; minus 32; an i8 scale per 16 elements (8h + o + 2g) in words 48..52.
        DType::Q6_K => {
            let mut load = String::from(
                "let la#$ = w_quad(row$, 13u * b# + 4u * h# + o#);
let lb#$ = w_quad(row$, 13u * b# + 4u * h# + o# + 2u);
let qh#$ = w_quad(row$, 13u * b# + 8u + 2u * h# + o#);
let sa#$ = w_word(row$, 52u * b# + 48u + 2u * h#);
let sb#$ = w_word(row$, 52u * b# + 49u + 2u * h#);
",
            );
            load.push_str(&d("b#"));
            for g in 0..4 {
                write!(load, "\nlet sc{g}#$ = f32(bitcast<i32>((s{}#$ >> (8u * o# + {}u)) << 24u) >> 24u);", ["a", "b"][g / 2], 16 * (g % 2)).unwrap();
            }
            Unit {
                elems: 64,
                quads: true,
                unroll: 1,
                setup: "let b# = u# / 4u;\nlet h# = (u# % 4u) / 2u;\nlet o# = u# % 2u;\nlet at# = 64u * b# + 32u * h# + 4u * o#;".into(),
                load,
                groups: (0..4)
                    .map(|g| Group {
                        quads: (0..4)
                            .map(|c| {
                                let low = format!("fields(l{}#$[{c}], {}u, 15u)", ["a", "b"][g % 2], 4 * (g / 2));
                                (format!("at# + {}u", 8 * g + c), format!("exact({low} | (fields(qh#$[{c}], {}u, 3u) << vec4<u32>(4u)), 32.0)", 2 * g))
                            })
                            .collect(),
                        scale: Some(format!("d#$ * sc{g}#$")),
                        offset: None,
                    })
                    .collect(),
            }
        }
        other => unreachable!("{other} has no matrix-vector unit"),
    }
}
