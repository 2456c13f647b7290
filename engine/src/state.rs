//! The state store: an ordered map of byte keys to byte values, plus a
//! content hash of everything in it.
//!
//! The content hash is a multiset hash: the wrapping sum, modulo 2^128, of
//! one 128-bit hash per entry. Adding or removing an entry adds or
//! subtracts its hash, so the hash costs O(1) per write, does not depend
//! on the order writes happened in, and is the same whatever the batch
//! boundaries or the partitioning (partitions' hashes simply add up).

mod sorted_keys;

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::ops::Bound;

use hashbrown::HashTable;
use smallvec::SmallVec;
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use sorted_keys::{Cursor, SortedKeys};

/// Keys and values of write sets. Most are small (an account key is 13
/// bytes, a balance 1 to 10), so they are built without an allocation.
pub type Bytes = SmallVec<[u8; 24]>;

/// Entries up to this many bytes (with the key's 4-byte length) are
/// hashed from one stack buffer in a single call.
const ENTRY_HASHED_INLINE_BYTES_MAX: usize = 128;

/// The hash of one `(key, value)` entry: xxh3-128 of the key's length
/// (u32 LE), the key and the value. The key's length goes first so that
/// `("ab", "c")` and `("a", "bc")` hash differently.
///
/// Small entries (nearly all) are copied into one buffer and hashed in a
/// single call: xxh3's streaming state costs several times more than the
/// hashing itself for a 20-byte input, and this runs twice per write and
/// once per entry of a restored snapshot (10% of a restart's samples,
/// profiled). Both ways hash the same bytes, so give the same value.
fn entry_hash(key: &[u8], value: &[u8]) -> u128 {
    let key_length = (key.len() as u32).to_le_bytes();
    let length = key_length.len() + key.len() + value.len();
    if length <= ENTRY_HASHED_INLINE_BYTES_MAX {
        let mut buffer = [0u8; ENTRY_HASHED_INLINE_BYTES_MAX];
        let (length_part, rest) = buffer.split_at_mut(key_length.len());
        length_part.copy_from_slice(&key_length);
        rest[..key.len()].copy_from_slice(key);
        rest[key.len()..key.len() + value.len()].copy_from_slice(value);
        return xxh3_128(&buffer[..length]);
    }
    entry_hash_streaming(key, value)
}

