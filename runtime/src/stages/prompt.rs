//! Prompt assembly (docs/prompt.md §2-§3: LLaVA-Video's ChatML prompt plus the Loc3R additions).
//!
//! The user turn is `<image>\n{TIME}\n{situation}<Pos><Ori>{question}` inside the ChatML
//! template. As LLaVA's `tokenizer_image_token` does, the prompt is split on `<image>`
//! and each chunk is tokenised on its own; the video's embeddings are spliced in between.
//!
//! For the per-video cache the prompt is cut into three parts:
//! 1. `head`: everything before `<image>` (system turn, `<|im_start|>user\n`);
//! 2. the video (`[camera_f, 210 vision tokens of frame f]` per frame) plus `video_tail`,
//!    the tokens of `\n{TIME}\n`, which depend only on the video;
//! 3. `question`: the tokens of the rest (situation, `<Pos><Ori>`, question, the
//!    assistant header), prefilled per question after the cached prefix.
//!
//! The cut between 2 and 3 is only used when tokenising the tail chunk whole gives exactly
//! `video_tail` followed by `question` (BPE may merge across a boundary); otherwise the
//! whole tail chunk counts as question tokens, which is exact but caches less.

use tokenizers::Tokenizer;

use crate::manifest::{PromptParams, TokenIds};

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("the question is empty; ask something")]
    EmptyQuestion,
    #[error("the tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("the prompt template has {0} `<image>` placeholders; exactly one is supported")]
    Placeholders(usize),
    #[error("the {field} contains the reserved token {token}; user text may not contain chat-template or special tokens, remove it")]
    ReservedToken { field: String, token: String },
    #[error("the {field} contains the control character U+{code:04X}; remove it")]
    ControlCharacter { field: String, code: u32 },
}

/// The markers of the prompt template (docs/prompt.md), reserved whatever the tokenizer.
pub const RESERVED_MARKERS: [&str; 6] = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<Pos>", "<Ori>", "<image>"];

/// The one rule for user text (question, situation) shared by the library, the CLI and the
/// server: user text is text. It is tokenised together with the template, so a `<|im_end|>`
/// in it would become the special token and let the user write the system turn; such text
/// is refused, as are control characters other than tab and newlines. With a tokenizer,
/// every added token of it is reserved too (Qwen2's `<|vision_start|>`, `<|fim_prefix|>`, ...).
pub fn check_user_text(field: &str, text: &str, tok: Option<&Tokenizer>) -> Result<(), PromptError> {
    if let Some(c) = text.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) {
        return Err(PromptError::ControlCharacter { field: field.to_string(), code: c as u32 });
    }
    let reserved = |token: &str| PromptError::ReservedToken { field: field.to_string(), token: token.to_string() };
    if let Some(marker) = RESERVED_MARKERS.iter().find(|m| text.contains(*m)) {
        return Err(reserved(marker));
    }
    if let Some(tok) = tok {
        let mut added: Vec<String> =
            tok.get_added_tokens_decoder().into_values().map(|t| t.content).filter(|c| !c.is_empty() && text.contains(c.as_str())).collect();
        added.sort();
        if let Some(token) = added.first() {
            return Err(reserved(token));
        }
    }
    Ok(())
}

/// Timing of the sampled frames, for the time instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoTiming {
    pub duration_s: f64,
    pub frame_times_s: Vec<f64>,
}

/// Token ids of a prompt around the video.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptPlan {
    /// Before the video: system turn and `<|im_start|>user\n`.
    pub head: Vec<u32>,
    /// After the video, before the situation: `\n{TIME}\n` (video-dependent only).
    pub video_tail: Vec<u32>,
    /// Situation, `<Pos>`, `<Ori>`, question, end of turn and assistant header.
    pub question: Vec<u32>,
}

impl PromptPlan {
    /// Indices of `<Pos>` and `<Ori>` within `question`.
    pub fn marker_positions(&self, tokens: &TokenIds) -> (Option<usize>, Option<usize>) {
        let find = |id: u32| self.question.iter().position(|&t| t == id);
        (find(tokens.pos), find(tokens.ori))
    }
}

