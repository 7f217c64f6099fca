//! The camera path: a smooth closed loop 0.6 m inside the walls (an ellipse inscribed in the
//! room shrunk by that margin), travelled with smoothly varying speed, the camera turned toward
//! the room centre with a smooth offset, pitched down and slightly rolled.
//!
//! Every quantity is a sum of integer harmonics of the loop parameter, so the path closes on
//! itself (frame F would equal frame 0).
//!
//! A second kind of path, [`CameraPath::Turn`], is not a room tour but pretraining data for
//! CUT3R's motion features: the camera stands still on the loop and pans to and fro. On the
//! tour the camera orbits while facing the room centre, so its turn and its travel move the
//! image in opposite directions and the direction of travel shows only as parallax between
//! near and far surfaces (docs/demo.md); a pure turn moves the whole image one way, the plainer
//! motion to learn first (docs/demo.md records which first lessons did and did not teach).

use crate::rng::Rng;
use loc3r_bundle::bev::{cross, normalize, Vec3};
use std::f64::consts::TAU;

/// How far inside the walls the loop runs (metres).
pub const WALL_MARGIN: f64 = 0.6;

/// A camera-to-world rigid transform, row-major, OpenCV camera axes (x right, y down, z forward).
pub type Pose = [[f64; 4]; 4];

/// The loop's shape on the floor.
#[derive(Debug, Clone, Copy)]
pub struct LoopPath {
    pub centre: [f64; 2],
    pub semi_axes: [f64; 2],
}

impl LoopPath {
    pub fn for_room(width: f64, depth: f64) -> LoopPath {
        LoopPath { centre: [width / 2.0, depth / 2.0], semi_axes: [width / 2.0 - WALL_MARGIN, depth / 2.0 - WALL_MARGIN] }
    }

    /// The point at loop angle `phi` (radians).
    pub fn point(&self, phi: f64) -> [f64; 2] {
        [self.centre[0] + self.semi_axes[0] * libm::cos(phi), self.centre[1] + self.semi_axes[1] * libm::sin(phi)]
    }

    /// `n` points spread over the loop (what object placement keeps clear of).
    pub fn samples(&self, n: usize) -> Vec<[f64; 2]> {
        (0..n).map(|i| self.point(TAU * i as f64 / n as f64)).collect()
    }
}

/// Smooth periodic signal: `Σ a_k sin(k·2πs + c_k)` with |Σ a_k| ≤ 1.
#[derive(Debug, Clone)]
struct Wiggle {
    terms: Vec<(f64, f64, f64)>,
}

impl Wiggle {
    fn new(rng: &mut Rng, harmonics: &[f64], weights: &[f64]) -> Wiggle {
        let terms = harmonics.iter().zip(weights).map(|(&k, &a)| (a, k, rng.range(0.0, TAU))).collect();
        Wiggle { terms }
    }

    fn at(&self, s: f64) -> f64 {
        self.terms.iter().map(|&(a, k, c)| a * libm::sin(k * TAU * s + c)).sum()
    }
}

/// The camera's height: a base of 1.3–1.6 m bobbing smoothly within 1.2–1.7 m.
struct Height {
    h0: f64,
    amp: f64,
    wiggle: Wiggle,
}

impl Height {
    fn draw(rng: &mut Rng) -> Height {
        let h0 = rng.range(1.3, 1.6);
        let amp = rng.range(0.0, (h0 - 1.2).min(1.7 - h0));
        Height { h0, amp, wiggle: Wiggle::new(rng, &[1.0, 2.0], &[0.7, 0.3]) }
    }
}

/// What the hand-held camera does besides going where it goes: its height bobs, it pitches
/// around 10° down and rolls a little, all smooth and periodic in the path parameter `s`.
struct Sway {
    height: Height,
    pitch: Wiggle,
    roll: Wiggle,
}

impl Sway {
    /// The pitch and roll are drawn after the height (and, on the tour, after the yaw offset):
    /// the order of draws fixes every committed room.
    fn draw(height: Height, rng: &mut Rng) -> Sway {
        Sway { height, pitch: Wiggle::new(rng, &[1.0, 3.0], &[0.6, 0.4]), roll: Wiggle::new(rng, &[2.0], &[1.0]) }
    }

