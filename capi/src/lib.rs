//! C ABI of the `loc3r` runtime: `libloc3r_c.so` and `include/loc3r.h` (generated from this
//! file by cbindgen; `tests/header.rs` fails when the checked-in header is stale).
//!
//! The contract every function keeps, so that a robot stack in C or C++ can never be brought
//! down by bad input:
//! - it returns a [`Loc3rStatus`]; on anything but `LOC3R_OK`, [`loc3r_last_error`] gives a
//!   message (per thread) that says what was wrong and what to do;
//! - a panic is caught at the boundary and becomes `LOC3R_INTERNAL`;
//! - every pointer is checked for NULL; outputs are set to NULL/zero before any work, so a
//!   failed call never leaves a stale or half-made object behind;
//! - memory the library hands out is released by its own `*_free`/`loc3r_close`, which accept
//!   NULL.
//!
//! Model and scene handles are not addresses but numbers from a registry, never reused: a
//! handle that was freed (a push to a freed scene, a double free) is looked up, not found and
//! refused with `LOC3R_INVALID_ARGUMENT`, instead of reading freed memory. A call holds its
//! own reference to the object, so freeing a handle while another thread is in a call on it
//! lets that call finish.
//!
//! Handles are as thread-safe as the Rust types they wrap: a model is shared freely; a scene
//! serves any number of concurrent `loc3r_localize`/`loc3r_ask` calls, and
//! `loc3r_push_frame` waits for them (and they for it) through a read-write lock.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use loc3r::stages::video::{load_frames, Frame, Frames, VideoError};
use loc3r::{Device, Error, Fault, FrameSpec, GenerationOptions, Loc3r, Localization, Scene, SessionOptions, DEFAULT_MAX_PIXELS};

/// What a call did. Every function of the library returns one; on anything but `LOC3R_OK`,
/// `loc3r_last_error()` says what went wrong.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc3rStatus {
    /// Success.
    LOC3R_OK = 0,
    /// The caller's input: a NULL pointer, a number out of range, a frame of the wrong size
    /// or layout, a time going backwards, text that is not UTF-8, an unreadable video.
    LOC3R_INVALID_ARGUMENT = 1,
    /// A path given does not exist: the bundle directory, a file of the bundle, the video.
    LOC3R_NOT_FOUND = 2,
    /// The bundle exists but cannot be used: incomplete, corrupt or of another format version.
    LOC3R_BAD_BUNDLE = 3,
    /// The scene has no frame yet: push one with `loc3r_push_frame` first.
    LOC3R_NO_FRAMES = 4,
    /// The work was stopped before it finished: the token callback of `loc3r_ask` returned 0
    /// (the partial answer is still returned and must be freed).
    LOC3R_CANCELLED = 5,
    /// The machine: ONNX Runtime missing or failing, a device that cannot be used, FFmpeg.
    LOC3R_RUNTIME = 6,
    /// A bug in loc3r (a broken invariant, or a panic caught at the boundary).
    LOC3R_INTERNAL = 7,
}

use Loc3rStatus::*;

/// An opened bundle (`loc3r_open`); freed with `loc3r_close`. An opaque handle: never
/// dereference it.
pub struct Loc3rModel {
    _opaque: [u8; 0],
}

/// A scene: an observed video (`loc3r_observe_video`) or live frames (`loc3r_scene_new` +
/// `loc3r_push_frame`); freed with `loc3r_scene_free`. An opaque handle: never dereference it.
pub struct Loc3rScene {
    _opaque: [u8; 0],
}

/// What a scene handle stands for.
struct SceneEntry {
    model: Loc3r,
    live: RwLock<Live>,
}

/// The runtime builds a scene from its first frame, so an empty C scene has none yet.
struct Live {
    scene: Option<Scene>,
    /// `(width, height)` of the first frame: later frames must match it.
    frame_size: Option<(usize, usize)>,
}

/// Session settings of `loc3r_open`; `loc3r_open_options_default` fills the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc3rOpenOptions {
    /// Threads per graph call; 0 = one per core.
    pub intra_threads: u32,
    /// ONNX Runtime graph optimisation, 0 (none) to 3 (all, the default).
    pub optimization_level: u32,
    /// Frames per call of the per-frame encoders; 0 = all frames in one call (more memory).
    pub frame_batch: u32,
    /// Prompt positions per prefill call; 0 = the whole prompt in one call (more memory).
    pub prefill_chunk: u32,
}

/// Generation settings of `loc3r_ask`; `loc3r_ask_options_default` fills the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loc3rAskOptions {
    /// At most this many answer tokens.
    pub max_new_tokens: u32,
    /// 0 = greedy (deterministic); > 0 samples.
    pub temperature: f32,
    /// Sample among the k most likely tokens; 0 = off.
    pub top_k: u32,
    /// Sample among the tokens whose probability reaches p, in (0, 1]; 1 = off.
    pub top_p: f32,
    /// Seed of the sampler (the same seed gives the same answer).
    pub seed: u64,
}

