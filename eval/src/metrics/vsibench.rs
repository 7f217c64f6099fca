//! VSI-Bench scoring as its reference implementation computes it (docs/evaluation.md, VSI-Bench):
//! mean relative accuracy (MRA) for the numeric question types, exact letter match for the
//! multiple-choice ones, a mean per question type, the three relative-direction difficulties
//! averaged into one column without weighting by their sizes, and the overall score as the
//! unweighted mean of the eight columns.

use std::collections::BTreeMap;

use serde::Serialize;

/// The relative-error thresholds of MRA: `1 − c` for `c` in NumPy's `linspace(0.5, 0.95, 10)`,
/// exactly as that computes them in f64 (so the boundaries fall where the reference's do).
pub const MRA_THRESHOLDS: [f64; 10] =
    [0.5, 0.44999999999999996, 0.4, 0.35, 0.30000000000000004, 0.25, 0.19999999999999996, 0.15000000000000002, 0.10000000000000009, 0.050000000000000044];

/// How a question type is scored, and the paper column it reports into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuestionKind {
    pub numeric: bool,
    pub column: &'static str,
}

/// The eight paper columns, in the paper's order.
pub const COLUMNS: [&str; 8] = ["Obj. Count", "Abs. Dist.", "Obj. Size", "Room Size", "Rel. Dist.", "Rel. Dir.", "Route Plan", "Appr. Order"];

/// The scoring of a `question_type`, or `None` for a type VSI-Bench does not have.
pub fn question_kind(question_type: &str) -> Option<QuestionKind> {
    let (numeric, column) = match question_type {
        "object_counting" => (true, COLUMNS[0]),
        "object_abs_distance" => (true, COLUMNS[1]),
        "object_size_estimation" => (true, COLUMNS[2]),
        "room_size_estimation" => (true, COLUMNS[3]),
        "object_rel_distance" => (false, COLUMNS[4]),
        "object_rel_direction_easy" | "object_rel_direction_medium" | "object_rel_direction_hard" => (false, COLUMNS[5]),
        "route_planning" => (false, COLUMNS[6]),
        "obj_appearance_order" => (false, COLUMNS[7]),
        _ => return None,
    };
    Some(QuestionKind { numeric, column })
}

/// Why an item cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VsiError {
    #[error("unknown VSI-Bench question_type `{0}`")]
    UnknownType(String),
    #[error("ground truth `{0}` of a numeric question is not a number")]
    BadGroundTruth(String),
    #[error("ground truth 0 of a numeric question: relative accuracy is undefined (the reference divides by it)")]
    ZeroGroundTruth,
}

/// The answer the reference extracts from a prediction: the part before the first space, all
/// trailing full stops removed, then surrounding whitespace stripped (Python `str.strip`).
pub fn extract_answer(pred: &str) -> String {
    let first = pred.split(' ').next().unwrap_or("");
    first.trim_end_matches('.').trim_matches(crate::metrics::sqa3d_em::is_python_space).to_string()
}

