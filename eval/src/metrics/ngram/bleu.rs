//! Corpus BLEU-1..4 as pycocoevalcap's `Bleu` computes it (option "closest").
//!
//! Tokens are Python `str.split()` pieces. Per item and n = 1..4: `guess_n` = hypothesis n-gram
//! positions, `correct_n` = Σ over distinct hypothesis n-grams of min(count in the hypothesis,
//! largest count in any single reference); the item's reference length is the one closest to
//! the hypothesis length (ties: the shorter). The corpus sums all four and both lengths, and
//! BLEU-N = (Π_{n≤N} (correct_n + 1e-15) / (guess_n + 1e-9))^(1/N) · BP, with the brevity
//! penalty BP = exp(1 − 1/ρ) when ρ = (hyp length + 1e-15) / (ref length + 1e-9) is below 1.
//! The smoothing keeps BLEU-3/4 small but non-zero when nothing matches, and makes ρ slightly
//! below 1 even when the lengths are equal.

use std::collections::HashMap;

use super::{check_corpus, ngram_counts, python_split, Caption, NgramError};

/// Added to the matched n-gram counts and to the hypothesis length.
const TINY: f64 = 1e-15;
/// Added to the n-gram position counts and to the reference length.
const SMALL: f64 = 1e-9;
/// BLEU-1..4.
const MAX_N: usize = 4;

/// BLEU-1..4 of a corpus and of each item on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Bleu {
    /// `[BLEU-1, BLEU-2, BLEU-3, BLEU-4]` over the corpus, in [0, 1].
    pub corpus: [f64; MAX_N],
    /// The same four numbers per item, in corpus order.
    pub per_item: Vec<[f64; MAX_N]>,
}

/// The counts BLEU is made of; an item's, or summed over the corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    hypothesis_len: usize,
    reference_len: usize,
    guess: [usize; MAX_N],
    correct: [usize; MAX_N],
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.hypothesis_len += other.hypothesis_len;
        self.reference_len += other.reference_len;
        for n in 0..MAX_N {
            self.guess[n] += other.guess[n];
            self.correct[n] += other.correct[n];
        }
    }

    /// BLEU-1..4 from the counts: a running product of smoothed precisions, its (n+1)-th root,
    /// then the brevity penalty.
    fn bleu(&self) -> [f64; MAX_N] {
        let mut product = 1.0f64;
        let mut scores: [f64; MAX_N] = std::array::from_fn(|n| {
            product *= (self.correct[n] as f64 + TINY) / (self.guess[n] as f64 + SMALL);
            product.powf(1.0 / (n + 1) as f64)
        });
        let ratio = (self.hypothesis_len as f64 + TINY) / (self.reference_len as f64 + SMALL);
        if ratio < 1.0 {
            let penalty = (1.0 - 1.0 / ratio).exp();
            for s in &mut scores {
                *s *= penalty;
            }
        }
        scores
    }
}

/// The counts of one item.
fn item_counts(caption: &Caption) -> Counts {
    let hypothesis = python_split(&caption.hypothesis);
    let references: Vec<Vec<&str>> = caption.references.iter().map(|r| python_split(r)).collect();
    let mut max_reference_count: HashMap<&[&str], usize> = HashMap::new();
    for reference in &references {
        for (gram, count) in ngram_counts(reference, MAX_N) {
            let entry = max_reference_count.entry(gram).or_insert(0);
            *entry = (*entry).max(count);
        }
    }
    let mut counts = Counts { hypothesis_len: hypothesis.len(), ..Counts::default() };
    for n in 0..MAX_N {
        counts.guess[n] = hypothesis.len().saturating_sub(n);
    }
    for (gram, count) in ngram_counts(&hypothesis, MAX_N) {
        counts.correct[gram.len() - 1] += count.min(max_reference_count.get(gram).copied().unwrap_or(0));
    }
    // `min` over (distance, length) pairs: the closest length, the shorter one on a tie.
    counts.reference_len = references.iter().map(|r| (r.len().abs_diff(hypothesis.len()), r.len())).min().map_or(0, |(_, len)| len);
    counts
}

/// BLEU-1..4 of `corpus` (every item needs at least one reference).
pub fn bleu(corpus: &[Caption]) -> Result<Bleu, NgramError> {
    check_corpus(corpus)?;
    let mut total = Counts::default();
    let mut per_item = Vec::with_capacity(corpus.len());
    for caption in corpus {
        let counts = item_counts(caption);
        per_item.push(counts.bleu());
        total.add(&counts);
    }
    Ok(Bleu { corpus: total.bleu(), per_item })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caption(h: &str, refs: &[&str]) -> Caption {
        Caption { hypothesis: h.into(), references: refs.iter().map(|r| r.to_string()).collect() }
    }

    #[test]
    fn hand_checked_bleu_1() {
        // C1 = 4, G1 = 6, T = 6, L = 2 + 3 + 2 = 7: BLEU-1 = (4/6)·e^(1 − 7/6), up to the smoothing.
        let corpus =
            [caption("brown chair", &["brown wooden chair", "brown chair"]), caption("On table", &["on the table"]), caption("black chair", &["white chair"])];
        let b = bleu(&corpus).unwrap();
        let expected = (4.0 / 6.0) * (-1.0f64 / 6.0).exp();
        assert!((b.corpus[0] - expected).abs() < 1e-9, "{}", b.corpus[0]);
    }

    #[test]
    fn closest_reference_length_prefers_the_shorter_on_a_tie() {
        // |h| = 2, references of length 1 and 3: both at distance 1, the shorter (1) is used,
        // so there is no brevity penalty.
        let c = caption("a b", &["a", "a b c"]);
        assert_eq!(item_counts(&c).reference_len, 1);
        let b = bleu(&[c]).unwrap();
        assert_eq!(b.corpus[0], (2.0 + TINY) / (2.0 + SMALL));
    }

    #[test]
    fn clipping_uses_the_largest_count_in_a_single_reference() {
        let c = caption("the the the", &["the cat", "the the dog"]);
        assert_eq!(item_counts(&c).correct[0], 2);
    }

    #[test]
    fn equal_lengths_still_pay_a_tiny_brevity_penalty() {
        let b = bleu(&[caption("a b", &["a b"])]).unwrap();
        assert!(b.corpus[0] < 1.0 && b.corpus[0] > 1.0 - 1e-9, "{}", b.corpus[0]);
    }

    #[test]
    fn empty_hypothesis_and_bad_corpora() {
        let b = bleu(&[caption("", &["a"])]).unwrap();
        assert_eq!(b.per_item[0], [0.0; 4]);
        assert_eq!(bleu(&[]), Err(NgramError::EmptyCorpus));
        assert_eq!(bleu(&[caption("a", &["a"]), caption("a", &[])]), Err(NgramError::NoReferences(1)));
    }
}
