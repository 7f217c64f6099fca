//! Choosing the next token from logits: greedy by default; temperature, top-k and top-p
//! (nucleus) sampling with a seed for reproducible answers. Ids at or beyond the
//! tokenizer's size are untrained padding rows of the embedding table and never chosen.

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    pub max_new_tokens: usize,
    /// 0 = greedy (the reference setting of LLaVA-Video and lmms-eval).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        GenerationOptions { max_new_tokens: 128, temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplingError {
    #[error("temperature must be finite and >= 0, got {0}")]
    Temperature(f32),
    #[error("top_p must be in (0, 1], got {0}")]
    TopP(f32),
    #[error("the logits hold no usable value (all NaN or masked)")]
    NoCandidate,
}

impl GenerationOptions {
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(SamplingError::Temperature(self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplingError::TopP(self.top_p));
        }
        Ok(())
    }
}

/// A seeded sampler (SplitMix64: small, stable across platforms and versions).
#[derive(Debug, Clone)]
pub struct Sampler {
    opts: GenerationOptions,
    state: u64,
    /// Ids `>= vocab_limit` are masked.
    vocab_limit: usize,
}

impl Sampler {
    pub fn new(opts: GenerationOptions, vocab_limit: usize) -> Result<Sampler, SamplingError> {
        opts.validate()?;
        let state = opts.seed ^ 0x5DEECE66D;
        Ok(Sampler { opts, state, vocab_limit })
    }

    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next token id.
    pub fn choose(&mut self, logits: &[f32]) -> Result<u32, SamplingError> {
        let usable = &logits[..logits.len().min(self.vocab_limit)];
        if self.opts.temperature == 0.0 {
            // Greedy: the first maximum, like torch.argmax.
            let mut best: Option<(usize, f32)> = None;
            for (i, &v) in usable.iter().enumerate() {
                if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
                    best = Some((i, v));
                }
            }
            return best.map(|(i, _)| i as u32).ok_or(SamplingError::NoCandidate);
        }
        let mut cands: Vec<(usize, f64)> =
            usable.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| (i, v as f64 / self.opts.temperature as f64)).collect();
        if cands.is_empty() {
            return Err(SamplingError::NoCandidate);
        }
        cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.opts.top_k > 0 {
            cands.truncate(self.opts.top_k);
        }
        let max = cands[0].1;
        let mut probs: Vec<f64> = cands.iter().map(|(_, v)| (v - max).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.opts.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.opts.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        let r = self.uniform();
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if r < acc {
                return Ok(cands[i].0 as u32);
            }
        }
        Ok(cands[probs.len() - 1].0 as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum_and_masks_padding() {
        let mut s = Sampler::new(GenerationOptions::default(), 4).unwrap();
        assert_eq!(s.choose(&[0.1, 3.0, 3.0, -1.0, 99.0]).unwrap(), 1);
        assert_eq!(s.choose(&[f32::NAN, 0.0, f32::NAN, -5.0]).unwrap(), 1);
        assert_eq!(s.choose(&[f32::NAN; 4]), Err(SamplingError::NoCandidate));
    }

    #[test]
    fn sampling_is_reproducible_and_respects_top_k_and_top_p() {
        let logits = [2.0, 1.0, 0.5, 0.0, -1.0];
        let opts = GenerationOptions { temperature: 1.0, seed: 7, ..GenerationOptions::default() };
        let draw = |o: &GenerationOptions| {
            let mut s = Sampler::new(o.clone(), 5).unwrap();
            (0..200).map(|_| s.choose(&logits).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(&opts), draw(&opts));
        let all = draw(&opts);
        assert!(all.iter().any(|&t| t >= 2), "full sampling reaches unlikely tokens");
        let top2 = draw(&GenerationOptions { top_k: 2, ..opts.clone() });
        assert!(top2.iter().all(|&t| t < 2));
        // p(0) = 0.53 < 0.6 <= p(0) + p(1): the nucleus is {0, 1}.
        let nucleus = draw(&GenerationOptions { top_p: 0.6, ..opts.clone() });
        assert!(nucleus.iter().all(|&t| t < 2) && nucleus.contains(&1));
        // Another seed gives another sequence.
        assert_ne!(draw(&GenerationOptions { seed: 8, ..opts }), all);
    }

    #[test]
    fn invalid_options_are_rejected() {
        let bad = |o: GenerationOptions| Sampler::new(o, 10).unwrap_err();
        assert_eq!(bad(GenerationOptions { temperature: -1.0, ..Default::default() }), SamplingError::Temperature(-1.0));
        assert_eq!(bad(GenerationOptions { top_p: 0.0, ..Default::default() }), SamplingError::TopP(0.0));
        assert!(matches!(bad(GenerationOptions { temperature: f32::NAN, ..Default::default() }), SamplingError::Temperature(_)));
    }
}