/// Python's `float(s)`: decimal and exponent forms, `inf`, `infinity` and `nan` in any case with
/// an optional sign, single underscores between digits, surrounding whitespace, and digits of any
/// script (`"٣.٥"` and `"３"` parse). `None` where Python raises.
pub fn python_float(s: &str) -> Option<f64> {
    // Python first rewrites the text to ASCII: non-ASCII whitespace becomes a space and every
    // Unicode decimal digit its ASCII digit, while ASCII passes unchanged; any other non-ASCII
    // character makes the text invalid. Only then does it strip, and only ASCII whitespace, so
    // U+001C..U+001F (whitespace to `str.isspace`) are refused.
    let mut ascii = String::with_capacity(s.len());
    for c in s.chars() {
        ascii.push(if c.is_ascii() {
            c
        } else if crate::metrics::sqa3d_em::is_python_space(c) {
            ' '
        } else {
            char::from(b'0' + unicode_decimal_digit(c)?)
        });
    }
    let s = ascii.trim_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
    if s.is_empty() {
        return None;
    }
    let cleaned = if s.contains('_') {
        let b = s.as_bytes();
        let ok = b.iter().enumerate().all(|(i, &c)| c != b'_' || (i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit()));
        if !ok {
            return None;
        }
        s.replace('_', "")
    } else {
        s.to_string()
    };
    let unsigned = cleaned.trim_start_matches(['+', '-']);
    if cleaned.len() - unsigned.len() > 1 {
        return None;
    }
    let lower = unsigned.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return cleaned.parse::<f64>().ok();
    }
    // Rust's parser also accepts these forms; what Python refuses must be refused here first.
    let valid = unsigned.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) && unsigned.chars().any(|c| c.is_ascii_digit());
    if !valid {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// The first code point of every run of Unicode decimal digits (Numeric_Type=Decimal, the same
/// set as General_Category Nd), each run being the digits 0 to 9 in order, as of Unicode 14.0.
/// That is the table of Python 3.11; later Pythons also accept the few digit sets added since.
const DECIMAL_DIGIT_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810,
    0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066,
    0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The value of a Unicode decimal digit (Python's `unicodedata.decimal`), `None` for any other
/// character.
fn unicode_decimal_digit(c: char) -> Option<u8> {
    let c = u32::from(c);
    let i = DECIMAL_DIGIT_ZEROS.partition_point(|&zero| zero <= c).checked_sub(1)?;
    let value = c - DECIMAL_DIGIT_ZEROS[i];
    (value < 10).then_some(value as u8)
}

/// Mean relative accuracy of a numeric prediction: the share of the ten thresholds τ with
/// `|pred − gt| / gt ≤ τ`, evaluated as written for every input, as the reference does: a NaN
/// prediction scores 0, so does an infinite one against a positive ground truth, and against a
/// negative ground truth every threshold holds.
pub fn mra(pred: f64, gt: f64) -> Result<f64, VsiError> {
    if gt == 0.0 {
        return Err(VsiError::ZeroGroundTruth);
    }
    let rel = (pred - gt).abs() / gt;
    Ok(MRA_THRESHOLDS.iter().filter(|&&t| rel <= t).count() as f64 / MRA_THRESHOLDS.len() as f64)
}

/// The score of one prediction (in [0, 1]).
pub fn score_item(question_type: &str, pred: &str, ground_truth: &str) -> Result<f64, VsiError> {
    let kind = question_kind(question_type).ok_or_else(|| VsiError::UnknownType(question_type.to_string()))?;
    let answer = extract_answer(pred);
    if kind.numeric {
        let gt = python_float(ground_truth).ok_or_else(|| VsiError::BadGroundTruth(ground_truth.to_string()))?;
        match python_float(&answer) {
            Some(p) => mra(p, gt),
            None => Ok(0.0),
        }
    } else {
        Ok(if answer.to_lowercase() == ground_truth.to_lowercase() { 1.0 } else { 0.0 })
    }
}

/// One item to score.
#[derive(Debug, Clone)]
pub struct VsiItem<'a> {
    pub question_type: &'a str,
    pub prediction: &'a str,
    pub ground_truth: &'a str,
}

/// VSI-Bench scores, ×100.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VsiScores {
    /// Per question type: (items, mean score ×100).
    pub per_type: BTreeMap<String, (usize, f64)>,
    /// Per paper column present (Rel. Dir. = unweighted mean of its difficulties), ×100.
    pub columns: BTreeMap<String, f64>,
    /// Unweighted mean of the columns present, ×100.
    pub overall: f64,
}

