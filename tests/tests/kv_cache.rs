//! The runtime's KV cache on both decoder layouts (docs/bundle.md §4): a
//! shared prefix, a question chunk and single-token steps must give the logits of one
//! prefill of the same tokens; the static layout must write every step into the buffers
//! allocated for the sequence (same address throughout) and never touch the prefix.

use std::path::{Path, PathBuf};

use loc3r::manifest::KvCacheLayout;
use loc3r::stages::decode::{Llm, Prefix};
use loc3r::stages::video::{load_frames, FrameSpec, Frames};
use loc3r::{GenerationOptions, Loc3r, SessionOptions};
use loc3r_e2e::{bundle_with_context, synthetic_video, tiny_bundle};
use ndarray::{s, Array2};

const TOL: f32 = 1e-4;

/// The tiny bundle (static layout, the default) or the same checkpoint exported with `layout`.
fn bundle(layout: KvCacheLayout, tmp: &Path) -> PathBuf {
    let default = tiny_bundle(1).to_path_buf();
    if layout == KvCacheLayout::Static {
        return default;
    }
    let ckpt = default.parent().unwrap().join("checkpoint");
    let out = tmp.join(format!("bundle-{}", layout.as_str()));
    let opts = loc3r_export::bundle::BundleOptions { kv_cache: layout, ..Default::default() };
    loc3r_export::bundle::export_bundle(&ckpt, &out, &opts, |_| {}).expect("export");
    out
}

fn open(path: &Path) -> Loc3r {
    Loc3r::open(path, &SessionOptions { intra_threads: 1, ..SessionOptions::default() }).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Some token ids of ordinary text.
fn ids(model: &Loc3r) -> Vec<u32> {
    let text = "The chair is to the left of the table, next to the window. Where is the lamp?";
    model.bundle().tokenizer.encode(text, false).unwrap().get_ids().to_vec()
}

fn prefix_then_chunk_then_steps(layout: KvCacheLayout) {
    let tmp = tempfile::tempdir().unwrap();
    let model = open(&bundle(layout, tmp.path()));
    assert_eq!(model.bundle().manifest.runtime.llm.kv_cache, layout);
    let llm = Llm::new(model.bundle()).unwrap();
    let ids = ids(&model);
    let n = ids.len();
    assert!(n >= 16, "{n} ids");
    let embeds = llm.embed(&ids).unwrap();
    let (prefix_len, chunk_end) = (6, 10);

    let prefix = llm.prefill(&embeds.slice(s![..prefix_len, ..]).to_owned()).unwrap();
    assert_eq!(prefix.cache.len, prefix_len);
    let capacity = n - prefix_len;
    let mut seq = llm.sequence(Prefix::Shared(&prefix.cache), capacity).unwrap();
    let fed = seq.feed(&embeds.slice(s![prefix_len..chunk_end, ..]).to_owned()).unwrap();
    let whole = llm.prefill(&embeds.slice(s![..chunk_end, ..]).to_owned()).unwrap();
    assert!(max_diff(&fed.logits, &whole.logits) < TOL, "{layout:?} chunk logits");
    let want_hidden: Array2<f32> = whole.hidden.slice(s![prefix_len.., ..]).to_owned();
    assert!(max_diff(fed.hidden.as_slice().unwrap(), want_hidden.as_slice().unwrap()) < TOL, "{layout:?} chunk hidden");

    // Single steps, a two-position chunk in the middle (a prompt continued after decoding,
    // which must open the decode mask for the chunk's slots), then single steps again.
    let buffer = seq.kv_buffer_address();
    let chunk_at = chunk_end + 3;
    let mut i = chunk_end;
    while i < n {
        let (logits, fed_len) =
            if i == chunk_at { (seq.feed(&embeds.slice(s![i..i + 2, ..]).to_owned()).unwrap().logits, 2) } else { (seq.feed_token(ids[i]).unwrap(), 1) };
        let last = i + fed_len - 1;
        let want = llm.prefill(&embeds.slice(s![..=last, ..]).to_owned()).unwrap().logits;
        let err = max_diff(&logits, &want);
        assert!(err < TOL, "{layout:?} step at {i} ({fed_len} positions): max abs error {err}");
        if layout == KvCacheLayout::Static {
            // Regression guard: steps write into the buffers allocated for the sequence.
            assert_eq!(seq.kv_buffer_address(), buffer, "step at {i} moved the KV buffers");
        }
        i += fed_len;
    }
    assert_eq!(seq.len(), n);
    if layout == KvCacheLayout::Static {
        assert!(!seq.has_room(1));
        let err = seq.feed_token(ids[0]).unwrap_err();
        assert!(err.to_string().contains("room for"), "{err}");
    }
    // The shared prefix still answers as before: a second sequence on it gives the same logits.
    let mut again = llm.sequence(Prefix::Shared(&prefix.cache), capacity).unwrap();
    let fed_again = again.feed(&embeds.slice(s![prefix_len..chunk_end, ..]).to_owned()).unwrap();
    assert_eq!(fed_again.logits, fed.logits, "{layout:?}: the prefix changed under a sequence");
}

#[test]
fn static_layout_steps_equal_one_prefill_and_reuse_their_buffers() {
    prefix_then_chunk_then_steps(KvCacheLayout::Static);
}

#[test]
fn concat_layout_steps_equal_one_prefill() {
    prefix_then_chunk_then_steps(KvCacheLayout::Concat);
}

/// Both layouts answer identically end to end (same video, questions, greedy ids, pose),
/// before and after a frame is pushed.
#[test]
fn both_layouts_give_the_same_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let video = synthetic_video(tmp.path(), "room.mp4", 160, 120, 20);
    let opts = GenerationOptions { max_new_tokens: 24, ..GenerationOptions::default() };
    let answers: Vec<_> = [KvCacheLayout::Static, KvCacheLayout::Concat]
        .into_iter()
        .map(|layout| {
            let model = open(&bundle(layout, tmp.path()));
            let frames = load_frames(&video, &FrameSpec::new(4)).unwrap();
            let mut scene = model.observe_frames(&Frames { frames: frames.frames[..3].to_vec(), ..frames.clone() }).unwrap();
            let first = scene.ask(None, "Where is the chair?", &opts).unwrap();
            // A pushed frame grows the prefix (both layouts extend their cache).
            scene.push_frames(&Frames { frames: frames.frames[3..].to_vec(), ..frames.clone() }).unwrap();
            [first, scene.ask(None, "What is on the table?", &opts).unwrap()]
        })
        .collect();
    for (s, c) in answers[0].iter().zip(&answers[1]) {
        assert!(!s.token_ids.is_empty(), "the tiny model should say something");
        assert_eq!(s.token_ids, c.token_ids);
        assert_eq!(s.tokens.prompt, c.tokens.prompt);
        assert!((s.pose.position.x - c.pose.position.x).abs() < 1e-5 && (s.pose.yaw_deg - c.pose.yaw_deg).abs() < 1e-3);
    }
}

