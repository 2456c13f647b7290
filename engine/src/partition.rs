//! Partitions: which part of the state a key belongs to, and what a
//! transaction declared it would touch.
//!
//! Every key has a *partition key*, a byte string derived from the key's
//! bytes alone by [`partition_key`]. The guest SDK lays table keys out as
//! `table 0x00 CLASS encoded-key`, where the class byte says how long the
//! key's first component is, so the partition key of a table row is its
//! first key component (a TPC-C row's warehouse id, a bank row's account
//! id). Any other key is its own partition key. Because the rule looks at
//! nothing but the key, it is the same on every node and for every number
//! of executor threads.
//!
//! Partition keys hash to one of [`SLOTS`] fixed slots. A slot is the unit
//! of storage, locking and instance history: it has its own state store
//! and its own wasm instances, and executor threads own whole slots. The
//! number of slots never changes, so neither does anything a transaction
//! can observe when the number of threads does.

use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64;

use crate::outcome::{Abort, AbortKind};
use crate::state::Bytes;

/// Slots the state is split into. Executor threads own slots, so this is
/// also the most threads that can execute in parallel.
pub const SLOTS: usize = 16;

/// Largest number of partition keys one transaction may declare.
pub const DECLARED_PARTITIONS_MAX: usize = 4096;

/// The partition key of a raw key: the first key component of a table
/// key (`table 0x00 CLASS encoded-key`), or else the whole key. The rule
/// is the ABI's (`ordo_schema::abi::partition_key`), which the guest SDK
/// declares partitions by.
pub use ordo_schema::abi::partition_key;

/// The slot a partition key lives in.
pub fn slot_of_partition(partition_key: &[u8]) -> usize {
    (xxh3_64(partition_key) % SLOTS as u64) as usize
}

/// The slot a raw key lives in.
pub fn slot_of_key(raw: &[u8]) -> usize {
    slot_of_partition(partition_key(raw))
}

/// Thread 0's share of the slots, relative to another thread's: it also
/// plans every entry (the exactly-once check, declarations) and hands
/// every answer out. 0.6 gives it 6 of the 16 slots at N = 2; measured
/// against 0.4, 0.8 and 1.0 (5, 7 and 8 slots) with `cargo bench --bench
/// partitions` (docs/BENCHMARKS.md, "Thread 0's share").
const DISPATCHER_SHARE: f64 = 0.6;

/// The executor thread that owns `slot` when there are `partitions`
/// threads. Thread 0 owns fewer slots than the others
/// (`DISPATCHER_SHARE`). Which thread runs a transaction is never observable,
/// so this only balances the load.
pub fn thread_of_slot(slot: usize, partitions: usize) -> usize {
    assert!((1..=SLOTS).contains(&partitions) && slot < SLOTS);
    if partitions == 1 {
        return 0;
    }
    // Thread 0 takes the first `first` slots; the rest go round the others.
    let shares = DISPATCHER_SHARE + (partitions - 1) as f64;
    let first = ((SLOTS as f64 * DISPATCHER_SHARE / shares).round() as usize).max(1);
    if slot < first {
        0
    } else {
        1 + (slot - first) % (partitions - 1)
    }
}

/// A set of slots, as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotSet(u16);

const _: () = assert!(SLOTS <= u16::BITS as usize);

impl SlotSet {
    pub const ALL: SlotSet = SlotSet(u16::MAX >> (u16::BITS as usize - SLOTS));

    pub fn insert(&mut self, slot: usize) {
        self.0 |= 1 << slot;
    }

    pub fn contains(self, slot: usize) -> bool {
        self.0 & (1 << slot) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as a bit mask, slot `s` at bit `s`.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The lowest slot, where a transaction's instance lives.
    pub fn first(self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize)
    }

    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..SLOTS).filter(move |&slot| self.contains(slot))
    }
}

/// The partition keys of a declaration, each with its slot: inline up
/// to two (a transfer's), so that a declaration made on one executor
/// thread and dropped on another frees nothing across threads.
pub type DeclaredKeys = SmallVec<[(Bytes, u8); 2]>;

