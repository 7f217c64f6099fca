//! Situated questions with ground truth: an agent pose on free floor described by a situation
//! sentence that pins it down (next to a uniquely named anchor, facing or having another uniquely
//! named object on a given side), and short exact-match answers about the room as seen from there.
//!
//! Egocentric bearing of an object: `β = wrap(heading to its centre − agent heading)` about z
//! (counter-clockwise positive); front |β| < 45°, left 45°..135°, right −135°..−45°, behind else.

use crate::rng::Rng;
use crate::scene::{Object, Room};
use crate::vocab::{number_word, CLASSES};
use loc3r_bundle::bev::wrap_pi;

/// Distance band between the agent and the anchor object's footprint (metres).
const ANCHOR_DISTANCE: (f64, f64) = (0.4, 1.0);
/// Clearance from every footprint and from the walls (metres).
const OBJECT_CLEARANCE: f64 = 0.3;
const WALL_CLEARANCE: f64 = 0.4;
/// Facing jitter (degrees).
const MAX_JITTER_DEG: f64 = 10.0;
/// Angular margin (degrees) kept from sector boundaries when a question relies on a sector.
const SECTOR_MARGIN_DEG: f64 = 10.0;
/// Candidate poses tried per requested question.
const TRIES_PER_QUESTION: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sector {
    Front,
    Left,
    Right,
    Behind,
}

impl Sector {
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
    fn margin(bearing: f64) -> f64 {
        let deg = bearing.to_degrees().abs();
        [45.0, 135.0].iter().map(|b| (deg - b).abs()).fold(f64::INFINITY, f64::min)
    }
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
}

/// A question with its short answer and the objects it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Qa {
    pub question: String,
    pub answer: String,
    pub object_ids: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SituatedQa {
    pub situation: Situation,
    pub qa: Qa,
}

fn heading_to(from: [f64; 2], to: [f64; 3]) -> f64 {
    libm::atan2(to[1] - from[1], to[0] - from[0])
}

fn distance_to(from: [f64; 2], to: [f64; 3]) -> f64 {
    libm::hypot(to[0] - from[0], to[1] - from[1])
}

fn bearing(position: [f64; 2], heading: f64, o: &Object) -> f64 {
    wrap_pi(heading_to(position, o.centre) - heading)
}

/// Up to `count` situated questions (fewer when the room has too few uniquely nameable objects
/// or too little free floor).
pub fn situated_questions(room: &Room, count: usize, rng: &mut Rng) -> Vec<SituatedQa> {
    let unique: Vec<&Object> = room.objects.iter().filter(|o| room.same_label(o) == 1).collect();
    let mut out: Vec<SituatedQa> = Vec::new();
    if unique.len() < 2 {
        return out;
    }
    for _ in 0..count * TRIES_PER_QUESTION {
        if out.len() == count {
            break;
        }
        let Some(situation) = sample_situation(room, &unique, rng) else { continue };
        let Some(qa) = ask(room, &situation, rng) else { continue };
        if out.iter().any(|s| s.situation.text == situation.text && s.qa.question == qa.question) {
            continue;
        }
        out.push(SituatedQa { situation, qa });
    }
    out
}

fn free_floor(room: &Room, p: [f64; 2]) -> bool {
    let walls = p[0] >= WALL_CLEARANCE && p[0] <= room.width - WALL_CLEARANCE && p[1] >= WALL_CLEARANCE && p[1] <= room.depth - WALL_CLEARANCE;
    walls && room.objects.iter().all(|o| o.footprint().distance_to(p) >= OBJECT_CLEARANCE)
}

fn sample_situation(room: &Room, unique: &[&Object], rng: &mut Rng) -> Option<Situation> {
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
    let (heading, text, alternatives) = match rng.below(3) {
        0 => {
            let heading = wrap_pi(heading_to(p, other.centre) + jitter);
            (
                heading,
                format!("I am standing next to the {a}, facing the {b}."),
                vec![format!("I am next to the {a} and the {b} is in front of me."), format!("The {a} is beside me and I am looking at the {b}.")],
            )
        }
        1 => {
            let heading = wrap_pi(heading_to(p, anchor.centre) + jitter);
            let beta = bearing(p, heading, other);
            let side = match Sector::of(beta) {
                Sector::Left => "left",
                Sector::Right => "right",
                _ => return None,
            };
            if Sector::margin(beta) < SECTOR_MARGIN_DEG {
                return None;
            }
            (
                heading,
                format!("I am standing in front of the {a} and the {b} is on my {side}."),
                vec![format!("The {a} is right in front of me and the {b} is to my {side}."), format!("I am facing the {a}, with the {b} on my {side}.")],
            )
        }
        _ => {
            let heading = wrap_pi(heading_to(p, other.centre) + std::f64::consts::PI + jitter);
            (
                heading,
                format!("I am standing next to the {a} with the {b} behind me."),
                vec![format!("The {b} is behind me and the {a} is next to me."), format!("I am beside the {a}, my back to the {b}.")],
            )
        }
    };
    Some(Situation { position: p, heading, text, alternatives, object_ids: vec![anchor.id, other.id] })
}

