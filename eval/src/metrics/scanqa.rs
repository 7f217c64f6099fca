//! ScanQA answer scoring: exact match plus the caption metrics of pycocoevalcap 1.2 (BLEU-1..4,
//! ROUGE-L, CIDEr, METEOR), under the three protocols papers use (docs/evaluation.md, "ScanQA").
//!
//! The protocols differ only in what reaches the scorers, and that changes the numbers a lot:
//!
//! | protocol | EM | scorer inputs |
//! |---|---|---|
//! | [`Protocol::Video3dllm`] | raw prediction equals a raw answer | prediction without its trailing periods; answers raw; no tokenizer, case kept |
//! | [`Protocol::Official`] | raw prediction equals a raw answer | PTB-tokenised prediction and answers |
//! | [`Protocol::LeoPtb`] | SQA3D normaliser + `exact_first` (EM and EM-R) | PTB-tokenised normalised prediction and answers |
//!
//! A question without a prediction is scored as the empty answer and counted as wrong (EM and
//! EM-R 0); it is never left out, since that would change the denominator and CIDEr's weights.

use std::path::Path;

use serde::Serialize;

use super::ngram::{bleu::bleu, cider::cider, meteor, ptb, rouge::rouge_l, Caption, NgramError};
use super::sqa3d_em::{is_python_space, match_answer, normalize, MatchVariant};

/// Which paper's pipeline turns predictions and answers into scorer inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Video-3D-LLM, Ross3D, Spatial-MLLM: whitespace tokens, case kept, trailing "." removed
    /// from the prediction.
    Video3dllm,
    /// ScanQA's own `score.py`: PTB tokenizer on both sides.
    Official,
    /// LLaVA-3D: the SQA3D normaliser on both sides, then the PTB tokenizer; EM and EM-R with
    /// the `exact_first` rule.
    LeoPtb,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Video3dllm, Protocol::Official, Protocol::LeoPtb];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Video3dllm => "video3dllm",
            Protocol::Official => "official",
            Protocol::LeoPtb => "leo_ptb",
        }
    }

    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The scorers' hypothesis for a prediction.
    pub fn hypothesis(self, prediction: &str) -> String {
        match self {
            Protocol::Video3dllm => prediction.trim_end_matches('.').to_string(),
            Protocol::Official => ptb::tokenize(prediction),
            Protocol::LeoPtb => ptb::tokenize(&normalize(prediction)),
        }
    }

    /// The scorers' reference for a ground-truth answer.
    pub fn reference(self, answer: &str) -> String {
        match self {
            Protocol::Video3dllm => answer.to_string(),
            Protocol::Official => ptb::tokenize(answer),
            Protocol::LeoPtb => ptb::tokenize(normalize(answer).replace('\n', " ").trim_matches(is_python_space)),
        }
    }

    /// Whether the protocol reports EM-R.
    pub fn has_em_r(self) -> bool {
        self == Protocol::LeoPtb
    }

    /// `(em, em_r)` of a prediction; EM-R only where the protocol defines it.
    pub fn exact_match(self, prediction: &str, answers: &[String]) -> (bool, Option<bool>) {
        match self {
            Protocol::Video3dllm | Protocol::Official => (answers.iter().any(|a| a == prediction), None),
            Protocol::LeoPtb => {
                let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
                let (em, em_r) = match_answer(prediction, &answers, MatchVariant::ExactFirst);
                (em, Some(em_r))
            }
        }
    }
}

/// One ground-truth question and the model's top-1 answer to it (`None`: no prediction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanQaQuestion {
    pub question_id: String,
    pub answers: Vec<String>,
    pub prediction: Option<String>,
}

/// One question's scores under one protocol.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionScores {
    pub question_id: String,
    pub predicted: bool,
    pub em: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub em_r: Option<bool>,
    /// The scorers' inputs.
    pub hypothesis: String,
    pub references: Vec<String>,
    /// BLEU-1..4 of this question alone.
    pub bleu: [f64; 4],
    pub rouge_l: f64,
    pub cider: f64,
    pub meteor: Option<f64>,
}

