use crate::{Result, RuntimeError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tfc_ir::manifest::Manifest;

/// A bundle folder with its parsed manifest. Files are read on demand.
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Bundle {
    pub fn open(dir: &Path) -> Result<Bundle> {
        let path = dir.join("manifest.json");
        let text = read(&path)?;
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|e| RuntimeError::Bundle { path: path.display().to_string(), message: format!("invalid manifest: {e}") })?;
        manifest.check().map_err(|message| RuntimeError::Bundle { path: path.display().to_string(), message })?;
        Ok(Bundle { dir: dir.to_path_buf(), manifest })
    }

    pub fn shader_source(&self, index: usize) -> Result<String> {
        let path = self.dir.join(&self.manifest.shaders[index].file);
        String::from_utf8(read(&path)?)
            .map_err(|_| RuntimeError::Bundle { path: path.display().to_string(), message: "shader is not UTF-8".into() })
    }

    /// The bytes of a weight chunk, checked against the manifest's size and sha256.
    pub fn read_chunk(&self, index: usize) -> Result<Vec<u8>> {
        let chunk = &self.manifest.chunks[index];
        let bytes = read(&self.dir.join(&chunk.file))?;
        let actual = hex(&Sha256::digest(&bytes));
        if bytes.len() as u64 != chunk.size || actual != chunk.sha256 {
            return Err(RuntimeError::Integrity { file: chunk.file.clone(), expected: chunk.sha256.clone(), actual });
        }
        Ok(bytes)
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| RuntimeError::Io { path: path.display().to_string(), source })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
