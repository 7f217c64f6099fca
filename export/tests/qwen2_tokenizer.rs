//! The Qwen2 tokenizer shipped in `models/qwen2/tokenizer.json` (built from `qwen.tiktoken` by
//! `tools/qwen2-tokenizer/build`) must encode like `tiktoken` with the Qwen ranks and regex.
//!
//! Fixture: `tests/fixtures/qwen2_tokenizer/corpus.jsonl`, one `{"text": ..., "ids": [...]}` per
//! line, ids from `tiktoken` with Hugging Face semantics (added tokens split out first, then NFC,
//! then the regex); see `tools/qwen2-tokenizer/make_fixture.py`.

use std::path::PathBuf;

use tokenizers::Tokenizer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tokenizer() -> Tokenizer {
    let path = root().join("models/qwen2/tokenizer.json");
    Tokenizer::from_file(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn encode(tk: &Tokenizer, text: &str) -> Vec<u32> {
    tk.encode(text, false).unwrap_or_else(|e| panic!("encoding {text:?}: {e}")).get_ids().to_vec()
}

fn shorten(text: &str) -> String {
    let s = format!("{text:?}");
    if s.chars().count() > 160 {
        format!("{}...", s.chars().take(157).collect::<String>())
    } else {
        s
    }
}

#[test]
fn corpus_matches_tiktoken() {
    let tk = tokenizer();
    let path = root().join("tests/fixtures/qwen2_tokenizer/corpus.jsonl");
    let data = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = 0usize;
    let mut ids_total = 0usize;
    let mut mismatches = Vec::new();
    for (n, line) in data.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1));
        let text = v["text"].as_str().expect("text is a string");
        let want: Vec<u32> =
            v["ids"].as_array().expect("ids is an array").iter().map(|x| u32::try_from(x.as_u64().expect("id is an integer")).expect("id fits u32")).collect();
        let got = encode(&tk, text);
        lines += 1;
        ids_total += want.len();
        if got != want {
            mismatches.push(format!("line {}: {}\n  expected {want:?}\n  got      {got:?}", n + 1, shorten(text)));
        }
    }
    assert!(lines >= 2000, "fixture has only {lines} lines");
    assert!(
        mismatches.is_empty(),
        "{} of {lines} lines differ from tiktoken; first ones:\n{}",
        mismatches.len(),
        mismatches.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
    eprintln!("qwen2 tokenizer: {lines} fixture lines, {ids_total} ids, all identical to tiktoken");
}

#[test]
fn chat_prefix_chunk_ids() {
    // LLaVA-Video's system prompt up to the user turn: 14 ids (docs/prompt.md §3).
    let tk = tokenizer();
    let chunk0 = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n";
    assert_eq!(encode(&tk, chunk0), [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198]);
    assert_eq!(encode(&tk, "<|im_end|>\n<|im_start|>assistant\n"), [151645, 198, 151644, 77091, 198]);
    // Chunk 1 starts with "\n" -> 198, and "The" is a separate pre-token.
    assert_eq!(encode(&tk, "\nThe")[0], 198);
    assert_eq!(encode(&tk, "\n"), [198]);
}

#[test]
fn special_token_ids() {
    let tk = tokenizer();
    for (s, id) in [("<|endoftext|>", 151643), ("<|im_start|>", 151644), ("<|im_end|>", 151645), ("<Pos>", 151646), ("<Ori>", 151647)] {
        assert_eq!(tk.token_to_id(s), Some(id), "{s}");
        assert_eq!(tk.id_to_token(id).as_deref(), Some(s), "{id}");
        assert_eq!(encode(&tk, s), [id], "{s}");
    }
    assert_eq!(tk.get_vocab_size(true), 151648);
    assert_eq!(tk.get_vocab_size(false), 151643);
    // Embedded in text, the added tokens are split out before the regex.
    assert_eq!(encode(&tk, "I am standing in the room<Pos><Ori>"), [40, 1079, 11259, 304, 279, 3054, 151646, 151647]);
    // `<image>` is not a token: it is split out by the caller (docs/prompt.md §3).
    assert_eq!(tk.token_to_id("<image>"), None);
    assert!(encode(&tk, "<image>").len() > 1);
}

