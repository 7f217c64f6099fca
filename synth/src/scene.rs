//! A synthetic room: a textured box `[0, W] × [0, D] × [0, H]` (z up, one corner at the origin)
//! with furniture on the floor and doors/windows on the walls, placed without overlap and clear
//! of the camera loop.

use crate::footprint::Footprint;
use crate::rng::Rng;
use crate::trajectory::LoopPath;
use crate::vocab::{class_weight_and_limit, Class, Shape, CLASSES, PALETTE};
use crate::SynthError;
use serde::Serialize;
use std::f64::consts::{FRAC_PI_2, TAU};

/// Minimum gap between two objects' footprints, and between an object and the camera loop.
pub const OBJECT_GAP: f64 = 0.3;
/// Placement tries per object before another class is tried for the slot.
const TRIES_PER_OBJECT: usize = 150;
/// Classes tried per slot before the slot is given up.
const CLASSES_PER_SLOT: usize = 4;

/// How many objects (doors and windows included) a room gets: uniform in `min..=max`. A room
/// that cannot fit `min` is an error; between `min` and `max` the sampler keeps what fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectCount {
    pub min: usize,
    pub max: usize,
}

impl Default for ObjectCount {
    fn default() -> Self {
        ObjectCount { min: 4, max: 10 }
    }
}

/// The look of one surface: base colour, checker cell size and contrast, noise seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Material {
    /// Linear-ish RGB in [0, 1].
    pub rgb: [f64; 3],
    /// Checker cell size (metres).
    pub checker: f64,
    /// Checker contrast (fraction of brightness).
    pub checker_contrast: f64,
    /// Value-noise contrast and base frequency (1/metres).
    pub noise_contrast: f64,
    pub noise_frequency: f64,
    pub noise_seed: u64,
}

/// One object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Object {
    pub id: usize,
    pub class: Class,
    pub colour: &'static str,
    pub rgb: [u8; 3],
    pub shape: Shape,
    /// Centre of the object's bounding box (world, metres).
    pub centre: [f64; 3],
    /// Full extents along local x, local y and z (metres).
    pub size: [f64; 3],
    /// Rotation about world z (radians); local x = (cos yaw, sin yaw).
    pub yaw: f64,
    #[serde(skip)]
    pub material: Material,
}

impl Object {
    pub fn footprint(&self) -> Footprint {
        Footprint {
            centre: [self.centre[0], self.centre[1]],
            half: [self.size[0] / 2.0, self.size[1] / 2.0],
            yaw: self.yaw,
            round: self.shape == Shape::Cylinder,
        }
    }

    /// "red chair": how text refers to the object.
    pub fn label(&self) -> String {
        format!("{} {}", self.colour, self.class.name())
    }
}

/// A room with its surfaces and objects.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Room {
    pub width: f64,
    pub depth: f64,
    pub height: f64,
    /// floor, ceiling, wall x=0, wall x=W, wall y=0, wall y=D.
    #[serde(skip)]
    pub surfaces: [Material; 6],
    pub objects: Vec<Object>,
}

impl Room {
    /// Samples a room. Fails when fewer than `count.min` objects fit.
    pub fn generate(rng: &mut Rng, count: ObjectCount) -> Result<Room, SynthError> {
        let width = rng.range(3.0, 8.0);
        let depth = rng.range(3.0, 8.0);
        let height = rng.range(2.4, 3.0);
        let surfaces = surface_materials(rng);
        let path = LoopPath::for_room(width, depth).samples(256);
        let target = count.min + rng.below(count.max - count.min + 1);
        let mut objects: Vec<Object> = Vec::new();
        'slots: for _ in 0..target {
            for _ in 0..CLASSES_PER_SLOT {
                let Some(class) = sample_class(rng, &objects) else { break 'slots };
                if let Some(o) = place(rng, class, width, depth, height, &objects, &path) {
                    objects.push(o);
                    continue 'slots;
                }
            }
        }
        if objects.len() < count.min {
            return Err(SynthError::ObjectsDoNotFit { requested: count.min, placed: objects.len(), width, depth });
        }
        for (i, o) in objects.iter_mut().enumerate() {
            o.id = i;
        }
        Ok(Room { width, depth, height, surfaces, objects })
    }

    /// Objects that share `o`'s colour and class (itself included).
    pub fn same_label(&self, o: &Object) -> usize {
        self.objects.iter().filter(|p| p.class == o.class && p.colour == o.colour).count()
    }

    pub fn count_of(&self, class: Class) -> usize {
        self.objects.iter().filter(|p| p.class == class).count()
    }
}

fn surface_materials(rng: &mut Rng) -> [Material; 6] {
    let floor_hue = rng.range(0.0, 1.0);
    let wall_hue = rng.range(0.0, 1.0);
    let mut material = |hue: f64, sat: f64, val: f64, checker: f64| Material {
        rgb: hsv(hue, sat, val),
        checker,
        checker_contrast: rng.range(0.05, 0.2),
        noise_contrast: rng.range(0.1, 0.3),
        noise_frequency: rng.range(1.5, 6.0),
        noise_seed: rng.next_u64(),
    };
    let floor = material(floor_hue, 0.45, 0.55, 0.5);
    let ceiling = material(wall_hue, 0.08, 0.9, 1.0);
    // Each wall its own hue near the room's wall hue, so the four walls are told apart.
    let walls: Vec<Material> = (0..4).map(|k| material(wall_hue + 0.08 * k as f64, 0.3, 0.78, 0.75)).collect();
    [floor, ceiling, walls[0], walls[1], walls[2], walls[3]]
}

