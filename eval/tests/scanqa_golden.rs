//! ScanQA scorers against pycocoevalcap 1.2 itself: `fixtures/scanqa_golden.json` holds what the
//! reference's PTB tokenizer (CoreNLP jar) and its BLEU, ROUGE-L and CIDEr scorers return on
//! randomized answers built from the synthetic vocabulary (tools/golden/scanqa_golden.py writes
//! it; tools/golden/README-scanqa.md says how).
//!
//! Tokenisation must match byte for byte; scores to 1e-9 relative (the reference's NumPy means
//! and ours use the same pairwise summation, so in practice they agree to the last bit or two).

use loc3r_eval::metrics::ngram::{bleu::bleu, cider::cider, ptb, rouge::rouge_l, Caption};
use serde_json::Value;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scanqa_golden.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn assert_close(got: f64, expected: f64, what: &str) {
    let scale = expected.abs().max(1e-300);
    assert!((got - expected).abs() <= 1e-9 * scale || got == expected, "{what}: {got:e} vs {expected:e}");
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

#[test]
fn ptb_tokenizer_matches_the_jar_byte_for_byte() {
    let f = fixture();
    let pairs = f["ptb"].as_array().unwrap();
    assert!(pairs.len() > 700);
    let mismatches: Vec<String> = pairs
        .iter()
        .filter_map(|p| {
            let (raw, expected) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
            let got = ptb::tokenize(raw);
            (got != expected).then(|| format!("{raw:?}: got {got:?}, jar {expected:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), pairs.len(), mismatches.join("\n"));
}

#[test]
fn bleu_rouge_cider_match_pycocoevalcap() {
    let f = fixture();
    let corpora = f["corpora"].as_array().unwrap();
    assert_eq!(corpora.len(), 6);
    for c in corpora {
        let name = c["name"].as_str().unwrap();
        let corpus: Vec<Caption> = c["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|it| Caption {
                hypothesis: it["hypothesis"].as_str().unwrap().to_string(),
                references: it["references"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect(),
            })
            .collect();
        let b = bleu(&corpus).unwrap();
        for (n, expected) in floats(&c["bleu"]["corpus"]).into_iter().enumerate() {
            assert_close(b.corpus[n], expected, &format!("{name} BLEU-{}", n + 1));
        }
        for (i, item) in c["bleu"]["per_item"].as_array().unwrap().iter().enumerate() {
            for (n, expected) in floats(item).into_iter().enumerate() {
                assert_close(b.per_item[i][n], expected, &format!("{name} item {i} BLEU-{}", n + 1));
            }
        }
        let r = rouge_l(&corpus).unwrap();
        assert_close(r.corpus, c["rouge_l"]["corpus"].as_f64().unwrap(), &format!("{name} ROUGE-L"));
        for (i, expected) in floats(&c["rouge_l"]["per_item"]).into_iter().enumerate() {
            assert_close(r.per_item[i], expected, &format!("{name} item {i} ROUGE-L"));
        }
        let d = cider(&corpus).unwrap();
        assert_close(d.corpus, c["cider"]["corpus"].as_f64().unwrap(), &format!("{name} CIDEr"));
        for (i, expected) in floats(&c["cider"]["per_item"]).into_iter().enumerate() {
            assert_close(d.per_item[i], expected, &format!("{name} item {i} CIDEr"));
        }
    }
}