/// One question about the room from the situation's pose, or `None` when the drawn kind has no
/// unambiguous answer there.
fn ask(room: &Room, s: &Situation, rng: &mut Rng) -> Option<Qa> {
    let objects = &room.objects;
    match rng.below(6) {
        0..=2 => {
            let (sector, question) =
                *rng.pick(&[(Sector::Left, "what is on my left?"), (Sector::Right, "what is on my right?"), (Sector::Behind, "what is behind me?")]);
            let mut inside: Vec<(f64, &Object)> =
                objects.iter().filter(|o| Sector::of(bearing(s.position, s.heading, o)) == sector).map(|o| (distance_to(s.position, o.centre), o)).collect();
            inside.sort_by(|x, y| x.0.total_cmp(&y.0));
            let &(nearest, o) = inside.first()?;
            let clearly = inside.get(1).is_none_or(|&(second, _)| second >= 1.5 * nearest && second - nearest >= 0.5);
            let margin_ok = Sector::margin(bearing(s.position, s.heading, o)) >= SECTOR_MARGIN_DEG;
            (clearly && margin_ok && room.same_label(o) == 1).then(|| Qa { question: question.into(), answer: o.label(), object_ids: vec![o.id] })
        }
        3 => {
            let o = unique_object(room, rng)?;
            let beta = bearing(s.position, s.heading, o);
            if Sector::margin(beta) < SECTOR_MARGIN_DEG {
                return None;
            }
            let answer = if Sector::of(beta) == Sector::Front { "yes" } else { "no" };
            Some(Qa { question: format!("is the {} in front of me?", o.label()), answer: answer.into(), object_ids: vec![o.id] })
        }
        4 => {
            if rng.chance(0.5) {
                colour_question(room, rng)
            } else {
                count_question(room, rng)
            }
        }
        _ => {
            let o = unique_object(room, rng)?;
            let d = distance_to(s.position, o.centre);
            Some(Qa { question: format!("how far am I from the {}?", o.label()), answer: format!("{d:.1}"), object_ids: vec![o.id] })
        }
    }
}

fn unique_object<'a>(room: &'a Room, rng: &mut Rng) -> Option<&'a Object> {
    let o = rng.pick(&room.objects);
    (room.same_label(o) == 1).then_some(o)
}

fn colour_question(room: &Room, rng: &mut Rng) -> Option<Qa> {
    let o = rng.pick(&room.objects);
    (room.count_of(o.class) == 1).then(|| Qa { question: format!("what colour is the {}?", o.class.name()), answer: o.colour.into(), object_ids: vec![o.id] })
}

fn count_question(room: &Room, rng: &mut Rng) -> Option<Qa> {
    let class = rng.pick(&room.objects).class;
    let ids: Vec<usize> = room.objects.iter().filter(|o| o.class == class).map(|o| o.id).collect();
    Some(Qa { question: format!("how many {} are there?", class.plural()), answer: number_word(ids.len()), object_ids: ids })
}

/// Every non-situated question the room supports (ScanQA style): the colour of each class that
/// appears once, and the count of each class present.
pub fn plain_questions(room: &Room) -> Vec<Qa> {
    let mut out = Vec::new();
    for class in CLASSES {
        let ids: Vec<usize> = room.objects.iter().filter(|o| o.class == class).map(|o| o.id).collect();
        if let [only] = ids[..] {
            out.push(Qa { question: format!("what colour is the {}?", class.name()), answer: room.objects[only].colour.into(), object_ids: vec![only] });
        }
        if !ids.is_empty() {
            out.push(Qa { question: format!("how many {} are there?", class.plural()), answer: number_word(ids.len()), object_ids: ids });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::ObjectCount;

    #[test]
    fn sectors() {
        assert_eq!(Sector::of(0.0), Sector::Front);
        assert_eq!(Sector::of(90f64.to_radians()), Sector::Left);
        assert_eq!(Sector::of(-90f64.to_radians()), Sector::Right);
        assert_eq!(Sector::of(std::f64::consts::PI), Sector::Behind);
    }

    #[test]
    fn situations_hold_what_they_say() {
        let mut total = 0;
        for seed in 0..10 {
            let room = Room::generate(&mut Rng::new(seed), ObjectCount::default()).unwrap();
            for q in situated_questions(&room, 12, &mut Rng::new(seed + 100)) {
                total += 1;
                let p = q.situation.position;
                assert!(free_floor(&room, p));
                let anchor = &room.objects[q.situation.object_ids[0]];
                let gap = anchor.footprint().distance_to(p);
                assert!((0.4..=1.0).contains(&gap), "{gap}");
                let other = &room.objects[q.situation.object_ids[1]];
                let beta = bearing(p, q.situation.heading, other).to_degrees();
                if q.situation.text.contains("facing") {
                    assert!(beta.abs() <= 10.0 + 1e-9);
                } else if q.situation.text.contains("behind me") {
                    assert_eq!(Sector::of(beta.to_radians()), Sector::Behind);
                }
                assert!(!q.qa.answer.ends_with('.') && q.qa.answer == q.qa.answer.to_lowercase());
            }
        }
        assert!(total > 60, "{total}");
    }
}
