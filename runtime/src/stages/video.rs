//! Stage `video`: a video file (or a directory of images) -> `N` uniformly sampled RGB frames.
//!
//! Reference: docs/prompt.md §1 (LLaVA-Video `process_video_with_decord` with
//! `force_sample`): indices are NumPy `linspace(0, T-1, N, dtype=int)`, `time_s = index / fps`,
//! `duration_s = T / fps`, where `fps` is the stream's average frame rate (decord
//! `get_avg_fps()`).
//!
//! Decoding uses `video-rs` 0.12 for opening the input ([`video_rs::Reader`], which handles
//! paths and URLs) and its re-exported `ffmpeg-next` for the decoder itself. We do not use
//! `Decoder::decode_iter()` because video-rs converts *every* decoded frame to RGB (sws_scale
//! plus an ndarray copy); here only the sampled frames are converted, the others are dropped
//! in the decoder's native pixel format.
//!
//! Frame count: the container's `nb_frames` is used when it is present (> 0, e.g. MP4/MOV);
//! it is then *verified* by the decoding pass itself, which has to run to the last frame
//! anyway (the last sample is pinned to `T-1`). If the decoded count differs (truncated or
//! lying header), or `nb_frames` is absent (MKV, WebM, many AVIs), the frames are counted by a
//! full decode pass and the sampled frames are decoded in a second pass. So `total_frames`
//! is always the number of frames FFmpeg actually decodes.
//!
//! Pixel conversion: FFmpeg swscale to RGB24 with bicubic chroma interpolation, the flags of
//! the scale filter that decord's `format=rgb24` filter graph inserts. Colour matrix and
//! range come from the stream (swscale's defaults when unspecified, i.e. BT.601 limited).
//!
//! Memory: a small file can declare a huge canvas (a decompression bomb). The frame size is
//! read from the container's codec parameters or the image header *before* anything is
//! decoded and refused past [`FrameSpec::max_pixels`]; the decoder is also told the limit
//! (`AVCodecContext.max_pixels`), so a stream that grows mid-way is refused by FFmpeg before
//! it allocates. Each distinct sampled index is decoded and stored once: repeated samples
//! (`T < N`) share its pixels. So the decoded frames of one source take at most
//! `distinct sampled frames × width × height × 3` bytes (see README.md, Limits).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{ArcArray, Array3, Ix3};
use rayon::prelude::*;
use video_rs::ffmpeg;

/// Errors of the video stage. Every message names the input and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("video input `{}` does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read `{}`: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("`{}` is not a readable video ({reason}); give a file FFmpeg can decode (mp4, mkv, webm, avi, ...) or a directory of png/jpg images", path.display())]
    NotAVideo { path: PathBuf, reason: String },
    #[error("`{}` contains no decodable video frames", path.display())]
    NoFrames { path: PathBuf },
    #[error("decoding `{}` failed: {reason}", path.display())]
    Decode { path: PathBuf, reason: String },
    #[error("`{}` has no usable frame rate (avg_frame_rate and r_frame_rate are both 0 or invalid)", path.display())]
    NoFrameRate { path: PathBuf },
    #[error("image directory `{}` contains {count} non-image entr{} (first: `{first}`); only .png, .jpg and .jpeg files are allowed", dir.display(), if *count == 1 { "y" } else { "ies" })]
    NonImageFiles { dir: PathBuf, first: String, count: usize },
    #[error("image directory `{}` contains no .png/.jpg/.jpeg files", dir.display())]
    EmptyDirectory { dir: PathBuf },
    #[error("cannot read image `{}`: {reason}", path.display())]
    UnreadableImage { path: PathBuf, reason: String },
    #[error("cannot sample from a source with 0 frames")]
    ZeroFrames,
    #[error("asked for 0 frames; the number of frames must be at least 1")]
    ZeroSamples,
    #[error("fps must be a positive finite number, got {0}")]
    BadFps(f64),
    #[error("FFmpeg initialisation failed: {0}")]
    Init(String),
    #[error("`{}` has frames of {width}x{height} pixels, more than the limit of {max} pixels per frame; downscale it (e.g. `ffmpeg -i IN -vf scale=1920:-2 OUT`) or raise --max-pixels", path.display())]
    TooManyPixels { path: PathBuf, width: u64, height: u64, max: u64 },
    /// A live source (camera, stream) that cannot be opened or read.
    #[error("live source `{source_name}`: {reason}")]
    Source { source_name: String, reason: String },
    /// A live source that sent no frame for too long.
    #[error("live source `{source_name}` stalled: no frame for {seconds:.1} s (check the camera or stream, or raise the stall timeout)")]
    Stalled { source_name: String, seconds: f64 },
}