/// A token budget beyond the model's context stops generation where the context ends,
/// instead of allocating for the budget or failing; a question that does not fit at all is
/// an error naming the context. The bundle's context is shortened to 20 positions past the
/// prompt (the tiny model would otherwise stop by itself first).
#[test]
fn generation_stops_at_the_end_of_the_context() {
    let tmp = tempfile::tempdir().unwrap();
    let video = synthetic_video(tmp.path(), "room.mp4", 160, 120, 10);
    let opts = GenerationOptions { max_new_tokens: usize::MAX, ..GenerationOptions::default() };
    for layout in [KvCacheLayout::Static, KvCacheLayout::Concat] {
        let dir = tmp.path().join(layout.as_str());
        std::fs::create_dir(&dir).unwrap();
        let full = bundle(layout, &dir);
        let free = open(&full).observe_video(&video, 2).unwrap().ask(None, "Describe the room.", &opts).unwrap();
        let room = 20;
        assert!(free.tokens.generated > room + 1, "the tiny model stopped by itself after {} tokens", free.tokens.generated);

        let short = bundle_with_context(&full, &dir, free.tokens.prompt + room);
        let scene = open(&short).observe_video(&video, 2).unwrap();
        let a = scene.ask(None, "Describe the room.", &opts).unwrap();
        // Positions prompt..prompt+room are fed back; the token sampled from the last of them ends the answer.
        assert_eq!(a.tokens.generated, room + 1, "{layout:?}");
        assert_eq!(a.token_ids[..], free.token_ids[..room + 1], "{layout:?}");

        let long_question = "Describe the room. ".repeat(12);
        let err = scene.ask(None, &long_question, &opts).unwrap_err().to_string();
        assert!(err.contains("positions but the model supports"), "{layout:?}: {err}");
    }
}