/// Where the camera is: position in metres in the scene's bird's-eye frame with its
/// uncertainty, and the heading.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loc3rPose {
    pub x: f32,
    pub y: f32,
    /// Standard deviations of x and y in metres.
    pub sigma_x: f32,
    pub sigma_y: f32,
    /// Heading in degrees, in (-180, 180]; 0 when the orientation is not confident.
    pub yaw_deg: f64,
    /// Probability of the most likely yaw bin (1 / orientation_bins when nothing stands out).
    pub orientation_confidence: f32,
    /// Number of yaw bins of the orientation head.
    pub orientation_bins: u32,
    /// False when no direction dominates (yaw_deg is then 0, not a guess).
    pub orientation_confident: bool,
}

/// An answer of `loc3r_ask`, owned by the library: free it with `loc3r_answer_free`.
/// Do not change its fields.
#[repr(C)]
#[derive(Debug)]
pub struct Loc3rAnswer {
    /// UTF-8, NUL-terminated (`text_len` bytes before the NUL).
    pub text: *const c_char,
    pub text_len: usize,
    pub pose: Loc3rPose,
    /// Tokens of the whole prompt (video prefix + question) and of the answer.
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    /// Milliseconds to the first answer token, and for the whole call.
    pub first_token_ms: f64,
    pub total_ms: f64,
}

/// Receives the answer of `loc3r_ask` piece by piece as it is generated: `piece` is UTF-8,
/// `len` bytes, NUL-terminated, valid only during the call. Return nonzero to go on, 0 to
/// stop generating (`loc3r_ask` then returns `LOC3R_CANCELLED` with the partial answer).
/// It runs on the thread that called `loc3r_ask` and must not throw or `longjmp` out, nor
/// push frames to or free the scene being asked (that would wait for the answer forever).
pub type Loc3rTokenCallback = Option<unsafe extern "C" fn(piece: *const c_char, len: usize, user_data: *mut c_void) -> c_int>;

// ---------------------------------------------------------------------------------------
// Errors at the boundary
// ---------------------------------------------------------------------------------------

/// A failed call: the status it returns and the message `loc3r_last_error` gives.
struct Failure {
    status: Loc3rStatus,
    message: String,
}

impl Failure {
    fn new(status: Loc3rStatus, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }

    fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(LOC3R_INVALID_ARGUMENT, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match &e {
            Error::Cancelled(_) => LOC3R_CANCELLED,
            Error::Video(VideoError::NotFound { .. }) => LOC3R_NOT_FOUND,
            Error::BundleFile { error, .. } if error.kind() == std::io::ErrorKind::NotFound => LOC3R_NOT_FOUND,
            _ => match e.fault() {
                Fault::Input => LOC3R_INVALID_ARGUMENT,
                Fault::Bundle => LOC3R_BAD_BUNDLE,
                Fault::Runtime => LOC3R_RUNTIME,
                Fault::Internal => LOC3R_INTERNAL,
            },
        };
        Failure::new(status, e.with_sources())
    }
}

impl From<VideoError> for Failure {
    fn from(e: VideoError) -> Failure {
        Error::Video(e).into()
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message is text for people: an interior NUL would cut it short in C.
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs the body of an exported function: clears this thread's last error, turns a panic into
/// `LOC3R_INTERNAL`, and records the message of a failure prefixed with the function's name.
fn call(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> Loc3rStatus {
    // Clearing without allocating keeps the cost of a successful call to a few dozen ns.
    LAST_ERROR.with(|e| {
        if !e.borrow().is_empty() {
            *e.borrow_mut() = CString::default();
        }
    });
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        let what = payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_default();
        Err(Failure::new(LOC3R_INTERNAL, format!("internal error (a panic, caught): {what}; this is a bug in loc3r, please report it")))
    });
    match outcome {
        Ok(()) => LOC3R_OK,
        Err(f) => {
            set_last_error(&format!("{function}: {}", f.message));
            f.status
        }
    }
}

/// `*out` of an output argument, after checking it is not NULL.
unsafe fn out_arg<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller passes NULL or a pointer to writable memory for a `T` (the contract).
    unsafe { p.as_mut() }.ok_or_else(|| Failure::invalid(format!("`{name}` is NULL; pass the address of a variable to receive the result")))
}

// ---------------------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------------------

