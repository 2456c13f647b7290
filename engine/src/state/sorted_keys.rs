//! An immutable, sorted set of byte keys, front-coded: each key stores
//! only what differs from the key before it.
//!
//! It is the state store's index for range scans. Keys of one table
//! share long prefixes (`account/00042`, `account/00043`), so a key costs
//! about 4 bytes here instead of the 60 or so a B-tree of inline keys
//! costs (issue 19: a B-tree of 1M account keys was a quarter of the
//! server's memory).
//!
//! # Layout
//!
//! `data` holds one record per key, in ascending key order:
//! `varint(shared) varint(suffix_len) suffix`, where `shared` is the
//! length of the prefix the key has in common with the key before it.
//! Every [`RESTART_INTERVAL_KEYS`]th key is a *restart*: it stores
//! `shared = 0` (the whole key), and `restarts` holds its offset in
//! `data`, so a seek binary-searches the restarts and then decodes at
//! most that many records.

/// Keys between two restart points. More makes the index smaller (a
/// restart costs a whole key and 4 bytes of offset) and seeks slower
/// (a seek decodes up to this many records).
pub const RESTART_INTERVAL_KEYS: usize = 16;

#[derive(Clone, Default)]
pub struct SortedKeys {
    data: Vec<u8>,
    restarts: Vec<u32>,
    len: usize,
    /// The greatest key, whole: the next push is coded against it.
    last: Vec<u8>,
}

impl SortedKeys {
    /// An empty index; `keys` and `data_bytes` are estimates of what will
    /// be pushed, to size the buffers once.
    pub fn with_capacity(keys: usize, data_bytes: usize) -> SortedKeys {
        SortedKeys {
            data: Vec::with_capacity(data_bytes),
            restarts: Vec::with_capacity(keys.div_ceil(RESTART_INTERVAL_KEYS)),
            len: 0,
            last: Vec::new(),
        }
    }

    /// Appends `key`, which must be greater than every key in the index.
    pub fn push(&mut self, key: &[u8]) {
        debug_assert!(
            self.len == 0 || key > self.last.as_slice(),
            "keys are pushed in strictly ascending order"
        );
        let shared = if self.len.is_multiple_of(RESTART_INTERVAL_KEYS) {
            let offset = u32::try_from(self.data.len()).expect(
                "a slot's key index stays below 4 GiB (keys are bounded by the engine's limits)",
            );
            self.restarts.push(offset);
            0
        } else {
            common_prefix_len(&self.last, key)
        };
        write_varint(&mut self.data, shared);
        write_varint(&mut self.data, key.len() - shared);
        self.data.extend_from_slice(&key[shared..]);
        self.len += 1;
        self.last.truncate(shared);
        self.last.extend_from_slice(&key[shared..]);
    }

    /// Frees the buffers' spare capacity (after a rebuild).
    pub fn shrink_to_fit(&mut self) {
        self.data.shrink_to_fit();
        self.restarts.shrink_to_fit();
    }

    /// The greatest key, if any.
    pub fn last_key(&self) -> Option<&[u8]> {
        (self.len > 0).then_some(self.last.as_slice())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes of encoded keys (a size hint for rebuilding).
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    /// Bytes of heap this index holds (capacity, not just what is used).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() + self.restarts.capacity() * size_of::<u32>()
    }

    /// A cursor at the first key `>= target`, or past the end.
    pub fn seek(&self, target: &[u8]) -> Cursor<'_> {
        // The last restart whose key is <= target: every key before it is
        // smaller than target, so the answer is at or after it.
        let restart = self
            .restarts
            .partition_point(|&offset| self.restart_key(offset as usize) <= target);
        let mut cursor = Cursor {
            keys: self,
            chunk: Vec::new(),
            chunk_ends: Vec::with_capacity(CURSOR_CHUNK_KEYS),
            at: 0,
            last: Vec::new(),
            next_offset: match restart {
                0 => 0,
                after => self.restarts[after - 1] as usize,
            },
        };
        cursor.decode_chunk();
        while cursor.key().is_some_and(|key| key < target) {
            cursor.advance();
        }
        cursor
    }

    /// The whole key stored at a restart point.
    fn restart_key(&self, offset: usize) -> &[u8] {
        let (shared, after_shared) = read_varint(&self.data, offset);
        debug_assert_eq!(shared, 0, "a restart stores its whole key");
        let (suffix_len, suffix_at) = read_varint(&self.data, after_shared);
        &self.data[suffix_at..suffix_at + suffix_len]
    }
}

/// Keys a cursor decodes at a time.
///
/// Why not one: a scan looks every key up in the hash table, and each
/// lookup waits for a cache miss at a million keys. A key decoded into a
/// buffer just before its lookup is read back by the hash and the
/// comparison with loads the CPU cannot forward from the pending small
/// stores, so they wait until those stores commit, which is after every
/// older instruction, the previous lookup's miss included: the misses
/// stop overlapping (a scan at 1M keys ran 2.4x slower than the B-tree it
/// replaced). Keys decoded a chunk ahead were stored before the chunk's
/// lookups began.
const CURSOR_CHUNK_KEYS: usize = 32;