/// Scores a set of items.
pub fn score_vsibench(items: &[VsiItem<'_>]) -> Result<VsiScores, VsiError> {
    // Per question type: its column, items and score sum.
    let mut sums: BTreeMap<&str, (&'static str, usize, f64)> = BTreeMap::new();
    for item in items {
        let s = score_item(item.question_type, item.prediction, item.ground_truth)?;
        let column = question_kind(item.question_type).ok_or_else(|| VsiError::UnknownType(item.question_type.to_string()))?.column;
        let e = sums.entry(item.question_type).or_insert((column, 0, 0.0));
        e.1 += 1;
        e.2 += s;
    }
    let per_type: BTreeMap<String, (usize, f64)> = sums.iter().map(|(t, (_, n, s))| (t.to_string(), (*n, s / *n as f64 * 100.0))).collect();
    let mut by_column: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (column, n, sum) in sums.values() {
        by_column.entry(column).or_default().push(sum / *n as f64 * 100.0);
    }
    let columns: BTreeMap<String, f64> = by_column.iter().map(|(c, v)| (c.to_string(), v.iter().sum::<f64>() / v.len() as f64)).collect();
    let overall = if columns.is_empty() { 0.0 } else { columns.values().sum::<f64>() / columns.len() as f64 };
    Ok(VsiScores { per_type, columns, overall })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn thresholds_are_numpys() {
        for (k, t) in MRA_THRESHOLDS.iter().enumerate() {
            let c = 0.5 + k as f64 * ((0.95 - 0.5) / 9.0);
            let c = if k == 9 { 0.95 } else { c };
            assert_eq!(*t, 1.0 - c, "k = {k}");
        }
    }

    #[test]
    fn hand_checked_items_and_aggregation() {
        let rows: [(&str, &str, &str, f64); 15] = [
            ("object_counting", "3", "3", 1.0),
            ("object_counting", "4", "5", 0.6),
            ("object_abs_distance", "1.2", "1.0", 0.7),
            ("object_abs_distance", "2.5m", "2.5", 0.0),
            ("object_size_estimation", "60", "50", 0.6),
            ("room_size_estimation", "18", "20", 0.9),
            ("object_rel_distance", "B", "B", 1.0),
            ("object_rel_distance", "C. lamp", "A", 0.0),
            ("object_rel_direction_easy", "A", "A", 1.0),
            ("object_rel_direction_medium", "B.", "C", 0.0),
            ("object_rel_direction_medium", "c", "C", 1.0),
            ("object_rel_direction_hard", "The answer is D", "D", 0.0),
            ("object_rel_direction_hard", "D", "D", 1.0),
            ("route_planning", "A. Turn left", "A", 1.0),
            ("obj_appearance_order", "(B)", "B", 0.0),
        ];
        for (t, p, g, want) in rows {
            assert!(close(score_item(t, p, g).unwrap(), want), "{t} {p:?} -> {g}");
        }
        let items: Vec<VsiItem> = rows.iter().map(|(t, p, g, _)| VsiItem { question_type: t, prediction: p, ground_truth: g }).collect();
        let s = score_vsibench(&items).unwrap();
        assert!(close(s.columns["Obj. Count"], 80.0) && close(s.columns["Abs. Dist."], 35.0));
        assert!(close(s.columns["Rel. Dir."], 200.0 / 3.0), "unweighted over difficulties: {}", s.columns["Rel. Dir."]);
        assert!((s.overall - 60.208333).abs() < 1e-6, "{}", s.overall);
    }

    #[test]
    fn mra_boundaries() {
        for (p, g, want) in [(1.1, 1.0, 0.9), (1.15, 1.0, 0.8), (1.35, 1.0, 0.3), (1.5, 1.0, 0.1), (2.0, 1.0, 0.0)] {
            assert!(close(mra(p, g).unwrap(), want), "{p} vs {g}: {}", mra(p, g).unwrap());
        }
        assert!(close(score_item("object_counting", "1e0", "1").unwrap(), 1.0));
        assert_eq!(score_item("object_counting", "nan", "1").unwrap(), 0.0);
        assert_eq!(score_item("object_counting", "inf", "1").unwrap(), 0.0);
        // |inf − gt| / gt is −inf for a negative ground truth, under every threshold.
        assert_eq!(score_item("object_abs_distance", "inf", "-2").unwrap(), 1.0);
        assert_eq!(score_item("object_abs_distance", "nan", "-2").unwrap(), 0.0);
        assert_eq!(mra(1.0, 0.0), Err(VsiError::ZeroGroundTruth));
    }

    #[test]
    fn extraction_and_python_floats() {
        assert_eq!(score_item("route_planning", "B.\nbecause", "B").unwrap(), 0.0);
        assert_eq!(score_item("route_planning", "B,", "B").unwrap(), 0.0);
        assert_eq!(score_item("route_planning", "b", "B").unwrap(), 1.0);
        assert_eq!(extract_answer("A... rest"), "A");
        for (s, want) in [
            ("4.", Some(4.0)),
            ("1_000", Some(1000.0)),
            ("+2.5", Some(2.5)),
            ("-1e-2", Some(-0.01)),
            (".5", Some(0.5)),
            ("١", Some(1.0)),
            ("٣.٥e١", Some(35.0)),
            ("１_２", Some(12.0)),
            ("\u{a0}7\u{2003}", Some(7.0)),
            ("\u{b}7\u{c}", Some(7.0)),
        ] {
            assert_eq!(python_float(s), want, "{s}");
        }
        for s in ["1__0", "_1", "1_", "0x10", "1e", "", "--1", "1.2.3", "\u{1c}5", "5\u{1f}", "½", "²", "－5", "1 2", "\u{a0}"] {
            assert_eq!(python_float(s), None, "{s}");
        }
        assert!(python_float("Infinity").is_some_and(|v| v.is_infinite()) && python_float("-NaN").is_some_and(f64::is_nan));
        assert!(matches!(score_item("what", "1", "1"), Err(VsiError::UnknownType(_))));
    }
}