/// Live objects by handle number. The numbers come from one counter and are never reused, so
/// a stale handle cannot name a newer object, and a model handle is no scene handle.
struct Registry<T> {
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(1);
static MODELS: Registry<Loc3r> = Registry::new();
static SCENES: Registry<SceneEntry> = Registry::new();

impl<T> Registry<T> {
    const fn new() -> Registry<T> {
        Registry { live: Mutex::new(BTreeMap::new()) }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // Nothing that runs under this lock can panic halfway through a change.
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert<H>(&self, value: T) -> *mut H {
        let id = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        self.map().insert(id, Arc::new(value));
        ptr::without_provenance_mut(id)
    }

    /// The object of a handle argument; a handle that is NULL, freed or of another kind is an
    /// error naming the argument.
    fn get<H>(&self, handle: *const H, name: &str, kind: &str) -> Result<Arc<T>, Failure> {
        if handle.is_null() {
            return Err(Failure::invalid(format!("`{name}` is NULL; pass a {kind} handle returned by this library")));
        }
        self.map().get(&handle.addr()).cloned().ok_or_else(|| {
            Failure::invalid(format!("`{name}` is not a live {kind} handle: it was already freed, or was never returned by this library as a {kind}"))
        })
    }

    /// Takes the object of a handle out of the registry (the caller drops it, outside the
    /// lock). NULL is `Ok(None)`.
    fn remove<H>(&self, handle: *mut H, name: &str, kind: &str) -> Result<Option<Arc<T>>, Failure> {
        if handle.is_null() {
            return Ok(None);
        }
        let taken = self.map().remove(&handle.addr());
        match taken {
            Some(object) => Ok(Some(object)),
            None => Err(Failure::invalid(format!(
                "`{name}` is not a live {kind} handle: it was already freed (set your pointer to NULL after freeing), or was never returned by this library as a {kind}"
            ))),
        }
    }
}

/// Addresses of the answers handed out and not yet freed, so that freeing one twice (or
/// freeing something else) is refused rather than corrupting the heap. Unlike handles,
/// answers are real memory the caller reads, so an address can come back for a newer answer
/// once the old one is freed.
static ANSWERS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

fn answers() -> MutexGuard<'static, BTreeSet<usize>> {
    ANSWERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn model_arg(model: *const Loc3rModel) -> Result<Arc<Loc3r>, Failure> {
    MODELS.get(model, "model", "model")
}

fn scene_arg(scene: *const Loc3rScene) -> Result<Arc<SceneEntry>, Failure> {
    SCENES.get(scene, "scene", "scene")
}

/// A NUL-terminated UTF-8 argument; NULL is `None`.
unsafe fn text_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL text arguments are NUL-terminated strings (the contract).
    let bytes = unsafe { CStr::from_ptr(p) };
    bytes.to_str().map(Some).map_err(|e| Failure::invalid(format!("`{name}` is not valid UTF-8 ({e}); pass UTF-8 text")))
}

unsafe fn required_text<'a>(p: *const c_char, name: &str) -> Result<&'a str, Failure> {
    unsafe { text_arg(p, name) }?.ok_or_else(|| Failure::invalid(format!("`{name}` is NULL; pass a NUL-terminated UTF-8 string")))
}

/// A path argument (any bytes but NUL, as the file system allows).
unsafe fn path_arg(p: *const c_char, name: &str) -> Result<PathBuf, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("`{name}` is NULL; pass a NUL-terminated path")));
    }
    // SAFETY: as in `text_arg`.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::invalid(format!("`{name}` is an empty path")));
    }
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

/// `cpu`, `cuda`, `tensorrt`, optionally with a GPU index (`cuda:1`); NULL or empty = CPU.
fn parse_device(text: Option<&str>) -> Result<Device, Failure> {
    let text = text.unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Device::Cpu);
    }
    let (name, index) = match text.split_once(':') {
        Some((name, index)) => {
            let index: i32 = index
                .parse()
                .ok()
                .filter(|i| *i >= 0)
                .ok_or_else(|| Failure::invalid(format!("device `{text}`: `{index}` is not a GPU index; use e.g. cuda:0 or tensorrt:1")))?;
            (name, Some(index))
        }
        None => (text, None),
    };
    let mut device: Device = name.parse()?;
    match (&mut device, index) {
        (_, None) => {}
        (Device::Cuda { device_id } | Device::TensorRt { device_id } | Device::TensorRtRtx { device_id }, Some(i)) => *device_id = i,
        (Device::Cpu, Some(_)) => return Err(Failure::invalid(format!("device `{text}`: the CPU takes no index; use cpu"))),
    }
    Ok(device)
}

impl Default for Loc3rOpenOptions {
    fn default() -> Self {
        let d = SessionOptions::default();
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Loc3rOpenOptions {
            intra_threads: n(d.intra_threads),
            optimization_level: u32::from(d.optimization_level),
            frame_batch: n(d.frame_batch),
            prefill_chunk: n(d.prefill_chunk),
        }
    }
}

