//! `SimStorage`: an in-memory disk for tests and the deterministic
//! simulator, with the faults real disks have.
//!
//! Each file keeps two versions: what reads see (the page cache) and what
//! is durable (the platter), plus the writes in between, oldest first. A
//! sync moves those writes into the durable version; a crash throws the
//! page cache away and keeps only the durable version, or a prefix of the
//! unsynced writes on top of it ([`SimStorage::crash_keeping_unsynced`],
//! [`SimStorage::crash_randomly`]). Names follow the same rule per
//! directory: a create, rename or remove is durable once its directory is
//! synced. Directories themselves are durable as soon as they are created
//! (a simplification: nothing here depends on losing a new directory).
//!
//! Faults are armed one at a time and fire once, on the next matching
//! operation: [`SimStorage::fail_next_sync`] (EIO, and the writes it was
//! meant to persist are dropped, as Linux does: a retried fsync then
//! "succeeds" without them, the fsyncgate lesson),
//! [`SimStorage::tear_next_write`] (only a prefix reaches the file, then
//! EIO), [`SimStorage::misdirect_next_write`] (the bytes land at another
//! offset and the write reports success), and
//! [`SimStorage::fail_next_dir_sync`]. [`SimStorage::corrupt`] and
//! [`SimStorage::corrupt_sector`] rot bytes already on the medium.
//!
//! Everything is deterministic: state lives in ordered maps, and the only
//! randomness (garbage for corrupted bytes, how much a random crash keeps)
//! comes from the seed given to [`SimStorage::new`]. A clone is a handle on
//! the same disk. Handles (open files, locks) from before a crash fail
//! every operation afterwards with an error: the process that held them
//! is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{self, IoSlice, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{AppendFile, ReadFile, Storage, StorageLock};

/// The size [`SimStorage::corrupt_sector`] rots at once.
pub const SECTOR_BYTES: u64 = 512;

/// An in-memory disk. See the module docs.
#[derive(Clone)]
pub struct SimStorage {
    state: Arc<Mutex<SimState>>,
}

/// Short: a `FileLog` prints its storage, and the disk's bytes would
/// drown any message.
impl std::fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("SimStorage")
            .field("files", &state.names.len())
            .field("crashes", &state.stats.crashes)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct SimState {
    rng: u64,
    /// Bumped by every crash; handles of an older epoch are dead.
    epoch: u64,
    dirs: BTreeSet<PathBuf>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    files: BTreeMap<u64, SimFile>,
    next_inode: u64,
    locks: BTreeSet<PathBuf>,
    faults: Vec<Fault>,
    stats: SimStats,
}

#[derive(Debug, Default)]
struct SimFile {
    /// What reads see.
    current: Arc<Vec<u8>>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Changes to `current` not yet in `durable`, oldest first.
    unsynced: Vec<Change>,
}

#[derive(Clone, Debug)]
enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// Counts of what the disk has been asked to do, for tests to check that
/// an operation did (or did not) reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub writes: u64,
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub crashes: u64,
}

#[derive(Clone, Debug)]
enum Fault {
    FailSync {
        path: Option<PathBuf>,
    },
    FailDirSync {
        dir: Option<PathBuf>,
    },
    TearWrite {
        path: Option<PathBuf>,
        keep_bytes: usize,
    },
    MisdirectWrite {
        path: Option<PathBuf>,
        offset: u64,
    },
}

impl Fault {
    fn matches_file(&self, file: &Path) -> bool {
        let wanted = match self {
            Fault::FailSync { path }
            | Fault::TearWrite { path, .. }
            | Fault::MisdirectWrite { path, .. } => path,
            Fault::FailDirSync { .. } => return false,
        };
        wanted.as_deref().is_none_or(|wanted| wanted == file)
    }
}

