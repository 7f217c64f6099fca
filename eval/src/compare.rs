//! `loc3r-eval compare`: fidelity gates between two bundles (an fp32 export against an fp16 one,
//! later quantised or TensorRT ones) run over the same questions by `loc3r-eval run`'s machinery
//! (docs/evaluation.md, "`loc3r-eval compare`").
//!
//! Each bundle's predictions are scored ([`score_side`]); [`compare`] then sets them side by side:
//! every benchmark metric of A and B with its delta B − A, per-question pose deltas (planar
//! distance and wrap-around yaw difference between A's and B's predicted poses) and answer
//! agreement (the share of questions where both give the same answer after the SQA3D normaliser).
//! [`Gate`]s (`--max-delta KEY=VALUE`) bound them; [`check_gates`] says which hold.
//!
//! Predictions are resumable as in `run`; [`Provenance`] records which bundles and options made
//! the predictions of an output directory, so that predictions of other bundles are never reused.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::benchmark_run::{RunReport, Truth};
use crate::input_files::{parse_json, read_utf8, write_atomically, InputError};
use crate::metrics::localization::{angle_error_deg, mean, median, position_error, Pose2};
use crate::metrics::ngram::NgramError;
use crate::metrics::scanqa::{self, Protocol};
use crate::metrics::sqa3d_em::{match_answer, normalize, MatchVariant};
use crate::metrics::vsibench;
use crate::scanqa_input::{self, ScanQaInputError};
use crate::sqa3d_input::{read_sqa3d_predictions, score_sqa3d_answers, score_sqa3d_localization};
use crate::vsibench_input::{read_vsibench_predictions, score_vsibench_files, VsiDoc};

/// What a comparison measures, which decides its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// SQA3D (`sqa3d` and `sqa3d-loc` alike: `run` predicts answer and pose for both).
    Sqa3d,
    /// ScanQA under one scoring protocol.
    ScanQa(Protocol),
    /// VSI-Bench: its paper columns and the overall score.
    VsiBench,
}

/// SQA3D's metrics: the four localisation accuracies, EM and EM-R (percentages).
const SQA3D_METRICS: [&str; 6] = ["acc@0.5m", "acc@1.0m", "acc@15deg", "acc@30deg", "em", "em_r"];
/// ScanQA's metrics (×100, as papers print them); `em_r` under `leo_ptb` only.
const SCANQA_METRICS: [&str; 9] = ["em", "em_r", "bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider", "meteor"];
/// VSI-Bench's metrics (×100): the overall score, then its paper columns in the paper's order
/// (a column none of the compared questions falls in is `None`).
const VSIBENCH_METRICS: [&str; 9] = ["overall", "obj_count", "abs_dist", "obj_size", "room_size", "rel_dist", "rel_dir", "route_plan", "appr_order"];
/// Pose-delta gates: the largest, mean and median per-question delta (SQA3D only).
pub const POSE_KEYS: [&str; 6] = ["pose_m", "pose_m_mean", "pose_m_median", "yaw_deg", "yaw_deg_mean", "yaw_deg_median"];
/// The answer-agreement gate, a minimum.
pub const AGREEMENT: &str = "agreement";

impl Family {
    /// The benchmark metrics of this family, in report order.
    pub fn metric_keys(self) -> Vec<&'static str> {
        match self {
            Family::Sqa3d => SQA3D_METRICS.to_vec(),
            Family::ScanQa(p) => SCANQA_METRICS.into_iter().filter(|&k| k != "em_r" || p.has_em_r()).collect(),
            Family::VsiBench => VSIBENCH_METRICS.to_vec(),
        }
    }

    /// Every key a gate of this family may name.
    pub fn gate_keys(self) -> Vec<&'static str> {
        let mut keys = self.metric_keys();
        if self == Family::Sqa3d {
            keys.extend(POSE_KEYS);
        }
        keys.push(AGREEMENT);
        keys
    }
}

/// Every gate key of any task, for `--max-delta` parsing and `--help`.
pub fn all_gate_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for k in SQA3D_METRICS.into_iter().chain(SCANQA_METRICS).chain(VSIBENCH_METRICS).chain(POSE_KEYS).chain([AGREEMENT]) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// One `--max-delta` entry: for a benchmark metric the largest |B − A| allowed (in the metric's
/// percentage points), for a pose key the largest statistic allowed (metres or degrees), for
/// `agreement` the smallest fraction allowed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    pub key: &'static str,
    pub limit: f64,
}

