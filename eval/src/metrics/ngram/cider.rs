//! CIDEr as pycocoevalcap's `Cider` computes it (the CIDEr-D formula: clipped n-gram weights and
//! a Gaussian length penalty).
//!
//! Tokens are Python `str.split()` pieces; n = 1..4. The document frequency df(g) of an n-gram is
//! the number of items whose references (together) contain it, counted over the items scored in
//! this call, so scoring a subset changes every weight. A sentence's vector for order n weights
//! each n-gram by count · (ln N − ln max(1, df)), N = number of items; its "length" is its number
//! of bigram positions (a quirk of the reference, not its word count). For a hypothesis h and a
//! reference r: s_n = Σ_{g ∈ h} min(v_h(g), v_r(g)) · v_r(g) / (‖v_h‖·‖v_r‖) (no division when a
//! norm is 0), times e^(−(len_h − len_r)² / 72) (σ = 6). Item score = 10 · mean over references
//! of the mean over n of s_n; corpus score = mean item score (papers print it ×100).

use std::collections::HashMap;

use super::{check_corpus, ngram_counts, numpy_mean, python_split, Caption, NgramError};

const MAX_N: usize = 4;
/// σ of the length penalty.
const SIGMA: f64 = 6.0;

/// CIDEr of a corpus and of each item.
#[derive(Debug, Clone, PartialEq)]
pub struct Cider {
    /// Mean item score (0 to 10; papers report ×100).
    pub corpus: f64,
    pub per_item: Vec<f64>,
}

/// An n-gram weight vector per order, in first-occurrence order (the order the reference sums
/// in), with an index for look-ups.
struct Vectors<'t> {
    weights: [Vec<(&'t [&'t str], f64)>; MAX_N],
    index: [HashMap<&'t [&'t str], f64>; MAX_N],
    norms: [f64; MAX_N],
    /// Bigram positions.
    length: usize,
}

/// Document frequencies over the references of the scored items.
type DocumentFrequency<'t> = HashMap<&'t [&'t str], usize>;

fn vectors<'t>(tokens: &'t [&'t str], df: &DocumentFrequency, log_items: f64) -> Vectors<'t> {
    let mut v = Vectors { weights: Default::default(), index: Default::default(), norms: [0.0; MAX_N], length: 0 };
    for (gram, count) in ngram_counts(tokens, MAX_N) {
        let n = gram.len() - 1;
        let idf = log_items - (df.get(gram).copied().unwrap_or(0) as f64).max(1.0).ln();
        let weight = count as f64 * idf;
        v.weights[n].push((gram, weight));
        v.index[n].insert(gram, weight);
        v.norms[n] += weight * weight;
        if n == 1 {
            v.length += count;
        }
    }
    for norm in &mut v.norms {
        *norm = norm.sqrt();
    }
    v
}

/// s_1..s_4 of a hypothesis against one reference.
fn similarity(h: &Vectors, r: &Vectors) -> [f64; MAX_N] {
    let delta = h.length as f64 - r.length as f64;
    let penalty = std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
    std::array::from_fn(|n| {
        let mut s = 0.0;
        for &(gram, weight) in &h.weights[n] {
            let reference_weight = r.index[n].get(gram).copied().unwrap_or(0.0);
            s += weight.min(reference_weight) * reference_weight;
        }
        if h.norms[n] != 0.0 && r.norms[n] != 0.0 {
            s /= h.norms[n] * r.norms[n];
        }
        s * penalty
    })
}

/// CIDEr of `corpus` (every item needs at least one reference).
pub fn cider(corpus: &[Caption]) -> Result<Cider, NgramError> {
    check_corpus(corpus)?;
    let hypotheses: Vec<Vec<&str>> = corpus.iter().map(|c| python_split(&c.hypothesis)).collect();
    let references: Vec<Vec<Vec<&str>>> = corpus.iter().map(|c| c.references.iter().map(|r| python_split(r)).collect()).collect();
    let mut df: DocumentFrequency = HashMap::new();
    for item_references in &references {
        let mut seen: std::collections::HashSet<&[&str]> = std::collections::HashSet::new();
        for reference in item_references {
            for (gram, _) in ngram_counts(reference, MAX_N) {
                if seen.insert(gram) {
                    *df.entry(gram).or_insert(0) += 1;
                }
            }
        }
    }
    let log_items = (corpus.len() as f64).ln();
    let per_item: Vec<f64> = hypotheses
        .iter()
        .zip(&references)
        .map(|(hypothesis, item_references)| {
            let h = vectors(hypothesis, &df, log_items);
            let mut sum = [0.0; MAX_N];
            for reference in item_references {
                let s = similarity(&h, &vectors(reference, &df, log_items));
                for n in 0..MAX_N {
                    sum[n] += s[n];
                }
            }
            numpy_mean(&sum) / item_references.len() as f64 * 10.0
        })
        .collect();
    Ok(Cider { corpus: numpy_mean(&per_item), per_item })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caption(h: &str, refs: &[&str]) -> Caption {
        Caption { hypothesis: h.into(), references: refs.iter().map(|r| r.to_string()).collect() }
    }

    #[test]
    fn hand_checked_item() {
        // Three items; "chair" is in the references of two (df 2, weight ln 3 − ln 2 = ln 1.5),
        // "black" in none and "white" in one (both ln 3). Item 3 matches only on "chair":
        // s_1 = ln²1.5 / (ln²1.5 + ln²3), no higher-order overlap, same length: 10·s_1/4.
        let corpus =
            [caption("brown chair", &["brown wooden chair", "brown chair"]), caption("On table", &["on the table"]), caption("black chair", &["white chair"])];
        let c = cider(&corpus).unwrap();
        let (a, b) = (1.5f64.ln(), 3f64.ln());
        let expected = 10.0 * (a * a / (a * a + b * b)) / 4.0;
        assert!((c.per_item[2] - expected).abs() < 1e-12, "{} vs {expected}", c.per_item[2]);
        assert!((c.per_item[2] - 0.299708).abs() < 1e-6);
    }

    #[test]
    fn identical_two_word_answers_score_five() {
        // Unigrams and bigrams match perfectly, trigram and 4-gram vectors are empty (0).
        let corpus = [caption("on table", &["on table"]), caption("x", &["y"])];
        let c = cider(&corpus).unwrap();
        assert!((c.per_item[0] - 5.0).abs() < 1e-12, "{}", c.per_item[0]);
    }

    #[test]
    fn one_item_has_zero_weights() {
        // N = 1: every reference n-gram has df = N, so every weight is ln 1 − ln 1 = 0.
        let c = cider(&[caption("a b", &["a b"])]).unwrap();
        assert_eq!(c.per_item, [0.0]);
    }

    #[test]
    fn the_length_penalty_counts_bigrams() {
        // "a" (0 bigrams) against "a b c" (2 bigrams): penalty e^(−4/72) on the unigram match.
        let corpus = [caption("a", &["a b c"]), caption("z", &["y"])];
        let c = cider(&corpus).unwrap();
        let w = 2f64.ln();
        let s1 = (w * w) / (w * (3.0 * w * w).sqrt());
        let expected = 10.0 * s1 * std::f64::consts::E.powf(-4.0 / 72.0) / 4.0;
        assert!((c.per_item[0] - expected).abs() < 1e-12, "{} vs {expected}", c.per_item[0]);
    }
}
