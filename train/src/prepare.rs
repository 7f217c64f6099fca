//! Prepared samples from scenes and annotations: the frozen encoders run once per scene, the
//! targets are computed host-side in f64, and every question becomes one sample file
//! (docs/training.md, "Prepared samples").
//!
//! Per scene:
//! ```text
//! video.mp4 (or colour frames with valid poses) ─▶ uniform sample of F frames (the runtime's rule)
//!   ├─▶ CUT3R + SigLIP (the bundle's graphs) ─▶ camera_tokens [F, Dc], image_features [F, P, Cv]
//!   ├─▶ BEV frame at the first sampled frame (its pose, the scene's up vector)
//!   └─▶ depth + poses ─▶ BEV targets of the F·G² grid tokens, reliability mask
//! per question: prompt (the runtime's template) + answer ─▶ input_ids / labels, pose ─▶ pos/yaw targets
//! ```
//! The prompt is tokenised by the runtime's own prompt code, so a trained model is asked
//! exactly as it was taught. Scenes that cannot be used (missing, no valid pose, unreadable
//! video) are skipped and counted, never guessed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use loc3r::stages::prompt::{self, VideoTiming};
use loc3r::stages::video::{load_frames, read_image, sample_indices, Frame, FrameSpec, Frames};
use loc3r::Loc3r;
use loc3r_bundle::bev::Vec3;
use serde::Serialize;

use crate::data::annotations::Situated;
use crate::data::scannet::ScanNetScene;
use crate::data::targets::{bev_targets, BevOptions, GridGeometry};
use crate::data::DataError;
use crate::sample::{Sample, IGNORE, IMAGE_PLACEHOLDER};

/// Why preparing failed as a whole (single scenes are skipped and reported instead).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Runtime(#[from] loc3r::Error),
    #[error("{}: {error}", path.display())]
    Write { path: PathBuf, error: String },
}

/// How samples are made.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Frames sampled per video.
    pub frames: usize,
    /// Frame rate assumed for colour-frame directories (ScanNet: 30).
    pub image_fps: f64,
    pub bev: BevOptions,
    /// The body axis an SQA3D agent faces along (−x in the official release).
    pub body_forward: Vec3,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions { frames: 16, image_fps: 30.0, bev: BevOptions::default(), body_forward: [-1.0, 0.0, 0.0] }
    }
}

/// What was written and what was skipped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrepareReport {
    pub samples: usize,
    pub scenes: usize,
    /// Scenes already prepared by an earlier run (resumed past).
    pub scenes_resumed: usize,
    /// Scene id → why it was skipped.
    pub skipped_scenes: BTreeMap<String, String>,
    /// Questions of skipped scenes, and questions without an answer.
    pub skipped_questions: usize,
    /// Grid tokens in all samples' scenes, and how many of them were masked.
    pub bev_tokens: usize,
    pub bev_masked: usize,
}

/// One line of `index.jsonl` beside the samples: what each sample file holds.
#[derive(Debug, Clone, Serialize)]
struct IndexLine<'a> {
    file: String,
    scene: &'a str,
    situation: Option<&'a str>,
    question: &'a str,
    answer: &'a str,
    /// BEV target (metres) and yaw (degrees), when the sample carries a situation.
    position: Option<[f64; 2]>,
    yaw_deg: Option<f64>,
}

/// The sample files of a scene's questions are `<scene>-<k>.safetensors`; the scene is done
/// when its index fragment exists (written last, by rename).
fn index_fragment(out: &Path, scene: &str) -> PathBuf {
    out.join(".index").join(format!("{scene}.jsonl"))
}

