//! CUT3R pose pretraining: teach the CUT3R of a checkpoint to track the camera, so that the
//! camera token it hands the VLM carries the frame's pose (docs/training.md §9).
//!
//! Loc3R-VLM relies on a pretrained CUT3R: its per-frame camera token is the only route from a
//! frame to where the camera stood. A checkpoint whose CUT3R is random (the demo model's, since
//! no pretrained weights can be downloaded here) gives camera tokens that carry no pose at all.
//! This objective trains CUT3R on scenes with known camera poses, through the very graphs the
//! runtime runs:
//!
//! ```text
//! video (the runtime's decoder) ─▶ F frames ─▶ CUT3R pixels [F,3,H,W]      ┐ prepare-poses
//! pose files ─▶ pose of frame t in frame 0's camera [F,7] = t, q (q_w ≥ 0)  ┘ (one file per subset)
//!
//! image ─▶ cut3r_sequence (encoder + F chained steps, exporter IR) ─▶ camera_poses [F,7]
//!   L_t = mean_f √(‖t̂_f − t_f‖² + ε²)        translation error in metres (ε = 1 mm)
//!   L_q = mean_f 1 − ⟨q̂_f, q_f⟩²             0 for the same rotation, sign-free (q ≡ −q)
//!   loss = L_t + L_q
//! ```
//! Frame 0 is supervised too (its pose is the identity). The trainable tensors are all of
//! CUT3R's, the patch embedding (a convolution on the pixels) included, but the two tensors the
//! initial state is computed from (the state starts from their precomputed value in the runtime
//! as here). Frame subsets: the runtime's uniform sample
//! of the video, and cyclic shifts of it (a camera loop may start anywhere).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use loc3r::stages::preprocess::{cut3r_geometry, cut3r_pixels};
use loc3r::stages::video::{load_frames, sample_indices, FrameSpec};
use loc3r_export::checkpoint::{write_safetensors, Checkpoint, TensorToWrite};
use loc3r_export::graph::{Dim, GraphBuilder, Scope, Value};
use loc3r_export::models::cut3r::{self, sequence_io, SequencePoints};
use loc3r_export::DType;
use ndarray::ArrayD;
use serde::Serialize;

use crate::data::scannet::{DepthImage, Intrinsics, Pose, ScanNetScene};
use crate::graph::{export_options, finish, TrainGraphError, TrainingGraph};
use crate::sample::SampleError;

/// Input names of the pose training graph (besides the parameters).
pub mod inputs {
    /// `[F,3,H,W]` f32: CUT3R pixels in [-1, 1].
    pub const IMAGE: &str = loc3r_bundle::io::cut3r::IMAGE;
    /// `[F,7]` f32: each frame's pose in frame 0's camera, `[tx,ty,tz,qw,qx,qy,qz]`.
    pub const TARGET_POSE: &str = "target_pose";
    /// `[K,H,W,3]` f32 (point supervision, the K frames of [`super::point_frames`]): each CUT3R
    /// pixel's 3-D point in frame 0's camera, metres, OpenCV axes; zero where the depth is unknown.
    pub const TARGET_POINTS_WORLD: &str = "target_points_world";
    /// `[K,H,W]` f32: 1 where the point is known, 0 where the depth is missing.
    pub const POINT_MASK: &str = "point_mask";
}

/// Tensors of a pose-sequence file with point supervision (the graph feeds are derived).
mod stored {
    /// `[F,H,W]` f32: z-depth in metres of the depth pixel each CUT3R pixel reads, 0 = unknown.
    pub const POINT_DEPTH: &str = "point_depth";
    /// `[H,W,3]` f32: `K⁻¹ [u, v, 1]` of that depth pixel (the same for every frame of a scene).
    pub const POINT_RAYS: &str = "point_rays";
}

/// CUT3R's confidence regulariser: a point term is `c·‖p̂ − p‖ − α·log c`.
pub const POINT_CONF_ALPHA: f64 = 0.2;

/// How many frames of a sequence get point supervision: the DPT head at full resolution costs
/// far more than a recurrent step, and a few frames spread over the sequence already tie every
/// pixel to the frame's pose.
pub const POINT_FRAMES: usize = 4;

/// The supervised frames of an F-frame sequence: `round(linspace(0, F − 1, K))`, frame 0 first.
pub fn point_frames(frames: usize) -> Vec<usize> {
    let k = POINT_FRAMES.min(frames);
    let mut out: Vec<usize> = (0..k).map(|i| if k == 1 { 0 } else { (i as f64 * (frames - 1) as f64 / (k - 1) as f64).round() as usize }).collect();
    out.dedup();
    out
}

