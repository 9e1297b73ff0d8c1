//! The GGUF container (versions 2 and 3): header, metadata of every value type, tensor infos and the aligned data
//! section, read from a memory map. Tensors stay byte ranges of the map.
//!
//! Every count and length in the file is checked against the bytes that remain before anything is allocated or
//! read, so a truncated or hostile file is a one-line error naming the file and what is wrong, never a panic or an
//! allocation sized by a lie. Layout facts: ggml's `docs/gguf.md` and `gguf.h`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tfc_ir::{DType, MappedFile};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Nested arrays deeper than this are refused (GGUF files in use nest at most one level).
const MAX_ARRAY_DEPTH: usize = 4;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct GgufError {
    pub path: PathBuf,
    pub message: String,
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(a) => write!(f, "an array of {} values", a.len()),
            Value::Bool(b) => write!(f, "{b}"),
            other => match other.as_u64() {
                Some(v) => write!(f, "{v}"),
                None => write!(f, "{:?}", other.as_f64().unwrap_or(f64::NAN)),
            },
        }
    }
}

/// One tensor: its ggml dimensions (`dims[0]` innermost), type and bytes in the map.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Absolute byte range in the file.
    pub offset: usize,
    pub len: usize,
}

impl TensorInfo {
    /// The shape in tfc's order (row-major: the last axis is ggml's innermost).
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }
}

pub struct GgufFile {
    pub map: Arc<MappedFile>,
    pub version: u32,
    pub alignment: u64,
    pub metadata: BTreeMap<String, Value>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
}

/// The tfc dtype of a ggml type id, or the type's name when tfc does not read it.
fn dtype_of(ggml_type: u32) -> Result<DType, String> {
    Ok(match ggml_type {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::Q4_0,
        3 => DType::Q4_1,
        6 => DType::Q5_0,
        7 => DType::Q5_1,
        8 => DType::Q8_0,
        10 => DType::Q2_K,
        11 => DType::Q3_K,
        12 => DType::Q4_K,
        13 => DType::Q5_K,
        14 => DType::Q6_K,
        30 => DType::BF16,
        other => {
            let known = [
                (9, "Q8_1"), (15, "Q8_K"), (16, "IQ2_XXS"), (17, "IQ2_XS"), (18, "IQ3_XXS"), (19, "IQ1_S"),
                (20, "IQ4_NL"), (21, "IQ3_S"), (22, "IQ2_S"), (23, "IQ4_XS"), (24, "I8"), (25, "I16"), (26, "I32"),
                (27, "I64"), (28, "F64"), (29, "IQ1_M"), (34, "TQ1_0"), (35, "TQ2_0"), (39, "MXFP4"),
            ];
            return Err(match known.iter().find(|(id, _)| *id == other) {
                Some((_, name)) => format!("ggml type {other} ({name})"),
                None => format!("unknown ggml type {other}"),
            });
        }
    })
}

/// The types [`GgufFile::open`] accepts, for error messages.
const SUPPORTED_TYPES: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K";