fn apply(bytes: &mut Vec<u8>, change: &Change) {
    match change {
        // A write of nothing does not extend the file, wherever it is.
        Change::Write { bytes: data, .. } if data.is_empty() => {}
        Change::Write {
            offset,
            bytes: data,
        } => {
            let offset = *offset as usize;
            if bytes.len() < offset + data.len() {
                bytes.resize(offset + data.len(), 0);
            }
            bytes[offset..offset + data.len()].copy_from_slice(data);
        }
        Change::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

fn injected(what: &str, path: &Path) -> io::Error {
    io::Error::other(format!(
        "simulated {what} failure on {} (injected fault)",
        path.display()
    ))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such simulated file", path.display()),
    )
}

fn parent_of(path: &Path) -> &Path {
    super::parent_dir(path)
}

impl SimState {
    /// SplitMix64: small, seedable, and good enough for garbage bytes.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn take_fault(&mut self, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let position = self.faults.iter().position(matches)?;
        Some(self.faults.remove(position))
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn file_mut(&mut self, inode: u64) -> &mut SimFile {
        self.files.get_mut(&inode).expect("a named inode exists")
    }

    fn create(&mut self, path: &Path, must_be_new: bool) -> io::Result<u64> {
        if !self.dirs.contains(parent_of(path)) {
            return Err(not_found(parent_of(path)));
        }
        if let Some(&inode) = self.names.get(path) {
            if must_be_new {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ));
            }
            let file = self.file_mut(inode);
            Arc::make_mut(&mut file.current).clear();
            file.unsynced.push(Change::SetLen(0));
            return Ok(inode);
        }
        let inode = self.next_inode;
        self.next_inode += 1;
        self.files.insert(inode, SimFile::default());
        self.names.insert(path.to_path_buf(), inode);
        Ok(inode)
    }

    fn sync_file(&mut self, inode: u64, path: &Path) -> io::Result<()> {
        self.stats.file_syncs += 1;
        let failed = self
            .take_fault(|fault| matches!(fault, Fault::FailSync { .. }) && fault.matches_file(path))
            .is_some();
        let file = self.file_mut(inode);
        let changes = std::mem::take(&mut file.unsynced);
        if failed {
            // Linux marks the pages clean after a failed writeback: they
            // stay readable but never reach the disk, and the next fsync
            // has nothing to report.
            return Err(injected("fsync", path));
        }
        for change in &changes {
            apply(&mut file.durable, change);
        }
        Ok(())
    }

    /// Drops the page cache and every unsynced name; `kept` says how many
    /// unsynced bytes of a file (by inode, with its total unsynced bytes)
    /// still reach the disk, in write order.
    fn crash(&mut self, mut kept: impl FnMut(&mut SimState, u64) -> Option<u64>) {
        self.stats.crashes += 1;
        self.epoch += 1;
        self.locks.clear();
        self.faults.clear();
        self.names = self.durable_names.clone();
        let inodes: Vec<u64> = self.files.keys().copied().collect();
        for inode in inodes {
            let budget = kept(self, inode);
            let file = self.file_mut(inode);
            let changes = std::mem::take(&mut file.unsynced);
            if let Some(mut budget) = budget {
                for change in &changes {
                    match change {
                        Change::Write { offset, bytes } => {
                            let take = (bytes.len() as u64).min(budget);
                            apply(
                                &mut file.durable,
                                &Change::Write {
                                    offset: *offset,
                                    bytes: bytes[..take as usize].to_vec(),
                                },
                            );
                            budget -= take;
                            if take < bytes.len() as u64 {
                                break;
                            }
                        }
                        Change::SetLen(_) => apply(&mut file.durable, change),
                    }
                }
            }
            file.current = Arc::new(file.durable.clone());
        }
        let named: BTreeSet<u64> = self.names.values().copied().collect();
        self.files.retain(|inode, _| named.contains(inode));
    }

    fn unsynced_bytes(&self, inode: u64) -> u64 {
        self.files[&inode]
            .unsynced
            .iter()
            .map(|change| match change {
                Change::Write { bytes, .. } => bytes.len() as u64,
                Change::SetLen(_) => 0,
            })
            .sum()
    }
}

