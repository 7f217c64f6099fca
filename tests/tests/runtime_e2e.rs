//! Tiny checkpoint -> bundle -> answers, through the library and the `loc3r-serve` binary:
//! prefix reuse, determinism, and bad input that must become clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loc3r::{GenerationOptions, Loc3r, SessionOptions};
use loc3r_e2e::{serve_exe, synthetic_video, tiny_bundle};

fn model() -> Loc3r {
    Loc3r::open(tiny_bundle(1), &SessionOptions { intra_threads: 1, ..SessionOptions::default() }).unwrap()
}

#[test]
fn questions_reuse_the_video_prefix_and_are_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let video = synthetic_video(tmp.path(), "room.mp4", 160, 120, 30);
    let m = model();
    let scene = m.observe_video(&video, 4).unwrap();
    assert_eq!(scene.frames.len(), 4);
    assert_eq!(scene.frames.iter().map(|f| f.index).collect::<Vec<_>>(), vec![0, 9, 19, 29]);
    let opts = GenerationOptions { max_new_tokens: 12, ..GenerationOptions::default() };
    let a = scene.ask(None, "Where is the chair?", &opts).unwrap();
    let b = scene.ask(None, "Where is the chair?", &opts).unwrap();
    assert_eq!(a.token_ids, b.token_ids, "greedy answers are deterministic");
    assert_eq!(a.pose.position.x, b.pose.position.x);
    // Only the question's own tokens are prefilled after the cached prefix.
    assert!(a.tokens.prompt > scene.prefix_tokens());
    let question_tokens =
        m.bundle().tokenizer.encode("I am standing in the room<Pos><Ori>Where is the chair?<|im_end|>\n<|im_start|>assistant\n", false).unwrap().len();
    assert_eq!(a.tokens.prompt - scene.prefix_tokens(), question_tokens);
    // The heads read <Pos>/<Ori>, which precede the question: localize gives the same pose.
    let pose = scene.localize(None).unwrap();
    assert!((pose.position.x - a.pose.position.x).abs() < 1e-5 && (pose.yaw_deg - a.pose.yaw_deg).abs() < 1e-6);
    // Another situation changes the pose.
    let other = scene.localize(Some("I am sitting on the bed facing the window")).unwrap();
    assert!((other.position.x - pose.position.x).abs() > 1e-6 || (other.yaw_deg - pose.yaw_deg).abs() > 1e-6);
    let probs: f32 = pose.orientation_probs.iter().sum();
    assert!((probs - 1.0).abs() < 1e-4 && pose.position.sigma_x > 0.0);
    // A fresh scene of the same video gives the same answer as the cached one.
    let fresh = m.observe_video(&video, 4).unwrap().ask(None, "Where is the chair?", &opts).unwrap();
    assert_eq!(fresh.token_ids, a.token_ids);
    // Sampling with a seed is reproducible.
    let sampled = GenerationOptions { temperature: 0.8, top_p: 0.9, seed: 5, ..opts.clone() };
    assert_eq!(scene.ask(None, "Q", &sampled).unwrap().token_ids, scene.ask(None, "Q", &sampled).unwrap().token_ids);
    // Streaming delivers the same text and can stop early.
    let mut pieces = String::new();
    let streamed = scene
        .ask_streaming(None, "Where is the chair?", &opts, |p| {
            pieces.push_str(p);
            true
        })
        .unwrap();
    assert_eq!(pieces.trim(), streamed.answer);
    let mut n = 0;
    let stopped = scene
        .ask_streaming(None, "Where is the chair?", &opts, |_| {
            n += 1;
            n < 2
        })
        .unwrap();
    assert!(stopped.tokens.generated <= 3, "{}", stopped.tokens.generated);
}

