//! Statistics of one activation over the calibration frames, and the three ways of choosing
//! its symmetric int8 range from them (docs/quantization.md §6.3).
//!
//! Every value seen updates the exact minimum and maximum and a histogram of magnitudes
//! `|x|` with [`BINS`] bins over `[0, range)`. The range starts at the first batch's largest
//! magnitude and doubles (adjacent bins merged pairwise, which is exact) whenever a later
//! batch goes past it, so one pass over the frames suffices and the histogram always covers
//! at least half its bins with data.

use loc3r_export::quant::Method;

/// Histogram bins (TensorRT's entropy calibration uses 2048).
pub const BINS: usize = 2048;
/// Quantization levels of one sign of int8 (codes 0..=127): the entropy method's target.
pub const LEVELS: usize = 128;

/// Running statistics of one activation.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub min: f64,
    pub max: f64,
    /// Finite values seen.
    pub count: u64,
    /// NaN or infinite values seen (a float graph that makes them is broken: refused).
    pub non_finite: u64,
    /// Counts of `|x|` per bin of width `range / BINS`; `range == 0` while every value was 0
    /// (they are counted in bin 0).
    hist: Vec<u64>,
    range: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats { min: f64::INFINITY, max: f64::NEG_INFINITY, count: 0, non_finite: 0, hist: vec![0; BINS], range: 0.0 }
    }

    /// Adds a batch of values.
    pub fn add(&mut self, values: impl IntoIterator<Item = f32> + Clone) {
        let mut amax = 0f64;
        for v in values.clone() {
            let v = f64::from(v);
            if v.is_finite() {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
                amax = amax.max(v.abs());
            }
        }
        if amax > 0.0 {
            if self.range == 0.0 {
                self.range = amax;
            }
            while self.range < amax {
                self.double_range();
            }
        }
        for v in values {
            let v = f64::from(v);
            if !v.is_finite() {
                self.non_finite += 1;
                continue;
            }
            self.count += 1;
            let bin = if self.range == 0.0 { 0 } else { ((v.abs() / self.range * BINS as f64) as usize).min(BINS - 1) };
            self.hist[bin] += 1;
        }
    }

    /// Doubles the histogram's range: bins `2i` and `2i + 1` become bin `i`.
    fn double_range(&mut self) {
        for i in 0..BINS / 2 {
            self.hist[i] = self.hist[2 * i] + self.hist[2 * i + 1];
        }
        self.hist[BINS / 2..].fill(0);
        self.range *= 2.0;
    }

    /// The largest magnitude seen (0 when nothing was).
    pub fn amax(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.min.abs().max(self.max.abs())
        }
    }

    fn bin_width(&self) -> f64 {
        self.range / BINS as f64
    }

    /// The clipping threshold `method` chooses (`percentile` is used by
    /// [`Method::Percentile`] only), never above [`Stats::amax`].
    pub fn threshold(&self, method: Method, percentile: f64) -> f64 {
        let amax = self.amax();
        if amax == 0.0 {
            return 0.0;
        }
        let t = match method {
            Method::MinMax => amax,
            Method::Percentile => self.percentile(percentile),
            Method::Entropy => self.entropy_threshold(),
        };
        t.min(amax)
    }

    /// The magnitude below which `p` percent of the values lie, interpolated linearly inside
    /// its bin.
    pub fn percentile(&self, p: f64) -> f64 {
        let target = (p / 100.0).clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0f64;
        for (i, &n) in self.hist.iter().enumerate() {
            let n = n as f64;
            if n > 0.0 && below + n >= target {
                let inside = ((target - below) / n).clamp(0.0, 1.0);
                return (i as f64 + inside) * self.bin_width();
            }
            below += n;
        }
        self.amax()
    }

    /// TensorRT's entropy calibration: for each candidate threshold at a bin edge `i ≥ 128`,
    /// the reference distribution P is the histogram below the edge with every larger value
    /// counted in its last bin (clipping), and Q is that histogram merged into 128 levels and
    /// spread back evenly over each level's non-empty bins; the threshold is the edge of least
    /// KL(P‖Q) (the largest such edge on ties). Fewer non-empty bins than levels: nothing to
    /// clip, the full range.
    pub fn entropy_threshold(&self) -> f64 {
        let used = self.hist.iter().rposition(|&n| n > 0).map_or(0, |i| i + 1);
        if used <= LEVELS {
            return self.amax();
        }
        let mut best = (f64::INFINITY, used);
        let mut p = vec![0f64; used];
        let mut q = vec![0f64; used];
        let total_above: Vec<u64> = {
            // total_above[i] = Σ hist[i..used]
            let mut t = vec![0u64; used + 1];
            for i in (0..used).rev() {
                t[i] = t[i + 1] + self.hist[i];
            }
            t
        };
        for i in LEVELS..=used {
            let hist = &self.hist[..i];
            // P: the clipped distribution.
            for (pj, &h) in p.iter_mut().zip(hist) {
                *pj = h as f64;
            }
            p[i - 1] += total_above[i] as f64;
            // Q: 128 levels over the i bins (bin j in level ⌊j·128/i⌋), each level's count
            // spread evenly over its non-empty bins.
            let mut level_sum = [0f64; LEVELS];
            let mut level_bins = [0u32; LEVELS];
            for (j, &h) in hist.iter().enumerate() {
                if h > 0 {
                    let level = j * LEVELS / i;
                    level_sum[level] += h as f64;
                    level_bins[level] += 1;
                }
            }
            for (j, &h) in hist.iter().enumerate() {
                let level = j * LEVELS / i;
                q[j] = if h > 0 { level_sum[level] / f64::from(level_bins[level]) } else { 0.0 };
            }
            let kl = kl_divergence(&p[..i], &q[..i]);
            if kl <= best.0 {
                best = (kl, i);
            }
        }
        best.1 as f64 * self.bin_width()
    }
}

