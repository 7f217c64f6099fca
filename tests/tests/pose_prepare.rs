//! `loc3r-train prepare-poses` on a synthetic room: which frames each sequence takes (the
//! runtime's uniform sample and its cyclic shifts, or a `--stride` window), that every pose is
//! the frame's pose in the first frame's camera as the room's pose files give it, and that
//! impossible options and mismatched resumes are refused.

use std::path::Path;
use std::process::Command;

use loc3r::stages::video::sample_indices;
use loc3r_e2e::serve_exe;
use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::data::scannet::ScanNetScene;
use loc3r_train::pose::{prepare_poses, relative_pose, PosePrepareOptions, PoseSequence};

const RENDERED: usize = 8;

fn room(out: &Path) {
    let synth = serve_exe().with_file_name("loc3r-synth");
    assert!(synth.is_file(), "{} is missing: run `cargo build --workspace --bins` first", synth.display());
    let run = Command::new(synth)
        .args(["--rooms", "1", "--seed", "11", "--frames", &RENDERED.to_string(), "--size", "64x48", "--questions", "1", "--sample-frames", "4", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(run.status.success(), "loc3r-synth: {}", String::from_utf8_lossy(&run.stderr));
}

fn options(frames: usize, shifts: usize, stride: Option<usize>) -> PosePrepareOptions {
    PosePrepareOptions { frames, shifts, points: false, stride }
}

/// Every sequence's poses against the pose files, for the frame indices it should hold.
fn check_sequences(dir: &Path, scene: &ScanNetScene, id: &str, expected: &[Vec<usize>]) -> Vec<PoseSequence> {
    expected
        .iter()
        .enumerate()
        .map(|(shift, indices)| {
            let seq = PoseSequence::read(&dir.join(format!("{id}-s{shift}.safetensors"))).unwrap();
            assert_eq!(seq.frames(), indices.len());
            let anchor = scene.pose(indices[0]).unwrap().unwrap();
            for (k, &i) in indices.iter().enumerate() {
                let want = relative_pose(&anchor, &scene.pose(i).unwrap().unwrap());
                for (got, want) in seq.pose[k * 7..(k + 1) * 7].iter().zip(want) {
                    assert!((f64::from(*got) - want).abs() < 1e-5, "shift {shift} frame {k} (video frame {i}): {got} vs {want}");
                }
            }
            seq
        })
        .collect()
}

#[test]
fn pose_sequences_take_the_sampled_or_strided_frames_with_first_frame_relative_poses() {
    let dir = tempfile::tempdir().unwrap();
    let rooms = dir.path().join("rooms");
    room(&rooms);
    let scenes = rooms.join("scenes");
    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { seed: 3, ..TinyOptions::default() }, |_, _| {}).unwrap();
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).unwrap();
    let id = std::fs::read_dir(&scenes).unwrap().next().unwrap().unwrap().file_name().to_string_lossy().into_owned();
    let scene = ScanNetScene::open(&scenes.join(&id)).unwrap();

    // The runtime's uniform sample of 4 frames, then the same shifted by half the video.
    let uniform = dir.path().join("uniform");
    let report = prepare_poses(&ckpt, &scenes, &uniform, &options(4, 2, None), |_, _| {}).unwrap();
    assert_eq!((report.sequences, report.scenes), (2, 1), "{report:?}");
    let base = sample_indices(RENDERED, 4).unwrap();
    let shifted: Vec<usize> = base.iter().map(|i| (i + RENDERED / 2) % RENDERED).collect();
    let sampled = check_sequences(&uniform, &scene, &id, &[base.clone(), shifted]);

    // Consecutive frames (stride 1) from offsets 0, 4: windows 0,1,2 and 4,5,6.
    let strided = dir.path().join("strided");
    prepare_poses(&ckpt, &scenes, &strided, &options(3, 2, Some(1)), |_, _| {}).unwrap();
    let windows = check_sequences(&strided, &scene, &id, &[vec![0, 1, 2], vec![4, 5, 6]]);
    // The same video frame gives the same pixels whichever sequence takes it.
    let per_frame = sampled[0].image.len() / 4;
    assert_eq!(base[0], 0);
    assert_eq!(sampled[0].image[..per_frame], windows[0].image[..per_frame]);
    assert_ne!(windows[0].image[..per_frame], windows[0].image[per_frame..2 * per_frame], "consecutive frames differ");

    // Resuming with other options is refused, naming both; the same options resume.
    let err = prepare_poses(&ckpt, &scenes, &strided, &options(3, 2, Some(2)), |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("stride") && err.contains("fresh --out"), "{err}");
    let resumed = prepare_poses(&ckpt, &scenes, &strided, &options(3, 2, Some(1)), |_, _| {}).unwrap();
    assert_eq!((resumed.scenes_resumed, resumed.sequences), (1, 2), "{resumed:?}");

    // A window longer than the video skips the scene with the reason; stride 0 is refused.
    let long = dir.path().join("long");
    let report = prepare_poses(&ckpt, &scenes, &long, &options(4, 1, Some(3)), |_, _| {}).unwrap();
    assert_eq!(report.sequences, 0);
    let why = &report.skipped_scenes[&id];
    assert!(why.contains("10") && why.contains("--frames 4"), "{why}");
    let err = prepare_poses(&ckpt, &scenes, &dir.path().join("zero"), &options(4, 1, Some(0)), |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("--stride"), "{err}");
}
