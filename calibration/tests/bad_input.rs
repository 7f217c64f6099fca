//! What `loc3r-calibrate` and `loc3r-export --activations int8` say about bad input: too few
//! or unreadable frames (with the counts), a bundle already quantized, a cache of another
//! bundle (naming the graph), and int8 activations without a cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use loc3r_calibrate::{calibrate, write_cache, Options};
use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::quant::{ActivationRequest, CalibrationCache, QuantRequest};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_synth::output::write_room;
use loc3r_synth::{generate_room, Options as RoomOptions};

/// A tiny checkpoint, its fp32 bundle and the colour frames of a synthetic room, made once.
struct Fixture {
    _tmp: tempfile::TempDir,
    ckpt: PathBuf,
    bundle: PathBuf,
    frames: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let ckpt = tmp.path().join("ckpt");
        make_tiny(&ckpt, &TinyOptions { seed: 2, ..TinyOptions::default() }, |_, _| {}).unwrap();
        let bundle = tmp.path().join("fp32");
        export_bundle(&ckpt, &bundle, &BundleOptions::default(), |_| {}).unwrap();
        let opts = RoomOptions { seed: 3, frames: 10, width: 160, height: 120, questions: 2, video: false, ..RoomOptions::default() };
        let room = generate_room(&opts, 0).unwrap();
        write_room(tmp.path(), &opts, &room, None).unwrap();
        let frames = tmp.path().join("scenes").join(&room.scene_id).join("color");
        Fixture { _tmp: tmp, ckpt, bundle, frames }
    })
}

