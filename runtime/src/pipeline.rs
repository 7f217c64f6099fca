//! The Loc3R-VLM pipeline: a bundle opened once ([`Loc3r`]), a video observed once
//! ([`Scene`]), then any number of questions answered from the scene's cached prefix.
//!
//! Observing a video:
//! 1. decode and uniformly sample frames;
//! 2. preprocess (SigLIP 384² bicubic, CUT3R long side + centre crop);
//! 3. CUT3R recurrence -> camera tokens and poses;
//! 4. SigLIP + projector -> per frame `[camera_f, 210 vision tokens]`;
//! 5. prefill the video prefix (system turn, video, time instruction) and keep its KV
//!    cache plus the hidden states of the grid tokens (for the BEV head).
//!
//! Asking a question then prefills only the question's own tokens on top of the prefix
//! (the cache is shared by reference, never copied or modified; the question's own K/V go
//! into buffers allocated once for it), reads the hidden states at `<Pos>` and `<Ori>` for
//! the heads, and decodes the answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{concatenate, s, Array2, Array3, Axis};
use serde::Serialize;

use crate::bundle::Bundle;
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::session::SessionOptions;
use crate::stages::cut3r::{CameraTokens, Cut3r, Cut3rState};
use crate::stages::decode::{KvCache, Llm, Prefix, Sequence};
use crate::stages::heads;
use crate::stages::preprocess::{preprocess, PreprocessSpec};
use crate::stages::prompt::{self, PromptPlan, VideoTiming};
use crate::stages::sampling::{GenerationOptions, Sampler};
use crate::stages::video::{load_frames, FrameSpec, Frames};
use crate::stages::vision::{embed_frames_cancellable, siglip_features, VisionEmbeds};

pub use crate::stages::heads::{Localization, PositionJson};

/// An opened bundle. Cheap to clone; scenes of one model can be used from many threads.
#[derive(Clone, Debug)]
pub struct Loc3r {
    bundle: Arc<Bundle>,
    /// Where every video's CUT3R recurrence starts (read from the bundle once, at open).
    cut3r_init: Arc<Cut3rState>,
}

/// Stage timings in milliseconds (the keys of `timings_ms`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub decode_video: f64,
    pub cut3r: f64,
    pub siglip: f64,
    pub prefill: f64,
    pub first_token: f64,
    pub decode: f64,
    pub total: f64,
}

