//! The caption metrics of the COCO caption evaluation code (pycocoevalcap 1.2) that ScanQA papers
//! report: BLEU-1..4, ROUGE-L and CIDEr, one scorer per file, plus the PTB tokenizer the official
//! ScanQA scorer runs first and the METEOR bridge (docs/evaluation.md, "ScanQA").
//!
//! Every scorer takes a corpus of [`Caption`]s (one hypothesis and one or more references per
//! item) and returns the corpus score next to the per-item scores, computed with the reference's
//! operation order so that results agree to the last few bits, not merely to a tolerance.

pub mod bleu;
pub mod cider;
pub mod meteor;
pub mod ptb;
pub mod rouge;

use crate::metrics::sqa3d_em::is_python_space;

/// One scored item: the hypothesis (the prediction) and its references (the ground truths),
/// already in the scorer's input form (e.g. PTB-tokenised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption {
    pub hypothesis: String,
    pub references: Vec<String>,
}

/// Why a corpus cannot be scored (the reference asserts on both).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NgramError {
    #[error("nothing to score: the corpus has no items")]
    EmptyCorpus,
    #[error("item {0} has no reference; every scored item needs at least one ground-truth answer")]
    NoReferences(usize),
}

/// Checks the preconditions every scorer shares.
pub(crate) fn check_corpus(corpus: &[Caption]) -> Result<(), NgramError> {
    if corpus.is_empty() {
        return Err(NgramError::EmptyCorpus);
    }
    match corpus.iter().position(|c| c.references.is_empty()) {
        Some(i) => Err(NgramError::NoReferences(i)),
        None => Ok(()),
    }
}

/// Python's `str.split()` without arguments: runs of whitespace (Python's sense) separate
/// tokens, and leading or trailing whitespace yields no empty token.
pub fn python_split(s: &str) -> Vec<&str> {
    s.split(is_python_space).filter(|t| !t.is_empty()).collect()
}

/// The mean NumPy's `np.mean` returns for a float64 vector: its pairwise sum divided by the
/// length (NaN for an empty vector, as NumPy gives with a warning).
pub fn numpy_mean(xs: &[f64]) -> f64 {
    // NumPy starts the reduction from the additive identity 0.0.
    (0.0 + numpy_pairwise_sum(xs)) / xs.len() as f64
}

/// Blocks up to this length are summed with eight interleaved accumulators; longer ones are split.
const PAIRWISE_BLOCK: usize = 128;

/// NumPy's pairwise summation of a contiguous float64 vector (exact for vectors shorter than
/// NumPy's 8192-element buffer, which covers ScanQA's 4,675 validation questions): short vectors
/// add left to right, blocks of up to 128 use eight strided partial sums combined as a tree,
/// longer vectors split in two at a multiple of eight.
fn numpy_pairwise_sum(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n < 8 {
        return xs.iter().fold(0.0, |acc, x| acc + x);
    }
    if n <= PAIRWISE_BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&xs[..8]);
        let whole = n - n % 8;
        for chunk in xs[8..whole].chunks_exact(8) {
            for (acc, x) in r.iter_mut().zip(chunk) {
                *acc += x;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &xs[whole..] {
            res += x;
        }
        return res;
    }
    let mut half = n / 2;
    half -= half % 8;
    numpy_pairwise_sum(&xs[..half]) + numpy_pairwise_sum(&xs[half..])
}

/// The n-grams of `tokens` for n = 1..=`max_n` with their counts, in the order a Python dict
/// filled by the reference's `precook` iterates them: by n, then by first occurrence.
pub(crate) fn ngram_counts<'t>(tokens: &'t [&'t str], max_n: usize) -> Vec<(&'t [&'t str], usize)> {
    let mut index: std::collections::HashMap<&[&str], usize> = std::collections::HashMap::new();
    let mut counts: Vec<(&[&str], usize)> = Vec::new();
    for n in 1..=max_n {
        for gram in tokens.windows(n) {
            match index.get(gram) {
                Some(&i) => counts[i].1 += 1,
                None => {
                    index.insert(gram, counts.len());
                    counts.push((gram, 1));
                }
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_split_drops_empty_tokens() {
        assert_eq!(python_split("  a \t b\n"), ["a", "b"]);
        assert_eq!(python_split("a\u{1c}b"), ["a", "b"]);
        assert!(python_split("").is_empty());
    }

    #[test]
    fn ngram_counts_follow_first_occurrence() {
        let tokens = ["a", "b", "a", "b"];
        let counts = ngram_counts(&tokens, 2);
        let flat: Vec<(String, usize)> = counts.iter().map(|(g, c)| (g.join(" "), *c)).collect();
        assert_eq!(flat, [("a".into(), 2), ("b".into(), 2), ("a b".into(), 2), ("b a".into(), 1)]);
    }

    #[test]
    fn pairwise_sum_matches_numpy_grouping() {
        // Below 8 elements: left to right.
        assert_eq!(numpy_mean(&[1.0, 2.0, 3.0, 4.0]), 2.5);
        // 2^53 + 1 + 1 + ... loses every one left to right (ties round to even), but the
        // eight-way block adds the ones among themselves first.
        let big = 9007199254740992.0;
        let mut xs = vec![1.0; 16];
        xs[0] = big;
        let block = numpy_pairwise_sum(&xs);
        let left_to_right = xs.iter().fold(0.0, |a, x| a + x);
        assert_eq!(left_to_right, big);
        assert_eq!(block, big + 14.0);
        assert!(numpy_mean(&[]).is_nan());
        let many: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        assert_eq!(numpy_mean(&many), 499.5);
    }
}
