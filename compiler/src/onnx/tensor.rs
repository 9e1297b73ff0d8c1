//! ONNX element types and their mapping onto tfc's dtypes, and the values of TensorProtos: embedded (typed fields
//! or raw_data, read in place from the model's memory map) or external (a byte range of a file beside the model).

use super::proto::TensorProto;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tfc_ir::{DType, Dim, FloatLayout, MappedFile, NarrowFloat, ScaleRounding, Weight, WeightData};

/// An ONNX element type (TensorProto.DataType). tfc computes every float type in f32 and every integer type and
/// bool in i32 (bool as 0/1): the float8, float4 and 4- and 2-bit integer types are f32 and i32 holding only the
/// values of the type; see docs/onnx.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elem(pub i32);

impl Elem {
    pub const FLOAT: Elem = Elem(1);
    pub const UINT8: Elem = Elem(2);
    pub const INT8: Elem = Elem(3);
    pub const INT64: Elem = Elem(7);
    pub const BOOL: Elem = Elem(9);

    pub fn name(self) -> &'static str {
        const NAMES: [&str; 27] = [
            "undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64", "string", "bool", "float16",
            "double", "uint32", "uint64", "complex64", "complex128", "bfloat16", "float8e4m3fn", "float8e4m3fnuz",
            "float8e5m2", "float8e5m2fnuz", "uint4", "int4", "float4e2m1", "float8e8m0", "uint2", "int2",
        ];
        NAMES.get(self.0 as usize).copied().unwrap_or("unknown")
    }

    pub fn is_float(self) -> bool {
        matches!(self.0, 1 | 10 | 11 | 16..=20 | 23 | 24)
    }

    pub fn is_int(self) -> bool {
        matches!(self.0, 2..=7 | 9 | 12 | 13 | 21 | 22 | 25 | 26)
    }

    /// The float8 or float4 format of this type; `e8m0` says how float8e8m0 rounds.
    pub fn narrow_float(self, e8m0: ScaleRounding) -> Option<NarrowFloat> {
        Some(match self.0 {
            17 => NarrowFloat::E4M3Fn,
            18 => NarrowFloat::E4M3FnUz,
            19 => NarrowFloat::E5M2,
            20 => NarrowFloat::E5M2FnUz,
            23 => NarrowFloat::E2M1,
            24 => NarrowFloat::E8M0(e8m0),
            _ => return None,
        })
    }

    /// The smallest and largest value of an integer type (bool: 0 and 1; uint64 up to i64::MAX).
    pub fn int_range(self) -> Option<(i64, i64)> {
        let bits = self.bits()? as u32;
        let (lo, hi): (i128, i128) = match self.0 {
            9 => (0, 1),
            2 | 4 | 12 | 13 | 21 | 25 => (0, (1 << bits) - 1),
            3 | 5 | 6 | 7 | 22 | 26 => (-(1 << (bits - 1)), (1 << (bits - 1)) - 1),
            _ => return None,
        };
        Some((lo as i64, hi.min(i64::MAX as i128) as i64))
    }

    /// Whether raw_data (and int32_data, a byte per int32) holds this type's values as bytes: the float8 types, and
    /// those under 8 bits packed into bytes.
    fn packed(self) -> bool {
        self.narrow_float(ScaleRounding::Up).is_some() || self.bits().is_some_and(|b| b < 8)
    }

    /// The dtype tfc computes this element type in, or why it cannot.
    pub fn dtype(self) -> Result<DType, String> {
        if self.is_float() {
            Ok(DType::F32)
        } else if self.is_int() {
            Ok(DType::I32)
        } else {
            Err(format!("element type {} cannot be represented: tfc computes in f32 and i32", self.name()))
        }
    }

    /// Rounds a value to what this element type can hold (f32 values of narrower floats; out of range, float8 and
    /// float4 types give what Cast with saturate = 0 gives).
    pub fn round_f32(self, x: f32) -> f32 {
        match (self.0, self.narrow_float(ScaleRounding::Up)) {
            (10, _) => half::f16::from_f32(x).to_f32(),
            (16, _) => half::bf16::from_f32(x).to_f32(),
            (_, Some(format)) => tfc_ir::interp::round_to(format, false, x),
            _ => x,
        }
    }

    /// Wraps an integer into this element type's range, as a C cast does: the low bits, read as signed or unsigned
    /// (bool: nonzero is 1).
    pub fn wrap_int(self, x: i64) -> i64 {
        match (self.0, self.int_range(), self.bits()) {
            (9, ..) => (x != 0) as i64,
            (_, Some((lo, _)), Some(bits)) if bits < 64 => {
                let low = x & ((1i64 << bits) - 1);
                if lo < 0 && low >> (bits - 1) == 1 { low - (1i64 << bits) } else { low }
            }
            _ => x,
        }
    }

    /// Bits per element in raw_data (elements under 8 bits are packed, the first in the lowest bits).
    pub fn bits(self) -> Option<usize> {
        Some(match self.0 {
            25 | 26 => 2,
            21..=23 => 4,
            2 | 3 | 9 | 17..=20 | 24 => 8,
            4 | 5 | 10 | 16 => 16,
            1 | 6 | 12 => 32,
            7 | 11 | 13 => 64,
            _ => return None,
        })
    }
}