/// The translation error's smoothing (metres): keeps the gradient of `‖·‖` finite at 0.
const TRANSLATION_EPS: f64 = 1e-3;

/// The checkpoint tensors the pose objective trains: every tensor of the checkpoint's CUT3R
/// family but the two the initial state is computed from.
pub fn trainable_tensors(ckpt: &Checkpoint) -> BTreeSet<String> {
    let frozen = ["register_tokens", "decoder_embed_state"];
    ckpt.names()
        .family("cut3r")
        .map(|f| f.tensors.iter().map(|t| t.checkpoint.clone()).filter(|n| !frozen.iter().any(|p| n.starts_with(p))).collect())
        .unwrap_or_default()
}

/// The training graph: `cut3r_sequence` over `frames` frames + the pose loss, and with `points`
/// the point-map loss of both heads (module docs).
pub fn training_graph(ckpt: &Checkpoint, frames: usize, points: bool) -> Result<TrainingGraph, TrainGraphError> {
    let opts = export_options(ckpt);
    let supervised = if points { point_frames(frames) } else { Vec::new() };
    let mut g: GraphBuilder = cut3r::sequence_graph(ckpt, &opts, frames, &SequencePoints { frames: supervised.clone(), self_view: false })?;
    let poses = output(&g, sequence_io::CAMERA_POSES);
    let target = g.input(inputs::TARGET_POSE, DType::F32, [Dim::Fixed(frames), Dim::Fixed(7)]);
    let mut s = g.scope("pose_loss");
    let t_hat = s.slice("t_pred", &poses, [0], [3], &[1], &[]);
    let t = s.slice("t_target", &target, [0], [3], &[1], &[]);
    let q_hat = s.slice("q_pred", &poses, [3], [7], &[1], &[]);
    let q = s.slice("q_target", &target, [3], [7], &[1], &[]);
    // translation: mean √(‖Δt‖² + ε²)
    let dist = smooth_distance(&mut s, "translation_error", &t_hat, &t);
    let l_t = s.reduce_mean("translation", &dist, &[0], false);
    // rotation: mean 1 − ⟨q̂, q⟩²
    let dot = s.mul("q_mul", &q_hat, &q);
    let dot = s.reduce_sum("q_dot", &dot, &[1], false);
    let dot2 = s.mul("q_dot_sq", &dot, &dot);
    let one = s.scalar_f32(1.0);
    let miss = s.sub("one_minus_dot_sq", &one, &dot2);
    let l_q = s.reduce_mean("rotation", &miss, &[0], false);
    let mut loss = s.add("pose", &l_t, &l_q);
    let mut parts = vec![("translation", l_t), ("rotation", l_q)];
    if points {
        let [w, h] = ckpt.config().cut3r.input_size;
        let k = supervised.len();
        let mask = g.input(inputs::POINT_MASK, DType::F32, [k, h, w]);
        let target = g.input(inputs::TARGET_POINTS_WORLD, DType::F32, [k, h, w, 3]);
        let (pred, conf) = (output(&g, sequence_io::POINTS_WORLD), output(&g, sequence_io::CONF_WORLD));
        let (term, error) = point_loss(&mut g.scope("point_loss"), &pred, &conf, &target, &mask);
        loss = g.scope("point_loss").add("plus_points", &loss, &term);
        parts.push(("points", term));
        parts.push(("points_error", error));
    }
    let loss = g.scope("pose_loss").identity("total", &loss);
    let mut trainable = trainable_tensors(ckpt);
    if points {
        trainable
            .extend(ckpt.names().family(cut3r::POINTS_GRAPH).map(|f| f.tensors.iter().map(|t| t.checkpoint.clone()).collect::<Vec<_>>()).unwrap_or_default());
    }
    finish(g, |name| trainable.contains(name), &loss, &parts)
}

/// `√(‖a − b‖² + ε²)` over the last axis.
fn smooth_distance(s: &mut Scope<'_>, step: &str, a: &Value, b: &Value) -> Value {
    let d = s.sub(&format!("{step}/diff"), a, b);
    let sq = s.mul(&format!("{step}/square"), &d, &d);
    let sq = s.reduce_sum(&format!("{step}/sum"), &sq, &[-1], false);
    let sq = s.add_scalar(&format!("{step}/plus_eps_sq"), &sq, TRANSLATION_EPS * TRANSLATION_EPS);
    s.sqrt(step, &sq)
}

