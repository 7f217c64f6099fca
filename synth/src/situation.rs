//! Situations: an agent pose on free floor and a sentence that pins it down.
//!
//! Every sentence names uniquely described objects ("the <colour> <class>") and states
//! constraints a reader can check against the room: standing 0.4–1.0 m from an anchor's
//! footprint, facing (or turned away from) an object, another object on the left/right, or
//! standing between two objects. A candidate is kept only when the set of floor positions that
//! satisfy its sentence (its locus, on a 0.1 m grid) lies on average within
//! `MAX_LOCUS_MEAN_DISTANCE` of the true position, so the text + room recover the position.

use crate::rng::Rng;
use crate::scene::{Object, Room};
use loc3r_bundle::bev::wrap_pi;
use std::f64::consts::PI;

/// Distance band between the agent and an anchor object's footprint (metres).
pub const ANCHOR_DISTANCE: (f64, f64) = (0.4, 1.0);
/// Clearance from every footprint and from the walls (metres).
pub const OBJECT_CLEARANCE: f64 = 0.3;
pub const WALL_CLEARANCE: f64 = 0.4;
/// Facing jitter (degrees).
pub const MAX_JITTER_DEG: f64 = 10.0;
/// Angular margin (degrees) the true pose keeps from sector boundaries the sentence relies on.
pub const SECTOR_MARGIN_DEG: f64 = 10.0;
/// Mean distance (metres) from the true position to the positions the sentence allows.
pub const MAX_LOCUS_MEAN_DISTANCE: f64 = 0.5;
/// "Between A and B": the angle A–agent–B is at least this (degrees).
const BETWEEN_MIN_ANGLE_DEG: f64 = 120.0;
const LOCUS_GRID: f64 = 0.1;

/// Egocentric sector of a bearing `β` (radians, counter-clockwise positive, z up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sector {
    Front,
    Left,
    Right,
    Behind,
}

impl Sector {
    /// front |β| < 45°, left 45°..135°, right −135°..−45°, behind otherwise.
    pub fn of(bearing: f64) -> Sector {
        let deg = bearing.to_degrees();
        if deg.abs() < 45.0 {
            Sector::Front
        } else if (45.0..=135.0).contains(&deg) {
            Sector::Left
        } else if (-135.0..=-45.0).contains(&deg) {
            Sector::Right
        } else {
            Sector::Behind
        }
    }

    /// Degrees from the bearing to the nearest sector boundary.
    pub fn margin(bearing: f64) -> f64 {
        let deg = bearing.to_degrees().abs();
        [45.0, 135.0].iter().map(|b| (deg - b).abs()).fold(f64::INFINITY, f64::min)
    }

    fn word(self) -> &'static str {
        match self {
            Sector::Front => "front",
            Sector::Left => "left",
            Sector::Right => "right",
            Sector::Behind => "back",
        }
    }
}

pub fn heading_to(from: [f64; 2], to: [f64; 3]) -> f64 {
    libm::atan2(to[1] - from[1], to[0] - from[0])
}

pub fn distance_to(from: [f64; 2], to: [f64; 3]) -> f64 {
    libm::hypot(to[0] - from[0], to[1] - from[1])
}

/// Bearing of an object's centre seen from `position` with `heading`.
pub fn bearing(position: [f64; 2], heading: f64, o: &Object) -> f64 {
    wrap_pi(heading_to(position, o.centre) - heading)
}

/// Where the agent is and what the sentence says.
#[derive(Debug, Clone, PartialEq)]
pub struct Situation {
    /// World floor position (metres).
    pub position: [f64; 2],
    /// World heading about z (radians, atan2 of the facing direction).
    pub heading: f64,
    pub text: String,
    /// Paraphrases of the same situation.
    pub alternatives: Vec<String>,
    /// Objects the situation names.
    pub object_ids: Vec<usize>,
    /// What the sentence states, checkable against the room.
    pub constraints: Constraints,
}

/// How the sentence fixes the facing direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Facing {
    Toward(usize),
    AwayFrom(usize),
}

