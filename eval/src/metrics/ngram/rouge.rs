//! ROUGE-L as pycocoevalcap's `Rouge` computes it.
//!
//! Tokens are the pieces of a split on the single character U+0020, so empty tokens count
//! ("a  b" has three tokens, "" has one). Per reference: the longest common subsequence length
//! ℓ, precision ℓ/|hypothesis| and recall ℓ/|reference|. The best precision and the best recall
//! are taken independently over the references (they may come from different ones), then
//! F = (1 + β²)·P·R / (R + β²·P) with β = 1.2, or 0 when either is 0. The corpus score is the
//! mean of the item scores.

use super::{check_corpus, numpy_mean, Caption, NgramError};

/// Recall weighs β² = 1.44 times as much as precision.
const BETA: f64 = 1.2;

/// ROUGE-L of a corpus and of each item.
#[derive(Debug, Clone, PartialEq)]
pub struct RougeL {
    /// Mean item score, in [0, 1].
    pub corpus: f64,
    pub per_item: Vec<f64>,
}

/// Length of the longest common subsequence of two token lists.
fn lcs_len(a: &[&str], b: &[&str]) -> usize {
    let mut previous = vec![0usize; b.len() + 1];
    let mut current = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            current[j + 1] = if x == y { previous[j] + 1 } else { previous[j + 1].max(current[j]) };
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// ROUGE-L of one hypothesis against its references (at least one).
pub fn rouge_l_item(hypothesis: &str, references: &[String]) -> f64 {
    let candidate: Vec<&str> = hypothesis.split(' ').collect();
    let mut best_precision = f64::NEG_INFINITY;
    let mut best_recall = f64::NEG_INFINITY;
    for reference in references {
        let reference: Vec<&str> = reference.split(' ').collect();
        let common = lcs_len(&reference, &candidate) as f64;
        best_precision = best_precision.max(common / candidate.len() as f64);
        best_recall = best_recall.max(common / reference.len() as f64);
    }
    if best_precision != 0.0 && best_recall != 0.0 {
        let beta2 = BETA * BETA;
        ((1.0 + beta2) * best_precision * best_recall) / (best_recall + beta2 * best_precision)
    } else {
        0.0
    }
}

/// ROUGE-L of `corpus` (every item needs at least one reference).
pub fn rouge_l(corpus: &[Caption]) -> Result<RougeL, NgramError> {
    check_corpus(corpus)?;
    let per_item: Vec<f64> = corpus.iter().map(|c| rouge_l_item(&c.hypothesis, &c.references)).collect();
    Ok(RougeL { corpus: numpy_mean(&per_item), per_item })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hand_checked_item() {
        // "On" ≠ "on": ℓ = 1, P = 1/2, R = 1/3, F = 2.44·(1/6) / (1/3 + 1.44/2).
        let f = rouge_l_item("On table", &refs(&["on the table"]));
        assert!((f - 0.386076).abs() < 1e-6, "{f}");
        let b2 = BETA * BETA;
        assert_eq!(f, ((1.0 + b2) * 0.5 * (1.0 / 3.0)) / (1.0 / 3.0 + b2 * 0.5));
    }

    #[test]
    fn precision_and_recall_are_maximised_independently() {
        // Reference 1 gives P = 1 (ℓ = 1 of 1), reference 2 gives R = 1 (ℓ = 1 of 1).
        let f = rouge_l_item("a", &refs(&["a b c d", "a"]));
        assert_eq!(f, 1.0);
        let f = rouge_l_item("a x", &refs(&["a b c d", "x"]));
        // P = 1/2 (either), R = max(1/4, 1) = 1.
        let b2 = BETA * BETA;
        assert_eq!(f, ((1.0 + b2) * 0.5 * 1.0) / (1.0 + b2 * 0.5));
    }

    #[test]
    fn split_on_single_spaces_keeps_empty_tokens() {
        // "" is one empty token and matches an empty reference exactly.
        assert_eq!(rouge_l_item("", &refs(&[""])), 1.0);
        // "a  b" = ["a", "", "b"]: all three match.
        assert_eq!(rouge_l_item("a  b", &refs(&["a  b"])), 1.0);
        assert_eq!(rouge_l_item("x", &refs(&["y"])), 0.0);
        assert_eq!(lcs_len(&["a", "b", "c", "d"], &["b", "d", "a"]), 2);
    }
}