impl Timings {
    /// Every stage with its key, in report order (metrics, bindings and reports list them so).
    pub fn stages(&self) -> [(&'static str, f64); 7] {
        [
            ("decode_video", self.decode_video),
            ("cut3r", self.cut3r),
            ("siglip", self.siglip),
            ("prefill", self.prefill),
            ("first_token", self.first_token),
            ("decode", self.decode),
            ("total", self.total),
        ]
    }

    /// Makes these timings of an answer (or a localisation) also pay for the observe (or
    /// push of frames) that came before it, as the first answer after an observe reports:
    /// the video's stages are taken over, its prefill is added to the question's, and its
    /// whole time to the time to first token and the total.
    pub fn include_observe(&mut self, observe: &Timings) {
        self.decode_video = observe.decode_video;
        self.cut3r = observe.cut3r;
        self.siglip = observe.siglip;
        self.prefill += observe.prefill;
        self.first_token += observe.total;
        self.total += observe.total;
    }
}

/// One sampled frame of a scene.
#[derive(Debug, Clone, Serialize)]
pub struct FrameInfo {
    pub index: usize,
    pub time_s: f64,
    /// `[tx, ty, tz, qw, qx, qy, qz]` camera-to-world from CUT3R (world = first frame).
    pub camera_pose: [f32; 7],
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenCounts {
    pub prompt: usize,
    pub generated: usize,
}

/// An answer with its pose.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub answer: String,
    #[serde(flatten)]
    pub pose: Localization,
    pub tokens: TokenCounts,
    /// Ids of the generated tokens (stop token excluded).
    #[serde(skip)]
    pub token_ids: Vec<u32>,
    pub timings_ms: Timings,
}

/// One observed video: its frames, camera tokens, embeddings and the KV cache of its prefix.
pub struct Scene {
    model: Loc3r,
    pub frames: Vec<FrameInfo>,
    timing: VideoTiming,
    plan_head: Vec<u32>,
    plan_video_tail: Vec<u32>,
    /// Embeddings of head + video + video tail (kept to re-prefill when a question's
    /// tokenisation cannot reuse the cut; rare).
    prefix_embeds: Array2<f32>,
    prefix: KvCache,
    /// Hidden states of the pooled grid tokens (no camera or newline tokens) `[T, H]`.
    grid_hidden: Array2<f32>,
    /// Time spent by the last observe or push of frames (the first question after it
    /// reports it in its timings: [`Timings::include_observe`]).
    pub observe_timings: Timings,
    cut3r_state: Cut3rState,
}

impl std::fmt::Debug for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scene").field("frames", &self.frames.len()).field("prefix_tokens", &self.prefix.len).finish()
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

impl Loc3r {
    /// Opens a bundle on a device.
    pub fn open(bundle: &Path, opts: &SessionOptions) -> Result<Loc3r> {
        let bundle = Bundle::open(bundle, opts)?;
        let cut3r_init = Arc::new(Cut3rState::initial(&bundle)?);
        Ok(Loc3r { bundle: Arc::new(bundle), cut3r_init })
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Decodes a video file (or a directory of images) and observes `num_frames` uniform frames
    /// (frames of at most [`crate::stages::video::DEFAULT_MAX_PIXELS`] pixels).
    pub fn observe_video(&self, path: &Path, num_frames: usize) -> Result<Scene> {
        self.observe_video_with(path, &FrameSpec::new(num_frames))
    }

    /// [`Loc3r::observe_video`] with every sampling option (frame count, pixel limit, image
    /// directory frame rate). A frame count the context cannot hold is refused before anything
    /// is decoded.
    pub fn observe_video_with(&self, path: &Path, spec: &FrameSpec) -> Result<Scene> {
        self.observe_video_cancellable(path, spec, &Cancel::new())
    }

    /// [`Loc3r::observe_video_with`] that stops with [`Error::Cancelled`] once `cancel` is
    /// cancelled or past its deadline: checked before and after decoding, before every CUT3R
    /// encoder batch and recurrence step, every SigLIP batch and every prefill chunk (a
    /// decode or a graph call in progress runs to its end).
    pub fn observe_video_cancellable(&self, path: &Path, spec: &FrameSpec, cancel: &Cancel) -> Result<Scene> {
        self.check_frame_count(spec.num_frames)?;
        cancel.check()?;
        let start = Instant::now();
        let frames = load_frames(path, spec)?;
        let decode_ms = ms(start);
        let mut scene = self.observe_frames_cancellable(&frames, cancel)?;
        scene.observe_timings.decode_video = decode_ms;
        scene.observe_timings.total += decode_ms;
        Ok(scene)
    }

    /// Observes already decoded frames.
    pub fn observe_frames(&self, frames: &Frames) -> Result<Scene> {
        self.observe_frames_cancellable(frames, &Cancel::new())
    }

    /// [`Loc3r::observe_frames`] under a [`Cancel`] token (see [`Loc3r::observe_video_cancellable`]).
    pub fn observe_frames_cancellable(&self, frames: &Frames, cancel: &Cancel) -> Result<Scene> {
        cancel.check()?;
        let start = Instant::now();
        let b = &self.bundle;
        let rt = &b.manifest.runtime;
        if frames.frames.is_empty() {
            return Err(Error::Input("no frames to observe".into()));
        }
        let timing = VideoTiming { duration_s: frames.duration_s, frame_times_s: frames.frames.iter().map(|f| f.time_s).collect() };
        // A neutral question fixes the question-independent parts of the prompt.
        let plan = prompt::plan(&b.tokenizer, &rt.prompt, &timing, None, "?")?;
        self.check_video_fits(&plan, frames.frames.len())?;
        let (encoded, mut timings) = self.encode_frames(frames, &self.cut3r_init, cancel)?;
        let llm = Llm::new(b)?;
        let video = encoded.embeds.spliced();
        let prefix_embeds = concatenate(Axis(0), &[llm.embed(&plan.head)?.view(), video.view(), llm.embed(&plan.video_tail)?.view()])
            .map_err(|e| Error::Internal(format!("assembling the prompt: {e}")))?;
        let t = Instant::now();
        let out = llm.prefill_cancellable(&prefix_embeds, cancel)?;
        timings.prefill = ms(t);

        let grid_hidden = out.hidden.select(Axis(0), &self.grid_rows(plan.head.len(), frames.frames.len()));
        timings.total = ms(start);
        let infos = frame_infos(frames, &encoded.cameras);
        let state = encoded.state;
        Ok(Scene {
            model: self.clone(),
            frames: infos,
            timing,
            plan_head: plan.head,
            plan_video_tail: plan.video_tail,
            prefix_embeds,
            prefix: out.cache,
            grid_hidden,
            observe_timings: timings,
            cut3r_state: state,
        })
    }
}

/// The outputs of the frozen encoders for some frames: what a training sample caches so that
/// epochs do not re-run SigLIP and CUT3R.
#[derive(Debug, Clone)]
pub struct FrozenFeatures {
    /// SigLIP features `[F, P, Cv]` (before the projector).
    pub image_features: Array3<f32>,
    /// CUT3R camera tokens `[F, Dc]` (before the projector), from a fresh recurrence.
    pub camera_tokens: Array2<f32>,
}

impl Loc3r {
    /// Runs the frozen encoders (CUT3R from its initial state, then SigLIP) on frames, exactly as
    /// [`Loc3r::observe_frames`] does before the projector.
    pub fn frozen_features(&self, frames: &Frames) -> Result<FrozenFeatures> {
        let b = &self.bundle;
        if frames.frames.is_empty() {
            return Err(Error::Input("no frames to encode".into()));
        }
        let pixels = preprocess(frames, &self.preprocess_spec())?;
        let (cameras, _) = Cut3r::new(b)?.run(&pixels.cut3r, &self.cut3r_init)?;
        let image_features = siglip_features(b, &pixels.siglip)?;
        Ok(FrozenFeatures { image_features, camera_tokens: cameras.tokens })
    }