/// What a transaction may touch: every partition, or the sorted,
/// duplicate-free partition keys it declared, each with its slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Declared {
    All,
    Partitions(DeclaredKeys),
}

/// Up to this many declared keys, a linear search beats a binary one.
const LINEAR_SEARCH_MAX: usize = 8;

impl Declared {
    /// The partition keys a declaration returned, decoded from the
    /// `ordo_keys_*` result: `u32 LE count`, then per key `u32 LE length`
    /// and its bytes. Sorted and deduplicated here too, whatever the guest
    /// did, so the set's meaning never depends on the guest's order.
    pub fn decode(bytes: &[u8], key_bytes_max: usize) -> Result<Declared, Abort> {
        let malformed = |what: &str| {
            Abort::new(
                AbortKind::Trap,
                format!("the partition declaration returned a malformed list: {what}"),
            )
        };
        let mut input = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = input.split_at_checked(n)?;
            input = tail;
            Some(head)
        };
        let count = take(4).ok_or_else(|| malformed("no count"))?;
        let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
        if count > DECLARED_PARTITIONS_MAX {
            return Err(Abort::new(
                AbortKind::LimitExceeded,
                format!(
                    "the procedure declared {count} partitions, over the limit of {DECLARED_PARTITIONS_MAX}; declare nothing to run over all partitions"
                ),
            ));
        }
        let mut keys = DeclaredKeys::with_capacity(count);
        for _ in 0..count {
            let len = take(4).ok_or_else(|| malformed("a length is cut short"))?;
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            if len > key_bytes_max {
                return Err(Abort::new(
                    AbortKind::LimitExceeded,
                    format!(
                        "a declared partition key of {len} bytes is over the {key_bytes_max}-byte key limit"
                    ),
                ));
            }
            let key = take(len).ok_or_else(|| malformed("a key is cut short"))?;
            keys.push((Bytes::from_slice(key), slot_of_partition(key) as u8));
        }
        if !input.is_empty() {
            return Err(malformed("bytes after the last key"));
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(Declared::Partitions(keys))
    }

    /// The slot of `partition_key` if the declaration allows it.
    pub fn slot_if_allowed(&self, partition_key: &[u8]) -> Option<usize> {
        match self {
            Declared::All => Some(slot_of_partition(partition_key)),
            Declared::Partitions(keys) if keys.len() <= LINEAR_SEARCH_MAX => keys
                .iter()
                .find(|(key, _)| key.as_slice() == partition_key)
                .map(|&(_, slot)| slot as usize),
            Declared::Partitions(keys) => keys
                .binary_search_by(|(key, _)| key.as_slice().cmp(partition_key))
                .ok()
                .map(|index| keys[index].1 as usize),
        }
    }

    pub fn allows(&self, partition_key: &[u8]) -> bool {
        match self {
            Declared::All => true,
            Declared::Partitions(_) => self.slot_if_allowed(partition_key).is_some(),
        }
    }

    /// The slots the declared partitions live in.
    pub fn slots(&self) -> SlotSet {
        match self {
            Declared::All => SlotSet::ALL,
            Declared::Partitions(keys) => {
                let mut slots = SlotSet::default();
                for &(_, slot) in keys {
                    slots.insert(slot as usize);
                }
                slots
            }
        }
    }
}

/// A declaration the host can evaluate itself: every declared partition
/// is a bare parameter of a simple type (`#[procedure(partitions(from,
/// to))]` with `from: u64`), so its partition key can be read from the
/// arguments without calling into the module. This matters: the
/// declaration runs, on the dispatching thread, before every call.
///
/// It must agree with the module's own declaration whenever it answers;
/// when in doubt (arguments it cannot decode, an oversized key) it answers
/// `None` and the engine calls the module's declaration, which also
/// produces the exact abort the module would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FastDeclaration {
    /// Names and types of the parameters up to the last declared one.
    params: Vec<(String, SimpleType)>,
    /// Indices of the declared parameters.
    declared: Vec<usize>,
}

