//! `video.mp4` through the `ffmpeg` command-line tool: raw RGB frames on its stdin.

use crate::SynthError;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// An available encoder and its quality arguments.
#[derive(Debug, Clone)]
pub struct VideoEncoder {
    codec_args: Vec<&'static str>,
}

impl VideoEncoder {
    /// libx264 when the local ffmpeg has it, else its built-in MPEG-4 part 2 encoder.
    pub fn detect() -> Result<VideoEncoder, SynthError> {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-encoders"])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| SynthError::Video(format!("cannot run ffmpeg ({e}); install ffmpeg or pass --no-video to skip video.mp4")))?;
        let list = String::from_utf8_lossy(&out.stdout);
        let has = |name: &str| list.lines().any(|l| l.split_whitespace().nth(1) == Some(name));
        if has("libx264") {
            Ok(VideoEncoder { codec_args: vec!["-c:v", "libx264", "-preset", "veryfast", "-crf", "18"] })
        } else if has("mpeg4") {
            Ok(VideoEncoder { codec_args: vec!["-c:v", "mpeg4", "-q:v", "2"] })
        } else {
            Err(SynthError::Video("ffmpeg has neither libx264 nor mpeg4; install a full ffmpeg or pass --no-video".into()))
        }
    }

    /// Starts an encoder writing `path`; feed it with `VideoWriter::push`.
    pub fn start(&self, path: &Path, width: usize, height: usize, fps: u32) -> Result<VideoWriter, SynthError> {
        let size = format!("{width}x{height}");
        let fps = fps.to_string();
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", &size, "-r", &fps, "-i", "-"])
            .args(["-pix_fmt", "yuv420p"])
            .args(&self.codec_args)
            .args(["-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SynthError::Video(format!("cannot start ffmpeg ({e}); install ffmpeg or pass --no-video")))?;
        Ok(VideoWriter { child, path: path.display().to_string() })
    }
}

/// A running encoder.
pub struct VideoWriter {
    child: Child,
    path: String,
}

impl VideoWriter {
    pub fn push(&mut self, rgb: &[u8]) -> Result<(), SynthError> {
        let stdin = self.child.stdin.as_mut().ok_or_else(|| SynthError::Video("ffmpeg stdin is closed".into()))?;
        stdin.write_all(rgb).map_err(|e| SynthError::Video(format!("writing frames to ffmpeg for {} failed: {e}", self.path)))
    }

    pub fn finish(mut self) -> Result<(), SynthError> {
        drop(self.child.stdin.take());
        let out = self.child.wait_with_output().map_err(|e| SynthError::Video(format!("waiting for ffmpeg failed: {e}")))?;
        if !out.status.success() {
            return Err(SynthError::Video(format!("ffmpeg failed on {} ({}): {}", self.path, out.status, String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(())
    }
}
