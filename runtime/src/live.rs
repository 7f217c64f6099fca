//! Live frames for a robot: a camera, a network stream or a file played at its real rate
//! ([`FrameSource`]), turned into the keyframes of a bounded [`Scene`] ([`LiveScene`]).
//!
//! **Sources.** [`FrameSource::open`] takes what a user would type:
//! - a V4L2 device (`/dev/video0`; FFmpeg's `video4linux2` input);
//! - a URL FFmpeg reads (`rtsp://`, `http(s)://`, `udp://`, `tcp://`, `rtmp://`, `srt://`);
//! - a video file, or a directory of png/jpg images (at [`SourceOptions::image_fps`]).
//!
//! Frames are decoded on a thread of their own. With [`SourceOptions::realtime`] (the default)
//! a file or directory is played at its frame rate and, like a camera, the source drops
//! frames the consumer is too slow for (counted in [`FrameSource::dropped`]) instead of
//! queueing them: a robot wants the newest frame, not a backlog. Without it every frame is
//! delivered, as fast as the consumer takes them. A source that sends nothing for
//! [`SourceOptions::stall_timeout`] is an error ([`VideoError::Stalled`]), and FFmpeg's
//! blocking reads are interrupted then too, so a dead camera or a silent server never hangs
//! the caller. Frames over [`SourceOptions::max_pixels`] are refused as files are.
//!
//! **Keyframes and memory.** A scene's prompt grows with every frame it holds, so a long run
//! cannot keep every frame. [`LiveScene::offer`] takes a frame into the scene only when the
//! [`KeyframePolicy`] says so: every k-th frame of the source, and (optionally) only when the
//! camera moved or turned enough since the last keyframe, judged by CUT3R's pose of the
//! candidate (one CUT3R step from the scene's state; SigLIP and the LLM run only for frames
//! taken). A scene holds at most [`KeyframePolicy::window`] keyframes. When one more must be
//! taken, a new scene starts from the newest `window / 2` keyframes and the new one, so
//! memory stays bounded: at most `window` frames' RGB plus one scene of `window` frames. The
//! new scene's coordinates are anchored at its own first keyframe (as every scene's are);
//! [`LiveScene::anchor`] names that frame, so a caller can chain poses across restarts.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndarray::{ArcArray, Ix3};
use video_rs::ffmpeg;

use crate::error::{Error, Result};
use crate::stages::video::{self, Frame, Frames, VideoError, DEFAULT_MAX_PIXELS};
use crate::{Loc3r, Scene};

/// How a [`FrameSource`] reads.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Play files and image directories at their frame rate and drop frames the consumer
    /// is too slow for (a camera's behaviour); off: every frame, as fast as it is taken.
    pub realtime: bool,
    /// No frame for this long is [`VideoError::Stalled`].
    pub stall_timeout: Duration,
    /// Most pixels per frame (as for video files).
    pub max_pixels: u64,
    /// Frame rate of an image directory.
    pub image_fps: f64,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions { realtime: true, stall_timeout: Duration::from_secs(10), max_pixels: DEFAULT_MAX_PIXELS, image_fps: 10.0 }
    }
}

/// What kind of source a spec names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Device,
    Url,
    File,
    ImageDir,
}

/// One decoded frame of a live source.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    /// Position in the source (0-based, frames dropped by a realtime source included).
    pub index: usize,
    /// Seconds since the source's first frame (its timestamps when it has them).
    pub time_s: f64,
    /// RGB `[H, W, 3]`, shared.
    pub rgb: ArcArray<u8, Ix3>,
}

type Delivery = std::result::Result<LiveFrame, VideoError>;

/// Frames from a camera, stream, file or image directory, decoded on a background thread.
pub struct FrameSource {
    name: String,
    kind: SourceKind,
    fps: f64,
    rx: Receiver<Delivery>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
    stall_timeout: Duration,
    worker: Option<JoinHandle<()>>,
    ended: bool,
}

