//! VSI-Bench scoring against its official lmms-eval task functions (thinking-in-space
//! `lmms_eval/tasks/vsibench/utils.py`): `fixtures/vsibench_golden.json` holds what
//! `vsibench_process_results`, `vsibench_aggregate_results`, `fuzzy_matching` and `to_float`
//! return on randomized predictions, and the prompts `vsibench_doc_to_text` builds (tools/golden/eval_official_golden.py writes it;
//! tools/golden/README-eval-official.md says how).
//!
//! Answer extraction and number parsing must agree exactly, and so must every item's score (an
//! MRA is a count of thresholds over 10 on both sides). Aggregates agree to 1e-9 points: pandas
//! sums in another order than we do.

use loc3r_eval::metrics::vsibench::{extract_answer, python_float, question_kind, score_item, score_vsibench, VsiError, VsiItem};
use loc3r_eval::vsibench_input::{score_vsibench_files, VsiDoc, VsiPrediction};
use serde_json::{json, Value};
use std::path::Path;

const PERCENT_TOLERANCE: f64 = 1e-9;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vsibench_golden.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn str_of(v: &Value) -> &str {
    v.as_str().expect("string")
}

fn items(f: &Value) -> Vec<VsiItem<'_>> {
    f["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| VsiItem { question_type: str_of(&it["question_type"]), prediction: str_of(&it["prediction"]), ground_truth: str_of(&it["ground_truth"]) })
        .collect()
}

#[test]
fn answer_extraction_matches_fuzzy_matching() {
    let f = fixture();
    let pairs = f["fuzzy_matching"].as_array().unwrap();
    assert!(pairs.len() > 150, "{}", pairs.len());
    let mismatches: Vec<String> = pairs
        .iter()
        .filter_map(|p| {
            let (raw, expected) = (str_of(&p[0]), str_of(&p[1]));
            let got = extract_answer(raw);
            (got != expected).then(|| format!("{raw:?}: got {got:?}, official {expected:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), pairs.len(), mismatches.join("\n"));
}

/// The official `to_float` result: a number, `null` where Python's `float` raises, or the repr
/// of a NaN or an infinity (JSON has neither).
fn official_float(v: &Value) -> Option<f64> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("unexpected float repr {other:?}"),
        }),
        n => Some(n.as_f64().expect("number")),
    }
}

#[test]
fn number_parsing_matches_python_float() {
    let f = fixture();
    let pairs = f["to_float"].as_array().unwrap();
    assert!(pairs.len() > 300, "{}", pairs.len());
    let mut mismatches = Vec::new();
    let mut unicode_digits = 0;
    for p in pairs {
        let (raw, expected) = (str_of(&p[0]), official_float(&p[1]));
        let got = python_float(raw);
        let same = match (got, expected) {
            (None, None) => true,
            (Some(a), Some(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            _ => false,
        };
        if !same {
            mismatches.push(format!("{raw:?}: got {got:?}, official {expected:?}"));
        }
        unicode_digits += usize::from(!raw.is_ascii() && expected.is_some());
    }
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), pairs.len(), mismatches.join("\n"));
    // Every run of Unicode decimal digits Python's float() knows is in the fixture.
    assert!(unicode_digits >= 66, "{unicode_digits} non-ASCII numbers");
}

#[test]
fn every_item_scores_as_vsibench_process_results() {
    let f = fixture();
    let official: Vec<f64> = f["items"].as_array().unwrap().iter().map(|it| it["score"].as_f64().unwrap()).collect();
    let items = items(&f);
    assert_eq!(items.len(), 600);
    let mut max_diff = 0.0f64;
    let mut mismatches = Vec::new();
    for (it, expected) in items.iter().zip(&official) {
        let got = score_item(it.question_type, it.prediction, it.ground_truth).unwrap();
        max_diff = max_diff.max((got - expected).abs());
        if got != *expected {
            mismatches.push(format!("{} {:?} -> {:?}: got {got}, official {expected}", it.question_type, it.prediction, it.ground_truth));
        }
    }
    eprintln!("max |Δ item score| {max_diff:e}");
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), items.len(), mismatches.join("\n"));
    // Partial MRA credit (not only 0 and 1) and both outcomes of the multiple choice are covered.
    let partial = items.iter().zip(&official).filter(|(it, s)| question_kind(it.question_type).unwrap().numeric && **s > 0.0 && **s < 1.0).count();
    let right = items.iter().zip(&official).filter(|(it, s)| !question_kind(it.question_type).unwrap().numeric && **s == 1.0).count();
    assert!(partial > 50 && right > 50, "partial MRA {partial}, multiple-choice hits {right}");
}

/// The official aggregate key of a question type.
fn official_key(question_type: &str) -> String {
    let metric = if question_kind(question_type).unwrap().numeric { "MRA:.5:.95:.05" } else { "accuracy" };
    format!("{question_type}_{metric}")
}

