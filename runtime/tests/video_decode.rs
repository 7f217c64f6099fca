//! `stages::video` on synthetic videos made with the `ffmpeg` CLI at test time.
//!
//! Every test needs `ffmpeg` on PATH (installed by tools/bootstrap); without it the test
//! prints why it is skipped and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use loc3r::stages::video::{load_frames, read_image, sample_indices, FrameSpec, VideoError};
use ndarray::{Array3, ArrayView3};

fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: `ffmpeg` is not on PATH (tools/bootstrap installs it)");
    }
    ok
}

/// Runs `ffmpeg -y -loglevel error <args>` in `dir` and returns `dir/out`.
fn ffmpeg(dir: &Path, args: &[&str], out: &str) -> PathBuf {
    let status =
        Command::new("ffmpeg").current_dir(dir).args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).arg(out).status().expect("running ffmpeg");
    assert!(status.success(), "ffmpeg {args:?} {out} failed");
    dir.join(out)
}

/// A 64x48 `testsrc` clip (moving pattern and a frame counter) with `frames` frames.
fn testsrc(dir: &Path, rate: &str, frames: usize, extra: &[&str], out: &str) -> PathBuf {
    let src = format!("testsrc=size=64x48:rate={rate}");
    let n = frames.to_string();
    let mut args = vec!["-f", "lavfi", "-i", &src, "-frames:v", &n];
    args.extend_from_slice(extra);
    ffmpeg(dir, &args, out)
}

/// Frame `k` of `video` as extracted by the ffmpeg CLI (select filter, RGB24 PNG).
fn cli_frame(dir: &Path, video: &Path, k: usize) -> Array3<u8> {
    let filter = format!("select=eq(n\\,{k})");
    let out = format!("cli_{k}.png");
    let v = video.to_str().unwrap();
    let png = ffmpeg(dir, &["-i", v, "-vf", &filter, "-frames:v", "1", "-pix_fmt", "rgb24"], &out);
    read_image(&png).unwrap()
}

fn mean_abs_diff(a: ArrayView3<u8>, b: ArrayView3<u8>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b.iter()).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a.len() as f64
}

#[test]
fn mp4_count_fps_indices_and_pixels() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // libx264 with B-frames (default preset): decode order != presentation order.
    let video = testsrc(tmp.path(), "10", 25, &["-c:v", "libx264", "-pix_fmt", "yuv420p"], "x.mp4");
    let f = load_frames(&video, &FrameSpec::new(8)).unwrap();
    assert_eq!(f.total_frames, 25);
    assert_eq!(f.fps, 10.0);
    assert!((f.duration_s - 2.5).abs() < 1e-12);
    let idx: Vec<usize> = f.frames.iter().map(|fr| fr.index).collect();
    assert_eq!(idx, sample_indices(25, 8).unwrap());
    assert_eq!(idx, [0, 3, 6, 10, 13, 17, 20, 24]);
    for fr in &f.frames {
        assert_eq!(fr.rgb.dim(), (48, 64, 3));
        assert!((fr.time_s - fr.index as f64 / 10.0).abs() < 1e-12);
    }
    // consecutive samples differ (testsrc moves)
    for w in f.frames.windows(2) {
        assert!(mean_abs_diff(w[0].rgb.view(), w[1].rgb.view()) > 1.0, "frames {} and {} look identical", w[0].index, w[1].index);
    }
    // each sampled frame is the frame the ffmpeg CLI extracts at that index
    for fr in [&f.frames[0], &f.frames[3], &f.frames[7]] {
        let want = cli_frame(tmp.path(), &video, fr.index);
        let d = mean_abs_diff(fr.rgb.view(), want.view());
        println!("frame {}: mean |diff| vs ffmpeg CLI = {d}", fr.index);
        // the nearest other frame differs by far more than colour-conversion rounding
        assert!(d < 1.0, "frame {}: mean |diff| vs ffmpeg CLI = {d}", fr.index);
    }
}

#[test]
fn mkv_without_frame_count_uses_a_counting_pass() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Matroska stores no nb_frames; NTSC frame rate 30000/1001.
    let video = testsrc(tmp.path(), "30000/1001", 31, &["-c:v", "mpeg4", "-q:v", "3"], "x.mkv");
    let f = load_frames(&video, &FrameSpec::new(32)).unwrap();
    assert_eq!(f.total_frames, 31);
    assert!((f.fps - 30000.0 / 1001.0).abs() < 1e-9, "fps {}", f.fps);
    let idx: Vec<usize> = f.frames.iter().map(|fr| fr.index).collect();
    // T < N: duplicates, exactly numpy's linspace
    assert_eq!(idx, sample_indices(31, 32).unwrap());
    assert_eq!(&idx[..3], &[0, 0, 1]);
    assert_eq!(f.frames[0].rgb, f.frames[1].rgb);
    assert_ne!(f.frames[1].rgb, f.frames[2].rgb);
    assert!((f.duration_s - 31.0 * 1001.0 / 30000.0).abs() < 1e-9);
}

#[test]
fn single_frame_video_repeats_it() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let video = testsrc(tmp.path(), "5", 1, &["-c:v", "libx264"], "one.mp4");
    let f = load_frames(&video, &FrameSpec::new(4)).unwrap();
    assert_eq!(f.total_frames, 1);
    assert!(f.frames.iter().all(|fr| fr.index == 0 && fr.time_s == 0.0));
}

