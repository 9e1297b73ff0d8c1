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

/// The JS runtime's ES modules (runtime/js/src) in dependency order; the last is the entry point.
const RUNTIME_MODULES: [&str; 8] = [
    include_str!("../../runtime/js/src/errors.js"),
    include_str!("../../runtime/js/src/loader.js"),
    include_str!("../../runtime/js/src/manifest.js"),
    include_str!("../../runtime/js/src/generate.js"),
    include_str!("../../runtime/js/src/tokenizer.js"),
    include_str!("../../runtime/js/src/wasm-backend.js"),
    include_str!("../../runtime/js/src/webgpu.js"),
    include_str!("../../runtime/js/src/tfc.js"),
];

/// The runtime as the one module a page imports: the modules joined, their imports of each other dropped, and only
/// the entry point's exports kept. The modules import each other in single-line `import … from './x.js';`
/// statements only, and share one namespace of top-level names. Lines holding only a `//` comment are left out
/// (they are a sixth of the gzipped size; the sources in runtime/js/src keep them), which is safe because no
/// string literal in the sources spans lines.
pub fn runtime_js() -> String {
    let mut out = format!("// tfc.js of tfc {}: runtime/js/src joined into one ES module. Docs: docs/js-api.md\n", env!("CARGO_PKG_VERSION"));
    for (i, module) in RUNTIME_MODULES.iter().enumerate() {
        let entry = i + 1 == RUNTIME_MODULES.len();
        for line in module.lines().filter(|l| !l.starts_with("import ") && !l.trim_start().starts_with("//")) {
            out.push_str(if entry { line } else { line.strip_prefix("export ").unwrap_or(line) });
            out.push('\n');
        }
    }
    out
}

/// Writes what a bundle needs to run in a browser: `tfc.js`, its TypeScript declarations and the demo page.
pub fn write_web_files(staging: &Staging) -> Result<(), WriteError> {
    staging.write("tfc.js", runtime_js().as_bytes())?;
    staging.write("tfc.d.ts", include_bytes!("../../runtime/js/tfc.d.ts"))?;
    staging.write("index.html", include_bytes!("../../runtime/js/index.html"))
}

/// Packs the graph's weights into chunks of at most `chunk_size` bytes, streaming from the (memory-mapped) sources.
/// A chunk holds whole weights where they fit; a weight larger than a chunk is split over chunks of its own.
/// Chunk boundaries therefore follow weights, so a new model version that changes one weight changes few chunks.
/// Each weight is written in its bundle layout (`Weight::write_bundle_bytes`) and zero-padded to a multiple of 4
/// bytes (GPU copies need it). Returns the chunks and each weight's pieces; `progress` is called with (bytes done,
/// bytes total).
pub fn write_weights(
    staging: &Staging,
    graph: &Graph,
    chunk_size: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Vec<Chunk>, Vec<Vec<Piece>>), WriteError> {
    let chunk_size = (chunk_size / 4 * 4).max(4);
    let total: u64 = graph.weights.iter().map(|w| w.bundle_len()).sum();
    let mut chunks = Chunks { staging, chunk_size, done: Vec::new(), open: ChunkWriter::new(staging)?, written: 0 };
    let mut pieces: Vec<Vec<Piece>> = Vec::new();
    for w in &graph.weights {
        let padded = w.bundle_len();
        if chunks.open.len > 0 && chunks.open.len + padded.min(chunk_size) > chunk_size {
            chunks.next()?;
        }
        let mut mine = Vec::new();
        let start = chunks.written;
        w.write_bundle_bytes(|data| {
            chunks.append(data, &mut mine)?;
            progress(chunks.written, total);
            Ok::<(), WriteError>(())
        })?;
        let padding = padded - (chunks.written - start);
        chunks.append(&[0u8; 3][..padding as usize], &mut mine)?;
        pieces.push(mine);
    }
    progress(total, total);
    if chunks.open.len > 0 {
        chunks.next()?;
    } else {
        let _ = fs::remove_file(&chunks.open.path);
    }
    Ok((chunks.done, pieces))
}

/// The chunks written so far and the one being filled.
struct Chunks<'a> {
    staging: &'a Staging,
    chunk_size: u64,
    done: Vec<Chunk>,
    open: ChunkWriter,
    /// Weight bytes written in all.
    written: u64,
}

impl Chunks<'_> {
    /// Closes the open chunk and opens the next (in the same temporary file, so in this order).
    fn next(&mut self) -> Result<(), WriteError> {
        self.done.push(self.open.close()?);
        self.open = ChunkWriter::new(self.staging)?;
        Ok(())
    }

    /// Appends bytes of one weight, continuing its last piece or starting a piece in a new chunk.
    fn append(&mut self, mut data: &[u8], pieces: &mut Vec<Piece>) -> Result<(), WriteError> {
        while !data.is_empty() {
            if self.open.len == self.chunk_size {
                self.next()?;
            }
            let take = (data.len() as u64).min(self.chunk_size - self.open.len);
            match pieces.last_mut() {
                Some(p) if p.chunk == self.done.len() && p.offset + p.size == self.open.len => p.size += take,
                _ => pieces.push(Piece { chunk: self.done.len(), offset: self.open.len, size: take }),
            }
            self.open.append(&data[..take as usize])?;
            self.written += take;
            data = &data[take as usize..];
        }
        Ok(())
    }
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

    fn close(&mut self) -> Result<Chunk, WriteError> {
        let (path, len) = (self.path.clone(), self.len);
        self.file.flush().and_then(|()| self.file.get_ref().sync_all()).map_err(io_err(&path))?;
        let sha256 = hex(&std::mem::take(&mut self.hasher).finalize());
        let file = format!("weights/{sha256}.bin");
        let named = path.with_file_name(format!("{sha256}.bin"));
        fs::rename(&path, &named).map_err(io_err(&named))?;
        Ok(Chunk { file, size: len, sha256 })
    }
}

#[cfg(test)]
mod tests {
    /// `runtime_js` drops import lines whole, so an import must fit on one line and name a sibling module.
    #[test]
    fn runtime_modules_import_each_other_in_single_lines() {
        for module in super::RUNTIME_MODULES {
            for line in module.lines().filter(|l| l.trim_start().starts_with("import ")) {
                assert!(line.starts_with("import {") && line.contains("} from './") && line.ends_with(".js';"), "{line}");
            }
        }
    }
}