/// Parses `KEY=VALUE` (clap's value parser for `--max-delta`).
pub fn parse_gate(s: &str) -> Result<Gate, String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!("`{s}`: expected METRIC=VALUE, e.g. pose_m=0.05"));
    };
    let (key, value) = (key.trim(), value.trim());
    let keys = all_gate_keys();
    let Some(&key) = keys.iter().find(|&&k| k == key) else {
        return Err(format!("unknown metric `{key}`; use one of {}", keys.join(", ")));
    };
    let limit: f64 = value.parse().map_err(|_| format!("{key}={value}: `{value}` is not a number"))?;
    if !limit.is_finite() {
        return Err(format!("{key}={value}: the limit must be a finite number"));
    }
    if limit < 0.0 {
        return Err(format!(
            "{key}={value}: a limit cannot be negative (it is the largest change allowed{})",
            if key == AGREEMENT { ", or for agreement the smallest fraction of equal answers" } else { "" }
        ));
    }
    if key == AGREEMENT && limit > 1.0 {
        return Err(format!("{key}={value}: agreement is a fraction in [0, 1]"));
    }
    Ok(Gate { key, limit })
}

/// Refuses gates the task does not measure and keys given twice.
pub fn check_gate_keys(gates: &[Gate], family: Family, task: &str) -> Result<(), String> {
    let allowed = family.gate_keys();
    let mut seen = HashSet::new();
    for g in gates {
        if !seen.insert(g.key) {
            return Err(format!("--max-delta: `{}` is given twice; give each metric once", g.key));
        }
        if !allowed.contains(&g.key) {
            let why = match family {
                Family::ScanQa(p) if g.key == "em_r" => format!("ScanQA has EM-R under --protocol leo_ptb only, not {}", p.name()),
                _ => format!("task {task} does not measure it"),
            };
            return Err(format!("--max-delta: `{}`: {why}; use one of {}", g.key, allowed.join(", ")));
        }
    }
    Ok(())
}

/// One question's prediction by one bundle, as the comparison reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SideAnswer {
    pub answer: String,
    /// SQA3D only.
    pub pose: Option<Pose2>,
    /// Exact match to the ground truth (SQA3D: the normaliser and `exact_first`; ScanQA: the
    /// protocol's EM).
    pub exact: bool,
}

