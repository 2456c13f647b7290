//! The file log's manifest: which segments the log holds, so that a
//! missing segment file is found out instead of read as a shorter log.
//!
//! A log's segments are self-describing (each is named after its first
//! index and every record carries its index and chain), which finds a gap
//! in the middle, but not a missing *newest* segment: the log just looks
//! shorter, and acknowledged records would vanish silently. The manifest
//! lists every segment's first index (and, for sealed ones, the last), and
//! is rewritten whenever the set changes: at roll-over, after the new
//! segment is created, and before `truncate_prefix` deletes any.
//!
//! Two copies, `MANIFEST-0` and `MANIFEST-1`, each written whole to a
//! temporary file, fsynced and renamed over the older of the two (then the
//! directory is fsynced: [`Storage::replace`]), so a crash or a rotten
//! sector leaves at least one intact copy. The newer intact one wins.
//!
//! # Format, version 1 (little-endian)
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic, ASCII `ORDM` |
//! | 2 | format version, 1 |
//! | 2 | reserved, zero |
//! | 8 | generation (one more at every write) |
//! | 4 | segment count `n` (at most [`MANIFEST_SEGMENTS_MAX`]) |
//! | 16 × n | per segment: first index, last index (0 while it is the open one) |
//! | 8 | xxh3_64 of everything before |

use std::path::{Path, PathBuf};

use crate::storage::Storage;

const MAGIC: [u8; 4] = *b"ORDM";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 20;
const CHECKSUM_BYTES: usize = 8;
/// Segments a manifest lists at most: 2^20 segments of 64 MiB are 64 TiB.
/// A manifest file larger than this allows is not read.
pub const MANIFEST_SEGMENTS_MAX: usize = 1 << 20;
const MANIFEST_BYTES_MAX: u64 = (HEADER_BYTES + 16 * MANIFEST_SEGMENTS_MAX + CHECKSUM_BYTES) as u64;
const COPIES: [&str; 2] = ["MANIFEST-0", "MANIFEST-1"];

/// One segment as the manifest records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedSegment {
    pub first_index: u64,
    /// The last record's index once the segment is sealed; `None` for the
    /// open (last) segment, whose end only the records tell.
    pub sealed_last_index: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub generation: u64,
    pub segments: Vec<ListedSegment>,
}

/// What reading the two copies found.
#[derive(Debug)]
pub enum Found {
    /// Neither copy exists: a new log, or one written before manifests.
    None,
    /// The newest intact copy; `damaged` names a copy that exists but does
    /// not read back (it is rewritten at the next write).
    Intact {
        manifest: Manifest,
        damaged: Option<PathBuf>,
    },
    /// Copies exist but none reads back.
    AllDamaged { reasons: Vec<String> },
}