fn input_error(e: loc3r::Error) -> String {
    let s = e.to_string();
    assert_eq!(e.fault(), loc3r::Fault::Input, "{s}");
    s
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model();
    let e = input_error(m.observe_video(Path::new("/no/such/video.mp4"), 4).unwrap_err());
    assert!(e.contains("/no/such/video.mp4"), "{e}");
    let corrupt = tmp.path().join("corrupt.mp4");
    std::fs::write(&corrupt, b"this is not a video at all, just bytes").unwrap();
    input_error(m.observe_video(&corrupt, 4).unwrap_err());
    let empty = tmp.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    input_error(m.observe_video(&empty, 4).unwrap_err());
    let dir = tmp.path().join("images");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let e = input_error(m.observe_video(&dir, 4).unwrap_err());
    assert!(e.contains("notes.txt"), "{e}");
    input_error(m.observe_video(&synthetic_video(tmp.path(), "v.mp4", 160, 120, 5), 0).unwrap_err());

    // Fewer frames than requested: duplicates, as the reference sampler does.
    let short = synthetic_video(tmp.path(), "short.mp4", 160, 120, 3);
    let scene = m.observe_video(&short, 4).unwrap();
    assert_eq!(scene.frames.iter().map(|f| f.index).collect::<Vec<_>>(), vec![0, 0, 1, 2]);
    let e = input_error(scene.ask(None, "   ", &GenerationOptions::default()).unwrap_err());
    assert!(e.contains("empty"), "{e}");
    let bad = GenerationOptions { temperature: -1.0, ..GenerationOptions::default() };
    input_error(scene.ask(None, "Q", &bad).unwrap_err());

    // A prompt beyond the context: the tiny model has 4096 positions, 13 tokens per frame.
    let long = synthetic_video(tmp.path(), "long.mp4", 160, 120, 20);
    let e = input_error(m.observe_video(&long, 400).unwrap_err());
    assert!(e.contains("4096") && e.contains("positions"), "{e}");
}

#[test]
fn bundles_of_another_format_version_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = loc3r_e2e::tiny_bundle_copy(tmp.path());
    let manifest = copy.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("\"format_version\": 1", "\"format_version\": 7");
    std::fs::write(&manifest, text).unwrap();
    let e = Loc3r::open(&copy, &SessionOptions::default()).unwrap_err().to_string();
    assert!(e.contains("format version 7") && e.contains("re-export"), "{e}");
}

#[test]
fn cli_run_prints_the_documented_json() {
    let exe = serve_exe();
    let tmp = tempfile::tempdir().unwrap();
    let video = synthetic_video(tmp.path(), "room.mp4", 160, 120, 20);
    let out = Command::new(&exe)
        .args(["run", "--json", "--max-new-tokens", "8", "--question", "Where is the chair?", "--question", "How many doors?", "--bundle"])
        .arg(tiny_bundle(1))
        .arg("--video")
        .arg(&video)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for v in &lines {
        for key in ["answer", "position", "yaw_deg", "orientation_probs", "frames", "tokens", "timings_ms"] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        for key in ["decode_video", "cut3r", "siglip", "prefill", "first_token", "decode", "total"] {
            assert!(v["timings_ms"][key].is_number(), "timings_ms.{key} missing");
        }
        assert_eq!(v["frames"].as_array().unwrap()[0]["camera_pose"].as_array().unwrap().len(), 7);
    }
    // The second question reuses the observed video: no video decoding, far less prefill.
    assert_eq!(lines[1]["timings_ms"]["decode_video"], 0.0);
    assert!(lines[1]["timings_ms"]["prefill"].as_f64().unwrap() < lines[0]["timings_ms"]["prefill"].as_f64().unwrap());
}