/// HSV (all in [0, 1], hue wraps) to RGB.
fn hsv(h: f64, s: f64, v: f64) -> [f64; 3] {
    let h = (h.rem_euclid(1.0)) * 6.0;
    let i = h.floor();
    let f = h - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as u32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

fn sample_class(rng: &mut Rng, placed: &[Object]) -> Option<Class> {
    let open: Vec<(Class, u32)> = CLASSES
        .iter()
        .map(|&c| (c, class_weight_and_limit(c)))
        .filter(|&(c, (_, limit))| placed.iter().filter(|o| o.class == c).count() < limit)
        .map(|(c, (w, _))| (c, w))
        .collect();
    let total: u32 = open.iter().map(|&(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total as usize) as u32;
    for (c, w) in open {
        if r < w {
            return Some(c);
        }
        r -= w;
    }
    None
}

fn place(rng: &mut Rng, class: Class, width: f64, depth: f64, height: f64, placed: &[Object], path: &[[f64; 2]]) -> Option<Object> {
    let ranges = class.size_ranges();
    let mut size = [rng.range(ranges[0].0, ranges[0].1), rng.range(ranges[1].0, ranges[1].1), rng.range(ranges[2].0, ranges[2].1)];
    if class.shape() == Shape::Cylinder {
        size[1] = size[0];
    }
    let colour_choices = class.colours();
    // A fresh colour+class pair when possible, so most objects can be named uniquely.
    let mut colour = *rng.pick(colour_choices);
    for _ in 0..8 {
        if !placed.iter().any(|o| o.class == class && o.colour == PALETTE[colour].name) {
            break;
        }
        colour = *rng.pick(colour_choices);
    }
    let material = Material {
        rgb: PALETTE[colour].rgb.map(|v| v as f64 / 255.0),
        checker: rng.range(0.08, 0.3),
        checker_contrast: rng.range(0.03, 0.1),
        noise_contrast: rng.range(0.05, 0.15),
        noise_frequency: rng.range(4.0, 12.0),
        noise_seed: rng.next_u64(),
    };
    for _ in 0..TRIES_PER_OBJECT {
        let (centre, yaw) = if class.on_wall() {
            // Along one wall, 0.2 m from the corners; the box pokes 0.06 m into the room.
            let wall = rng.below(4);
            let length = if wall < 2 { depth } else { width };
            if length < size[0] + 0.4 {
                continue;
            }
            let u = rng.range(0.2 + size[0] / 2.0, length - 0.2 - size[0] / 2.0);
            let base = if class == Class::Window { rng.range(0.8, 1.0) } else { 0.0 };
            let z = (base + size[2] / 2.0).min(height - 0.1 - size[2] / 2.0);
            let inset = size[1] / 2.0 - 0.02;
            match wall {
                0 => ([inset, u, z], FRAC_PI_2),
                1 => ([width - inset, u, z], FRAC_PI_2),
                2 => ([u, inset, z], 0.0),
                _ => ([u, depth - inset, z], 0.0),
            }
        } else {
            let yaw = if rng.chance(0.6) { (rng.below(4) as f64) * FRAC_PI_2 + rng.range(-0.1, 0.1) } else { rng.range(0.0, TAU) };
            ([rng.range(0.0, width), rng.range(0.0, depth), size[2] / 2.0], yaw)
        };
        let candidate =
            Object { id: placed.len(), class, colour: PALETTE[colour].name, rgb: PALETTE[colour].rgb, shape: class.shape(), centre, size, yaw, material };
        let fp = candidate.footprint();
        let fits_room = if class.on_wall() { fp.inside_room(width, depth, -0.05) } else { fp.inside_room(width, depth, 0.03) };
        if !fits_room || placed.iter().any(|o| o.footprint().gap_to(&fp) < OBJECT_GAP) {
            continue;
        }
        if !class.on_wall() && path.iter().any(|&p| fp.distance_to(p) < OBJECT_GAP) {
            continue;
        }
        return Some(candidate);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_respect_gaps_and_bounds() {
        for seed in 0..20 {
            let room = Room::generate(&mut Rng::new(seed), ObjectCount::default()).unwrap();
            assert!((4..=10).contains(&room.objects.len()));
            assert!((3.0..8.0).contains(&room.width) && (2.4..3.0).contains(&room.height));
            for (i, a) in room.objects.iter().enumerate() {
                for b in &room.objects[i + 1..] {
                    assert!(a.footprint().gap_to(&b.footprint()) >= OBJECT_GAP - 1e-12);
                }
                assert!(a.centre[2] + a.size[2] / 2.0 < room.height);
            }
        }
    }

    #[test]
    fn too_many_objects_is_an_error() {
        let err = Room::generate(&mut Rng::new(1), ObjectCount { min: 40, max: 40 }).unwrap_err();
        assert!(matches!(err, SynthError::ObjectsDoNotFit { requested: 40, .. }), "{err}");
    }
}