/// `%.2f` like Python: Rust's `{:.2}` rounds the exact binary value half-to-even, as
/// CPython's correctly rounded formatting does.
fn two_decimals(x: f64) -> String {
    format!("{x:.2}")
}

/// The time instruction of LLaVA-Video (docs/prompt.md §2).
pub fn time_instruction(params: &PromptParams, timing: &VideoTiming) -> String {
    let stamps: Vec<String> = timing.frame_times_s.iter().map(|t| format!("{}s", two_decimals(*t))).collect();
    params
        .time_instruction
        .replace("{video_time}", &two_decimals(timing.duration_s))
        .replace("{num_frames}", &timing.frame_times_s.len().to_string())
        .replace("{timestamps}", &stamps.join(","))
}

/// The full prompt text (with the literal `<image>`).
pub fn prompt_text(params: &PromptParams, timing: &VideoTiming, situation: Option<&str>, question: &str) -> String {
    let situation = match situation {
        Some(s) if !s.trim().is_empty() => s,
        _ => params.default_situation.as_str(),
    };
    let user_template = if params.add_time_instruction { params.user_template.clone() } else { params.user_template.replace("{time}\n", "") };
    let user = user_template.replace("{time}", &time_instruction(params, timing)).replace("{situation}", situation).replace("{question}", question);
    params.chat_template.replace("{system}", &params.system).replace("{user}", &user)
}

fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, PromptError> {
    tok.encode(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| PromptError::Tokenizer(e.to_string()))
}