/// The checkable content of a situation sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraints {
    /// Objects the agent stands 0.4–1.0 m from.
    pub near: Vec<usize>,
    pub facing: Facing,
    /// An object in a named egocentric sector.
    pub side: Option<(usize, Sector)>,
    /// Standing between two objects.
    pub between: Option<(usize, usize)>,
}

/// Free floor: clear of every footprint and of the walls.
pub fn free_floor(room: &Room, p: [f64; 2]) -> bool {
    let walls = p[0] >= WALL_CLEARANCE && p[0] <= room.width - WALL_CLEARANCE && p[1] >= WALL_CLEARANCE && p[1] <= room.depth - WALL_CLEARANCE;
    walls && room.objects.iter().all(|o| o.footprint().distance_to(p) >= OBJECT_CLEARANCE)
}

impl Constraints {
    /// The heading the sentence implies at `p` (no jitter).
    pub fn heading_at(&self, room: &Room, p: [f64; 2]) -> f64 {
        match self.facing {
            Facing::Toward(i) => heading_to(p, room.objects[i].centre),
            Facing::AwayFrom(i) => wrap_pi(heading_to(p, room.objects[i].centre) + PI),
        }
    }

    /// Whether an agent at `p` satisfies the sentence.
    pub fn hold_at(&self, room: &Room, p: [f64; 2]) -> bool {
        if !free_floor(room, p) {
            return false;
        }
        let near_ok = self.near.iter().all(|&i| (ANCHOR_DISTANCE.0..=ANCHOR_DISTANCE.1).contains(&room.objects[i].footprint().distance_to(p)));
        if !near_ok {
            return false;
        }
        if let Some((i, sector)) = self.side {
            if Sector::of(bearing(p, self.heading_at(room, p), &room.objects[i])) != sector {
                return false;
            }
        }
        if let Some((a, b)) = self.between {
            let angle = wrap_pi(heading_to(p, room.objects[a].centre) - heading_to(p, room.objects[b].centre)).abs();
            if angle.to_degrees() < BETWEEN_MIN_ANGLE_DEG {
                return false;
            }
        }
        true
    }

    /// Mean distance from `truth` to the grid positions that satisfy the sentence (infinite
    /// when none does).
    pub fn locus_mean_distance(&self, room: &Room, truth: [f64; 2]) -> f64 {
        let (nx, ny) = ((room.width / LOCUS_GRID) as usize, (room.depth / LOCUS_GRID) as usize);
        let (mut sum, mut n) = (0.0, 0usize);
        for i in 0..=nx {
            for j in 0..=ny {
                let p = [i as f64 * LOCUS_GRID, j as f64 * LOCUS_GRID];
                // Cheap rejection first: the first anchor's band.
                let a = &room.objects[self.near[0]];
                if distance_to(p, a.centre) > libm::hypot(a.size[0], a.size[1]) / 2.0 + ANCHOR_DISTANCE.1 + 1e-9 {
                    continue;
                }
                if self.hold_at(room, p) {
                    sum += libm::hypot(p[0] - truth[0], p[1] - truth[1]);
                    n += 1;
                }
            }
        }
        if n == 0 {
            f64::INFINITY
        } else {
            sum / n as f64
        }
    }
}