fn entry_hash_streaming(key: &[u8], value: &[u8]) -> u128 {
    let mut hasher = Xxh3::new();
    hasher.update(&(key.len() as u32).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    hasher.digest128()
}

/// Entries whose key and value together fit in this many bytes are
/// stored inside the hash table's bucket; longer ones in one heap
/// allocation. A bank account (a 14-byte key, a balance of 1 to 10
/// bytes, 7 up to 2^48) fits, so a point read or an update touches one
/// bucket and nothing else.
const INLINE_ENTRY_BYTES_MAX: usize = 21;

/// One `(key, value)` entry of the hash table: 24 bytes.
#[derive(Clone)]
enum Entry {
    Inline {
        key_len: u8,
        value_len: u8,
        bytes: [u8; INLINE_ENTRY_BYTES_MAX],
    },
    /// The key then the value, in one allocation.
    Heap { key_len: u32, bytes: Box<[u8]> },
}

// A bucket of two inline `SmallVec`s was 64 bytes; at 1M accounts the
// buckets are most of the store's memory (see docs/BENCHMARKS.md).
const _: () = assert!(size_of::<Entry>() == 24);

impl Entry {
    fn new(key: &[u8], value: &[u8]) -> Entry {
        if key.len() + value.len() <= INLINE_ENTRY_BYTES_MAX {
            let mut bytes = [0u8; INLINE_ENTRY_BYTES_MAX];
            bytes[..key.len()].copy_from_slice(key);
            bytes[key.len()..key.len() + value.len()].copy_from_slice(value);
            return Entry::Inline {
                key_len: key.len() as u8,
                value_len: value.len() as u8,
                bytes,
            };
        }
        let key_len = u32::try_from(key.len())
            .expect("keys are far below 4 GiB (the engine's write limits refuse longer ones)");
        let mut bytes = Vec::with_capacity(key.len() + value.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        Entry::Heap {
            key_len,
            bytes: bytes.into_boxed_slice(),
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Entry::Inline { key_len, bytes, .. } => &bytes[..usize::from(*key_len)],
            Entry::Heap { key_len, bytes } => &bytes[..*key_len as usize],
        }
    }

    fn value(&self) -> &[u8] {
        match self {
            Entry::Inline {
                key_len,
                value_len,
                bytes,
            } => {
                let key_len = usize::from(*key_len);
                &bytes[key_len..key_len + usize::from(*value_len)]
            }
            Entry::Heap { key_len, bytes } => &bytes[*key_len as usize..],
        }
    }

    /// Replaces the value, in place when the entry keeps its size class.
    fn set_value(&mut self, value: &[u8]) {
        match self {
            Entry::Inline {
                key_len,
                value_len,
                bytes,
            } if usize::from(*key_len) + value.len() <= INLINE_ENTRY_BYTES_MAX => {
                let key_len = usize::from(*key_len);
                bytes[key_len..key_len + value.len()].copy_from_slice(value);
                *value_len = value.len() as u8;
            }
            Entry::Heap { key_len, bytes }
                if bytes.len() - *key_len as usize == value.len()
                    && *key_len as usize + value.len() > INLINE_ENTRY_BYTES_MAX =>
            {
                bytes[*key_len as usize..].copy_from_slice(value);
            }
            _ => *self = Entry::new(self.key(), value),
        }
    }
}

/// Keys added to `recent` plus deletions (the *key changes*) below which
/// the recent keys are never merged into the sorted index: merging a
/// small index often costs more than the B-tree it empties.
const MERGE_KEY_CHANGES_MIN: usize = 1024;

/// The recent keys are merged into the sorted index once the key changes
/// since the last merge exceed the index's length divided by this (keys
/// appended to the index do not count: they leave nothing to merge).
/// Merging costs O(index); this makes it O(this) per change, amortised,
/// and bounds the B-tree and the dead index keys to this fraction of the
/// store.
const MERGE_INDEX_FRACTION: usize = 8;

/// Committed state. Only the executor writes it, and only with the
/// write set of a transaction that committed.
///
/// Point reads and updates go through a hash table of [`Entry`]s (24
/// bytes, small entries inline): one cache miss per lookup. Range scans
/// go through the *sorted index* (front-coded keys, about 4 bytes each,
/// see sorted_keys.rs) plus a B-tree of the keys created since it was
/// last rebuilt (`recent`); a scan merges the two and checks each key in
/// the hash table, which skips keys deleted since. Keys are created and
/// deleted far less often than they are read and updated, and that is
/// the only time the index side is touched. The hash table is never
/// iterated in an order that can reach an outcome (only the
/// order-independent content hash sums over it), so its randomly seeded
/// order cannot.
///
/// Memory, measured by `cargo bench --bench state` (1M accounts, 16
/// slot stores): see docs/BENCHMARKS.md "State memory".
#[derive(Clone)]
pub struct StateStore {
    entries: HashTable<Entry>,
    hasher: foldhash::fast::RandomState,
    /// Every live key that is not in `recent`, and possibly some deleted
    /// ones (or ones also in `recent`) since the last merge.
    sorted: SortedKeys,
    /// Live keys created since the last merge.
    recent: BTreeSet<Bytes>,
    key_changes_since_merge: usize,
    deletes_since_merge: usize,
    merge_key_changes_min: usize,
    content_hash: u128,
    bytes: usize,
}

impl Default for StateStore {
    fn default() -> StateStore {
        StateStore {
            entries: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            sorted: SortedKeys::default(),
            recent: BTreeSet::new(),
            key_changes_since_merge: 0,
            deletes_since_merge: 0,
            merge_key_changes_min: MERGE_KEY_CHANGES_MIN,
            content_hash: 0,
            bytes: 0,
        }
    }
}

impl StateStore {
    pub fn new() -> StateStore {
        StateStore::default()
    }

    #[inline]
    fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    // Inlined (with hashbrown's `inline-more`): at 1M keys a call here
    // cost about 15% of a point read (`cargo bench --bench state`).
    #[inline]
    fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.entries
            .find(self.hash_key(key), |entry| entry.key() == key)
    }

    /// Adds an entry whose key is not in the table.
    fn insert_new(&mut self, hash: u64, entry: Entry) {
        let hasher = &self.hasher;
        self.entries
            .insert_unique(hash, entry, |entry| hasher.hash_one(entry.key()));
    }

    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entry(key).map(Entry::value)
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Bytes, value: Bytes) {
        let hash = self.hash_key(&key);
        if let Some(entry) = self
            .entries
            .find_mut(hash, |entry| entry.key() == key.as_slice())
        {
            self.content_hash = self
                .content_hash
                .wrapping_sub(entry_hash(&key, entry.value()))
                .wrapping_add(entry_hash(&key, &value));
            self.bytes = self.bytes - entry.value().len() + value.len();
            entry.set_value(&value);
            return;
        }
        self.content_hash = self.content_hash.wrapping_add(entry_hash(&key, &value));
        self.bytes += key.len() + value.len();
        self.insert_new(hash, Entry::new(&key, &value));
        // A key above every indexed key (accounts opened one after the
        // other, time-ordered keys) goes straight to the end of the index:
        // no B-tree node, no merge. The index only has to ascend; `recent`
        // may hold smaller keys.
        if self
            .sorted
            .last_key()
            .is_none_or(|last| key.as_slice() > last)
        {
            self.sorted.push(&key);
            return;
        }
        self.recent.insert(key);
        self.key_changed();
    }

    pub fn delete(&mut self, key: &[u8]) {
        let hash = self.hash_key(key);
        let Ok(found) = self.entries.find_entry(hash, |entry| entry.key() == key) else {
            return;
        };
        let (old, _) = found.remove();
        self.content_hash = self.content_hash.wrapping_sub(entry_hash(key, old.value()));
        self.bytes -= key.len() + old.value().len();
        // A key in the sorted index stays there, dead, until the next
        // merge; scans skip it because the hash table no longer has it.
        self.recent.remove(key);
        self.deletes_since_merge += 1;
        self.key_changed();
    }

    fn key_changed(&mut self) {
        self.key_changes_since_merge += 1;
        let due = self
            .merge_key_changes_min
            .max(self.sorted.len() / MERGE_INDEX_FRACTION);
        if self.key_changes_since_merge > due {
            self.merge_recent_keys();
        }
    }

    /// Rebuilds the sorted index from its live keys and the recent ones,
    /// and empties `recent`.
    fn merge_recent_keys(&mut self) {
        let mut merged = SortedKeys::with_capacity(self.entries.len(), self.sorted.data_bytes());
        let mut old = self.sorted.seek(&[]);
        let mut recent = self.recent.iter().peekable();
        loop {
            match (old.key(), recent.peek()) {
                (None, None) => break,
                (Some(old_key), next_recent)
                    if next_recent.is_none_or(|recent| old_key < recent.as_slice()) =>
                {
                    // Without a delete since the last merge every indexed
                    // key is live, and the lookup (a cache miss at a
                    // million keys) is skipped.
                    if self.deletes_since_merge == 0 || self.entry(old_key).is_some() {
                        merged.push(old_key);
                    }
                    old.advance();
                }
                (old_key, next_recent) => {
                    let recent_key = next_recent.expect("the guard above took every other case");
                    // The same key in both: it was deleted and created
                    // again; keep one.
                    if old_key == Some(recent_key.as_slice()) {
                        old.advance();
                    }
                    merged.push(recent_key);
                    recent.next();
                }
            }
        }
        merged.shrink_to_fit();
        self.sorted = merged;
        self.recent.clear();
        self.key_changes_since_merge = 0;
        self.deletes_since_merge = 0;
    }

    /// Entries with `start <= key < end` (no upper bound if `end` is
    /// `None`), in ascending key order. An `end` below `start` is an
    /// empty range (the bounds can come from a procedure).
    pub fn range<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> Range<'a> {
        let upper = match end {
            // `BTreeSet::range` panics on reversed bounds.
            Some(end) if end < start => Bound::Excluded(start),
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let mut recent = self
            .recent
            .range::<[u8], _>((Bound::Included(start), upper));
        Range {
            store: self,
            sorted: self.sorted.seek(start),
            recent_next: recent.next(),
            recent,
            end: end.map(|end| Bytes::from_slice(end.max(start))),
        }
    }

    /// All entries in key order (for snapshots and tests).
    pub fn iter(&self) -> Range<'_> {
        self.range(&[], None)
    }

    /// The order-independent hash of every entry (see the module docs).
    pub fn content_hash(&self) -> u128 {
        self.content_hash
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keys created out of order since the sorted index was last rebuilt
    /// (they wait in a B-tree for the next merge).
    pub fn recent_keys(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys plus values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A store holding exactly `entries`, which must be in strictly
    /// ascending key order (the caller checks; a snapshot's are). Sizes
    /// the hash table once and builds the sorted index in one pass,
    /// instead of a `put` per entry: restoring a snapshot of a million
    /// keys is mostly this.
    pub fn from_sorted(entries: &[(&[u8], &[u8])]) -> StateStore {
        let mut store = StateStore {
            entries: HashTable::with_capacity(entries.len()),
            ..StateStore::default()
        };
        let mut index = SortedKeys::with_capacity(entries.len(), entries.len() * 4);
        for &(key, value) in entries {
            store.insert_new(store.hash_key(key), Entry::new(key, value));
            index.push(key);
            store.content_hash = store.content_hash.wrapping_add(entry_hash(key, value));
            store.bytes += key.len() + value.len();
        }
        index.shrink_to_fit();
        store.sorted = index;
        store
    }

    /// Recomputes the content hash from scratch. Used by tests and by
    /// snapshot loading to check the incremental hash.
    pub fn recompute_content_hash(&self) -> u128 {
        self.entries.iter().fold(0u128, |sum, entry| {
            sum.wrapping_add(entry_hash(entry.key(), entry.value()))
        })
    }
}

/// The iterator of [`StateStore::range`]: the sorted index and the
/// recent keys merged, each key looked up in the hash table.
pub struct Range<'a> {
    store: &'a StateStore,
    sorted: Cursor<'a>,
    recent: std::collections::btree_set::Range<'a, Bytes>,
    recent_next: Option<&'a Bytes>,
    /// Copied, so the iterator borrows only the store.
    end: Option<Bytes>,
}

