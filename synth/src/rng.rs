//! The crate's own pseudo-random generator (SplitMix64): a few lines with a fixed algorithm, so a
//! seed gives the same rooms, frames and questions on every platform and in every future build.
//! Floating-point transcendental functions go through `libm` (pure Rust) for the same reason.

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a bijective 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for sub-stream `stream` of `seed` (room `i` of a run, frame `f` of a room, ...):
/// independent of how many other streams exist.
pub fn derive(seed: u64, stream: u64) -> u64 {
    mix64(mix64(seed ^ 0x5EED_0F5C_E4E5) ^ stream.wrapping_mul(GOLDEN_GAMMA).wrapping_add(0x1234_5678_9ABC_DEF1))
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: mix64(seed) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n) (n > 0); the modulo bias is below 2^-50 for the small n used here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn gauss(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(std::f64::consts::TAU * u2)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_fixed_forever() {
        // A change here changes every synthetic set ever generated, so the stream is pinned:
        // seed 0 mixes to state 0, whose first outputs are SplitMix64's published reference
        // values.
        let mut r = Rng::new(0);
        assert_eq!((r.next_u64(), r.next_u64()), (0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4));
        assert_eq!(derive(1, 2), 0x2203_4966_377e_ff52);
        assert_ne!(derive(1, 0), derive(1, 1));
        assert_ne!(derive(1, 0), derive(2, 0));
    }

    #[test]
    fn ranges_hold() {
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(r.below(3) < 3);
            assert!(r.gauss().is_finite());
        }
    }
}