/// Tokenises the prompt for one question about a video.
pub fn plan(tok: &Tokenizer, params: &PromptParams, timing: &VideoTiming, situation: Option<&str>, question: &str) -> Result<PromptPlan, PromptError> {
    if question.trim().is_empty() {
        return Err(PromptError::EmptyQuestion);
    }
    check_user_text("question", question, Some(tok))?;
    if let Some(s) = situation {
        check_user_text("situation", s, Some(tok))?;
    }
    let text = prompt_text(params, timing, situation, question);
    let chunks: Vec<&str> = text.split(params.image_placeholder.as_str()).collect();
    if chunks.len() != 2 {
        return Err(PromptError::Placeholders(chunks.len() - 1));
    }
    let head = encode(tok, chunks[0])?;
    let tail = encode(tok, chunks[1])?;
    // The video-only part of the tail: "\n{TIME}\n" (or "\n" without time instruction).
    let tail_text = if params.add_time_instruction { format!("\n{}\n", time_instruction(params, timing)) } else { "\n".to_string() };
    let video_tail = encode(tok, &tail_text)?;
    let (video_tail, question) = if chunks[1].starts_with(&tail_text) && tail.starts_with(&video_tail) {
        let q = tail[video_tail.len()..].to_vec();
        let rest = encode(tok, &chunks[1][tail_text.len()..])?;
        if rest == q {
            (video_tail, q)
        } else {
            (Vec::new(), tail)
        }
    } else {
        (Vec::new(), tail)
    };
    Ok(PromptPlan { head, video_tail, question })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PromptParams {
        PromptParams {
            system: "You are a helpful assistant.".into(),
            chat_template: "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n".into(),
            user_template: "<image>\n{time}\n{situation}<Pos><Ori>{question}".into(),
            image_placeholder: "<image>".into(),
            add_time_instruction: true,
            time_instruction: "The video lasts for {video_time} seconds, and {num_frames} frames are uniformly sampled from it. These frames are located at {timestamps}.Please answer the following questions related to this video.".into(),
            default_situation: "I am standing in the room".into(),
        }
    }

    #[test]
    fn time_instruction_matches_llava_video() {
        let t = VideoTiming { duration_s: 12.5, frame_times_s: vec![0.0, 0.4, 0.805, 12.4] };
        assert_eq!(
            time_instruction(&params(), &t),
            "The video lasts for 12.50 seconds, and 4 frames are uniformly sampled from it. These frames are located at 0.00s,0.40s,0.81s,12.40s.Please answer the following questions related to this video."
        );
    }

    #[test]
    fn prompt_text_has_the_chatml_layout_and_default_situation() {
        let t = VideoTiming { duration_s: 1.0, frame_times_s: vec![0.0] };
        let text = prompt_text(&params(), &t, None, "Where is the door?");
        assert!(text.starts_with("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\nThe video lasts for 1.00 seconds"));
        assert!(text.ends_with(".Please answer the following questions related to this video.\nI am standing in the room<Pos><Ori>Where is the door?<|im_end|>\n<|im_start|>assistant\n"));
        let mut p = params();
        p.add_time_instruction = false;
        let text = prompt_text(&p, &t, Some("I sit on the bed"), "Q?");
        assert!(text.contains("user\n<image>\nI sit on the bed<Pos><Ori>Q?<|im_end|>"));
    }

    #[test]
    fn plan_splits_at_the_placeholder_with_the_real_tokenizer() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/qwen2/tokenizer.json");
        let tok = Tokenizer::from_file(&path).unwrap();
        let t = VideoTiming { duration_s: 3.0, frame_times_s: vec![0.0, 1.5, 2.9] };
        let plan = plan(&tok, &params(), &t, None, "How many chairs?").unwrap();
        // The 14-id head of LLaVA-Video's system prompt (docs/prompt.md §3).
        assert_eq!(plan.head, vec![151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198]);
        assert_eq!(plan.video_tail[0], 198);
        assert!(plan.question.ends_with(&[151645, 198, 151644, 77091, 198]));
        let tokens = TokenIds { endoftext: 151643, im_start: 151644, im_end: 151645, pos: 151646, ori: 151647, tokenizer_size: 151648, stop: vec![] };
        let (p, o) = plan.marker_positions(&tokens);
        assert_eq!(o, p.map(|p| p + 1));
        // Splitting is exact: the three parts tokenised apart equal the tail chunk tokenised whole.
        let text = prompt_text(&params(), &t, None, "How many chairs?");
        let whole = tok.encode(text.split("<image>").nth(1).unwrap(), false).unwrap().get_ids().to_vec();
        assert_eq!([plan.video_tail.clone(), plan.question.clone()].concat(), whole);
        assert!(matches!(super::plan(&tok, &params(), &t, None, "  "), Err(PromptError::EmptyQuestion)));
    }

    #[test]
    fn user_text_with_special_tokens_or_control_characters_is_refused() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/qwen2/tokenizer.json");
        let tok = Tokenizer::from_file(&path).unwrap();
        let t = VideoTiming { duration_s: 1.0, frame_times_s: vec![0.0] };
        for token in RESERVED_MARKERS {
            let q = format!("where{token}am I?");
            match super::plan(&tok, &params(), &t, None, &q) {
                Err(PromptError::ReservedToken { field, token: found }) => assert_eq!((field.as_str(), found.as_str()), ("question", token)),
                other => panic!("{token} in the question: {other:?}"),
            }
            match super::plan(&tok, &params(), &t, Some(&format!("I sit{token}")), "Where?") {
                Err(e @ PromptError::ReservedToken { .. }) => assert!(e.to_string().contains("situation") && e.to_string().contains(token), "{e}"),
                other => panic!("{token} in the situation: {other:?}"),
            }
        }
        let e = super::plan(&tok, &params(), &t, None, "a\u{1b}[2Jb").unwrap_err();
        assert!(matches!(e, PromptError::ControlCharacter { code: 0x1b, .. }), "{e:?}");
        // Look-alikes are text, and so are tabs and newlines.
        assert!(super::plan(&tok, &params(), &t, Some("I stand\tby the door"), "Is <Pos a token?\nNo: <| im_end |>").is_ok());
        assert!(check_user_text("question", "<|im_end|>", None).is_err());
        // Every added token of the tokenizer is reserved, not only the template's.
        let mut extra = tok.clone();
        extra.add_special_tokens(&[tokenizers::AddedToken::from("<|extra|>", true)]);
        assert!(check_user_text("question", "a<|extra|>", None).is_ok());
        assert!(matches!(check_user_text("question", "a<|extra|>", Some(&extra)), Err(PromptError::ReservedToken { token, .. }) if token == "<|extra|>"));
    }
}
