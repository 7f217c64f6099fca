//! SQA3D answer exact match: EM and the refined EM-R (docs/evaluation.md, "SQA3D answers").
//!
//! Every published SQA3D number goes through one answer normaliser, applied to the prediction
//! and to the ground truth alike, and then one of three matching rules. The normaliser is a chain
//! of regular-expression substitutions with Python `re` semantics; [`normalize`] reproduces each
//! step by hand, in the same order, because the order is observable ("chair ." keeps a trailing
//! space since trimming runs before punctuation is deleted; "let" becomes "left").
//!
//! From step 4 on, the only word characters left are ASCII letters and digits, so a Python `\b`
//! (Unicode word boundary) is exactly a boundary between an ASCII alphanumeric character and
//! anything else, and "a whole word `w`" is a maximal run of ASCII alphanumerics equal to `w`.

use serde::{Deserialize, Serialize};

/// The answer normaliser: the steps below, in this order (each is one left-to-right,
/// non-overlapping pass, as Python's `re.sub` does):
///
/// 1. Unicode lower case.
/// 2. Trailing ASCII spaces are removed (at the very end, or right before a final `\n`, which is
///    where Python's `$` matches), then leading ASCII spaces.
/// 3. Runs of two or more ASCII spaces become one; `". "` followed by more spaces becomes `". "`.
/// 4. Every character that is not an ASCII letter or digit, `,` `'` `-` `:`, or whitespace in
///    Python's sense (`str.isspace`) is deleted.
/// 5. `ç` → `c`, `’` → `'` (kept for fidelity: step 4 has already deleted both).
/// 6. Whole-word typo fixes: letf, let → left; tehre → there; rigth, rght → right; behine → behind;
///    tv → TV (upper case); chai → chair; wasing → washing; waslked → walked; oclock → o'clock;
///    then `o'`, one or more spaces, `clock` → o'clock.
/// 7. Whole-word numbers, in order: 0 → zero, none → zero, 1 … 20 → one … twenty,
///    23 → twenty-three (nothing else: 21 stays 21).
/// 8. A word of ASCII letters followed by exactly one digit loses the digit (mat2 → mat; mat22
///    and x1y are left alone).
/// 9. Articles: `a `, then `an `, then `the ` (three passes) are dropped when the article is a
///    whole word followed by one space and a letter; the letters after the article belong to the
///    match, so "the the box" → "the box" and "a a chair" → "a chair".
/// 10. Whole-word backwards → backward.
///
/// ```
/// use loc3r_eval::metrics::sqa3d_em::normalize;
/// assert_eq!(normalize("The chair."), "chair");
/// assert_eq!(normalize("1.5"), "fifteen");
/// assert_eq!(normalize("chair ."), "chair ");
/// ```
pub fn normalize(s: &str) -> String {
    // Step 1.
    let s = s.to_lowercase();
    // Step 2.
    let s = strip_trailing_spaces(&s);
    let s = s.trim_start_matches(' ');
    // Step 3.
    let s = collapse_space_runs(s);
    let s = collapse_spaces_after_period(&s);
    // Step 4.
    let s: String = s.chars().filter(|&c| survives_punctuation_filter(c)).collect();
    // Step 5.
    let mut s = s.replace('ç', "c").replace('’', "'");
    // Step 6.
    for (typo, fix) in TYPOS {
        s = replace_whole_word(&s, typo, fix);
    }
    s = join_o_clock(&s);
    // Step 7.
    for (number, word) in NUMBERS {
        s = replace_whole_word(&s, number, word);
    }
    // Step 8.
    s = map_words(&s, drop_single_final_digit);
    // Step 9.
    for article in ["a", "an", "the"] {
        s = drop_article(&s, article);
    }
    // Step 10.
    replace_whole_word(&s, "backwards", "backward")
}

/// Step 6's whole-word typo fixes, applied one after the other in this order.
const TYPOS: [(&str, &str); 11] = [
    ("letf", "left"),
    ("let", "left"),
    ("tehre", "there"),
    ("rigth", "right"),
    ("rght", "right"),
    ("behine", "behind"),
    ("tv", "TV"),
    ("chai", "chair"),
    ("wasing", "washing"),
    ("waslked", "walked"),
    ("oclock", "o'clock"),
];