    fn preprocess_spec(&self) -> PreprocessSpec {
        let rt = &self.bundle.manifest.runtime;
        PreprocessSpec { siglip_size: rt.vision.image_size, cut3r_long_side: rt.cut3r.long_side, cut3r_width: rt.cut3r.width, cut3r_height: rt.cut3r.height }
    }
}

/// Frames through CUT3R (continuing a state), SigLIP and the projector.
struct EncodedFrames {
    cameras: CameraTokens,
    state: Cut3rState,
    embeds: VisionEmbeds,
}

impl Loc3r {
    fn encode_frames(&self, frames: &Frames, state: &Cut3rState, cancel: &Cancel) -> Result<(EncodedFrames, Timings)> {
        let b = &self.bundle;
        let mut timings = Timings::default();
        let pixels = preprocess(frames, &self.preprocess_spec())?;

        let t = Instant::now();
        let (cameras, state) = Cut3r::new(b)?.run_cancellable(&pixels.cut3r, state, cancel)?;
        timings.cut3r = ms(t);

        let t = Instant::now();
        let embeds = embed_frames_cancellable(b, &pixels.siglip, &cameras.tokens, cancel)?;
        timings.siglip = ms(t);
        Ok((EncodedFrames { cameras, state, embeds }, timings))
    }

    /// Refuses, before any frame is decoded, a frame count whose prompt cannot fit the context
    /// whatever the video: the head and the frames' own tokens alone must fit (the timestamps
    /// of the time instruction, which depend on the video, are checked after decoding by
    /// [`Loc3r::check_video_fits`]).
    pub fn check_frame_count(&self, frames: usize) -> Result<()> {
        let b = &self.bundle;
        let rt = &b.manifest.runtime;
        if frames == 0 {
            return Err(Error::Video(crate::stages::video::VideoError::ZeroSamples));
        }
        let timing = VideoTiming { duration_s: 0.0, frame_times_s: vec![0.0] };
        let head = prompt::plan(&b.tokenizer, &rt.prompt, &timing, None, "?")?.head.len();
        let needed = frames.checked_mul(rt.vision.tokens_per_frame + 1).and_then(|v| v.checked_add(head)).unwrap_or(usize::MAX);
        let max = rt.llm.max_positions;
        if needed > max {
            let most = max.saturating_sub(head) / (rt.vision.tokens_per_frame + 1);
            return Err(Error::Input(format!(
                "{frames} frames need a prompt of more than {max} positions, the model's context ({} per frame); use at most {most} frames \
                 (fewer with the time instruction's timestamps)",
                rt.vision.tokens_per_frame + 1
            )));
        }
        Ok(())
    }