impl Range<'_> {
    fn before_end(&self, key: &[u8]) -> bool {
        self.end.as_ref().is_none_or(|end| key < end.as_slice())
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        loop {
            let entry = match (self.sorted.key(), self.recent_next) {
                (None, None) => return None,
                (Some(sorted), next_recent)
                    if next_recent.is_none_or(|recent| sorted < recent.as_slice()) =>
                {
                    if !self.before_end(sorted) {
                        return None;
                    }
                    let entry = self.store.entry(sorted);
                    self.sorted.advance();
                    match entry {
                        Some(entry) => entry,
                        // Deleted since the last merge.
                        None => continue,
                    }
                }
                (sorted, next_recent) => {
                    let recent = next_recent.expect("the guard above took every other case");
                    // `recent` is bounded by `end` already.
                    if sorted == Some(recent.as_slice()) {
                        self.sorted.advance();
                    }
                    self.recent_next = self.recent.next();
                    self.store
                        .entry(recent)
                        .expect("every recent key is live: delete removes it")
                }
            };
            return Some((entry.key(), entry.value()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    impl StateStore {
        /// A store that merges its recent keys after `changes` key
        /// creations and deletions, so small tests cross many merges.
        fn merging_after(changes: usize) -> StateStore {
            StateStore {
                merge_key_changes_min: changes,
                ..StateStore::default()
            }
        }

        /// The structure's invariants (see the fields' docs).
        fn check(&self) {
            for key in &self.recent {
                assert!(self.entry(key).is_some(), "a recent key is live");
            }
            let mut indexed = BTreeSet::new();
            let mut cursor = self.sorted.seek(&[]);
            let mut previous: Option<Vec<u8>> = None;
            while let Some(key) = cursor.key() {
                assert!(previous.as_deref() < Some(key), "the index ascends");
                previous = Some(key.to_vec());
                indexed.insert(key.to_vec());
                cursor.advance();
            }
            assert_eq!(indexed.len(), self.sorted.len());
            for entry in self.entries.iter() {
                assert!(
                    indexed.contains(entry.key()) || self.recent.contains(entry.key()),
                    "every live key is indexed or recent"
                );
            }
            assert!(
                self.key_changes_since_merge
                    <= self
                        .merge_key_changes_min
                        .max(self.sorted.len() / MERGE_INDEX_FRACTION)
            );
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(Vec<u8>, Vec<u8>),
        Delete(Vec<u8>),
        Get(Vec<u8>),
        Range(Vec<u8>, Option<Vec<u8>>),
    }

    /// Keys from a small alphabet (so operations meet the same keys and
    /// share prefixes) of lengths up to 40, so entries fall on both sides
    /// of the inline limit; values up to 40 bytes.
    fn op() -> impl Strategy<Value = Op> {
        let key = || proptest::collection::vec(0u8..3, 0..40);
        let value = proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            4 => (key(), value).prop_map(|(key, value)| Op::Put(key, value)),
            2 => key().prop_map(Op::Delete),
            1 => key().prop_map(Op::Get),
            1 => (key(), proptest::option::of(key())).prop_map(|(start, end)| Op::Range(start, end)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The store is an ordered map: every get, every range and the
        /// final contents equal a `BTreeMap`'s after the same operations,
        /// across merges of the sorted index (every 1 to 8 key changes).
        #[test]
        fn the_store_behaves_like_an_ordered_map(
            ops in proptest::collection::vec(op(), 0..300),
            merge_after in 1usize..8,
        ) {
            let mut store = StateStore::merging_after(merge_after);
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(key, value) => {
                        store.put(Bytes::from_slice(&key), Bytes::from_slice(&value));
                        model.insert(key, value);
                    }
                    Op::Delete(key) => {
                        store.delete(&key);
                        model.remove(&key);
                    }
                    Op::Get(key) => {
                        prop_assert_eq!(store.get(&key), model.get(&key).map(Vec::as_slice));
                    }
                    Op::Range(start, end) => {
                        let got: Vec<_> = store.range(&start, end.as_deref()).collect();
                        let expected: Vec<(&[u8], &[u8])> = match &end {
                            Some(end) if *end <= start => Vec::new(),
                            Some(end) => model
                                .range(start.clone()..end.clone())
                                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                                .collect(),
                            None => model
                                .range(start.clone()..)
                                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                                .collect(),
                        };
                        prop_assert_eq!(got, expected);
                    }
                }
                store.check();
            }
            prop_assert_eq!(store.len(), model.len());
            prop_assert!(store
                .iter()
                .eq(model.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))));
            prop_assert_eq!(store.content_hash(), store.recompute_content_hash());
            prop_assert_eq!(
                store.bytes(),
                model.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            );
        }
    }

    /// Values switch between inline and heap entries in both directions,
    /// and keys too long for a bucket live on the heap.
    #[test]
    fn entries_move_between_inline_and_heap() {
        let mut store = StateStore::new();
        let key = b"account/00042";
        store.put(Bytes::from_slice(key), Bytes::from_slice(&[1; 8]));
        assert!(matches!(store.entry(key), Some(Entry::Inline { .. })));
        store.put(Bytes::from_slice(key), Bytes::from_slice(&[2; 100]));
        assert!(matches!(store.entry(key), Some(Entry::Heap { .. })));
        assert_eq!(store.get(key), Some([2; 100].as_slice()));
        store.put(Bytes::from_slice(key), Bytes::from_slice(&[3; 100]));
        assert_eq!(store.get(key), Some([3; 100].as_slice()));
        store.put(Bytes::from_slice(key), Bytes::from_slice(&[]));
        assert!(matches!(store.entry(key), Some(Entry::Inline { .. })));
        assert_eq!(store.get(key), Some([].as_slice()));
        let long_key = [7u8; 300];
        store.put(Bytes::from_slice(&long_key), Bytes::from_slice(b"v"));
        assert_eq!(store.get(&long_key), Some(b"v".as_slice()));
        assert_eq!(store.content_hash(), store.recompute_content_hash());
    }

    #[test]
    fn an_empty_key_is_a_key() {
        let mut store = StateStore::merging_after(1);
        store.put(Bytes::new(), Bytes::from_slice(b"x"));
        store.put(Bytes::from_slice(b"a"), Bytes::from_slice(b"y"));
        store.put(Bytes::from_slice(b"b"), Bytes::from_slice(b"z"));
        store.check();
        let keys: Vec<_> = store.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, vec![b"".as_slice(), b"a", b"b"]);
        assert_eq!(store.get(b""), Some(b"x".as_slice()));
    }

    proptest! {
        #[test]
        fn from_sorted_equals_one_put_per_entry(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..40),
                proptest::collection::vec(any::<u8>(), 0..40),
                0..200,
            )
        ) {
            let mut put = StateStore::new();
            for (key, value) in &entries {
                put.put(Bytes::from_slice(key), Bytes::from_slice(value));
            }
            let slices: Vec<(&[u8], &[u8])> = entries
                .iter()
                .map(|(key, value)| (key.as_slice(), value.as_slice()))
                .collect();
            let built = StateStore::from_sorted(&slices);
            prop_assert_eq!(built.content_hash(), put.content_hash());
            prop_assert_eq!(built.content_hash(), built.recompute_content_hash());
            prop_assert_eq!(built.len(), put.len());
            prop_assert_eq!(built.bytes(), put.bytes());
            prop_assert!(built.iter().eq(put.iter()));
        }
    }

    proptest! {
        /// The one-call hash of small entries is the streaming hash of the
        /// same bytes, on both sides of the inline limit: state hashes
        /// recorded by earlier builds stay valid.
        #[test]
        fn inline_entry_hash_equals_the_streaming_hash(
            key in proptest::collection::vec(any::<u8>(), 0..80),
            value in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            prop_assert_eq!(entry_hash(&key, &value), entry_hash_streaming(&key, &value));
        }
    }

    /// Values the streaming-only hash gave before the one-call path
    /// existed (state hashes are compared across builds and replicas).
    #[test]
    fn entry_hashes_are_those_of_earlier_builds() {
        assert_eq!(
            format!("{:032x}", entry_hash(b"ab", b"c")),
            "fced6b2c41515d2f300c358d8f341b27"
        );
        assert_eq!(
            format!("{:032x}", entry_hash(b"account/00042", &7u64.to_le_bytes())),
            "fea87d319a471de8ca1f0614411179c9"
        );
    }

    #[test]
    fn hash_tracks_puts_overwrites_and_deletes() {
        let mut store = StateStore::new();
        assert_eq!(store.content_hash(), 0);
        store.put(Bytes::from_slice(b"a"), Bytes::from_slice(b"1"));
        let after_a = store.content_hash();
        store.put(Bytes::from_slice(b"b"), Bytes::from_slice(b"2"));
        store.put(Bytes::from_slice(b"b"), Bytes::from_slice(b"3"));
        store.delete(b"b");
        assert_eq!(store.content_hash(), after_a);
        store.delete(b"a");
        assert_eq!(store.content_hash(), 0);
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn key_value_split_changes_the_hash() {
        let mut left = StateStore::new();
        left.put(Bytes::from_slice(b"ab"), Bytes::from_slice(b"c"));
        let mut right = StateStore::new();
        right.put(Bytes::from_slice(b"a"), Bytes::from_slice(b"bc"));
        assert_ne!(left.content_hash(), right.content_hash());
    }

    #[test]
    fn range_is_half_open_and_ordered() {
        let mut store = StateStore::new();
        for key in [b"a", b"b", b"c", b"d"] {
            store.put(Bytes::from_slice(key), Bytes::from_slice(key));
        }
        let keys: Vec<_> = store.range(b"b", Some(b"d")).map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"b".as_slice(), b"c".as_slice()]);
        let tail: Vec<_> = store.range(b"c", None).map(|(k, _)| k).collect();
        assert_eq!(tail, vec![b"c".as_slice(), b"d".as_slice()]);
    }

    proptest! {
        /// The incremental hash equals the hash recomputed from the final
        /// contents, whatever the order of operations that produced them.
        #[test]
        fn incremental_hash_matches_recomputed(
            ops in proptest::collection::vec(
                (0u8..16, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4))),
                0..200,
            )
        ) {
            let mut store = StateStore::new();
            for (key, value) in ops {
                match value {
                    Some(value) => store.put(Bytes::from_slice(&[key]), Bytes::from_vec(value)),
                    None => store.delete(&[key]),
                }
            }
            prop_assert_eq!(store.content_hash(), store.recompute_content_hash());
            let mut rebuilt = StateStore::new();
            for (key, value) in store.iter().collect::<Vec<_>>().into_iter().rev() {
                rebuilt.put(Bytes::from_slice(key), Bytes::from_slice(value));
            }
            prop_assert_eq!(rebuilt.content_hash(), store.content_hash());
        }
    }
}