/// A position in a [`SortedKeys`]: the key there, decoded.
pub struct Cursor<'a> {
    keys: &'a SortedKeys,
    /// The decoded chunk's keys, concatenated.
    chunk: Vec<u8>,
    /// Where each of the chunk's keys ends in `chunk`.
    chunk_ends: Vec<usize>,
    /// The current key's index in the chunk (past the end: no key).
    at: usize,
    /// The last key decoded, whole (the next record is coded against it).
    last: Vec<u8>,
    /// Where the record after the chunk's last key starts.
    next_offset: usize,
}

impl Cursor<'_> {
    /// The key at the cursor, or `None` past the end.
    pub fn key(&self) -> Option<&[u8]> {
        let end = *self.chunk_ends.get(self.at)?;
        let start = match self.at {
            0 => 0,
            at => self.chunk_ends[at - 1],
        };
        Some(&self.chunk[start..end])
    }

    /// Moves to the next key (or past the end).
    pub fn advance(&mut self) {
        self.at += 1;
        if self.at >= self.chunk_ends.len() {
            self.decode_chunk();
        }
    }

    fn decode_chunk(&mut self) {
        let data = &self.keys.data;
        self.chunk.clear();
        self.chunk_ends.clear();
        self.at = 0;
        while self.chunk_ends.len() < CURSOR_CHUNK_KEYS && self.next_offset < data.len() {
            let (shared, after_shared) = read_varint(data, self.next_offset);
            let (suffix_len, suffix_at) = read_varint(data, after_shared);
            self.last.truncate(shared);
            self.last
                .extend_from_slice(&data[suffix_at..suffix_at + suffix_len]);
            self.next_offset = suffix_at + suffix_len;
            self.chunk.extend_from_slice(&self.last);
            self.chunk_ends.push(self.chunk.len());
        }
    }
}

fn common_prefix_len(left: &[u8], right: &[u8]) -> usize {
    left.iter()
        .zip(right)
        .take_while(|(left, right)| left == right)
        .count()
}

/// LEB128: 7 bits a byte, low first; a set high bit means more follow.
fn write_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at `offset` and the offset after it. The index is built
/// only by [`SortedKeys::push`] in this process, never read from a file
/// or a socket, so it is trusted.
fn read_varint(data: &[u8], mut offset: usize) -> (usize, usize) {
    let mut value = 0usize;
    let mut shift = 0;
    loop {
        let byte = data[offset];
        offset += 1;
        value |= ((byte & 0x7f) as usize) << shift;
        if byte < 0x80 {
            return (value, offset);
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(keys: &std::collections::BTreeSet<Vec<u8>>) -> SortedKeys {
        let mut index = SortedKeys::with_capacity(keys.len(), 0);
        for key in keys {
            index.push(key);
            assert_eq!(index.last_key(), Some(key.as_slice()));
        }
        index
    }

    fn collect_from(keys: &SortedKeys, target: &[u8]) -> Vec<Vec<u8>> {
        let mut cursor = keys.seek(target);
        let mut out = Vec::new();
        while let Some(key) = cursor.key() {
            out.push(key.to_vec());
            cursor.advance();
        }
        out
    }

    proptest! {
        /// Seeking anywhere and walking to the end gives exactly the keys
        /// `>= target` of the set it was built from, whatever their
        /// lengths (varints of 1 and 2 bytes included) and prefixes.
        #[test]
        fn seek_then_walk_equals_the_ordered_set(
            keys in proptest::collection::btree_set(
                proptest::collection::vec(0u8..4, 0..200),
                0..100,
            ),
            target in proptest::collection::vec(0u8..4, 0..6),
        ) {
            let index = build(&keys);
            prop_assert_eq!(index.len(), keys.len());
            let expected: Vec<Vec<u8>> = keys.range(target.clone()..).cloned().collect();
            prop_assert_eq!(collect_from(&index, &target), expected);
            let all: Vec<Vec<u8>> = keys.iter().cloned().collect();
            prop_assert_eq!(collect_from(&index, &[]), all);
        }
    }

    #[test]
    fn an_empty_index_has_no_keys() {
        let index = SortedKeys::with_capacity(0, 0);
        assert_eq!(index.len(), 0);
        assert_eq!(index.last_key(), None);
        assert!(index.seek(b"").key().is_none());
        assert!(index.seek(b"anything").key().is_none());
    }

    #[test]
    fn seeking_past_the_last_key_finds_nothing() {
        let keys = [b"a".to_vec(), b"b".to_vec()].into_iter().collect();
        let index = build(&keys);
        assert!(index.seek(b"c").key().is_none());
        assert_eq!(index.seek(b"b").key(), Some(b"b".as_slice()));
        assert_eq!(index.seek(b"aa").key(), Some(b"b".as_slice()));
    }

    /// The figure the module docs quote: bank account keys (table `acct`,
    /// a u64 id big-endian) of one slot, every 16th account as the
    /// partition rule roughly spreads them, cost about 4 bytes each.
    #[test]
    fn account_keys_cost_a_few_bytes_each() {
        let keys: std::collections::BTreeSet<Vec<u8>> = (0..100_000u64)
            .step_by(16)
            .map(|account| [b"acct\0\x08".as_slice(), &account.to_be_bytes()].concat())
            .collect();
        let mut index = build(&keys);
        index.shrink_to_fit();
        let per_key = index.heap_bytes() as f64 / keys.len() as f64;
        assert!(per_key < 5.0, "{per_key:.1} bytes per key");
    }
}