/// CUT3R's confidence-weighted point regression over the known pixels:
/// `Σ mask·(c·‖p̂ − p‖ − α·log c) / max(Σ mask, 1)`; also the unweighted mean error (metres).
fn point_loss(s: &mut Scope<'_>, pred: &Value, conf: &Value, target: &Value, mask: &Value) -> (Value, Value) {
    let dist = smooth_distance(s, "distance", pred, target);
    let weighted = s.mul("conf_distance", conf, &dist);
    let log_c = s.log("log_conf", conf);
    let reg = s.mul_scalar("alpha_log_conf", &log_c, POINT_CONF_ALPHA);
    let term = s.sub("term", &weighted, &reg);
    let count = s.reduce_sum("known", mask, &[], false);
    let count = s.clip("known_at_least_one", &count, Some(1.0), None);
    let mean = |s: &mut Scope<'_>, name: &str, v: &Value| {
        let m = s.mul(&format!("{name}/masked"), v, mask);
        let total = s.reduce_sum(&format!("{name}/sum"), &m, &[], false);
        s.div(name, &total, &count)
    };
    let loss = mean(s, "loss", &term);
    let error = mean(s, "error", &dist);
    (loss, error)
}

fn output(g: &GraphBuilder, name: &str) -> Value {
    g.outputs().iter().find(|v| v.name() == name).cloned().expect("the sequence graph declares its outputs")
}

/// The pose of camera `pt` in the camera frame of `p0` (both camera-to-world, OpenCV axes):
/// `[tx, ty, tz, qw, qx, qy, qz]` with `q_w ≥ 0` (CUT3R's convention).
pub fn relative_pose(p0: &Pose, pt: &Pose) -> [f64; 7] {
    // R0ᵀ (Rt, ct − c0)
    let mut r = [[0.0; 3]; 3];
    let mut t = [0.0; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = (0..3).map(|k| p0[k][i] * pt[k][j]).sum();
        }
        t[i] = (0..3).map(|k| p0[k][i] * (pt[k][3] - p0[k][3])).sum();
    }
    let q = quaternion(&r);
    [t[0], t[1], t[2], q[0], q[1], q[2], q[3]]
}

