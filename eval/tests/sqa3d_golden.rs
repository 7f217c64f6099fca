//! SQA3D scorers against the official Python functions: `fixtures/sqa3d_golden.json` holds what
//! they return on randomized answers and poses (tools/golden/eval_official_golden.py writes it;
//! tools/golden/README-eval-official.md says from which revisions and how).
//!
//! - Normaliser: SQA3D's `clean_answer` (the LEO, LLaVA-3D and GPT4Scene copies were checked
//!   equal to it on every string); byte for byte.
//! - Matching: LLaVA-3D's `answer_match` (`exact_first`), GPT4Scene's (`exact_first_guard`) and
//!   LEO's `ScanQAEvaluator.answer_match` (`leo_loop`); exactly.
//! - EM / EM-R of a 300-question set: LLaVA-3D's `calc_sqa3d_score`, to 1e-9 points.
//! - Localisation: SQA3D's `metric_localization` and its per-prediction distances. Position errors
//!   use the reference's arithmetic and must agree to the bit; angle errors come from SciPy's
//!   rotation vector there and from `2·atan2` here, so they agree to 1e-9° (no fixture angle error
//!   lies within 1e-9° of a threshold, so every threshold decision must agree exactly).

use loc3r_eval::input_files::{PredictionRecord, QuestionId};
use loc3r_eval::metrics::localization::{score_localization, Pose2, SampleErrors};
use loc3r_eval::metrics::sqa3d_em::{match_answer, normalize, score_em, MatchVariant};
use loc3r_eval::sqa3d_input::{score_sqa3d_answers, score_sqa3d_localization};
use loc3r_train::data::annotations::Sqa3dItem;
use serde_json::Value;
use std::path::Path;

/// Angle errors: SciPy's rotation vector against `2·atan2`, a few ulps of 180°.
const ANGLE_TOLERANCE_DEG: f64 = 1e-9;
/// Percentages: the reference divides counts by N and we scale by 100 first.
const PERCENT_TOLERANCE: f64 = 1e-9;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sqa3d_golden.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn str_of(v: &Value) -> &str {
    v.as_str().expect("string")
}

fn flags(v: &Value) -> (bool, bool) {
    let a = v.as_array().expect("[em, em_r]");
    (a[0].as_i64() == Some(1), a[1].as_i64() == Some(1))
}

fn f64s<const N: usize>(v: &Value) -> [f64; N] {
    let a = v.as_array().expect("array");
    assert_eq!(a.len(), N);
    std::array::from_fn(|i| a[i].as_f64().expect("number"))
}

fn item(id: usize, answer: &str, position: [f64; 3], rotation_xyzw: [f64; 4]) -> Sqa3dItem {
    Sqa3dItem {
        question_id: id.to_string(),
        scene_id: "scene0000_00".into(),
        situation: String::new(),
        alternative_situations: vec![],
        question: String::new(),
        answers: vec![answer.to_string()],
        position,
        rotation_xyzw,
    }
}

