//! The YCSB core workloads A, B, C and F (Cooper et al., SoCC 2010) over
//! the ycsb example:
//!
//! | mix | operations |
//! | --- | --- |
//! | A (update heavy) | 50% read, 50% update |
//! | B (read mostly) | 95% read, 5% update |
//! | C (read only) | 100% read |
//! | F (read-modify-write) | 50% read, 50% read-modify-write |
//!
//! Reads read the whole record; updates and read-modify-writes replace
//! one field, chosen uniformly, with `field_bytes` new bytes. Keys are
//! chosen by a [`KeyChooser`] (YCSB's "uniform" or "zipfian").

use super::{Check, Generator, KeyChooser, Request, SplitMix64, Workload, chunks};

/// Bytes of records per load transaction, at most (well under the 16 MiB
/// write-set limit and the fuel budget).
const LOAD_BYTES: u64 = 1 << 20;
/// Records per load transaction, at most.
const LOAD_RECORDS_MAX: u64 = 10_000;

/// Which YCSB core workload's operation mix to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YcsbMix {
    /// 50% read, 50% update.
    A,
    /// 95% read, 5% update.
    B,
    /// 100% read.
    C,
    /// 50% read, 50% read-modify-write.
    F,
}

impl YcsbMix {
    /// Percent of operations that are reads; the rest are updates (A, B)
    /// or read-modify-writes (F).
    fn read_percent(self) -> u64 {
        match self {
            YcsbMix::A | YcsbMix::F => 50,
            YcsbMix::B => 95,
            YcsbMix::C => 100,
        }
    }
}

/// `ordo bench ycsb-a` (`-b`, `-c`, `-f`): `keys.count()` records of
/// `field_count` fields of `field_bytes` bytes, keys `0..keys.count()`.
#[derive(Clone, Debug)]
pub struct Ycsb {
    pub keys: KeyChooser,
    pub mix: YcsbMix,
    pub field_count: u32,
    pub field_bytes: u32,
}

impl Ycsb {
    /// YCSB's standard records: 10 fields of 100 bytes.
    pub fn new(keys: KeyChooser, mix: YcsbMix) -> Ycsb {
        Ycsb {
            keys,
            mix,
            field_count: 10,
            field_bytes: 100,
        }
    }

    /// Records per load transaction: about 1 MiB of them, 1 to 10,000.
    pub fn records_per_load(&self) -> u64 {
        let record_bytes = u64::from(self.field_count) * u64::from(self.field_bytes);
        (LOAD_BYTES / record_bytes.max(1)).clamp(1, LOAD_RECORDS_MAX)
    }
}

impl Workload for Ycsb {
    fn name(&self) -> &'static str {
        match self.mix {
            YcsbMix::A => "ycsb-a",
            YcsbMix::B => "ycsb-b",
            YcsbMix::C => "ycsb-c",
            YcsbMix::F => "ycsb-f",
        }
    }

    fn modules(&self) -> Vec<(&'static str, &'static [u8])> {
        vec![("ycsb", crate::modules::YCSB)]
    }

    fn load(&self) -> Vec<Request> {
        chunks(self.keys.count(), self.records_per_load())
            .map(|(first, count)| {
                Request::new(
                    "ycsb_load",
                    &(first, count, self.field_count, self.field_bytes),
                )
            })
            .collect()
    }

    fn generator(&self, stream: u64) -> Box<dyn Generator> {
        Box::new(YcsbGenerator {
            ycsb: self.clone(),
            rng: SplitMix64::new(stream),
        })
    }

    fn checks(&self) -> Vec<Check> {
        // Updates change the contents, so check that the first and the last
        // record still exist (a read of a missing record aborts).
        let mut keys = vec![0, self.keys.count() - 1];
        keys.dedup();
        keys.into_iter()
            .map(|key| {
                Check::commits(
                    format!("record {key} can be read"),
                    Request::new("ycsb_read", &key),
                )
            })
            .collect()
    }

    fn probes(&self) -> Vec<Request> {
        [0, self.keys.count() - 1]
            .into_iter()
            .map(|key| Request::new("ycsb_read", &key))
            .collect()
    }

    fn data(&self) -> String {
        format!("{} records", self.keys.count())
    }
}