/// Parameter types whose encodings the host reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SimpleType {
    Unsigned(u8),
    Signed(u8),
    Bool,
    Str,
}

impl SimpleType {
    fn parse(name: &str) -> Option<SimpleType> {
        Some(match name {
            "u8" => SimpleType::Unsigned(1),
            "u16" => SimpleType::Unsigned(2),
            "u32" => SimpleType::Unsigned(4),
            "u64" => SimpleType::Unsigned(8),
            "i8" => SimpleType::Signed(1),
            "i16" => SimpleType::Signed(2),
            "i32" => SimpleType::Signed(4),
            "i64" => SimpleType::Signed(8),
            "bool" => SimpleType::Bool,
            "String" => SimpleType::Str,
            _ => return None,
        })
    }
}

/// One decoded argument.
enum Arg<'a> {
    Unsigned(u64),
    Signed(i64),
    Bool(bool),
    Str(&'a [u8]),
}

impl FastDeclaration {
    /// `None` unless every parameter up to the last declared one has a
    /// simple type.
    pub fn new(params: &[(String, String)], declared: &[usize]) -> Option<FastDeclaration> {
        let last = *declared.iter().max()?;
        let params = params
            .get(..=last)?
            .iter()
            .map(|(name, ty)| Some((name.clone(), SimpleType::parse(ty)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(FastDeclaration {
            params,
            declared: declared.to_vec(),
        })
    }

    /// The declaration for these arguments, or `None` to ask the module.
    pub fn evaluate(&self, args: &[u8], json: bool, key_bytes_max: usize) -> Option<Declared> {
        if json {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(args).ok()?;
            let values = self
                .params
                .iter()
                .map(|(name, ty)| json_arg(object.get(name)?, *ty))
                .collect::<Option<SmallVec<[Arg<'_>; 4]>>>()?;
            return self.declare(&values, key_bytes_max);
        }
        let mut values: SmallVec<[Arg<'_>; 4]> = SmallVec::new();
        let mut input = args;
        for (_, ty) in &self.params {
            values.push(postcard_arg(&mut input, *ty)?);
        }
        self.declare(&values, key_bytes_max)
    }

    fn declare(&self, values: &[Arg<'_>], key_bytes_max: usize) -> Option<Declared> {
        let mut keys = DeclaredKeys::with_capacity(self.declared.len());
        for &index in &self.declared {
            let (_, ty) = self.params[index];
            let key = partition_key_of(&values[index], ty);
            if key.len() > key_bytes_max {
                return None;
            }
            let slot = slot_of_partition(&key) as u8;
            keys.push((key, slot));
        }
        keys.sort_unstable();
        keys.dedup();
        Some(Declared::Partitions(keys))
    }
}

/// The partition key of a value used as a table key's first component:
/// its order-preserving encoding (docs/ABI.md).
fn partition_key_of(value: &Arg<'_>, ty: SimpleType) -> Bytes {
    match (value, ty) {
        (Arg::Unsigned(v), SimpleType::Unsigned(width)) => {
            Bytes::from_slice(&v.to_be_bytes()[8 - width as usize..])
        }
        (Arg::Signed(v), SimpleType::Signed(width)) => {
            let bits = u32::from(width) * 8;
            let flipped = (*v as u64 ^ (1u64 << (bits - 1))) & (u64::MAX >> (64 - bits));
            Bytes::from_slice(&flipped.to_be_bytes()[8 - width as usize..])
        }
        (Arg::Bool(v), _) => Bytes::from_slice(&[*v as u8]),
        (Arg::Str(bytes), _) => {
            let mut key = Bytes::with_capacity(bytes.len() + 2);
            for &byte in *bytes {
                key.push(byte);
                if byte == 0 {
                    key.push(0xFF);
                }
            }
            key.extend_from_slice(&[0, 0]);
            key
        }
        _ => unreachable!("values are decoded by their declared type"),
    }
}

/// Decodes one postcard value of a simple type from the front of `input`.
fn postcard_arg<'a>(input: &mut &'a [u8], ty: SimpleType) -> Option<Arg<'a>> {
    Some(match ty {
        SimpleType::Unsigned(1) => Arg::Unsigned(u64::from(take_byte(input)?)),
        SimpleType::Signed(1) => Arg::Signed(i64::from(take_byte(input)? as i8)),
        SimpleType::Unsigned(width) => Arg::Unsigned(varint(input, width)?),
        SimpleType::Signed(width) => {
            let zigzag = varint(input, width)?;
            Arg::Signed((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
        }
        SimpleType::Bool => match take_byte(input)? {
            0 => Arg::Bool(false),
            1 => Arg::Bool(true),
            _ => return None,
        },
        SimpleType::Str => {
            // A length is a usize: 32 bits in a wasm32 guest.
            let len = varint(input, 4)? as usize;
            let (bytes, rest) = input.split_at_checked(len)?;
            std::str::from_utf8(bytes).ok()?;
            *input = rest;
            Arg::Str(bytes)
        }
    })
}

fn take_byte(input: &mut &[u8]) -> Option<u8> {
    let (&byte, rest) = input.split_first()?;
    *input = rest;
    Some(byte)
}

/// A LEB128 varint of an integer `width` bytes wide, refusing anything
/// that does not fit.
fn varint(input: &mut &[u8], width: u8) -> Option<u64> {
    let bits = u32::from(width) * 8;
    let mut value: u128 = 0;
    for index in 0..bits.div_ceil(7) {
        let byte = take_byte(input)?;
        value |= u128::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return (value >> bits == 0).then_some(value as u64);
        }
    }
    None
}

fn json_arg(value: &serde_json::Value, ty: SimpleType) -> Option<Arg<'_>> {
    Some(match ty {
        SimpleType::Unsigned(width) => {
            let v = value.as_u64()?;
            (width == 8 || v >> (u32::from(width) * 8) == 0).then_some(Arg::Unsigned(v))?
        }
        SimpleType::Signed(width) => {
            let v = value.as_i64()?;
            let bits = u32::from(width) * 8;
            let fits = bits == 64 || (v >= -(1i64 << (bits - 1)) && v < (1i64 << (bits - 1)));
            fits.then_some(Arg::Signed(v))?
        }
        SimpleType::Bool => Arg::Bool(value.as_bool()?),
        SimpleType::Str => Arg::Str(value.as_str()?.as_bytes()),
    })
}

/// The abort for touching a key outside the declaration. Built from the
/// key alone, so it reads the same for any number of threads.
pub(crate) fn undeclared(key: &[u8]) -> Abort {
    Abort::new(
        AbortKind::UndeclaredPartition,
        format!(
            "key {} is in partition {}, which the procedure did not declare; declare it in #[procedure(partitions(...))], or declare nothing to run over all partitions",
            printable(key),
            printable(partition_key(key))
        ),
    )
}

/// Keys for messages: hex, cut at 64 bytes.
fn printable(bytes: &[u8]) -> String {
    const SHOWN_MAX: usize = 64;
    match bytes.get(..SHOWN_MAX) {
        Some(shown) if bytes.len() > SHOWN_MAX => {
            format!("0x{}… ({} bytes)", hex::encode(shown), bytes.len())
        }
        _ => format!("0x{}", hex::encode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table_keys_partition_by_their_first_component() {
        // Table<u64, _> "acct", key 5.
        let acct = b"acct\0\x08\0\0\0\0\0\0\0\x05";
        assert_eq!(partition_key(acct), b"\0\0\0\0\0\0\0\x05");
        // Table<(u32, u32), _>: the warehouse id is the partition key.
        let district = b"tpcc_district\0\x04\0\0\0\x07\0\0\0\x02";
        assert_eq!(partition_key(district), b"\0\0\0\x07");
        // Strings keep their escapes and terminator.
        let string = b"kv\0\x80a\0\xffb\0\0tail";
        assert_eq!(partition_key(string), b"a\0\xffb\0\0");
        // The whole class takes everything after the class byte.
        assert_eq!(partition_key(b"t\0\xffxyz"), b"xyz");
        // `()` keys share the empty partition key.
        assert_eq!(partition_key(b"config\0\0"), b"");
    }

    #[test]
    fn other_keys_are_their_own_partition() {
        for raw in [
            &b"hostile/plain"[..],
            b"t\0",
            b"t\0\x08\0\0",    // too short for its class
            b"t\0\x80abc",     // unterminated string
            b"t\0\x80a\0\x01", // bad escape
            b"t\0\x40abc",     // unknown class
            b"",
        ] {
            assert_eq!(partition_key(raw), raw, "{raw:?}");
        }
    }

    #[test]
    fn same_partition_same_slot_across_tables() {
        let warehouse = b"tpcc_warehouse\0\x04\0\0\0\x07";
        let stock = b"tpcc_stock\0\x04\0\0\0\x07\0\0\x01\x00";
        assert_eq!(slot_of_key(warehouse), slot_of_key(stock));
    }

    fn encode(keys: &[&[u8]]) -> Vec<u8> {
        let mut out = (keys.len() as u32).to_le_bytes().to_vec();
        for key in keys {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
        }
        out
    }

    #[test]
    fn declarations_decode_sorted_and_deduplicated() {
        let declared = Declared::decode(&encode(&[b"b", b"a", b"b"]), 16).unwrap();
        let slot = |key: &[u8]| slot_of_partition(key) as u8;
        assert_eq!(
            declared,
            Declared::Partitions(smallvec::smallvec![
                (Bytes::from_slice(b"a"), slot(b"a")),
                (Bytes::from_slice(b"b"), slot(b"b"))
            ])
        );
        assert!(declared.allows(b"a") && !declared.allows(b"c"));
        assert_eq!(declared.slot_if_allowed(b"b"), Some(slot(b"b") as usize));
        // Past the linear-search size, the binary search agrees.
        let many: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i, i]).collect();
        let many_refs: Vec<&[u8]> = many.iter().map(|key| key.as_slice()).collect();
        let declared = Declared::decode(&encode(&many_refs), 16).unwrap();
        for key in &many {
            assert_eq!(declared.slot_if_allowed(key), Some(slot(key) as usize));
        }
        assert_eq!(declared.slot_if_allowed(&[1, 2]), None);
        assert!(Declared::All.allows(b"anything"));
    }

    #[test]
    fn malformed_declarations_abort() {
        let mut cut = encode(&[b"abc"]);
        cut.pop();
        for (bytes, kind) in [
            (vec![1, 0], AbortKind::Trap),
            (cut, AbortKind::Trap),
            ([encode(&[b"a"]), vec![9]].concat(), AbortKind::Trap),
            (encode(&[b"too long"]), AbortKind::LimitExceeded),
            (
                ((DECLARED_PARTITIONS_MAX + 1) as u32)
                    .to_le_bytes()
                    .to_vec(),
                AbortKind::LimitExceeded,
            ),
        ] {
            assert_eq!(Declared::decode(&bytes, 4).unwrap_err().kind, kind);
        }
    }

    #[test]
    fn every_thread_owns_slots_and_thread_0_fewer() {
        for partitions in 1..=SLOTS {
            let mut owned = vec![0; partitions];
            for slot in 0..SLOTS {
                owned[thread_of_slot(slot, partitions)] += 1;
            }
            assert!(
                owned.iter().all(|&count| count >= 1),
                "{partitions}: {owned:?}"
            );
            assert!(
                owned.iter().all(|&count| count >= owned[0]),
                "{partitions}: {owned:?}"
            );
        }
        assert_eq!(
            (0..SLOTS)
                .filter(|&slot| thread_of_slot(slot, 2) == 0)
                .count(),
            6
        );
    }

    #[test]
    fn slot_sets() {
        let mut set = SlotSet::default();
        assert!(set.is_empty() && set.first().is_none());
        set.insert(9);
        set.insert(3);
        assert_eq!(set.first(), Some(3));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![3, 9]);
        assert_eq!(SlotSet::ALL.iter().count(), SLOTS);
    }

    fn fast(types: &[&str], declared: &[usize]) -> FastDeclaration {
        let params: Vec<(String, String)> = types
            .iter()
            .enumerate()
            .map(|(index, ty)| (format!("p{index}"), ty.to_string()))
            .collect();
        FastDeclaration::new(&params, declared).expect("simple types")
    }

    fn keys(declared: Declared) -> Vec<Vec<u8>> {
        match declared {
            Declared::Partitions(keys) => keys.into_iter().map(|(key, _)| key.to_vec()).collect(),
            Declared::All => panic!("a fast declaration is never All"),
        }
    }

    #[test]
    fn fast_declarations_read_postcard_and_json_arguments() {
        let declaration = fast(&["i32", "String", "u64"], &[2, 1, 0]);
        let args = postcard::to_stdvec(&(-2i32, "a\0b", 300u64)).unwrap();
        let expected = vec![
            vec![0x7F, 0xFF, 0xFF, 0xFE],
            300u64.to_be_bytes().to_vec(),
            b"a\0\xffb\0\0".to_vec(),
        ];
        let mut sorted = expected.clone();
        sorted.sort();
        assert_eq!(
            keys(declaration.evaluate(&args, false, 64).unwrap()),
            sorted
        );
        let json = br#"{"p0": -2, "p1": "a\u0000b", "p2": 300, "other": [1]}"#;
        assert_eq!(keys(declaration.evaluate(json, true, 64).unwrap()), sorted);
        // Too long a key, or undecodable arguments: ask the module.
        assert!(declaration.evaluate(&args, false, 3).is_none());
        assert!(declaration.evaluate(&args[..3], false, 64).is_none());
        assert!(
            declaration
                .evaluate(br#"{"p0": 1.5, "p1": "", "p2": 1}"#, true, 64)
                .is_none()
        );
        assert!(
            declaration
                .evaluate(br#"{"p0": 1, "p2": 1}"#, true, 64)
                .is_none()
        );
        // Out of range for the type.
        let big = postcard::to_stdvec(&(u64::MAX,)).unwrap();
        assert!(fast(&["u32"], &[0]).evaluate(&big, false, 64).is_none());
        assert_eq!(
            keys(fast(&["u64"], &[0]).evaluate(&big, false, 64).unwrap()),
            vec![vec![0xFF; 8]]
        );
        // Only simple types up to the last declared parameter.
        let params = vec![("v".to_string(), "Vec<u64>".to_string())];
        assert!(FastDeclaration::new(&params, &[0]).is_none());
        let params = vec![
            ("a".to_string(), "u8".to_string()),
            ("rest".to_string(), "Vec<u64>".to_string()),
        ];
        assert!(FastDeclaration::new(&params, &[0]).is_some());
    }

    proptest! {
        /// The host's reading of a postcard integer agrees with postcard.
        #[test]
        fn fast_declarations_decode_integers_like_postcard(
            a in any::<u64>(), b in any::<i64>(), c in any::<u16>(), d in any::<i8>(), e in any::<bool>()
        ) {
            let args = postcard::to_stdvec(&(a, b, c, d, e)).unwrap();
            let declaration = fast(&["u64", "i64", "u16", "i8", "bool"], &[0, 1, 2, 3, 4]);
            let mut expected = vec![
                a.to_be_bytes().to_vec(),
                ((b as u64) ^ (1 << 63)).to_be_bytes().to_vec(),
                c.to_be_bytes().to_vec(),
                vec![(d as u8) ^ 0x80],
                vec![e as u8],
            ];
            expected.sort();
            expected.dedup();
            prop_assert_eq!(keys(declaration.evaluate(&args, false, 64).unwrap()), expected);
        }

        /// Any bytes have a partition key, and it is a part of the key.
        #[test]
        fn partition_key_is_total(raw in proptest::collection::vec(any::<u8>(), 0..24)) {
            let partition = partition_key(&raw);
            let start = partition.as_ptr() as usize - raw.as_ptr() as usize;
            prop_assert!(start + partition.len() <= raw.len() || partition.is_empty());
            prop_assert!(slot_of_key(&raw) < SLOTS);
        }
    }
}