/// One bundle's predictions, scored.
#[derive(Debug, Clone)]
pub struct Side {
    /// The family's metrics in [`Family::metric_keys`] order; `None` when not measured (METEOR
    /// without Java).
    pub metrics: Vec<(&'static str, Option<f64>)>,
    /// By question id; questions without a prediction are absent.
    pub answers: HashMap<String, SideAnswer>,
    /// Why a metric is `None`.
    pub notes: Vec<String>,
}

/// Why a predictions file cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    ScanQa(#[from] ScanQaInputError),
    #[error(transparent)]
    Ngram(#[from] NgramError),
}

/// Scores the predictions file `path` (written by `run`) against `truth`.
pub fn score_side(truth: &Truth, family: Family, meteor_jar: Option<&Path>, path: &Path) -> Result<Side, CompareError> {
    match (truth, family) {
        (Truth::Sqa3d(items), _) => {
            let predictions = read_sqa3d_predictions(path)?;
            let loc = score_sqa3d_localization(items, &predictions, path)?;
            let em = score_sqa3d_answers(items, &predictions, path)?;
            let l = &loc.scores;
            let metrics = SQA3D_METRICS
                .into_iter()
                .zip([l.acc_0_5m, l.acc_1_0m, l.acc_15deg, l.acc_30deg, em.scores.em, em.scores.em_r])
                .map(|(k, v)| (k, Some(v)))
                .collect();
            let truths: HashMap<&str, Vec<&str>> = items.iter().map(|i| (i.question_id.as_str(), i.answers.iter().map(String::as_str).collect())).collect();
            let mut answers = HashMap::with_capacity(predictions.len());
            for p in predictions {
                let id = p.question_id.text();
                // Both scorers above have read every field and pose: nothing is missing here.
                let answer = p.answer.unwrap_or_default();
                let pose = p.position.zip(p.rotation).and_then(|(pos, rot)| Pose2::from_sqa3d(pos, rot).ok());
                let exact = match_answer(&answer, truths.get(id.as_str()).map_or(&[][..], Vec::as_slice), MatchVariant::ExactFirst).0;
                answers.insert(id, SideAnswer { answer, pose, exact });
            }
            Ok(Side { metrics, answers, notes: Vec::new() })
        }
        (Truth::ScanQa(items), family) => {
            let protocol = match family {
                Family::ScanQa(p) => p,
                Family::Sqa3d | Family::VsiBench => Protocol::Video3dllm,
            };
            let questions = scanqa_input::join(items, scanqa_input::read_predictions(path)?, path)?;
            let s = scanqa::score(&questions, protocol, meteor_jar)?;
            let x100 = |v: f64| Some(v * 100.0);
            let mut metrics = vec![("em", Some(s.em))];
            if let Some(em_r) = s.em_r {
                metrics.push(("em_r", Some(em_r)));
            }
            metrics.extend([
                ("bleu1", x100(s.bleu[0])),
                ("bleu2", x100(s.bleu[1])),
                ("bleu3", x100(s.bleu[2])),
                ("bleu4", x100(s.bleu[3])),
                ("rouge_l", x100(s.rouge_l)),
                ("cider", x100(s.cider)),
                ("meteor", s.meteor.corpus.and_then(x100)),
            ]);
            let notes = s.meteor.unavailable.iter().map(|r| format!("METEOR: {r}")).collect();
            let answers = questions
                .iter()
                .zip(&s.per_question)
                .filter_map(|(q, scores)| {
                    q.prediction.as_ref().map(|a| (q.question_id.clone(), SideAnswer { answer: a.clone(), pose: None, exact: scores.em }))
                })
                .collect();
            Ok(Side { metrics, answers, notes })
        }
        (Truth::VsiBench { docs, .. }, _) => {
            let predictions = read_vsibench_predictions(path)?;
            let report = score_vsibench_files(docs, &predictions, path)?;
            // The columns in the paper's order; `overall` first.
            let mut metrics = vec![("overall", Some(report.scores.overall))];
            metrics.extend(VSIBENCH_METRICS[1..].iter().zip(vsibench::COLUMNS).map(|(&k, column)| (k, report.scores.columns.get(column).copied())));
            let docs: HashMap<String, &VsiDoc> = docs.iter().map(|d| (d.id.text(), d)).collect();
            let mut answers = HashMap::with_capacity(predictions.len());
            for p in predictions {
                let id = p.id.text();
                // `score_vsibench_files` has checked every id and document above.
                let Some(doc) = docs.get(&id) else { continue };
                let score = vsibench::score_item(&doc.question_type, &p.prediction, &doc.ground_truth.text()).unwrap_or(0.0);
                // Agreement compares what the official scorer reads of an answer (its first
                // word, or the option letter), not the raw text.
                answers.insert(id, SideAnswer { answer: vsibench::extract_answer(&p.prediction), pose: None, exact: score >= 1.0 });
            }
            Ok(Side { metrics, answers, notes: Vec::new() })
        }
    }
}

/// A metric of both bundles.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDelta {
    pub key: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// B − A.
    pub delta: Option<f64>,
}

/// Mean, median and largest of per-question deltas (`None` when no question has both).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub max: Option<f64>,
}

impl Stats {
    fn of(v: Vec<f64>) -> Stats {
        Stats { mean: mean(&v), max: v.iter().copied().reduce(f64::max), median: median(v) }
    }
}

/// Per-question pose deltas between A and B.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoseDeltas {
    /// Questions where both bundles predicted a pose.
    pub compared: usize,
    /// Planar distance between A's and B's positions, metres.
    pub position_m: Stats,
    /// Wrap-around difference between A's and B's yaws, degrees.
    pub yaw_deg: Stats,
}