impl SimStorage {
    /// An empty disk holding only the root directory `/`. `seed` drives
    /// every random choice the disk makes.
    pub fn new(seed: u64) -> SimStorage {
        SimStorage {
            state: Arc::new(Mutex::new(SimState {
                rng: seed,
                epoch: 0,
                dirs: BTreeSet::from([PathBuf::from("/"), PathBuf::from(".")]),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                files: BTreeMap::new(),
                next_inode: 1,
                locks: BTreeSet::new(),
                faults: Vec::new(),
                stats: SimStats::default(),
            })),
        }
    }

    /// This disk as the trait object the file log takes.
    pub fn shared(&self) -> Arc<dyn Storage> {
        Arc::new(self.clone())
    }

    /// The next fsync (file data, `sync_data` or `sync_all`) of `path`, or
    /// of any file if `None`, fails with EIO, and the writes it was to
    /// persist are dropped from the disk's future (they stay readable
    /// until a crash).
    pub fn fail_next_sync(&self, path: Option<&Path>) {
        self.state.lock().faults.push(Fault::FailSync {
            path: path.map(Path::to_path_buf),
        });
    }

    /// The next directory fsync of `dir` (or any) fails with EIO; the
    /// names in it stay unsynced.
    pub fn fail_next_dir_sync(&self, dir: Option<&Path>) {
        self.state.lock().faults.push(Fault::FailDirSync {
            dir: dir.map(Path::to_path_buf),
        });
    }

    /// The next write to `path` (or any file) puts only its first
    /// `keep_bytes` bytes in the file, then fails with EIO.
    pub fn tear_next_write(&self, path: Option<&Path>, keep_bytes: usize) {
        self.state.lock().faults.push(Fault::TearWrite {
            path: path.map(Path::to_path_buf),
            keep_bytes,
        });
    }

    /// The next write to `path` (or any file) lands at byte `offset`
    /// instead of the end of the file, and reports success.
    pub fn misdirect_next_write(&self, path: Option<&Path>, offset: u64) {
        self.state.lock().faults.push(Fault::MisdirectWrite {
            path: path.map(Path::to_path_buf),
            offset,
        });
    }

    /// Rots `len` bytes of `path` from `offset` (clipped to the file), on
    /// the medium and in the cache: every byte changes, to seeded garbage.
    pub fn corrupt(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        let inode = state.inode(path)?;
        let file_len = state.files[&inode].current.len() as u64;
        let end = (offset + len).min(file_len);
        for at in offset..end {
            // Non-zero, so the byte really changes.
            let flip = (state.next_random() % 255 + 1) as u8;
            let file = state.file_mut(inode);
            Arc::make_mut(&mut file.current)[at as usize] ^= flip;
            if let Some(byte) = file.durable.get_mut(at as usize) {
                *byte ^= flip;
            }
        }
        Ok(())
    }

    /// Rots sector `sector` ([`SECTOR_BYTES`] bytes) of `path`.
    pub fn corrupt_sector(&self, path: &Path, sector: u64) -> io::Result<()> {
        self.corrupt(path, sector * SECTOR_BYTES, SECTOR_BYTES)
    }

    /// The process dies and the machine loses power: every unsynced write
    /// and name is lost, and open handles and locks are gone.
    pub fn crash(&self) {
        self.state.lock().crash(|_, _| None);
    }

    /// Like [`SimStorage::crash`], except that the first `bytes` unsynced
    /// bytes written to `path` reach its disk first (in write order, the
    /// last one cut wherever the count ends): a torn write.
    pub fn crash_keeping_unsynced(&self, path: &Path, bytes: u64) {
        let mut state = self.state.lock();
        let target = state.names.get(path).copied();
        state.crash(|_, inode| (Some(inode) == target).then_some(bytes));
    }