/// A tensor's values as tfc holds them on the host: f32 for float types, integers (possibly symbolic, from shape
/// arithmetic) for integer types and bool.
#[derive(Clone, Debug)]
pub enum Values {
    F32(Vec<f32>),
    Int(Vec<Dim>),
}

/// Where the files of external data may be: the model's folder. Maps each file once.
pub struct ExternalFiles {
    folder: PathBuf,
    maps: BTreeMap<PathBuf, Arc<MappedFile>>,
}

impl ExternalFiles {
    pub fn new(model: &Path) -> ExternalFiles {
        let folder = model.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        ExternalFiles { folder: folder.to_path_buf(), maps: BTreeMap::new() }
    }

    /// The bytes of a tensor stored outside the model, checked to lie inside the model's folder and its file.
    fn bytes(&mut self, t: &TensorProto, expected: usize) -> Result<(Arc<MappedFile>, usize, usize), String> {
        let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let location = entry("location").ok_or("its external data has no `location`")?;
        let number = |key: &str| -> Result<Option<usize>, String> {
            entry(key).map(|v| v.parse::<usize>().map_err(|_| format!("external data `{key}` = {v:?} is not a byte count"))).transpose()
        };
        let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
        let relative = Path::new(location);
        if relative.is_absolute() || relative.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(format!("external data location {location:?} leaves the model's folder; tfc only reads files beside the model"));
        }
        let path = self.folder.join(relative);
        let real = path.canonicalize().map_err(|e| format!("cannot open its external data {}: {e}", path.display()))?;
        let folder = self.folder.canonicalize().map_err(|e| format!("cannot open the model's folder {}: {e}", self.folder.display()))?;
        if !real.starts_with(&folder) {
            return Err(format!("external data location {location:?} resolves to {}, outside the model's folder", real.display()));
        }
        let file = match self.maps.get(&real) {
            Some(f) => f.clone(),
            None => {
                let f = MappedFile::open(&real).map_err(|e| format!("cannot map its external data {}: {e}", real.display()))?;
                self.maps.insert(real.clone(), f.clone());
                f
            }
        };
        let length = length.unwrap_or(expected);
        if length != expected {
            return Err(format!("its external data has {length} bytes, its shape and type need {expected}"));
        }
        let file_len = file.map.len();
        if offset.checked_add(length).is_none_or(|end| end > file_len) {
            return Err(format!(
                "its external data (bytes {offset}..{}) runs past the end of {} ({file_len} bytes); the file is truncated",
                offset.saturating_add(length),
                real.display()
            ));
        }
        Ok((file, offset, length))
    }
}