/// How often the bundles answer alike.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerAgreement {
    /// Questions answered by at least one bundle (the denominator of `agreement`; an answer of
    /// one bundle only is a disagreement).
    pub questions: usize,
    /// Of which both give the same normalised answer.
    pub same: usize,
    /// `same / questions`; `None` when no question was answered.
    pub agreement: Option<f64>,
    /// Exact matches to the ground truth of each bundle (counts).
    pub a_exact: usize,
    pub b_exact: usize,
    /// Questions right in one bundle and wrong in the other.
    pub right_only_in_a: usize,
    pub right_only_in_b: usize,
}

/// One question of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionDelta {
    pub question_id: String,
    pub a_answer: Option<String>,
    pub b_answer: Option<String>,
    pub same_answer: bool,
    pub a_exact: bool,
    pub b_exact: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yaw_deg: Option<f64>,
}

/// A and B side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub metrics: Vec<MetricDelta>,
    /// SQA3D only.
    pub pose: Option<PoseDeltas>,
    pub answers: AnswerAgreement,
    pub per_question: Vec<QuestionDelta>,
}

/// Compares two scored sides over `ids` (the questions, in file order).
pub fn compare(family: Family, ids: &[String], a: &Side, b: &Side) -> Comparison {
    let metrics = a
        .metrics
        .iter()
        .map(|&(key, va)| {
            let vb = b.metrics.iter().find(|m| m.0 == key).and_then(|m| m.1);
            MetricDelta { key, a: va, b: vb, delta: va.zip(vb).map(|(x, y)| y - x) }
        })
        .collect();
    let (mut positions, mut yaws) = (Vec::new(), Vec::new());
    let mut per_question = Vec::with_capacity(ids.len());
    let mut answers = AnswerAgreement { questions: 0, same: 0, agreement: None, a_exact: 0, b_exact: 0, right_only_in_a: 0, right_only_in_b: 0 };
    for id in ids {
        let (qa, qb) = (a.answers.get(id), b.answers.get(id));
        if qa.is_none() && qb.is_none() {
            continue;
        }
        let same_answer = match (qa, qb) {
            (Some(x), Some(y)) => normalize(&x.answer) == normalize(&y.answer),
            _ => false,
        };
        let (a_exact, b_exact) = (qa.is_some_and(|x| x.exact), qb.is_some_and(|y| y.exact));
        answers.questions += 1;
        answers.same += usize::from(same_answer);
        answers.a_exact += usize::from(a_exact);
        answers.b_exact += usize::from(b_exact);
        answers.right_only_in_a += usize::from(a_exact && !b_exact);
        answers.right_only_in_b += usize::from(b_exact && !a_exact);
        let poses = qa.and_then(|x| x.pose).zip(qb.and_then(|y| y.pose));
        let (position_m, yaw_deg) = match poses {
            Some((pa, pb)) => {
                let (d, e) = (position_error(&pa, &[pb]), angle_error_deg(&pa, &[pb]));
                positions.push(d);
                yaws.push(e);
                (Some(d), Some(e))
            }
            None => (None, None),
        };
        per_question.push(QuestionDelta {
            question_id: id.clone(),
            a_answer: qa.map(|x| x.answer.clone()),
            b_answer: qb.map(|y| y.answer.clone()),
            same_answer,
            a_exact,
            b_exact,
            position_m,
            yaw_deg,
        });
    }
    answers.agreement = (answers.questions > 0).then(|| answers.same as f64 / answers.questions as f64);
    let pose = (family == Family::Sqa3d).then(|| PoseDeltas { compared: positions.len(), position_m: Stats::of(positions), yaw_deg: Stats::of(yaws) });
    Comparison { metrics, pose, answers, per_question }
}

/// How a gate bounds its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// |B − A| ≤ limit (benchmark metrics).
    MaxAbsDelta,
    /// value ≤ limit (pose deltas).
    Max,
    /// value ≥ limit (agreement).
    Min,
}

/// One gate, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub key: &'static str,
    pub bound: Bound,
    pub limit: f64,
    /// What the gate compares with its limit: |B − A|, the pose statistic or the agreement;
    /// `None` when it could not be measured (then the gate fails).
    pub value: Option<f64>,
    /// A's and B's values of a benchmark metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<f64>,
    pub pass: bool,
    /// One line: the key, the values and the limit.
    pub message: String,
}

