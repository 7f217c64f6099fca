//! SQA3D language-based localisation: where the agent stands and which way it faces
//! (docs/evaluation.md, "SQA3D localisation").
//!
//! Ground truth frame. SQA3D gives the agent's position in the raw (not axis-aligned) ScanNet
//! frame of the scene, shifted so that the centre of the mesh's bounding box (`bs_center`) is the
//! origin, and its rotation as a quaternion about the world up axis z. The scored angle is that
//! rotation's angle ψ; the agent faces along its body −x axis rotated by ψ, i.e. towards world
//! heading ψ + π.
//!
//! Metric. Per sample, with up to three predictions (Loc3R gives one), the position error is the
//! smallest planar distance to the ground truth (z is ignored) and the angle error the smallest
//! wrap-around difference of ψ, in degrees. A sample counts as located at a threshold when its
//! error is strictly below it; a sample without any prediction counts as a miss everywhere.
//!
//! Loc3R predicts in the bird's-eye-view frame of the video's first sampled camera;
//! [`sqa3d_pose_from_bev`] carries a prediction into the SQA3D frame with a rotation and a
//! translation only (no scale), through the same BEV convention training used.

use loc3r_bundle::bev::{BevFrame, Vec3};
use loc3r_train::data::targets::{sqa3d_from_bev, SQA3D_BODY_FORWARD};
use serde::{Deserialize, Serialize};
use std::f64::consts::{PI, TAU};

/// Distance thresholds (metres) of Acc@0.5m and Acc@1.0m.
pub const POSITION_THRESHOLDS_M: [f64; 2] = [0.5, 1.0];
/// Angle thresholds (degrees) of Acc@15° and Acc@30°.
pub const ANGLE_THRESHOLDS_DEG: [f64; 2] = [15.0, 30.0];

/// Quaternion x and y components above this are not a rotation about z.
const QUATERNION_XY_TOLERANCE: f64 = 1e-6;

/// An agent pose in SQA3D's convention: position (metres, relative to the mesh's bounding-box
/// centre, world x and y) and yaw ψ (radians, in [−π, π], the quaternion's rotation about z).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pose2 {
    pub x: f64,
    pub y: f64,
    pub yaw: f64,
}

impl Pose2 {
    /// The pose of an SQA3D annotation: `position` `{x, y, z}` (z is ignored; it is always 0)
    /// and `rotation` `{_x, _y, _z, _w}`.
    pub fn from_sqa3d(position: [f64; 3], rotation_xyzw: [f64; 4]) -> Result<Pose2, LocalizationError> {
        if !position.iter().all(|v| v.is_finite()) {
            return Err(LocalizationError::NonFinitePosition(position));
        }
        Ok(Pose2 { x: position[0], y: position[1], yaw: sqa3d_yaw_from_quaternion(rotation_xyzw)? })
    }
}

/// Why an annotation or prediction cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LocalizationError {
    #[error("the quaternion {0:?} (x, y, z, w) has a non-finite component; check the annotation file")]
    NonFiniteQuaternion([f64; 4]),
    #[error("the quaternion {0:?} (x, y, z, w) is zero; it encodes no rotation, check the annotation file")]
    ZeroQuaternion([f64; 4]),
    #[error("the quaternion {0:?} (x, y, z, w) is not a rotation about z (|x| or |y| > 1e-6); SQA3D poses rotate about the up axis only, check the field order (x, y, z, w)")]
    NotAboutZ([f64; 4]),
    #[error("the position {0:?} has a non-finite component; check the annotation file")]
    NonFinitePosition([f64; 3]),
}

