//! Writes rooms in the ScanNet export layout (`scenes/<scene_id>/…`), the per-room and combined
//! `questions.jsonl`, and the SQA3D / ScanQA annotation files (docs/synthetic-rooms.md).

use crate::camera::Intrinsics;
use crate::questions::{Qa, SituatedQa};
use crate::render::{render, DepthNoise, Frame};
use crate::trajectory::pose_text;
use crate::video::VideoEncoder;
use crate::{GeneratedRoom, Options, SynthError, FPS};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageBuffer, Luma};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// JPEG quality of `color/{i}.jpg`.
const JPEG_QUALITY: u8 = 95;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io { path: path.to_path_buf(), source }
}

fn write_text(path: &Path, text: &str) -> Result<(), SynthError> {
    fs::write(path, text).map_err(io_err(path))
}

fn create_dir(path: &Path) -> Result<(), SynthError> {
    fs::create_dir_all(path).map_err(io_err(path))
}

/// One line of `questions.jsonl`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct QuestionRecord {
    pub scene: String,
    /// Path of the video relative to the output directory.
    pub video: String,
    /// How many frames the question is meant to be asked with.
    pub frames: usize,
    pub situation: String,
    pub question: String,
    pub answer: String,
    /// Agent position in the BEV frame of camera 0 (metres).
    pub position: BevPoint,
    /// Agent facing in the BEV frame (degrees, in (−180, 180]).
    pub yaw_deg: f64,
}

#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct BevPoint {
    pub x: f64,
    pub y: f64,
}

/// What a written room contributes to the run-wide files.
#[derive(Debug, Clone)]
pub struct WrittenRoom {
    pub scene_id: String,
    pub frames: usize,
    pub records: Vec<QuestionRecord>,
    pub sqa_questions: Vec<Value>,
    pub sqa_annotations: Vec<Value>,
    pub scanqa: Vec<Value>,
}

/// The directory of one scene.
pub fn scene_dir(out: &Path, scene_id: &str) -> PathBuf {
    out.join("scenes").join(scene_id)
}

/// Renders and writes one room; `video` is `None` with `--no-video`.
pub fn write_room(out: &Path, opts: &Options, g: &GeneratedRoom, video: Option<&VideoEncoder>) -> Result<WrittenRoom, SynthError> {
    let dir = scene_dir(out, &g.scene_id);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?; // stale frames of an earlier run (--force)
    }
    for sub in ["color", "depth", "pose", "intrinsic"] {
        create_dir(&dir.join(sub))?;
    }
    let intr = Intrinsics::new(opts.width, opts.height);
    write_metadata(&dir, opts, g, &intr)?;
    let mut encoder = video.map(|v| v.start(&dir.join("video.mp4"), opts.width, opts.height, FPS)).transpose()?;
    // Frames render in parallel a chunk at a time and reach the encoder in order; a chunk bounds
    // the memory held for large frames.
    let chunk = (rayon::current_num_threads() * 2).max(4);
    for start in (0..g.poses.len()).step_by(chunk) {
        let end = (start + chunk).min(g.poses.len());
        let frames: Vec<Frame> = (start..end)
            .into_par_iter()
            .map(|i| {
                let noise = g.noise_seed.map(|s| DepthNoise { seed: crate::rng::derive(s, i as u64) });
                let frame = render(&g.room, &g.poses[i], &intr, noise);
                write_frame(&dir, i, &frame, &g.poses[i], &intr)?;
                Ok(frame)
            })
            .collect::<Result<_, SynthError>>()?;
        if let Some(enc) = encoder.as_mut() {
            for f in &frames {
                enc.push(&f.rgb)?;
            }
        }
    }
    if let Some(enc) = encoder {
        enc.finish()?;
    }
    let written = question_records(opts, g);
    let mut lines = String::new();
    for r in &written.records {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    write_text(&dir.join("questions.jsonl"), &lines)?;
    Ok(written)
}