    /// The pose at path parameter `s` of a camera standing over `xy`, heading `yaw`.
    fn pose(&self, xy: [f64; 2], yaw: f64, s: f64) -> Pose {
        let centre = [xy[0], xy[1], self.height.h0 + self.height.amp * self.height.wiggle.at(s)];
        let pitch = (-10.0 + 8.0 * self.pitch.at(s)).to_radians();
        let roll = (2.0 * self.roll.at(s)).to_radians();
        quantize(&look_pose(centre, yaw, pitch, roll))
    }
}

/// How the camera moves through the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CameraPath {
    /// The room tour: round the loop, facing the centre (the layout the questions are about).
    #[default]
    Loop,
    /// Standing at one point of the loop and panning to and fro across the room, with the same
    /// height, pitch and roll variation as the tour.
    Turn,
}

impl CameraPath {
    pub fn name(self) -> &'static str {
        match self {
            CameraPath::Loop => "loop",
            CameraPath::Turn => "turn",
        }
    }
}

/// The poses of `frames` cameras of a `width × depth` room along `path`.
pub fn path_poses(path: CameraPath, width: f64, depth: f64, frames: usize, rng: &mut Rng) -> Vec<Pose> {
    match path {
        CameraPath::Loop => camera_poses(width, depth, frames, rng),
        CameraPath::Turn => turn_in_place_poses(width, depth, frames, rng),
    }
}

/// A camera standing at a random point of the loop (clear of the furniture, which keeps off the
/// loop) and panning to and fro across the room: its heading swings smoothly up to 60–100° either
/// side of the room centre, so the views show the room rather than the wall behind.
pub fn turn_in_place_poses(width: f64, depth: f64, frames: usize, rng: &mut Rng) -> Vec<Pose> {
    let path = LoopPath::for_room(width, depth);
    let p = path.point(rng.range(0.0, TAU));
    let to_centre = libm::atan2(path.centre[1] - p[1], path.centre[0] - p[0]);
    let swing = rng.range(60.0, 100.0).to_radians();
    let swing_phase = rng.range(0.0, TAU);
    let sway = Sway::draw(Height::draw(rng), rng);
    (0..frames)
        .map(|i| {
            let s = i as f64 / frames as f64;
            sway.pose(p, to_centre + swing * libm::sin(TAU * s + swing_phase), s)
        })
        .collect()
}

/// The poses of `frames` cameras around the loop of a `width × depth` room.
pub fn camera_poses(width: f64, depth: f64, frames: usize, rng: &mut Rng) -> Vec<Pose> {
    let path = LoopPath::for_room(width, depth);
    let phase0 = rng.range(0.0, TAU);
    let direction = if rng.chance(0.5) { 1.0 } else { -1.0 };
    // Speed varies by up to ±35 % around the loop; the warp stays monotone since 0.35 < 1.
    let speed_amp = rng.range(0.1, 0.35) / TAU;
    let speed_phase = rng.range(0.0, TAU);
    let height = Height::draw(rng);
    let yaw_amp = rng.range(10.0, 30.0).to_radians();
    let yaw_offset = Wiggle::new(rng, &[1.0, 2.0], &[0.7, 0.3]);
    let sway = Sway::draw(height, rng);
    (0..frames)
        .map(|i| {
            let s = i as f64 / frames as f64;
            let phi = phase0 + direction * (TAU * s + speed_amp * TAU * libm::sin(TAU * s + speed_phase));
            let p = path.point(phi);
            let to_centre = libm::atan2(path.centre[1] - p[1], path.centre[0] - p[0]);
            sway.pose(p, to_centre + yaw_amp * yaw_offset.at(s), s)
        })
        .collect()
}