impl FrameSource {
    /// Opens `spec` (a device path, URL, video file or image directory) and starts decoding.
    /// Errors (no such device, not a video, unreachable URL) come from here, not from the
    /// first frame.
    pub fn open(spec: &str, opts: &SourceOptions) -> std::result::Result<FrameSource, VideoError> {
        let (kind, target) = classify(spec)?;
        if opts.stall_timeout.is_zero() {
            return Err(VideoError::Source { source_name: spec.into(), reason: "the stall timeout must be positive".into() });
        }
        if !(opts.image_fps.is_finite() && opts.image_fps > 0.0) {
            return Err(VideoError::BadFps(opts.image_fps));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        // A small queue: a realtime source drops what does not fit, a paced one blocks.
        let (tx, rx) = sync_channel::<Delivery>(2);
        let (ready_tx, ready_rx) = sync_channel::<std::result::Result<f64, VideoError>>(1);
        let worker = {
            let (stop, dropped, opts, name) = (stop.clone(), dropped.clone(), opts.clone(), spec.to_string());
            let out = Outlet { tx, stop: stop.clone(), dropped, drop_when_full: opts.realtime };
            std::thread::Builder::new()
                .name("loc3r-frames".into())
                .spawn(move || match kind {
                    SourceKind::ImageDir => read_image_dir(&target, &opts, ready_tx, out),
                    _ => read_ffmpeg(&target, kind, &opts, &name, stop, ready_tx, out),
                })
                .map_err(|e| VideoError::Source { source_name: spec.into(), reason: format!("starting the decoder thread: {e}") })?
        };
        // Opening a network source waits at most the stall timeout (FFmpeg is interrupted then).
        let fps = match ready_rx.recv_timeout(opts.stall_timeout + Duration::from_secs(1)) {
            Ok(Ok(fps)) => fps,
            Ok(Err(e)) => {
                let _ = worker.join();
                return Err(e);
            }
            Err(_) => {
                stop.store(true, Ordering::Release);
                return Err(VideoError::Stalled { source_name: spec.into(), seconds: opts.stall_timeout.as_secs_f64() });
            }
        };
        Ok(FrameSource { name: spec.into(), kind, fps, rx, stop, dropped, stall_timeout: opts.stall_timeout, worker: Some(worker), ended: false })
    }

    /// The next frame; `Ok(None)` once a file or directory has ended (a camera or stream
    /// that ends is also `None`). Waits at most the stall timeout.
    pub fn next_frame(&mut self) -> std::result::Result<Option<LiveFrame>, VideoError> {
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv_timeout(self.stall_timeout) {
            Ok(Ok(frame)) => Ok(Some(frame)),
            Ok(Err(e)) => {
                self.ended = true;
                Err(e)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Ok(None)
            }
            Err(RecvTimeoutError::Timeout) => {
                self.ended = true;
                self.stop.store(true, Ordering::Release);
                Err(VideoError::Stalled { source_name: self.name.clone(), seconds: self.stall_timeout.as_secs_f64() })
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The source's nominal frame rate (frames per second).
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// Frames a realtime source dropped because the consumer was busy.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Iterator for FrameSource {
    type Item = std::result::Result<LiveFrame, VideoError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

impl Drop for FrameSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblock a worker waiting on a full queue, then wait for it (it checks `stop` between
        // frames and FFmpeg's interrupt callback checks it during reads).
        while self.rx.try_recv().is_ok() {}
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Sorts a spec into a kind and the path or URL FFmpeg opens.
fn classify(spec: &str) -> std::result::Result<(SourceKind, String), VideoError> {
    let source_err = |reason: &str| VideoError::Source { source_name: spec.into(), reason: reason.into() };
    if spec.is_empty() || spec.contains('\0') {
        return Err(source_err("empty or contains a NUL byte; name a device (/dev/video0), a URL, a video file or an image directory"));
    }
    if let Some(path) = spec.strip_prefix("file://") {
        return classify(path);
    }
    if let Some((scheme, _)) = spec.split_once("://") {
        const SCHEMES: [&str; 8] = ["rtsp", "rtsps", "http", "https", "udp", "tcp", "rtmp", "srt"];
        if SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Ok((SourceKind::Url, spec.into()));
        }
        return Err(source_err(&format!("unsupported URL scheme `{scheme}`; use one of {}", SCHEMES.join(", "))));
    }
    let path = Path::new(spec);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) if spec.starts_with("/dev/") => {
            return Err(source_err("no such device; list cameras with `v4l2-ctl --list-devices` (is the camera plugged in, and may this user open it?)"))
        }
        Err(_) => return Err(VideoError::NotFound { path: path.to_path_buf() }),
    };
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_dir() {
        Ok((SourceKind::ImageDir, spec.into()))
    } else if ft.is_char_device() {
        Ok((SourceKind::Device, spec.into()))
    } else if ft.is_file() {
        Ok((SourceKind::File, spec.into()))
    } else {
        Err(source_err(&format!("is {}, not a camera device, a video file or a directory", loc3r_bundle::files::kind(&ft))))
    }
}

/// The worker's side of the queue.
struct Outlet {
    tx: SyncSender<Delivery>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
    drop_when_full: bool,
}

impl Outlet {
    /// Delivers a frame or an error; false when the consumer is gone or asked to stop.
    fn deliver(&self, d: Delivery) -> bool {
        if self.stop.load(Ordering::Acquire) {
            return false;
        }
        if self.drop_when_full && d.is_ok() {
            match self.tx.try_send(d) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        } else {
            self.tx.send(d).is_ok()
        }
    }

    /// Sleeps until `start + time_s` (pacing a file at its frame rate); false if stopped.
    fn wait_until(&self, start: Instant, time_s: f64) -> bool {
        let due = start + Duration::from_secs_f64(time_s.max(0.0));
        while Instant::now() < due {
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            std::thread::sleep((due - Instant::now()).min(Duration::from_millis(20)));
        }
        !self.stop.load(Ordering::Acquire)
    }
}

fn read_image_dir(dir: &str, opts: &SourceOptions, ready: SyncSender<std::result::Result<f64, VideoError>>, out: Outlet) {
    let files = match video::list_image_dir(Path::new(dir)) {
        Ok(f) => f,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(opts.image_fps));
    let start = Instant::now();
    for (index, file) in files.iter().enumerate() {
        let time_s = index as f64 / opts.image_fps;
        if opts.realtime && !out.wait_until(start, time_s) {
            return;
        }
        let d = video::read_image_limited(file, opts.max_pixels).map(|rgb| LiveFrame { index, time_s, rgb: rgb.into_shared() });
        let failed = d.is_err();
        if !out.deliver(d) || failed {
            return;
        }
    }
}

/// Milliseconds since `epoch`, for the interrupt callback's deadline.
fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

fn read_ffmpeg(
    target: &str,
    kind: SourceKind,
    opts: &SourceOptions,
    name: &str,
    stop: Arc<AtomicBool>,
    ready: SyncSender<std::result::Result<f64, VideoError>>,
    out: Outlet,
) {
    let source_err = |reason: String| VideoError::Source { source_name: name.into(), reason };
    if let Err(e) = video::init_ffmpeg() {
        let _ = ready.send(Err(e));
        return;
    }
    if kind == SourceKind::Device {
        // SAFETY: registers FFmpeg's capture devices (v4l2); idempotent and thread-safe in FFmpeg ≥ 4.
        unsafe { ffmpeg::ffi::avdevice_register_all() };
    }
    // FFmpeg polls this during blocking opens and reads: stop, or no progress for the stall timeout.
    let epoch = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));
    let stall_ms = opts.stall_timeout.as_millis() as u64;
    let interrupt = {
        let (stop, progress) = (stop.clone(), progress.clone());
        move || stop.load(Ordering::Acquire) || millis_since(epoch) > progress.load(Ordering::Acquire) + stall_ms
    };
    let mut dict = ffmpeg::Dictionary::new();
    if kind == SourceKind::Url {
        // Socket-level timeouts as well (µs), for protocols that honour them.
        dict.set("rw_timeout", &(stall_ms * 1000).to_string());
        if target.starts_with("rtsp") {
            dict.set("rtsp_transport", "tcp");
        }
    }
    let mut input = match ffmpeg::format::input_with_interrupt_and_dictionary(&PathBuf::from(target), interrupt, dict) {
        Ok(i) => i,
        Err(e) => {
            let _ = ready.send(Err(source_err(format!("cannot open it: {e}"))));
            return;
        }
    };
    let Some(stream) = input.streams().best(ffmpeg::media::Type::Video) else {
        let _ = ready.send(Err(source_err("it has no video stream".into())));
        return;
    };
    let (stream_index, time_base) = (stream.index(), stream.time_base());
    let fps = [stream.avg_frame_rate(), stream.rate()]
        .into_iter()
        .find(|r| r.numerator() > 0 && r.denominator() > 0)
        .map(|r| r.numerator() as f64 / r.denominator() as f64)
        .unwrap_or(30.0);
    let decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters()).and_then(|c| c.decoder().video());
    let mut decoder = match decoder {
        Ok(d) => d,
        Err(e) => {
            let _ = ready.send(Err(source_err(format!("no decoder for its video: {e}"))));
            return;
        }
    };
    if let Err(e) = video::check_pixels(Path::new(name), decoder.width() as u64, decoder.height() as u64, opts.max_pixels) {
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(fps));
    let paced = opts.realtime && kind == SourceKind::File;
    let tb = time_base.numerator() as f64 / time_base.denominator().max(1) as f64;
    let mut conv = video::Converter::default();
    let mut frame = ffmpeg::frame::Video::empty();
    let (start, mut index, mut first_pts) = (Instant::now(), 0usize, None::<i64>);
    let mut receive = |decoder: &mut ffmpeg::decoder::Video, index: &mut usize| -> bool {
        while decoder.receive_frame(&mut frame).is_ok() {
            let time_s = match frame.timestamp() {
                Some(pts) if tb > 0.0 => (pts - *first_pts.get_or_insert(pts)) as f64 * tb,
                _ => *index as f64 / fps,
            };
            if paced && !out.wait_until(start, time_s) {
                return false;
            }
            let d = video::check_pixels(Path::new(name), frame.width() as u64, frame.height() as u64, opts.max_pixels)
                .and_then(|_| conv.convert(&frame).map_err(|reason| source_err(format!("converting a frame: {reason}"))))
                .map(|rgb| LiveFrame { index: *index, time_s, rgb: rgb.into_shared() });
            *index += 1;
            let failed = d.is_err();
            if !out.deliver(d) || failed {
                return false;
            }
        }
        true
    };
    loop {
        progress.store(millis_since(epoch), Ordering::Release);
        // A fresh packet per read (see the video stage: a reused one leaks its buffer).
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(e) => {
                if !stop.load(Ordering::Acquire) {
                    let stalled = millis_since(epoch) > progress.load(Ordering::Acquire) + stall_ms;
                    out.deliver(Err(if stalled {
                        VideoError::Stalled { source_name: name.into(), seconds: opts.stall_timeout.as_secs_f64() }
                    } else {
                        source_err(format!("reading it: {e}"))
                    }));
                }
                return;
            }
        }
        if packet.stream() != stream_index {
            continue;
        }
        // A corrupt packet: the decoder conceals or drops it.
        let _ = decoder.send_packet(&packet);
        if !receive(&mut decoder, &mut index) {
            return;
        }
    }
    let _ = decoder.send_eof();
    receive(&mut decoder, &mut index);
}