/// Step 7's whole-word number spellings, applied one after the other in this order.
const NUMBERS: [(&str, &str); 23] = [
    ("0", "zero"),
    ("none", "zero"),
    ("1", "one"),
    ("2", "two"),
    ("3", "three"),
    ("4", "four"),
    ("5", "five"),
    ("6", "six"),
    ("7", "seven"),
    ("8", "eight"),
    ("9", "nine"),
    ("10", "ten"),
    ("11", "eleven"),
    ("12", "twelve"),
    ("13", "thirteen"),
    ("14", "fourteen"),
    ("15", "fifteen"),
    ("16", "sixteen"),
    ("17", "seventeen"),
    ("18", "eighteen"),
    ("19", "nineteen"),
    ("20", "twenty"),
    ("23", "twenty-three"),
];

/// Python's `str.isspace` (and `\s` in a `str` pattern): Unicode White_Space plus the four ASCII
/// separators U+001C–U+001F, which Rust's `char::is_whitespace` does not count.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A word character once step 4 has run (only ASCII letters and digits are left by then).
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Step 2, first half. Python's `$` matches at the end of the string and also just before a
/// final newline, so spaces right before a final `\n` go too (the newline stays).
fn strip_trailing_spaces(s: &str) -> String {
    if s.ends_with(' ') {
        return s.trim_end_matches(' ').to_string();
    }
    match s.strip_suffix('\n') {
        Some(body) => format!("{}\n", body.trim_end_matches(' ')),
        None => s.to_string(),
    }
}

/// Step 3, first half: every run of two or more ASCII spaces becomes one space.
fn collapse_space_runs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_space = false;
    for c in s.chars() {
        if !(c == ' ' && previous_space) {
            out.push(c);
        }
        previous_space = c == ' ';
    }
    out
}

/// Step 3, second half: a period followed by two or more spaces keeps one. After the first half
/// no such run exists, but the step is part of the normaliser's definition.
fn collapse_spaces_after_period(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        let spaces = after.len() - after.trim_start_matches(' ').len();
        if c == '.' && spaces >= 2 {
            out.push_str(". ");
            rest = &after[spaces..];
        } else {
            out.push(c);
            rest = after;
        }
    }
    out
}

/// Step 4's keep-list: ASCII letters and digits, `,` `'` `-` `:`, and whitespace.
fn survives_punctuation_filter(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ',' | '\'' | '-' | ':') || is_python_space(c)
}

/// Rebuilds `s` with every word (maximal run of word characters) passed through `f`; `None`
/// keeps the word as it is.
fn map_words(s: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(first) = rest.chars().next() {
        let in_word = is_word(first);
        let end = rest.find(|c: char| is_word(c) != in_word).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        match in_word.then(|| f(run)).flatten() {
            Some(replacement) => out.push_str(&replacement),
            None => out.push_str(run),
        }
        rest = tail;
    }
    out
}

/// `\bword\b` → `replacement`, for a `word` made of word characters.
fn replace_whole_word(s: &str, word: &str, replacement: &str) -> String {
    map_words(s, |w| (w == word).then(|| replacement.to_string()))
}

/// Step 8 on one word: letters followed by exactly one digit lose the digit.
fn drop_single_final_digit(word: &str) -> Option<String> {
    let (letters, last) = word.split_at(word.len().checked_sub(1)?);
    let is_letters_and_digit = !letters.is_empty() && letters.bytes().all(|b| b.is_ascii_alphabetic()) && last.bytes().all(|b| b.is_ascii_digit());
    is_letters_and_digit.then(|| letters.to_string())
}

/// True when position `i` of `s` is not preceded by a word character (the left half of `\b`
/// before a word character).
fn starts_word(s: &str, i: usize) -> bool {
    !s[..i].chars().next_back().is_some_and(is_word)
}

/// True when position `i` of `s` is not followed by a word character (the right half of `\b`
/// after a word character).
fn ends_word(s: &str, i: usize) -> bool {
    !s[i..].chars().next().is_some_and(is_word)
}