impl Loc3rOpenOptions {
    fn session(&self, device: Device) -> Result<SessionOptions, Failure> {
        let optimization_level = u8::try_from(self.optimization_level)
            .ok()
            .filter(|l| *l <= 3)
            .ok_or_else(|| Failure::invalid(format!("optimization_level {} is out of range; use 0 (none) to 3 (all)", self.optimization_level)))?;
        Ok(SessionOptions {
            device,
            intra_threads: self.intra_threads as usize,
            optimization_level,
            frame_batch: self.frame_batch as usize,
            prefill_chunk: self.prefill_chunk as usize,
            allow_build: false,
            profile: None,
            int8_kernels: false,
        })
    }
}

impl Default for Loc3rAskOptions {
    fn default() -> Self {
        let d = GenerationOptions::default();
        Loc3rAskOptions {
            max_new_tokens: u32::try_from(d.max_new_tokens).unwrap_or(u32::MAX),
            temperature: d.temperature,
            top_k: u32::try_from(d.top_k).unwrap_or(u32::MAX),
            top_p: d.top_p,
            seed: d.seed,
        }
    }
}

impl From<&Loc3rAskOptions> for GenerationOptions {
    fn from(o: &Loc3rAskOptions) -> GenerationOptions {
        GenerationOptions { max_new_tokens: o.max_new_tokens as usize, temperature: o.temperature, top_k: o.top_k as usize, top_p: o.top_p, seed: o.seed }
    }
}

impl From<&Localization> for Loc3rPose {
    fn from(l: &Localization) -> Loc3rPose {
        Loc3rPose {
            x: l.position.x,
            y: l.position.y,
            sigma_x: l.position.sigma_x,
            sigma_y: l.position.sigma_y,
            yaw_deg: l.yaw_deg,
            orientation_confidence: l.orientation_probs.iter().copied().fold(0.0, f32::max),
            orientation_bins: u32::try_from(l.orientation_probs.len()).unwrap_or(u32::MAX),
            orientation_confident: l.orientation_confident,
        }
    }
}

const ZERO_POSE: Loc3rPose =
    Loc3rPose { x: 0.0, y: 0.0, sigma_x: 0.0, sigma_y: 0.0, yaw_deg: 0.0, orientation_confidence: 0.0, orientation_bins: 0, orientation_confident: false };

impl SceneEntry {
    fn new(model: Loc3r, scene: Option<Scene>, frame_size: Option<(usize, usize)>) -> SceneEntry {
        SceneEntry { model, live: RwLock::new(Live { scene, frame_size }) }
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Live>, Failure> {
        self.live.read().map_err(|_| poisoned())
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Live>, Failure> {
        self.live.write().map_err(|_| poisoned())
    }
}

fn poisoned() -> Failure {
    Failure::new(LOC3R_INTERNAL, "an earlier call failed with an internal error while adding frames to this scene; free it and build a new one")
}

fn built(live: &Live) -> Result<&Scene, Failure> {
    live.scene.as_ref().ok_or_else(|| {
        Failure::new(LOC3R_NO_FRAMES, "the scene has no frames yet; push at least one frame with loc3r_push_frame (or use loc3r_observe_video) first")
    })
}

// ---------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------

/// The library's version ("0.1.0"), a static string.
#[no_mangle]
pub extern "C" fn loc3r_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last call on this thread that failed: what was wrong and what to do
/// (empty after a call that succeeded). The pointer stays valid until the next call of this
/// library on the same thread; copy the text to keep it. Never NULL.
#[no_mangle]
pub extern "C" fn loc3r_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a status code ("LOC3R_NOT_FOUND"), a static string; "LOC3R_UNKNOWN_STATUS"
/// for a number that is none.
#[no_mangle]
pub extern "C" fn loc3r_status_name(status: c_int) -> *const c_char {
    let name: &'static str = match status {
        0 => "LOC3R_OK\0",
        1 => "LOC3R_INVALID_ARGUMENT\0",
        2 => "LOC3R_NOT_FOUND\0",
        3 => "LOC3R_BAD_BUNDLE\0",
        4 => "LOC3R_NO_FRAMES\0",
        5 => "LOC3R_CANCELLED\0",
        6 => "LOC3R_RUNTIME\0",
        7 => "LOC3R_INTERNAL\0",
        _ => "LOC3R_UNKNOWN_STATUS\0",
    };
    name.as_ptr().cast()
}

/// Fills `*out` with the default session settings of `loc3r_open`.
///
/// # Safety
/// `out` is NULL (an error) or points to a writable `Loc3rOpenOptions`.
#[no_mangle]
pub unsafe extern "C" fn loc3r_open_options_default(out: *mut Loc3rOpenOptions) -> Loc3rStatus {
    call("loc3r_open_options_default", || {
        *unsafe { out_arg(out, "out") }? = Loc3rOpenOptions::default();
        Ok(())
    })
}

/// Fills `*out` with the default generation settings of `loc3r_ask` (greedy, 128 tokens).
///
/// # Safety
/// `out` is NULL (an error) or points to a writable `Loc3rAskOptions`.
#[no_mangle]
pub unsafe extern "C" fn loc3r_ask_options_default(out: *mut Loc3rAskOptions) -> Loc3rStatus {
    call("loc3r_ask_options_default", || {
        *unsafe { out_arg(out, "out") }? = Loc3rAskOptions::default();
        Ok(())
    })
}

/// Opens a bundle written by `loc3r-export export` on a device: `"cpu"`, `"cuda"`,
/// `"tensorrt"`, optionally with a GPU index (`"cuda:1"`); NULL or `""` is the CPU. `options`
/// may be NULL for the defaults. A GPU device that cannot be used is an error
/// (`LOC3R_RUNTIME`), never a silent CPU fallback. On success `*out_model` is a model to free
/// with `loc3r_close`; on failure it is NULL.
///
/// # Safety
/// `bundle_dir` is a NUL-terminated path; `device` is NULL or a NUL-terminated string;
/// `options` is NULL or points to a `Loc3rOpenOptions`; `out_model` points to a writable
/// `Loc3rModel *`.
#[no_mangle]
pub unsafe extern "C" fn loc3r_open(
    bundle_dir: *const c_char,
    device: *const c_char,
    options: *const Loc3rOpenOptions,
    out_model: *mut *mut Loc3rModel,
) -> Loc3rStatus {
    call("loc3r_open", || {
        let out = unsafe { out_arg(out_model, "out_model") }?;
        *out = ptr::null_mut();
        let dir = unsafe { path_arg(bundle_dir, "bundle_dir") }?;
        let device = parse_device(unsafe { text_arg(device, "device") }?)?;
        // SAFETY: NULL or a `Loc3rOpenOptions` (the contract); every bit pattern is valid.
        let options = unsafe { options.as_ref() }.copied().unwrap_or_default();
        let session = options.session(device)?;
        if !dir.exists() {
            return Err(Failure::new(
                LOC3R_NOT_FOUND,
                format!("bundle directory `{}` does not exist; pass the directory `loc3r-export export` wrote", dir.display()),
            ));
        }
        *out = MODELS.insert(Loc3r::open(&dir, &session)?);
        Ok(())
    })
}

/// Frees a model. Scenes made from it stay usable (they share its graphs) and are freed on
/// their own; a call still running on the model in another thread finishes first. NULL is a
/// no-op; a handle already closed is `LOC3R_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn loc3r_close(model: *mut Loc3rModel) -> Loc3rStatus {
    call("loc3r_close", || {
        drop(MODELS.remove(model, "model", "model")?);
        Ok(())
    })
}