/// Which frames of a live source become keyframes of the scene, and how many it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyframePolicy {
    /// Consider every k-th frame of the source (1: every frame).
    pub every: usize,
    /// Take a considered frame only if the camera moved at least this far (metres, in
    /// CUT3R's scale) since the last keyframe ...
    pub min_move_m: Option<f32>,
    /// ... or turned at least this much (degrees). Both `None`: take every considered frame.
    pub min_turn_deg: Option<f32>,
    /// Most keyframes in one scene (see the module docs: a full scene restarts from its
    /// newest half).
    pub window: usize,
}

impl Default for KeyframePolicy {
    fn default() -> Self {
        KeyframePolicy { every: 10, min_move_m: None, min_turn_deg: None, window: 16 }
    }
}

impl std::fmt::Debug for LiveScene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveScene").field("policy", &self.policy).field("keyframes", &self.keyframes.len()).field("offered", &self.offered).finish()
    }
}

/// What [`LiveScene::offer`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Not a keyframe (not the k-th frame, or the camera had not moved enough).
    Skipped,
    /// Appended to the scene.
    Added,
    /// The scene was full: a new scene started from its newest keyframes and this one.
    Restarted,
}

/// A scene fed from a live source under a [`KeyframePolicy`], with bounded memory.
pub struct LiveScene {
    model: Loc3r,
    policy: KeyframePolicy,
    scene: Option<Scene>,
    /// The current scene's keyframes (their RGB, to restart from).
    keyframes: VecDeque<LiveFrame>,
    offered: usize,
    restarts: usize,
}