/// Default of [`FrameSpec::max_pixels`]: Pillow's decompression-bomb limit
/// (`Image.MAX_IMAGE_PIXELS`, 1024 · 1024 · 1024 / 4 / 3), about 268 MB of RGB per frame.
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

/// What to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSpec {
    /// `N`, the number of frames to sample (32 for Loc3R).
    pub num_frames: usize,
    /// Frame rate of a directory of images (default 1). Ignored for video files, whose
    /// average frame rate comes from the stream.
    pub image_dir_fps: Option<f64>,
    /// Most pixels (width × height) a frame may have; larger sources are refused before they
    /// are decoded ([`VideoError::TooManyPixels`]). Default [`DEFAULT_MAX_PIXELS`].
    pub max_pixels: u64,
}

impl FrameSpec {
    pub fn new(num_frames: usize) -> Self {
        FrameSpec { num_frames, image_dir_fps: None, max_pixels: DEFAULT_MAX_PIXELS }
    }

    /// The same spec with another per-frame pixel limit.
    pub fn with_max_pixels(self, max_pixels: u64) -> Self {
        FrameSpec { max_pixels, ..self }
    }
}

/// Refuses a `width × height` frame past `max` pixels.
pub(crate) fn check_pixels(path: &Path, width: u64, height: u64, max: u64) -> Result<(), VideoError> {
    if width.saturating_mul(height) > max {
        return Err(VideoError::TooManyPixels { path: path.to_path_buf(), width, height, max });
    }
    Ok(())
}

/// One sampled frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Index in the source (0-based, decode order = presentation order).
    pub index: usize,
    /// `index / fps` in seconds.
    pub time_s: f64,
    /// RGB, `[H, W, 3]`; shared (not copied) by the samples of one source index.
    pub rgb: ArcArray<u8, Ix3>,
}

/// The sampled frames of a source, in sample order (indices non-decreasing; duplicates
/// when the source has fewer than `N` frames).
#[derive(Debug, Clone)]
pub struct Frames {
    pub frames: Vec<Frame>,
    /// `T`, the number of frames of the source.
    pub total_frames: usize,
    /// Average frame rate (frames per second).
    pub fps: f64,
    /// `T / fps` in seconds.
    pub duration_s: f64,
}

/// NumPy `linspace(0, T-1, N, dtype=int)` (docs/prompt.md §1): `step = (T-1)/(N-1)`
/// in f64, `idx_k = floor(k·step)`, the last index pinned to `T-1`. `N = 1` gives `[0]` like
/// NumPy. Duplicates when `T < N`.
pub fn sample_indices(total_frames: usize, n: usize) -> Result<Vec<usize>, VideoError> {
    if total_frames == 0 {
        return Err(VideoError::ZeroFrames);
    }
    if n == 0 {
        return Err(VideoError::ZeroSamples);
    }
    if n == 1 {
        return Ok(vec![0]);
    }
    let last = total_frames - 1;
    let step = last as f64 / (n - 1) as f64;
    let mut idx: Vec<usize> = (0..n).map(|k| ((k as f64 * step).floor() as usize).min(last)).collect();
    idx[n - 1] = last;
    Ok(idx)
}

