//! The tensors of a checkpoint: one `model.safetensors` or the shards named by `model.safetensors.index.json`, each
//! memory-mapped, or the tensors of a GGUF file under transformers' names. Only the headers are parsed; weights are
//! byte ranges of the maps.

use super::ImportError;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tfc_ir::{DType, MappedFile, Weight, WeightData};

pub(crate) struct Checkpoint {
    files: Vec<Arc<MappedFile>>,
    tensors: HashMap<String, Entry>,
    /// Whether the rows of the query and key projections pair rotary features as (2i, 2i+1) (llama.cpp's GGUF
    /// layout) rather than transformers' (i, i + d/2).
    pub interleaved_rotary_pairs: bool,
    /// Whether Gemma's RMSNorm weights are stored as 1 + w (llama.cpp's converter adds the one) rather than w.
    pub norms_include_one: bool,
    /// Whether GPT-2's `Conv1D` weights are stored `[out, in]` like linear layers (llama.cpp's converter transposes
    /// them) rather than `[in, out]`.
    pub conv1d_transposed: bool,
}

pub(crate) struct Entry {
    /// The tensor's name in its file.
    pub source_name: String,
    pub file: usize,
    /// The dtype, or the name of a storage type tfc does not read.
    pub dtype: Result<DType, String>,
    pub shape: Vec<u64>,
    /// Absolute byte range in the file.
    pub offset: usize,
    pub len: usize,
}

const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Checkpoint, ImportError> {
        let paths = if dir.join(SINGLE).is_file() {
            vec![dir.join(SINGLE)]
        } else if dir.join(INDEX).is_file() {
            shard_paths(dir)?
        } else {
            return Err(ImportError::Io {
                path: dir.join(SINGLE),
                source: std::io::ErrorKind::NotFound.into(),
                hint: "tfc reads safetensors weights (model.safetensors or model.safetensors.index.json with its \
                       shards); convert PyTorch .bin checkpoints to safetensors first",
            });
        };
        let mut checkpoint =
            Checkpoint {
            files: Vec::new(),
            tensors: HashMap::new(),
            interleaved_rotary_pairs: false,
            norms_include_one: false,
            conv1d_transposed: false,
        };
        for path in paths {
            checkpoint.add_file(&path)?;
        }
        Ok(checkpoint)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), ImportError> {
        let file = MappedFile::open(path).map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
            hint: "the checkpoint is incomplete, download it again",
        })?;
        // `read_metadata` checks that the header is well formed and that the tensors exactly cover the rest of the
        // file, so every range below lies inside the map.
        let (header_len, metadata) = SafeTensors::read_metadata(&file.map)
            .map_err(|e| ImportError::Safetensors { file: path.to_path_buf(), reason: e.to_string() })?;
        let index = self.files.len();
        for (name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            let dtype = match info.dtype {
                Dtype::F32 => Ok(DType::F32),
                Dtype::F16 => Ok(DType::F16),
                Dtype::BF16 => Ok(DType::BF16),
                other => Err(format!("{other:?}")),
            };
            let entry = Entry {
                source_name: name.clone(),
                file: index,
                dtype,
                shape: info.shape.iter().map(|&d| d as u64).collect(),
                offset: 8 + header_len + start,
                len: end - start,
            };
            self.tensors.entry(name).or_insert(entry);
        }
        self.files.push(file);
        Ok(())
    }

    /// A checkpoint of already parsed tensors (by the name the importers look up) in one mapped file, with the
    /// conventions of llama.cpp's converter for `architecture`: the query and key rows of `llama` models are
    /// reordered so that rotary pairs are adjacent, Gemma's norms include their one, GPT-2's matrices are transposed.
    pub fn from_gguf_entries(file: Arc<MappedFile>, tensors: HashMap<String, Entry>, architecture: &str) -> Checkpoint {
        Checkpoint {
            files: vec![file],
            tensors,
            interleaved_rotary_pairs: architecture == "llama",
            norms_include_one: architecture == "gemma3",
            conv1d_transposed: architecture == "gpt2",
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn searched(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }

    /// The tensor `name` as a mapped weight, checked against the shape the config implies.
    pub fn weight(&self, name: &str, expected: &[u64]) -> Result<Weight, ImportError> {
        self.weight_from_row(name, expected, 0)
    }

    /// Like [`Checkpoint::weight`], without the first `first` rows (a narrower byte range of the same file);
    /// `first` must be less than the expected number of rows.
    pub fn weight_from_row(&self, name: &str, expected: &[u64], first: u64) -> Result<Weight, ImportError> {
        let entry = self
            .tensors
            .get(name)
            .ok_or_else(|| ImportError::MissingTensor { names: vec![name.to_string()], searched: self.searched() })?;
        let file = &self.files[entry.file];
        let dtype = entry.dtype.clone().map_err(|dtype| ImportError::Dtype {
            file: file.path.clone(),
            name: entry.source_name.clone(),
            dtype,
        })?;
        if entry.shape != expected {
            return Err(ImportError::Shape {
                file: file.path.clone(),
                name: entry.source_name.clone(),
                expected: expected.to_vec(),
                actual: entry.shape.clone(),
            });
        }
        let weight = Weight {
            name: entry.source_name.clone(),
            dtype,
            shape: entry.shape.clone(),
            data: WeightData::Mapped { file: file.clone(), offset: entry.offset, len: entry.len },
        };
        Ok(if first > 0 { weight.slice_rows(first, weight.shape[0]) } else { weight })
    }
}

/// The shard files named in the index's `weight_map`, in name order.
fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let index = dir.join(INDEX);
    let text = std::fs::read_to_string(&index).map_err(|source| ImportError::Io {
        path: index.clone(),
        source,
        hint: "the checkpoint is incomplete, download it again",
    })?;
    let bad = |message: &str| ImportError::Config {
        file: index.clone(),
        message: format!("{message}; restore the checkpoint's original index file"),
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&format!("is not valid JSON ({e})")))?;
    let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| bad("has no `weight_map` object"))?;
    let shards: BTreeSet<&str> = map
        .values()
        .map(|v| v.as_str().ok_or_else(|| bad("`weight_map` must map tensor names to file names")))
        .collect::<Result<_, _>>()?;
    if shards.is_empty() {
        return Err(bad("`weight_map` is empty"));
    }
    Ok(shards.into_iter().map(|s| dir.join(s)).collect())
}
