//! The transfer workload (SpacetimeDB's keynote benchmark): move one
//! unit between two distinct accounts of the bank example, with a balance
//! check; the sum of all balances must not change.

use ordo_engine::partition::thread_of_slot;

use super::{Check, Expect, Generator, KeyChooser, Request, SplitMix64, Workload, chunks};

/// Picks transfers uniformly. Seeded, so `ordo quickstart` repeats exactly
/// (and prints the same final state hash) for the same arguments.
pub struct TransferPicker {
    rng: SplitMix64,
    accounts: u64,
    /// Set for [`TransferPicker::by_slot`].
    slots: Option<SlotPairs>,
}

/// Accounts grouped by the engine slot they live in.
struct SlotPairs {
    accounts_by_slot: Vec<Vec<u64>>,
    cross_fraction: f64,
    partitions: usize,
}

/// The raw key of account `id` of the bank example: its table `acct`, the
/// separator, the class byte of a `u64` key, and the id big-endian.
pub fn bank_account_key(id: u64) -> Vec<u8> {
    let mut key = b"acct\0\x08".to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl TransferPicker {
    /// # Panics
    /// With fewer than two accounts there is no transfer to pick.
    pub fn new(seed: u64, accounts: u64) -> TransferPicker {
        assert!(accounts >= 2, "transfers need at least two accounts");
        TransferPicker {
            rng: SplitMix64::new(seed),
            accounts,
            slots: None,
        }
    }

    /// Transfers between two accounts in the same engine slot, so a
    /// transaction runs on one partition thread whatever their number;
    /// except a `cross_fraction` of them, whose accounts are in slots that
    /// different threads own when there are `partitions` threads. For
    /// measuring partitioned execution.
    ///
    /// # Panics
    /// If some slot holds fewer than two accounts (use more accounts), or
    /// `cross_fraction` is not within `0..=1`.
    pub fn by_slot(
        seed: u64,
        accounts: u64,
        cross_fraction: f64,
        partitions: usize,
    ) -> TransferPicker {
        assert!((0.0..=1.0).contains(&cross_fraction));
        let mut accounts_by_slot = vec![Vec::new(); ordo_engine::SLOTS];
        for id in 0..accounts {
            accounts_by_slot[ordo_engine::partition::slot_of_key(&bank_account_key(id))].push(id);
        }
        assert!(
            accounts_by_slot.iter().all(|ids| ids.len() >= 2),
            "every slot needs two accounts; use more accounts"
        );
        TransferPicker {
            slots: Some(SlotPairs {
                accounts_by_slot,
                cross_fraction,
                partitions,
            }),
            ..TransferPicker::new(seed, accounts)
        }
    }

    /// `(from, to)`, two distinct account ids below `accounts`.
    pub fn next_pair(&mut self) -> (u64, u64) {
        if let Some(slots) = &self.slots {
            let rng = &mut self.rng;
            let pick = |rng: &mut SplitMix64, slot: usize| {
                let ids = &slots.accounts_by_slot[slot];
                ids[rng.below(ids.len() as u64) as usize]
            };
            let slot_count = ordo_engine::SLOTS as u64;
            let from_slot = rng.below(slot_count) as usize;
            let from = pick(rng, from_slot);
            if rng.unit() < slots.cross_fraction {
                let thread = |slot| thread_of_slot(slot, slots.partitions);
                let elsewhere: Vec<usize> = (0..ordo_engine::SLOTS)
                    .filter(|&slot| thread(slot) != thread(from_slot))
                    .collect();
                let to_slot = elsewhere[rng.below(elsewhere.len() as u64) as usize];
                return (from, pick(rng, to_slot));
            }
            loop {
                let to = pick(rng, from_slot);
                if to != from {
                    return (from, to);
                }
            }
        }
        let from = self.rng.next_u64() % self.accounts;
        let to = (from + 1 + self.rng.next_u64() % (self.accounts - 1)) % self.accounts;
        (from, to)
    }

    /// The postcard arguments of the bank example's
    /// `transfer {from, to, amount}`.
    pub fn transfer_args(&mut self, amount: i64) -> Vec<u8> {
        let (from, to) = self.next_pair();
        postcard::to_stdvec(&(from, to, amount)).expect("encoding into a Vec cannot fail")
    }
}

/// Accounts opened per load transaction.
const LOAD_CHUNK: u64 = 10_000;
/// Accounts summed per call of the check (`total_range`): a read costs
/// far less fuel than a write, and `total` over a million accounts ran
/// out of it, so the check sums in pages.
pub const CHECK_PAGE: u64 = 20_000;

/// `ordo bench transfer`: `accounts` accounts holding `balance` each;
/// every request moves 1 unit between two distinct accounts chosen by
/// `keys` (uniform or Zipf).
pub struct Transfer {
    pub keys: KeyChooser,
    pub balance: i64,
}

impl Transfer {
    /// # Panics
    /// With fewer than two accounts.
    pub fn new(keys: KeyChooser, balance: i64) -> Transfer {
        assert!(keys.count() >= 2, "transfers need at least two accounts");
        Transfer { keys, balance }
    }
}

impl Workload for Transfer {
    fn name(&self) -> &'static str {
        "transfer"
    }

    fn modules(&self) -> Vec<(&'static str, &'static [u8])> {
        vec![("bank", crate::modules::BANK)]
    }

    fn load(&self) -> Vec<Request> {
        chunks(self.keys.count(), LOAD_CHUNK)
            .map(|(first, count)| Request::new("open_many", &(first, count, self.balance)))
            .collect()
    }

    fn generator(&self, stream: u64) -> Box<dyn Generator> {
        Box::new(TransferGenerator {
            keys: self.keys.clone(),
            rng: SplitMix64::new(stream),
        })
    }

    fn checks(&self) -> Vec<Check> {
        let accounts = self.keys.count();
        let sum = accounts as i64 * self.balance;
        vec![Check {
            what: format!("money is conserved: accounts 0..{accounts} hold {sum} in total"),
            requests: chunks(accounts, CHECK_PAGE)
                .map(|(first, count)| Request::new("total_range", &(first, count)))
                .collect(),
            expect: Expect::PagedSum {
                sum,
                count: accounts,
            },
        }]
    }

    fn probes(&self) -> Vec<Request> {
        [0, self.keys.count() - 1]
            .into_iter()
            .map(|id| Request::new("balance", &id))
            .collect()
    }

    fn data(&self) -> String {
        format!(
            "{} accounts holding {} each",
            self.keys.count(),
            self.balance
        )
    }
}