/// Reads `spec.num_frames` uniformly sampled frames from a video file or a directory of
/// images (sorted by file name).
pub fn load_frames(path: &Path, spec: &FrameSpec) -> Result<Frames, VideoError> {
    if spec.num_frames == 0 {
        return Err(VideoError::ZeroSamples);
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => VideoError::NotFound { path: path.to_path_buf() },
        _ => VideoError::Io { path: path.to_path_buf(), error: e },
    })?;
    // Before opening: a FIFO would block forever, a device never end.
    crate::files::require_regular(path, true).map_err(|error| VideoError::Io { path: path.to_path_buf(), error })?;
    if meta.is_dir() {
        load_image_dir_limited(path, spec.num_frames, spec.image_dir_fps.unwrap_or(1.0), spec.max_pixels)
    } else {
        decode_video_limited(path, spec.num_frames, spec.max_pixels)
    }
}

// ---------------------------------------------------------------------------------------
// Video files
// ---------------------------------------------------------------------------------------

pub(crate) fn init_ffmpeg() -> Result<(), VideoError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        let r = video_rs::init().map_err(|e| e.to_string());
        // FFmpeg logs corrupt-input warnings to stderr by default; our errors carry the reason.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        r
    })
    .clone()
    .map_err(VideoError::Init)
}

/// Stream facts read from the container before decoding.
struct StreamInfo {
    /// `nb_frames` from the container; 0 when unknown.
    header_frames: usize,
    fps: f64,
    /// Frame size from the codec parameters (0 when the container does not say).
    width: u64,
    height: u64,
}

/// Result of one decoding pass.
struct Pass {
    /// Number of frames the decoder produced.
    decoded: usize,
    /// `(index, rgb)` for every sampled index that was reached, in order.
    converted: Vec<(usize, ArcArray<u8, Ix3>)>,
}

/// Decodes a video file: see the module docs for the frame-count strategy.
pub fn decode_video(path: &Path, n: usize) -> Result<Frames, VideoError> {
    decode_video_limited(path, n, DEFAULT_MAX_PIXELS)
}

/// [`decode_video`] refusing frames of more than `max_pixels` pixels before decoding them.
pub fn decode_video_limited(path: &Path, n: usize, max_pixels: u64) -> Result<Frames, VideoError> {
    if n == 0 {
        return Err(VideoError::ZeroSamples);
    }
    init_ffmpeg()?;
    if let Some((width, height)) = header_size(path) {
        check_pixels(path, width, height, max_pixels)?;
    }
    let info = probe(path)?;
    check_pixels(path, info.width, info.height, max_pixels)?;
    let decode_pass = |path: &Path, wanted: &[usize]| decode_pass(path, wanted, max_pixels);
    // 1. First pass: with a header count, decode and convert at once; else only count.
    let (total, pass) = if info.header_frames > 0 {
        let idx = sample_indices(info.header_frames, n)?;
        let pass = decode_pass(path, &idx)?;
        if pass.decoded == info.header_frames {
            (info.header_frames, Some((idx, pass)))
        } else {
            (pass.decoded, None) // header was wrong: resample with the real count
        }
    } else {
        (decode_pass(path, &[])?.decoded, None)
    };
    if total == 0 {
        return Err(VideoError::NoFrames { path: path.to_path_buf() });
    }
    // 2. Second pass only when the count was unknown or wrong.
    let (idx, pass) = match pass {
        Some(p) => p,
        None => {
            let idx = sample_indices(total, n)?;
            let pass = decode_pass(path, &idx)?;
            (idx, pass)
        }
    };
    // 3. Expand duplicates (T < N) into one Frame per sample.
    let fps = info.fps;
    let mut frames = Vec::with_capacity(n);
    let mut conv = pass.converted.into_iter().peekable();
    let mut current: Option<(usize, ArcArray<u8, Ix3>)> = None;
    for &i in &idx {
        while current.as_ref().is_none_or(|(ci, _)| *ci < i) {
            match conv.next() {
                Some(c) => current = Some(c),
                None => {
                    return Err(VideoError::Decode {
                        path: path.to_path_buf(),
                        reason: format!("frame {i} of {total} was not produced on the second decode (non-deterministic decoding?)"),
                    })
                }
            }
        }
        let (_, rgb) = current.as_ref().expect("set by the loop above");
        frames.push(Frame { index: i, time_s: i as f64 / fps, rgb: rgb.clone() });
    }
    Ok(Frames { frames, total_frames: total, fps, duration_s: total as f64 / fps })
}

