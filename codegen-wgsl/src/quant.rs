//! WGSL decoders of the block-quantized weight formats, in the bundle's layout (see `tfc_ir::quant` and
//! docs/bundle-format.md): each row of the weight is the quant parts of its blocks, then their f16 scales, padded to
//! whole words. `decode4_inN(row, k)` returns elements k..k+3 of a row (k a multiple of 4), which always come from
//! one aligned word of each field they use; the element accessor and the quantized matrix kernels build on it.
//!
//! The values equal ggml's bit for bit: every product before the last is exact in f32 (an f16 scale times small
//! integers), so no reordering or fused multiply-add by a driver can change a result.

use crate::shader::Binding;
use std::fmt::Write;
use tfc_ir::DType;
use tfc_ir::quant::{BlockFormat, field};

/// The WGSL expression of the four bytes of word `w`, low byte first, as `vec4<u32>`.
fn bytes(w: &str) -> String {
    format!("((vec4<u32>({w}) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u))")
}

/// Byte `n` (a WGSL expression) of the quant part that starts at word `q` of `binding`.
fn byte(binding: &Binding, n: &str) -> String {
    format!("(({} >> (8u * (({n}) % 4u))) & 255u)", binding.word(&format!("q + ({n}) / 4u")))
}

/// `decode4_<var>(row, k)` for a weight of `dtype` bound as `binding` whose rows hold `row_len` elements.
pub(crate) fn decoder(binding: &Binding, dtype: DType, row_len: u32) -> String {
    let var = &binding.var;
    let f = BlockFormat::of(dtype).expect("a block format");
    let row_words = f.bundle_row_bytes(row_len as usize) / 4;
    let blocks = row_len as usize / f.block_elems;
    let scales_at = blocks * f.quant_bytes / 4;
    let (elems, quant_words) = (f.block_elems, f.quant_bytes / 4);
    let word = |field_bytes: usize, index: &str| binding.word(&format!("q + {}u + ({index})", field_bytes / 4));
    let mut s = format!(
        "
// Elements k..k+3 (k a multiple of 4) of row `row` of {var}: {dtype} in tfc's bundle layout with rows of {row_len}
// elements ({row_words} words: the quant parts of {blocks} blocks, then their f16 scales from word {scales_at}).
fn decode4_{var}(row: u32, k: u32) -> vec4<f32> {{
    let block = k / {elems}u;
    let j = k % {elems}u;
    let q = row * {row_words}u + block * {quant_words}u;
"
    );
    if f.halves == 2 {
        writeln!(s, "    let scales = unpack2x16float({});", binding.word(&format!("row * {row_words}u + {scales_at}u + block"))).unwrap();
    } else {
        writeln!(s, "    let d = unpack2x16float({})[block & 1u];", binding.word(&format!("row * {row_words}u + {scales_at}u + block / 2u"))).unwrap();
    }
    // The 4-bit parts of elements j..j+3 of a 32-element block whose `qs` starts at `qs_bytes`: the low nibbles of
    // qs[0..16] for j < 16, their high nibbles after.
    let nibbles = |qs_bytes: usize| {
        format!("(({} >> vec4<u32>((j / 16u) * 4u)) & vec4<u32>(15u))", bytes(&word(qs_bytes, "(j % 16u) / 4u")))
    };
    let fifth_bits = format!("((vec4<u32>({}) >> (vec4<u32>(0u, 1u, 2u, 3u) + j)) & vec4<u32>(1u))", word(field::Q5_QH, "0u"));
    let body = match dtype {
        DType::Q4_0 => format!("    return d * (vec4<f32>({}) - 8.0);\n", nibbles(0)),
        DType::Q4_1 => format!("    return scales.x * vec4<f32>({}) + scales.y;\n", nibbles(0)),
        DType::Q5_0 => {
            format!("    let v = {} | ({fifth_bits} << vec4<u32>(4u));\n    return d * (vec4<f32>(v) - 16.0);\n", nibbles(field::Q5_QS))
        }
        DType::Q5_1 => format!(
            "    let v = {} | ({fifth_bits} << vec4<u32>(4u));\n    return scales.x * vec4<f32>(v) + scales.y;\n",
            nibbles(field::Q5_QS)
        ),
        DType::Q8_0 => format!(
            "    let v = bitcast<vec4<i32>>({} << vec4<u32>(24u)) >> vec4<u32>(24u);\n    return vec4<f32>(v) * d;\n",
            bytes(&word(0, "j / 4u"))
        ),
        DType::Q2_K => format!(
            "    // Per 128 elements, 4 shifts of qs[32·half + l]; a scale byte (scale | min << 4) per 16 elements.
    let v = ({qs} >> vec4<u32>(2u * ((j % 128u) / 32u))) & vec4<u32>(3u);
    let sc = {sc};
    return (scales.x * f32(sc & 15u)) * vec4<f32>(v) - scales.y * f32(sc >> 4u);
",
            qs = bytes(&word(field::Q2K_QS, "(32u * (j / 128u) + j % 32u) / 4u")),
            sc = byte(binding, &format!("{} + j / 16u", field::Q2K_SCALES)),
        ),
        DType::Q3_K => format!(
            "    // 2 low bits as in Q2_K; the high bit from hmask[l], bit j / 32 (set: no −4); 6-bit scales biased by 32.
    let low = ({qs} >> vec4<u32>(2u * ((j % 128u) / 32u))) & vec4<u32>(3u);
    let high = ({hmask} >> vec4<u32>(j / 32u)) & vec4<u32>(1u);
    let v = vec4<i32>(low) - 4 + 4 * vec4<i32>(high);
    let i = j / 16u;
    let sc = i32((({low_sc} >> (4u * (i / 8u))) & 15u) | ((({high_sc} >> (2u * (i / 4u))) & 3u) << 4u)) - 32;
    return (d * f32(sc)) * vec4<f32>(v);
",
            qs = bytes(&word(field::Q3K_QS, "(32u * (j / 128u) + j % 32u) / 4u")),
            hmask = bytes(&word(field::Q3K_HMASK, "(j % 32u) / 4u")),
            low_sc = byte(binding, &format!("{} + i % 8u", field::Q3K_SCALES)),
            high_sc = byte(binding, &format!("{} + 8u + i % 4u", field::Q3K_SCALES)),
        ),
        DType::Q4_K | DType::Q5_K => {
            let (sc_at, qs_at) = if dtype == DType::Q4_K { (field::Q4K_SCALES, field::Q4K_QS) } else { (field::Q5K_SCALES, field::Q5K_QS) };
            let mut v = format!(
                "({} >> vec4<u32>(4u * ((j / 32u) % 2u))) & vec4<u32>(15u)",
                bytes(&word(qs_at, "(32u * (j / 64u) + j % 32u) / 4u"))
            );
            if dtype == DType::Q5_K {
                v = format!("({v}) | ((({} >> vec4<u32>(j / 32u)) & vec4<u32>(1u)) << vec4<u32>(4u))", bytes(&word(field::Q5K_QH, "(j % 32u) / 4u")));
            }
            format!(
                "    // Sub-block s of 8 has a 6-bit scale and min: s < 4 in bytes s and s + 4; else in the nibbles of byte
    // s + 4 with their high bits at the top of bytes s − 4 and s.
    let s = j / 32u;
    let b0 = {b0};
    let b4 = {b4};
    let b8 = {b8};
    let sc = select((b8 & 15u) | ((b0 >> 6u) << 4u), b0 & 63u, s < 4u);
    let mn = select((b8 >> 4u) | ((b4 >> 6u) << 4u), b4 & 63u, s < 4u);
    let v = {v};
    return (scales.x * f32(sc)) * vec4<f32>(v) - scales.y * f32(mn);
",
                b0 = byte(binding, &format!("{sc_at} + s % 4u")),
                b4 = byte(binding, &format!("{sc_at} + 4u + s % 4u")),
                b8 = byte(binding, &format!("{sc_at} + 8u + s % 4u")),
            )
        }
        DType::Q6_K => format!(
            "    // Per 128 elements: low nibbles of ql[64·half + r % 64] (high nibbles from r = 64), 2 bits of
    // qh[32·half + r % 32] at shift 2·(r / 32); minus 32; an i8 scale per 16 elements.
    let r = j % 128u;
    let low = ({ql} >> vec4<u32>(4u * (r / 64u))) & vec4<u32>(15u);
    let high = ({qh} >> vec4<u32>(2u * (r / 32u))) & vec4<u32>(3u);
    let v = vec4<i32>(low | (high << vec4<u32>(4u))) - 32;
    let sc = bitcast<i32>({sc} << 24u) >> 24u;
    return (d * f32(sc)) * vec4<f32>(v);
",
            ql = bytes(&word(field::Q6K_QL, "(64u * (j / 128u) + r % 64u) / 4u")),
            qh = bytes(&word(field::Q6K_QH, "(32u * (j / 128u) + r % 32u) / 4u")),
            sc = byte(binding, &format!("{} + j / 16u", field::Q6K_SCALES)),
        ),
        other => unreachable!("{other} is not a block format"),
    };
    s.push_str(&body);
    s.push_str("}\n");
    s
}

/// The body of the element accessor `load_<var>(i)`: element i of the row-major weight with rows of `row_len`.
pub(crate) fn element(var: &str, row_len: u32) -> String {
    format!("decode4_{var}(i / {row_len}u, (i % {row_len}u) & ~3u)[i & 3u]")
}