    /// A crash where each file keeps a seeded random prefix of its
    /// unsynced writes, and each unsynced name change survives or not by
    /// a seeded coin.
    pub fn crash_randomly(&self) {
        let mut state = self.state.lock();
        let paths: BTreeSet<PathBuf> = state
            .names
            .keys()
            .chain(state.durable_names.keys())
            .cloned()
            .collect();
        for path in paths {
            let now = state.names.get(&path).copied();
            if now != state.durable_names.get(&path).copied()
                && state.next_random().is_multiple_of(2)
            {
                match now {
                    Some(inode) => state.durable_names.insert(path, inode),
                    None => state.durable_names.remove(&path),
                };
            }
        }
        state.crash(|state, inode| {
            let unsynced = state.unsynced_bytes(inode);
            Some(state.next_random() % (unsynced + 1))
        });
    }

    /// What a read of `path` sees now, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let inode = state.names.get(path)?;
        Some(state.files[inode].current.to_vec())
    }

    /// The bytes of `path` written but not yet synced.
    pub fn unsynced_bytes(&self, path: &Path) -> u64 {
        let state = self.state.lock();
        state
            .names
            .get(path)
            .map_or(0, |inode| state.unsynced_bytes(*inode))
    }

    /// Overwrites `path` (creating it) with `bytes`, durably: for setting
    /// up a disk by hand.
    pub fn put_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        let inode = state.create(path, false)?;
        let file = state.file_mut(inode);
        file.current = Arc::new(bytes.to_vec());
        file.durable = bytes.to_vec();
        file.unsynced.clear();
        state.durable_names.insert(path.to_path_buf(), inode);
        Ok(())
    }

    pub fn stats(&self) -> SimStats {
        self.state.lock().stats
    }
}

/// An open file of a [`SimStorage`].
struct SimHandle {
    state: Arc<Mutex<SimState>>,
    inode: u64,
    path: PathBuf,
    epoch: u64,
}

impl SimHandle {
    fn live<'a>(&self, state: &'a mut SimState) -> io::Result<&'a mut SimState> {
        if state.epoch != self.epoch || !state.files.contains_key(&self.inode) {
            return Err(io::Error::other(format!(
                "{}: the simulated process crashed; this handle is gone",
                self.path.display()
            )));
        }
        Ok(state)
    }
}

impl AppendFile for SimHandle {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut guard = self.state.lock();
        let state = self.live(&mut guard)?;
        state.stats.writes += 1;
        let mut bytes: Vec<u8> = bufs.iter().flat_map(|buf| buf.iter().copied()).collect();
        let total = bytes.len();
        let fault = state.take_fault(|fault| {
            matches!(
                fault,
                Fault::TearWrite { .. } | Fault::MisdirectWrite { .. }
            ) && fault.matches_file(&self.path)
        });
        let file = state.file_mut(self.inode);
        let mut offset = file.current.len() as u64;
        let mut torn = false;
        match fault {
            Some(Fault::TearWrite { keep_bytes, .. }) => {
                bytes.truncate(keep_bytes);
                torn = true;
            }
            Some(Fault::MisdirectWrite { offset: to, .. }) => offset = to,
            _ => {}
        }
        let change = Change::Write { offset, bytes };
        apply(Arc::make_mut(&mut file.current), &change);
        file.unsynced.push(change);
        if torn {
            return Err(injected("write", &self.path));
        }
        Ok(total)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut guard = self.state.lock();
        let state = self.live(&mut guard)?;
        state.sync_file(self.inode, &self.path)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}

/// A read handle: a snapshot of the file when it was opened (the file log
/// never reads a range that changes while it reads).
struct SimReader {
    bytes: io::Cursor<SharedBytes>,
}

struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Read for SimReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.bytes.read(buf)
    }
}

impl Seek for SimReader {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        self.bytes.seek(position)
    }
}

impl ReadFile for SimReader {
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.bytes.get_ref().0.len() as u64)
    }
}

/// The lock on a path, released on drop unless a crash already did.
struct SimLock {
    state: Arc<Mutex<SimState>>,
    path: PathBuf,
    epoch: u64,
}