fn open(path: &Path) -> Result<(video_rs::Reader, usize), VideoError> {
    let not_a_video = |reason: String| VideoError::NotAVideo { path: path.to_path_buf(), reason };
    let reader = video_rs::Reader::new(path).map_err(|e| not_a_video(e.to_string()))?;
    let stream = reader.best_video_stream_index().map_err(|_| not_a_video("no video stream".into()))?;
    Ok((reader, stream))
}

/// The largest video stream size the container header declares, read with
/// `avformat_open_input` alone: opening a [`video_rs::Reader`] also runs
/// `avformat_find_stream_info`, which decodes the first frame to learn its pixel format.
/// `None` when the header does not say (raw streams) or cannot be read (the regular open
/// then reports why).
fn header_size(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut ctx: *mut ffmpeg::ffi::AVFormatContext = std::ptr::null_mut();
    // SAFETY: the context is opened, read and closed here; stream pointers are read within it.
    unsafe {
        if ffmpeg::ffi::avformat_open_input(&mut ctx, c_path.as_ptr(), std::ptr::null(), std::ptr::null_mut()) < 0 {
            return None;
        }
        let mut largest: Option<(u64, u64)> = None;
        for i in 0..(*ctx).nb_streams as usize {
            let par = (**(*ctx).streams.add(i)).codecpar;
            if par.is_null() || (*par).codec_type != ffmpeg::ffi::AVMediaType::AVMEDIA_TYPE_VIDEO {
                continue;
            }
            let (w, h) = ((*par).width.max(0) as u64, (*par).height.max(0) as u64);
            if w > 0 && h > 0 && largest.is_none_or(|(lw, lh)| w.saturating_mul(h) > lw.saturating_mul(lh)) {
                largest = Some((w, h));
            }
        }
        ffmpeg::ffi::avformat_close_input(&mut ctx);
        largest
    }
}

fn rational(r: ffmpeg::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| r.numerator() as f64 / r.denominator() as f64)
}

fn probe(path: &Path) -> Result<StreamInfo, VideoError> {
    let (reader, idx) = open(path)?;
    let stream = reader.input.stream(idx).ok_or_else(|| VideoError::NotAVideo { path: path.to_path_buf(), reason: "no video stream".into() })?;
    let fps = rational(stream.avg_frame_rate()).or_else(|| rational(stream.rate())).ok_or_else(|| VideoError::NoFrameRate { path: path.to_path_buf() })?;
    // SAFETY: `parameters()` wraps the stream's own AVCodecParameters, valid while `reader` lives.
    let (width, height) = unsafe {
        let p = stream.parameters();
        let p = &*p.as_ptr();
        (p.width.max(0) as u64, p.height.max(0) as u64)
    };
    Ok(StreamInfo { header_frames: stream.frames().max(0) as usize, fps, width, height })
}

