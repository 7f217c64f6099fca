//! Builds tests/c/test_loc3r.c with the system C compiler against the cdylib cargo built for
//! this test, and runs it on a tiny bundle and a synthetic video: every function of the C ABI,
//! its error paths, threads, and 100 observe/ask/push/localize/free iterations (the model
//! reopened every 10th) with flat RSS. The README's example (examples/c/where_am_i.c) and a
//! C++ use of the header (tests/c/header_cxx.cpp) are built and run the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::tiny::{make_tiny, TinyOptions};

/// Iterations of the leak check, and how much RSS (after `malloc_trim`) may grow after the
/// first tenth of them. On the tiny bundle a leaked model adds ~18 MiB, the two scenes of an
/// iteration ~0.2 MiB (~17 MiB over the 90 iterations checked), a leaked copy of a pushed
/// frame 56 KiB (~5 MiB); with nothing leaked RSS moved by less than 0.5 MiB.
const LEAK_ITERATIONS: u32 = 100;
const LEAK_BOUND_MIB: f64 = 2.0;

/// Positions of the short-context bundle: a few frames of the tiny model (~20 positions each
/// with its timestamp) after the system turn.
const SHORT_CONTEXT: usize = 200;

/// The cdylib cargo built for this test run: in `deps/` next to the test binary. (The copy one
/// level up is only refreshed by `cargo build`, and may be stale.)
fn cdylib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let lib = exe.parent().expect("the test binary's directory").join("libloc3r_c.so");
    assert!(lib.is_file(), "{} is missing; run this test through `cargo test -p loc3r-capi`", lib.display());
    lib
}

/// Compiles one C (or C++, `.cpp`) file of this crate (`source`, relative to it) into `dir`.
fn compile(dir: &Path, source: &str) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = dir.join(Path::new(source).file_stem().expect("a file name"));
    let cxx = source.ends_with(".cpp");
    let (variable, default, standard) = if cxx { ("CXX", "c++", "-std=c++17") } else { ("CC", "cc", "-std=c11") };
    let compiler = std::env::var(variable).unwrap_or_else(|_| default.to_string());
    let out = Command::new(&compiler)
        .arg(standard)
        .args(["-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O1", "-pthread", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join(source))
        .arg("-o")
        .arg(&exe)
        // By path: the library has no SONAME, so the program records this path and loads this
        // very file, whatever LD_LIBRARY_PATH (which cargo test sets to target/debug/) holds.
        .arg(cdylib())
        .arg("-lm")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{compiler}`: {e}"));
    assert!(out.status.success(), "compiling {source} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

fn tiny_bundle(dir: &Path) -> PathBuf {
    let checkpoint = dir.join("checkpoint");
    make_tiny(&checkpoint, &TinyOptions { seed: 1, ..TinyOptions::default() }, |_, _| {}).expect("make-tiny");
    let bundle = dir.join("bundle");
    export_bundle(&checkpoint, &bundle, &BundleOptions::default(), |_| {}).expect("export the tiny bundle");
    bundle
}

/// A copy of `bundle` whose model context holds only a few frames of the test video.
fn short_context_copy(bundle: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("short-bundle");
    std::fs::create_dir(&copy).expect("create the bundle copy");
    for entry in std::fs::read_dir(bundle).expect("read the bundle") {
        let entry = entry.expect("bundle entry");
        std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy a bundle file");
    }
    let path = copy.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read the manifest")).expect("manifest JSON");
    manifest["runtime"]["llm"]["max_positions"] = SHORT_CONTEXT.into();
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).expect("JSON")).expect("write the manifest");
    copy
}

fn ffmpeg(args: &[&str], out: &Path) {
    let status = Command::new("ffmpeg").args(["-loglevel", "error", "-y"]).args(args).arg(out).status().expect("ffmpeg is installed (tools/bootstrap)");
    assert!(status.success(), "ffmpeg failed to write {}", out.display());
}

/// A 160x120 video of 10 frames at 10 fps (ffmpeg's moving `testsrc` pattern), and the same
/// frames as a directory of PNG images.
fn synthetic_video(dir: &Path) -> (PathBuf, PathBuf) {
    let video = dir.join("room.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-frames:v", "10", "-pix_fmt", "yuv420p"], &video);
    let frames = dir.join("frames");
    std::fs::create_dir(&frames).expect("frames dir");
    ffmpeg(&["-i", video.to_str().expect("UTF-8 temp path")], &frames.join("%03d.png"));
    (video, frames)
}

struct Fixture {
    tmp: tempfile::TempDir,
    bundle: PathBuf,
    short_bundle: PathBuf,
    video: PathBuf,
    frames: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bundle = tiny_bundle(tmp.path());
    let short_bundle = short_context_copy(&bundle, tmp.path());
    let (video, frames) = synthetic_video(tmp.path());
    Fixture { tmp, bundle, short_bundle, video, frames }
}

/// Runs the C program; its leak check observes the video's frames as images, or the video.
fn run_c_program(f: &Fixture, leak_on_images: bool, bound_mib: f64) {
    let tmp = &f.tmp;
    let exe = compile(tmp.path(), "tests/c/test_loc3r.c");
    let (bundle, video, frames) = (&f.bundle, &f.video, &f.frames);
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch dir");
    // ORT_DYLIB_PATH (from .cargo/config.toml) is inherited: the library finds ONNX Runtime as
    // the Rust binaries do.
    let out = Command::new(&exe)
        .arg(bundle)
        .arg(&f.short_bundle)
        .arg(video)
        .arg(if leak_on_images { frames } else { video })
        .arg(&scratch)
        .arg(LEAK_ITERATIONS.to_string())
        .arg(bound_mib.to_string())
        .output()
        .expect("run test_loc3r");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "test_loc3r failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("all checks passed") && stdout.contains("leak check: 100 iterations"), "{stdout}");
}

/// Every check; the leak loop observes the video's frames as images (decoding an mp4 leaks in
/// the runtime, see the next test).
#[test]
fn the_c_test_program_passes() {
    let f = fixture();
    run_c_program(&f, true, LEAK_BOUND_MIB);

    let example = compile(f.tmp.path(), "examples/c/where_am_i.c");
    let out = Command::new(&example).arg(&f.bundle).arg(&f.video).output().expect("run where_am_i");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "where_am_i failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("x=") && stdout.contains(" tokens, first after "), "{stdout}");
    let out = Command::new(&example).arg(f.tmp.path().join("no-bundle")).arg(&f.video).output().expect("run where_am_i");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && stderr.starts_with("LOC3R_NOT_FOUND: loc3r_open: bundle directory"), "{stderr}");

    let cxx = compile(f.tmp.path(), "tests/c/header_cxx.cpp");
    let out = Command::new(&cxx).output().expect("run header_cxx");
    assert!(out.status.success(), "header_cxx failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The same with the leak loop observing the mp4 itself: the regression test of a leak in the
/// runtime's video decoder, which read every packet into one reused `ffmpeg::Packet` that
/// `av_read_frame` overwrote without releasing, so each `observe_video` of a video file lost
/// about the video's compressed size (RSS grew ~4 MiB over the 90 iterations checked).
#[test]
fn the_c_test_program_passes_with_an_mp4_in_the_leak_loop() {
    run_c_program(&fixture(), false, LEAK_BOUND_MIB);
}