/// Reads values from the map, every read bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "{what} at byte {} needs {n} bytes, but the file ends {} bytes later: it is truncated or corrupt",
                self.at,
                self.remaining()
            ));
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items of at least `min_size` bytes each, checked against what remains.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, String> {
        let n = self.u64(what)?;
        match usize::try_from(n) {
            Ok(n) if n.checked_mul(min_size).is_some_and(|b| b <= self.remaining()) => Ok(n),
            _ => Err(format!(
                "{what} is {n}, but only {} bytes remain, room for at most {} such items: the file is corrupt",
                self.remaining(),
                self.remaining() / min_size.max(1)
            )),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.count(1, &format!("the length of {what}"))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not valid UTF-8"))
    }

    fn value(&mut self, value_type: u32, key: &str, depth: usize) -> Result<Value, String> {
        let what = format!("the value of `{key}`");
        Ok(match value_type {
            0 => Value::U8(self.array::<1>(&what)?[0]),
            1 => Value::I8(self.array::<1>(&what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => Value::U32(self.u32(&what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => match self.array::<1>(&what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("{what} is a bool stored as {b}; only 0 and 1 are valid")),
            },
            8 => Value::String(self.string(&what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!("{what} nests arrays more than {MAX_ARRAY_DEPTH} deep"));
                }
                let element_type = self.u32(&what)?;
                let min_size = match element_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => return Err(format!("{what} is an array of unknown value type {other}")),
                };
                let n = self.count(min_size, &format!("the element count of `{key}`"))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(element_type, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            other => return Err(format!("`{key}` has unknown value type {other}; the file is corrupt or from a newer GGUF version")),
        })
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let error = |message: String| GgufError { path: path.to_path_buf(), message };
        let map = MappedFile::open(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let parsed = parse(&map.map).map_err(error)?;
        let (version, alignment, metadata, tensors) = parsed;
        Ok(GgufFile { map, version, alignment, metadata, tensors })
    }

    pub fn path(&self) -> &Path {
        &self.map.path
    }

    pub fn error(&self, message: impl Into<String>) -> GgufError {
        GgufError { path: self.path().to_path_buf(), message: message.into() }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

type Parsed = (u32, u64, BTreeMap<String, Value>, Vec<TensorInfo>);

fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4, "the magic number").ok() != Some(MAGIC.as_slice()) {
        return Err("not a GGUF file (it does not start with `GGUF`)".into());
    }
    let version = r.u32("the version")?;
    match version {
        2 | 3 => {}
        1 => return Err("GGUF version 1 is not supported (it predates 64-bit counts); convert the model again with a current llama.cpp".into()),
        v if v & 0xffff == 0 => return Err(format!("GGUF version {v:#x} looks byte-swapped: big-endian GGUF files are not supported")),
        v => return Err(format!("GGUF version {v} is not supported; tfc reads versions 2 and 3")),
    }
    // A tensor info takes at least 8 (name length) + 4 (dims) + 4 (type) + 8 (offset) bytes; a key-value pair 8 + 4.
    let tensor_count = r.count(24, "the tensor count")?;
    let kv_count = r.count(12, "the metadata count")?;

    let mut metadata = BTreeMap::new();
    for i in 0..kv_count {
        let key = r.string(&format!("metadata key {i}"))?;
        let value_type = r.u32(&format!("the type of `{key}`"))?;
        let value = r.value(value_type, &key, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(format!("metadata key `{key}` appears twice"));
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => *a as u64,
        Some(v) => return Err(format!("`general.alignment` is {v}; it must be a u32 power of two")),
    };

    let mut infos = Vec::new();
    for i in 0..tensor_count {
        let name = r.string(&format!("the name of tensor {i}"))?;
        let n_dims = r.u32(&format!("the rank of tensor `{name}`"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!("tensor `{name}` has {n_dims} dimensions; ggml tensors have 1 to {MAX_DIMS}"));
        }
        let dims = (0..n_dims).map(|_| r.u64(&format!("the dimensions of tensor `{name}`"))).collect::<Result<Vec<_>, _>>()?;
        let ggml_type = r.u32(&format!("the type of tensor `{name}`"))?;
        let offset = r.u64(&format!("the offset of tensor `{name}`"))?;
        infos.push((name, dims, ggml_type, offset));
    }
    let data_start = (r.at as u64).next_multiple_of(alignment);

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(infos.len());
    let mut names = std::collections::HashSet::new();
    for (name, dims, ggml_type, offset) in infos {
        if !names.insert(name.clone()) {
            return Err(format!("tensor `{name}` appears twice"));
        }
        let dtype = dtype_of(ggml_type)
            .map_err(|t| format!("tensor `{name}` is stored as {t}, which tfc does not read; it reads {SUPPORTED_TYPES}"))?;
        let numel = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        let block = dtype.block_elems() as u64;
        let Some(numel) = numel.filter(|_| dims[0].is_multiple_of(block) && dims.iter().all(|&d| d > 0)) else {
            return Err(format!("tensor `{name}` has dimensions {dims:?}, which {dtype} cannot store (rows of whole {block}-element blocks)"));
        };
        if !offset.is_multiple_of(alignment) {
            return Err(format!("tensor `{name}` starts at data offset {offset}, which is not a multiple of the alignment {alignment}"));
        }
        let len = dtype.bytes(numel);
        let (start, end) = (data_start.checked_add(offset), data_start.checked_add(offset).and_then(|s| s.checked_add(len)));
        match (start, end) {
            (Some(start), Some(end)) if end <= bytes.len() as u64 => {
                tensors.push(TensorInfo { name, dims, dtype, offset: start as usize, len: len as usize });
            }
            _ => {
                return Err(format!(
                    "tensor `{name}` ({dtype}, dimensions {dims:?}, {len} bytes at data offset {offset}) runs past the end of the file ({} bytes): the file is truncated",
                    bytes.len()
                ));
            }
        }
    }
    Ok((version, alignment, metadata, tensors))
}
