//! A small byte-level BPE tokenizer for tiny checkpoints, laid out exactly like the
//! Qwen2 `tokenizer.json` (NFC, Qwen regex split, byte-level BPE, added specials) so
//! the runtime exercises the same code paths as with the real one.
//!
//! Merges are learned deterministically from an embedded English corpus: the most
//! frequent adjacent pair wins, ties broken by the pair's text.

use std::collections::BTreeMap;

use serde_json::json;

use crate::config::Config;
use crate::error::{Error, Result};

/// Qwen2's pre-tokenizer regex (the `Split` pattern of Qwen2's `tokenizer.json`).
pub const QWEN2_SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const CORPUS: &str = include_str!("corpus.txt");

/// GPT-2's byte -> printable char table.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            table[b as usize] = char::from_u32(next).expect("valid");
            next += 1;
        } else {
            table[b as usize] = char::from_u32(b).expect("valid");
        }
    }
    table
}

/// Builds the tokenizer JSON: 256 byte tokens, then learned merges up to the first
/// special id, then the specials from the config as added tokens.
pub fn tiny_tokenizer_json(cfg: &Config) -> Result<String> {
    tokenizer_json_from_corpus(cfg, CORPUS)
}

/// [`tiny_tokenizer_json`] with merges learned from `corpus` instead of the embedded English
/// text (e.g. the language of a synthetic data set, so its words become single tokens).
pub fn tokenizer_json_from_corpus(cfg: &Config, corpus: &str) -> Result<String> {
    let l = &cfg.loc3r;
    let regular = l.endoftext_token_id as usize;
    if regular < 256 {
        return Err(Error::Invalid(format!("loc3r.endoftext_token_id = {regular}: a byte-level vocabulary needs at least 256 ids before the specials")));
    }
    let table = bytes_to_unicode();
    let mut vocab: Vec<String> = (0..256).map(|b| table[b].to_string()).collect();

    // Word frequencies over a crude pre-tokenisation (training only needs the statistics).
    let mut words: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for word in pre_split(corpus) {
        let symbols: Vec<String> = word.bytes().map(|b| table[b as usize].to_string()).collect();
        *words.entry(symbols).or_default() += 1;
    }
    let mut words: Vec<(Vec<String>, u64)> = words.into_iter().collect();
    let mut merges: Vec<(String, String)> = Vec::new();
    while vocab.len() < regular {
        let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (symbols, freq) in &words {
            for pair in symbols.windows(2) {
                *counts.entry((pair[0].as_str(), pair[1].as_str())).or_default() += freq;
            }
        }
        // Highest count; BTreeMap order makes the tie-break the smallest pair.
        let Some(((a, b), _)) = counts.iter().fold(None, |best: Option<(&(&str, &str), &u64)>, item| match best {
            Some((_, c)) if c >= item.1 => best,
            _ => Some(item),
        }) else {
            break;
        };
        let (a, b) = (a.to_string(), b.to_string());
        let merged = format!("{a}{b}");
        for (symbols, _) in &mut words {
            let mut out = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == a && symbols[i + 1] == b {
                    out.push(merged.clone());
                    i += 2;
                } else {
                    out.push(symbols[i].clone());
                    i += 1;
                }
            }
            *symbols = out;
        }
        vocab.push(merged);
        merges.push((a, b));
    }
    // A small closed language runs out of merges before the first special id: the ids in
    // between get names no merge can form, so they are never produced (their rows stay unused).
    for i in vocab.len()..regular {
        vocab.push(format!("<|unused_{i}|>"));
    }
    let vocab_json: serde_json::Map<String, serde_json::Value> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let merges_json: Vec<String> = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
    let specials = [
        (l.endoftext_token_id, "<|endoftext|>"),
        (l.im_start_token_id, "<|im_start|>"),
        (l.im_end_token_id, "<|im_end|>"),
        (l.pos_token_id, "<Pos>"),
        (l.ori_token_id, "<Ori>"),
    ];
    let added: Vec<serde_json::Value> = specials
        .iter()
        .map(
            |(id, content)| json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}),
        )
        .collect();
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT_REGEX}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab_json, "merges": merges_json}
    });
    Ok(serde_json::to_string_pretty(&doc).expect("json") + "\n")
}

/// Letters with an optional leading space, single digits, and runs of other characters.
fn pre_split(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let class = |c: char| {
        if c.is_alphabetic() {
            0
        } else if c.is_numeric() {
            1
        } else if c == ' ' {
            2
        } else {
            3
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        let mut j = i + 1;
        let k = class(c);
        if k == 2 && j < chars.len() && class(chars[j].1) == 0 {
            j += 1;
            while j < chars.len() && class(chars[j].1) == 0 {
                j += 1;
            }
        } else if k == 0 || k == 3 {
            while j < chars.len() && class(chars[j].1) == k {
                j += 1;
            }
        }
        let end = if j < chars.len() { chars[j].0 } else { text.len() };
        out.push(&text[pos..end]);
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
    }

    #[test]
    fn tiny_tokenizer_loads_and_round_trips() {
        let cfg = Config::builtin("tiny").unwrap();
        let json = tiny_tokenizer_json(&cfg).unwrap();
        assert_eq!(json, tiny_tokenizer_json(&cfg).unwrap(), "deterministic");
        let tok = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(tok.get_vocab_size(true), 1005);
        assert_eq!(tok.token_to_id("<Pos>"), Some(1003));
        let text = "<|im_start|>user\nWhere is the chair? 12 apples, 日本<Pos><Ori>\n<|im_end|>";
        let enc = tok.encode(text, false).unwrap();
        assert!(enc.get_ids().contains(&1003) && enc.get_ids().contains(&1001));
        assert!(enc.get_ids().len() < text.len(), "merges must compress English text");
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
    }
}