/// Decodes a video file (or a directory of .png/.jpg images, one per second) and observes
/// `frames` frames sampled uniformly: the expensive part, done once; localize and ask are
/// then cheap. More live frames can be pushed onto the scene afterwards (of the video's
/// frame size, at times after its last frame). On success `*out_scene` is a scene to free
/// with `loc3r_scene_free`; on failure it is NULL.
///
/// # Safety
/// `path` is NULL or a NUL-terminated path; `out_scene` is NULL or points to a writable
/// `Loc3rScene *`.
#[no_mangle]
pub unsafe extern "C" fn loc3r_observe_video(model: *const Loc3rModel, path: *const c_char, frames: u32, out_scene: *mut *mut Loc3rScene) -> Loc3rStatus {
    call("loc3r_observe_video", || {
        let out = unsafe { out_arg(out_scene, "out_scene") }?;
        *out = ptr::null_mut();
        let model = model_arg(model)?;
        let path = unsafe { path_arg(path, "path") }?;
        let frames = frames as usize;
        // As `Loc3r::observe_video` does, refused before anything is decoded; decoding here
        // rather than there keeps the frame size, which later pushed frames must match.
        model.check_frame_count(frames)?;
        let decoded = load_frames(&path, &FrameSpec::new(frames))?;
        let size = decoded.frames.first().map(|f| (f.rgb.dim().1, f.rgb.dim().0));
        let scene = model.observe_frames(&decoded)?;
        *out = SCENES.insert(SceneEntry::new(Loc3r::clone(&model), Some(scene), size));
        Ok(())
    })
}

/// A scene without frames, for live frames from a camera (`loc3r_push_frame`). Localizing
/// or asking before the first frame returns `LOC3R_NO_FRAMES`. Free with `loc3r_scene_free`.
///
/// # Safety
/// `out_scene` is NULL or points to a writable `Loc3rScene *`.
#[no_mangle]
pub unsafe extern "C" fn loc3r_scene_new(model: *const Loc3rModel, out_scene: *mut *mut Loc3rScene) -> Loc3rStatus {
    call("loc3r_scene_new", || {
        let out = unsafe { out_arg(out_scene, "out_scene") }?;
        *out = ptr::null_mut();
        let model = model_arg(model)?;
        *out = SCENES.insert(SceneEntry::new(Loc3r::clone(&model), None, None));
        Ok(())
    })
}