/// A decoded initializer or constant: its element type, shape and where its values are.
pub struct Loaded {
    pub elem: Elem,
    pub shape: Vec<usize>,
    pub data: LoadedData,
}

pub enum LoadedData {
    /// A float tensor that stays in its file (f32, f16 or bf16 bytes), read only when the bundle is written.
    Weight(Weight),
    /// int8 values, kept compact: int8 tensors are usually quantized weights.
    Int8(Vec<i8>),
    Values(Values),
}

/// Reads a TensorProto. `model` is the model's memory map (raw_data slices point into it).
pub fn load(t: &TensorProto, model: &Arc<MappedFile>, external: &mut ExternalFiles) -> Result<Loaded, String> {
    let elem = Elem(t.data_type);
    let shape: Vec<usize> =
        t.dims.iter().map(|&d| usize::try_from(d).map_err(|_| format!("has a negative dimension {d}"))).collect::<Result<_, _>>()?;
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("has more elements than fit in memory")?;
    elem.dtype()?;
    let bits = elem.bits().ok_or_else(|| format!("element type {} is not supported", elem.name()))?;
    let expected = numel.checked_mul(bits).ok_or("has more elements than fit in memory")?.div_ceil(8);
    let raw: Option<(Arc<MappedFile>, usize, usize)> = if t.data_location == 1 {
        Some(external.bytes(t, expected)?)
    } else if !t.raw_data.is_empty() {
        if t.raw_data.len() != expected {
            return Err(format!("has {} bytes of raw_data, its shape and type need {expected}", t.raw_data.len()));
        }
        let offset = t.raw_data.as_ptr() as usize - model.map.as_ptr() as usize;
        Some((model.clone(), offset, expected))
    } else {
        None
    };
    let data = match raw {
        Some((file, offset, len)) => {
            let dtype = match elem.0 {
                1 => Some(DType::F32),
                10 => Some(DType::F16),
                16 => Some(DType::BF16),
                _ => None,
            };
            match dtype {
                Some(dtype) => LoadedData::Weight(Weight {
                    name: t.name.clone(),
                    dtype,
                    shape: shape.iter().map(|&d| d as u64).collect(),
                    data: WeightData::Mapped { file, offset, len },
                }),
                None if elem == Elem::INT8 => LoadedData::Int8(file.map[offset..offset + len].iter().map(|&b| b as i8).collect()),
                None => LoadedData::Values(from_raw(elem, &file.map[offset..offset + len], numel)),
            }
        }
        None => LoadedData::Values(from_fields(t, elem, numel)?),
    };
    Ok(Loaded { elem, shape, data })
}

