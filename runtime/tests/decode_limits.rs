//! Decompression bombs: small files that declare huge frames. Each case runs in a child
//! process (this test binary again, one test selected) so that its peak RSS can be read from
//! `wait4`'s resource usage and bounded.
//!
//! Needs `ffmpeg` on PATH to make the inputs; without it the tests print why they are skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use loc3r::stages::video::{load_frames, FrameSpec, VideoError};

/// Set in the child: which case to run and on what.
const CASE_ENV: &str = "LOC3R_DECODE_LIMITS_CASE";

fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: `ffmpeg` is not on PATH (tools/bootstrap installs it)");
    }
    ok
}

/// One black frame of `size` (e.g. "8000x8000") written by the ffmpeg CLI with `codec_args`.
fn black_frame(dir: &Path, name: &str, size: &str, codec_args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("color=c=black:s={size}"))
        .args(["-frames:v", "1"])
        .args(codec_args)
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not write {name}");
    path
}

/// Runs the test `name` of this binary in a child with `case` in its environment; returns
/// whether it passed and its peak resident set in MiB.
// The child is reaped by `wait4` (which `Child::wait` cannot do: it drops the resource usage).
#[allow(clippy::zombie_processes)]
fn run_child(name: &str, case: &str) -> (bool, f64) {
    let exe = std::env::current_exe().expect("test binary path");
    let child = Command::new(exe).args([name, "--exact", "--nocapture", "--test-threads", "1"]).env(CASE_ENV, case).spawn().expect("spawn the child test");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4 failed: {}", std::io::Error::last_os_error());
    let passed = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (passed, usage.ru_maxrss as f64 / 1024.0) // ru_maxrss is in KiB on Linux
}

/// In the child: the case's path and its arguments (`path;frames;max_pixels`).
fn child_case() -> Option<(PathBuf, usize, u64)> {
    let case = std::env::var(CASE_ENV).ok()?;
    let mut parts = case.split(';');
    let path = PathBuf::from(parts.next()?);
    let frames = parts.next()?.parse().ok()?;
    let max_pixels = parts.next()?.parse().ok()?;
    Some((path, frames, max_pixels))
}

/// The child of [`one_big_frame_sampled_16_times_is_decoded_once`]: sampling succeeds and
/// every sample shares one buffer.
#[test]
fn child_shares_the_repeated_frame() {
    let Some((path, frames, max_pixels)) = child_case() else { return };
    let f = load_frames(&path, &FrameSpec::new(frames).with_max_pixels(max_pixels)).expect("an accepted frame size");
    assert_eq!((f.total_frames, f.frames.len()), (1, frames));
    let first = f.frames[0].rgb.as_ptr();
    assert!(f.frames.iter().all(|fr| fr.rgb.as_ptr() == first), "every sample of index 0 shares the decoded pixels");
}

/// The child of the refusal tests: loading fails with `TooManyPixels` naming the size.
#[test]
fn child_refuses_too_many_pixels() {
    let Some((path, frames, max_pixels)) = child_case() else { return };
    let e = load_frames(&path, &FrameSpec::new(frames).with_max_pixels(max_pixels)).expect_err("a frame over the limit");
    assert!(matches!(e, VideoError::TooManyPixels { max, .. } if max == max_pixels), "{e}");
    let message = e.to_string();
    assert!(message.contains("--max-pixels"), "the message says what to do: {message}");
}

#[test]
fn one_big_frame_sampled_16_times_is_decoded_once() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // 13 kB of H.264 that decodes to 8000x8000 (192 MB of RGB). Before the fix each of the
    // 16 samples held its own copy: about 3.3 GB.
    let video = black_frame(tmp.path(), "big.mp4", "8000x8000", &["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let (passed, peak_mib) = run_child("child_shares_the_repeated_frame", &format!("{};16;{}", video.display(), loc3r::DEFAULT_MAX_PIXELS));
    println!("8000x8000 x 16 samples: peak RSS {peak_mib:.0} MiB");
    assert!(passed, "the child failed (see its output above)");
    // One RGB frame (183 MiB) plus the decoder's YUV frames and the test harness.
    assert!(peak_mib < 700.0, "peak RSS {peak_mib:.0} MiB: the frame was copied or decoded more than once");

    // The same video under a 1-megapixel limit is refused from its header.
    let (passed, peak_mib) = run_child("child_refuses_too_many_pixels", &format!("{};16;1000000", video.display()));
    println!("8000x8000 refused: peak RSS {peak_mib:.0} MiB");
    assert!(passed, "the child failed (see its output above)");
    assert!(peak_mib < 100.0, "peak RSS {peak_mib:.0} MiB: the refused frame was decoded");
}

#[test]
fn a_16000_square_png_is_refused_before_decoding() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frames");
    std::fs::create_dir(&dir).unwrap();
    // 250 kB of PNG that decodes to 16000x16000 (256 M pixels, 768 MB of RGB).
    black_frame(&dir, "0000.png", "16000x16000", &["-pix_fmt", "gray"]);
    let (passed, peak_mib) = run_child("child_refuses_too_many_pixels", &format!("{};16;{}", dir.display(), loc3r::DEFAULT_MAX_PIXELS));
    println!("16000x16000 png refused: peak RSS {peak_mib:.0} MiB");
    assert!(passed, "the child failed (see its output above)");
    assert!(peak_mib < 100.0, "peak RSS {peak_mib:.0} MiB: the refused image was decoded");
}