    /// Refuses, before any frame is encoded, a video whose prompt cannot fit the model's context
    /// even before a question is added: encoding would take long and end in the same error.
    fn check_video_fits(&self, plan: &prompt::PromptPlan, frames: usize) -> Result<()> {
        let rt = &self.bundle.manifest.runtime;
        let needed = plan.head.len() + frames * (rt.vision.tokens_per_frame + 1) + plan.video_tail.len();
        let max = rt.llm.max_positions;
        if needed > max {
            // The time instruction lists every frame's timestamp, so each frame costs more than its tokens.
            let per_frame = (needed - plan.head.len()).div_ceil(frames.max(1));
            return Err(Error::Input(format!(
                "{frames} frames need a prompt of at least {needed} positions but the model supports {max}; use fewer frames \
                 (each takes about {per_frame} positions with its timestamp)"
            )));
        }
        Ok(())
    }

    /// Positions of the pooled grid tokens of `frames` spliced frames starting at `start`:
    /// per frame, skip the camera token and every row's newline.
    fn grid_rows(&self, start: usize, frames: usize) -> Vec<usize> {
        let v = &self.bundle.manifest.runtime.vision;
        let g = v.pooled_grid;
        let per_frame = v.tokens_per_frame + 1;
        let mut rows = Vec::with_capacity(frames * g * g);
        for f in 0..frames {
            let base = start + f * per_frame + 1;
            for r in 0..g {
                for c in 0..g {
                    rows.push(base + r * (g + 1) + c);
                }
            }
        }
        rows
    }
}

fn frame_infos(frames: &Frames, cameras: &CameraTokens) -> Vec<FrameInfo> {
    frames
        .frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut pose = [0f32; 7];
            pose.iter_mut().zip(cameras.poses.row(i).iter()).for_each(|(d, s)| *d = *s);
            FrameInfo { index: f.index, time_s: f.time_s, camera_pose: pose }
        })
        .collect()
}

/// What a question's prefill produced.
struct Prefilled<'s> {
    logits: Vec<f32>,
    sequence: Sequence<'s, 's>,
    pose: Localization,
    prompt_tokens: usize,
}

impl Scene {
    /// Frames observed so far by the CUT3R recurrence.
    pub fn frames_seen(&self) -> usize {
        self.cut3r_state.frames_seen
    }

    /// Duration in seconds of the observed video (of the stream so far, after pushed frames).
    pub fn duration_s(&self) -> f64 {
        self.timing.duration_s
    }