/// Step 6's last fix: `\bo'[ ]+clock\b` → `o'clock`.
fn join_o_clock(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        if let Some(end) = o_clock_match_end(s, i) {
            out.push_str("o'clock");
            i = end;
        } else {
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The end of a `\bo'[ ]+clock\b` match starting at `i`, if there is one.
fn o_clock_match_end(s: &str, i: usize) -> Option<usize> {
    let after_o = s[i..].strip_prefix("o'").filter(|_| starts_word(s, i))?;
    let after_spaces = after_o.trim_start_matches(' ');
    if after_spaces.len() == after_o.len() {
        return None;
    }
    let end = s.len() - after_spaces.strip_prefix("clock")?.len();
    ends_word(s, end).then_some(end)
}

/// Step 9, one article: `\b<article>\b ([a-zA-Z]+)` → the letters.
fn drop_article(s: &str, article: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        let following = s[i..].strip_prefix(article).filter(|_| starts_word(s, i)).and_then(|r| r.strip_prefix(' '));
        let letters = following.map(|r| &r[..r.len() - r.trim_start_matches(|c: char| c.is_ascii_alphabetic()).len()]);
        match letters.filter(|l| !l.is_empty()) {
            Some(letters) => {
                out.push_str(letters);
                i += article.len() + 1 + letters.len();
            }
            None => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// How a normalised prediction is matched against the normalised ground truths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchVariant {
    /// An exact hit in any ground truth gives EM and EM-R; otherwise EM-R holds when, with all
    /// whitespace removed, the prediction contains a ground truth or is contained in one. An
    /// empty prediction is contained in everything, so it scores EM-R.
    #[default]
    ExactFirst,
    /// [`MatchVariant::ExactFirst`], except that an empty prediction scores nothing.
    ExactFirstGuard,
    /// Ground truths are tried in order and the first one that matches at all decides, so a
    /// containment hit on an earlier ground truth hides an exact hit on a later one.
    LeoLoop,
}

/// `s` with every whitespace character (Python's sense) removed.
fn without_whitespace(s: &str) -> String {
    s.chars().filter(|&c| !is_python_space(c)).collect()
}

/// Whether either whitespace-free string contains the other.
fn contained_either_way(p: &str, g: &str) -> bool {
    let (p, g) = (without_whitespace(p), without_whitespace(g));
    g.contains(&p) || p.contains(&g)
}

/// `(em, em_r)` of a prediction against its ground truths; both sides are normalised first.
pub fn match_answer(pred: &str, gts: &[&str], variant: MatchVariant) -> (bool, bool) {
    let gts: Vec<String> = gts.iter().map(|g| normalize(g)).collect();
    let gts: Vec<&str> = gts.iter().map(String::as_str).collect();
    match_normalized(&normalize(pred), &gts, variant)
}

/// `(em, em_r)` of an already normalised prediction against already normalised ground truths
/// (for callers that also record the normalised forms).
pub fn match_normalized(pred: &str, gts: &[&str], variant: MatchVariant) -> (bool, bool) {
    match variant {
        MatchVariant::ExactFirstGuard if pred.is_empty() => (false, false),
        MatchVariant::ExactFirst | MatchVariant::ExactFirstGuard => {
            if gts.contains(&pred) {
                (true, true)
            } else {
                (false, gts.iter().any(|g| contained_either_way(pred, g)))
            }
        }
        MatchVariant::LeoLoop => gts
            .iter()
            .find_map(|g| if pred == *g { Some((true, true)) } else { contained_either_way(pred, g).then_some((false, true)) })
            .unwrap_or((false, false)),
    }
}

/// EM and EM-R over a set of questions, as percentages of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmScores {
    /// Number of questions scored.
    pub n: usize,
    /// Exact matches ×100 / n (0 when n = 0).
    pub em: f64,
    /// Refined matches ×100 / n (0 when n = 0).
    pub em_r: f64,
}

/// EM and EM-R of per-question `(em, em_r)` results, e.g. from [`match_answer`].
pub fn score_em(matches: &[(bool, bool)]) -> EmScores {
    let n = matches.len();
    let percent = |hits: usize| if n == 0 { 0.0 } else { hits as f64 * 100.0 / n as f64 };
    EmScores { n, em: percent(matches.iter().filter(|m| m.0).count()), em_r: percent(matches.iter().filter(|m| m.1).count()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(s)
    }

    #[test]
    fn consequences_of_the_step_order() {
        for (input, expected) in [
            ("1.5", "fifteen"),
            ("2.5", "25"),
            ("0.5", "05"),
            ("1,000", "one,000"),
            ("2-3", "two-three"),
            ("a 2", "two"),
            ("let me see", "left me see"),
            ("chair .", "chair "),
            ("it’s", "its"),
            ("café", "caf"),
            ("the the box", "the box"),
        ] {
            assert_eq!(n(input), expected, "N({input:?})");
        }
    }

    #[test]
    fn extra_normaliser_vectors() {
        for (input, expected) in [
            ("tv", "TV"),
            ("none", "zero"),
            ("mat2", "mat"),
            ("a a chair", "a chair"),
            ("it’s", "its"),
            ("2-3", "two-three"),
            ("1,000", "one,000"),
            ("mat22", "mat22"),
            ("x1y", "x1y"),
            ("21", "21"),
            ("22", "22"),
            ("23", "twenty-three"),
            ("24", "24"),
            ("20", "twenty"),
            ("0", "zero"),
            ("5 o' \u{20} clock", "five o'clock"),
            ("oclock", "o'clock"),
            ("Go Backwards!", "go backward"),
            ("an apple", "apple"),
            ("a tv", "TV"),
            ("the 3 chairs", "three chairs"),
            ("letf rigth rght tehre behine chai wasing waslked", "left right right there behind chair washing walked"),
        ] {
            assert_eq!(n(input), expected, "N({input:?})");
        }
    }

    #[test]
    fn whitespace_steps_follow_python_re() {
        // `$` also matches before a final newline; only ASCII spaces are trimmed and collapsed.
        assert_eq!(n("  yes  \n"), "yes\n");
        assert_eq!(n("yes \n\n"), "yes \n\n");
        assert_eq!(n("yes\t \t"), "yes\t \t");
        assert_eq!(n("left    side"), "left side");
        assert_eq!(n("end.   next"), "end next");
        assert_eq!(n("   "), "");
        // Python's isspace counts U+001C..U+001F; U+200B (zero width space) is not whitespace.
        assert_eq!(n("a\u{1c}b\u{200b}c"), "a\u{1c}bc");
        assert_eq!(n("no\u{a0}1"), "no\u{a0}one");
    }

    #[test]
    fn articles_consume_the_next_word() {
        assert_eq!(n("a a a chair"), "a chair");
        assert_eq!(n("a an apple"), "apple");
        assert_eq!(n("the a chair"), "chair");
        assert_eq!(n("a 2b"), "a 2b");
        assert_eq!(n("banana a"), "banana a");
        assert_eq!(n("a  box"), "box");
        assert_eq!(n("a\tbox"), "a\tbox");
    }

    /// The SQA3D single-ground-truth table: totals EM 40, EM-R 90 (default) and 80 (guard).
    #[test]
    fn sqa3d_table() {
        let rows: [(&str, &str, &str, bool, bool, bool); 10] = [
            ("Yes.", "yes", "yes", true, true, true),
            ("The chair", "chair", "chair", true, true, true),
            ("2", "two", "two", true, true, true),
            ("brown wooden", "brown", "brown wooden", false, true, true),
            ("", "yes", "", false, true, false),
            ("chair .", "chair", "chair ", false, true, true),
            ("1.5", "fifteen", "fifteen", true, true, true),
            ("let me see", "left", "left me see", false, true, true),
            ("no", "north", "no", false, true, true),
            ("21", "twenty-one", "21", false, false, false),
        ];
        let mut default = Vec::new();
        let mut guard = Vec::new();
        for (pred, gt, normalised, em, em_r, em_r_guard) in rows {
            assert_eq!(n(pred), normalised);
            let d = match_answer(pred, &[gt], MatchVariant::ExactFirst);
            let g = match_answer(pred, &[gt], MatchVariant::ExactFirstGuard);
            let l = match_answer(pred, &[gt], MatchVariant::LeoLoop);
            assert_eq!(d, (em, em_r), "{pred:?}");
            assert_eq!(g, (em, em_r_guard), "{pred:?}");
            assert_eq!(l, d, "one ground truth: the loop agrees with the default ({pred:?})");
            default.push(d);
            guard.push(g);
        }
        let d = score_em(&default);
        let g = score_em(&guard);
        assert_eq!((d.n, d.em, d.em_r), (10, 40.0, 90.0));
        assert_eq!((g.n, g.em, g.em_r), (10, 40.0, 80.0));
    }

    #[test]
    fn several_ground_truths() {
        let gts = ["brown chair", "chair"];
        assert_eq!(match_answer("chair", &gts, MatchVariant::ExactFirst), (true, true));
        assert_eq!(match_answer("chair", &gts, MatchVariant::ExactFirstGuard), (true, true));
        assert_eq!(match_answer("chair", &gts, MatchVariant::LeoLoop), (false, true));
        assert_eq!(match_answer("table", &gts, MatchVariant::LeoLoop), (false, false));
        assert_eq!(match_answer("The Brown Chair", &gts, MatchVariant::LeoLoop), (true, true));
        // Containment ignores whitespace on both sides.
        assert_eq!(match_answer("brownchair", &["brown chair"], MatchVariant::ExactFirst), (false, true));
        assert_eq!(match_answer("x", &[], MatchVariant::ExactFirst), (false, false));
    }

    #[test]
    fn empty_score_set() {
        assert_eq!(score_em(&[]), EmScores { n: 0, em: 0.0, em_r: 0.0 });
    }
}