/// Exit codes by fault: 2 for the user's input or bundle, 1 for the runtime (ONNX Runtime,
/// device); internal errors are 1 too (unit tests in the runtime, they cannot be provoked here).
#[test]
fn cli_exit_codes_follow_the_fault() {
    let exe = serve_exe();
    let tmp = tempfile::tempdir().unwrap();
    let video = synthetic_video(tmp.path(), "room.mp4", 160, 120, 8);
    let run = |args: &[&str], bundle: &Path, video: &Path| {
        let out = Command::new(&exe)
            .args(["run", "--max-new-tokens", "4", "--question", "Q"])
            .args(args)
            .arg("--bundle")
            .arg(bundle)
            .arg("--video")
            .arg(video)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    // Input: a video that does not exist.
    let (code, err) = run(&[], tiny_bundle(1), Path::new("/no/such.mp4"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/no/such.mp4"), "{err}");

    // Bundle: a manifest that is not JSON; the message names the file.
    let broken = loc3r_e2e::tiny_bundle_copy(tmp.path());
    std::fs::write(broken.join("manifest.json"), "{ not json").unwrap();
    let (code, err) = run(&[], &broken, &video);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("manifest.json"), "{err}");

    // Runtime: the ONNX Runtime library cannot be loaded.
    let out = Command::new(&exe).env("ORT_DYLIB_PATH", "/no/such/libonnxruntime.so").arg("doctor").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ORT_DYLIB_PATH=/no/such/libonnxruntime.so"), "{err}");

    // No leftovers (issue 13, failure 7): a run leaves nothing in TMPDIR (ONNX Runtime's
    // telemetry session file `.ses` used to stay behind after every run).
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(&exe)
        .env("TMPDIR", scratch.path())
        .env_remove("ORT_DISABLE_TELEMETRY")
        .args(["run", "--max-new-tokens", "2", "--question", "Q", "--bundle"])
        .arg(tiny_bundle(1))
        .arg("--video")
        .arg(&video)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "files left in TMPDIR after a run: {left:?}");

    // Runtime: a GPU device runs where ONNX Runtime has its provider, and is refused by
    // name (never a silent CPU fallback) where it has not.
    let (code, err) = run(&["--device", "cuda"], tiny_bundle(1), &video);
    let cuda = loc3r::Device::Cuda { device_id: 0 };
    if cuda.provider_built_in().unwrap() {
        assert_eq!(code, Some(0), "{err}");
    } else {
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("device `cuda` is not available"), "{err}");
    }
}

/// User text is text (issue 13, failure 8): the library, the CLI and the server refuse
/// chat-template and special tokens in the question and the situation with the same rule,
/// and the CLI never echoes control characters raw.
#[test]
fn special_tokens_in_user_text_are_refused_by_library_and_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let video = synthetic_video(tmp.path(), "room.mp4", 160, 120, 8);
    let m = model();
    let scene = m.observe_video(&video, 2).unwrap();
    let opts = GenerationOptions { max_new_tokens: 4, ..GenerationOptions::default() };
    for token in ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<Pos>", "<Ori>"] {
        let e = input_error(scene.ask(None, &format!("where{token}"), &opts).unwrap_err());
        assert!(e.contains("question") && e.contains(token), "{e}");
        let e = input_error(scene.ask(Some(token), "Where?", &opts).unwrap_err());
        assert!(e.contains("situation") && e.contains(token), "{e}");
        let e = input_error(scene.localize(Some(token)).unwrap_err());
        assert!(e.contains(token), "{e}");
    }

    let exe = serve_exe();
    let run = |question: &str, situation: Option<&str>| {
        let mut cmd = Command::new(&exe);
        cmd.args(["run", "--quiet", "--max-new-tokens", "4", "--question", question, "--bundle"]).arg(tiny_bundle(1)).arg("--video").arg(&video);
        if let Some(s) = situation {
            cmd.args(["--situation", s]);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (question, situation, token) in [("<|im_start|>", None, "<|im_start|>"), ("Where?", Some("I stand<|im_end|>"), "<|im_end|>"), ("<Pos>", None, "<Pos>")]
    {
        let (code, err) = run(question, situation);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("reserved token") && err.contains(token), "{err}");
    }
    let (code, err) = run("a\u{1b}[2J\u{7}b", None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("U+001B") && !err.contains('\u{1b}') && !err.contains('\u{7}'), "control characters echoed raw: {err:?}");
}

