//! Calibration frames from images or videos, decoded by the runtime's own video stage.
//!
//! A source is a video file, a directory of images (one sequence, sorted by name, as the
//! runtime reads an image directory) or a directory of videos (one sequence each). Each
//! sequence is sampled uniformly like the runtime samples a video (`--frames-per-video`),
//! and runs through CUT3R's recurrence from its start, as an observed video does.

use std::path::{Path, PathBuf};

use loc3r::stages::video::{load_frames, read_image_limited, sample_indices, Frame, FrameSpec, Frames, DEFAULT_MAX_PIXELS};

use crate::error::{Error, Result};

/// Fewer frames give ranges of a handful of images: refused.
pub const MIN_FRAMES: usize = 8;

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The readable sequences, and what could not be read.
#[derive(Debug, Default)]
pub struct Collected {
    pub sequences: Vec<(PathBuf, Frames)>,
    /// Images or videos that could not be decoded.
    pub unreadable: usize,
    /// The first of them, with the reason.
    pub first_unreadable: Option<String>,
}

impl Collected {
    pub fn frames(&self) -> usize {
        self.sequences.iter().map(|(_, f)| f.frames.len()).sum()
    }

    fn skip(&mut self, path: &Path, reason: impl std::fmt::Display) {
        self.unreadable += 1;
        if self.first_unreadable.is_none() {
            self.first_unreadable = Some(format!("`{}`: {reason}", path.display()));
        }
    }
}

/// Reads every source, at most `per_video` frames per sequence and `max_frames` in all;
/// fewer than [`MIN_FRAMES`] readable frames is an error with the counts.
pub fn collect(sources: &[PathBuf], per_video: usize, max_frames: usize) -> Result<Collected> {
    if per_video == 0 || max_frames == 0 {
        return Err(Error::Invalid("--frames-per-video and --max-frames must be at least 1".into()));
    }
    let mut out = Collected::default();
    for source in sources {
        let meta = std::fs::metadata(source)
            .map_err(|e| Error::Source { path: source.clone(), reason: format!("{e}; give a video file, a directory of images or a directory of videos") })?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(source)
                .map_err(|e| Error::Source { path: source.clone(), reason: e.to_string() })?
                .filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.') && e.path().is_file())
                .map(|e| e.path())
                .collect();
            entries.sort();
            let (images, videos): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(|p| is_image(p));
            if images.is_empty() && videos.is_empty() {
                return Err(Error::Source { path: source.clone(), reason: "an empty directory; give images (.png, .jpg) or video files".into() });
            }
            if !images.is_empty() {
                image_sequence(source, &images, per_video, &mut out);
            }
            for video in &videos {
                video_sequence(video, per_video, &mut out);
            }
        } else {
            video_sequence(source, per_video, &mut out);
        }
    }
    // Keep whole sequences up to the budget, then the first part of the next one.
    let mut left = max_frames;
    out.sequences.retain_mut(|(_, frames)| {
        if left == 0 {
            return false;
        }
        frames.frames.truncate(left);
        left -= frames.frames.len();
        true
    });
    let read = out.frames();
    if read < MIN_FRAMES {
        return Err(Error::TooFewFrames { read, unreadable: out.unreadable, first_unreadable: out.first_unreadable.clone(), needed: MIN_FRAMES });
    }
    Ok(out)
}

/// A directory of images as one sequence: `per_video` of them sampled uniformly (all when
/// there are fewer), each decoded by the runtime's image reader; one that fails is skipped
/// and counted.
fn image_sequence(dir: &Path, images: &[PathBuf], per_video: usize, out: &mut Collected) {
    let n = per_video.min(images.len());
    let Ok(picked) = sample_indices(images.len(), n) else { return };
    let mut frames = Vec::new();
    for (k, &i) in picked.iter().enumerate() {
        match read_image_limited(&images[i], DEFAULT_MAX_PIXELS) {
            Ok(rgb) => frames.push(Frame { index: i, time_s: k as f64, rgb: rgb.into_shared() }),
            Err(e) => out.skip(&images[i], e),
        }
    }
    if !frames.is_empty() {
        let total = images.len();
        out.sequences.push((dir.to_path_buf(), Frames { frames, total_frames: total, fps: 1.0, duration_s: total as f64 }));
    }
}

/// A video file, sampled as the runtime samples it; one that cannot be decoded is counted.
fn video_sequence(path: &Path, per_video: usize, out: &mut Collected) {
    match load_frames(path, &FrameSpec::new(per_video)) {
        Ok(frames) => out.sequences.push((path.to_path_buf(), frames)),
        Err(e) => out.skip(path, e),
    }
}