#[test]
fn truncated_video_uses_the_frames_that_decode() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // faststart puts the index (nb_frames = 40) first; then cut the file in half.
    let video = testsrc(tmp.path(), "10", 40, &["-c:v", "mpeg4", "-q:v", "2", "-movflags", "+faststart"], "t.mp4");
    let bytes = std::fs::read(&video).unwrap();
    let cut = tmp.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let f = load_frames(&cut, &FrameSpec::new(8)).unwrap();
    println!("truncated file: {} of 40 frames decode", f.total_frames);
    assert!(f.total_frames > 0 && f.total_frames < 40, "decoded {} frames", f.total_frames);
    let idx: Vec<usize> = f.frames.iter().map(|fr| fr.index).collect();
    assert_eq!(idx, sample_indices(f.total_frames, 8).unwrap());
    assert_eq!(*idx.last().unwrap(), f.total_frames - 1);
}

#[test]
fn bad_video_inputs_are_typed_errors() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = FrameSpec::new(8);
    // missing
    let e = load_frames(&tmp.path().join("nope.mp4"), &spec).unwrap_err();
    assert!(matches!(e, VideoError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("nope.mp4"));
    // garbage bytes
    let junk = tmp.path().join("junk.mp4");
    std::fs::write(&junk, (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>()).unwrap();
    let e = load_frames(&junk, &spec).unwrap_err();
    println!("junk: {e}");
    assert!(matches!(e, VideoError::NotAVideo { .. } | VideoError::NoFrames { .. }), "{e}");
    // empty file
    let empty = tmp.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let e = load_frames(&empty, &spec).unwrap_err();
    assert!(matches!(e, VideoError::NotAVideo { .. }), "{e}");
    // audio only: no video stream
    let wav = ffmpeg(tmp.path(), &["-f", "lavfi", "-i", "sine=frequency=440:duration=0.2"], "a.wav");
    let e = load_frames(&wav, &spec).unwrap_err();
    assert!(matches!(e, VideoError::NotAVideo { .. }), "{e}");
    assert!(e.to_string().contains("no video stream"), "{e}");
    // a valid header whose data is gone: 0 decodable frames
    let video = testsrc(tmp.path(), "10", 20, &["-c:v", "mpeg4", "-movflags", "+faststart"], "z.mp4");
    let bytes = std::fs::read(&video).unwrap();
    let head = tmp.path().join("head.mp4");
    // keep the moov box (at the start with faststart) but not the frame data
    let mdat = bytes.windows(4).position(|w| w == b"mdat").expect("mdat box");
    std::fs::write(&head, &bytes[..mdat + 4]).unwrap();
    let e = load_frames(&head, &spec).unwrap_err();
    println!("header only: {e}");
    assert!(matches!(e, VideoError::NoFrames { .. } | VideoError::NotAVideo { .. }), "{e}");
    // N = 0
    let e = load_frames(&video, &FrameSpec::new(0)).unwrap_err();
    assert!(matches!(e, VideoError::ZeroSamples), "{e}");
}

fn write_png(path: &Path, w: u32, h: u32, value: u8) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([value, (x * 7) as u8, (y * 5) as u8]));
    img.save(path).unwrap();
}

#[test]
fn image_directory_is_a_video() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // written out of order; names sort as 000..011; value encodes the index
    for i in (0..12u8).rev() {
        write_png(&dir.join(format!("{i:03}.png")), 20, 10, i * 10);
    }
    std::fs::write(dir.join(".DS_Store"), b"hidden entries are ignored").unwrap();
    let f = load_frames(dir, &FrameSpec::new(5)).unwrap();
    assert_eq!(f.total_frames, 12);
    assert_eq!(f.fps, 1.0);
    assert_eq!(f.duration_s, 12.0);
    let idx: Vec<usize> = f.frames.iter().map(|fr| fr.index).collect();
    assert_eq!(idx, sample_indices(12, 5).unwrap());
    for fr in &f.frames {
        assert_eq!(fr.rgb.dim(), (10, 20, 3));
        assert_eq!(fr.rgb[[0, 0, 0]], fr.index as u8 * 10, "frame {} is the wrong file", fr.index);
        assert_eq!(fr.time_s, fr.index as f64);
    }
    // fps given
    let f = load_frames(dir, &FrameSpec { image_dir_fps: Some(4.0), ..FrameSpec::new(3) }).unwrap();
    assert_eq!(f.frames[2].time_s, 11.0 / 4.0);
    assert_eq!(f.duration_s, 3.0);
    // jpg is accepted too
    image::RgbImage::from_pixel(20, 10, image::Rgb([1, 2, 3])).save(dir.join("999.jpg")).unwrap();
    assert_eq!(load_frames(dir, &FrameSpec::new(2)).unwrap().total_frames, 13);
}

#[test]
fn bad_image_directories_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = FrameSpec::new(4);
    // empty
    let e = load_frames(tmp.path(), &spec).unwrap_err();
    assert!(matches!(e, VideoError::EmptyDirectory { .. }), "{e}");
    // a non-image file, named in the message
    write_png(&tmp.path().join("a.png"), 4, 4, 0);
    std::fs::write(tmp.path().join("notes.txt"), b"hello").unwrap();
    let e = load_frames(tmp.path(), &spec).unwrap_err();
    assert!(matches!(e, VideoError::NonImageFiles { count: 1, .. }), "{e}");
    assert!(e.to_string().contains("notes.txt"), "{e}");
    std::fs::remove_file(tmp.path().join("notes.txt")).unwrap();
    // a corrupt image
    std::fs::write(tmp.path().join("b.png"), b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let e = load_frames(tmp.path(), &spec).unwrap_err();
    assert!(matches!(e, VideoError::UnreadableImage { .. }), "{e}");
    assert!(e.to_string().contains("b.png"), "{e}");
    // bad fps
    std::fs::remove_file(tmp.path().join("b.png")).unwrap();
    let e = load_frames(tmp.path(), &FrameSpec { image_dir_fps: Some(0.0), ..FrameSpec::new(2) }).unwrap_err();
    assert!(matches!(e, VideoError::BadFps(_)), "{e}");
}