struct YcsbGenerator {
    ycsb: Ycsb,
    rng: SplitMix64,
}

impl YcsbGenerator {
    /// `field_bytes` random lowercase letters.
    fn value(&mut self) -> Vec<u8> {
        let len = self.ycsb.field_bytes as usize;
        let mut value = Vec::with_capacity(len);
        while value.len() < len {
            let random = self.rng.next_u64().to_le_bytes();
            let take = (len - value.len()).min(random.len());
            value.extend(random[..take].iter().map(|b| b'a' + b % 26));
        }
        value
    }
}

impl Generator for YcsbGenerator {
    fn next_request(&mut self) -> Request {
        let key = self.ycsb.keys.choose(&mut self.rng);
        if self.rng.below(100) < self.ycsb.mix.read_percent() {
            return Request::new("ycsb_read", &key);
        }
        let field = self.rng.below(self.ycsb.field_count.into()) as u32;
        let value = self.value();
        let procedure = match self.ycsb.mix {
            YcsbMix::F => "ycsb_read_modify_write",
            _ => "ycsb_update",
        };
        Request::new(procedure, &(key, field, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts each procedure over `n` requests, checking every request's
    /// key, field and value on the way.
    fn mix_counts(mix: YcsbMix, n: u32) -> std::collections::BTreeMap<&'static str, u32> {
        let ycsb = Ycsb::new(KeyChooser::zipf(1_000, 0.99), mix);
        let mut generator = ycsb.generator(5);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..n {
            let request = generator.next_request();
            *counts.entry(request.procedure).or_insert(0) += 1;
            if request.procedure == "ycsb_read" {
                let key: u64 = postcard::from_bytes(&request.args).unwrap();
                assert!(key < 1_000);
            } else {
                let (key, field, value): (u64, u32, Vec<u8>) =
                    postcard::from_bytes(&request.args).unwrap();
                assert!(key < 1_000);
                assert!(field < 10);
                assert_eq!(value.len(), 100);
                assert!(value.iter().all(u8::is_ascii_lowercase));
            }
        }
        counts
    }

    #[test]
    fn each_mix_has_its_proportions() {
        let n = 20_000;
        let a = mix_counts(YcsbMix::A, n);
        assert_eq!(a.len(), 2, "{a:?}");
        assert!((9_600..10_400).contains(&a["ycsb_read"]), "{a:?}");
        let b = mix_counts(YcsbMix::B, n);
        assert_eq!(b.len(), 2, "{b:?}");
        assert!((700..1_300).contains(&b["ycsb_update"]), "{b:?}");
        let c = mix_counts(YcsbMix::C, n);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c["ycsb_read"], n);
        let f = mix_counts(YcsbMix::F, n);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            (9_600..10_400).contains(&f["ycsb_read_modify_write"]),
            "{f:?}"
        );
    }

    #[test]
    fn load_covers_every_key_once_in_bounded_chunks() {
        let ycsb = Ycsb::new(KeyChooser::uniform(2_500), YcsbMix::A);
        assert_eq!(ycsb.records_per_load(), 1_048);
        let load = ycsb.load();
        let mut next = 0;
        for request in &load {
            assert_eq!(request.procedure, "ycsb_load");
            let (first, count, fields, bytes): (u64, u64, u32, u32) =
                postcard::from_bytes(&request.args).unwrap();
            assert_eq!((first, fields, bytes), (next, 10, 100));
            assert!(count <= 1_048);
            next += count;
        }
        assert_eq!(next, 2_500);

        let tiny = Ycsb {
            field_count: 1,
            field_bytes: 1,
            ..ycsb.clone()
        };
        assert_eq!(tiny.records_per_load(), 10_000);
        let huge = Ycsb {
            field_bytes: 1 << 20,
            ..ycsb
        };
        assert_eq!(huge.records_per_load(), 1);

        let checks = Ycsb::new(KeyChooser::uniform(2_500), YcsbMix::C).checks();
        let keys: Vec<u64> = checks
            .iter()
            .map(|check| postcard::from_bytes(&check.requests[0].args).unwrap())
            .collect();
        assert_eq!(keys, [0, 2_499]);
        assert_eq!(
            Ycsb::new(KeyChooser::uniform(1), YcsbMix::C).checks().len(),
            1
        );
    }
}
