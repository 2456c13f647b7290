//! The on-disk cache of compiled modules, in `<data>/compiled/`: one file
//! per module, named by the wasm's SHA-256 and the compiler's
//! compatibility hash ([`ordo_engine::ArtifactKey::file_name`]), so that a
//! restart loads the machine code it made before instead of compiling
//! every deployed module again.
//!
//! The cache is this node's own artifact; replicas agree on the wasm bytes
//! in the log, never on these files. Its contents are untrusted: the
//! engine checks each file's framing and checksum before wasmtime sees it
//! and discards what fails (`ModuleCompiler::compile`). This store only
//! does the I/O: atomic writes (temporary file, fsync, rename, fsync of
//! the directory), a size bound, and deleting files the engine rejects.
//! An I/O error never fails a deploy or a start: it costs a compile.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ordo_engine::{ArtifactKey, ArtifactStore};
use ordo_sequencer::storage::{replace_file, temporary_path};

/// The cache's directory inside the data directory.
pub const COMPILE_CACHE_DIR: &str = "compiled";
/// Bytes the cache may hold on disk. Past it, the oldest files are deleted
/// to make room; a single artifact larger than this is not cached.
pub const COMPILE_CACHE_BYTES_MAX_DEFAULT: u64 = 1 << 30;

const ARTIFACT_EXTENSION: &str = "cwasm";
/// What `replace_file`'s temporary files end with (`<name>.cwasm.tmp`).
const TEMPORARY_EXTENSION: &str = "tmp";

/// A directory of compiled-code files, at most `bytes_max` bytes in all.
pub struct DiskArtifactStore {
    dir: PathBuf,
    bytes_max: u64,
}

impl DiskArtifactStore {
    /// Creates `dir` if needed and deletes temporary files a crash left
    /// behind (a rename never happened, so nothing refers to them).
    pub fn open(dir: PathBuf, bytes_max: u64) -> std::io::Result<DiskArtifactStore> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path
                .extension()
                .is_some_and(|ext| ext == TEMPORARY_EXTENSION)
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(DiskArtifactStore { dir, bytes_max })
    }

    fn path(&self, key: &ArtifactKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// Every cached file with its size and modification time.
    fn files(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let path = entry.path();
                if path.extension()? != ARTIFACT_EXTENSION {
                    return None;
                }
                let metadata = entry.metadata().ok()?;
                Some((path, metadata.len(), metadata.modified().ok()?))
            })
            .collect()
    }

    /// Deletes the oldest files until `incoming` more bytes fit, leaving
    /// `replacing` (the file about to be overwritten) out of the count.
    fn make_room(&self, incoming: u64, replacing: &Path) {
        let mut files: Vec<_> = self
            .files()
            .into_iter()
            .filter(|(path, _, _)| path != replacing)
            .collect();
        let mut total: u64 = files.iter().map(|(_, bytes, _)| bytes).sum();
        files.sort_by_key(|(_, _, modified)| *modified);
        for (path, bytes, _) in files {
            if total + incoming <= self.bytes_max {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= bytes;
            }
        }
    }

    /// `replace_file` (`<name>.tmp`, fsync, rename, directory fsync); a
    /// failed write leaves no temporary file behind.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let written = replace_file(path, bytes);
        if written.is_err() {
            let _ = std::fs::remove_file(temporary_path(path));
        }
        written
    }
}

impl ArtifactStore for DiskArtifactStore {
    fn load(&self, key: &ArtifactKey) -> Option<Vec<u8>> {
        let path = self.path(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(
                    "cannot open compiled-code cache file {}: {err}; compiling the module instead",
                    path.display()
                );
                return None;
            }
        };
        let bytes = file.metadata().ok()?.len();
        if bytes > self.bytes_max {
            self.discard(
                key,
                &format!(
                    "it is {bytes} bytes, more than the whole cache may hold ({})",
                    self.bytes_max
                ),
            );
            return None;
        }
        // Bounded by the size just checked, even if the file grows now.
        let mut contents = Vec::with_capacity(bytes as usize);
        match (&file).take(bytes).read_to_end(&mut contents) {
            Ok(_) => Some(contents),
            Err(err) => {
                tracing::warn!(
                    "cannot read compiled-code cache file {}: {err}; compiling the module instead",
                    path.display()
                );
                None
            }
        }
    }

    fn store(&self, key: &ArtifactKey, bytes: &[u8]) {
        let path = self.path(key);
        if bytes.len() as u64 > self.bytes_max {
            tracing::warn!(
                "compiled code for {} is {} bytes, more than the compiled-code cache may hold ({}); not cached, so every start compiles it",
                path.display(),
                bytes.len(),
                self.bytes_max
            );
            return;
        }
        self.make_room(bytes.len() as u64, &path);
        if let Err(err) = self.write_atomically(&path, bytes) {
            tracing::warn!(
                "cannot write compiled-code cache file {}: {err}; the next start compiles the module again",
                path.display()
            );
        }
    }

    fn discard(&self, key: &ArtifactKey, reason: &str) {
        let path = self.path(key);
        let _ = std::fs::remove_file(&path);
        tracing::warn!(
            "compiled-code cache file {} is unusable ({reason}): deleted it, compiling the module again",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ArtifactKey {
        ArtifactKey {
            wasm_sha256: [byte; 32],
            compatibility: 7,
        }
    }

    #[test]
    fn stores_loads_and_discards() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskArtifactStore::open(dir.path().join("c"), 1 << 20).unwrap();
        assert_eq!(store.load(&key(1)), None);
        store.store(&key(1), b"code");
        assert_eq!(store.load(&key(1)).as_deref(), Some(&b"code"[..]));
        store.discard(&key(1), "test");
        assert_eq!(store.load(&key(1)), None);
    }

    #[test]
    fn the_oldest_files_make_room_and_oversized_ones_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskArtifactStore::open(dir.path().to_path_buf(), 100).unwrap();
        store.store(&key(1), &[1; 60]);
        // Modification times must differ for "oldest" to mean something.
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(store.path(&key(1)))
            .unwrap()
            .set_modified(old)
            .unwrap();
        store.store(&key(2), &[2; 30]);
        store.store(&key(3), &[3; 30]);
        assert_eq!(store.load(&key(1)), None, "the oldest file went");
        assert!(store.load(&key(2)).is_some());
        assert!(store.load(&key(3)).is_some());
        store.store(&key(4), &[4; 101]);
        assert_eq!(store.load(&key(4)), None);
        let total: u64 = store.files().iter().map(|(_, bytes, _)| bytes).sum();
        assert!(total <= 100, "{total} bytes on disk");
    }

    #[test]
    fn leftover_temporary_files_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join("x.tmp");
        std::fs::write(&leftover, b"half").unwrap();
        DiskArtifactStore::open(dir.path().to_path_buf(), 100).unwrap();
        assert!(!leftover.exists());
    }
}
