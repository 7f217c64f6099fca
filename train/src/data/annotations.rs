//! Question/answer annotation readers: SQA3D (situated, with agent poses), ScanQA (no situation)
//! and the synthetic-room generator's `questions.jsonl` (poses already in the BEV frame), plus
//! [`Situated`], the one view of a question the sample builder needs whatever its source.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;

use loc3r_bundle::bev::{wrap_pi, BevFrame, Vec3};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::targets::situation_target_sqa3d;
use super::DataError;

/// A question with its (optional) situation and pose, whatever the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Situated {
    pub scene_id: String,
    /// The situation text; `None` for datasets without one (ScanQA).
    pub situation: Option<String>,
    pub question: String,
    /// The first answer; `None` where the split ships no answers.
    pub answer: Option<String>,
    pub pose: Option<SituationPose>,
}

/// An agent pose as a dataset gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SituationPose {
    /// SQA3D: position (metres) relative to the raw mesh's bounding-box centre, and a
    /// quaternion (x, y, z, w) about the world z axis.
    Sqa3d { position: [f64; 3], rotation_xyzw: [f64; 4] },
    /// Already in the BEV frame of the video it was written for: position (metres), yaw
    /// (radians, counter-clockwise seen from above, π/2 = facing like camera 0).
    Bev { position: [f64; 2], yaw: f64 },
}

impl SituationPose {
    /// The pose as BEV targets `(position, yaw)` in `frame`. SQA3D poses need the scene's
    /// `bs_center` and the body axis the agent faces along (see
    /// [`situation_target_sqa3d`]); BEV poses are returned as they are (yaw wrapped to (−π, π]).
    pub fn bev_target(&self, frame: &BevFrame, bs_center: Vec3, body_forward: Vec3) -> ([f64; 2], f64) {
        match *self {
            SituationPose::Sqa3d { position, rotation_xyzw } => situation_target_sqa3d(position, rotation_xyzw, bs_center, frame, body_forward),
            SituationPose::Bev { position, yaw } => (position, wrap_pi(yaw)),
        }
    }
}

/// One SQA3D question joined with its annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct Sqa3dItem {
    pub question_id: String,
    pub scene_id: String,
    pub situation: String,
    /// Paraphrases of `situation` describing the same pose.
    pub alternative_situations: Vec<String>,
    pub question: String,
    pub answers: Vec<String>,
    /// Metres, relative to the centre of the raw mesh's bounding box (z is 0 in the release).
    pub position: [f64; 3],
    /// Rotation about world z as a quaternion (x, y, z, w).
    pub rotation_xyzw: [f64; 4],
}

impl Sqa3dItem {
    /// The item as situated questions: one for `situation`, plus one per alternative situation
    /// when `with_alternatives` (same pose, same answer).
    pub fn situated(&self, with_alternatives: bool) -> Vec<Situated> {
        let pose = SituationPose::Sqa3d { position: self.position, rotation_xyzw: self.rotation_xyzw };
        let extra = if with_alternatives { self.alternative_situations.as_slice() } else { &[] };
        std::iter::once(&self.situation)
            .chain(extra)
            .map(|s| Situated {
                scene_id: self.scene_id.clone(),
                situation: Some(s.clone()),
                question: self.question.clone(),
                answer: self.answers.first().cloned(),
                pose: Some(pose),
            })
            .collect()
    }
}

/// A split of SQA3D after the join on `question_id`, with what could not be joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Sqa3dSplit {
    /// In the order of the questions file.
    pub items: Vec<Sqa3dItem>,
    /// Questions skipped because no annotation carries their id.
    pub questions_without_annotation: usize,
    /// Annotations skipped because no question carries their id (or a second annotation of an id).
    pub annotations_without_question: usize,
}

/// Reads `v1_balanced_questions_<split>_scannetv2.json` and
/// `v1_balanced_sqa_annotations_<split>_scannetv2.json` from `dir` and joins them.
pub fn read_sqa3d(dir: &Path, split: &str) -> Result<Sqa3dSplit, DataError> {
    read_sqa3d_files(
        &dir.join(format!("v1_balanced_questions_{split}_scannetv2.json")),
        &dir.join(format!("v1_balanced_sqa_annotations_{split}_scannetv2.json")),
    )
}