struct TransferGenerator {
    keys: KeyChooser,
    rng: SplitMix64,
}

impl Generator for TransferGenerator {
    fn next_request(&mut self) -> Request {
        let (from, to) = self.keys.choose_pair(&mut self.rng);
        Request::new("transfer", &(from, to, 1i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_distinct_and_in_range() {
        let mut picker = TransferPicker::new(7, 3);
        for _ in 0..1000 {
            let (from, to) = picker.next_pair();
            assert!(from < 3 && to < 3 && from != to);
        }
    }

    #[test]
    fn slot_pairs_share_a_slot_except_the_cross_fraction() {
        use ordo_engine::partition::slot_of_key;
        let slot = |id| slot_of_key(&bank_account_key(id));
        let mut picker = TransferPicker::by_slot(3, 1_000, 0.25, 2);
        let mut cross = 0;
        for _ in 0..4_000 {
            let (from, to) = picker.next_pair();
            assert!(from < 1_000 && to < 1_000 && from != to);
            if slot(from) != slot(to) {
                assert_ne!(thread_of_slot(slot(from), 2), thread_of_slot(slot(to), 2));
                cross += 1;
            }
        }
        assert!((800..1_200).contains(&cross), "{cross} of 4000 crossed");
    }

    #[test]
    fn the_money_check_sums_every_account_in_pages() {
        let workload = Transfer::new(KeyChooser::uniform(45_000), 10);
        let [check] = &workload.checks()[..] else {
            panic!("one check")
        };
        let pages: Vec<(u64, u64)> = check
            .requests
            .iter()
            .map(|request| postcard::from_bytes(&request.args).unwrap())
            .collect();
        assert_eq!(pages, [(0, 20_000), (20_000, 20_000), (40_000, 5_000)]);
        let answer = |sum: i64, count: u64| postcard::to_stdvec(&(sum, count)).unwrap();

        // Balances moved between pages still add up.
        let right = [
            answer(200_007, 20_000),
            answer(199_993, 20_000),
            answer(50_000, 5_000),
        ];
        check.judge(&right).unwrap();
        // One unit minted, or an account missing, is caught.
        let minted = [
            answer(200_008, 20_000),
            answer(199_993, 20_000),
            answer(50_000, 5_000),
        ];
        let failure = check.judge(&minted).unwrap_err();
        assert!(
            failure.contains("sum to 450001 over 45000 entries, expected 450000 over 45000"),
            "{failure}"
        );
        let missing = [
            answer(200_000, 19_999),
            answer(200_000, 20_000),
            answer(50_000, 5_000),
        ];
        assert!(check.judge(&missing).is_err());
        // Not a page's answer, or too few answers.
        assert!(check.judge(&[vec![], vec![], vec![]]).is_err());
        assert!(check.judge(&right[..2]).is_err());
    }

    #[test]
    fn load_opens_every_account_once() {
        let workload = Transfer::new(KeyChooser::uniform(25_001), 10);
        let load = workload.load();
        assert_eq!(load.len(), 3);
        let last: (u64, u64, i64) = postcard::from_bytes(&load[2].args).unwrap();
        assert_eq!(last, (20_000, 5_001, 10));
    }
}
