//! Writes a bundle folder: weight chunks named by their sha256, shaders, the tokenizer and `manifest.json`.
//! Everything goes into a temporary sibling folder that replaces the output only once complete.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tfc_ir::Graph;
use tfc_ir::manifest::{Chunk, Piece};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0} exists and is not a tfc bundle; choose another output folder or remove it")]
    NotABundle(String),
}

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io { path: path.display().to_string(), source }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A bundle being written in a temporary folder. Dropping it without `finish` removes the folder.
pub struct Staging {
    pub dir: PathBuf,
    target: PathBuf,
    finished: bool,
}

impl Staging {
    pub fn new(target: &Path) -> Result<Staging, WriteError> {
        if target.exists() && !target.join("manifest.json").is_file() && fs::read_dir(target).map_err(io_err(target))?.next().is_some() {
            return Err(WriteError::NotABundle(target.display().to_string()));
        }
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
        let dir = target.with_file_name(format!(".{name}.tfc-partial-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        for sub in ["", "weights", "shaders"] {
            fs::create_dir_all(dir.join(sub)).map_err(io_err(&dir))?;
        }
        Ok(Staging { dir, target: target.to_path_buf(), finished: false })
    }

    pub fn write(&self, relative: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let path = self.dir.join(relative);
        fs::write(&path, bytes).map_err(io_err(&path))
    }

    /// Moves the finished bundle into place, replacing an older bundle there.
    pub fn finish(mut self) -> Result<(), WriteError> {
        if self.target.exists() {
            fs::remove_dir_all(&self.target).map_err(io_err(&self.target))?;
        }
        fs::rename(&self.dir, &self.target).map_err(io_err(&self.target))?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Packs the graph's weights into chunks of at most `chunk_size` bytes, streaming from the (memory-mapped) sources.
/// A chunk holds whole weights where they fit; a weight larger than a chunk is split over chunks of its own.
/// Chunk boundaries therefore follow weights, so a new model version that changes one weight changes few chunks.
/// Each weight is zero-padded to a multiple of 4 bytes (GPU copies need it). Returns the chunks and each weight's
/// pieces; `progress` is called with (bytes done, bytes total).
pub fn write_weights(
    staging: &Staging,
    graph: &Graph,
    chunk_size: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Vec<Chunk>, Vec<Vec<Piece>>), WriteError> {
    let chunk_size = (chunk_size / 4 * 4).max(4);
    let total: u64 = graph.weights.iter().map(|w| (w.bytes().len() as u64).next_multiple_of(4)).sum();
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut pieces: Vec<Vec<Piece>> = Vec::new();
    let mut open = ChunkWriter::new(staging)?;
    let mut done = 0u64;
    for w in &graph.weights {
        let bytes = w.bytes();
        let padded = (bytes.len() as u64).next_multiple_of(4);
        if open.len > 0 && open.len + padded.min(chunk_size) > chunk_size {
            chunks.push(open.close()?);
            open = ChunkWriter::new(staging)?;
        }
        let mut mine = Vec::new();
        let mut at = 0u64;
        while at < padded {
            if open.len == chunk_size {
                chunks.push(open.close()?);
                open = ChunkWriter::new(staging)?;
            }
            let take = (padded - at).min(chunk_size - open.len);
            let data = &bytes[(at as usize).min(bytes.len())..((at + take) as usize).min(bytes.len())];
            mine.push(Piece { chunk: chunks.len(), offset: open.len, size: take });
            open.append(data)?;
            open.append(&[0u8; 3][..take as usize - data.len()])?;
            at += take;
            done += take;
            progress(done, total);
        }
        pieces.push(mine);
    }
    if open.len > 0 {
        chunks.push(open.close()?);
    } else {
        let _ = fs::remove_file(&open.path);
    }
    Ok((chunks, pieces))
}

/// The chunk being filled: hashed while written to a temporary file, renamed to `<sha256>.bin` when closed.
struct ChunkWriter {
    file: BufWriter<File>,
    path: PathBuf,
    hasher: Sha256,
    len: u64,
}

impl ChunkWriter {
    fn new(staging: &Staging) -> Result<ChunkWriter, WriteError> {
        let path = staging.dir.join("weights/open-chunk.tmp");
        let file = BufWriter::new(File::create(&path).map_err(io_err(&path))?);
        Ok(ChunkWriter { file, path, hasher: Sha256::new(), len: 0 })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.hasher.update(bytes);
        self.file.write_all(bytes).map_err(io_err(&self.path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn close(self) -> Result<Chunk, WriteError> {
        let ChunkWriter { file, path, hasher, len } = self;
        file.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).map_err(io_err(&path))?;
        let sha256 = hex(&hasher.finalize());
        let file = format!("weights/{sha256}.bin");
        let named = path.with_file_name(format!("{sha256}.bin"));
        fs::rename(&path, &named).map_err(io_err(&named))?;
        Ok(Chunk { file, size: len, sha256 })
    }
}