fn write_frame(dir: &Path, i: usize, frame: &Frame, pose: &crate::trajectory::Pose, intr: &Intrinsics) -> Result<(), SynthError> {
    let color = dir.join("color").join(format!("{i}.jpg"));
    let file = fs::File::create(&color).map_err(io_err(&color))?;
    let mut w = BufWriter::new(file);
    JpegEncoder::new_with_quality(&mut w, JPEG_QUALITY)
        .encode(&frame.rgb, intr.width as u32, intr.height as u32, ExtendedColorType::Rgb8)
        .map_err(|source| SynthError::Image { path: color.clone(), source })?;
    w.flush().map_err(io_err(&color))?;
    let depth = dir.join("depth").join(format!("{i}.png"));
    let img: ImageBuffer<Luma<u16>, &[u16]> = ImageBuffer::from_raw(intr.width as u32, intr.height as u32, &frame.depth_mm[..])
        .ok_or_else(|| SynthError::Internal(format!("depth buffer of frame {i} has the wrong size")))?;
    let file = fs::File::create(&depth).map_err(io_err(&depth))?;
    img.write_with_encoder(PngEncoder::new(BufWriter::new(file))).map_err(|source| SynthError::Image { path: depth.clone(), source })?;
    write_text(&dir.join("pose").join(format!("{i}.txt")), &pose_text(pose))
}

/// Intrinsics, extrinsics, the ScanNet `<scene>.txt`, the room-box PLY and `scene.json`.
fn write_metadata(dir: &Path, opts: &Options, g: &GeneratedRoom, intr: &Intrinsics) -> Result<(), SynthError> {
    let k = intr.matrix_text();
    let identity = "1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n";
    write_text(&dir.join("intrinsic/intrinsic_color.txt"), &k)?;
    write_text(&dir.join("intrinsic/intrinsic_depth.txt"), &k)?;
    write_text(&dir.join("intrinsic/extrinsic_color.txt"), identity)?;
    write_text(&dir.join("intrinsic/extrinsic_depth.txt"), identity)?;
    let n = g.poses.len();
    let info = format!(
        "axisAlignment = 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\ncolorHeight = {h}\ncolorToDepthExtrinsics = 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\ncolorWidth = {w}\n\
         depthHeight = {h}\ndepthWidth = {w}\nfx_color = {fx:.6}\nfx_depth = {fx:.6}\nfy_color = {fy:.6}\nfy_depth = {fy:.6}\nmx_color = {cx:.6}\nmx_depth = {cx:.6}\n\
         my_color = {cy:.6}\nmy_depth = {cy:.6}\nnumColorFrames = {n}\nnumDepthFrames = {n}\nnumIMUmeasurements = 0\nsceneType = Synthetic\n",
        w = intr.width,
        h = intr.height,
        fx = intr.fx,
        fy = intr.fy,
        cx = intr.cx,
        cy = intr.cy,
    );
    write_text(&dir.join(format!("{}.txt", g.scene_id)), &info)?;
    write_text(&dir.join(format!("{}_vh_clean_2.ply", g.scene_id)), &room_ply(g.room.width, g.room.depth, g.room.height))?;
    let scene = json!({
        "scene_id": g.scene_id,
        "room_index": g.index,
        "seed": g.seed,
        "room": { "width": g.room.width, "depth": g.room.depth, "height": g.room.height },
        "bs_center": bs_center(g),
        "fps": FPS,
        "frames": n,
        "image": { "width": intr.width, "height": intr.height, "fx": intr.fx, "fy": intr.fy, "cx": intr.cx, "cy": intr.cy },
        "depth_noise": opts.depth_noise,
        "camera_path": opts.path.name(),
        "objects": g.room.objects,
        "bev": { "origin": g.bev.origin, "right": g.bev.right, "forward": g.bev.forward, "up": g.bev.up },
    });
    let text = serde_json::to_string_pretty(&scene)?;
    write_text(&dir.join("scene.json"), &(text + "\n"))
}

/// The centre of the PLY's bounding box: SQA3D positions are relative to it.
pub fn bs_center(g: &GeneratedRoom) -> [f64; 3] {
    [g.room.width / 2.0, g.room.depth / 2.0, g.room.height / 2.0]
}

/// The room box as an ASCII PLY mesh (8 vertices, 12 triangles), like ScanNet's `_vh_clean_2`.
fn room_ply(w: f64, d: f64, h: f64) -> String {
    let mut s = String::from(
        "ply\nformat ascii 1.0\ncomment loc3r-synth room box\nelement vertex 8\nproperty float x\nproperty float y\nproperty float z\n\
         property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\nelement face 12\nproperty list uchar int vertex_indices\nend_header\n",
    );
    for k in 0..8 {
        let (x, y, z) = (if k & 1 == 1 { w } else { 0.0 }, if k & 2 == 2 { d } else { 0.0 }, if k & 4 == 4 { h } else { 0.0 });
        s.push_str(&format!("{x:.6} {y:.6} {z:.6} 200 200 200 255\n"));
    }
    // Two triangles per face, wound to face into the room.
    let faces = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]];
    for f in faces {
        s.push_str(&format!("3 {} {} {}\n", f[0], f[1], f[2]));
    }
    s
}

