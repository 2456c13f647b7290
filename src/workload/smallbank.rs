//! The SmallBank mix (Alomari et al., ICDE 2008) over the smallbank
//! example, with OLTPBench's default weights: 25% SendPayment and 15% each
//! of Amalgamate, Balance, DepositChecking, TransactSavings and WriteCheck.

use super::{Check, Generator, KeyChooser, Request, SplitMix64, Workload, chunks};

/// Customers created per load transaction.
const LOAD_CHUNK: u64 = 5_000;
const CHECKING_START: i64 = 10_000;
const SAVINGS_START: i64 = 10_000;

/// `ordo bench smallbank`: customers chosen by `keys`.
pub struct Smallbank {
    pub keys: KeyChooser,
}

impl Workload for Smallbank {
    fn name(&self) -> &'static str {
        "smallbank"
    }

    fn modules(&self) -> Vec<(&'static str, &'static [u8])> {
        vec![("smallbank", crate::modules::SMALLBANK)]
    }

    fn load(&self) -> Vec<Request> {
        chunks(self.keys.count(), LOAD_CHUNK)
            .map(|(first, count)| {
                Request::new(
                    "create_many",
                    &(first, count, CHECKING_START, SAVINGS_START),
                )
            })
            .collect()
    }

    fn generator(&self, stream: u64) -> Box<dyn Generator> {
        Box::new(SmallbankGenerator {
            keys: self.keys.clone(),
            rng: SplitMix64::new(stream),
        })
    }

    fn checks(&self) -> Vec<Check> {
        // WriteCheck moves money out (and charges overdraft penalties), so
        // no total is conserved; check the first and last customers exist.
        [0, self.keys.count() - 1]
            .into_iter()
            .map(|id| {
                Check::commits(
                    format!("customer {id} still exists"),
                    Request::new("balance", &id),
                )
            })
            .collect()
    }

    fn probes(&self) -> Vec<Request> {
        [0, self.keys.count() - 1]
            .into_iter()
            .map(|id| Request::new("balance", &id))
            .collect()
    }

    fn data(&self) -> String {
        format!("{} customers", self.keys.count())
    }
}

struct SmallbankGenerator {
    keys: KeyChooser,
    rng: SplitMix64,
}

impl Generator for SmallbankGenerator {
    fn next_request(&mut self) -> Request {
        let id = self.keys.choose(&mut self.rng);
        let amount = 1 + self.rng.below(100) as i64;
        match self.rng.below(100) {
            0..15 => {
                let (from, to) = self.keys.choose_pair(&mut self.rng);
                Request::new("amalgamate", &(from, to))
            }
            15..30 => Request::new("balance", &id),
            30..45 => Request::new("deposit_checking", &(id, amount)),
            45..70 => {
                let (from, to) = self.keys.choose_pair(&mut self.rng);
                Request::new("send_payment", &(from, to, amount))
            }
            70..85 => Request::new("transact_savings", &(id, amount)),
            _ => Request::new("write_check", &(id, amount)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_uses_every_procedure() {
        let workload = Smallbank {
            keys: KeyChooser::uniform(1000),
        };
        let mut generator = workload.generator(1);
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..10_000 {
            *seen
                .entry(generator.next_request().procedure)
                .or_insert(0u32) += 1;
        }
        assert_eq!(seen.len(), 6, "{seen:?}");
        let send_payment = seen["send_payment"];
        assert!((2_200..2_800).contains(&send_payment), "{seen:?}");
    }
}