/// Decodes the whole stream once, converting the frames whose index is in `wanted`
/// (sorted, may contain duplicates) to RGB, once per distinct index.
fn decode_pass(path: &Path, wanted: &[usize], max_pixels: u64) -> Result<Pass, VideoError> {
    let decode_err = |reason: String| VideoError::Decode { path: path.to_path_buf(), reason };
    let (mut reader, idx) = open(path)?;
    let params = reader.input.stream(idx).map(|s| s.parameters()).ok_or_else(|| decode_err("no video stream".into()))?;
    let mut ctx =
        ffmpeg::codec::context::Context::from_parameters(params).map_err(|e| VideoError::NotAVideo { path: path.to_path_buf(), reason: e.to_string() })?;
    // SAFETY: `ctx` owns its AVCodecContext; `max_pixels` is read by the decoder when it
    // allocates a frame (`av_image_check_size2`), so a frame past the limit is refused there.
    unsafe {
        let raw = &mut *ctx.as_mut_ptr();
        raw.max_pixels = i64::try_from(max_pixels).unwrap_or(i64::MAX);
    }
    // Frame threading keeps one frame in flight per thread: few threads for big frames.
    let frame_bytes = params_pixels(&ctx).saturating_mul(3);
    ctx.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Frame,
        count: if frame_bytes > BIG_FRAME_BYTES { 2 } else { 0 }, // 0: auto
        ..Default::default()
    });
    let mut decoder = ctx.decoder().video().map_err(|e| VideoError::NotAVideo { path: path.to_path_buf(), reason: format!("no decoder: {e}") })?;
    check_pixels(path, decoder.width() as u64, decoder.height() as u64, max_pixels)?;

    let mut conv = Converter::default();
    let mut pass = Pass { decoded: 0, converted: Vec::new() };
    let mut next_wanted = 0usize; // position in `wanted`
    let mut frame = ffmpeg::frame::Video::empty();
    let mut receive = |decoder: &mut ffmpeg::decoder::Video, pass: &mut Pass| -> Result<(), VideoError> {
        while decoder.receive_frame(&mut frame).is_ok() {
            let i = pass.decoded;
            pass.decoded += 1;
            if next_wanted < wanted.len() && wanted[next_wanted] == i {
                check_pixels(path, frame.width() as u64, frame.height() as u64, max_pixels)?;
                pass.converted.push((i, conv.convert(&frame).map_err(decode_err)?.into_shared()));
                while next_wanted < wanted.len() && wanted[next_wanted] == i {
                    next_wanted += 1;
                }
            }
        }
        Ok(())
    };

    // Demux by hand (not `Input::packets()`) so that I/O errors surface instead of ending
    // the stream silently. Corrupt packets (`InvalidData`) are skipped, like FFmpeg does.
    let mut corrupt_in_a_row = 0usize;
    let mut send_errors = 0usize;
    let mut last_send_error = String::new();
    loop {
        // A fresh packet per read: `av_read_frame` overwrites the packet without releasing the
        // buffer it already holds, so reusing one leaked every packet's data (the video's
        // compressed size per decode); dropping the packet at the end of each pass unrefs it.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut reader.input) {
            Ok(()) => corrupt_in_a_row = 0,
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => {
                corrupt_in_a_row += 1;
                if corrupt_in_a_row > 10_000 {
                    return Err(decode_err("the container is corrupt (10000 unreadable packets in a row)".into()));
                }
                continue;
            }
            Err(e) => return Err(decode_err(format!("reading packets: {e}"))),
        }
        if packet.stream() != idx {
            continue;
        }
        if let Err(e) = decoder.send_packet(&packet) {
            // A corrupt packet: the decoder conceals or drops it; keep going.
            send_errors += 1;
            last_send_error = e.to_string();
        }
        receive(&mut decoder, &mut pass)?;
    }
    // Drain the frames still buffered in the decoder.
    let _ = decoder.send_eof();
    receive(&mut decoder, &mut pass)?;
    if pass.decoded == 0 && send_errors > 0 {
        return Err(VideoError::NotAVideo {
            path: path.to_path_buf(),
            reason: format!("{send_errors} packets failed to decode, none succeeded (last: {last_send_error})"),
        });
    }
    Ok(pass)
}

