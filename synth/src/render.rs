//! The CPU ray caster: one ray per pixel through its centre, analytic intersections with the
//! room box (seen from inside), z-rotated boxes and vertical cylinders; Lambert shading with one
//! directional light plus ambient. Depth is z-depth (distance along the optical axis).

use crate::camera::Intrinsics;
use crate::rng::{derive, Rng};
use crate::scene::{Material, Room};
use crate::texture::brightness;
use crate::trajectory::Pose;
use crate::vocab::Shape;
use rayon::prelude::*;

/// Direction the light comes from (unit, above the room).
const TO_LIGHT: [f64; 3] = [0.408_248_290_463_863, 0.272_165_526_975_908_7, 0.871_779_788_708_134_7];
const AMBIENT: f64 = 0.5;
const DIFFUSE: f64 = 0.6;
/// Fraction of depth pixels dropped by `--depth-noise`.
const HOLE_RATE: f64 = 0.01;

/// A rendered frame: RGB8 row-major, and depth in millimetres (0 = invalid).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub rgb: Vec<u8>,
    pub depth_mm: Vec<u16>,
}

/// Depth noise: Gaussian with σ = 2 mm·(d / 1 m)² and 1 % holes, from its own seed.
#[derive(Debug, Clone, Copy)]
pub struct DepthNoise {
    pub seed: u64,
}

struct Hit<'a> {
    t: f64,
    normal: [f64; 3],
    uv: [f64; 2],
    material: &'a Material,
}

/// An object in the form the inner loop wants.
struct Solid<'a> {
    centre: [f64; 3],
    half: [f64; 3],
    cos: f64,
    sin: f64,
    cylinder: bool,
    material: &'a Material,
}

fn solids(room: &Room) -> Vec<Solid<'_>> {
    room.objects
        .iter()
        .map(|o| Solid {
            centre: o.centre,
            half: [o.size[0] / 2.0, o.size[1] / 2.0, o.size[2] / 2.0],
            cos: libm::cos(o.yaw),
            sin: libm::sin(o.yaw),
            cylinder: o.shape == Shape::Cylinder,
            material: &o.material,
        })
        .collect()
}

/// Renders `room` seen by a camera with camera-to-world `pose`.
pub fn render(room: &Room, pose: &Pose, intr: &Intrinsics, noise: Option<DepthNoise>) -> Frame {
    let solids = solids(room);
    let (w, h) = (intr.width, intr.height);
    let mut rgb = vec![0u8; w * h * 3];
    let mut depth = vec![0u16; w * h];
    let origin = [pose[0][3], pose[1][3], pose[2][3]];
    rgb.par_chunks_mut(w * 3).zip(depth.par_chunks_mut(w)).enumerate().for_each(|(v, (rgb_row, depth_row))| {
        let b = (v as f64 - intr.cy) / intr.fy;
        let mut rng = noise.map(|n| Rng::new(derive(n.seed, v as u64)));
        for u in 0..w {
            let a = (u as f64 - intr.cx) / intr.fx;
            // Camera-frame (a, b, 1) in world axes; its parameter t is the z-depth.
            let dir =
                [pose[0][0] * a + pose[0][1] * b + pose[0][2], pose[1][0] * a + pose[1][1] * b + pose[1][2], pose[2][0] * a + pose[2][1] * b + pose[2][2]];
            let Some(hit) = cast(room, &solids, origin, dir) else { continue };
            let colour = shade(&hit);
            rgb_row[u * 3..u * 3 + 3].copy_from_slice(&colour);
            let mut d_mm = hit.t * 1000.0;
            if let Some(r) = rng.as_mut() {
                let hole = r.chance(HOLE_RATE);
                let n = r.gauss();
                if hole {
                    continue;
                }
                let d_m = hit.t;
                d_mm += n * 2.0 * d_m * d_m;
            }
            depth_row[u] = d_mm.round().clamp(1.0, u16::MAX as f64) as u16;
        }
    });
    Frame { rgb, depth_mm: depth }
}