fn encode(manifest: &Manifest) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES + 16 * manifest.segments.len() + 8);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&manifest.generation.to_le_bytes());
    bytes.extend_from_slice(&(manifest.segments.len() as u32).to_le_bytes());
    for segment in &manifest.segments {
        bytes.extend_from_slice(&segment.first_index.to_le_bytes());
        bytes.extend_from_slice(&segment.sealed_last_index.unwrap_or(0).to_le_bytes());
    }
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Result<Manifest, String> {
    if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES {
        return Err(format!("{} bytes is too short for a manifest", bytes.len()));
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    let stored = u64::from_le_bytes(checksum.try_into().expect("8 bytes"));
    if xxhash_rust::xxh3::xxh3_64(body) != stored {
        return Err("checksum mismatch (torn or corrupt)".into());
    }
    if body[..4] != MAGIC {
        return Err("not a manifest (bad magic)".into());
    }
    let version = u16::from_le_bytes([body[4], body[5]]);
    if version != VERSION || body[6..8] != [0, 0] {
        return Err(format!(
            "manifest format version {version}; this build reads {VERSION}"
        ));
    }
    let generation = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
    if count > MANIFEST_SEGMENTS_MAX || body.len() != HEADER_BYTES + 16 * count {
        return Err(format!(
            "manifest claims {count} segments in {} bytes",
            body.len()
        ));
    }
    let segments = body[HEADER_BYTES..]
        .chunks_exact(16)
        .map(|entry| {
            let first_index = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
            let last = u64::from_le_bytes(entry[8..].try_into().expect("8 bytes"));
            ListedSegment {
                first_index,
                sealed_last_index: (last != 0).then_some(last),
            }
        })
        .collect();
    Ok(Manifest {
        generation,
        segments,
    })
}

fn read_copy(storage: &dyn Storage, path: &Path) -> Option<Result<Manifest, String>> {
    let length = match storage.file_len(path) {
        Ok(length) => length,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => return Some(Err(err.to_string())),
    };
    // Checked before reading: the file could be anything.
    if length > MANIFEST_BYTES_MAX {
        return Some(Err(format!("{length} bytes is over the manifest limit")));
    }
    Some(
        storage
            .read_file(path)
            .map_err(|err| err.to_string())
            .and_then(|bytes| decode(&bytes)),
    )
}

/// Reads both copies in `dir`.
pub fn read(storage: &dyn Storage, dir: &Path) -> Found {
    let mut best: Option<Manifest> = None;
    let mut damaged = Vec::new();
    let mut reasons = Vec::new();
    for name in COPIES {
        let path = dir.join(name);
        match read_copy(storage, &path) {
            None => {}
            Some(Ok(manifest))
                if best
                    .as_ref()
                    .is_none_or(|best| manifest.generation > best.generation) =>
            {
                best = Some(manifest);
            }
            Some(Ok(_)) => {}
            Some(Err(reason)) => {
                reasons.push(format!("{}: {reason}", path.display()));
                damaged.push(path);
            }
        }
    }
    match best {
        Some(manifest) => Found::Intact {
            manifest,
            damaged: damaged.pop(),
        },
        None if reasons.is_empty() => Found::None,
        None => Found::AllDamaged { reasons },
    }
}

/// Writes `manifest` durably over the older copy (the one its generation
/// picks), leaving the other intact.
pub fn write(storage: &dyn Storage, dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let name = COPIES[(manifest.generation % 2) as usize];
    storage.replace(&dir.join(name), &encode(manifest))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::storage::OsStorage;

    fn read(dir: &Path) -> Found {
        super::read(&OsStorage, dir)
    }

    fn write(dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
        super::write(&OsStorage, dir, manifest)
    }

    fn manifest(generation: u64) -> Manifest {
        Manifest {
            generation,
            segments: vec![
                ListedSegment {
                    first_index: 1,
                    sealed_last_index: Some(40),
                },
                ListedSegment {
                    first_index: 41,
                    sealed_last_index: None,
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_the_newer_copy_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path()), Found::None));
        write(dir.path(), &manifest(1)).unwrap();
        write(dir.path(), &manifest(2)).unwrap();
        match read(dir.path()) {
            Found::Intact {
                manifest: got,
                damaged,
            } => {
                assert_eq!(got, manifest(2));
                assert_eq!(damaged, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_damaged_copy_falls_back_to_the_other_and_two_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &manifest(1)).unwrap();
        write(dir.path(), &manifest(2)).unwrap();
        // Generation 2 went to MANIFEST-0; flip a bit in it.
        let newer = dir.path().join("MANIFEST-0");
        let mut bytes = fs::read(&newer).unwrap();
        bytes[9] ^= 1;
        fs::write(&newer, &bytes).unwrap();
        match read(dir.path()) {
            Found::Intact {
                manifest: got,
                damaged,
            } => {
                assert_eq!(got.generation, 1);
                assert_eq!(damaged, Some(newer));
            }
            other => panic!("{other:?}"),
        }
        fs::write(dir.path().join("MANIFEST-1"), b"garbage").unwrap();
        assert!(matches!(read(dir.path()), Found::AllDamaged { .. }));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = encode(&manifest(7));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(decode(&flipped).is_err(), "flip at {at}");
        }
        assert_eq!(decode(&bytes).unwrap(), manifest(7));
    }
}