/// Checks every gate against the comparison; a gate whose value could not be measured fails.
pub fn check_gates(c: &Comparison, gates: &[Gate]) -> Vec<GateResult> {
    gates.iter().map(|g| check_gate(c, g)).collect()
}

fn check_gate(c: &Comparison, g: &Gate) -> GateResult {
    let limit = g.limit;
    // `what` describes the measured value; `unit` follows both it and the limit.
    let result = |bound, value: Option<f64>, a, b, what: String, unit: &str| {
        let pass = value.is_some_and(|v| match bound {
            Bound::Min => v >= limit,
            Bound::Max | Bound::MaxAbsDelta => v <= limit,
        });
        let message = match value {
            None => format!("{}: not measured ({what}); a gate that cannot be measured fails", g.key),
            Some(_) => {
                let op = match (bound, pass) {
                    (Bound::Min, true) => "≥",
                    (Bound::Min, false) => "<",
                    (_, true) => "≤",
                    (_, false) => ">",
                };
                format!("{}: {what}{unit} {op} {}{unit}", g.key, number(limit))
            }
        };
        GateResult { key: g.key, bound, limit, value, a, b, pass, message }
    };
    if g.key == AGREEMENT {
        let a = &c.answers;
        let what = match a.agreement {
            Some(v) => format!("{} of {} answers the same: {}", a.same, a.questions, number(v)),
            None => "no question answered".into(),
        };
        return result(Bound::Min, a.agreement, None, None, what, "");
    }
    if let Some(i) = POSE_KEYS.iter().position(|&k| k == g.key) {
        let (stats, what, unit) =
            if i < 3 { (c.pose.as_ref().map(|p| p.position_m), "position", " m") } else { (c.pose.as_ref().map(|p| p.yaw_deg), "yaw", "°") };
        let (stat, name) = match i % 3 {
            0 => (stats.and_then(|s| s.max), "largest"),
            1 => (stats.and_then(|s| s.mean), "mean"),
            _ => (stats.and_then(|s| s.median), "median"),
        };
        let what = match stat {
            Some(v) => format!("{name} {what} delta B vs A {}", number(v)),
            None => "no question has a pose from both bundles".into(),
        };
        return result(Bound::Max, stat, None, None, what, unit);
    }
    let m = c.metrics.iter().find(|m| m.key == g.key);
    let (a, b) = (m.and_then(|m| m.a), m.and_then(|m| m.b));
    let value = m.and_then(|m| m.delta).map(f64::abs);
    let what = match (a, b) {
        (Some(x), Some(y)) => format!("A {}, B {}, |B − A| = {}", number(x), number(y), number((y - x).abs())),
        _ => format!("A {}, B {}", a.map_or("—".into(), number), b.map_or("—".into(), number)),
    };
    result(Bound::MaxAbsDelta, value, a, b, what, "")
}

/// A number for a table or message: 4 significant decimals, small non-zero values in
/// scientific notation so that they do not print as zero.
pub fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0');
        s.trim_end_matches('.').to_string()
    }
}

/// One bundle of the report.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    pub bundle: PathBuf,
    pub predictions: PathBuf,
    pub run: RunReport,
}

/// What `compare` prints (`--json`) and writes (`--out`).
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub task: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    pub questions: usize,
    pub frames: usize,
    pub a: SideReport,
    pub b: SideReport,
    /// Every benchmark metric: `{"a", "b", "delta"}` (delta = B − A), percentages / ×100.
    #[serde(serialize_with = "metrics_as_map")]
    pub metrics: Vec<MetricDelta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pose: Option<PoseDeltas>,
    pub answers: AnswerAgreement,
    pub gates: Vec<GateResult>,
    /// Every gate holds (true without gates).
    pub pass: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub per_question: Vec<QuestionDelta>,
}

fn metrics_as_map<S: Serializer>(metrics: &[MetricDelta], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry {
        a: Option<f64>,
        b: Option<f64>,
        delta: Option<f64>,
    }
    let mut map = s.serialize_map(Some(metrics.len()))?;
    for m in metrics {
        map.serialize_entry(m.key, &Entry { a: m.a, b: m.b, delta: m.delta })?;
    }
    map.end()
}

