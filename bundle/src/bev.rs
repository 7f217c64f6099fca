//! The bird's-eye-view (BEV) frame every reported pose lives in (docs/heads.md), and the maps
//! between it and a dataset's world frame.
//!
//! The frame is anchored at the first sampled frame of a video (always frame 0 of the video,
//! since uniform sampling pins the first index to 0) and made gravity-aligned:
//! - origin: camera 0's centre `c0`, projected along gravity (height is dropped);
//! - `forward` (BEV +y): camera 0's optical axis projected onto the horizontal plane, so the
//!   heading is kept and pitch and roll are removed;
//! - `right` (BEV +x): `forward × up`, i.e. to the right of camera 0;
//! - yaw: `θ = atan2(forward·d, right·d)` for a world direction `d`, counter-clockwise seen from
//!   above; `θ = 90°` is facing like camera 0.
//!
//! When camera 0 looks (almost) straight up or down its optical axis has no usable horizontal
//! part; then the image's up direction projected on the floor plays the role of forward.
//!
//! Training targets (BEV ground truth of visual tokens, situation poses), synthetic scenes and
//! evaluation all go through this one type, so they cannot disagree on the convention.

/// A 3-vector in f64.
pub type Vec3 = [f64; 3];

/// Above this |cos| between camera 0's optical axis and the up vector, the axis is treated as
/// vertical and the image-up direction gives the heading.
const VERTICAL_AXIS_COS: f64 = 0.995;

/// The gravity-aligned BEV frame of one video, expressed in its world frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BevFrame {
    /// Camera 0's centre in world coordinates.
    pub origin: Vec3,
    /// BEV +x (unit, horizontal).
    pub right: Vec3,
    /// BEV +y (unit, horizontal).
    pub forward: Vec3,
    /// World up (unit).
    pub up: Vec3,
}

/// Why a frame cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BevError {
    #[error("the camera-0 pose is not finite (ScanNet marks invalid poses with -inf); anchor the video at a frame with a valid pose")]
    NonFinitePose,
    #[error("the up vector {0:?} has no length; give a unit up direction of the world frame")]
    ZeroUp(Vec3),
    #[error("the camera-0 rotation is degenerate (an axis has no length); the pose file is not a rigid transform")]
    DegenerateRotation,
}

impl BevFrame {
    /// The frame of a video whose first sampled camera has camera-to-world pose `pose`
    /// (row-major 4×4, OpenCV camera axes: x right, y down, z forward) in a world whose up
    /// direction is `up`.
    pub fn from_camera0(pose: &[[f64; 4]; 4], up: Vec3) -> Result<BevFrame, BevError> {
        if pose.iter().flatten().any(|v| !v.is_finite()) {
            return Err(BevError::NonFinitePose);
        }
        let up = normalize(up).ok_or(BevError::ZeroUp(up))?;
        let column = |j: usize| [pose[0][j], pose[1][j], pose[2][j]];
        let optical_axis = normalize(column(2)).ok_or(BevError::DegenerateRotation)?;
        let heading = if dot(optical_axis, up).abs() > VERTICAL_AXIS_COS {
            let image_up = normalize(scale(column(1), -1.0)).ok_or(BevError::DegenerateRotation)?;
            horizontal(image_up, up)
        } else {
            horizontal(optical_axis, up)
        };
        let forward = normalize(heading).ok_or(BevError::DegenerateRotation)?;
        let right = cross(forward, up);
        Ok(BevFrame { origin: column(3), right, forward, up })
    }

    /// BEV coordinates (metres) of a world point; its height is dropped.
    pub fn point_to_bev(&self, p: Vec3) -> [f64; 2] {
        let d = sub(p, self.origin);
        [dot(self.right, d), dot(self.forward, d)]
    }

    /// BEV yaw (radians, in (−π, π]) of a world direction.
    pub fn yaw_of(&self, direction: Vec3) -> f64 {
        wrap_pi(dot(self.forward, direction).atan2(dot(self.right, direction)))
    }

    /// The world point at BEV `(x, y)` on camera 0's horizontal plane (the evaluation inverse:
    /// compare it with ground truth in the world's horizontal plane).
    pub fn bev_to_point(&self, xy: [f64; 2]) -> Vec3 {
        add(self.origin, add(scale(self.right, xy[0]), scale(self.forward, xy[1])))
    }

    /// The horizontal world direction of BEV yaw `theta` (radians).
    pub fn yaw_to_direction(&self, theta: f64) -> Vec3 {
        add(scale(self.right, theta.cos()), scale(self.forward, theta.sin()))
    }
}

/// Heading (radians, in (−π, π]) of a world direction about the world z axis: `atan2(d.y, d.x)`.
/// For z-up worlds (ScanNet, synthetic rooms) this is the angle a z-rotation quaternion encodes.
pub fn heading_about_z(direction: Vec3) -> f64 {
    wrap_pi(direction[1].atan2(direction[0]))
}

/// `a` wrapped to (−π, π].
pub fn wrap_pi(a: f64) -> f64 {
    let two_pi = std::f64::consts::TAU;
    let mut w = a.rem_euclid(two_pi);
    if w > std::f64::consts::PI {
        w -= two_pi;
    }
    w
}

/// The smaller angle between two angles (radians), in [0, π].
pub fn angle_between(a: f64, b: f64) -> f64 {
    wrap_pi(a - b).abs()
}

