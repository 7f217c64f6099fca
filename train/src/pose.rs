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

use loc3r::stages::preprocess::cut3r_pixels;
use loc3r::stages::video::{load_frames, sample_indices, FrameSpec};
use loc3r_export::checkpoint::{write_safetensors, Checkpoint, TensorToWrite};
use loc3r_export::graph::{Dim, GraphBuilder, Value};
use loc3r_export::models::cut3r::{self, sequence_io};
use loc3r_export::DType;
use ndarray::ArrayD;
use serde::Serialize;

use crate::data::scannet::{Pose, ScanNetScene};
use crate::graph::{export_options, finish, TrainGraphError, TrainingGraph};
use crate::sample::SampleError;

/// Input names of the pose training graph (besides the parameters).
pub mod inputs {
    /// `[F,3,H,W]` f32: CUT3R pixels in [-1, 1].
    pub const IMAGE: &str = loc3r_bundle::io::cut3r::IMAGE;
    /// `[F,7]` f32: each frame's pose in frame 0's camera, `[tx,ty,tz,qw,qx,qy,qz]`.
    pub const TARGET_POSE: &str = "target_pose";
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

/// The training graph: `cut3r_sequence` over `frames` frames + the pose loss.
pub fn training_graph(ckpt: &Checkpoint, frames: usize) -> Result<TrainingGraph, TrainGraphError> {
    let opts = export_options(ckpt);
    let mut g: GraphBuilder = cut3r::sequence_graph(ckpt, &opts, frames)?;
    let poses = output(&g, sequence_io::CAMERA_POSES);
    let target = g.input(inputs::TARGET_POSE, DType::F32, [Dim::Fixed(frames), Dim::Fixed(7)]);
    let mut s = g.scope("pose_loss");
    let t_hat = s.slice("t_pred", &poses, [0], [3], &[1], &[]);
    let t = s.slice("t_target", &target, [0], [3], &[1], &[]);
    let q_hat = s.slice("q_pred", &poses, [3], [7], &[1], &[]);
    let q = s.slice("q_target", &target, [3], [7], &[1], &[]);
    // translation: mean √(‖Δt‖² + ε²)
    let dt = s.sub("dt", &t_hat, &t);
    let sq = s.mul("dt_sq", &dt, &dt);
    let sq = s.reduce_sum("dt_sq_sum", &sq, &[1], false);
    let sq = s.add_scalar("plus_eps_sq", &sq, TRANSLATION_EPS * TRANSLATION_EPS);
    let dist = s.sqrt("distance", &sq);
    let l_t = s.reduce_mean("translation", &dist, &[0], false);
    // rotation: mean 1 − ⟨q̂, q⟩²
    let dot = s.mul("q_mul", &q_hat, &q);
    let dot = s.reduce_sum("q_dot", &dot, &[1], false);
    let dot2 = s.mul("q_dot_sq", &dot, &dot);
    let one = s.scalar_f32(1.0);
    let miss = s.sub("one_minus_dot_sq", &one, &dot2);
    let l_q = s.reduce_mean("rotation", &miss, &[0], false);
    let loss = s.add("total", &l_t, &l_q);
    let trainable = trainable_tensors(ckpt);
    finish(g, |name| trainable.contains(name), &loss, &[("translation", l_t), ("rotation", l_q)])
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
}

impl PoseSequence {
    pub fn frames(&self) -> usize {
        self.image_shape[0]
    }

    pub fn write(&self, path: &Path) -> Result<(), SampleError> {
        let err = |message: String| SampleError { path: path.to_path_buf(), message };
        let specs = [
            TensorToWrite { name: inputs::IMAGE.into(), dtype: DType::F32, shape: self.image_shape.to_vec() },
            TensorToWrite { name: inputs::TARGET_POSE.into(), dtype: DType::F32, shape: vec![self.frames(), 7] },
        ];
        let metadata = BTreeMap::from([("format".to_string(), "pt".to_string()), ("kind".to_string(), "loc3r-pose-sequence".to_string())]);
        write_safetensors(path, &specs, Some(&metadata), |t, w| {
            let v = if t.name == inputs::IMAGE { &self.image } else { &self.pose };
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
        if !image.iter().chain(&pose).all(|v| v.is_finite()) {
            return Err(err("holds NaN or infinity".into()));
        }
        Ok(PoseSequence { image_shape: [ishape[0], ishape[1], ishape[2], ishape[3]], image, pose })
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
        HashMap::from([(inputs::IMAGE.to_string(), image), (inputs::TARGET_POSE.to_string(), pose)])
    }
}

/// How pose sequences are made.
#[derive(Debug, Clone)]
pub struct PosePrepareOptions {
    /// Frames per sequence (the runtime's sample size).
    pub frames: usize,
    /// Subsets per video: the runtime's uniform sample and `shifts − 1` cyclic shifts of it,
    /// spread evenly over the video.
    pub shifts: usize,
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
    if opts.frames < 2 || opts.shifts == 0 {
        return Err(PosePrepareError::Input(format!("--frames must be at least 2 and --shifts at least 1 (got {} and {})", opts.frames, opts.shifts)));
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
    if total < opts.frames {
        return Err(format!("{total} frames, fewer than --frames {}", opts.frames));
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
    let base = sample_indices(total, opts.frames).map_err(|e| e.to_string())?;
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
        out.push(PoseSequence { image_shape: [opts.frames, 3, h, w], image, pose });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