/// Unit quaternion `[w, x, y, z]` (w ≥ 0) of a rotation matrix (Shepperd's method: the largest
/// diagonal term picks the branch, so no division by a small number).
pub fn quaternion(r: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace = r[0][0] + r[1][1] + r[2][2];
    let q = if trace > r[0][0].max(r[1][1]).max(r[2][2]) {
        let s = (1.0 + trace).sqrt() * 2.0;
        [0.25 * s, (r[2][1] - r[1][2]) / s, (r[0][2] - r[2][0]) / s, (r[1][0] - r[0][1]) / s]
    } else if r[0][0] >= r[1][1] && r[0][0] >= r[2][2] {
        let s = (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt() * 2.0;
        [(r[2][1] - r[1][2]) / s, 0.25 * s, (r[0][1] + r[1][0]) / s, (r[0][2] + r[2][0]) / s]
    } else if r[1][1] >= r[2][2] {
        let s = (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt() * 2.0;
        [(r[0][2] - r[2][0]) / s, (r[0][1] + r[1][0]) / s, 0.25 * s, (r[1][2] + r[2][1]) / s]
    } else {
        let s = (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt() * 2.0;
        [(r[1][0] - r[0][1]) / s, (r[0][2] + r[2][0]) / s, (r[1][2] + r[2][1]) / s, 0.25 * s]
    };
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let sign = if q[0] < 0.0 { -1.0 } else { 1.0 };
    q.map(|v| sign * v / n)
}

/// One prepared pose sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseSequence {
    /// `[F,3,H,W]`.
    pub image_shape: [usize; 4],
    pub image: Vec<f32>,
    /// `[F,7]`.
    pub pose: Vec<f32>,
    /// Depth for point-map supervision (`prepare-poses --points`).
    pub points: Option<PointTargets>,
}

/// Per CUT3R pixel: the depth and the viewing ray of the depth pixel it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PointTargets {
    /// `[F,H,W]`: z-depth in metres, 0 where unknown.
    pub depth: Vec<f32>,
    /// `[H,W,3]`: `K⁻¹ [u, v, 1]`, so the point in the frame's camera is `depth · ray`.
    pub rays: Vec<f32>,
}

impl PoseSequence {
    pub fn frames(&self) -> usize {
        self.image_shape[0]
    }

    pub fn write(&self, path: &Path) -> Result<(), SampleError> {
        let err = |message: String| SampleError { path: path.to_path_buf(), message };
        let [f, _, h, w] = self.image_shape;
        let mut specs = vec![
            TensorToWrite { name: inputs::IMAGE.into(), dtype: DType::F32, shape: self.image_shape.to_vec() },
            TensorToWrite { name: inputs::TARGET_POSE.into(), dtype: DType::F32, shape: vec![f, 7] },
        ];
        if self.points.is_some() {
            specs.push(TensorToWrite { name: stored::POINT_DEPTH.into(), dtype: DType::F32, shape: vec![f, h, w] });
            specs.push(TensorToWrite { name: stored::POINT_RAYS.into(), dtype: DType::F32, shape: vec![h, w, 3] });
        }
        let metadata = BTreeMap::from([("format".to_string(), "pt".to_string()), ("kind".to_string(), "loc3r-pose-sequence".to_string())]);
        write_safetensors(path, &specs, Some(&metadata), |t, w| {
            let v = match (t.name.as_str(), &self.points) {
                (inputs::IMAGE, _) => &self.image,
                (stored::POINT_DEPTH, Some(p)) => &p.depth,
                (stored::POINT_RAYS, Some(p)) => &p.rays,
                _ => &self.pose,
            };
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.write_all(&bytes)
        })
        .map_err(|e| err(e.to_string()))
    }

    pub fn read(path: &Path) -> Result<PoseSequence, SampleError> {
        let err = |message: String| SampleError { path: path.to_path_buf(), message };
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let get = |name: &str, rank: usize| -> Result<(Vec<usize>, Vec<f32>), SampleError> {
            let t = st.tensor(name).map_err(|_| err(format!("missing tensor `{name}`; is this a pose sequence from `loc3r-train prepare-poses`?")))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != rank {
                return Err(err(format!("`{name}` is {:?} {:?}, expected F32 of rank {rank}", t.dtype(), t.shape())));
            }
            Ok((t.shape().to_vec(), t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
        };
        let (ishape, image) = get(inputs::IMAGE, 4)?;
        let (pshape, pose) = get(inputs::TARGET_POSE, 2)?;
        if ishape[1] != 3 || pshape != [ishape[0], 7] || ishape[0] == 0 {
            return Err(err(format!("image {ishape:?} and target_pose {pshape:?} do not describe F frames ([F,3,H,W] and [F,7])")));
        }
        let points = match st.tensor(stored::POINT_DEPTH) {
            Err(_) => None,
            Ok(_) => {
                let (dshape, depth) = get(stored::POINT_DEPTH, 3)?;
                let (rshape, rays) = get(stored::POINT_RAYS, 3)?;
                if dshape != [ishape[0], ishape[2], ishape[3]] || rshape != [ishape[2], ishape[3], 3] {
                    return Err(err(format!("point_depth {dshape:?} and point_rays {rshape:?} do not match the images {ishape:?} ([F,H,W] and [H,W,3])")));
                }
                if depth.iter().any(|&d| d < 0.0) {
                    return Err(err("point_depth holds negative depths".into()));
                }
                Some(PointTargets { depth, rays })
            }
        };
        let all = image.iter().chain(&pose).chain(points.iter().flat_map(|p| p.depth.iter().chain(&p.rays)));
        if !all.into_iter().all(|v| v.is_finite()) {
            return Err(err("holds NaN or infinity".into()));
        }
        Ok(PoseSequence { image_shape: [ishape[0], ishape[1], ishape[2], ishape[3]], image, pose, points })
    }

    /// Checks the sequence against a checkpoint's CUT3R input size.
    pub fn validate(&self, ckpt: &Checkpoint) -> Result<(), String> {
        let [w, h] = ckpt.config().cut3r.input_size;
        if self.image_shape[2] != h || self.image_shape[3] != w {
            return Err(format!("images are {}x{} (WxH), the checkpoint's CUT3R takes {w}x{h}", self.image_shape[3], self.image_shape[2]));
        }
        Ok(())
    }

    /// The graph feeds.
    pub fn feeds(&self) -> HashMap<String, ArrayD<f32>> {
        let image = ArrayD::from_shape_vec(self.image_shape.to_vec(), self.image.clone()).expect("shape checked");
        let pose = ArrayD::from_shape_vec(vec![self.frames(), 7], self.pose.clone()).expect("shape checked");
        let mut feeds = HashMap::from([(inputs::IMAGE.to_string(), image), (inputs::TARGET_POSE.to_string(), pose)]);
        if let Some(p) = &self.points {
            let [f, _, h, w] = self.image_shape;
            let chosen = point_frames(f);
            let (_, world, mask) = p.targets(&self.pose, &chosen, h * w);
            let k = chosen.len();
            feeds.insert(inputs::TARGET_POINTS_WORLD.into(), ArrayD::from_shape_vec(vec![k, h, w, 3], world).expect("sizes"));
            feeds.insert(inputs::POINT_MASK.into(), ArrayD::from_shape_vec(vec![k, h, w], mask).expect("sizes"));
        }
        feeds
    }
}

impl PointTargets {
    /// For the frames `frames` (in that order): the point of every pixel in its own camera
    /// (`depth · ray`) and in frame 0's camera (`R_f · p + t_f` with frame f's pose `[t, q]` in
    /// frame 0's camera), and the mask of known pixels; unknown ones are zero in all three.
    pub fn targets(&self, pose: &[f32], frames: &[usize], pixels: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = frames.len();
        let (mut own, mut world, mut mask) = (vec![0f32; n * pixels * 3], vec![0f32; n * pixels * 3], vec![0f32; n * pixels]);
        for (slot, &f) in frames.iter().enumerate() {
            let p = &pose[f * 7..f * 7 + 7];
            let r = rotation(&[f64::from(p[3]), f64::from(p[4]), f64::from(p[5]), f64::from(p[6])]);
            for k in 0..pixels {
                let z = f64::from(self.depth[f * pixels + k]);
                if z <= 0.0 {
                    continue;
                }
                let at = (slot * pixels + k) * 3;
                let c: [f64; 3] = std::array::from_fn(|i| z * f64::from(self.rays[k * 3 + i]));
                for i in 0..3 {
                    own[at + i] = c[i] as f32;
                    world[at + i] = ((0..3).map(|j| r[i][j] * c[j]).sum::<f64>() + f64::from(p[i])) as f32;
                }
                mask[slot * pixels + k] = 1.0;
            }
        }
        (own, world, mask)
    }
}

/// The rotation matrix of a quaternion `[w, x, y, z]` (normalised first).
pub fn rotation(q: &[f64; 4]) -> [[f64; 3]; 3] {
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let [w, x, y, z] = q.map(|v| v / n);
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

/// How pose sequences are made.
#[derive(Debug, Clone)]
pub struct PosePrepareOptions {
    /// Frames per sequence (the runtime's sample size).
    pub frames: usize,
    /// Subsets per video: the runtime's uniform sample and `shifts − 1` cyclic shifts of it,
    /// spread evenly over the video.
    pub shifts: usize,
    /// Also store each CUT3R pixel's depth and ray (`depth/`, `intrinsic/intrinsic_depth.txt`)
    /// for point-map supervision.
    pub points: bool,
    /// `None`: the runtime's uniform sample of the video. `Some(s)`: a window of every `s`-th
    /// frame (`s = 1`: consecutive frames), for a curriculum that starts on short, small-motion
    /// sequences; the `shifts` windows start at offsets spread evenly over the video.
    pub stride: Option<usize>,
}

/// What was written and what was skipped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PosePrepareReport {
    pub sequences: usize,
    pub scenes: usize,
    pub scenes_resumed: usize,
    pub skipped_scenes: BTreeMap<String, String>,
}

/// Why preparing pose sequences failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PosePrepareError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Export(#[from] loc3r_export::Error),
    #[error(transparent)]
    Sample(#[from] SampleError),
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
}

/// Writes `<scene>-s<k>.safetensors` under `out` for every scene directory under `scenes`
/// (ScanNet layout with `video.mp4`), at the CUT3R input size of the checkpoint `ckpt`.
/// Scenes whose files are all there already are skipped (resumable).
pub fn prepare_poses(
    ckpt: &Checkpoint,
    scenes: &Path,
    out: &Path,
    opts: &PosePrepareOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<PosePrepareReport, PosePrepareError> {
    if opts.frames < 2 || opts.shifts == 0 || opts.stride == Some(0) {
        return Err(PosePrepareError::Input(format!(
            "--frames must be at least 2, --shifts and --stride at least 1 (got {}, {} and {:?})",
            opts.frames, opts.shifts, opts.stride
        )));
    }
    let [w, h] = ckpt.config().cut3r.input_size;
    let long_side = w.max(h);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| PosePrepareError::Io { path: path.clone(), error }
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(scenes)
        .map_err(|e| PosePrepareError::Input(format!("{}: cannot read the scenes directory: {e}", scenes.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(PosePrepareError::Input(format!("{}: no scene directories", scenes.display())));
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    // Resuming into a directory made with other options would mix sequences silently.
    let stamp = out.join("prepare-poses.json");
    let mut wanted = serde_json::json!({ "frames": opts.frames, "shifts": opts.shifts, "points": opts.points, "cut3r_input_size": [w, h] });
    if let Some(stride) = opts.stride {
        // Only written when set, so directories prepared before the option existed still resume.
        wanted["stride"] = stride.into();
    }
    match std::fs::read_to_string(&stamp) {
        Ok(text) => {
            let old: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if old != wanted {
                return Err(PosePrepareError::Input(format!(
                    "{} was prepared with {old}, this run asks for {wanted}; give a fresh --out (or the same options to resume)",
                    out.display()
                )));
            }
        }
        Err(_) => std::fs::write(&stamp, wanted.to_string()).map_err(io_err(&stamp))?,
    }
    let mut report = PosePrepareReport::default();
    for (k, dir) in dirs.iter().enumerate() {
        progress(k, dirs.len());
        let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = |shift: usize| out.join(format!("{id}-s{shift}.safetensors"));
        if (0..opts.shifts).all(|s| file(s).is_file()) {
            report.scenes_resumed += 1;
            report.sequences += opts.shifts;
            continue;
        }
        match scene_sequences(dir, opts, long_side, w, h) {
            Ok(sequences) => {
                for (shift, seq) in sequences.iter().enumerate() {
                    let path = file(shift);
                    let partial = path.with_extension("partial");
                    seq.write(&partial)?;
                    std::fs::rename(&partial, &path).map_err(io_err(&path))?;
                }
                report.sequences += sequences.len();
                report.scenes += 1;
            }
            Err(why) => {
                report.skipped_scenes.insert(id, why);
            }
        }
    }
    progress(dirs.len(), dirs.len());
    Ok(report)
}

/// Every subset of one scene, or why the scene cannot be used.
fn scene_sequences(dir: &Path, opts: &PosePrepareOptions, long_side: usize, w: usize, h: usize) -> Result<Vec<PoseSequence>, String> {
    let scene = ScanNetScene::open(dir).map_err(|e| e.to_string())?;
    let video = scene.video_path().ok_or("no video.mp4")?;
    let total = scene.frame_count();
    let span = opts.stride.map_or(opts.frames, |s| (opts.frames - 1) * s + 1);
    if total < span {
        return Err(format!("{total} frames, fewer than the {span} that --frames {} needs", opts.frames));
    }
    let decoded = load_frames(&video, &FrameSpec::new(total)).map_err(|e| e.to_string())?;
    if decoded.total_frames != total || decoded.frames.len() != total {
        return Err(format!("{} has {} frames, the scene {total} poses", video.display(), decoded.total_frames));
    }
    let views: Vec<_> = decoded.frames.iter().map(|f| f.rgb.view()).collect();
    let pixels = cut3r_pixels(&views, long_side, w, h).map_err(|e| e.to_string())?;
    let per_frame = 3 * h * w;
    let flat: Vec<f32> = pixels.iter().copied().collect();
    let poses: Vec<Pose> =
        (0..total).map(|i| scene.pose(i).map_err(|e| e.to_string())?.ok_or(format!("frame {i} has no valid pose"))).collect::<Result<_, _>>()?;
    let base = match opts.stride {
        None => sample_indices(total, opts.frames).map_err(|e| e.to_string())?,
        Some(stride) => (0..opts.frames).map(|k| k * stride).collect(),
    };
    let sampling = if opts.points {
        let (ch, cw, _) = decoded.frames[0].rgb.dim();
        let d0 = scene.depth(0).map_err(|e| e.to_string())?;
        Some(DepthSampling::new((cw, ch), (d0.width, d0.height), scene.depth_intrinsics(), long_side, (w, h)))
    } else {
        None
    };
    let mut depths: HashMap<usize, Vec<f32>> = HashMap::new();
    let mut out = Vec::with_capacity(opts.shifts);
    for shift in 0..opts.shifts {
        let offset = shift * total / opts.shifts;
        let indices: Vec<usize> = base.iter().map(|&i| (i + offset) % total).collect();
        let mut image = Vec::with_capacity(opts.frames * per_frame);
        let mut pose = Vec::with_capacity(opts.frames * 7);
        for &i in &indices {
            image.extend_from_slice(&flat[i * per_frame..(i + 1) * per_frame]);
            pose.extend(relative_pose(&poses[indices[0]], &poses[i]).iter().map(|&v| v as f32));
        }
        let points = match &sampling {
            None => None,
            Some(sampling) => {
                let mut depth = Vec::with_capacity(opts.frames * h * w);
                for &i in &indices {
                    if let std::collections::hash_map::Entry::Vacant(slot) = depths.entry(i) {
                        let image = scene.depth(i).map_err(|e| e.to_string())?;
                        slot.insert(sampling.depth(&image).map_err(|e| format!("frame {i}: {e}"))?);
                    }
                    depth.extend_from_slice(&depths[&i]);
                }
                Some(PointTargets { depth, rays: sampling.rays.clone() })
            }
        };
        out.push(PoseSequence { image_shape: [opts.frames, 3, h, w], image, pose, points });
    }
    Ok(out)
}

/// Which depth pixel each CUT3R input pixel reads: the one nearest to the same point of the
/// image, through the runtime's resize and centre crop (`cut3r_geometry`) and the depth image's
/// own scale (ScanNet's depth is 640×480 under 1296×968 colour; the synthetic rooms align them).
#[derive(Debug, Clone)]
pub struct DepthSampling {
    /// Index into the depth image, per CUT3R pixel (row-major).
    pixel: Vec<usize>,
    /// `[H,W,3]`: `K_depth⁻¹ [u, v, 1]` of that depth pixel.
    pub rays: Vec<f32>,
    size: (usize, usize),
}

impl DepthSampling {
    /// `color` and `depth` are (width, height) of the video frames and of the depth images.
    pub fn new(color: (usize, usize), depth: (usize, usize), k: Intrinsics, long_side: usize, (w, h): (usize, usize)) -> DepthSampling {
        let geom = cut3r_geometry(color.0, color.1, long_side);
        // CUT3R pixel x′ is pixel x′ + left of the resized image, whose pixel centres sit at
        // (x + ½)·(size / resized) − ½ in any image of the same view of `size` pixels.
        let nearest = |x: usize, offset: usize, resized: usize, size: usize| -> usize {
            let u = (x + offset) as f64 + 0.5;
            ((u * size as f64 / resized as f64 - 0.5).round().max(0.0) as usize).min(size - 1)
        };
        let mut pixel = Vec::with_capacity(w * h);
        let mut rays = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            let v = nearest(y, geom.crop.1, geom.resized.1, depth.1);
            for x in 0..w {
                let u = nearest(x, geom.crop.0, geom.resized.0, depth.0);
                pixel.push(v * depth.0 + u);
                rays.extend(k.unproject(u as f64, v as f64, 1.0).map(|c| c as f32));
            }
        }
        DepthSampling { pixel, rays, size: depth }
    }

    /// Metres per CUT3R pixel (0 where the depth image has no measurement).
    pub fn depth(&self, image: &DepthImage) -> Result<Vec<f32>, String> {
        if (image.width, image.height) != self.size {
            return Err(format!("depth image is {}x{}, frame 0's is {}x{}", image.width, image.height, self.size.0, self.size.1));
        }
        Ok(self.pixel.iter().map(|&i| f32::from(image.millimetres[i]) / 1000.0).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_sampling_follows_the_resize_and_crop_and_lifts_to_the_plane() {
        // 320×240 colour and depth → 64×48 CUT3R pixels: a plain 5× downscale, so CUT3R pixel
        // (x, y) reads depth pixel (5x + 2, 5y + 2) (its centre); a fronto-parallel wall at 2 m
        // lifts to z = 2 everywhere, with x, y on the pixel's ray.
        let k = Intrinsics { fx: 290.0, fy: 290.0, cx: 159.5, cy: 119.5 };
        let s = DepthSampling::new((320, 240), (320, 240), k, 64, (64, 48));
        assert_eq!(s.pixel[0], 2 * 320 + 2);
        assert_eq!(s.pixel[47 * 64 + 63], (5 * 47 + 2) * 320 + 5 * 63 + 2);
        let wall = DepthImage { width: 320, height: 240, millimetres: vec![2000; 320 * 240] };
        let depth = s.depth(&wall).unwrap();
        assert!(depth.iter().all(|&d| d == 2.0));
        let targets = PointTargets { depth, rays: s.rays.clone() };
        let identity = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        let (own, world, mask) = targets.targets(&identity, &[0], 64 * 48);
        assert!(mask.iter().all(|&m| m == 1.0));
        let at = (10 * 64 + 20) * 3;
        let want = k.unproject(5.0 * 20.0 + 2.0, 5.0 * 10.0 + 2.0, 2.0);
        for i in 0..3 {
            assert!((f64::from(own[at + i]) - want[i]).abs() < 1e-6 && own[at + i] == world[at + i]);
        }
        // Depth at half the colour resolution (ScanNet-like): the nearest depth pixel.
        let half = DepthSampling::new((320, 240), (160, 120), k, 64, (64, 48));
        assert_eq!(half.pixel[0], 160 + 1);
        assert!(half.depth(&wall).is_err(), "a depth image of another size is refused");
    }

    #[test]
    fn world_points_move_with_the_frames_pose() {
        // Frame 1 stands 1 m right of frame 0 and is turned 90° about the camera's y axis:
        // its optical axis is frame 0's x axis, so a point 2 m ahead of it is at x = 1 + 2.
        let half = std::f64::consts::FRAC_PI_4;
        let pose = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, half.cos() as f32, 0.0, half.sin() as f32, 0.0];
        let targets = PointTargets { depth: vec![2.0, 2.0], rays: vec![0.0, 0.0, 1.0] };
        let (_, world, _) = targets.targets(&pose, &[0, 1], 1);
        let want = [0.0, 0.0, 2.0, 3.0, 0.0, 0.0];
        for (a, b) in world.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{world:?}");
        }
    }

    fn pose(yaw: f64, t: [f64; 3]) -> Pose {
        let (c, s) = (yaw.cos(), yaw.sin());
        [[c, -s, 0.0, t[0]], [s, c, 0.0, t[1]], [0.0, 0.0, 1.0, t[2]], [0.0, 0.0, 0.0, 1.0]]
    }

    #[test]
    fn relative_pose_of_the_anchor_is_the_identity_and_rotations_round_trip() {
        let p0 = pose(0.7, [1.0, 2.0, 0.5]);
        let id = relative_pose(&p0, &p0);
        for (a, b) in id.iter().zip([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]) {
            assert!((a - b).abs() < 1e-12, "{id:?}");
        }
        // 200° about z, 1 m along the anchor's x: the quaternion is about z with w ≥ 0 (−160°).
        let p1 = pose(0.7 + 200f64.to_radians(), [1.0 + 0.7f64.cos(), 2.0 + 0.7f64.sin(), 0.5]);
        let r = relative_pose(&p0, &p1);
        assert!((r[0] - 1.0).abs() < 1e-12 && r[1].abs() < 1e-12 && r[2].abs() < 1e-12, "{r:?}");
        let half = (-160f64).to_radians() / 2.0;
        assert!(r[3] >= 0.0);
        for (a, b) in r[3..].iter().zip([half.cos(), 0.0, 0.0, half.sin()]) {
            assert!((a - b).abs() < 1e-12, "{r:?}");
        }
    }

    #[test]
    fn quaternion_branches_agree_with_the_axis_angle_form() {
        // Rotations by 170° about each axis exercise every Shepperd branch.
        for axis in 0..3 {
            let th = 170f64.to_radians();
            let (c, s) = (th.cos(), th.sin());
            let mut r = [[0.0; 3]; 3];
            let (i, j) = ((axis + 1) % 3, (axis + 2) % 3);
            r[axis][axis] = 1.0;
            r[i][i] = c;
            r[j][j] = c;
            r[j][i] = s;
            r[i][j] = -s;
            let q = quaternion(&r);
            let mut want = [(th / 2.0).cos(), 0.0, 0.0, 0.0];
            want[1 + axis] = (th / 2.0).sin();
            for (a, b) in q.iter().zip(want) {
                assert!((a - b).abs() < 1e-12, "axis {axis}: {q:?}");
            }
        }
    }
}