/// A camera-to-world transform applied to a camera-frame point.
pub fn transform_point(pose: &[[f64; 4]; 4], p: Vec3) -> Vec3 {
    let mut out = [0.0; 3];
    for (i, o) in out.iter_mut().enumerate() {
        *o = pose[i][0] * p[0] + pose[i][1] * p[1] + pose[i][2] * p[2] + pose[i][3];
    }
    out
}

fn horizontal(v: Vec3, up: Vec3) -> Vec3 {
    sub(v, scale(up, dot(v, up)))
}

pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

fn scale(a: Vec3, s: f64) -> Vec3 {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// `v / |v|`, or `None` for a (near-)zero or non-finite vector.
pub fn normalize(v: Vec3) -> Option<Vec3> {
    let n = dot(v, v).sqrt();
    (n.is_finite() && n > 1e-12).then(|| scale(v, 1.0 / n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z_UP: Vec3 = [0.0, 0.0, 1.0];

    /// Camera-to-world pose of a camera at `c` with heading `yaw` (about world z, 0 = looking
    /// along +x), pitched down by `pitch` and rolled by `roll` (radians).
    fn camera(c: Vec3, yaw: f64, pitch: f64, roll: f64) -> [[f64; 4]; 4] {
        let fwd = [yaw.cos() * pitch.cos(), yaw.sin() * pitch.cos(), -pitch.sin()];
        let right0 = normalize(cross(fwd, Z_UP)).unwrap();
        let down0 = cross(fwd, right0);
        let (s, k) = roll.sin_cos();
        let right = add(scale(right0, k), scale(down0, s));
        let down = cross(fwd, right);
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            m[i] = [right[i], down[i], fwd[i], c[i]];
        }
        m[3] = [0.0, 0.0, 0.0, 1.0];
        m
    }

    #[test]
    fn level_camera_sees_its_optical_axis_as_forward() {
        let f = BevFrame::from_camera0(&camera([1.0, 2.0, 1.5], 0.0, 0.0, 0.0), Z_UP).unwrap();
        // Looking along world +x: BEV forward = +x, right = −y.
        assert_eq!(f.point_to_bev([3.0, 2.0, 0.0]), [0.0, 2.0]);
        let b = f.point_to_bev([1.0, 1.0, 7.0]);
        assert!((b[0] - 1.0).abs() < 1e-12 && b[1].abs() < 1e-12);
        assert!((f.yaw_of([1.0, 0.0, 0.0]) - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        assert!(f.yaw_of([0.0, -1.0, 0.0]).abs() < 1e-12);
    }

    #[test]
    fn pitch_and_roll_do_not_change_the_frame() {
        let level = BevFrame::from_camera0(&camera([0.5, -1.0, 1.2], 0.7, 0.0, 0.0), Z_UP).unwrap();
        let tilted = BevFrame::from_camera0(&camera([0.5, -1.0, 1.2], 0.7, 0.3, 0.05), Z_UP).unwrap();
        for (a, b) in [(level.right, tilted.right), (level.forward, tilted.forward)] {
            assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn round_trip_point_and_yaw() {
        let f = BevFrame::from_camera0(&camera([2.0, 3.0, 1.4], -2.1, 0.2, -0.03), Z_UP).unwrap();
        for (p, yaw) in [([0.3, 4.0, 0.0], 0.1), ([5.0, -1.0, 0.0], 3.0), ([2.0, 3.0, 0.0], -1.7)] {
            let b = f.point_to_bev(p);
            let back = f.bev_to_point(b);
            assert!((back[0] - p[0]).abs() < 1e-12 && (back[1] - p[1]).abs() < 1e-12);
            let d = [f64::cos(yaw), f64::sin(yaw), 0.0];
            let theta = f.yaw_of(d);
            assert!(angle_between(heading_about_z(f.yaw_to_direction(theta)), yaw) < 1e-12);
        }
    }

    #[test]
    fn vertical_camera_uses_image_up() {
        let f = BevFrame::from_camera0(&camera([0.0, 0.0, 2.0], 0.4, std::f64::consts::FRAC_PI_2 - 1e-4, 0.0), Z_UP).unwrap();
        assert!(dot(f.forward, f.up).abs() < 1e-12 && dot(f.right, f.forward).abs() < 1e-12);
        assert!((dot(cross(f.right, f.forward), f.up) - 1.0).abs() < 1e-12, "right-handed (x, y, up)");
    }

    #[test]
    fn bad_poses_are_errors() {
        let mut p = camera([0.0; 3], 0.0, 0.0, 0.0);
        p[0][0] = f64::NEG_INFINITY;
        assert_eq!(BevFrame::from_camera0(&p, Z_UP), Err(BevError::NonFinitePose));
        assert!(matches!(BevFrame::from_camera0(&camera([0.0; 3], 0.0, 0.0, 0.0), [0.0; 3]), Err(BevError::ZeroUp(_))));
    }

    #[test]
    fn wrap_is_half_open() {
        assert_eq!(wrap_pi(std::f64::consts::PI), std::f64::consts::PI);
        assert!((wrap_pi(-std::f64::consts::PI) - std::f64::consts::PI).abs() < 1e-12);
        assert!((angle_between(3.1, -3.1) - (std::f64::consts::TAU - 6.2)).abs() < 1e-12);
    }
}
