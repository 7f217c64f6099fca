//! loc3r-synth: seeded, deterministic synthetic rooms for training and evaluating localisation.
//!
//! A room is a textured box with furniture, a camera loop around it rendered by a CPU ray caster
//! (colour + z-depth), written in the ScanNet export layout with situated questions whose
//! ground-truth poses are in the BEV frame of `loc3r_bundle::bev` (docs/synthetic-rooms.md).
//!
//! Room `i` of seed `S` depends only on `(S, i)` and the rendering options: any room can be
//! regenerated alone, and its bytes never change for a given seed.

pub mod camera;
pub mod footprint;
pub mod output;
pub mod questions;
pub mod render;
pub mod rng;
pub mod scene;
pub mod situation;
pub mod texture;
pub mod trajectory;
pub mod video;
pub mod vocab;

use loc3r_bundle::bev::{BevError, BevFrame};
use questions::{plain_questions, situated_questions, Qa, SituatedQa};
use rng::{derive, Rng};
use scene::{ObjectCount, Room};
use std::path::PathBuf;
use trajectory::{path_poses, CameraPath, Pose};

/// Frames per second of `video.mp4` (and of `scene.json`'s `fps`).
pub const FPS: u32 = 10;

/// World up of every synthetic room.
pub const UP: [f64; 3] = [0.0, 0.0, 1.0];

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("only {placed} of the {requested} requested objects fit in the {width:.2} m × {depth:.2} m room (objects keep 0.3 m apart and clear of the camera loop); ask for fewer objects")]
    ObjectsDoNotFit { requested: usize, placed: usize, width: f64, depth: f64 },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot encode {path}: {source}")]
    Image { path: PathBuf, source: image::ImageError },
    #[error("video encoding failed: {0}")]
    Video(String),
    #[error("cannot serialise JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("internal error (please report): {0}")]
    Internal(String),
    #[error("the BEV frame of camera 0 cannot be built: {0}")]
    Bev(#[from] BevError),
}

/// Everything that shapes a generated room.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub seed: u64,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub objects: ObjectCount,
    pub questions: usize,
    pub sample_frames: usize,
    pub split: String,
    pub depth_noise: bool,
    pub video: bool,
    /// The room tour, or turning in place (CUT3R pretraining data).
    pub path: CameraPath,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 0,
            frames: 64,
            width: 320,
            height: 240,
            objects: ObjectCount::default(),
            questions: 12,
            sample_frames: 16,
            split: "train".into(),
            depth_noise: false,
            video: true,
            path: CameraPath::Loop,
        }
    }
}

impl Options {
    /// Checks the ranges the CLI documents.
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::InvalidOption(m));
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if !(32..=4096).contains(&v) || v % 2 != 0 {
                return bad(format!("frame {name} {v} must be even and within 32..=4096 (e.g. --size 320x240)"));
            }
        }
        if self.frames < 2 {
            return bad(format!("--frames {} is too few: a trajectory needs at least 2 frames", self.frames));
        }
        if self.sample_frames == 0 || self.sample_frames > self.frames {
            return bad(format!("--sample-frames {} must be within 1..={} (the number of frames)", self.sample_frames, self.frames));
        }
        if self.questions > 9999 {
            return bad(format!("--questions {} is more than 9999 per room (question ids are room·10000 + n)", self.questions));
        }
        if self.objects.min < 2 || self.objects.min > self.objects.max {
            return bad(format!("object count {}..{} must satisfy 2 <= min <= max", self.objects.min, self.objects.max));
        }
        if self.split.is_empty() || !self.split.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return bad(format!("--split {:?} must be a non-empty name of letters, digits, '_' or '-'", self.split));
        }
        Ok(())
    }
}

/// The scene id of room `index` of seed `seed`.
pub fn scene_id(seed: u64, index: usize) -> String {
    format!("synth-s{seed}-r{index:04}")
}

/// A room with its trajectory and questions, before rendering.
#[derive(Debug, Clone)]
pub struct GeneratedRoom {
    pub index: usize,
    pub scene_id: String,
    pub seed: u64,
    pub room: Room,
    pub poses: Vec<Pose>,
    /// The BEV frame anchored at camera 0 (the frame of every reported pose).
    pub bev: BevFrame,
    pub situated: Vec<SituatedQa>,
    pub plain: Vec<Qa>,
    /// Seed of the depth noise, when enabled.
    pub noise_seed: Option<u64>,
}

/// Sub-streams of a room's seed: layout, trajectory, questions and depth noise draw from
/// separate streams, so e.g. more frames do not move the furniture.
const STREAM_LAYOUT: u64 = 0;
const STREAM_TRAJECTORY: u64 = 1;
const STREAM_QUESTIONS: u64 = 2;
const STREAM_DEPTH_NOISE: u64 = 3;

/// Room layouts drawn for one index before the object count is declared impossible.
const LAYOUT_ATTEMPTS: usize = 32;

/// Generates room `index` (layout, poses, questions); rendering happens in `output`.
pub fn generate_room(opts: &Options, index: usize) -> Result<GeneratedRoom, SynthError> {
    let seed = derive(opts.seed, index as u64);
    // A draw fails when the fewest objects asked for do not fit (a small room); the next draw
    // from the same stream is another room, so the output stays a function of the seed alone.
    let mut layout = Rng::new(derive(seed, STREAM_LAYOUT));
    let mut room = Room::generate(&mut layout, opts.objects);
    for _ in 1..LAYOUT_ATTEMPTS {
        if room.is_ok() {
            break;
        }
        room = Room::generate(&mut layout, opts.objects);
    }
    let room = room?;
    let poses = path_poses(opts.path, room.width, room.depth, opts.frames, &mut Rng::new(derive(seed, STREAM_TRAJECTORY)));
    let bev = BevFrame::from_camera0(&poses[0], UP)?;
    let situated = situated_questions(&room, opts.questions, &mut Rng::new(derive(seed, STREAM_QUESTIONS)));
    let plain = plain_questions(&room);
    let noise_seed = opts.depth_noise.then(|| derive(seed, STREAM_DEPTH_NOISE));
    Ok(GeneratedRoom { index, scene_id: scene_id(opts.seed, index), seed, room, poses, bev, situated, plain, noise_seed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_whose_first_layout_draw_is_too_small_is_drawn_again() {
        // Seed 2, room 214: the first draw (3.59 m × 5.79 m) fits only 3 of at least 4 objects.
        let opts = Options { seed: 2, ..Options::default() };
        let seed = derive(opts.seed, 214);
        assert!(Room::generate(&mut Rng::new(derive(seed, STREAM_LAYOUT)), opts.objects).is_err());
        let room = generate_room(&opts, 214).expect("a later draw fits");
        assert!(room.room.objects.len() >= opts.objects.min);
        // Deterministic: the same seed gives the same room.
        assert_eq!(generate_room(&opts, 214).unwrap().room.objects.len(), room.room.objects.len());
    }
}