/// Appends one camera frame to a scene: `rgb8_pixels` holds `height` rows of `width` RGB
/// pixels (3 bytes each, R first), each row starting `stride` bytes after the previous one
/// (`stride >= width * 3`; padding bytes are not read). The library copies the pixels; the
/// buffer can be reused when the call returns. `time_s` is the frame's time in seconds on the
/// stream's clock (>= 0, never decreasing). Every frame must have the size of the scene's
/// first frame. The frame is encoded at once (CUT3R continues its recurrence and only the
/// new frame is prefilled), so the call takes about one frame's worth of model work. On
/// error the scene is unchanged.
///
/// # Safety
/// `rgb8_pixels` is NULL or points to at least `stride * (height - 1) + width * 3` readable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn loc3r_push_frame(scene: *mut Loc3rScene, rgb8_pixels: *const u8, width: u32, height: u32, stride: usize, time_s: f64) -> Loc3rStatus {
    call("loc3r_push_frame", || {
        let scene = scene_arg(scene)?;
        if rgb8_pixels.is_null() {
            return Err(Failure::invalid("`rgb8_pixels` is NULL; pass the frame's RGB bytes"));
        }
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 {
            return Err(Failure::invalid(format!("the frame is {width}x{height}; width and height must be at least 1")));
        }
        let row = w.checked_mul(3).ok_or_else(|| Failure::invalid(format!("width {width} is too large")))?;
        if stride < row {
            return Err(Failure::invalid(format!(
                "stride {stride} is smaller than width * 3 = {row}; pass the distance in bytes between the starts of two rows of RGB8 pixels"
            )));
        }
        if (w as u64).saturating_mul(h as u64) > DEFAULT_MAX_PIXELS {
            return Err(Failure::invalid(format!("the frame is {width}x{height}, more than {DEFAULT_MAX_PIXELS} pixels; downscale it")));
        }
        if !time_s.is_finite() || time_s < 0.0 {
            return Err(Failure::invalid(format!("time_s is {time_s}; pass the frame's time in seconds, finite and >= 0")));
        }
        let len = stride.checked_mul(h - 1).and_then(|v| v.checked_add(row)).ok_or_else(|| Failure::invalid("stride * height overflows the address space"))?;
        // SAFETY: the caller guarantees `len` readable bytes (the contract above).
        let bytes = unsafe { std::slice::from_raw_parts(rgb8_pixels, len) };
        let mut rgb = Vec::with_capacity(row * h);
        for y in 0..h {
            rgb.extend_from_slice(&bytes[y * stride..y * stride + row]);
        }
        let rgb = ndarray::Array3::from_shape_vec((h, w, 3), rgb).map_err(|e| Failure::new(LOC3R_INTERNAL, format!("frame array: {e}")))?;

        let mut live = scene.write()?;
        if let Some((first_w, first_h)) = live.frame_size {
            if (first_w, first_h) != (w, h) {
                return Err(Failure::invalid(format!(
                    "the frame is {width}x{height} but this scene's frames are {first_w}x{first_h}; every frame of a scene must have the same size (start a new scene for another camera or resolution)"
                )));
            }
        }
        let index = live.scene.as_ref().map_or(0, |s| s.frames.len());
        let duration_s = live.scene.as_ref().map_or(time_s, |s| s.duration_s().max(time_s));
        let frames = Frames {
            frames: vec![Frame { index, time_s, rgb: rgb.into_shared() }],
            total_frames: index + 1,
            // Not used by the pipeline (times are explicit); kept meaningful for debugging.
            fps: if duration_s > 0.0 { (index + 1) as f64 / duration_s } else { 1.0 },
            duration_s,
        };
        match live.scene.as_mut() {
            Some(s) => s.push_frames(&frames)?,
            None => live.scene = Some(scene.model.observe_frames(&frames)?),
        }
        live.frame_size = Some((w, h));
        Ok(())
    })
}

/// The number of frames a scene holds (0 for a new live scene).
///
/// # Safety
/// `out_count` is NULL or points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn loc3r_scene_frames(scene: *const Loc3rScene, out_count: *mut usize) -> Loc3rStatus {
    call("loc3r_scene_frames", || {
        let out = unsafe { out_arg(out_count, "out_count") }?;
        *out = 0;
        let scene = scene_arg(scene)?;
        *out = scene.read()?.scene.as_ref().map_or(0, |s| s.frames.len());
        Ok(())
    })
}