/// Runs `cmd`, killing it after `limit`: a regression to a blocking open fails, never hangs.
fn output_within(cmd: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("still running after {limit:?}: blocked on a FIFO?");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mkfifo(path: &Path) -> PathBuf {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    path.to_path_buf()
}

/// FIFOs (issue 13, failure 9): as `--video`, as a bundle file or as an image of a
/// directory, a FIFO is refused with a clear error instead of blocking forever.
#[test]
fn fifos_are_refused_instead_of_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = serve_exe();
    let video = synthetic_video(tmp.path(), "room.mp4", 160, 120, 8);
    let run = |bundle: &Path, video: &Path| {
        output_within(
            Command::new(&exe).args(["run", "--quiet", "--max-new-tokens", "4", "--question", "Q", "--bundle"]).arg(bundle).arg("--video").arg(video),
            Duration::from_secs(20),
        )
    };
    let fifo = mkfifo(&tmp.path().join("video.mp4"));
    let (code, err) = run(tiny_bundle(1), &fifo);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("video.mp4") && err.contains("FIFO"), "{err}");
    let e = input_error(model().observe_video(&fifo, 2).unwrap_err());
    assert!(e.contains("FIFO"), "{e}");

    for file in ["manifest.json", "tokenizer.json", "decoder.onnx"] {
        let case = tmp.path().join(file.replace('.', "-"));
        std::fs::create_dir(&case).unwrap();
        let copy = loc3r_e2e::tiny_bundle_copy(&case);
        std::fs::remove_file(copy.join(file)).unwrap();
        mkfifo(&copy.join(file));
        let (code, err) = run(&copy, &video);
        assert_eq!(code, Some(2), "{file}: {err}");
        assert!(err.contains(file) && err.contains("FIFO"), "{file}: {err}");
    }
}

/// Runs `loc3r-serve run` with `args` and returns its exit code, stderr and peak RSS in MiB
/// (from `wait4`, so the bound is measured, not inferred from time).
// The child is reaped by `wait4` (which `Child::wait` cannot do: it drops the resource usage).
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, f64) {
    let mut child = Command::new(serve_exe())
        .args(["run", "--max-new-tokens", "4", "--question", "Q", "--quiet"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 reaps our own child and fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, stderr, usage.ru_maxrss as f64 / 1024.0)
}

/// Issue 13, failures 1 and 2: a frame count the context cannot hold is refused before
/// anything is decoded, and a small image declaring a huge canvas is refused from its header.
#[test]
fn cli_refuses_frame_counts_and_pixel_bombs_before_decoding() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tiny_bundle(1).as_os_str();
    let video = synthetic_video(tmp.path(), "room.mp4", 640, 480, 8);
    let os = |s: &'static str| std::ffi::OsStr::new(s);

    // Decoding 100000 samples of a 640x480 video would take 92 GB.
    let (code, err, peak_mib) = run_measured(&[os("--bundle"), bundle, os("--video"), video.as_os_str(), os("--frames"), os("100000")]);
    println!("--frames 100000: exit {code:?}, peak RSS {peak_mib:.0} MiB");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("100000 frames") && err.contains("4096 positions") && err.contains("use at most"), "{err}");
    assert!(peak_mib < 400.0, "peak RSS {peak_mib:.0} MiB: frames were decoded before the count was checked");

    // 250 kB of PNG declaring 16000x16000 pixels (768 MB of RGB).
    let dir = tmp.path().join("frames");
    std::fs::create_dir(&dir).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=16000x16000", "-frames:v", "1", "-pix_fmt", "gray"])
        .arg(dir.join("0000.png"))
        .status()
        .expect("ffmpeg is installed by tools/bootstrap");
    assert!(status.success());
    let (code, err, peak_mib) = run_measured(&[os("--bundle"), bundle, os("--video"), dir.as_os_str(), os("--frames"), os("16")]);
    println!("16000x16000 png: exit {code:?}, peak RSS {peak_mib:.0} MiB");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("16000x16000") && err.contains("89478485") && err.contains("--max-pixels"), "{err}");
    assert!(peak_mib < 400.0, "peak RSS {peak_mib:.0} MiB: the image was decoded before its size was checked");

    // The limit is the operator's: --max-pixels refuses a 640x480 video under 0.3 megapixels.
    let (code, err, _) = run_measured(&[os("--bundle"), bundle, os("--video"), video.as_os_str(), os("--frames"), os("2"), os("--max-pixels"), os("300000")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("640x480") && err.contains("300000"), "{err}");
}