/// Joins an SQA3D questions file with its annotations file on `question_id`.
pub fn read_sqa3d_files(questions: &Path, annotations: &Path) -> Result<Sqa3dSplit, DataError> {
    let qs: RawQuestions = read_json(questions, "SQA3D questions")?;
    let anns: RawAnnotations = read_json(annotations, "SQA3D annotations")?;
    let mut by_id: HashMap<String, RawAnnotation> = HashMap::with_capacity(anns.annotations.len());
    let mut annotations_without_question = 0;
    for a in anns.annotations {
        let id = a.question_id.to_string();
        match by_id.entry(id) {
            Entry::Occupied(_) => annotations_without_question += 1,
            Entry::Vacant(slot) => {
                slot.insert(a);
            }
        }
    }
    let mut items = Vec::with_capacity(qs.questions.len());
    let mut questions_without_annotation = 0;
    for q in qs.questions {
        let id = q.question_id.to_string();
        let Some(a) = by_id.remove(&id) else {
            questions_without_annotation += 1;
            continue;
        };
        items.push(Sqa3dItem {
            question_id: id,
            scene_id: q.scene_id,
            situation: q.situation,
            alternative_situations: q.alternative_situation,
            question: q.question,
            answers: a.answers.into_iter().map(|x| x.answer).collect(),
            position: [a.position.x, a.position.y, a.position.z],
            rotation_xyzw: [a.rotation.x, a.rotation.y, a.rotation.z, a.rotation.w],
        });
    }
    annotations_without_question += by_id.len();
    Ok(Sqa3dSplit { items, questions_without_annotation, annotations_without_question })
}

/// One ScanQA question.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScanQaItem {
    /// e.g. `train-scene0000-0`.
    pub question_id: String,
    pub scene_id: String,
    pub question: String,
    /// Absent in the test splits.
    #[serde(default)]
    pub answers: Option<Vec<String>>,
    #[serde(default)]
    pub object_ids: Vec<i64>,
    #[serde(default)]
    pub object_names: Vec<String>,
}

impl ScanQaItem {
    /// The item as a situated question without situation or pose.
    pub fn situated(&self) -> Situated {
        Situated {
            scene_id: self.scene_id.clone(),
            situation: None,
            question: self.question.clone(),
            answer: self.answers.as_ref().and_then(|a| a.first().cloned()),
            pose: None,
        }
    }
}

/// Reads a ScanQA file (`ScanQA_v1.0_<split>.json`, a JSON array).
pub fn read_scanqa(path: &Path) -> Result<Vec<ScanQaItem>, DataError> {
    read_json(path, "ScanQA")
}

/// The frames of a synthetic question's video: explicit indices, or a count.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SynthFrames {
    Indices(Vec<usize>),
    Count(usize),
}

/// A BEV position (metres).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct BevXy {
    pub x: f64,
    pub y: f64,
}

/// One line of the synthetic generator's `questions.jsonl`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SynthQuestion {
    pub scene: String,
    /// The video path as written by the generator (relative paths are relative to the file).
    pub video: String,
    pub frames: SynthFrames,
    pub situation: String,
    pub question: String,
    pub answer: String,
    /// Agent position in the video's BEV frame; absent for questions without a pose.
    #[serde(default)]
    pub position: Option<BevXy>,
    /// Agent yaw in the video's BEV frame, degrees.
    #[serde(default)]
    pub yaw_deg: Option<f64>,
}

impl SynthQuestion {
    /// The line as a situated question; the pose is present when both position and yaw are.
    pub fn situated(&self) -> Situated {
        let pose = match (self.position, self.yaw_deg) {
            (Some(p), Some(yaw)) => Some(SituationPose::Bev { position: [p.x, p.y], yaw: wrap_pi(yaw.to_radians()) }),
            _ => None,
        };
        Situated {
            scene_id: self.scene.clone(),
            situation: Some(self.situation.clone()),
            question: self.question.clone(),
            answer: Some(self.answer.clone()),
            pose,
        }
    }
}

/// Reads a `questions.jsonl` (one JSON object per line; blank lines are skipped).
pub fn read_synth_questions(path: &Path) -> Result<Vec<SynthQuestion>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut de = serde_json::Deserializer::from_str(line);
        let q = serde_path_to_error::deserialize(&mut de).map_err(|e| DataError::Json {
            path: path.to_path_buf(),
            what: "synthetic questions",
            message: format!("line {}: {e}", n + 1),
        })?;
        out.push(q);
    }
    Ok(out)
}

fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| DataError::Json { path: path.to_path_buf(), what, message: e.to_string() })
}

/// SQA3D ids are numbers in the release; strings are accepted too.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum QuestionId {
    Number(u64),
    Text(String),
}

impl std::fmt::Display for QuestionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuestionId::Number(n) => n.fmt(f),
            QuestionId::Text(s) => s.fmt(f),
        }
    }
}

#[derive(Deserialize)]
struct RawQuestions {
    questions: Vec<RawQuestion>,
}

#[derive(Deserialize)]
struct RawQuestion {
    question_id: QuestionId,
    scene_id: String,
    situation: String,
    #[serde(default)]
    alternative_situation: Vec<String>,
    question: String,
}

#[derive(Deserialize)]
struct RawAnnotations {
    annotations: Vec<RawAnnotation>,
}

#[derive(Deserialize)]
struct RawAnnotation {
    question_id: QuestionId,
    #[serde(default)]
    answers: Vec<RawAnswer>,
    position: RawPosition,
    rotation: RawRotation,
}

#[derive(Deserialize)]
struct RawAnswer {
    answer: String,
}

#[derive(Deserialize)]
struct RawPosition {
    x: f64,
    y: f64,
    #[serde(default)]
    z: f64,
}

#[derive(Deserialize)]
struct RawRotation {
    #[serde(rename = "_x", default)]
    x: f64,
    #[serde(rename = "_y", default)]
    y: f64,
    #[serde(rename = "_z")]
    z: f64,
    #[serde(rename = "_w")]
    w: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const QUESTIONS: &str = r#"{"info": {}, "questions": [
        {"alternative_situation": ["I stand by the desk.", "The desk is next to me."], "question": "What is on my left?", "question_id": 220602000000, "scene_id": "scene0380_00", "situation": "I am standing by the desk."},
        {"alternative_situation": [], "question": "How many chairs?", "question_id": 220602000001, "scene_id": "scene0380_00", "situation": "I sit on the bed."},
        {"question": "Orphan?", "question_id": 7, "scene_id": "scene0001_00", "situation": "Nowhere."}
    ]}"#;

    const ANNOTATIONS: &str = r#"{"annotations": [
        {"answer_type": "other", "answers": [{"answer": "lamp", "answer_confidence": "yes", "answer_id": 1}], "position": {"x": 0.5, "y": -1.25, "z": 0.0}, "question_id": 220602000000, "question_type": "what", "rotation": {"_w": 0.8, "_x": 0, "_y": 0, "_z": 0.6}, "scene_id": "scene0380_00"},
        {"answers": [{"answer": "two"}, {"answer": "2"}], "position": {"x": 1, "y": 2, "z": 0}, "question_id": 220602000001, "rotation": {"_w": 1, "_x": 0, "_y": 0, "_z": 0}},
        {"answers": [], "position": {"x": 0, "y": 0, "z": 0}, "question_id": 99, "rotation": {"_w": 1, "_x": 0, "_y": 0, "_z": 0}},
        {"answers": [], "position": {"x": 0, "y": 0, "z": 0}, "question_id": 220602000001, "rotation": {"_w": 1, "_x": 0, "_y": 0, "_z": 0}}
    ]}"#;

    #[test]
    fn sqa3d_join_counts_what_it_skips() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "v1_balanced_questions_val_scannetv2.json", QUESTIONS);
        write(tmp.path(), "v1_balanced_sqa_annotations_val_scannetv2.json", ANNOTATIONS);
        let split = read_sqa3d(tmp.path(), "val").unwrap();
        assert_eq!((split.items.len(), split.questions_without_annotation, split.annotations_without_question), (2, 1, 2));
        let a = &split.items[0];
        assert_eq!((a.question_id.as_str(), a.scene_id.as_str(), a.answers.as_slice()), ("220602000000", "scene0380_00", &["lamp".to_string()][..]));
        assert_eq!((a.position, a.rotation_xyzw), ([0.5, -1.25, 0.0], [0.0, 0.0, 0.6, 0.8]));
        assert_eq!(split.items[1].answers, ["two", "2"]);
        let s = a.situated(true);
        assert_eq!(s.len(), 3);
        assert_eq!(s[2].situation.as_deref(), Some("The desk is next to me."));
        assert_eq!(
            (s[0].answer.as_deref(), s[0].pose),
            (Some("lamp"), Some(SituationPose::Sqa3d { position: [0.5, -1.25, 0.0], rotation_xyzw: [0.0, 0.0, 0.6, 0.8] }))
        );
        assert_eq!(a.situated(false).len(), 1);
    }

    #[test]
    fn sqa3d_errors_name_the_file_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let e = read_sqa3d(tmp.path(), "test").unwrap_err().to_string();
        assert!(e.contains("v1_balanced_questions_test_scannetv2.json") && e.contains("cannot read"), "{e}");
        write(tmp.path(), "v1_balanced_questions_test_scannetv2.json", QUESTIONS);
        write(
            tmp.path(),
            "v1_balanced_sqa_annotations_test_scannetv2.json",
            r#"{"annotations": [{"question_id": 1, "position": {"x": "a", "y": 0}, "rotation": {"_z": 0, "_w": 1}}]}"#,
        );
        let e = read_sqa3d(tmp.path(), "test").unwrap_err().to_string();
        assert!(e.contains("v1_balanced_sqa_annotations_test_scannetv2.json") && e.contains("annotations[0].position.x"), "{e}");
    }

    #[test]
    fn scanqa_with_and_without_answers() {
        let tmp = tempfile::tempdir().unwrap();
        let train = write(
            tmp.path(),
            "ScanQA_v1.0_train.json",
            r#"[{"answers": ["brown cabinet with tv sitting in it"], "object_ids": [8], "object_names": ["cabinet"], "question": "What is in the right corner of room by curtains?", "question_id": "train-scene0000-0", "scene_id": "scene0000_00"}]"#,
        );
        let test = write(
            tmp.path(),
            "ScanQA_v1.0_test_wo_obj.json",
            r#"[{"question": "Where is the sink?", "question_id": "test-scene0707-1", "scene_id": "scene0707_00"}]"#,
        );
        let t = read_scanqa(&train).unwrap();
        assert_eq!((t[0].object_ids.as_slice(), t[0].situated().answer.as_deref()), (&[8][..], Some("brown cabinet with tv sitting in it")));
        let w = read_scanqa(&test).unwrap();
        assert_eq!((w[0].answers.as_ref(), w[0].object_names.len()), (None, 0));
        let s = w[0].situated();
        assert_eq!((s.answer, s.situation, s.pose), (None, None, None));
        let bad = write(tmp.path(), "bad.json", r#"[{"question": "x", "scene_id": "s"}]"#);
        let e = read_scanqa(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("question_id"), "{e}");
    }

    #[test]
    fn synthetic_questions_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(
            tmp.path(),
            "questions.jsonl",
            concat!(
                r#"{"scene": "synth_0001", "video": "synth_0001/video.mp4", "frames": [0, 4, 8], "situation": "I am facing the red chair.", "question": "What is on my left?", "answer": "bed", "position": {"x": 1.5, "y": -0.25}, "yaw_deg": 270}"#,
                "\n\n",
                r#"{"scene": "synth_0001", "video": "synth_0001/video.mp4", "frames": 16, "situation": "", "question": "How many lamps?", "answer": "2"}"#,
                "\n"
            ),
        );
        let q = read_synth_questions(&p).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!((&q[0].frames, &q[1].frames), (&SynthFrames::Indices(vec![0, 4, 8]), &SynthFrames::Count(16)));
        let s = q[0].situated();
        let Some(SituationPose::Bev { position, yaw }) = s.pose else { panic!("{s:?}") };
        assert_eq!(position, [1.5, -0.25]);
        assert!((yaw + std::f64::consts::FRAC_PI_2).abs() < 1e-12, "270° wraps to −90°: {yaw}");
        assert_eq!(q[1].situated().pose, None);
        let frame = BevFrame { origin: [0.0; 3], right: [1.0, 0.0, 0.0], forward: [0.0, 1.0, 0.0], up: [0.0, 0.0, 1.0] };
        assert_eq!(s.pose.unwrap().bev_target(&frame, [9.0; 3], [-1.0, 0.0, 0.0]), ([1.5, -0.25], yaw));
        std::fs::write(&p, "{\"scene\": \"s\"}\n").unwrap();
        let e = read_synth_questions(&p).unwrap_err().to_string();
        assert!(e.contains("questions.jsonl") && e.contains("line 1"), "{e}");
    }
}