#[test]
fn normaliser_matches_clean_answer_byte_for_byte() {
    let f = fixture();
    let pairs = f["normalize"].as_array().unwrap();
    assert!(pairs.len() > 1000, "{}", pairs.len());
    let mismatches: Vec<String> = pairs
        .iter()
        .filter_map(|p| {
            let (raw, expected) = (str_of(&p[0]), str_of(&p[1]));
            let got = normalize(raw);
            (got != expected).then(|| format!("{raw:?}: got {got:?}, official {expected:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), pairs.len(), mismatches.join("\n"));
}

#[test]
fn every_matching_variant_matches_its_official_answer_match() {
    let f = fixture();
    let cases = f["match"].as_array().unwrap();
    assert!(cases.len() >= 500);
    let mut mismatches = Vec::new();
    // Each rule of each variant is reached by the randomized set, not only the easy (1, 1) and (0, 0).
    let mut seen = std::collections::BTreeSet::new();
    for c in cases {
        let pred = str_of(&c["pred"]);
        let gts: Vec<&str> = c["gts"].as_array().unwrap().iter().map(str_of).collect();
        for (variant, key) in
            [(MatchVariant::ExactFirst, "exact_first"), (MatchVariant::ExactFirstGuard, "exact_first_guard"), (MatchVariant::LeoLoop, "leo_loop")]
        {
            let expected = flags(&c[key]);
            seen.insert((key, expected));
            let got = match_answer(pred, &gts, variant);
            if got != expected {
                mismatches.push(format!("{key} {pred:?} vs {gts:?}: got {got:?}, official {expected:?}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} differ:\n{}", mismatches.len(), mismatches.join("\n"));
    for key in ["exact_first", "exact_first_guard", "leo_loop"] {
        for outcome in [(true, true), (false, true), (false, false)] {
            assert!(seen.contains(&(key, outcome)), "the fixture never gives {outcome:?} under {key}");
        }
    }
}

#[test]
fn em_and_em_r_match_the_official_scorer() {
    let f = fixture();
    let corpus = &f["corpus"];
    let pairs: Vec<(&str, &str)> = corpus["items"].as_array().unwrap().iter().map(|p| (str_of(&p[0]), str_of(&p[1]))).collect();
    assert_eq!(pairs.len(), 300);
    let (em, em_r) = (corpus["em"].as_f64().unwrap() * 100.0, corpus["em_r"].as_f64().unwrap() * 100.0);

    let direct = score_em(&pairs.iter().map(|(p, g)| match_answer(p, &[g], MatchVariant::ExactFirst)).collect::<Vec<_>>());
    // Through the file scorer of `loc3r-eval score --task sqa3d`, as the CLI computes it.
    let items: Vec<Sqa3dItem> = pairs.iter().enumerate().map(|(i, (_, g))| item(i, g, [0.0; 3], [0.0, 0.0, 0.0, 1.0])).collect();
    let predictions: Vec<PredictionRecord> = pairs
        .iter()
        .enumerate()
        .map(|(i, (p, _))| PredictionRecord { question_id: QuestionId::Number(i as u64), answer: Some(p.to_string()), position: None, rotation: None })
        .collect();
    let file = score_sqa3d_answers(&items, &predictions, Path::new("pred.json")).unwrap();
    for (what, s) in [("score_em", direct), ("score_sqa3d_answers", file.scores)] {
        eprintln!("{what}: EM {} vs {em} (Δ {:e}), EM-R {} vs {em_r} (Δ {:e})", s.em, (s.em - em).abs(), s.em_r, (s.em_r - em_r).abs());
        assert_eq!(s.n, 300);
        assert!((s.em - em).abs() <= PERCENT_TOLERANCE, "{what} EM {} vs official {em}", s.em);
        assert!((s.em_r - em_r).abs() <= PERCENT_TOLERANCE, "{what} EM-R {} vs official {em_r}", s.em_r);
    }
}

fn pose(position: &Value, rotation: &Value) -> Pose2 {
    Pose2::from_sqa3d(f64s::<3>(position), f64s::<4>(rotation)).expect("a rotation about z")
}

fn assert_accuracies(got: &loc3r_eval::metrics::localization::LocalizationScores, official: &Value, what: &str) {
    for (value, key) in [(got.acc_0_5m, "acc@0.5m"), (got.acc_1_0m, "acc@1.0m"), (got.acc_15deg, "acc@15°"), (got.acc_30deg, "acc@30°")] {
        let expected = official[key].as_f64().unwrap() * 100.0;
        eprintln!("{what} {key}: {value} vs {expected} (Δ {:e})", (value - expected).abs());
        assert!((value - expected).abs() <= PERCENT_TOLERANCE, "{what} {key}: {value} vs official {expected}");
    }
}

#[test]
fn localization_errors_and_accuracies_match_metric_localization() {
    let f = fixture();
    let loc = &f["localization"];
    let samples = loc["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 400);
    let (mut max_position, mut max_angle) = (0.0f64, 0.0f64);
    let mut errors = Vec::new();
    let mut near = [0usize; 4];
    let mut on_threshold = 0;
    for (i, s) in samples.iter().enumerate() {
        let gt = pose(&s["gt_pos"], &s["gt_rot"]);
        let preds: Vec<Pose2> = s["pred_pos"].as_array().unwrap().iter().zip(s["pred_rot"].as_array().unwrap()).map(|(p, r)| pose(p, r)).collect();
        let e = SampleErrors::of(&gt, &preds).unwrap();
        let (d, a) = (s["position_error"].as_f64().unwrap(), s["angle_error_deg"].as_f64().unwrap());
        max_position = max_position.max((e.position_m - d).abs());
        max_angle = max_angle.max((e.angle_deg - a).abs());
        assert_eq!(e.position_m.to_bits(), d.to_bits(), "sample {i}: position error {} vs official {d}", e.position_m);
        assert!((e.angle_deg - a).abs() <= ANGLE_TOLERANCE_DEG, "sample {i}: angle error {} vs official {a}", e.angle_deg);
        let hits = [e.position_m < 0.5, e.position_m < 1.0, e.angle_deg < 15.0, e.angle_deg < 30.0];
        let official: Vec<bool> = s["hits"].as_array().unwrap().iter().map(|h| h.as_i64() == Some(1)).collect();
        assert_eq!(hits.as_slice(), official.as_slice(), "sample {i}: Acc@0.5m/1.0m/15°/30° hits");
        for (k, t) in [0.5, 1.0, 15.0, 30.0].into_iter().enumerate() {
            let err = if k < 2 { d } else { a };
            near[k] += usize::from((err - t).abs() < 1e-5);
        }
        on_threshold += usize::from(d == 0.5 || d == 1.0);
        errors.push(Some(e));
    }
    eprintln!("max |Δ position error| {max_position:e} m, max |Δ angle error| {max_angle:e}°");
    // The set is built to sit on the thresholds: strictness is what it tests.
    assert!(near.iter().all(|&n| n >= 10), "samples within 1e-5 of each threshold: {near:?}");
    assert!(on_threshold >= 20, "{on_threshold} position errors exactly on a threshold");
    assert_accuracies(&score_localization(&errors), &loc["accuracies"], "score_localization");
}

#[test]
fn the_file_scorer_matches_metric_localization_with_one_prediction_each() {
    let f = fixture();
    let loc = &f["localization"];
    let samples = loc["samples"].as_array().unwrap();
    let items: Vec<Sqa3dItem> = samples.iter().enumerate().map(|(i, s)| item(i, "x", f64s(&s["gt_pos"]), f64s(&s["gt_rot"]))).collect();
    let predictions: Vec<PredictionRecord> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| PredictionRecord {
            question_id: QuestionId::Number(i as u64),
            answer: None,
            position: Some(f64s(&s["pred_pos"][0])),
            rotation: Some(f64s(&s["pred_rot"][0])),
        })
        .collect();
    let r = score_sqa3d_localization(&items, &predictions, Path::new("pred.json")).unwrap();
    assert_eq!((r.questions, r.missing_predictions), (samples.len(), 0));
    assert_accuracies(&r.scores, &loc["first_prediction_only"], "score_sqa3d_localization");
}