/// Frames above this many RGB bytes (4K UHD) are decoded with 2 threads instead of one per core.
const BIG_FRAME_BYTES: u64 = 3840 * 2160 * 3;

/// `width × height` from a codec context's parameters (0 when unknown).
fn params_pixels(ctx: &ffmpeg::codec::context::Context) -> u64 {
    // SAFETY: reading two ints of the context `ctx` owns.
    let (w, h) = unsafe {
        let raw = &*ctx.as_ptr();
        (raw.width, raw.height)
    };
    (w.max(0) as u64).saturating_mul(h.max(0) as u64)
}

/// swscale context to RGB24, rebuilt when the input format or size changes mid-stream.
#[derive(Default)]
pub(crate) struct Converter {
    ctx: Option<(ffmpeg::format::Pixel, u32, u32, ffmpeg::software::scaling::Context)>,
}

impl Converter {
    pub(crate) fn convert(&mut self, frame: &ffmpeg::frame::Video) -> Result<Array3<u8>, String> {
        use ffmpeg::software::scaling::{Context, Flags};
        let (fmt, w, h) = (frame.format(), frame.width(), frame.height());
        if w == 0 || h == 0 {
            return Err("decoded a frame of size 0".into());
        }
        if !matches!(&self.ctx, Some((f, cw, ch, _)) if *f == fmt && *cw == w && *ch == h) {
            let sws =
                Context::get(fmt, w, h, ffmpeg::format::Pixel::RGB24, w, h, Flags::BICUBIC).map_err(|e| format!("no conversion from {fmt:?} to RGB24: {e}"))?;
            self.ctx = Some((fmt, w, h, sws));
        }
        let (_, _, _, sws) = self.ctx.as_mut().expect("set above");
        let mut rgb = ffmpeg::frame::Video::empty();
        sws.run(frame, &mut rgb).map_err(|e| format!("converting to RGB: {e}"))?;
        // Copy row by row: FFmpeg rows are padded to `stride` bytes.
        let (w, h) = (w as usize, h as usize);
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let mut out = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            out.extend_from_slice(&data[row * stride..row * stride + w * 3]);
        }
        Array3::from_shape_vec((h, w, 3), out).map_err(|e| e.to_string())
    }
}

// ---------------------------------------------------------------------------------------
// Directories of images
// ---------------------------------------------------------------------------------------

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Lists the images of a directory, sorted by file name (byte order). Hidden entries
/// (starting with `.`) are ignored; any other non-image entry is an error.
pub fn list_image_dir(dir: &Path) -> Result<Vec<PathBuf>, VideoError> {
    let io = |e| VideoError::Io { path: dir.to_path_buf(), error: e };
    let mut images = Vec::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let is_image = entry.path().is_file()
            && Path::new(&name).extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
        if is_image {
            images.push(entry.path());
        } else {
            others.push(name);
        }
    }
    if !others.is_empty() {
        others.sort();
        return Err(VideoError::NonImageFiles { dir: dir.to_path_buf(), count: others.len(), first: others[0].clone() });
    }
    if images.is_empty() {
        return Err(VideoError::EmptyDirectory { dir: dir.to_path_buf() });
    }
    images.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(images)
}

/// Reads one image as RGB u8 `[H, W, 3]` the way the reference preprocessing (Pillow's
/// `open(...).convert("RGB")` after `exif_transpose`) does:
///
/// * JPEG is decoded by libjpeg-turbo, Pillow's own decoder, with its defaults (accurate integer
///   IDCT, smooth chroma upsampling): bit-identical. (CMYK/YCCK JPEGs, which libjpeg-turbo does not
///   convert to RGB, go through the `image` crate and may differ from Pillow.)
/// * PNG and the rest are decoded by the `image` crate (bit-identical for 8-bit PNG); 16-bit
///   channels keep their high byte, as Pillow's `;16B` raw modes do. 16-bit greyscale is refused:
///   Pillow clips it to white, which no model should see.
/// * The EXIF orientation is applied.
pub fn read_image(path: &Path) -> Result<Array3<u8>, VideoError> {
    read_image_limited(path, DEFAULT_MAX_PIXELS)
}