fn from_raw(elem: Elem, b: &[u8], numel: usize) -> Values {
    if elem.packed() {
        return packed(elem, b, numel);
    }
    let ints = |v: Vec<i64>| Values::Int(v.into_iter().map(int_dim).collect());
    match elem.0 {
        11 => Values::F32(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()),
        2 | 9 => ints(b.iter().map(|&x| x as i64).collect()),
        3 => ints(b.iter().map(|&x| x as i8 as i64).collect()),
        4 => ints(b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect()),
        5 => ints(b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect()),
        6 => ints(b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect()),
        12 => ints(b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64).collect()),
        7 | 13 => ints(b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
        1 => Values::F32(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
        10 => Values::F32(b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        16 => Values::F32(b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        _ => unreachable!("elem.bits() admits only these types"),
    }
}

/// The `numel` values of a packed type (`Elem::packed`) from its bytes.
fn packed(elem: Elem, b: &[u8], numel: usize) -> Values {
    let bits = elem.bits().expect("a packed type has a width");
    let fields = (0..numel).map(|i| (b[i * bits / 8] as u32 >> (i * bits % 8)) & ((1 << bits) - 1));
    match elem.narrow_float(ScaleRounding::Up).map(|f| f.layout()) {
        None => Values::Int(fields.map(|p| int_dim(elem.wrap_int(p as i64))).collect()),
        Some(Some(layout)) => Values::F32(fields.map(|p| small_float(layout, p)).collect()),
        // E8M0: 2^(p − 127), with 2^−127 a subnormal f32; 255 is NaN.
        Some(None) => Values::F32(fields.map(|p| f32::from_bits(match p { 255 => 0x7fc0_0000, 0 => 0x0040_0000, e => e << 23 })).collect()),
    }
}

/// The value of bit pattern `p` of a sign-exponent-mantissa format. The patterns a format spends on NaN are those
/// whose value would exceed its largest (infinity, where it has one, with a zero mantissa), and −0 where it has none.
fn small_float(layout: FloatLayout, p: u32) -> f32 {
    let (e_bits, m_bits) = (layout.exponent_bits, layout.mantissa_bits);
    let negative = (p >> (e_bits + m_bits)) & 1 == 1;
    let (e, m) = ((p >> m_bits) & ((1 << e_bits) - 1), p & ((1 << m_bits) - 1));
    let magnitude = match e {
        0 => m as f32 * 2f32.powi(layout.min_exponent() - m_bits as i32),
        _ => (1.0 + m as f32 / (1 << m_bits) as f32) * 2f32.powi(e as i32 - layout.bias),
    };
    let value = if magnitude > layout.max {
        if layout.infinity && m == 0 { f32::INFINITY } else { f32::NAN }
    } else if negative && magnitude == 0.0 && !layout.negative_zero {
        f32::NAN
    } else {
        magnitude
    };
    if negative { -value } else { value }
}

fn from_fields(t: &TensorProto, elem: Elem, numel: usize) -> Result<Values, String> {
    if elem.packed() {
        let bytes: Vec<u8> = t.int32_data.iter().map(|&x| x as u8).collect();
        if bytes.len() != (numel * elem.bits().unwrap_or(8)).div_ceil(8) {
            return Err(format!("holds {} bytes of {} values, its shape needs {numel} values", bytes.len(), elem.name()));
        }
        return Ok(packed(elem, &bytes, numel));
    }
    let values = match elem.0 {
        1 => Values::F32(t.float_data.clone()),
        11 => Values::F32(t.double_data.iter().map(|&x| x as f32).collect()),
        10 => Values::F32(t.int32_data.iter().map(|&x| half::f16::from_bits(x as u16).to_f32()).collect()),
        16 => Values::F32(t.int32_data.iter().map(|&x| half::bf16::from_bits(x as u16).to_f32()).collect()),
        7 => Values::Int(t.int64_data.iter().map(|&x| int_dim(x)).collect()),
        13 => Values::Int(t.uint64_data.iter().map(|&x| int_dim(x as i64)).collect()),
        _ => Values::Int(t.int32_data.iter().map(|&x| int_dim(elem.wrap_int(x as i64))).collect()),
    };
    let len = match &values {
        Values::F32(v) => v.len(),
        Values::Int(v) => v.len(),
    };
    if len != numel {
        return Err(format!("holds {len} values, its shape needs {numel}"));
    }
    Ok(values)
}

/// An integer as a (constant) dimension; shape arithmetic keeps integers symbolic.
pub fn int_dim(x: i64) -> Dim {
    // i64::MIN (ONNX's "from the very start" in Slice) has no positive counterpart; one more is as good.
    let x = x.max(-i64::MAX);
    if x >= 0 { Dim::from(x as u64) } else { &Dim::from(0u64) - &Dim::from(x.unsigned_abs()) }
}

/// The integer a dimension holds, if it has no symbols.
pub fn dim_int(d: &Dim) -> Option<i64> {
    d.as_const().map(|v| v as i64).or_else(|| (&Dim::from(0u64) - d).as_const().map(|v| -(v as i64)))
}
