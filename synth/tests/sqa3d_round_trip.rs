//! The SQA3D annotation (position relative to the room box centre, quaternion about z with
//! ψ = heading − π and body forward −x) taken back to a world pose and through the BEV frame of
//! pose/0.txt gives exactly questions.jsonl's BEV pose.

mod common;

use common::{read_json, small, write_run};
use loc3r_bundle::bev::{wrap_pi, BevFrame};

fn read_pose(path: &std::path::Path) -> [[f64; 4]; 4] {
    let text = std::fs::read_to_string(path).unwrap();
    let v: Vec<f64> = text.split_whitespace().map(|t| t.parse().unwrap()).collect();
    assert_eq!(v.len(), 16);
    let mut m = [[0.0; 4]; 4];
    for (i, x) in v.into_iter().enumerate() {
        m[i / 4][i % 4] = x;
    }
    m
}

#[test]
fn annotation_pose_equals_bev_pose() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(11);
    write_run(dir.path(), &opts, 3);
    let questions = read_json(&dir.path().join("annotations/v1_balanced_questions_train_scannetv2.json"));
    let annotations = read_json(&dir.path().join("annotations/v1_balanced_sqa_annotations_train_scannetv2.json"));
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("questions.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let anns = annotations["annotations"].as_array().unwrap();
    let qs = questions["questions"].as_array().unwrap();
    assert!(records.len() >= 20, "{} questions", records.len());
    assert_eq!(anns.len(), records.len());
    assert_eq!(qs.len(), records.len());
    for ((ann, q), rec) in anns.iter().zip(qs).zip(&records) {
        let scene = ann["scene_id"].as_str().unwrap();
        assert_eq!(q["scene_id"], ann["scene_id"]);
        assert_eq!(q["question_id"], ann["question_id"]);
        assert_eq!(q["situation"], rec["situation"]);
        assert_eq!(ann["answers"][0]["answer"], rec["answer"]);
        let scene_dir = dir.path().join("scenes").join(scene);
        // bs_center: the centre of the PLY's vertices' bounding box.
        let ply = std::fs::read_to_string(scene_dir.join(format!("{scene}_vh_clean_2.ply"))).unwrap();
        let body = ply.split("end_header\n").nth(1).unwrap();
        let verts: Vec<Vec<f64>> = body.lines().take(8).map(|l| l.split_whitespace().take(3).map(|t| t.parse().unwrap()).collect()).collect();
        let centre: Vec<f64> = (0..3)
            .map(|k| (verts.iter().map(|v| v[k]).fold(f64::INFINITY, f64::min) + verts.iter().map(|v| v[k]).fold(f64::NEG_INFINITY, f64::max)) / 2.0)
            .collect();
        let world = [ann["position"]["x"].as_f64().unwrap() + centre[0], ann["position"]["y"].as_f64().unwrap() + centre[1], 0.0];
        let (z, w) = (ann["rotation"]["_z"].as_f64().unwrap(), ann["rotation"]["_w"].as_f64().unwrap());
        assert_eq!(ann["rotation"]["_x"].as_f64(), Some(0.0));
        let psi = 2.0 * z.atan2(w);
        let facing = [-psi.cos(), -psi.sin(), 0.0];
        let bev = BevFrame::from_camera0(&read_pose(&scene_dir.join("pose/0.txt")), [0.0, 0.0, 1.0]).unwrap();
        let xy = bev.point_to_bev(world);
        let yaw = bev.yaw_of(facing).to_degrees();
        let (rx, ry, ryaw) = (rec["position"]["x"].as_f64().unwrap(), rec["position"]["y"].as_f64().unwrap(), rec["yaw_deg"].as_f64().unwrap());
        assert!((xy[0] - rx).abs() < 1e-6 && (xy[1] - ry).abs() < 1e-6, "{scene}: {xy:?} vs ({rx}, {ry})");
        assert!(wrap_pi((yaw - ryaw).to_radians()).to_degrees().abs() < 1e-6, "{scene}: yaw {yaw} vs {ryaw}");
        assert!(ryaw > -180.0 && ryaw <= 180.0);
    }
    // ScanQA: no situations, ids "<split>-<scene>-<n>".
    let scanqa = read_json(&dir.path().join("annotations/ScanQA_v1.0_train.json"));
    let entries = scanqa.as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        let id = e["question_id"].as_str().unwrap();
        assert!(id.starts_with(&format!("train-{}-", e["scene_id"].as_str().unwrap())), "{id}");
        assert!(e.get("situation").is_none());
        assert_eq!(e["object_ids"].as_array().unwrap().len(), e["object_names"].as_array().unwrap().len());
    }
}
