//! Situated questions with ground truth: a situation (`situation.rs`) and a short exact-match
//! answer about the room as seen from its pose (egocentric sectors as in `situation::Sector`).

use crate::rng::Rng;
use crate::scene::{Object, Room};
use crate::situation::{bearing, distance_to, recoverable, sample_situation, Sector, Situation, SECTOR_MARGIN_DEG};
use crate::vocab::{number_word, CLASSES};

/// Candidate poses tried per requested question.
const TRIES_PER_QUESTION: usize = 60;

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
        if out.iter().any(|s| s.situation.text == situation.text && s.qa.question == qa.question) || !recoverable(room, &situation) {
            continue;
        }
        out.push(SituatedQa { situation, qa });
    }
    out
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
    use crate::situation::{Facing, MAX_JITTER_DEG, MAX_LOCUS_MEAN_DISTANCE};

    #[test]
    fn situations_hold_what_they_say() {
        let mut total = 0;
        for seed in 0..10 {
            let room = Room::generate(&mut Rng::new(seed), ObjectCount::default()).unwrap();
            for q in situated_questions(&room, 12, &mut Rng::new(seed + 100)) {
                total += 1;
                let s = &q.situation;
                let c = &s.constraints;
                assert!(c.hold_at(&room, s.position), "{}: the true position breaks the sentence", s.text);
                let anchor = &room.objects[c.near[0]];
                assert!((0.4..=1.0).contains(&anchor.footprint().distance_to(s.position)));
                let (target, offset) = match c.facing {
                    Facing::Toward(i) => (i, 0.0),
                    Facing::AwayFrom(i) => (i, std::f64::consts::PI),
                };
                let beta = loc3r_bundle::bev::wrap_pi(bearing(s.position, s.heading, &room.objects[target]) - offset).to_degrees();
                assert!(beta.abs() <= MAX_JITTER_DEG + 1e-9, "{}: facing off by {beta}°", s.text);
                assert!(c.locus_mean_distance(&room, s.position) <= MAX_LOCUS_MEAN_DISTANCE);
                assert!(!q.qa.answer.ends_with('.') && q.qa.answer == q.qa.answer.to_lowercase());
            }
        }
        assert!(total > 60, "{total}");
    }
}