/// One candidate situation drawn around a random unique anchor, or `None` when the draw does
/// not work out (the caller retries).
pub fn sample_situation(room: &Room, unique: &[&Object], rng: &mut Rng) -> Option<Situation> {
    let anchor = *rng.pick(unique);
    let fp = anchor.footprint();
    let reach = libm::hypot(fp.half[0], fp.half[1]) + ANCHOR_DISTANCE.1;
    let angle = rng.range(0.0, std::f64::consts::TAU);
    let radius = reach * libm::sqrt(rng.unit());
    let p = [anchor.centre[0] + radius * libm::cos(angle), anchor.centre[1] + radius * libm::sin(angle)];
    let gap = fp.distance_to(p);
    if !(ANCHOR_DISTANCE.0..=ANCHOR_DISTANCE.1).contains(&gap) || !free_floor(room, p) {
        return None;
    }
    let other = *rng.pick(unique);
    if other.id == anchor.id {
        return None;
    }
    let jitter = rng.range(-MAX_JITTER_DEG, MAX_JITTER_DEG).to_radians();
    let (a, b) = (anchor.label(), other.label());
    // The sector of `o` at the jittered heading, required `SECTOR_MARGIN_DEG` inside left/right.
    let side_of = |heading: f64, o: &Object| {
        let beta = bearing(p, heading, o);
        let sector = Sector::of(beta);
        (matches!(sector, Sector::Left | Sector::Right) && Sector::margin(beta) >= SECTOR_MARGIN_DEG).then_some(sector)
    };
    let (facing, side, between, text, alternatives, ids) = match rng.below(4) {
        0 => {
            let heading = wrap_pi(heading_to(p, other.centre) + jitter);
            let sector = side_of(heading, anchor)?;
            let side = sector.word();
            (
                Facing::Toward(other.id),
                Some((anchor.id, sector)),
                None,
                format!("I am standing next to the {a}, which is on my {side}, facing the {b}."),
                vec![
                    format!("The {a} is right beside me on my {side} and I am looking at the {b}."),
                    format!("I am facing the {b} with the {a} close on my {side}."),
                ],
                vec![anchor.id, other.id],
            )
        }
        1 => {
            let heading = wrap_pi(heading_to(p, anchor.centre) + jitter);
            let sector = side_of(heading, other)?;
            let side = sector.word();
            (
                Facing::Toward(anchor.id),
                Some((other.id, sector)),
                None,
                format!("I am standing in front of the {a} and the {b} is on my {side}."),
                vec![format!("The {a} is right in front of me and the {b} is to my {side}."), format!("I am facing the {a}, with the {b} on my {side}.")],
                vec![anchor.id, other.id],
            )
        }
        2 => {
            let heading = wrap_pi(heading_to(p, other.centre) + PI + jitter);
            let sector = side_of(heading, anchor)?;
            let side = sector.word();
            (
                Facing::AwayFrom(other.id),
                Some((anchor.id, sector)),
                None,
                format!("I am standing next to the {a}, which is on my {side}, with the {b} behind me."),
                vec![
                    format!("The {b} is behind me and the {a} is right beside me on my {side}."),
                    format!("My back is to the {b} and the {a} is close on my {side}."),
                ],
                vec![anchor.id, other.id],
            )
        }
        _ => {
            // Between the anchor and `other`, facing a third object.
            let third = *rng.pick(unique);
            let gap_other = other.footprint().distance_to(p);
            let angle = wrap_pi(heading_to(p, anchor.centre) - heading_to(p, other.centre)).abs().to_degrees();
            if third.id == anchor.id
                || third.id == other.id
                || !(ANCHOR_DISTANCE.0..=ANCHOR_DISTANCE.1).contains(&gap_other)
                || angle < BETWEEN_MIN_ANGLE_DEG + 5.0
            {
                return None;
            }
            let c = third.label();
            (
                Facing::Toward(third.id),
                None,
                Some((anchor.id, other.id)),
                format!("I am standing between the {a} and the {b}, facing the {c}."),
                vec![
                    format!("The {a} and the {b} are on either side of me and I am looking at the {c}."),
                    format!("I stand between the {a} and the {b} with the {c} in front of me."),
                ],
                vec![anchor.id, other.id, third.id],
            )
        }
    };
    let near = if between.is_some() { vec![anchor.id, other.id] } else { vec![anchor.id] };
    let constraints = Constraints { near, facing, side, between };
    let heading = wrap_pi(constraints.heading_at(room, p) + jitter);
    Some(Situation { position: p, heading, text, alternatives, object_ids: ids, constraints })
}

/// Whether the sentence recovers the position well enough (checked last: it is the costly test).
pub fn recoverable(room: &Room, s: &Situation) -> bool {
    s.constraints.locus_mean_distance(room, s.position) <= MAX_LOCUS_MEAN_DISTANCE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors() {
        assert_eq!(Sector::of(0.0), Sector::Front);
        assert_eq!(Sector::of(90f64.to_radians()), Sector::Left);
        assert_eq!(Sector::of(-90f64.to_radians()), Sector::Right);
        assert_eq!(Sector::of(PI), Sector::Behind);
    }
}