/// A protocol's corpus scores. EM and EM-R are percentages; BLEU, ROUGE-L, CIDEr and METEOR are
/// as pycocoevalcap returns them (papers print them ×100).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtocolScores {
    pub protocol: Protocol,
    /// Questions scored (every ground-truth question).
    pub questions: usize,
    /// Of which had no prediction (scored as wrong).
    pub missing_predictions: usize,
    pub em: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub em_r: Option<f64>,
    pub bleu: [f64; 4],
    pub rouge_l: f64,
    pub cider: f64,
    pub meteor: meteor::Meteor,
    #[serde(skip)]
    pub per_question: Vec<QuestionScores>,
}

/// Scores every question under `protocol`; METEOR only when `meteor_jar` is given (and Java runs).
pub fn score(questions: &[ScanQaQuestion], protocol: Protocol, meteor_jar: Option<&Path>) -> Result<ProtocolScores, NgramError> {
    let corpus: Vec<Caption> = questions
        .iter()
        .map(|q| Caption {
            hypothesis: protocol.hypothesis(q.prediction.as_deref().unwrap_or("")),
            references: q.answers.iter().map(|a| protocol.reference(a)).collect(),
        })
        .collect();
    let bleu = bleu(&corpus)?;
    let rouge = rouge_l(&corpus)?;
    let cider = cider(&corpus)?;
    let meteor = meteor::meteor(&corpus, meteor_jar);
    let matches: Vec<(bool, Option<bool>)> = questions
        .iter()
        .map(|q| match &q.prediction {
            Some(p) => protocol.exact_match(p, &q.answers),
            None => (false, protocol.has_em_r().then_some(false)),
        })
        .collect();
    let n = questions.len() as f64;
    let percent = |hits: usize| hits as f64 * 100.0 / n;
    let em = percent(matches.iter().filter(|m| m.0).count());
    let em_r = matches.iter().map(|m| m.1).collect::<Option<Vec<bool>>>().map(|r| percent(r.iter().filter(|&&x| x).count()));
    let per_question = questions
        .iter()
        .zip(corpus)
        .zip(&matches)
        .enumerate()
        .map(|(i, ((q, caption), &(em, em_r)))| QuestionScores {
            question_id: q.question_id.clone(),
            predicted: q.prediction.is_some(),
            em,
            em_r,
            hypothesis: caption.hypothesis,
            references: caption.references,
            bleu: bleu.per_item[i],
            rouge_l: rouge.per_item[i],
            cider: cider.per_item[i],
            meteor: meteor.per_item.get(i).copied(),
        })
        .collect();
    Ok(ProtocolScores {
        protocol,
        questions: questions.len(),
        missing_predictions: questions.iter().filter(|q| q.prediction.is_none()).count(),
        em,
        em_r,
        bleu: bleu.corpus,
        rouge_l: rouge.corpus,
        cider: cider.corpus,
        meteor,
        per_question,
    })
}