/// Where am I? The pose for a situation ("I am sitting on the bed facing the window"); NULL
/// or `""` is the default situation (standing in the room). Writes `*out_pose` (zeroed on
/// failure). `LOC3R_NO_FRAMES` if the scene has no frame yet.
///
/// # Safety
/// `situation` is NULL or a NUL-terminated string; `out_pose` is NULL or points to a
/// writable `Loc3rPose`.
#[no_mangle]
pub unsafe extern "C" fn loc3r_localize(scene: *const Loc3rScene, situation: *const c_char, out_pose: *mut Loc3rPose) -> Loc3rStatus {
    call("loc3r_localize", || {
        let out = unsafe { out_arg(out_pose, "out_pose") }?;
        *out = ZERO_POSE;
        let scene = scene_arg(scene)?;
        let situation = unsafe { text_arg(situation, "situation") }?.filter(|s| !s.is_empty());
        let live = scene.read()?;
        *out = Loc3rPose::from(&built(&live)?.localize(situation)?);
        Ok(())
    })
}

/// Answers a question about the scene for a situation (NULL or `""`: the default), with the
/// pose. `options` may be NULL for the defaults. `token_callback` may be NULL; otherwise it
/// receives the answer piece by piece and returns 0 to stop: the call then returns
/// `LOC3R_CANCELLED` and `*out_answer` still holds the partial answer. `*out_answer` is set on
/// `LOC3R_OK` and `LOC3R_CANCELLED` (free it with `loc3r_answer_free`) and NULL otherwise.
///
/// # Safety
/// `situation` and `question` are NULL or NUL-terminated strings; `options` is NULL or points to a `Loc3rAskOptions`;
/// `token_callback` is NULL or a function that follows `Loc3rTokenCallback`; `user_data` is
/// passed to it untouched; `out_answer` is NULL or points to a writable `Loc3rAnswer *`.
#[no_mangle]
pub unsafe extern "C" fn loc3r_ask(
    scene: *const Loc3rScene,
    situation: *const c_char,
    question: *const c_char,
    options: *const Loc3rAskOptions,
    token_callback: Loc3rTokenCallback,
    user_data: *mut c_void,
    out_answer: *mut *mut Loc3rAnswer,
) -> Loc3rStatus {
    call("loc3r_ask", || {
        let out = unsafe { out_arg(out_answer, "out_answer") }?;
        *out = ptr::null_mut();
        let scene = scene_arg(scene)?;
        let situation = unsafe { text_arg(situation, "situation") }?.filter(|s| !s.is_empty());
        let question = unsafe { required_text(question, "question") }?;
        // SAFETY: NULL or a `Loc3rAskOptions` (the contract); every bit pattern is valid.
        let options = GenerationOptions::from(&unsafe { options.as_ref() }.copied().unwrap_or_default());
        let live = scene.read()?;
        let scene = built(&live)?;
        let mut stopped = false;
        let mut piece_buf = Vec::new();
        let answer = scene.ask_streaming(situation, question, &options, |piece| {
            let Some(callback) = token_callback else { return true };
            // Once the caller said stop, it is not called again (the runtime hands over the
            // rest of an incomplete UTF-8 character after its loop).
            if stopped {
                return false;
            }
            piece_buf.clear();
            piece_buf.extend_from_slice(piece.as_bytes());
            piece_buf.push(0);
            // SAFETY: a callback of the documented type; the piece lives until it returns.
            let go_on = unsafe { callback(piece_buf.as_ptr().cast(), piece.len(), user_data) } != 0;
            stopped = !go_on;
            go_on
        })?;
        let generated = answer.tokens.generated;
        *out = new_answer(&answer);
        if stopped {
            return Err(Failure::new(
                LOC3R_CANCELLED,
                format!("the token callback asked to stop after {generated} token(s); *out_answer holds the partial answer (free it with loc3r_answer_free)"),
            ));
        }
        Ok(())
    })
}

fn new_answer(a: &loc3r::Answer) -> *mut Loc3rAnswer {
    let mut text = Vec::with_capacity(a.answer.len() + 1);
    text.extend_from_slice(a.answer.as_bytes());
    text.push(0);
    let text_len = a.answer.len();
    let text = Box::into_raw(text.into_boxed_slice()).cast::<c_char>().cast_const();
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let answer = Box::into_raw(Box::new(Loc3rAnswer {
        text,
        text_len,
        pose: Loc3rPose::from(&a.pose),
        prompt_tokens: n(a.tokens.prompt),
        generated_tokens: n(a.tokens.generated),
        first_token_ms: a.timings_ms.first_token,
        total_ms: a.timings_ms.total,
    }));
    answers().insert(answer.addr());
    answer
}

/// Frees an answer of `loc3r_ask`. NULL is a no-op; an address that is not an answer not yet
/// freed is `LOC3R_INVALID_ARGUMENT` (until the address is reused by a newer answer: set your
/// pointer to NULL after freeing).
///
/// # Safety
/// The fields of `*answer` are as `loc3r_ask` returned them.
#[no_mangle]
pub unsafe extern "C" fn loc3r_answer_free(answer: *mut Loc3rAnswer) -> Loc3rStatus {
    call("loc3r_answer_free", || {
        if answer.is_null() {
            return Ok(());
        }
        if !answers().remove(&answer.addr()) {
            return Err(Failure::invalid(
                "`answer` is not an answer of loc3r_ask that is still live: it was already freed (set your pointer to NULL after freeing), or never came from loc3r_ask",
            ));
        }
        // SAFETY: made by `new_answer` and now out of the live set, so freed exactly once;
        // `text` is the boxed slice of `text_len + 1` bytes it allocated (fields unchanged).
        unsafe {
            let a = Box::from_raw(answer);
            drop(Box::from_raw(ptr::slice_from_raw_parts_mut(a.text.cast_mut().cast::<u8>(), a.text_len + 1)));
        }
        Ok(())
    })
}

