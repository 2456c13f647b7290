//! Seeded choice of keys: uniform, or Zipf-skewed like YCSB's "zipfian"
//! request distribution.

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, and good enough
/// to spread load. Only ever used to choose requests on the client side.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`), without modulo bias worth
    /// mentioning (Lemire's multiply-shift).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Chooses keys in `0..count`: uniformly, or with Zipf skew where the
/// `i`-th most popular key (from 1) is drawn with probability proportional
/// to `1 / i^alpha`. The popular keys are scattered over the key space by
/// a fixed permutation, as YCSB's "scrambled zipfian" does, so that they
/// do not all sit next to each other (and in one partition).
#[derive(Clone, Debug)]
pub struct KeyChooser {
    count: u64,
    zipf: Option<Zipf>,
}

impl KeyChooser {
    /// Uniform over `0..count`.
    ///
    /// # Panics
    /// If `count` is 0.
    pub fn uniform(count: u64) -> KeyChooser {
        assert!(count > 0, "there must be at least one key to choose");
        KeyChooser { count, zipf: None }
    }

    /// Zipf over `0..count` with exponent `alpha`; `alpha == 0` is uniform.
    ///
    /// # Panics
    /// If `count` is 0 or `alpha` is negative or not finite.
    pub fn zipf(count: u64, alpha: f64) -> KeyChooser {
        assert!(count > 0, "there must be at least one key to choose");
        assert!(
            alpha.is_finite() && alpha >= 0.0,
            "the Zipf exponent must be a finite number >= 0, not {alpha}"
        );
        let zipf = (alpha > 0.0).then(|| Zipf::new(count, alpha));
        KeyChooser { count, zipf }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn choose(&self, rng: &mut SplitMix64) -> u64 {
        match &self.zipf {
            None => rng.below(self.count),
            Some(zipf) => scatter(zipf.sample(rng) - 1, self.count),
        }
    }

    /// Two distinct keys (`count >= 2`), e.g. the two sides of a transfer.
    pub fn choose_pair(&self, rng: &mut SplitMix64) -> (u64, u64) {
        assert!(self.count >= 2, "a pair needs at least two keys");
        let first = self.choose(rng);
        loop {
            let second = self.choose(rng);
            if second != first {
                return (first, second);
            }
        }
    }
}

/// A fixed permutation of `0..count`: multiplication by a prime larger
/// than any `count` is a bijection modulo `count`.
fn scatter(rank: u64, count: u64) -> u64 {
    const PRIME: u128 = (1 << 61) - 1;
    ((rank as u128 * PRIME) % count as u128) as u64
}

/// Zipf sampling by rejection-inversion (Hörmann and Derflinger, "Rejection-
/// inversion to generate variates from monotone discrete distributions",
/// 1996): constant memory and time for any number of keys.
#[derive(Clone, Debug)]
struct Zipf {
    count: u64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_count: f64,
    s: f64,
}

impl Zipf {
    fn new(count: u64, exponent: f64) -> Zipf {
        let mut zipf = Zipf {
            count,
            exponent,
            h_integral_x1: 0.0,
            h_integral_count: 0.0,
            s: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_count = zipf.h_integral(count as f64 + 0.5);
        zipf.s = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    /// A rank in `1..=count`.
    fn sample(&self, rng: &mut SplitMix64) -> u64 {
        loop {
            let u =
                self.h_integral_count + rng.unit() * (self.h_integral_x1 - self.h_integral_count);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.count as f64);
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    /// `h(x) = 1 / x^exponent`.
    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    /// An antiderivative of `h`.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        expm1_over_x((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (ln1p_over_x(t) * x).exp()
    }
}

/// `(e^x - 1) / x`, continuous at 0.
fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x / 2.0 * (1.0 + x / 3.0)
    }
}

/// `ln(1 + x) / x`, continuous at 0.
fn ln1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x / 3.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws `samples` ranks and compares the share of the top ranks with
    /// the exact Zipf probabilities.
    fn check_zipf(count: u64, alpha: f64) {
        let zipf = Zipf::new(count, alpha);
        let mut rng = SplitMix64::new(42);
        let samples = 200_000;
        let mut top = [0u64; 4];
        for _ in 0..samples {
            let rank = zipf.sample(&mut rng);
            assert!((1..=count).contains(&rank), "rank {rank} out of range");
            if rank <= 4 {
                top[rank as usize - 1] += 1;
            }
        }
        let norm: f64 = (1..=count).map(|i| (i as f64).powf(-alpha)).sum();
        for (index, &seen) in top.iter().enumerate() {
            let rank = index as u64 + 1;
            let expected = if rank > count {
                0.0
            } else {
                (rank as f64).powf(-alpha) / norm
            };
            let share = seen as f64 / samples as f64;
            assert!(
                (share - expected).abs() < 0.01 + expected * 0.05,
                "n={count} alpha={alpha}: rank {rank} drawn {share:.4}, expected {expected:.4}"
            );
        }
    }

    #[test]
    fn zipf_matches_the_exact_distribution() {
        check_zipf(100_000, 1.5);
        check_zipf(100_000, 0.99);
        check_zipf(1_000, 1.0);
        check_zipf(10, 0.5);
        check_zipf(2, 2.0);
    }

    #[test]
    fn scatter_is_a_permutation() {
        for count in [1u64, 2, 7, 1000, 4096] {
            let mut seen = vec![false; count as usize];
            for rank in 0..count {
                let key = scatter(rank, count);
                assert!(!seen[key as usize], "{key} hit twice for count {count}");
                seen[key as usize] = true;
            }
        }
    }

    #[test]
    fn uniform_and_pairs_stay_in_range() {
        let mut rng = SplitMix64::new(7);
        for chooser in [KeyChooser::uniform(3), KeyChooser::zipf(3, 1.5)] {
            for _ in 0..1000 {
                let (a, b) = chooser.choose_pair(&mut rng);
                assert!(a < 3 && b < 3 && a != b);
            }
        }
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[KeyChooser::uniform(4).choose(&mut rng) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn same_seed_same_keys() {
        let chooser = KeyChooser::zipf(1000, 1.2);
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..100)
                .map(|_| chooser.choose(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }
}