/// [`read_image`] refusing, from the header and before decoding, images of more than
/// `max_pixels` pixels.
pub fn read_image_limited(path: &Path, max_pixels: u64) -> Result<Array3<u8>, VideoError> {
    use image::ImageDecoder;
    let unreadable = |reason: String| VideoError::UnreadableImage { path: path.to_path_buf(), reason };
    let bad = |e: image::ImageError| unreadable(e.to_string());
    crate::files::require_regular(path, false).map_err(|error| VideoError::Io { path: path.to_path_buf(), error })?;
    let bytes = std::fs::read(path).map_err(|e| VideoError::Io { path: path.to_path_buf(), error: e })?;
    let reader =
        image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format().map_err(|e| VideoError::Io { path: path.to_path_buf(), error: e })?;
    let is_jpeg = reader.format() == Some(image::ImageFormat::Jpeg);
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let (width, height) = decoder.dimensions();
    check_pixels(path, width as u64, height as u64, max_pixels)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let jpeg = if is_jpeg { decode_jpeg_like_pillow(&bytes).map_err(unreadable)? } else { None };
    let mut img = match jpeg {
        Some(rgb) => image::DynamicImage::ImageRgb8(rgb),
        None => image::DynamicImage::from_decoder(decoder).map_err(bad)?,
    };
    img.apply_orientation(orientation);
    let rgb = to_rgb8_like_pillow(img).map_err(unreadable)?;
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    Array3::from_shape_vec((h, w, 3), rgb.into_raw()).map_err(|e| unreadable(e.to_string()))
}

/// Larger images are refused before decoding, as Pillow's decompression-bomb check does
/// (2 × `Image.MAX_IMAGE_PIXELS`): a small file can declare a huge canvas.
const MAX_IMAGE_PIXELS: usize = 178_956_970;

/// libjpeg-turbo decode to RGB; `None` for CMYK/YCCK, which it cannot convert to RGB.
fn decode_jpeg_like_pillow(bytes: &[u8]) -> Result<Option<image::RgbImage>, String> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};
    let mut decompressor = Decompressor::new().map_err(|e| e.to_string())?;
    let header = decompressor.read_header(bytes).map_err(|e| format!("not a decodable JPEG: {e}"))?;
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        return Ok(None);
    }
    let (width, height) = (header.width, header.height);
    if width.saturating_mul(height) > MAX_IMAGE_PIXELS {
        return Err(format!("{width}x{height} pixels is more than the {MAX_IMAGE_PIXELS}-pixel limit (Pillow refuses such images too)"));
    }
    let mut image = Image { pixels: vec![0u8; 3 * width * height], width, pitch: 3 * width, height, format: PixelFormat::RGB };
    decompressor.decompress(bytes, image.as_deref_mut()).map_err(|e| format!("JPEG data: {e}"))?;
    let size = |v: usize| u32::try_from(v).map_err(|_| format!("JPEG of {width}x{height} pixels is too large"));
    Ok(image::RgbImage::from_raw(size(width)?, size(height)?, image.pixels))
}

/// `convert("RGB")` with Pillow's 16-bit rule: the high byte of each channel.
fn to_rgb8_like_pillow(img: image::DynamicImage) -> Result<image::RgbImage, String> {
    use image::DynamicImage as D;
    let high = |v: &[u16]| -> Vec<u8> { v.iter().map(|x| (x >> 8) as u8).collect() };
    let (w, h) = (img.width(), img.height());
    let eight_bit = match &img {
        D::ImageRgb16(b) => image::RgbImage::from_raw(w, h, high(b.as_raw())).map(D::ImageRgb8),
        D::ImageRgba16(b) => image::RgbaImage::from_raw(w, h, high(b.as_raw())).map(D::ImageRgba8),
        D::ImageLumaA16(b) => image::GrayAlphaImage::from_raw(w, h, high(b.as_raw())).map(D::ImageLumaA8),
        D::ImageLuma16(_) => {
            return Err("16-bit greyscale images are not supported (Pillow, the reference preprocessing, clips them to white); \
                        convert the frames to 8-bit"
                .into())
        }
        _ => None,
    };
    Ok(eight_bit.unwrap_or(img).into_rgb8())
}