// Both print their path only, not the disk they share.
impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimHandle({})", self.path.display())
    }
}

impl std::fmt::Debug for SimLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimLock({})", self.path.display())
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        if state.epoch == self.epoch {
            state.locks.remove(&self.path);
        }
    }
}

impl SimStorage {
    fn handle(&self, state: &SimState, inode: u64, path: &Path) -> Arc<dyn AppendFile> {
        Arc::new(SimHandle {
            state: self.state.clone(),
            inode,
            path: path.to_path_buf(),
            epoch: state.epoch,
        })
    }
}

impl Storage for SimStorage {
    fn is_dir(&self, path: &Path) -> bool {
        self.state.lock().dirs.contains(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        for ancestor in path.ancestors() {
            if ancestor.as_os_str().is_empty() {
                break;
            }
            if state.names.contains_key(ancestor) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a file", ancestor.display()),
                ));
            }
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let state = self.state.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let files = state.names.keys();
        let dirs = state.dirs.iter().filter(|path| path.as_path() != dir);
        Ok(files
            .chain(dirs)
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name().map(OsString::from))
            .collect())
    }

    fn lock(&self, path: &Path) -> io::Result<Option<StorageLock>> {
        let mut state = self.state.lock();
        if !state.names.contains_key(path) {
            state.create(path, true)?;
        }
        if !state.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(StorageLock::new(SimLock {
            state: self.state.clone(),
            path: path.to_path_buf(),
            epoch: state.epoch,
        })))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        let state = self.state.lock();
        let inode = state.inode(path)?;
        let bytes = SharedBytes(state.files[&inode].current.clone());
        Ok(Box::new(SimReader {
            bytes: io::Cursor::new(bytes),
        }))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let state = self.state.lock();
        let inode = state.inode(path)?;
        Ok(state.files[&inode].current.len() as u64)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state.lock();
        let inode = state.inode(path)?;
        Ok(state.files[&inode].current.to_vec())
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        let state = self.state.lock();
        let inode = state.inode(path)?;
        Ok(self.handle(&state, inode, path))
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        let mut state = self.state.lock();
        let inode = state.create(path, true)?;
        Ok(self.handle(&state, inode, path))
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        let mut state = self.state.lock();
        let inode = state.create(path, false)?;
        Ok(self.handle(&state, inode, path))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<u64> {
        let mut state = self.state.lock();
        let inode = state.inode(path)?;
        let file = state.file_mut(inode);
        let old_len = file.current.len() as u64;
        let change = Change::SetLen(len);
        apply(Arc::make_mut(&mut file.current), &change);
        file.unsynced.push(change);
        state.sync_file(inode, path)?;
        Ok(old_len)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.dirs.contains(parent_of(to)) {
            return Err(not_found(parent_of(to)));
        }
        let inode = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.stats.dir_syncs += 1;
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let failed = state
            .take_fault(|fault| match fault {
                Fault::FailDirSync { dir: wanted } => {
                    wanted.as_deref().is_none_or(|wanted| wanted == dir)
                }
                _ => false,
            })
            .is_some();
        if failed {
            return Err(injected("directory fsync", dir));
        }
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        let current: Vec<(PathBuf, u64)> = state
            .names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, inode)| (path.clone(), *inode))
            .collect();
        state.durable_names.retain(|path, _| !in_dir(path));
        state.durable_names.extend(current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::write_all_vectored;

    fn append(storage: &SimStorage, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let file = storage.open_append(path)?;
        write_all_vectored(&*file, &mut [IoSlice::new(bytes)])
    }

    #[test]
    fn a_crash_keeps_synced_data_and_synced_names_only() {
        let disk = SimStorage::new(1);
        disk.create_dir_all(Path::new("/d")).unwrap();
        let synced = Path::new("/d/synced");
        let unnamed = Path::new("/d/unnamed");
        let file = disk.create_new(synced).unwrap();
        write_all_vectored(&*file, &mut [IoSlice::new(b"durable")]).unwrap();
        file.sync_data().unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        write_all_vectored(&*file, &mut [IoSlice::new(b" cached")]).unwrap();
        let other = disk.create_new(unnamed).unwrap();
        other.sync_data().unwrap();
        assert_eq!(disk.contents(synced).unwrap(), b"durable cached");
        disk.crash();
        assert_eq!(disk.contents(synced).unwrap(), b"durable");
        assert_eq!(disk.contents(unnamed), None, "its name was never synced");
        let error = write_all_vectored(&*file, &mut [IoSlice::new(b"x")]).unwrap_err();
        assert!(error.to_string().contains("crashed"), "{error}");
    }

    #[test]
    fn a_failed_sync_drops_the_writes_and_a_retry_does_not_bring_them_back() {
        let disk = SimStorage::new(2);
        let path = Path::new("/f");
        disk.put_durable(path, b"a").unwrap();
        append(&disk, path, b"b").unwrap();
        disk.fail_next_sync(Some(path));
        let file = disk.open_append(path).unwrap();
        assert!(file.sync_data().is_err());
        file.sync_data().unwrap();
        assert_eq!(disk.contents(path).unwrap(), b"ab", "still in the cache");
        disk.crash();
        assert_eq!(disk.contents(path).unwrap(), b"a");
    }

    #[test]
    fn torn_and_misdirected_writes_and_rot() {
        let disk = SimStorage::new(3);
        let path = Path::new("/f");
        disk.put_durable(path, b"0123456789").unwrap();
        disk.tear_next_write(None, 2);
        assert!(append(&disk, path, b"abcd").is_err());
        assert_eq!(disk.contents(path).unwrap(), b"0123456789ab");
        disk.misdirect_next_write(Some(path), 1);
        append(&disk, path, b"XY").unwrap();
        assert_eq!(disk.contents(path).unwrap(), b"0XY3456789ab");
        disk.crash_keeping_unsynced(path, 3);
        // The tear's two bytes, then one of the misdirected two.
        assert_eq!(disk.contents(path).unwrap(), b"0X23456789ab");
        disk.corrupt(path, 4, 2).unwrap();
        let rotten = disk.contents(path).unwrap();
        assert_eq!(rotten.len(), 12);
        assert!(rotten[4] != b'4' && rotten[5] != b'5' && rotten[6] == b'6');
    }

    #[test]
    fn replace_leaves_the_old_file_or_the_new_one() {
        let disk = SimStorage::new(4);
        let path = Path::new("/meta");
        let temporary = crate::storage::temporary_path(path);
        disk.replace(path, b"old").unwrap();
        disk.crash();
        assert_eq!(disk.contents(path).unwrap(), b"old");
        let faults: [&dyn Fn(); 3] = [
            &|| disk.tear_next_write(Some(&temporary), 1),
            &|| disk.fail_next_sync(Some(&temporary)),
            // The rename happened but its name is not durable.
            &|| disk.fail_next_dir_sync(None),
        ];
        for arm in faults {
            arm();
            assert!(disk.replace(path, b"new").is_err());
            disk.crash();
            assert_eq!(disk.contents(path).unwrap(), b"old");
        }
        disk.replace(path, b"new").unwrap();
        disk.crash_randomly();
        assert_eq!(disk.contents(path).unwrap(), b"new");
    }

    #[test]
    fn the_same_seed_gives_the_same_crash() {
        let run = |seed| {
            let disk = SimStorage::new(seed);
            let path = Path::new("/f");
            disk.put_durable(path, b"").unwrap();
            for round in 0..20u8 {
                append(&disk, path, &[round; 7]).unwrap();
            }
            disk.crash_randomly();
            disk.contents(path).unwrap()
        };
        assert_eq!(run(7), run(7));
        assert!((0..8).map(run).collect::<BTreeSet<_>>().len() > 1);
    }
}