/// ψ of a quaternion about z, in [−π, π]: the z component of its rotation vector.
///
/// The quaternion is first put in the half-space w ≥ 0 (q and −q are the same rotation), so
/// ψ = 2·atan2(s·z, s·w) with s = −1 when w < 0, else +1; w = 0 gives ±π. The quaternion need
/// not be normalised.
pub fn sqa3d_yaw_from_quaternion(q_xyzw: [f64; 4]) -> Result<f64, LocalizationError> {
    let [x, y, z, w] = q_xyzw;
    if !q_xyzw.iter().all(|v| v.is_finite()) {
        return Err(LocalizationError::NonFiniteQuaternion(q_xyzw));
    }
    if x.abs() > QUATERNION_XY_TOLERANCE || y.abs() > QUATERNION_XY_TOLERANCE {
        return Err(LocalizationError::NotAboutZ(q_xyzw));
    }
    if z == 0.0 && w == 0.0 {
        return Err(LocalizationError::ZeroQuaternion(q_xyzw));
    }
    let s = if w < 0.0 { -1.0 } else { 1.0 };
    Ok(2.0 * (s * z).atan2(s * w))
}

/// Position error (metres): the smallest planar distance from `gt` to a prediction, computed as
/// `sqrt(dx² + dy²)` in that order (not `hypot`, whose rounding differs), so that distances
/// landing exactly on a threshold are decided as the reference scorer decides them.
/// Infinite when `preds` is empty.
pub fn position_error(gt: &Pose2, preds: &[Pose2]) -> f64 {
    preds
        .iter()
        .map(|p| {
            let (dx, dy) = (gt.x - p.x, gt.y - p.y);
            (dx * dx + dy * dy).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Angle error (degrees, in [0, 180]): the smallest wrap-around difference
/// `min(|Δψ|, 2π − |Δψ|)·180/π` between `gt` and a prediction. Yaws are expected in [−π, π]
/// (what [`sqa3d_yaw_from_quaternion`] and [`sqa3d_pose_from_bev`] give); one outside is wrapped
/// first, while one inside is used bit for bit. Infinite when `preds` is empty.
pub fn angle_error_deg(gt: &Pose2, preds: &[Pose2]) -> f64 {
    let g = into_pi_range(gt.yaw);
    preds
        .iter()
        .map(|p| {
            let d = (g - into_pi_range(p.yaw)).abs();
            d.min(TAU - d) * 180.0 / PI
        })
        .fold(f64::INFINITY, f64::min)
}

/// `a` unchanged when it lies in [−π, π], otherwise wrapped there.
fn into_pi_range(a: f64) -> f64 {
    if (-PI..=PI).contains(&a) {
        a
    } else {
        a.sin().atan2(a.cos())
    }
}

/// The errors of one sample that has at least one prediction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleErrors {
    /// [`position_error`], metres.
    pub position_m: f64,
    /// [`angle_error_deg`], degrees.
    pub angle_deg: f64,
}

impl SampleErrors {
    /// The errors of `preds` against `gt`; `None` when there is no prediction (a miss).
    pub fn of(gt: &Pose2, preds: &[Pose2]) -> Option<SampleErrors> {
        (!preds.is_empty()).then(|| SampleErrors { position_m: position_error(gt, preds), angle_deg: angle_error_deg(gt, preds) })
    }
}

/// The localisation scores of a test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalizationScores {
    /// Number of ground-truth samples (the denominator of every accuracy).
    pub n: usize,
    /// Samples without a prediction; they count as misses at every threshold.
    pub missing: usize,
    /// Percentage of samples with position error < 0.5 m.
    pub acc_0_5m: f64,
    /// Percentage of samples with position error < 1.0 m.
    pub acc_1_0m: f64,
    /// Percentage of samples with angle error < 15°.
    pub acc_15deg: f64,
    /// Percentage of samples with angle error < 30°.
    pub acc_30deg: f64,
    /// Mean position error (m) over the samples with a prediction; `None` when there are none.
    pub mean_position_error_m: Option<f64>,
    /// Median position error (m) over the samples with a prediction (mean of the two middle
    /// values for an even count).
    pub median_position_error_m: Option<f64>,
    /// Mean angle error (°) over the samples with a prediction.
    pub mean_angle_error_deg: Option<f64>,
    /// Median angle error (°) over the samples with a prediction.
    pub median_angle_error_deg: Option<f64>,
}

/// Scores per-sample errors, one entry per ground-truth sample (`None` = no prediction).
/// Accuracies are percentages of all samples with strict `<` thresholds; with no samples they
/// are 0.
pub fn score_localization(samples: &[Option<SampleErrors>]) -> LocalizationScores {
    let n = samples.len();
    let positions: Vec<f64> = samples.iter().flatten().map(|e| e.position_m).collect();
    let angles: Vec<f64> = samples.iter().flatten().map(|e| e.angle_deg).collect();
    // Percentage of all n samples (missing ones included) whose error is strictly below.
    let percent_below = |errors: &[f64], threshold: f64| {
        let hits = errors.iter().filter(|&&e| e < threshold).count();
        if n == 0 {
            0.0
        } else {
            hits as f64 * 100.0 / n as f64
        }
    };
    LocalizationScores {
        n,
        missing: n - positions.len(),
        acc_0_5m: percent_below(&positions, POSITION_THRESHOLDS_M[0]),
        acc_1_0m: percent_below(&positions, POSITION_THRESHOLDS_M[1]),
        acc_15deg: percent_below(&angles, ANGLE_THRESHOLDS_DEG[0]),
        acc_30deg: percent_below(&angles, ANGLE_THRESHOLDS_DEG[1]),
        mean_position_error_m: mean(&positions),
        median_position_error_m: median(positions),
        mean_angle_error_deg: mean(&angles),
        median_angle_error_deg: median(angles),
    }
}

pub(crate) fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// A Loc3R prediction — BEV position `xy` (metres; x right, y forward of the gravity-aligned
/// first sampled camera) and BEV yaw `theta` (radians, counter-clockwise from BEV +x) — as an
/// SQA3D pose in the scene whose mesh bounding-box centre is `bs_center` (raw ScanNet frame).
///
/// `frame` must be built from the camera-to-world pose of the video's first sampled frame with
/// z up, exactly as for the training targets. With α the heading of camera 0's optical axis this
/// is `X = c0x + x·sin α + y·cos α`, `Y = c0y − x·cos α + y·sin α`, position `(X, Y) − bs_center`,
/// and `ψ = wrap(θ + α − 3π/2)` (world heading θ + α − π/2, turned by π because SQA3D's body
/// faces −x).
pub fn sqa3d_pose_from_bev(xy: [f64; 2], theta: f64, frame: &BevFrame, bs_center: Vec3) -> Pose2 {
    let ([x, y], yaw) = sqa3d_from_bev(xy, theta, frame, bs_center, SQA3D_BODY_FORWARD);
    Pose2 { x, y, yaw }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loc3r_bundle::bev::angle_between;
    use std::f64::consts::FRAC_PI_2;

    const Z_UP: Vec3 = [0.0, 0.0, 1.0];

    /// A deterministic generator (SplitMix64) so statistical tests are reproducible.
    struct SplitMix(u64);

    impl SplitMix {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [lo, hi).
        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn quat_of_deg(psi_deg: f64) -> [f64; 4] {
        let (s, c) = (psi_deg.to_radians() / 2.0).sin_cos();
        [0.0, 0.0, s, c]
    }

    fn pose(x: f64, y: f64, psi_deg: f64) -> Pose2 {
        Pose2::from_sqa3d([x, y, 0.0], quat_of_deg(psi_deg)).unwrap()
    }

    /// A row-major camera-to-world pose from rotation rows and a centre.
    fn pose_from_rows(rows: [[f64; 3]; 3], c: Vec3) -> [[f64; 4]; 4] {
        let mut m = [[0.0, 0.0, 0.0, 1.0]; 4];
        for i in 0..3 {
            m[i] = [rows[i][0], rows[i][1], rows[i][2], c[i]];
        }
        m
    }

    /// A camera at `c` heading `yaw` about z (0 = looking along +x), pitched down by `pitch`
    /// and rolled by `roll` about its optical axis (OpenCV axes: x right, y down, z forward).
    fn tilted_camera(c: Vec3, yaw: f64, pitch: f64, roll: f64) -> [[f64; 4]; 4] {
        let f = [yaw.cos() * pitch.cos(), yaw.sin() * pitch.cos(), -pitch.sin()];
        let r0 = [yaw.sin(), -yaw.cos(), 0.0];
        let d0 = [f[1] * r0[2] - f[2] * r0[1], f[2] * r0[0] - f[0] * r0[2], f[0] * r0[1] - f[1] * r0[0]];
        let (s, k) = roll.sin_cos();
        let r: Vec3 = std::array::from_fn(|i| r0[i] * k + d0[i] * s);
        let d: Vec3 = std::array::from_fn(|i| d0[i] * k - r0[i] * s);
        pose_from_rows(std::array::from_fn(|i| [r[i], d[i], f[i]]), c)
    }

    #[test]
    fn quaternion_yaw_and_its_edge_cases() {
        let deg = |q| sqa3d_yaw_from_quaternion(q).unwrap().to_degrees();
        assert!((deg(quat_of_deg(10.0)) - 10.0).abs() < 1e-12);
        // w < 0: q and −q are one rotation; the canonical ψ stays in [−π, π].
        assert!((deg(quat_of_deg(190.0)) + 170.0).abs() < 1e-12);
        assert!((deg([0.0, 0.0, -0.9961946980917455, 0.08715574274765836]) + 170.0).abs() < 1e-9);
        assert!((deg([0.0, 0.0, 0.9961946980917455, -0.08715574274765836]) + 170.0).abs() < 1e-9, "−q is the same rotation");
        // w = 0 (either sign): ±π following z.
        assert_eq!(sqa3d_yaw_from_quaternion([0.0, 0.0, 1.0, 0.0]), Ok(PI));
        assert_eq!(sqa3d_yaw_from_quaternion([0.0, 0.0, -1.0, 0.0]), Ok(-PI));
        assert_eq!(sqa3d_yaw_from_quaternion([0.0, 0.0, 1.0, -0.0]), Ok(PI));
        assert_eq!(sqa3d_yaw_from_quaternion([0.0, 0.0, 0.0, -1.0]).map(f64::abs), Ok(0.0));
        // Unnormalised quaternions encode the same angle.
        assert!((deg([0.0, 0.0, 2.0 * 0.5f64.sin(), 2.0 * 0.5f64.cos()]) - 1f64.to_degrees()).abs() < 1e-12);
        assert!(sqa3d_yaw_from_quaternion([1e-7, -1e-7, 0.0, 1.0]).is_ok());
        assert!(matches!(sqa3d_yaw_from_quaternion([2e-6, 0.0, 0.0, 1.0]), Err(LocalizationError::NotAboutZ(_))));
        assert!(matches!(sqa3d_yaw_from_quaternion([0.0, -0.5, 0.0, 1.0]), Err(LocalizationError::NotAboutZ(_))));
        assert!(matches!(sqa3d_yaw_from_quaternion([0.0; 4]), Err(LocalizationError::ZeroQuaternion(_))));
        assert!(matches!(sqa3d_yaw_from_quaternion([0.0, 0.0, f64::NAN, 1.0]), Err(LocalizationError::NonFiniteQuaternion(_))));
        assert!(matches!(Pose2::from_sqa3d([f64::INFINITY, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]), Err(LocalizationError::NonFinitePosition(_))));
    }

    /// The hand-checked metric set: five samples, one missing.
    #[test]
    fn hand_checked_metric_set() {
        let rows: [(Pose2, Option<Pose2>, f64, f64); 5] = [
            (pose(0.0, 0.0, 10.0), Some(pose(0.5, 0.0, 24.0)), 0.5, 14.0),
            (pose(1.0, 1.0, 170.0), Some(pose(1.6, 1.8, -172.0)), 1.0, 18.0),
            (
                Pose2::from_sqa3d([2.0, -1.0, 0.0], [0.0, 0.0, 95f64.to_radians().sin(), 95f64.to_radians().cos()]).unwrap(),
                Some(pose(2.3, -1.3, 178.0)),
                0.3 * 2f64.sqrt(),
                12.0,
            ),
            (pose(0.0, 0.0, 0.0), Some(pose(0.6, 0.8, 200.0)), 1.0, 160.0),
            (pose(5.0, 5.0, -90.0), None, f64::NAN, f64::NAN),
        ];
        assert!((rows[2].0.yaw.to_degrees() + 170.0).abs() < 1e-9, "w < 0 ground truth");
        assert!((rows[3].1.unwrap().yaw.to_degrees() + 160.0).abs() < 1e-9, "w < 0 prediction");
        let mut samples = Vec::new();
        for (gt, pred, d, e) in rows {
            let errors = SampleErrors::of(&gt, pred.as_slice());
            if let Some(errors) = errors {
                assert!((errors.position_m - d).abs() < 1e-9, "{errors:?} vs d = {d}");
                assert!((errors.angle_deg - e).abs() < 1e-9, "{errors:?} vs e = {e}");
            } else {
                assert!(d.is_nan());
            }
            samples.push(errors);
        }
        // Rows 1, 2 and 4 sit on a threshold (up to rounding) and must not count.
        assert!(samples[0].unwrap().position_m == 0.5);
        let s = score_localization(&samples);
        assert_eq!((s.n, s.missing), (5, 1));
        assert!((s.acc_0_5m - 20.0).abs() < 1e-9, "{s:?}");
        assert!((s.acc_1_0m - 40.0).abs() < 1e-9, "{s:?}");
        assert!((s.acc_15deg - 40.0).abs() < 1e-9, "{s:?}");
        assert!((s.acc_30deg - 60.0).abs() < 1e-9, "{s:?}");
        let mean_d = (0.5 + 1.0 + 0.3 * 2f64.sqrt() + 1.0) / 4.0;
        assert!((s.mean_position_error_m.unwrap() - mean_d).abs() < 1e-9);
        assert!((s.median_position_error_m.unwrap() - 0.75).abs() < 1e-9);
        assert!((s.mean_angle_error_deg.unwrap() - 51.0).abs() < 1e-9);
        assert!((s.median_angle_error_deg.unwrap() - 16.0).abs() < 1e-9);
    }

    #[test]
    fn thresholds_are_strict() {
        let at = |position_m, angle_deg| Some(SampleErrors { position_m, angle_deg });
        let s = score_localization(&[at(0.5, 15.0), at(1.0, 30.0), at(0.5 - 1e-12, 15.0 - 1e-12)]);
        assert_eq!((s.acc_0_5m, s.acc_15deg), (100.0 / 3.0, 100.0 / 3.0));
        assert_eq!((s.acc_1_0m, s.acc_30deg), (200.0 / 3.0, 200.0 / 3.0));
        // Exactly 0.5 m away along an axis.
        assert_eq!(position_error(&pose(1.0, 2.0, 0.0), &[pose(1.5, 2.0, 0.0)]), 0.5);
    }

    #[test]
    fn the_best_of_several_predictions_counts_per_error() {
        let gt = pose(0.0, 0.0, 0.0);
        let preds = [pose(3.0, 4.0, 5.0), pose(0.3, 0.4, 90.0), pose(9.0, 9.0, -170.0)];
        assert!((position_error(&gt, &preds) - 0.5).abs() < 1e-12);
        assert!((angle_error_deg(&gt, &preds) - 5.0).abs() < 1e-9);
        assert_eq!(position_error(&gt, &[]), f64::INFINITY);
        assert_eq!(SampleErrors::of(&gt, &[]), None);
    }

    #[test]
    fn angle_error_wraps_around() {
        let e = |a: f64, b: f64| angle_error_deg(&Pose2 { x: 0.0, y: 0.0, yaw: a.to_radians() }, &[Pose2 { x: 0.0, y: 0.0, yaw: b.to_radians() }]);
        assert!((e(179.0, -179.0) - 2.0).abs() < 1e-9);
        assert!((e(180.0, -180.0)).abs() < 1e-9);
        assert!((e(90.0, -90.0) - 180.0).abs() < 1e-9);
        // A yaw outside [−π, π] is wrapped before differencing.
        assert!((e(0.0, 350.0) - 10.0).abs() < 1e-9);
        assert!((e(-720.0, 725.0) - 5.0).abs() < 1e-9);
    }

    /// Uniformly random yaw hits 15° and 30° with probability 30/360 and 60/360.
    #[test]
    fn random_yaw_gives_chance_level() {
        let mut rng = SplitMix(0);
        let samples: Vec<Option<SampleErrors>> = (0..200_000)
            .map(|_| {
                let gt = Pose2 { x: 0.0, y: 0.0, yaw: rng.uniform(-PI, PI) };
                SampleErrors::of(&gt, &[Pose2 { yaw: rng.uniform(-PI, PI), ..gt }])
            })
            .collect();
        let s = score_localization(&samples);
        assert!((s.acc_15deg - 100.0 / 12.0).abs() < 0.3, "{s:?}");
        assert!((s.acc_30deg - 100.0 / 6.0).abs() < 0.3, "{s:?}");
        assert!((s.mean_angle_error_deg.unwrap() - 90.0).abs() < 1.0, "{s:?}");
        assert_eq!(s.acc_0_5m, 100.0);
    }

    #[test]
    fn empty_and_all_missing_sets() {
        let s = score_localization(&[]);
        assert_eq!((s.n, s.missing, s.acc_0_5m, s.mean_position_error_m), (0, 0, 0.0, None));
        let s = score_localization(&[None, None]);
        assert_eq!((s.n, s.missing, s.acc_30deg, s.median_angle_error_deg), (2, 2, 0.0, None));
    }

    /// One hand-checked transform: camera 0 (rotation rows, centre), the mesh centre, a BEV
    /// prediction (x, y, θ in degrees) and the expected SQA3D pose (x, y, ψ in degrees).
    struct TransformCase {
        rows: [[f64; 3]; 3],
        c0: Vec3,
        bs: Vec3,
        bev: [f64; 3],
        sqa3d: [f64; 3],
    }

    #[test]
    fn hand_checked_transforms() {
        let cases = [
            // Level, looking along +x.
            TransformCase {
                rows: [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]],
                c0: [1.0, 2.0, 1.5],
                bs: [2.0, 1.0, 1.2],
                bev: [0.5, 2.0, 90.0],
                sqa3d: [1.0, 0.5, 180.0],
            },
            // Looking along +y, pitched 30° down.
            TransformCase {
                rows: [[1.0, 0.0, 0.0], [0.0, -0.5, 0.8660254], [0.0, -0.8660254, -0.5]],
                c0: [0.0, 0.0, 1.4],
                bs: [0.5, 0.5, 1.0],
                bev: [1.0, 3.0, 0.0],
                sqa3d: [0.5, 2.5, 180.0],
            },
            // Level, heading 30°.
            TransformCase {
                rows: [[0.5, 0.0, 0.8660254], [-0.8660254, 0.0, 0.5], [0.0, -1.0, 0.0]],
                c0: [0.0, 0.0, 1.5],
                bs: [0.0, 0.0, 0.0],
                bev: [2.0, 1.0, 45.0],
                sqa3d: [1.8660254, -1.2320508, 165.0],
            },
        ];
        for TransformCase { rows, c0, bs, bev: [bx, by, theta], sqa3d: [x, y, psi] } in &cases {
            let frame = BevFrame::from_camera0(&pose_from_rows(*rows, *c0), Z_UP).unwrap();
            let p = sqa3d_pose_from_bev([*bx, *by], theta.to_radians(), &frame, *bs);
            // The rotations and expectations are written to 7 decimals.
            assert!((p.x - x).abs() < 1e-7 && (p.y - y).abs() < 1e-7, "{p:?} vs ({x}, {y})");
            assert!(angle_between(p.yaw, psi.to_radians()) < 1e-7, "{p:?} vs ψ = {psi}°");
            assert!((-PI..=PI).contains(&p.yaw));
        }
        // The first case scored against ground truth (1.2, 0.5), ψ = 170°: 0.2 m and 10°.
        let frame = BevFrame::from_camera0(&pose_from_rows(cases[0].rows, cases[0].c0), Z_UP).unwrap();
        let pred = sqa3d_pose_from_bev([0.5, 2.0], FRAC_PI_2, &frame, cases[0].bs);
        let e = SampleErrors::of(&pose(1.2, 0.5, 170.0), &[pred]).unwrap();
        assert!((e.position_m - 0.2).abs() < 1e-9 && (e.angle_deg - 10.0).abs() < 1e-9, "{e:?}");
    }

    /// The BEV → SQA3D map equals its closed form on tilted first cameras:
    /// α = heading of camera 0's optical axis, X = c0x + x sin α + y cos α,
    /// Y = c0y − x cos α + y sin α, ψ = wrap(θ + α − 3π/2).
    #[test]
    fn bev_alignment_matches_the_closed_form() {
        let mut rng = SplitMix(7);
        for _ in 0..2000 {
            let c0 = [rng.uniform(-5.0, 5.0), rng.uniform(-5.0, 5.0), rng.uniform(0.5, 2.0)];
            let heading = rng.uniform(-PI, PI);
            let camera = tilted_camera(c0, heading, rng.uniform(-0.7, 0.7), rng.uniform(-0.3, 0.3));
            let bs = [rng.uniform(-3.0, 3.0), rng.uniform(-3.0, 3.0), rng.uniform(0.0, 2.0)];
            let (bx, by, theta) = (rng.uniform(-6.0, 6.0), rng.uniform(-6.0, 6.0), rng.uniform(-PI, PI));

            let frame = BevFrame::from_camera0(&camera, Z_UP).unwrap();
            let got = sqa3d_pose_from_bev([bx, by], theta, &frame, bs);

            let alpha = camera[1][2].atan2(camera[0][2]);
            assert!(angle_between(alpha, heading) < 1e-9);
            let (sa, ca) = alpha.sin_cos();
            let x = c0[0] + bx * sa + by * ca - bs[0];
            let y = c0[1] - bx * ca + by * sa - bs[1];
            let psi_raw = theta + alpha - 1.5 * PI;
            let psi = psi_raw.sin().atan2(psi_raw.cos());
            assert!((got.x - x).abs() < 1e-9 && (got.y - y).abs() < 1e-9, "{got:?} vs ({x}, {y})");
            assert!(angle_between(got.yaw, psi) < 1e-9, "{got:?} vs ψ = {psi}");
        }
    }

    /// A ground-truth SQA3D pose taken into BEV (as the training targets are) and back through
    /// the evaluation map scores zero error.
    #[test]
    fn oracle_round_trip_scores_zero() {
        use loc3r_train::data::targets::situation_target_sqa3d;
        let mut rng = SplitMix(11);
        let frame = BevFrame::from_camera0(&tilted_camera([1.0, -2.0, 1.4], 0.9, 0.35, 0.07), Z_UP).unwrap();
        let bs = [1.5, 0.5, 1.1];
        for _ in 0..200 {
            let q = quat_of_deg(rng.uniform(-400.0, 400.0));
            let gt = Pose2::from_sqa3d([rng.uniform(-4.0, 4.0), rng.uniform(-4.0, 4.0), 0.0], q).unwrap();
            let (xy, theta) = situation_target_sqa3d([gt.x, gt.y, 0.0], q, bs, &frame, SQA3D_BODY_FORWARD);
            let pred = sqa3d_pose_from_bev(xy, theta, &frame, bs);
            let e = SampleErrors::of(&gt, &[pred]).unwrap();
            assert!(e.position_m < 1e-9 && e.angle_deg < 1e-9, "{e:?}");
        }
    }

    #[test]
    fn scores_serialise_with_their_field_names() {
        let s = score_localization(&[Some(SampleErrors { position_m: 0.2, angle_deg: 3.0 }), None]);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["acc_0_5m"], 50.0);
        assert_eq!(v["missing"], 1);
        assert_eq!(v["median_angle_error_deg"], 3.0);
    }
}