impl LiveScene {
    /// Checks the policy against the model (a window must fit the context) and starts empty.
    pub fn new(model: &Loc3r, policy: KeyframePolicy) -> Result<LiveScene> {
        if policy.every == 0 {
            return Err(Error::Input("the keyframe policy's `every` must be at least 1".into()));
        }
        if policy.window < 2 {
            return Err(Error::Input(format!("a keyframe window of {} frames is too small; use at least 2", policy.window)));
        }
        for (name, v) in [("min_move_m", policy.min_move_m), ("min_turn_deg", policy.min_turn_deg)] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(Error::Input(format!("the keyframe policy's {name} must be a finite number >= 0")));
            }
        }
        model.check_frame_count(policy.window).map_err(|e| Error::Input(format!("keyframe window of {} frames: {e}", policy.window)))?;
        Ok(LiveScene { model: model.clone(), policy, scene: None, keyframes: VecDeque::new(), offered: 0, restarts: 0 })
    }

    /// Offers the next frame of the source; see [`Offered`]. Frames must come in source
    /// order (times non-decreasing). On error the scene is unchanged.
    pub fn offer(&mut self, frame: LiveFrame) -> Result<Offered> {
        let n = self.offered;
        self.offered += 1;
        if n % self.policy.every != 0 {
            return Ok(Offered::Skipped);
        }
        if let (Some(scene), Some(last)) = (&self.scene, self.keyframes.back()) {
            if frame.time_s < last.time_s {
                return Err(Error::Input(format!(
                    "frame {} at {:.3} s is before the last keyframe at {:.3} s; frames must come in order",
                    frame.index, frame.time_s, last.time_s
                )));
            }
            if self.policy.min_move_m.is_some() || self.policy.min_turn_deg.is_some() {
                let anchor = self.keyframes[0].time_s;
                let candidate = scene.peek_camera_pose(&frames_of(std::slice::from_ref(&frame), anchor))?;
                let previous = scene.frames.last().map(|f| f.camera_pose).unwrap_or_default();
                let (moved, turned) = pose_change(&previous, &candidate);
                let far = self.policy.min_move_m.is_some_and(|m| moved >= m);
                let turned_enough = self.policy.min_turn_deg.is_some_and(|d| turned >= d);
                if !far && !turned_enough {
                    return Ok(Offered::Skipped);
                }
            }
        }
        match &mut self.scene {
            Some(scene) if self.keyframes.len() < self.policy.window => {
                let anchor = self.keyframes[0].time_s;
                scene.push_frames(&frames_of(std::slice::from_ref(&frame), anchor))?;
                self.keyframes.push_back(frame);
                Ok(Offered::Added)
            }
            _ => {
                let restarting = self.scene.is_some();
                let keep = if restarting { self.policy.window / 2 } else { 0 };
                let mut frames: Vec<LiveFrame> = self.keyframes.iter().skip(self.keyframes.len() - keep.min(self.keyframes.len())).cloned().collect();
                frames.push(frame);
                let scene = self.model.observe_frames(&frames_of(&frames, frames[0].time_s))?;
                self.scene = Some(scene);
                self.keyframes = frames.into();
                if restarting {
                    self.restarts += 1;
                    Ok(Offered::Restarted)
                } else {
                    Ok(Offered::Added)
                }
            }
        }
    }

    /// The current scene (None before the first keyframe).
    pub fn scene(&self) -> Option<&Scene> {
        self.scene.as_ref()
    }

    /// The source frame the current scene's coordinates are anchored at: `(index, time_s)`.
    pub fn anchor(&self) -> Option<(usize, f64)> {
        self.keyframes.front().map(|f| (f.index, f.time_s))
    }

    /// Keyframes in the current scene.
    pub fn keyframes(&self) -> usize {
        self.keyframes.len()
    }

    /// Frames offered so far.
    pub fn offered(&self) -> usize {
        self.offered
    }

    /// How many times a full scene restarted from its newest keyframes.
    pub fn restarts(&self) -> usize {
        self.restarts
    }

    pub fn policy(&self) -> &KeyframePolicy {
        &self.policy
    }
}