#[test]
fn reference_ids_from_qwen2_integration_test() {
    // Expected ids of Qwen's own tokenizer (Qwen/Qwen-tokenizer, used for Qwen1.5/Qwen2), from the
    // `test_tokenizer_integration` case of Hugging Face transformers' Qwen2 tokenizer tests.
    let tk = tokenizer();
    let cases: [(&str, &[u32]); 3] = [
        (
            "Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides \
             general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural \
             Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained \
             models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
            &[
                8963, 388, 320, 69514, 3881, 438, 4510, 27414, 32852, 388, 323, 4510, 27414, 21334, 35722, 1455, 529, 8, 5707, 4586, 58238, 77235, 320, 61437,
                11, 479, 2828, 12, 17, 11, 11830, 61437, 64, 11, 1599, 10994, 11, 27604, 321, 33, 529, 11, 29881, 6954, 32574, 369, 18448, 11434, 45451, 320,
                45, 23236, 8, 323, 18448, 11434, 23470, 320, 30042, 38, 8, 448, 916, 220, 18, 17, 10, 80669, 4119, 304, 220, 16, 15, 15, 10, 15459, 323, 5538,
                94130, 2897, 1948, 619, 706, 11, 5355, 51, 21584, 323, 94986, 13,
            ],
        ),
        (
            "🤗 Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。\
             使用预训练模型可以减少计算消耗和碳排放，并且节省从头训练所需要的时间和资源。",
            &[
                144834, 80532, 93685, 83744, 34187, 73670, 104261, 29490, 62189, 103937, 104034, 102830, 98841, 104034, 104949, 9370, 5333, 58143, 102011,
                1773, 37029, 98841, 104034, 104949, 73670, 101940, 100768, 104997, 33108, 100912, 105054, 90395, 100136, 106831, 45181, 64355, 104034, 113521,
                101975, 33108, 85329, 1773,
            ],
        ),
        (
            "```python\ntokenizer = AutoTokenizer.from_pretrained(\"Qwen/Qwen-tokenizer\")\n\
             tokenizer(\"世界，你好！\")```",
            &[
                73594, 12669, 198, 85593, 284, 8979, 37434, 6387, 10442, 35722, 445, 48, 16948, 45274, 16948, 34841, 3135, 1138, 85593, 445, 99489, 3837,
                108386, 6313, 899, 73594,
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(encode(&tk, text), want, "{}", shorten(text));
    }
    // "测试" is a single token, id 81705, in Qwen2's vocabulary.
    assert_eq!(encode(&tk, "测试"), [81705]);
}

#[test]
fn decode_round_trip() {
    let tk = tokenizer();
    for text in [
        "Hello, world! I'LL be back.\r\n\tfn main() { println!(\"{}\", 42); }",
        "<|im_start|>user\n<Pos><Ori>What is to my left?<|im_end|>\n",
        "测试 你好，世界！ こんにちは 안녕하세요 مرحبا Привет Γειά",
        "👨‍👩‍👧‍👦 👍🏽 🇯🇵 1️⃣ 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
        "   many   spaces\n\n\nand newlines  ",
        "12345678901234567890.5e-7",
    ] {
        let ids = encode(&tk, text);
        assert_eq!(tk.decode(&ids, false).unwrap(), text, "{}", shorten(text));
    }
    // skip_special_tokens drops the added tokens.
    let ids = encode(&tk, "<|im_start|>assistant\nYes.<|im_end|>");
    assert_eq!(tk.decode(&ids, true).unwrap(), "assistant\nYes.");
    // Input is NFC-normalized before BPE: decoding gives the NFC form.
    let ids = encode(&tk, "e\u{301}\u{3d2}\u{301}");
    assert_eq!(tk.decode(&ids, false).unwrap(), "\u{e9}\u{3d3}");
    assert_eq!(ids, encode(&tk, "\u{e9}\u{3d3}"));
}
