//! The camera path: a smooth closed loop 0.6 m inside the walls (an ellipse inscribed in the
//! room shrunk by that margin), travelled with smoothly varying speed, the camera turned toward
//! the room centre with a smooth offset, pitched down and slightly rolled.
//!
//! Every quantity is a sum of integer harmonics of the loop parameter, so the path closes on
//! itself (frame F would equal frame 0).

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

/// The poses of `frames` cameras around the loop of a `width × depth` room.
pub fn camera_poses(width: f64, depth: f64, frames: usize, rng: &mut Rng) -> Vec<Pose> {
    let path = LoopPath::for_room(width, depth);
    let phase0 = rng.range(0.0, TAU);
    let direction = if rng.chance(0.5) { 1.0 } else { -1.0 };
    // Speed varies by up to ±35 % around the loop; the warp stays monotone since 0.35 < 1.
    let speed_amp = rng.range(0.1, 0.35) / TAU;
    let speed_phase = rng.range(0.0, TAU);
    let h0 = rng.range(1.3, 1.6);
    let h_amp = rng.range(0.0, (h0 - 1.2).min(1.7 - h0));
    let height = Wiggle::new(rng, &[1.0, 2.0], &[0.7, 0.3]);
    let yaw_amp = rng.range(10.0, 30.0).to_radians();
    let yaw_offset = Wiggle::new(rng, &[1.0, 2.0], &[0.7, 0.3]);
    let pitch = Wiggle::new(rng, &[1.0, 3.0], &[0.6, 0.4]);
    let roll = Wiggle::new(rng, &[2.0], &[1.0]);
    (0..frames)
        .map(|i| {
            let s = i as f64 / frames as f64;
            let phi = phase0 + direction * (TAU * s + speed_amp * TAU * libm::sin(TAU * s + speed_phase));
            let p = path.point(phi);
            let centre = [p[0], p[1], h0 + h_amp * height.at(s)];
            let to_centre = libm::atan2(path.centre[1] - p[1], path.centre[0] - p[0]);
            let yaw = to_centre + yaw_amp * yaw_offset.at(s);
            let pitch = (-10.0 + 8.0 * pitch.at(s)).to_radians();
            let roll = (2.0 * roll.at(s)).to_radians();
            quantize(&look_pose(centre, yaw, pitch, roll))
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