/// The quaternion (x, y, z, w) of a rotation by `psi` about z.
fn z_quaternion(psi: f64) -> [f64; 4] {
    [0.0, 0.0, libm::sin(psi / 2.0), libm::cos(psi / 2.0)]
}

fn question_records(opts: &Options, g: &GeneratedRoom) -> WrittenRoom {
    let video = format!("scenes/{}/video.mp4", g.scene_id);
    let centre = bs_center(g);
    let mut w =
        WrittenRoom { scene_id: g.scene_id.clone(), frames: g.poses.len(), records: vec![], sqa_questions: vec![], sqa_annotations: vec![], scanqa: vec![] };
    for (n, SituatedQa { situation: s, qa }) in g.situated.iter().enumerate() {
        let facing = [libm::cos(s.heading), libm::sin(s.heading), 0.0];
        let [x, y] = g.bev.point_to_bev([s.position[0], s.position[1], 0.0]);
        let yaw_deg = g.bev.yaw_of(facing).to_degrees();
        w.records.push(QuestionRecord {
            scene: g.scene_id.clone(),
            video: video.clone(),
            frames: opts.sample_frames,
            situation: s.text.clone(),
            question: qa.question.clone(),
            answer: qa.answer.clone(),
            position: BevPoint { x, y },
            yaw_deg,
        });
        let question_id = g.index * 10000 + n;
        w.sqa_questions.push(json!({
            "scene_id": g.scene_id,
            "situation": s.text,
            "alternative_situation": s.alternatives,
            "question": qa.question,
            "question_id": question_id,
        }));
        // SQA3D's body forward axis is −x: heading θ is stored as the z rotation ψ = θ − π.
        let q = z_quaternion(s.heading - std::f64::consts::PI);
        w.sqa_annotations.push(json!({
            "scene_id": g.scene_id,
            "question_id": question_id,
            "answers": [{ "answer": qa.answer, "answer_id": 1 }],
            "position": { "x": s.position[0] - centre[0], "y": s.position[1] - centre[1], "z": 0.0 },
            "rotation": { "_x": q[0], "_y": q[1], "_z": q[2], "_w": q[3] },
        }));
    }
    for (n, qa) in g.plain.iter().enumerate() {
        w.scanqa.push(scanqa_entry(&opts.split, g, n, qa));
    }
    w
}

fn scanqa_entry(split: &str, g: &GeneratedRoom, n: usize, qa: &Qa) -> Value {
    json!({
        "scene_id": g.scene_id,
        "question_id": format!("{split}-{}-{n}", g.scene_id),
        "question": qa.question,
        "answers": [qa.answer],
        "object_ids": qa.object_ids,
        "object_names": qa.object_ids.iter().map(|&i| g.room.objects[i].class.name()).collect::<Vec<_>>(),
    })
}

/// The run-wide `questions.jsonl` and `annotations/` files.
pub fn write_run_files(out: &Path, split: &str, rooms: &[WrittenRoom]) -> Result<(), SynthError> {
    let mut lines = String::new();
    for r in rooms.iter().flat_map(|r| &r.records) {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    write_text(&out.join("questions.jsonl"), &lines)?;
    let ann = out.join("annotations");
    create_dir(&ann)?;
    let dump = |name: String, v: Value| -> Result<(), SynthError> {
        let text = serde_json::to_string(&v)?;
        write_text(&ann.join(name), &text)
    };
    let questions: Vec<&Value> = rooms.iter().flat_map(|r| &r.sqa_questions).collect();
    let annotations: Vec<&Value> = rooms.iter().flat_map(|r| &r.sqa_annotations).collect();
    let scanqa: Vec<&Value> = rooms.iter().flat_map(|r| &r.scanqa).collect();
    dump(format!("v1_balanced_questions_{split}_scannetv2.json"), json!({ "questions": questions }))?;
    dump(format!("v1_balanced_sqa_annotations_{split}_scannetv2.json"), json!({ "annotations": annotations }))?;
    dump(format!("ScanQA_v1.0_{split}.json"), json!(scanqa))
}
