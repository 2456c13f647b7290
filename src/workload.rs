//! Load generation shared by `ordo quickstart` and the benches: the
//! transfer workload of DESIGN.md, one unit between two distinct accounts
//! chosen uniformly. Seeded, so a run can be repeated exactly.

/// Picks transfers with SplitMix64 (tiny, fast, and good enough to spread
/// load; never used inside a transaction, where randomness comes from the
/// log).
pub struct TransferPicker {
    state: u64,
    accounts: u64,
}

impl TransferPicker {
    /// # Panics
    /// With fewer than two accounts there is no transfer to pick.
    pub fn new(seed: u64, accounts: u64) -> TransferPicker {
        assert!(accounts >= 2, "transfers need at least two accounts");
        TransferPicker {
            state: seed,
            accounts,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `(from, to)`, two distinct account ids below `accounts`.
    pub fn next_pair(&mut self) -> (u64, u64) {
        let from = self.next_u64() % self.accounts;
        let to = (from + 1 + self.next_u64() % (self.accounts - 1)) % self.accounts;
        (from, to)
    }

    /// The postcard arguments of the bank example's
    /// `transfer {from, to, amount}`.
    pub fn transfer_args(&mut self, amount: i64) -> Vec<u8> {
        let (from, to) = self.next_pair();
        postcard::to_stdvec(&(from, to, amount)).expect("encoding into a Vec cannot fail")
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
}