/// The world point the camera sees at (sub-)pixel `(u, v)` (pixel centres at integers, as the
/// intrinsics), and its z-depth; what the renderer writes for pixel centres. For tests of
/// anything computed from the rendered depth.
pub fn hit_point(room: &Room, pose: &Pose, intr: &Intrinsics, u: f64, v: f64) -> Option<([f64; 3], f64)> {
    let solids: Vec<Solid> = solids(room);
    let (a, b) = ((u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy);
    let dir = [pose[0][0] * a + pose[0][1] * b + pose[0][2], pose[1][0] * a + pose[1][1] * b + pose[1][2], pose[2][0] * a + pose[2][1] * b + pose[2][2]];
    let origin = [pose[0][3], pose[1][3], pose[2][3]];
    cast(room, &solids, origin, dir).map(|hit| ([origin[0] + hit.t * dir[0], origin[1] + hit.t * dir[1], origin[2] + hit.t * dir[2]], hit.t))
}

fn shade(hit: &Hit) -> [u8; 3] {
    let lambert = (hit.normal[0] * TO_LIGHT[0] + hit.normal[1] * TO_LIGHT[1] + hit.normal[2] * TO_LIGHT[2]).max(0.0);
    let k = brightness(hit.material, hit.uv) * (AMBIENT + DIFFUSE * lambert);
    hit.material.rgb.map(|c| ((c * k).clamp(0.0, 1.0) * 255.0).round() as u8)
}

/// The nearest hit along `origin + t·dir`, t > 0.
fn cast<'a>(room: &'a Room, solids: &'a [Solid<'a>], origin: [f64; 3], dir: [f64; 3]) -> Option<Hit<'a>> {
    let mut best = room_hit(room, origin, dir);
    for s in solids {
        let limit = best.as_ref().map_or(f64::INFINITY, |h| h.t);
        let hit = if s.cylinder { cylinder_hit(s, origin, dir, limit) } else { box_hit(s, origin, dir, limit) };
        if hit.is_some() {
            best = hit;
        }
    }
    best
}

/// The room box from inside: the first wall, floor or ceiling the ray leaves through.
fn room_hit(room: &Room, o: [f64; 3], d: [f64; 3]) -> Option<Hit<'_>> {
    let bounds = [room.width, room.depth, room.height];
    let mut best: Option<(f64, usize, f64)> = None; // (t, axis, inward normal sign)
    for axis in 0..3 {
        let (t, sign) = if d[axis] > 1e-15 {
            ((bounds[axis] - o[axis]) / d[axis], -1.0)
        } else if d[axis] < -1e-15 {
            (-o[axis] / d[axis], 1.0)
        } else {
            continue;
        };
        if t > 0.0 && best.is_none_or(|b| t < b.0) {
            best = Some((t, axis, sign));
        }
    }
    let (t, axis, sign) = best?;
    let p = [o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2]];
    let mut normal = [0.0; 3];
    normal[axis] = sign;
    let (surface, uv) = match (axis, sign > 0.0) {
        (2, true) => (0, [p[0], p[1]]),
        (2, false) => (1, [p[0], p[1]]),
        (0, true) => (2, [p[1], p[2]]),
        (0, false) => (3, [p[1], p[2]]),
        (1, true) => (4, [p[0], p[2]]),
        _ => (5, [p[0], p[2]]),
    };
    Some(Hit { t, normal, uv, material: &room.surfaces[surface] })
}

/// World vector to the solid's local frame (rotation by −yaw about z).
fn to_local(s: &Solid, v: [f64; 3]) -> [f64; 3] {
    [s.cos * v[0] + s.sin * v[1], -s.sin * v[0] + s.cos * v[1], v[2]]
}

fn to_world(s: &Solid, v: [f64; 3]) -> [f64; 3] {
    [s.cos * v[0] - s.sin * v[1], s.sin * v[0] + s.cos * v[1], v[2]]
}

fn box_hit<'a>(s: &Solid<'a>, o: [f64; 3], d: [f64; 3], limit: f64) -> Option<Hit<'a>> {
    let ol = to_local(s, [o[0] - s.centre[0], o[1] - s.centre[1], o[2] - s.centre[2]]);
    let dl = to_local(s, d);
    let (mut near, mut far) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut near_axis = 0;
    for axis in 0..3 {
        if dl[axis].abs() < 1e-15 {
            if ol[axis].abs() > s.half[axis] {
                return None;
            }
            continue;
        }
        let inv = 1.0 / dl[axis];
        let (t1, t2) = ((-s.half[axis] - ol[axis]) * inv, (s.half[axis] - ol[axis]) * inv);
        let (lo, hi) = if t1 < t2 { (t1, t2) } else { (t2, t1) };
        if lo > near {
            near = lo;
            near_axis = axis;
        }
        far = far.min(hi);
        if near > far || far <= 0.0 || near >= limit {
            return None;
        }
    }
    if near <= 0.0 {
        return None; // the camera is inside the box: placement keeps this from happening
    }
    let mut nl = [0.0; 3];
    nl[near_axis] = -dl[near_axis].signum();
    let p = [ol[0] + near * dl[0], ol[1] + near * dl[1], ol[2] + near * dl[2]];
    let uv = match near_axis {
        0 => [p[1], p[2]],
        1 => [p[0], p[2]],
        _ => [p[0], p[1]],
    };
    Some(Hit { t: near, normal: to_world(s, nl), uv, material: s.material })
}