/// Camera-to-world pose of a camera at `centre` with heading `yaw` about world z (0 = looking
/// along +x), pitch `pitch` (positive looks up) and roll `roll` about the optical axis.
pub fn look_pose(centre: Vec3, yaw: f64, pitch: f64, roll: f64) -> Pose {
    let (cp, sp) = (libm::cos(pitch), libm::sin(pitch));
    let forward = [libm::cos(yaw) * cp, libm::sin(yaw) * cp, sp];
    // Right of the view with z up is forward × up; image down is forward × right.
    let right0 = normalize(cross(forward, [0.0, 0.0, 1.0])).unwrap_or([0.0, -1.0, 0.0]);
    let down0 = cross(forward, right0);
    let (sr, cr) = (libm::sin(roll), libm::cos(roll));
    let right = [right0[0] * cr + down0[0] * sr, right0[1] * cr + down0[1] * sr, right0[2] * cr + down0[2] * sr];
    let down = cross(forward, right);
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().take(3).enumerate() {
        *row = [right[i], down[i], forward[i], centre[i]];
    }
    m[3] = [0.0, 0.0, 0.0, 1.0];
    m
}

/// The pose as written to `pose/{i}.txt` (nine decimals) and parsed back, so the pose files, the
/// rendered frames and the BEV ground truth use the very same numbers.
pub fn quantize(pose: &Pose) -> Pose {
    let mut out = *pose;
    for v in out.iter_mut().flatten() {
        let text = format!("{v:.9}");
        *v = text.parse().unwrap_or(*v);
        if *v == 0.0 {
            *v = 0.0; // no "-0.000000000" in the files
        }
    }
    out
}

/// The text of a pose file: four rows of four numbers.
pub fn pose_text(pose: &Pose) -> String {
    pose.iter().map(|row| row.iter().map(|v| format!("{v:.9}")).collect::<Vec<_>>().join(" ") + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_stands_still_on_the_loop_and_pans_both_ways() {
        let (width, depth) = (5.0, 4.0);
        let path = LoopPath::for_room(width, depth);
        for seed in 0..20 {
            let poses = turn_in_place_poses(width, depth, 16, &mut Rng::new(seed));
            let (x, y) = (poses[0][0][3], poses[0][1][3]);
            let on_loop = ((x - path.centre[0]) / path.semi_axes[0]).powi(2) + ((y - path.centre[1]) / path.semi_axes[1]).powi(2);
            assert!((on_loop - 1.0).abs() < 1e-6, "{on_loop}");
            let to_centre = libm::atan2(path.centre[1] - y, path.centre[0] - x);
            let wrap = |a: f64| (a + 3.0 * std::f64::consts::PI).rem_euclid(TAU) - std::f64::consts::PI;
            let offsets: Vec<f64> = poses.iter().map(|p| wrap(libm::atan2(p[1][2], p[0][2]) - to_centre)).collect();
            for (p, off) in poses.iter().zip(&offsets) {
                assert_eq!((p[0][3], p[1][3]), (x, y), "the camera stays where it stands");
                assert!(off.abs() <= 100f64.to_radians() + 1e-6, "heading {off} off the centre");
            }
            let steps: Vec<f64> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(steps.iter().any(|&d| d > 0.1) && steps.iter().any(|&d| d < -0.1), "pans both ways: {steps:?}");
        }
    }

    #[test]
    fn poses_stay_on_the_loop_with_bounded_angles() {
        let mut rng = Rng::new(3);
        let poses = camera_poses(5.0, 4.0, 32, &mut rng);
        for p in &poses {
            assert!((1.2..=1.7).contains(&p[2][3]), "height {}", p[2][3]);
            assert!(p[0][3] > 0.59 && p[0][3] < 4.41 && p[1][3] > 0.59 && p[1][3] < 3.41);
            let pitch = libm::asin(p[2][2]).to_degrees();
            assert!((-18.01..=-1.99).contains(&pitch), "pitch {pitch}");
            // Rotation is orthonormal.
            for a in 0..3 {
                for b in 0..3 {
                    let d: f64 = (0..3).map(|i| p[i][a] * p[i][b]).sum();
                    assert!((d - if a == b { 1.0 } else { 0.0 }).abs() < 1e-7);
                }
            }
        }
    }
}