#[test]
fn aggregates_match_vsibench_aggregate_results() {
    let f = fixture();
    let all = items(&f);
    let mut max_diff = 0.0f64;
    let mut check = |got: f64, expected: f64, what: &str| {
        max_diff = max_diff.max((got - expected).abs());
        assert!((got - expected).abs() <= PERCENT_TOLERANCE, "{what}: {got} vs official {expected}");
    };
    let corpora = f["corpora"].as_array().unwrap();
    assert!(corpora.len() >= 10);
    for c in corpora {
        let name = str_of(&c["name"]);
        let chosen: Vec<VsiItem> = c["items"].as_array().unwrap().iter().map(|i| all[i.as_u64().unwrap() as usize].clone()).collect();
        let official = c["scores"].as_object().unwrap();
        let s = score_vsibench(&chosen).unwrap();
        check(s.overall, official["overall"].as_f64().unwrap(), &format!("{name} overall"));
        for (question_type, (n, score)) in &s.per_type {
            assert!(*n > 0);
            let column = question_kind(question_type).unwrap().column;
            if column == "Rel. Dir." {
                continue;
            }
            let expected = official[&official_key(question_type)].as_f64().unwrap();
            check(*score, expected, &format!("{name} {question_type}"));
            check(s.columns[column], expected, &format!("{name} column {column}"));
        }
        if let Some(expected) = official.get("object_rel_direction_accuracy") {
            check(s.columns["Rel. Dir."], expected.as_f64().unwrap(), &format!("{name} Rel. Dir."));
        }
        // One entry per column, plus overall.
        assert_eq!(official.len(), s.columns.len() + 1, "{name}: official keys {:?}", official.keys().collect::<Vec<_>>());
    }
    eprintln!("max |Δ aggregate| {max_diff:e} points");
}

#[test]
fn the_file_scorer_matches_on_the_whole_set() {
    let f = fixture();
    let raw = f["items"].as_array().unwrap();
    let docs: Vec<VsiDoc> = raw
        .iter()
        .enumerate()
        .map(|(i, it)| serde_json::from_value(json!({"id": i, "question_type": it["question_type"], "ground_truth": it["ground_truth"]})).unwrap())
        .collect();
    let predictions: Vec<VsiPrediction> =
        raw.iter().enumerate().map(|(i, it)| serde_json::from_value(json!({"id": i, "prediction": it["prediction"]})).unwrap()).collect();
    let r = score_vsibench_files(&docs, &predictions, Path::new("pred.json")).unwrap();
    let all = f["corpora"].as_array().unwrap().iter().find(|c| c["name"] == "all").unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), raw.len());
    let expected = all["scores"]["overall"].as_f64().unwrap();
    assert!((r.scores.overall - expected).abs() <= PERCENT_TOLERANCE, "{} vs official {expected}", r.scores.overall);
    assert_eq!((r.questions, r.missing_predictions, r.scores.columns.len()), (600, 0, 8));
}

#[test]
fn what_the_reference_cannot_score_is_an_error() {
    let f = fixture();
    // The reference raises on these (ZeroDivisionError, ValueError).
    for c in f["raises"].as_array().unwrap() {
        let (t, p, g) = (str_of(&c["question_type"]), str_of(&c["prediction"]), str_of(&c["ground_truth"]));
        let e = score_item(t, p, g).unwrap_err();
        let want = match str_of(&c["error"]) {
            "ZeroDivisionError" => matches!(e, VsiError::ZeroGroundTruth),
            "ValueError" => matches!(e, VsiError::UnknownType(_)),
            other => panic!("unexpected {other}"),
        };
        assert!(want, "{t} {p:?} -> {g:?}: {e} (official {})", c["error"]);
    }
    // A ground truth of 0 with a prediction that is not a number: the reference's TypeError comes
    // before its division, so it scores 0, and so do we; the file scorer still refuses the
    // document, since any number predicted for it would divide by 0.
    for c in f["zero_truths"].as_array().unwrap() {
        let (t, p, g) = (str_of(&c["question_type"]), str_of(&c["prediction"]), str_of(&c["ground_truth"]));
        assert_eq!(score_item(t, p, g), Ok(c["score"].as_f64().unwrap()), "{t} {p:?} -> {g:?}");
        let docs: Vec<VsiDoc> = vec![serde_json::from_value(json!({"id": "z", "question_type": t, "ground_truth": g})).unwrap()];
        let predictions: Vec<VsiPrediction> = vec![serde_json::from_value(json!({"id": "z", "prediction": p})).unwrap()];
        let e = score_vsibench_files(&docs, &predictions, Path::new("pred.json")).unwrap_err().to_string();
        assert!(e.contains("`z`"), "{e}");
    }
    // A numeric ground truth that is not a number: the reference's TypeError handler scores every
    // prediction 0; it is a broken annotation, which loc3r-eval refuses rather than scoring.
    for c in f["unparsable_truths"].as_array().unwrap() {
        assert_eq!(c["score"].as_f64(), Some(0.0));
        let (t, p, g) = (str_of(&c["question_type"]), str_of(&c["prediction"]), str_of(&c["ground_truth"]));
        assert!(matches!(score_item(t, p, g), Err(VsiError::BadGroundTruth(_))), "{t} {p:?} -> {g:?}");
    }
}

#[test]
fn run_asks_the_prompt_of_vsibench_doc_to_text() {
    let f = fixture();
    let prompts = f["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 10, "one per question type");
    for p in prompts {
        let mut doc = p.clone();
        doc["ground_truth"] = json!("1");
        let doc: VsiDoc = serde_json::from_value(doc).unwrap();
        assert_eq!(doc.prompt().unwrap(), str_of(&p["prompt"]), "{}", doc.question_type);
    }
}