/// Gives every empty bin a small count `ε` taken evenly from the others (MXNet's and TensorRT's
/// smoothing): a clipped reference has mass (the clipped values) in its last bin where the
/// quantized histogram may have none, which would make every clip infinitely bad.
fn smooth(h: &mut [f64]) {
    const EPS: f64 = 1e-4;
    let zeros = h.iter().filter(|&&v| v == 0.0).count();
    let nonzeros = h.len() - zeros;
    if zeros == 0 || nonzeros == 0 {
        return;
    }
    let take = EPS * zeros as f64 / nonzeros as f64;
    for v in h.iter_mut() {
        *v = if *v == 0.0 { EPS } else { (*v - take).max(EPS) };
    }
}

/// KL(P‖Q) of two histograms of counts of the same length, both smoothed first.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let (mut p, mut q) = (p.to_vec(), q.to_vec());
    smooth(&mut p);
    smooth(&mut q);
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    let mut kl = 0.0;
    for (&a, &b) in p.iter().zip(&q) {
        if a > 0.0 {
            if b == 0.0 {
                return f64::INFINITY;
            }
            let (a, b) = (a / sp, b / sq);
            kl += a * (a / b).ln();
        }
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic standard normal sample (Box-Muller over a 64-bit LCG).
    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut uniform = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n).map(|_| ((-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos()) as f32).collect()
    }

    #[test]
    fn minmax_is_the_largest_magnitude_of_a_known_array() {
        let mut s = Stats::new();
        s.add([0.5f32, -3.25, 2.0, 1.0]);
        s.add([-1.0f32, 0.0]);
        assert_eq!((s.min, s.max, s.count), (-3.25, 2.0, 6));
        assert_eq!(s.threshold(Method::MinMax, 99.0), 3.25);
        // A later batch past the range doubles it; the extremes stay exact.
        s.add([7.5f32]);
        assert_eq!(s.threshold(Method::MinMax, 99.0), 7.5);
        assert_eq!(s.hist.iter().sum::<u64>(), 7);
    }

    #[test]
    fn percentile_of_a_uniform_ramp_is_that_fraction_of_its_length() {
        // |x| uniform over [0, 1000): the p-th percentile is 10·p, to a bin width (~0.5).
        let ramp: Vec<f32> = (0..100_000).map(|i| i as f32 / 100.0).collect();
        let mut s = Stats::new();
        // In pieces, so the range doubles on the way (the first piece reaches 9.99 only).
        for chunk in ramp.chunks(1000) {
            s.add(chunk.iter().copied());
        }
        let width = 1000.0 * 2.0 / BINS as f64;
        for p in [50.0, 90.0, 99.0, 99.9] {
            let got = s.threshold(Method::Percentile, p);
            assert!((got - 10.0 * p).abs() <= width, "percentile {p}: {got}, expected {}", 10.0 * p);
        }
        // Signs do not matter: the range is symmetric.
        let mut neg = Stats::new();
        neg.add(ramp.iter().map(|v| -v));
        assert!((neg.threshold(Method::Percentile, 90.0) - 900.0).abs() <= width);
    }

    #[test]
    fn entropy_clips_an_outlier_of_a_gaussian_well_below_the_max() {
        let mut s = Stats::new();
        let mut x = gaussian(200_000, 7);
        x.push(100.0);
        s.add(x.iter().copied());
        let t = s.threshold(Method::Entropy, 0.0);
        assert_eq!(s.threshold(Method::MinMax, 0.0), 100.0);
        // The bulk lies within ±4.5σ; the KL threshold keeps it and drops the outlier.
        assert!((2.5..10.0).contains(&t), "entropy threshold {t}");
        let p = s.threshold(Method::Percentile, 99.99);
        assert!((3.5..4.5).contains(&p), "99.99th percentile of |N(0,1)| {p}");
    }

    #[test]
    fn entropy_keeps_the_full_range_of_a_uniform_distribution() {
        // Uniform magnitudes: every clip loses mass that 128 levels would have kept.
        let mut s = Stats::new();
        s.add((0..50_000).map(|i| (i % 1000) as f32 / 1000.0));
        let t = s.threshold(Method::Entropy, 0.0);
        assert!(t > 0.9 * s.amax(), "entropy threshold {t} of uniform [0, 1)");
    }

    #[test]
    fn all_zeros_and_non_finite_values_are_counted() {
        let mut s = Stats::new();
        s.add([0.0f32; 4]);
        assert_eq!(s.threshold(Method::Entropy, 0.0), 0.0);
        s.add([f32::NAN, 1.0]);
        assert_eq!((s.count, s.non_finite), (5, 1));
        assert_eq!(s.threshold(Method::MinMax, 0.0), 1.0);
    }
}