/// The scores as a small text table, one row per protocol, everything ×100 as papers print it.
pub fn table(scores: &[ProtocolScores]) -> String {
    let mut out = String::new();
    if let Some(first) = scores.first() {
        out.push_str(&format!("ScanQA: {} questions, {} without a prediction (scored as wrong)\n", first.questions, first.missing_predictions));
    }
    out.push_str(&format!(
        "{:<11} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7}\n",
        "protocol", "EM", "EM-R", "B-1", "B-2", "B-3", "B-4", "ROUGE-L", "CIDEr", "METEOR"
    ));
    for s in scores {
        let em_r = s.em_r.map_or("-".to_string(), |v| format!("{v:.2}"));
        let meteor = s.meteor.corpus.map_or("-".to_string(), |v| format!("{:.2}", v * 100.0));
        out.push_str(&format!(
            "{:<11} {:>6.2} {:>6} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>7.2} {:>7.2} {:>7}\n",
            s.protocol.name(),
            s.em,
            em_r,
            s.bleu[0] * 100.0,
            s.bleu[1] * 100.0,
            s.bleu[2] * 100.0,
            s.bleu[3] * 100.0,
            s.rouge_l * 100.0,
            s.cider * 100.0,
            meteor
        ));
    }
    if let Some(reason) = scores.iter().find_map(|s| s.meteor.unavailable.as_deref()) {
        out.push_str(&format!("METEOR: {reason}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(id: &str, answers: &[&str], prediction: Option<&str>) -> ScanQaQuestion {
        ScanQaQuestion { question_id: id.into(), answers: answers.iter().map(|a| a.to_string()).collect(), prediction: prediction.map(str::to_string) }
    }

    fn three_items() -> Vec<ScanQaQuestion> {
        vec![
            question("q1", &["brown wooden chair", "brown chair"], Some("brown chair")),
            question("q2", &["on the table"], Some("On table.")),
            question("q3", &["white chair"], Some("black chair")),
        ]
    }

    fn close(got: f64, expected: f64, what: &str) {
        assert!((got - expected).abs() < 1e-6 + 5e-7, "{what}: {got} vs {expected}");
    }

    struct Row {
        protocol: Protocol,
        em: f64,
        em_r: Option<f64>,
        bleu: [f64; 4],
        rouge_l: f64,
        cider: f64,
        cider_items: [f64; 3],
    }

    /// The three-item corpus, every number as pycocoevalcap 1.2 prints it (6 decimals).
    #[test]
    fn three_item_corpus_under_every_protocol() {
        let rows = [
            Row {
                protocol: Protocol::Video3dllm,
                em: 100.0 / 3.0,
                em_r: None,
                bleu: [0.564321, 0.399035, 0.005127, 0.000581],
                rouge_l: 0.628692,
                cider: 1.568435,
                cider_items: [3.399054, 1.006543, 0.299708],
            },
            Row {
                protocol: Protocol::Official,
                em: 100.0 / 3.0,
                em_r: None,
                bleu: [0.705401, 0.446135, 0.005523, 0.000615],
                rouge_l: 0.757384,
                cider: 1.903950,
                cider_items: [3.399054, 2.013087, 0.299708],
            },
            Row {
                protocol: Protocol::LeoPtb,
                em: 200.0 / 3.0,
                em_r: Some(200.0 / 3.0),
                bleu: [0.833333, 0.745356, 0.008221, 0.000863],
                rouge_l: 0.833333,
                cider: 2.899587,
                cider_items: [3.399054, 5.000000, 0.299708],
            },
        ];
        for row in rows {
            let s = score(&three_items(), row.protocol, None).unwrap();
            let name = row.protocol.name();
            assert_eq!(s.questions, 3);
            assert_eq!(s.missing_predictions, 0);
            close(s.em, row.em, &format!("{name} EM"));
            assert_eq!(s.em_r.is_some(), row.em_r.is_some(), "{name} EM-R");
            if let (Some(got), Some(expected)) = (s.em_r, row.em_r) {
                close(got, expected, &format!("{name} EM-R"));
            }
            for n in 0..4 {
                close(s.bleu[n], row.bleu[n], &format!("{name} BLEU-{}", n + 1));
            }
            close(s.rouge_l, row.rouge_l, &format!("{name} ROUGE-L"));
            close(s.cider, row.cider, &format!("{name} CIDEr"));
            for (i, expected) in row.cider_items.iter().enumerate() {
                close(s.per_question[i].cider, *expected, &format!("{name} CIDEr item {}", i + 1));
            }
            assert_eq!(s.meteor.corpus, None);
            assert_eq!(s.meteor.unavailable.as_deref(), Some(meteor::NOT_CONFIGURED));
        }
    }

    /// The variant whose third item shares no word ("black" against "white"). Its published
    /// numbers are the PTB (`official`) ones: with raw tokens "On" ≠ "on" and BLEU-1 would be
    /// 3/5·e^(−1/5) = 0.491238, while PTB lower-cases it and gives 4/5·e^(−1/5) = 0.654985.
    #[test]
    fn variant_without_the_shared_word() {
        let items = vec![
            question("q1", &["brown wooden chair", "brown chair"], Some("brown chair")),
            question("q2", &["on the table"], Some("On table.")),
            question("q3", &["white"], Some("black")),
        ];
        let raw = score(&items, Protocol::Video3dllm, None).unwrap();
        close(raw.bleu[0], 0.6 * (-0.2f64).exp(), "video3dllm BLEU-1");
        let s = score(&items, Protocol::Official, None).unwrap();
        close(s.bleu[0], 0.654985, "BLEU-1");
        close(s.rouge_l, 0.590717, "ROUGE-L");
        close(s.cider, 1.839877, "CIDEr");
    }

    /// METEOR through the jar, when `LOC3R_METEOR_JAR` names one (and Java runs); without it
    /// there is nothing to compare and the test says so.
    #[test]
    fn meteor_through_the_jar_when_configured() {
        let Some(jar) = meteor::jar_from_env() else {
            eprintln!("LOC3R_METEOR_JAR is not set: METEOR bridge not exercised");
            return;
        };
        let video3dllm = score(&three_items(), Protocol::Video3dllm, Some(&jar)).unwrap();
        let leo = score(&three_items(), Protocol::LeoPtb, Some(&jar)).unwrap();
        assert_eq!(video3dllm.meteor.unavailable, None);
        close(video3dllm.meteor.corpus.unwrap(), 0.353563, "video3dllm METEOR");
        close(leo.meteor.corpus.unwrap(), 0.459170, "leo_ptb METEOR");
        assert_eq!(video3dllm.per_question[0].meteor, Some(1.0));
    }

    #[test]
    fn scorer_inputs_per_protocol() {
        assert_eq!(Protocol::Video3dllm.hypothesis("On table.."), "On table");
        assert_eq!(Protocol::Official.hypothesis("On table."), "on table");
        assert_eq!(Protocol::LeoPtb.hypothesis("On the table."), "on table");
        assert_eq!(Protocol::LeoPtb.reference("The 2 chairs\n"), "two chairs");
        assert_eq!(Protocol::Official.reference("don't know"), "do n't know");
        assert_eq!(Protocol::from_name("leo_ptb"), Some(Protocol::LeoPtb));
        assert_eq!(Protocol::from_name("leo"), None);
    }

    #[test]
    fn exact_match_rules() {
        let answers = vec!["brown chair".to_string(), "chair".to_string()];
        assert_eq!(Protocol::Official.exact_match("Chair", &answers), (false, None));
        assert_eq!(Protocol::Video3dllm.exact_match("chair", &answers), (true, None));
        assert_eq!(Protocol::LeoPtb.exact_match("The Chair.", &answers), (true, Some(true)));
        assert_eq!(Protocol::LeoPtb.exact_match("wooden chair", &answers), (false, Some(true)));
    }

    #[test]
    fn a_missing_prediction_counts_as_wrong() {
        let mut items = three_items();
        items[0].prediction = None;
        for protocol in Protocol::ALL {
            let s = score(&items, protocol, None).unwrap();
            assert_eq!(s.questions, 3);
            assert_eq!(s.missing_predictions, 1);
            assert!(!s.per_question[0].em && !s.per_question[0].predicted);
            assert_eq!(s.per_question[0].em_r, s.em_r.map(|_| false), "{}", protocol.name());
            assert_eq!(s.per_question[0].cider, 0.0);
        }
        // An empty prediction that was given is an answer like any other: under leo_ptb the empty
        // string is contained in every answer, so it gets EM-R (the reference's behaviour).
        items[0].prediction = Some(String::new());
        let s = score(&items, Protocol::LeoPtb, None).unwrap();
        assert_eq!(s.per_question[0].em_r, Some(true));
    }
}