/// Runs the binary; (exit code, stderr).
fn calibrate_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loc3r-calibrate")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn too_few_or_unreadable_frames_are_refused_with_the_counts() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("few");
    std::fs::create_dir(&dir).unwrap();
    let mut images: Vec<_> = std::fs::read_dir(&f.frames).unwrap().map(|e| e.unwrap().path()).collect();
    images.sort();
    for img in &images[..2] {
        std::fs::copy(img, dir.join(img.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.join("zz-broken.jpg"), b"not a jpeg").unwrap();
    let out = tmp.path().join("c.json");
    let (code, err) = calibrate_cli(&["--bundle", s(&f.bundle), "--frames", s(&dir), "--out", s(&out)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("2 frames read, 1 unreadable") && err.contains("zz-broken.jpg") && err.contains("at least 8"), "{err}");
    assert!(!out.exists());
    // A missing source names itself.
    let (code, err) = calibrate_cli(&["--bundle", s(&f.bundle), "--frames", "/no/such/frames", "--out", s(&out)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/no/such/frames"), "{err}");
    // --percentile belongs to --method percentile.
    let (code, err) = calibrate_cli(&["--bundle", s(&f.bundle), "--frames", s(&f.frames), "--out", s(&out), "--percentile", "99.9"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--method percentile"), "{err}");
}

#[test]
fn the_cli_writes_a_cache_the_exporter_reads() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c.json");
    let (code, err) = calibrate_cli(&["--bundle", s(&f.bundle), "--frames", s(&f.frames), "--out", s(&out), "--method", "percentile", "--percentile", "99.9"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("frame 10/10"), "progress on stderr: {err}");
    let cache = CalibrationCache::read(&out).unwrap();
    assert_eq!((cache.frames, cache.percentile), (10, Some(99.9)));
    assert_eq!(cache.graphs.keys().map(String::as_str).collect::<Vec<_>>(), ["cut3r_encoder", "projector", "siglip"]);
    for ranges in cache.graphs.values() {
        assert_eq!(ranges.sha256.len(), 64);
        assert!(ranges.values.values().all(|r| r.threshold > 0.0 && r.threshold <= r.min.abs().max(r.max.abs())));
    }
}

#[test]
fn a_quantized_bundle_is_refused() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("int8");
    let weights = QuantRequest { weights: Some("int8".into()), also: vec!["siglip".parse().unwrap()], ..QuantRequest::default() }.resolve().unwrap();
    export_bundle(&f.ckpt, &q, &BundleOptions { weights, ..BundleOptions::default() }, |_| {}).unwrap();
    let (code, err) = calibrate_cli(&["--bundle", s(&q), "--frames", s(&f.frames), "--out", s(&tmp.path().join("c.json"))]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already quantized") && err.contains("siglip") && err.contains("float bundle"), "{err}");
}

#[test]
fn a_cache_of_another_bundle_is_refused_naming_the_graph() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::new(f.bundle.clone(), vec![f.frames.clone()]);
    opts.threads = 1;
    let mut cache = calibrate(&opts, |_| {}).unwrap();
    let export = |cache: &CalibrationCache, name: &str, precision| {
        let path = tmp.path().join(format!("{name}.json"));
        write_cache(cache, &path).unwrap();
        let activations = ActivationRequest { activations: Some("int8".into()), calibration: Some(path) }.resolve(None, &[]).unwrap();
        export_bundle(&f.ckpt, &tmp.path().join(name), &BundleOptions { activations, precision, ..BundleOptions::default() }, |_| {})
    };
    export(&cache, "good", loc3r_export::DType::F32).unwrap();
    // Another precision is another float graph.
    let e = export(&cache, "fp16", loc3r_export::DType::F16).unwrap_err().to_string();
    assert!(e.contains("another `siglip` graph"), "{e}");
    // A cache whose cut3r_encoder came from elsewhere.
    cache.graphs.get_mut("cut3r_encoder").unwrap().sha256 = "0".repeat(64);
    let e = export(&cache, "other", loc3r_export::DType::F32).unwrap_err().to_string();
    assert!(e.contains("another `cut3r_encoder` graph") && e.contains("run loc3r-calibrate"), "{e}");
    assert!(!tmp.path().join("other").exists(), "a refused export writes nothing");
    // --activations int8 without a cache says what to run first.
    let e = ActivationRequest { activations: Some("int8".into()), calibration: None }.resolve(None, &[]).unwrap_err().to_string();
    assert!(e.contains("loc3r-calibrate --bundle"), "{e}");
}

#[test]
fn a_directory_of_videos_gives_one_sequence_per_video_and_counts_the_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let videos = tmp.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    // The ffmpeg that tools/bootstrap installs, as the end-to-end tests use.
    let encoder = loc3r_synth::video::VideoEncoder::detect().unwrap();
    for seed in [5, 6] {
        let opts = RoomOptions { seed, frames: 12, width: 160, height: 120, questions: 1, video: true, ..RoomOptions::default() };
        let room = generate_room(&opts, 0).unwrap();
        let out = tmp.path().join(format!("room{seed}"));
        write_room(&out, &opts, &room, Some(&encoder)).unwrap();
        std::fs::copy(out.join("scenes").join(&room.scene_id).join("video.mp4"), videos.join(format!("room{seed}.mp4"))).unwrap();
    }
    std::fs::write(videos.join("broken.mp4"), b"not a video").unwrap();
    let got = loc3r_calibrate::frames::collect(std::slice::from_ref(&videos), 6, 256).unwrap();
    assert_eq!(got.sequences.len(), 2);
    assert_eq!((got.frames(), got.unreadable), (12, 1));
    assert!(got.first_unreadable.as_deref().unwrap().contains("broken.mp4"));
    // The budget keeps whole sequences first, then part of the next.
    let capped = loc3r_calibrate::frames::collect(&[videos], 6, 9).unwrap();
    assert_eq!(capped.sequences.iter().map(|(_, f)| f.frames.len()).collect::<Vec<_>>(), vec![6, 3]);
}

#[test]
fn the_tensorrt_preset_with_a_cache_quantizes_weights_and_encoder_activations() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::new(f.bundle.clone(), vec![f.frames.clone()]);
    opts.threads = 1;
    let path = tmp.path().join("c.json");
    write_cache(&calibrate(&opts, |_| {}).unwrap(), &path).unwrap();
    let preset = Some("tensorrt-int8".parse().unwrap());
    let weights = QuantRequest { preset, ..QuantRequest::default() }.resolve().unwrap();
    let activations = ActivationRequest { activations: None, calibration: Some(path) }.resolve(preset, &[]).unwrap();
    assert!(activations.is_some(), "--preset tensorrt-int8 --calibration implies --activations int8");
    let out = tmp.path().join("trt");
    export_bundle(&f.ckpt, &out, &BundleOptions { weights, activations, ..BundleOptions::default() }, |_| {}).unwrap();
    let m = loc3r_bundle::Manifest::read(&out).unwrap();
    assert_eq!(m.quantization.as_ref().and_then(|q| q.preset.as_deref()), Some("tensorrt-int8"));
    let a = m.activations.expect("activation record");
    // The tiny config's Linears: SigLIP 2 layers × (q, k, v, out, fc1, fc2), the projector's two
    // MLPs × 2, the CUT3R encoder 2 blocks × (qkv, proj, fc1, fc2).
    assert_eq!((a.graphs.len(), a.linears, a.method.as_str()), (3, 2 * 6 + 2 * 2 + 2 * 4, "entropy"));
    // The runtime opens it on the CPU and answers.
    let model = loc3r::Loc3r::open(&out, &loc3r::SessionOptions { intra_threads: 1, ..Default::default() }).unwrap();
    let pose = model.observe_video(&f.frames, 4).unwrap().localize(None).unwrap();
    assert!(pose.position.x.is_finite() && pose.yaw_deg.is_finite());
}