/// The report as a text table.
pub fn table(r: &CompareReport) -> String {
    let opt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}"));
    let signed = |v: Option<f64>| {
        v.map_or("—".to_string(), |v| {
            let n = number(v);
            if v > 0.0 {
                format!("+{n}")
            } else {
                n
            }
        })
    };
    let mut out = format!(
        "compare {}{}: {} questions, {} frames\n  A {}\n  B {}\n",
        r.task,
        r.protocol.map_or(String::new(), |p| format!(" ({p})")),
        r.questions,
        r.frames,
        r.a.bundle.display(),
        r.b.bundle.display()
    );
    out.push_str(&format!("{:<10} {:>9} {:>9} {:>9}\n", "metric", "A", "B", "B − A"));
    for m in &r.metrics {
        out.push_str(&format!("{:<10} {:>9} {:>9} {:>9}\n", m.key, opt(m.a), opt(m.b), signed(m.delta)));
    }
    if let Some(p) = &r.pose {
        out.push_str(&format!("{:<32} {:>9} {:>9} {:>9}\n", format!("pose deltas B vs A ({} questions)", p.compared), "mean", "median", "max"));
        for (name, s) in [("position (m)", &p.position_m), ("yaw (°)", &p.yaw_deg)] {
            let f = |v: Option<f64>| v.map_or("—".to_string(), number);
            out.push_str(&format!("  {:<30} {:>9} {:>9} {:>9}\n", name, f(s.mean), f(s.median), f(s.max)));
        }
    }
    let a = &r.answers;
    out.push_str(&format!(
        "answers: agreement {} ({} of {} the same); exact match A {}, B {}; right only in A {}, only in B {}\n",
        a.agreement.map_or("—".to_string(), number),
        a.same,
        a.questions,
        a.a_exact,
        a.b_exact,
        a.right_only_in_a,
        a.right_only_in_b
    ));
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if !r.gates.is_empty() {
        out.push_str("gates:\n");
        for g in &r.gates {
            out.push_str(&format!("  {:<4} {}\n", if g.pass { "ok" } else { "FAIL" }, g.message));
        }
    }
    out
}

/// A bundle as far as its predictions go: the sha256 of every file of its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleIdentity {
    /// Where it was, for the reader; not compared.
    pub bundle: PathBuf,
    pub files: BTreeMap<String, String>,
}

/// What made the predictions of an output directory: the two bundles and the options that
/// change answers. Written as `bundles.json` before the first question is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub frames: usize,
    pub max_new_tokens: usize,
    pub a: BundleIdentity,
    pub b: BundleIdentity,
}

/// The file of [`Provenance`] in an output directory.
pub const PROVENANCE_FILE: &str = "bundles.json";
/// The predictions files of A and B in an output directory.
pub const PREDICTIONS_A: &str = "a-predictions.json";
pub const PREDICTIONS_B: &str = "b-predictions.json";

impl Provenance {
    /// How `self` (the earlier run) differs from `now`, if it does.
    fn difference(&self, now: &Provenance) -> Option<String> {
        let mut d = Vec::new();
        if self.frames != now.frames {
            d.push(format!("--frames {} (now {})", self.frames, now.frames));
        }
        if self.max_new_tokens != now.max_new_tokens {
            d.push(format!("--max-new-tokens {} (now {})", self.max_new_tokens, now.max_new_tokens));
        }
        for (side, was, is) in [("A", &self.a, &now.a), ("B", &self.b, &now.b)] {
            if was.files != is.files {
                d.push(format!("another bundle as {side} ({}, whose files differ from {})", was.bundle.display(), is.bundle.display()));
            }
        }
        (!d.is_empty()).then(|| d.join(", "))
    }