    /// Tokens in the cached video prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.prefix.len
    }

    /// Appends live frames to the scene (`more.duration_s`: the stream's duration so far,
    /// for the time instruction). CUT3R continues its recurrence from the last frame, the
    /// cached prefix keeps the system turn and the frames so far and prefills only the new
    /// frames and the new time instruction, and later answers use every frame. The result
    /// equals observing all the frames at once. On error the scene is unchanged.
    pub fn push_frames(&mut self, more: &Frames) -> Result<()> {
        if more.frames.is_empty() {
            return Err(Error::Input("no frames to push".into()));
        }
        // Times are of the whole stream (the time instruction lists every frame's).
        let mut previous = self.timing.frame_times_s.last().copied().unwrap_or(0.0);
        for f in &more.frames {
            if f.time_s.is_nan() || f.time_s < previous {
                return Err(Error::Input(format!(
                    "pushed frame {} is at {:.3} s, before the previous frame at {previous:.3} s; frame times must be of the whole stream and non-decreasing",
                    f.index, f.time_s
                )));
            }
            previous = f.time_s;
        }
        if more.duration_s.is_nan() || more.duration_s < previous {
            return Err(Error::Input(format!(
                "the stream's duration ({:.3} s) is shorter than its last frame's time ({previous:.3} s); pass the duration of the whole stream so far",
                more.duration_s
            )));
        }
        let start = Instant::now();
        let model = self.model.clone();
        let b = model.bundle();
        let rt = &b.manifest.runtime;
        let mut frame_times_s = self.timing.frame_times_s.clone();
        frame_times_s.extend(more.frames.iter().map(|f| f.time_s));
        let timing = VideoTiming { duration_s: more.duration_s, frame_times_s };
        let plan = prompt::plan(&b.tokenizer, &rt.prompt, &timing, None, "?")?;
        if plan.head != self.plan_head {
            return Err(Error::Bundle("the prompt before the video changed with the frames; the template must not depend on the video there".into()));
        }
        model.check_video_fits(&plan, self.frames.len() + more.frames.len())?;
        let (encoded, mut timings) = model.encode_frames(more, &self.cut3r_state, &Cancel::new())?;
        let llm = Llm::new(b)?;
        let keep = self.plan_head.len() + self.frames.len() * (rt.vision.tokens_per_frame + 1);
        let fed = concatenate(Axis(0), &[encoded.embeds.spliced().view(), llm.embed(&plan.video_tail)?.view()])
            .map_err(|e| Error::Internal(format!("assembling the prompt: {e}")))?;
        let t = Instant::now();
        let out = llm.extend(&self.prefix, keep, &fed)?;
        timings.prefill = ms(t);
        let new_grid = out.hidden.select(Axis(0), &model.grid_rows(0, more.frames.len()));
        let grid_hidden =
            concatenate(Axis(0), &[self.grid_hidden.view(), new_grid.view()]).map_err(|e| Error::Internal(format!("joining the grid hidden states: {e}")))?;
        let prefix_embeds = concatenate(Axis(0), &[self.prefix_embeds.slice(s![..keep, ..]), fed.view()])
            .map_err(|e| Error::Internal(format!("joining the prefix embeddings: {e}")))?;

        // Everything succeeded: commit.
        self.frames.extend(frame_infos(more, &encoded.cameras));
        self.timing = timing;
        self.plan_video_tail = plan.video_tail;
        self.prefix_embeds = prefix_embeds;
        self.prefix = out.cache;
        self.grid_hidden = grid_hidden;
        self.cut3r_state = encoded.state;
        timings.total = ms(start);
        self.observe_timings = timings;
        Ok(())
    }

    /// CUT3R's camera pose (`[tx, ty, tz, qw, qx, qy, qz]`, in this scene's world frame) of
    /// `frames`' first frame as the next frame of this scene, without adding it: one CUT3R
    /// step from the scene's state (SigLIP and the LLM do not run). For keyframe policies
    /// that take a frame only when the camera moved.
    pub fn peek_camera_pose(&self, frames: &Frames) -> Result<[f32; 7]> {
        let first = Frames { frames: frames.frames.iter().take(1).cloned().collect(), ..frames.clone() };
        if first.frames.is_empty() {
            return Err(Error::Input("no frame to place".into()));
        }
        let pixels = preprocess(&first, &self.model.preprocess_spec())?;
        let (cameras, _) = Cut3r::new(self.model.bundle())?.run_cancellable(&pixels.cut3r, &self.cut3r_state, &Cancel::new())?;
        let mut pose = [0f32; 7];
        pose.iter_mut().zip(cameras.poses.row(0).iter()).for_each(|(d, s)| *d = *s);
        Ok(pose)
    }

    /// Bytes held by this scene's caches (KV prefix and embeddings).
    pub fn cache_bytes(&self) -> usize {
        self.prefix.bytes(self.model.bundle()) + 4 * (self.prefix_embeds.len() + self.grid_hidden.len())
    }

    /// Prefills the question after the cached prefix and runs the heads; the sequence has
    /// room for `new_tokens` more positions.
    fn prefill(&self, situation: Option<&str>, question: &str, new_tokens: usize) -> Result<Prefilled<'_>> {
        let b = self.model.bundle();
        let rt = &b.manifest.runtime;
        let plan: PromptPlan = prompt::plan(&b.tokenizer, &rt.prompt, &self.timing, situation, question)?;
        let (pos_at, ori_at) = plan.marker_positions(&rt.tokens);
        let (Some(pos_at), Some(ori_at)) = (pos_at, ori_at) else {
            return Err(Error::Input("the prompt lost its <Pos>/<Ori> markers; do not put them in the situation or question".into()));
        };
        let llm = Llm::new(b)?;
        let question_embeds = llm.embed(&plan.question)?;
        let reuse = plan.head == self.plan_head && plan.video_tail == self.plan_video_tail;
        let prefix = if reuse {
            Prefix::Shared(&self.prefix)
        } else {
            // The tail chunk tokenised differently with this question: this question gets
            // its own prefix (rare).
            let head_video = self.prefix_embeds.slice(s![..self.prefix_embeds.nrows() - self.plan_video_tail.len(), ..]);
            let tail = llm.embed(&plan.video_tail)?;
            let all = concatenate(Axis(0), &[head_video, tail.view()]).map_err(|e| Error::Internal(format!("joining the prefix embeddings: {e}")))?;
            Prefix::Owned(llm.prefill(&all)?.cache)
        };
        let mut sequence = llm.sequence(prefix, question_embeds.nrows().saturating_add(new_tokens))?;
        let out = sequence.feed(&question_embeds)?;
        let pose = heads::run(b, out.hidden.row(pos_at).to_owned(), out.hidden.row(ori_at).to_owned(), self.grid_hidden.view())?;
        Ok(Prefilled { logits: out.logits, prompt_tokens: sequence.len(), sequence, pose })
    }

    /// Where am I? Position and orientation for a situation (default: standing in the room).
    pub fn localize(&self, situation: Option<&str>) -> Result<Localization> {
        // The heads read <Pos>/<Ori>, which come before the question: any question gives
        // the same pose, so a neutral one is used.
        Ok(self.prefill(situation, "?", 0)?.pose)
    }

    /// Answers a question; `on_token` receives text pieces as they are decoded and
    /// returns `false` to stop early.
    pub fn ask_streaming(&self, situation: Option<&str>, question: &str, opts: &GenerationOptions, mut on_token: impl FnMut(&str) -> bool) -> Result<Answer> {
        let start = Instant::now();
        let b = self.model.bundle();
        let rt = &b.manifest.runtime;
        let mut sampler = Sampler::new(opts.clone(), rt.tokens.tokenizer_size as usize).map_err(|e| Error::Input(e.to_string()))?;
        let t = Instant::now();
        let pre = self.prefill(situation, question, opts.max_new_tokens)?;
        let mut timings = Timings { prefill: ms(t), ..Timings::default() };
        let mut sequence = pre.sequence;
        let mut logits = pre.logits;
        let mut ids = Vec::new();
        let mut stream = b.tokenizer.decode_stream(true);
        let mut text = String::new();
        let decode_start = Instant::now();
        for step in 0..opts.max_new_tokens {
            let id = sampler.choose(&logits).map_err(|e| Error::Bundle(format!("decoder.onnx logits: {e}")))?;
            if step == 0 {
                timings.first_token = ms(start);
            }
            if rt.tokens.stop.contains(&id) {
                break;
            }
            ids.push(id);
            let piece = stream.step(id).map_err(|e| Error::Bundle(format!("the bundle's tokenizer cannot decode the generated tokens: {e}")))?;
            let mut keep_going = true;
            if let Some(piece) = piece {
                text.push_str(&piece);
                keep_going = on_token(&piece);
            }
            // Stop at the token budget, or where the model's context ends.
            if !keep_going || step + 1 == opts.max_new_tokens || !sequence.has_room(1) {
                break;
            }
            logits = sequence.feed_token(id)?;
        }
        // The stream holds back bytes of an incomplete UTF-8 character; the final text is
        // the whole decode (with U+FFFD for bytes that never completed a character).
        let full = b.tokenizer.decode(&ids, true).map_err(|e| Error::Bundle(format!("the bundle's tokenizer cannot decode the generated tokens: {e}")))?;
        if let Some(rest) = full.strip_prefix(text.as_str()) {
            if !rest.is_empty() {
                on_token(rest);
            }
        }
        timings.decode = ms(decode_start);
        timings.total = ms(start);
        Ok(Answer {
            answer: full.trim().to_string(),
            pose: pre.pose,
            tokens: TokenCounts { prompt: pre.prompt_tokens, generated: ids.len() },
            token_ids: ids,
            timings_ms: timings,
        })
    }

    /// Answers a question (no streaming).
    pub fn ask(&self, situation: Option<&str>, question: &str, opts: &GenerationOptions) -> Result<Answer> {
        self.ask_streaming(situation, question, opts, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn models_and_scenes_can_be_shared_between_threads() {
        assert_send_sync::<Loc3r>();
        assert_send_sync::<Scene>();
    }

    #[test]
    fn the_first_answer_pays_for_the_observe() {
        let observe = Timings { decode_video: 5.0, cut3r: 20.0, siglip: 30.0, prefill: 40.0, first_token: 0.0, decode: 0.0, total: 100.0 };
        let mut answer = Timings { prefill: 2.0, first_token: 3.0, decode: 7.0, total: 10.0, ..Timings::default() };
        answer.include_observe(&observe);
        assert_eq!((answer.decode_video, answer.cut3r, answer.siglip), (5.0, 20.0, 30.0));
        assert_eq!((answer.prefill, answer.first_token, answer.decode, answer.total), (42.0, 103.0, 7.0, 110.0));
    }
}
