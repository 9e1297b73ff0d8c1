//! Weights: typed byte ranges of their source files (memory-mapped) or small owned buffers made by the compiler.

use crate::DType;
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Index of a weight in its graph's weight table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightId(pub usize);

#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub data: WeightData,
}

/// Where a weight's bytes live. Mapped data is only paged in when read, so a graph over a large model costs no
/// memory until the bundle writer streams it out.
#[derive(Clone)]
pub enum WeightData {
    Mapped { file: Arc<MappedFile>, offset: usize, len: usize },
    Owned(Arc<Vec<u8>>),
}

pub struct MappedFile {
    pub path: PathBuf,
    pub map: Mmap,
}

impl MappedFile {
    pub fn open(path: &Path) -> std::io::Result<Arc<MappedFile>> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only; tfc never writes model files, and a file changed under a running compile
        // can at worst produce wrong bytes, which the content hashes of the bundle then record faithfully.
        let map = unsafe { Mmap::map(&file)? };
        Ok(Arc::new(MappedFile { path: path.to_path_buf(), map }))
    }
}

impl std::fmt::Debug for WeightData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightData::Mapped { file, offset, len } => write!(f, "{}[{offset}..+{len}]", file.path.display()),
            WeightData::Owned(v) => write!(f, "owned({} bytes)", v.len()),
        }
    }
}

impl Weight {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            WeightData::Mapped { file, offset, len } => &file.map[*offset..*offset + *len],
            WeightData::Owned(v) => v,
        }
    }

    /// The length of the last axis, along which block formats store their blocks.
    pub fn row_len(&self) -> u64 {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Bytes of the weight in a bundle (docs/bundle-format.md), padded to a multiple of 4: its bytes as stored, or
    /// for a block format its rows in the bundle's layout.
    pub fn bundle_len(&self) -> u64 {
        let len = match crate::quant::BlockFormat::of(self.dtype) {
            Some(f) => (self.numel() / self.row_len()) * f.bundle_row_bytes(self.row_len() as usize) as u64,
            None => self.bytes().len() as u64,
        };
        len.next_multiple_of(4)
    }

    /// Passes the weight's bundle bytes (without the final padding) to `sink` in order, at most a few MiB at a
    /// time, so that a large weight is never repacked in memory at once.
    pub fn write_bundle_bytes<E>(&self, mut sink: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let Some(f) = crate::quant::BlockFormat::of(self.dtype) else { return sink(self.bytes()) };
        let row_bytes = self.dtype.bytes(self.row_len()) as usize;
        let rows_per_batch = ((4 << 20) / row_bytes.max(1)).max(1);
        let mut packed = Vec::new();
        for batch in self.bytes().chunks(rows_per_batch * row_bytes) {
            packed.clear();
            for row in batch.chunks_exact(row_bytes) {
                f.repack_row(row, &mut packed);
            }
            sink(&packed)?;
        }
        Ok(())
    }

    /// Rows `start..end` of the first axis, as a view of the same bytes where the data is mapped.
    pub fn slice_rows(&self, start: u64, end: u64) -> Weight {
        assert!(start < end && end <= self.shape[0], "rows {start}..{end} of {} with shape {:?}", self.name, self.shape);
        let row_bytes = self.dtype.bytes(self.numel() / self.shape[0]) as usize;
        let (from, len) = (start as usize * row_bytes, (end - start) as usize * row_bytes);
        let data = match &self.data {
            WeightData::Mapped { file, offset, .. } => WeightData::Mapped { file: file.clone(), offset: offset + from, len },
            WeightData::Owned(v) => WeightData::Owned(Arc::new(v[from..from + len].to_vec())),
        };
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Weight { name: format!("{}[{start}:{end}]", self.name), dtype: self.dtype, shape, data }
    }

    /// A small weight built from f32 values (constants the compiler creates, e.g. RoPE frequencies).
    pub fn from_f32(name: &str, shape: Vec<u64>, values: &[f32]) -> Weight {
        assert_eq!(shape.iter().product::<u64>() as usize, values.len(), "shape does not match the values of {name}");
        Weight {
            name: name.to_string(),
            dtype: DType::F32,
            shape,
            data: WeightData::Owned(Arc::new(bytemuck::cast_slice(values).to_vec())),
        }
    }

    /// The values widened to f32 (reads the whole weight: for the interpreter and tests, not the bundle writer).
    pub fn to_f32(&self) -> Vec<f32> {
        let b = self.bytes();
        match self.dtype {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            DType::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            block => {
                let mut values = Vec::with_capacity(self.numel() as usize);
                crate::quant::BlockFormat::of(block).expect("a block format").decode(b, &mut values);
                values
            }
        }
    }
}