/// A directory of images as a video: the same index rule over the sorted file list; only
/// the sampled images are read (in parallel).
pub fn load_image_dir(dir: &Path, n: usize, fps: f64) -> Result<Frames, VideoError> {
    load_image_dir_limited(dir, n, fps, DEFAULT_MAX_PIXELS)
}

/// [`load_image_dir`] refusing images of more than `max_pixels` pixels before decoding them.
pub fn load_image_dir_limited(dir: &Path, n: usize, fps: f64, max_pixels: u64) -> Result<Frames, VideoError> {
    if !(fps > 0.0 && fps.is_finite()) {
        return Err(VideoError::BadFps(fps));
    }
    let files = list_image_dir(dir)?;
    let total = files.len();
    let idx = sample_indices(total, n)?;
    let mut unique = idx.clone();
    unique.dedup();
    let images: Vec<(usize, ArcArray<u8, Ix3>)> =
        unique.par_iter().map(|&i| read_image_limited(&files[i], max_pixels).map(|rgb| (i, rgb.into_shared()))).collect::<Result<_, _>>()?;
    let frames = idx
        .iter()
        .map(|&i| {
            let pos = unique.binary_search(&i).unwrap_or(0);
            Frame { index: i, time_s: i as f64 / fps, rgb: images[pos].1.clone() }
        })
        .collect();
    Ok(Frames { frames, total_frames: total, fps, duration_s: total as f64 / fps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_numpy_linspace() {
        // Expected values computed with NumPy 2.4.6:
        //   np.linspace(0, T-1, N, dtype=int).tolist()
        let want_100_32 = [0, 3, 6, 9, 12, 15, 19, 22, 25, 28, 31, 35, 38, 41, 44, 47, 51, 54, 57, 60, 63, 67, 70, 73, 76, 79, 83, 86, 89, 92, 95, 99];
        assert_eq!(sample_indices(100, 32).unwrap(), want_100_32);
        let want_31_32: Vec<usize> = std::iter::once(0).chain(0..31).collect(); // [0, 0, 1, ..., 30]
        assert_eq!(sample_indices(31, 32).unwrap(), want_31_32);
        assert_eq!(sample_indices(1, 32).unwrap(), vec![0; 32]);
        assert_eq!(sample_indices(25, 8).unwrap(), [0, 3, 6, 10, 13, 17, 20, 24]);
        assert_eq!(sample_indices(2, 3).unwrap(), [0, 0, 1]);
        // N = 1: numpy gives [0]
        assert_eq!(sample_indices(10, 1).unwrap(), [0]);
    }

    #[test]
    fn zero_frames_or_samples_are_errors() {
        assert!(matches!(sample_indices(0, 32), Err(VideoError::ZeroFrames)));
        assert!(matches!(sample_indices(10, 0), Err(VideoError::ZeroSamples)));
    }

    #[test]
    fn indices_are_sorted_in_range_and_pinned() {
        for t in 1..200 {
            for n in [1, 2, 3, 8, 32, 64] {
                let idx = sample_indices(t, n).unwrap();
                assert_eq!(idx.len(), n);
                assert!(idx.windows(2).all(|w| w[0] <= w[1]));
                assert_eq!(idx[0], 0);
                if n > 1 {
                    assert_eq!(*idx.last().unwrap(), t - 1);
                }
            }
        }
    }
}