/// Prepares one sample per question (questions grouped by scene, scenes under `scenes_dir/<id>`),
/// resuming past scenes an earlier run finished. `progress(done, total, scene)` after each scene.
pub fn prepare(
    model: &Loc3r,
    scenes_dir: &Path,
    questions: &[Situated],
    out: &Path,
    opts: &PrepareOptions,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<PrepareReport, PrepareError> {
    if opts.frames == 0 {
        return Err(PrepareError::Input("--frames must be at least 1".into()));
    }
    let write_err = |path: &Path, e: std::io::Error| PrepareError::Write { path: path.to_path_buf(), error: e.to_string() };
    std::fs::create_dir_all(out.join(".index")).map_err(|e| write_err(out, e))?;
    let mut by_scene: BTreeMap<&str, Vec<&Situated>> = BTreeMap::new();
    for q in questions {
        by_scene.entry(q.scene_id.as_str()).or_default().push(q);
    }
    let geom = GridGeometry::from_vision(&model.bundle().manifest.runtime.vision)?;
    let mut report = PrepareReport::default();
    let total = by_scene.len();
    for (done, (scene_id, items)) in by_scene.into_iter().enumerate() {
        let fragment = index_fragment(out, scene_id);
        if fragment.is_file() {
            report.scenes_resumed += 1;
            report.samples += std::fs::read_to_string(&fragment).map_err(|e| write_err(&fragment, e))?.lines().count();
            progress(done + 1, total, scene_id);
            continue;
        }
        match prepare_scene(model, &scenes_dir.join(scene_id), scene_id, &items, &geom, out, opts) {
            Ok(scene) => {
                let partial = fragment.with_extension("partial");
                std::fs::write(&partial, scene.index).map_err(|e| write_err(&partial, e))?;
                std::fs::rename(&partial, &fragment).map_err(|e| write_err(&fragment, e))?;
                report.samples += scene.samples;
                report.skipped_questions += scene.unanswered;
                report.scenes += 1;
                report.bev_tokens += scene.bev_tokens;
                report.bev_masked += scene.bev_masked;
            }
            Err(SceneSkip(reason)) => {
                report.skipped_questions += items.len();
                report.skipped_scenes.insert(scene_id.to_string(), reason);
            }
        }
        progress(done + 1, total, scene_id);
    }
    // One index of every sample, assembled from the per-scene fragments (in scene order).
    let mut index = Vec::new();
    let mut fragments: Vec<PathBuf> = std::fs::read_dir(out.join(".index"))
        .map_err(|e| write_err(out, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    fragments.sort();
    for f in fragments {
        index.extend(std::fs::read(&f).map_err(|e| write_err(&f, e))?);
    }
    let path = out.join("index.jsonl");
    std::fs::write(&path, index).map_err(|e| write_err(&path, e))?;
    if report.samples == 0 {
        return Err(PrepareError::Input(format!(
            "no sample could be prepared ({} scenes skipped: {}); check --scenes and the annotation file",
            report.skipped_scenes.len(),
            report.skipped_scenes.iter().take(3).map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ")
        )));
    }
    Ok(report)
}

/// A scene that cannot give samples, and why (reported, not fatal).
struct SceneSkip(String);

impl<E: std::fmt::Display> From<E> for SceneSkip {
    fn from(e: E) -> Self {
        SceneSkip(e.to_string())
    }
}

struct SceneOutput {
    samples: usize,
    unanswered: usize,
    index: String,
    bev_tokens: usize,
    bev_masked: usize,
}

fn prepare_scene(
    model: &Loc3r,
    dir: &Path,
    scene_id: &str,
    items: &[&Situated],
    geom: &GridGeometry,
    out: &Path,
    opts: &PrepareOptions,
) -> Result<SceneOutput, SceneSkip> {
    if !dir.is_dir() {
        return Err(SceneSkip(format!("no scene directory {}", dir.display())));
    }
    let scene = ScanNetScene::open(dir)?;
    let frames = sampled_frames(&scene, opts)?;
    let indices: Vec<usize> = frames.frames.iter().map(|f| f.index).collect();
    let bev_frame = scene.bev_frame(indices[0])?;
    let targets = bev_targets(&scene, &indices, geom, &bev_frame, &opts.bev)?;
    let frozen = model.frozen_features(&frames)?;
    let bs_center =
        if items.iter().any(|q| matches!(q.pose, Some(crate::data::annotations::SituationPose::Sqa3d { .. }))) { scene.bs_center()? } else { [0.0; 3] };

    let bundle = model.bundle();
    let rt = &bundle.manifest.runtime;
    let timing = VideoTiming { duration_s: frames.duration_s, frame_times_s: frames.frames.iter().map(|f| f.time_s).collect() };
    let (f, p, cv) = frozen.image_features.dim();
    let camera_dim = frozen.camera_tokens.ncols();
    let image_features: Vec<f32> = frozen.image_features.iter().copied().collect();
    let camera_tokens: Vec<f32> = frozen.camera_tokens.iter().copied().collect();
    let bev_target = targets.flat_targets();
    let mut index = String::new();
    let (mut samples, mut unanswered) = (0, 0);
    for (k, q) in items.iter().enumerate() {
        let Some(answer) = q.answer.as_deref() else {
            unanswered += 1;
            continue;
        };
        let plan = prompt::plan(&bundle.tokenizer, &rt.prompt, &timing, q.situation.as_deref(), &q.question)?;
        let answer_ids = bundle.tokenizer.encode(answer, false).map_err(|e| SceneSkip(format!("tokenising the answer {answer:?}: {e}")))?.get_ids().to_vec();
        let mut input_ids: Vec<i64> = plan.head.iter().map(|&t| i64::from(t)).collect();
        input_ids.push(IMAGE_PLACEHOLDER);
        input_ids.extend(plan.video_tail.iter().chain(&plan.question).map(|&t| i64::from(t)));
        let answer_start = input_ids.len();
        input_ids.extend(answer_ids.iter().map(|&t| i64::from(t)));
        input_ids.push(i64::from(rt.tokens.im_end));
        let labels = input_ids.iter().enumerate().map(|(i, &t)| if i >= answer_start { t } else { IGNORE }).collect();
        let pose = q.pose.map(|pose| pose.bev_target(&bev_frame, bs_center, opts.body_forward));
        let sample = Sample {
            frames: f,
            image_features: image_features.clone(),
            feature_shape: (p, cv),
            camera_tokens: camera_tokens.clone(),
            camera_dim,
            input_ids,
            labels,
            pos_target: pose.map_or([0.0; 2], |(xy, _)| [xy[0] as f32, xy[1] as f32]),
            yaw_target: pose.map_or(0.0, |(_, yaw)| yaw as f32),
            situation_valid: if pose.is_some() { 1.0 } else { 0.0 },
            bev_target: bev_target.clone(),
            bev_mask: targets.mask.clone(),
        };
        let file = format!("{scene_id}-{k:04}.safetensors");
        let path = out.join(&file);
        let partial = path.with_extension("partial");
        sample.write(&partial)?;
        std::fs::rename(&partial, &path)?;
        let line = IndexLine {
            file,
            scene: scene_id,
            situation: q.situation.as_deref(),
            question: &q.question,
            answer,
            position: pose.map(|(xy, _)| xy),
            yaw_deg: pose.map(|(_, yaw)| yaw.to_degrees()),
        };
        index.push_str(&serde_json::to_string(&line).map_err(|e| SceneSkip(e.to_string()))?);
        index.push('\n');
        samples += 1;
    }
    let stats = targets.stats;
    Ok(SceneOutput { samples, unanswered, index, bev_tokens: stats.tokens, bev_masked: stats.tokens - stats.valid })
}

/// The scene's sampled frames: from `video.mp4` when the scene has one (frame i of the video is
/// pose i, and the runtime samples it the same way when serving), otherwise from the colour
/// images of the frames with a valid pose (uniform over those, as the runtime's rule).
fn sampled_frames(scene: &ScanNetScene, opts: &PrepareOptions) -> Result<Frames, SceneSkip> {
    if let Some(video) = scene.video_path() {
        let frames = load_frames(&video, &FrameSpec::new(opts.frames))?;
        if frames.total_frames > scene.frame_count() {
            return Err(SceneSkip(format!("{} has {} frames but the scene has {} poses", video.display(), frames.total_frames, scene.frame_count())));
        }
        return Ok(frames);
    }
    let valid = scene.valid_frames()?;
    if valid.is_empty() {
        return Err(SceneSkip("no frame has a valid pose".into()));
    }
    let picks = sample_indices(valid.len(), opts.frames)?;
    let mut frames = Vec::with_capacity(picks.len());
    for k in picks {
        let index = valid[k];
        let rgb = read_image(&scene.color_path(index)?)?;
        frames.push(Frame { index, time_s: index as f64 / opts.image_fps, rgb: rgb.into_shared() });
    }
    let total = scene.frame_count();
    Ok(Frames { frames, total_frames: total, fps: opts.image_fps, duration_s: total as f64 / opts.image_fps })
}