/// Frees a scene and its caches (once calls still running on it in other threads finish).
/// NULL is a no-op; a freed handle is refused by every function with
/// `LOC3R_INVALID_ARGUMENT` (a second free included).
#[no_mangle]
pub extern "C" fn loc3r_scene_free(scene: *mut Loc3rScene) -> Loc3rStatus {
    call("loc3r_scene_free", || {
        drop(SCENES.remove(scene, "scene", "scene")?);
        Ok(())
    })
}

/// The Rust scene behind a scene handle (`None`: not a live handle, or no frame yet), for the
/// overhead example to time the Rust API on the very scene a C call uses. Not part of the C
/// ABI.
#[doc(hidden)]
pub fn with_rust_scene<R>(scene: *const Loc3rScene, f: impl FnOnce(&Scene) -> R) -> Option<R> {
    let entry = scene_arg(scene).ok()?;
    let live = entry.read().ok()?;
    live.scene.as_ref().map(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        unsafe { CStr::from_ptr(loc3r_last_error()) }.to_str().unwrap().to_string()
    }

    #[test]
    fn devices_parse_with_an_optional_gpu_index() {
        assert_eq!(parse_device(None).ok(), Some(Device::Cpu));
        assert_eq!(parse_device(Some("")).ok(), Some(Device::Cpu));
        assert_eq!(parse_device(Some("cuda:2")).ok(), Some(Device::Cuda { device_id: 2 }));
        assert!(matches!(parse_device(Some("tensorrt:1")).ok(), Some(Device::TensorRt { device_id: 1, .. })));
        for bad in ["gpu", "cuda:x", "cuda:-1", "cpu:0"] {
            let f = parse_device(Some(bad)).err().unwrap();
            assert_eq!(f.status, LOC3R_INVALID_ARGUMENT, "{bad}: {}", f.message);
        }
    }

    #[test]
    fn a_panic_becomes_an_internal_error_with_its_message() {
        let status = call("loc3r_test", || panic!("the invariant broke"));
        assert_eq!(status, LOC3R_INTERNAL);
        let e = last_error();
        assert!(e.starts_with("loc3r_test: internal error") && e.contains("the invariant broke"), "{e}");
        assert_eq!(call("loc3r_test", || Ok(())), LOC3R_OK);
        assert_eq!(last_error(), "", "a call that succeeds clears the message");
    }

    #[test]
    fn errors_are_sorted_into_statuses() {
        let cases: Vec<(Error, Loc3rStatus)> = vec![
            (Error::Input("bad".into()), LOC3R_INVALID_ARGUMENT),
            (Error::Video(VideoError::NotFound { path: "/x.mp4".into() }), LOC3R_NOT_FOUND),
            (Error::BundleFile { path: "b/manifest.json".into(), error: std::io::ErrorKind::NotFound.into() }, LOC3R_NOT_FOUND),
            (Error::BundleFile { path: "b/manifest.json".into(), error: std::io::ErrorKind::PermissionDenied.into() }, LOC3R_BAD_BUNDLE),
            (Error::Bundle("corrupt".into()), LOC3R_BAD_BUNDLE),
            (Error::Cancelled("deadline"), LOC3R_CANCELLED),
            (Error::OrtMissing("no".into()), LOC3R_RUNTIME),
            (Error::Internal("bug".into()), LOC3R_INTERNAL),
        ];
        for (e, status) in cases {
            let text = e.to_string();
            let f = Failure::from(e);
            assert_eq!(f.status, status, "{text}");
            assert!(f.message.contains(&text), "{} vs {text}", f.message);
        }
    }

    #[test]
    fn status_names_match_the_enum() {
        for s in [LOC3R_OK, LOC3R_INVALID_ARGUMENT, LOC3R_NOT_FOUND, LOC3R_BAD_BUNDLE, LOC3R_NO_FRAMES, LOC3R_CANCELLED, LOC3R_RUNTIME, LOC3R_INTERNAL] {
            let name = unsafe { CStr::from_ptr(loc3r_status_name(s as c_int)) }.to_str().unwrap();
            assert_eq!(name, format!("{s:?}"));
        }
        assert_eq!(unsafe { CStr::from_ptr(loc3r_status_name(99)) }.to_str().unwrap(), "LOC3R_UNKNOWN_STATUS");
    }
}
