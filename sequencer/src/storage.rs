//! The small storage interface the file log, its manifest and the Raft
//! journal's metadata run over, so that tests (and later the deterministic
//! simulator) can put a disk with faults under them.
//!
//! [`OsStorage`] is the default and does exactly what the log did before
//! the interface existed: `std::fs`, `writev`, `fdatasync`, `flock`. The
//! hot path is one virtual call per `writev` and per `fdatasync`, nothing
//! more: a segment's [`AppendFile`] is shared as an `Arc`, so the group
//! commit still runs its fdatasync without the log's lock (and without the
//! `dup` the log used to make for it).
//!
//! `SimStorage` (in `storage::sim`, compiled for tests and with the
//! `sim` feature) keeps files in memory, tracks what is durable and what only
//! written, and can tear a write at any byte, lose or tear unsynced writes
//! on a crash, fail an fsync, corrupt a sector and misdirect a write.
//!
//! Paths are plain `Path`s: the file log joins names onto its directory,
//! and a storage takes them as given.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

/// A file opened for appending: every write goes at the end. Shared as an
/// `Arc` so that a sync can run while the owner goes on appending.
pub trait AppendFile: Send + Sync + fmt::Debug {
    /// One `writev` at the end of the file; returns the bytes written,
    /// which may be fewer than offered (see [`write_all_vectored`]).
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// `fdatasync`: the data written so far (and the length) is durable
    /// once this returns `Ok`.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: like [`AppendFile::sync_data`], with all metadata.
    fn sync_all(&self) -> io::Result<()>;
}

/// A file opened for reading, at offset 0.
pub trait ReadFile: Read + Seek + Send {
    /// The file's length now.
    fn len_bytes(&self) -> io::Result<u64>;
}

/// Held while a directory is in use; dropping it releases the lock.
#[derive(Debug)]
pub struct StorageLock {
    _held: Box<dyn fmt::Debug + Send + Sync>,
}

impl StorageLock {
    pub fn new(held: impl fmt::Debug + Send + Sync + 'static) -> StorageLock {
        StorageLock {
            _held: Box::new(held),
        }
    }
}

/// What the file log needs from a file system. Every method maps to one
/// or a few system calls of [`OsStorage`]; the durability rules are
/// POSIX's: data is durable after a sync of its file, a name (create,
/// rename, remove) after a sync of its directory.
pub trait Storage: Send + Sync + fmt::Debug {
    fn is_dir(&self, path: &Path) -> bool;
    /// Creates `path` and any missing parents (not synced: sync the parent
    /// of the new directory if its name must survive a crash).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries in `dir`, in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// Takes an exclusive lock on the file `path` (created if missing).
    /// `Ok(None)` if someone else holds it.
    fn lock(&self, path: &Path) -> io::Result<Option<StorageLock>>;
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>>;
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>>;
    /// Creates a file that must not exist yet.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>>;
    /// Creates a file, or empties an existing one.
    fn create_truncate(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>>;
    /// Cuts the file to `len` bytes and fsyncs it; returns the old length.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<u64>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsyncs the directory, making its names durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Replaces `path` with `bytes` atomically and durably: a crash leaves
    /// either the old file or the new one, never a mix. Writes
    /// `<name>.tmp` in the same directory, fsyncs it, renames it over
    /// `path` and fsyncs the directory. The one implementation of this
    /// dance in ordo: the manifest, `raft-meta`, Raft snapshots and
    /// `FAILED-SYNC` here, and through [`replace_file`] every other file
    /// that is replaced whole.
    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let temporary = temporary_path(path);
        let file = self.create_truncate(&temporary)?;
        write_all_vectored(&*file, &mut [IoSlice::new(bytes)])?;
        file.sync_all()?;
        drop(file);
        self.rename(&temporary, path)?;
        self.sync_dir(parent_dir(path))
    }
}

/// [`Storage::replace`] on the real file system, for files that do not live
/// behind a [`Storage`]: the node's `engine-config.json`, a backup's
/// `BACKUP.json`, the compiled-code cache, the `lost-entries` marker.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    OsStorage.replace(path, bytes)
}

/// `<path>.tmp`, where [`Storage::replace`] writes before renaming.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes all of `bufs`, in as few `writev` calls as the file allows.
pub fn write_all_vectored(file: &dyn AppendFile, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "writev wrote nothing",
                ));
            }
            Ok(written) => IoSlice::advance_slices(&mut bufs, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsStorage;

impl OsStorage {
    /// The shared default.
    pub fn shared() -> Arc<dyn Storage> {
        Arc::new(OsStorage)
    }
}

/// A file opened with its write offset at the end; appends go through it
/// (`&File` implements `Write`, so no lock is needed for the shared
/// handle).
#[derive(Debug)]
struct OsFile(File);

impl AppendFile for OsFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.0).write_vectored(bufs)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl ReadFile for File {
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl Storage for OsStorage {
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect()
    }

    fn lock(&self, path: &Path) -> io::Result<Option<StorageLock>> {
        const LOCK_WAIT_MS: u64 = 1_000;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // A lock released a moment ago can still be held for a while: a
        // child process forked (by any thread of this process) before the
        // lock's file was closed holds a duplicate of its descriptor, and
        // with it the flock, until it execs. So a busy lock is tried again
        // for up to `LOCK_WAIT_MS` before it counts as held.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_WAIT_MS);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(StorageLock::new(file))),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(error)) => return Err(error),
            }
        }
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        Ok(Box::new(File::open(path)?))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(Arc::new(OsFile(file)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Arc::new(OsFile(file)))
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        Ok(Arc::new(OsFile(File::create(path)?)))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<u64> {
        let file = OpenOptions::new().write(true).open(path)?;
        let old_len = file.metadata()?.len();
        file.set_len(len)?;
        file.sync_all()?;
        Ok(old_len)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_replace_is_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        OsStorage.replace(&path, b"one").unwrap();
        OsStorage.replace(&path, b"two!").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two!");
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn os_append_file_appends_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, b"abc").unwrap();
        let file = OsStorage.open_append(&path).unwrap();
        write_all_vectored(&*file, &mut [IoSlice::new(b"de"), IoSlice::new(b"f")]).unwrap();
        file.sync_data().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abcdef");
        assert_eq!(OsStorage.truncate(&path, 2).unwrap(), 6);
        assert_eq!(OsStorage.read_file(&path).unwrap(), b"ab");
        assert!(OsStorage.lock(&dir.path().join("LOCK")).unwrap().is_some());
    }
}