fn cylinder_hit<'a>(s: &Solid<'a>, o: [f64; 3], d: [f64; 3], limit: f64) -> Option<Hit<'a>> {
    let (r, hz) = (s.half[0], s.half[2]);
    let ol = [o[0] - s.centre[0], o[1] - s.centre[1], o[2] - s.centre[2]];
    let a = d[0] * d[0] + d[1] * d[1];
    let mut best: Option<Hit<'a>> = None;
    if a > 1e-18 {
        let b = ol[0] * d[0] + ol[1] * d[1];
        let c = ol[0] * ol[0] + ol[1] * ol[1] - r * r;
        let disc = b * b - a * c;
        if disc >= 0.0 {
            let t = (-b - disc.sqrt()) / a;
            let z = ol[2] + t * d[2];
            if t > 0.0 && t < limit && z.abs() <= hz {
                let (x, y) = (ol[0] + t * d[0], ol[1] + t * d[1]);
                let angle = libm::atan2(y, x);
                best = Some(Hit { t, normal: [x / r, y / r, 0.0], uv: [angle * r, z], material: s.material });
            }
        }
    }
    // Top cap (the bottom one stands on the floor).
    if d[2] < 0.0 {
        let t = (hz - ol[2]) / d[2];
        let (x, y) = (ol[0] + t * d[0], ol[1] + t * d[1]);
        if t > 0.0 && t < best.as_ref().map_or(limit, |h| h.t) && x * x + y * y <= r * r {
            best = Some(Hit { t, normal: [0.0, 0.0, 1.0], uv: [x, y], material: s.material });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::Room;
    use crate::trajectory::look_pose;

    fn empty_room(width: f64, depth: f64, height: f64) -> Room {
        let m = Material { rgb: [0.5; 3], checker: 0.5, checker_contrast: 0.1, noise_contrast: 0.1, noise_frequency: 2.0, noise_seed: 1 };
        Room { width, depth, height, surfaces: [m; 6], objects: Vec::new() }
    }

    #[test]
    fn fronto_parallel_wall_has_constant_depth() {
        let room = empty_room(6.0, 20.0, 100.0); // side walls, floor and ceiling out of view
        let intr = Intrinsics::new(64, 48);
        // Camera at x = 1.2345 looking along +x at the wall x = 6: every pixel sees it at
        // z-depth 4.7655 m.
        let pose = look_pose([1.2345, 10.0, 50.0], 0.0, 0.0, 0.0);
        let frame = render(&room, &pose, &intr, None);
        assert!(frame.depth_mm.iter().all(|&d| d == 4766 || d == 4765), "{:?}", &frame.depth_mm[..8]);
        let expected = (6.0 - 1.2345) * 1000.0;
        assert!(frame.depth_mm.iter().all(|&d| (d as f64 - expected).abs() <= 0.5 + 1e-9));
    }

    #[test]
    fn depth_noise_has_the_documented_spread_and_holes() {
        let room = empty_room(6.0, 20.0, 100.0);
        let intr = Intrinsics::new(200, 150);
        let pose = look_pose([3.0, 10.0, 50.0], 0.0, 0.0, 0.0); // wall at z-depth 3 m
        let frame = render(&room, &pose, &intr, Some(DepthNoise { seed: 5 }));
        let valid: Vec<f64> = frame.depth_mm.iter().filter(|&&d| d != 0).map(|&d| d as f64 - 3000.0).collect();
        let holes = 1.0 - valid.len() as f64 / frame.depth_mm.len() as f64;
        assert!((0.007..0.013).contains(&holes), "hole rate {holes}");
        let mean = valid.iter().sum::<f64>() / valid.len() as f64;
        let std = (valid.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / valid.len() as f64).sqrt();
        // σ = 2 mm·3² = 18 mm (plus rounding to whole millimetres).
        assert!(mean.abs() < 0.5 && (std - 18.0).abs() < 0.6, "mean {mean} std {std}");
    }

    #[test]
    fn slanted_floor_matches_analytic_z_depth() {
        let room = empty_room(1000.0, 1000.0, 50.0);
        let intr = Intrinsics::new(80, 60);
        let (h, pitch) = (1.5, -30f64.to_radians());
        let pose = look_pose([500.0, 500.0, h], 0.3, pitch, 0.0);
        let frame = render(&room, &pose, &intr, None);
        let mut checked = 0;
        for v in 0..intr.height {
            for u in 0..intr.width {
                // Ray (a, b, 1) in the camera frame; with no roll, image x stays horizontal, image
                // down has world z −cos(pitch) and the optical axis sin(pitch).
                let b = (v as f64 - intr.cy) / intr.fy;
                let dz = -b * pitch.cos() + pitch.sin();
                if dz < -1e-3 {
                    let z_depth = h / -dz;
                    if z_depth < 60.0 {
                        let got = frame.depth_mm[v * intr.width + u] as f64 / 1000.0;
                        assert!((got - z_depth).abs() <= 0.01 * z_depth, "({u},{v}) {got} vs {z_depth}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000);
    }
}