/// Live frames as a scene's frames, with times relative to the scene's anchor (a scene's
/// time instruction starts at its first frame, as a video's does).
fn frames_of(frames: &[LiveFrame], anchor_s: f64) -> Frames {
    let frames: Vec<Frame> = frames.iter().map(|f| Frame { index: f.index, time_s: f.time_s - anchor_s, rgb: f.rgb.clone() }).collect();
    let duration_s = frames.last().map_or(0.0, |f| f.time_s);
    Frames { total_frames: frames.len(), fps: 0.0, duration_s, frames }
}

/// Distance (translation units) and angle (degrees) between two `[tx, ty, tz, qw, qx, qy, qz]`
/// camera poses.
pub fn pose_change(a: &[f32; 7], b: &[f32; 7]) -> (f32, f32) {
    let moved = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
    let norm = |q: &[f32]| q.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    let dot: f32 = a[3..].iter().zip(&b[3..]).map(|(x, y)| x * y).sum::<f32>() / (norm(&a[3..]) * norm(&b[3..]));
    let turned = 2.0 * dot.abs().min(1.0).acos().to_degrees();
    (moved, turned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pose_change_measures_translation_and_rotation() {
        let id = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        let half = std::f32::consts::FRAC_PI_4; // a 90° turn about y: q = (cos 45°, 0, sin 45°, 0)
        let turned = [3.0, 4.0, 0.0, half.cos(), 0.0, half.sin(), 0.0];
        let (moved, angle) = pose_change(&id, &turned);
        assert!((moved - 5.0).abs() < 1e-6 && (angle - 90.0).abs() < 1e-3, "{moved} {angle}");
        // q and -q are the same rotation.
        let neg = [0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0];
        assert!(pose_change(&id, &neg).1.abs() < 1e-3);
    }

    #[test]
    fn specs_are_sorted_into_kinds_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(classify(dir.path().to_str().unwrap()).unwrap().0, SourceKind::ImageDir);
        assert_eq!(classify("rtsp://camera.local/stream").unwrap().0, SourceKind::Url);
        assert_eq!(classify("/dev/null").unwrap().0, SourceKind::Device);
        let e = classify("/dev/video97").unwrap_err().to_string();
        assert!(e.contains("no such device") && e.contains("v4l2-ctl"), "{e}");
        assert!(matches!(classify("/nowhere/x.mp4"), Err(VideoError::NotFound { .. })));
        let e = classify("gopher://x").unwrap_err().to_string();
        assert!(e.contains("unsupported URL scheme"), "{e}");
    }
}