    /// Accepts `dir` for these bundles and options: refused when it holds predictions of other
    /// ones, or predictions whose provenance is unknown; otherwise `bundles.json` is written.
    pub fn claim(&self, dir: &Path) -> Result<(), InputError> {
        let path = dir.join(PROVENANCE_FILE);
        let restart = format!("use another --out-dir, or delete {} to start again", dir.display());
        if path.exists() {
            let earlier: Provenance =
                parse_json(&read_utf8(&path)?, &path, "compare provenance file", "the bundles.json an earlier `loc3r-eval compare` wrote")?;
            if let Some(d) = earlier.difference(self) {
                return Err(InputError::Files(format!("{}: its predictions were made with {d}; {restart}", dir.display())));
            }
        } else if let Some(p) = [PREDICTIONS_A, PREDICTIONS_B].iter().map(|n| dir.join(n)).find(|p| p.exists()) {
            return Err(InputError::Files(format!("{}: predictions of unknown bundles (no {PROVENANCE_FILE} beside them); {restart}", p.display())));
        }
        let text = serde_json::to_string_pretty(self).expect("provenance serialises");
        write_atomically(&path, &format!("{text}\n")).map_err(|source| InputError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Question id, answer, pose (x, y, yaw) and exact match.
    type Answer<'a> = (&'a str, &'a str, Option<(f64, f64, f64)>, bool);

    fn side(metrics: &[(&'static str, f64)], answers: &[Answer<'_>]) -> Side {
        Side {
            metrics: metrics.iter().map(|&(k, v)| (k, Some(v))).collect(),
            answers: answers
                .iter()
                .map(|&(id, a, pose, exact)| (id.to_string(), SideAnswer { answer: a.into(), pose: pose.map(|(x, y, yaw)| Pose2 { x, y, yaw }), exact }))
                .collect(),
            notes: vec![],
        }
    }

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn gates_parse_and_refuse_bad_limits() {
        assert_eq!(parse_gate("acc@0.5m=1.0").unwrap(), Gate { key: "acc@0.5m", limit: 1.0 });
        assert_eq!(parse_gate(" pose_m = 0 ").unwrap(), Gate { key: "pose_m", limit: 0.0 });
        assert_eq!(parse_gate("agreement=0.95").unwrap().limit, 0.95);
        for (bad, needle) in [
            ("pose=1", "unknown metric `pose`"),
            ("pose_m", "METRIC=VALUE"),
            ("em=-1", "negative"),
            ("em=x", "not a number"),
            ("em=inf", "finite"),
            ("agreement=1.5", "[0, 1]"),
        ] {
            let e = parse_gate(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let g = |k: &str| parse_gate(&format!("{k}=1")).unwrap();
        assert!(check_gate_keys(&[g("pose_m"), g("acc@15deg"), g("em_r")], Family::Sqa3d, "sqa3d").is_ok());
        assert!(check_gate_keys(&[g("cider"), g("agreement")], Family::ScanQa(Protocol::Video3dllm), "scanqa").is_ok());
        let e = check_gate_keys(&[g("pose_m")], Family::ScanQa(Protocol::Official), "scanqa").unwrap_err();
        assert!(e.contains("`pose_m`") && e.contains("scanqa"), "{e}");
        let e = check_gate_keys(&[g("em_r")], Family::ScanQa(Protocol::Official), "scanqa").unwrap_err();
        assert!(e.contains("leo_ptb"), "{e}");
        assert!(check_gate_keys(&[g("em_r")], Family::ScanQa(Protocol::LeoPtb), "scanqa").is_ok());
        let e = check_gate_keys(&[g("em"), g("em")], Family::Sqa3d, "sqa3d").unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn identical_sides_have_zero_deltas_and_full_agreement() {
        let s = side(&[("acc@0.5m", 50.0), ("em", 50.0)], &[("1", "Two", Some((1.0, 2.0, 0.5)), true), ("2", "table", Some((0.0, 0.0, -3.0)), false)]);
        let c = compare(Family::Sqa3d, &ids(3), &s, &s);
        assert!(c.metrics.iter().all(|m| m.delta == Some(0.0)));
        let p = c.pose.as_ref().unwrap();
        assert_eq!((p.compared, p.position_m.max, p.yaw_deg.max), (2, Some(0.0), Some(0.0)));
        assert_eq!((c.answers.questions, c.answers.same, c.answers.agreement), (2, 2, Some(1.0)), "question 3 has no prediction in either");
        let gates = check_gates(&c, &[parse_gate("pose_m=0").unwrap(), parse_gate("agreement=1").unwrap(), parse_gate("em=0").unwrap()]);
        assert!(gates.iter().all(|g| g.pass), "{gates:?}");
    }

    #[test]
    fn deltas_agreement_and_gates() {
        // Question 1: 0.3 m and 10° apart (across ±180°), answers equal after normalising;
        // question 2: 0.1 m, 0°, answers differ and only A is right; question 3: B alone answers.
        let a = side(
            &[("acc@0.5m", 50.0), ("em", 50.0)],
            &[("1", "Two.", Some((1.0, 2.0, 175f64.to_radians())), true), ("2", "table", Some((0.0, 0.0, 0.0)), true)],
        );
        let b = side(
            &[("acc@0.5m", 25.0), ("em", 50.0)],
            &[("1", "two", Some((1.3, 2.0, -175f64.to_radians())), true), ("2", "chair", Some((0.0, 0.1, 0.0)), false), ("3", "x", None, true)],
        );
        let c = compare(Family::Sqa3d, &ids(3), &a, &b);
        assert_eq!(c.metrics[0].delta, Some(-25.0));
        let p = c.pose.as_ref().unwrap();
        assert_eq!(p.compared, 2);
        assert!((p.position_m.max.unwrap() - 0.3).abs() < 1e-12 && (p.position_m.mean.unwrap() - 0.2).abs() < 1e-12, "{p:?}");
        assert!((p.yaw_deg.max.unwrap() - 10.0).abs() < 1e-9 && (p.yaw_deg.median.unwrap() - 5.0).abs() < 1e-9, "{p:?}");
        let ans = &c.answers;
        assert_eq!((ans.questions, ans.same, ans.a_exact, ans.b_exact, ans.right_only_in_a, ans.right_only_in_b), (3, 1, 2, 2, 1, 1));
        assert!((ans.agreement.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        let gates = check_gates(
            &c,
            &["acc@0.5m=25", "acc@0.5m=24.9", "pose_m=0.3001", "pose_m_mean=0.1", "yaw_deg_median=5.001", "agreement=0.5"].map(|s| parse_gate(s).unwrap()),
        );
        assert_eq!(gates.iter().map(|g| g.pass).collect::<Vec<_>>(), [true, false, true, false, true, false], "{gates:#?}");
        assert!(gates[1].message.contains("A 50, B 25, |B − A| = 25 > 24.9"), "{}", gates[1].message);
        assert!(gates[5].message.contains("1 of 3 answers the same: 0.3333 < 0.5"), "{}", gates[5].message);
        assert_eq!(gates[3].message, "pose_m_mean: mean position delta B vs A 0.2 m > 0.1 m");
        // A metric neither side measured fails its gate.
        let mut unmeasured = c.clone();
        unmeasured.metrics.push(MetricDelta { key: "meteor", a: None, b: None, delta: None });
        let g = &check_gates(&unmeasured, &[parse_gate("meteor=100").unwrap()])[0];
        assert!(!g.pass && g.message.contains("not measured"), "{g:?}");
    }

    #[test]
    fn numbers_print_small_values_visibly() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(2.5e-5), "2.50e-5");
        assert_eq!(number(0.05), "0.05");
        assert_eq!(number(33.333333), "33.3333");
        assert_eq!(number(100.0), "100");
    }

    #[test]
    fn an_output_directory_keeps_to_its_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let id = |path: &str, sha: &str| BundleIdentity { bundle: path.into(), files: [("decoder.onnx".to_string(), sha.to_string())].into() };
        let p = Provenance { frames: 4, max_new_tokens: 16, a: id("a", "1"), b: id("b", "2") };
        p.claim(dir.path()).unwrap();
        p.claim(dir.path()).unwrap();
        // The same files elsewhere are the same bundle.
        Provenance { a: id("elsewhere", "1"), ..p.clone() }.claim(dir.path()).unwrap();
        let e = Provenance { b: id("b", "3"), ..p.clone() }.claim(dir.path()).unwrap_err().to_string();
        assert!(e.contains("another bundle as B"), "{e}");
        let e = Provenance { frames: 8, ..p.clone() }.claim(dir.path()).unwrap_err().to_string();
        assert!(e.contains("--frames 4 (now 8)"), "{e}");
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(PREDICTIONS_B), "[]").unwrap();
        let e = p.claim(other.path()).unwrap_err().to_string();
        assert!(e.contains("unknown bundles"), "{e}");
    }
}