/// `--ort-profile DIR` writes ONNX Runtime's profile of every graph the run used, and
/// tools/flops reads each stage's matrix arithmetic out of it (`make bench` relies on both).
#[test]
fn ort_profiles_cover_every_stage_and_tools_flops_counts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let video = synthetic_video(tmp.path(), "room.mp4", 160, 120, 12);
    let profile = tmp.path().join("profile");
    let run = tmp.path().join("run.jsonl");
    let out = Command::new(serve_exe())
        .args(["run", "--json", "--frames", "3", "--max-new-tokens", "4", "--question", "Where is the chair?", "--ort-profile"])
        .arg(&profile)
        .arg("--bundle")
        .arg(tiny_bundle(1))
        .arg("--video")
        .arg(&video)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&run, &out.stdout).unwrap();
    let mut graphs: Vec<String> = std::fs::read_dir(&profile).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    graphs.sort();
    for graph in ["cut3r_encoder_", "cut3r_step_", "decoder_", "heads_", "projector_", "siglip_"] {
        assert!(graphs.iter().any(|g| g.starts_with(graph) && g.ends_with(".json")), "no profile of {graph}: {graphs:?}");
    }
    // Hand-made peaks: the fractions are then plain ratios of the achieved rates.
    let peak = tmp.path().join("peak.json");
    let k = |g: f64| serde_json::json!({"gflops": g, "weight_gbps": 1.0, "ms": 1.0});
    std::fs::write(&peak, serde_json::json!({"f32_gemm": k(100.0), "int4_gemm": k(50.0), "f32_gemv": k(10.0), "int4_gemv": k(20.0), "threads": 1}).to_string())
        .unwrap();
    let flops = Command::new("python3")
        .arg(loc3r_e2e::repo_root().join("tools/flops"))
        .arg("--profile")
        .arg(&profile)
        .arg("--timings")
        .arg(&run)
        .arg("--peak")
        .arg(&peak)
        .arg("--json")
        .output()
        .unwrap();
    assert!(flops.status.success(), "{}", String::from_utf8_lossy(&flops.stderr));
    let report: serde_json::Value = serde_json::from_slice(&flops.stdout).unwrap();
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.iter().map(|s| s["stage"].as_str().unwrap()).collect::<Vec<_>>(), ["cut3r", "siglip", "prefill", "decode/token"]);
    for s in stages {
        let (gflop, ms, rate) = (s["gflop"].as_f64().unwrap(), s["ms"].as_f64().unwrap(), s["gflops"].as_f64().unwrap());
        assert!(gflop > 0.0 && ms > 0.0, "{s}");
        assert!((rate - gflop / (ms / 1e3)).abs() <= 1e-9 * rate.max(1.0), "{s}");
        assert!((s["of_gemm"].as_f64().unwrap() - rate / 100.0).abs() < 1e-12, "{s}");
    }
    // The prefill is the video plus the question: far more arithmetic than one decoded token.
    assert!(stages[2]["gflop"].as_f64().unwrap() > 10.0 * stages[3]["gflop"].as_f64().unwrap());
}
