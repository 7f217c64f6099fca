//! `loc3r._native`: the Rust half of the `loc3r` Python package (python/loc3r/__init__.py
//! re-exports it). A thin layer over the `loc3r` runtime library: every inference call
//! releases the GIL, results are small frozen classes, and runtime errors become
//! `loc3r.Error` subclasses chosen by the runtime's [`Fault`].

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Instant;

use loc3r::pipeline::Timings;
use loc3r::stages::video::{Frame, Frames};
use loc3r::{Device, Fault, GenerationOptions, Loc3r, SessionOptions};
use ndarray::Array3;
use numpy::{PyArray3, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple, PyType};

pyo3::create_exception!(loc3r, Error, PyException, "Base class of every error the loc3r library raises.");

/// The exception class for a fault. Created once per interpreter with `type()`, because
/// `create_exception!` gives a single base and these also derive from the matching builtin
/// (`except ValueError` catches bad input, as it does for any Python library).
fn error_class(py: Python<'_>, fault: Fault) -> PyResult<Bound<'_, PyType>> {
    static CLASSES: PyOnceLock<[Py<PyType>; 4]> = PyOnceLock::new();
    let classes = CLASSES.get_or_try_init(py, || -> PyResult<[Py<PyType>; 4]> {
        let make = |name: &str, builtin: Option<Bound<'_, PyType>>, doc: &str, fault: &str| -> PyResult<Py<PyType>> {
            let base = py.get_type::<Error>();
            let bases = match builtin {
                Some(b) => PyTuple::new(py, [base, b])?,
                None => PyTuple::new(py, [base])?,
            };
            let attrs = PyDict::new(py);
            attrs.set_item("__doc__", doc)?;
            attrs.set_item("__module__", "loc3r")?;
            attrs.set_item("fault", fault)?;
            let class = py.get_type::<PyType>().call1((name, bases, attrs))?;
            Ok(class.cast_into::<PyType>()?.unbind())
        };
        Ok([
            make(
                "InputError",
                Some(py.get_type::<PyValueError>()),
                "The caller's data or arguments: a video, a frame, a question, an option out of range.",
                "input",
            )?,
            make("BundleError", None, "The bundle: missing, corrupt or inconsistent files (the message names the file).", "bundle")?,
            make(
                "RuntimeError",
                Some(py.get_type::<PyRuntimeError>()),
                "The machine: ONNX Runtime, I/O, an execution provider or device that cannot be used.",
                "runtime",
            )?,
            make("InternalError", None, "A bug in loc3r or a broken invariant; please report it with the message.", "internal")?,
        ])
    })?;
    let i = match fault {
        Fault::Input => 0,
        Fault::Bundle => 1,
        Fault::Runtime => 2,
        Fault::Internal => 3,
    };
    Ok(classes[i].bind(py).clone())
}

fn raise(py: Python<'_>, fault: Fault, message: String) -> PyErr {
    match error_class(py, fault) {
        Ok(class) => PyErr::from_type(class, message),
        Err(e) => e,
    }
}

/// A runtime error as the Python exception of its fault, with ONNX Runtime's own message
/// appended (the runtime keeps it as the error's source).
fn runtime_error(e: loc3r::Error) -> PyErr {
    Python::attach(|py| raise(py, e.fault(), e.with_sources()))
}

fn input_error(message: String) -> PyErr {
    Python::attach(|py| raise(py, Fault::Input, message))
}

fn poisoned() -> PyErr {
    Python::attach(|py| {
        raise(
            py,
            Fault::Internal,
            "a previous call on this scene panicked and left it unusable; create a new scene (model.scene() or model.observe_video)".into(),
        )
    })
}

/// `loc3r.open(bundle, device="cpu", *, threads=0)`: opens an exported bundle.
#[pyfunction]
#[pyo3(signature = (bundle, device = "cpu", *, threads = 0))]
fn open(py: Python<'_>, bundle: PathBuf, device: &str, threads: usize) -> PyResult<Model> {
    let device: Device = device.parse().map_err(runtime_error)?;
    let opts = SessionOptions { device: device.clone(), intra_threads: threads, ..SessionOptions::default() };
    let model = py.detach(|| Loc3r::open(&bundle, &opts)).map_err(runtime_error)?;
    Ok(Model { model, bundle, device: device.name() })
}

/// An opened bundle. Thread-safe; scenes of one model may be used from many threads.
#[pyclass(frozen, module = "loc3r")]
struct Model {
    model: Loc3r,
    bundle: PathBuf,
    device: &'static str,
}

#[pymethods]
impl Model {
    /// Decodes a video file (or a directory of png/jpg images) and observes `frames` frames
    /// sampled uniformly over it.
    #[pyo3(signature = (path, frames = 32))]
    fn observe_video(&self, py: Python<'_>, path: PathBuf, frames: usize) -> PyResult<Scene> {
        let scene = py.detach(|| self.model.observe_video(&path, frames)).map_err(runtime_error)?;
        Ok(Scene::new(self.model.clone(), Some(scene)))
    }

    /// An empty scene for live frames: `push_frame` them, then localize or ask.
    fn scene(&self) -> Scene {
        Scene::new(self.model.clone(), None)
    }

    /// A scene fed from a camera under a keyframe policy, of bounded size: `offer` it every
    /// frame; every `every`-th becomes a keyframe (optionally only if the camera moved
    /// `min_move_m` or turned `min_turn_deg` since the last one, by CUT3R's pose); at most
    /// `window` keyframes are kept, a full scene restarting from its newest half (its
    /// coordinates are then anchored at its new first keyframe: see `anchor`).
    #[pyo3(signature = (*, every = 10, window = 16, min_move_m = None, min_turn_deg = None))]
    fn live_scene(&self, every: usize, window: usize, min_move_m: Option<f32>, min_turn_deg: Option<f32>) -> PyResult<LiveScene> {
        let policy = loc3r::live::KeyframePolicy { every, window, min_move_m, min_turn_deg };
        let live = loc3r::live::LiveScene::new(&self.model, policy).map_err(runtime_error)?;
        Ok(LiveScene { live: std::sync::Mutex::new(live) })
    }

    #[getter]
    fn bundle(&self) -> PathBuf {
        self.bundle.clone()
    }

    #[getter]
    fn device(&self) -> &'static str {
        self.device
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let bundle = PyString::new(py, &self.bundle.display().to_string()).repr()?;
        Ok(format!("Model(bundle={bundle}, device='{}')", self.device))
    }
}

/// The runtime scene (none before a live scene's first frame) and the size of the first
/// frame pushed, which every later frame must have. An observed video's frames are not kept;
/// frames pushed onto it are held to its CUT3R input size by the runtime.
struct SceneState {
    scene: Option<loc3r::Scene>,
    frame_size: Option<(usize, usize)>,
}

/// An observed video or a stream of live frames, with the cache questions are answered from.
/// The runtime cannot hold a scene without frames, so a live scene starts empty here and the
/// first `push_frame` observes it.
#[pyclass(frozen, module = "loc3r")]
struct Scene {
    model: Loc3r,
    // A lock, not `&mut self`: calls run with the GIL released, so two Python threads can be
    // inside the same scene; localize and ask share it, push_frame waits for them.
    state: RwLock<SceneState>,
}

impl Scene {
    fn new(model: Loc3r, scene: Option<loc3r::Scene>) -> Scene {
        Scene { model, state: RwLock::new(SceneState { scene, frame_size: None }) }
    }

    fn read<T>(&self, f: impl FnOnce(&loc3r::Scene) -> PyResult<T>) -> PyResult<T> {
        let state = self.state.read().map_err(|_| poisoned())?;
        match &state.scene {
            Some(scene) => f(scene),
            None => Err(input_error("this scene has no frames yet; push one with scene.push_frame(frame, time_s) before localize or ask".into())),
        }
    }

    /// A property of the scene, 0-like when it has no frames yet.
    fn peek<T: Default>(&self, f: impl FnOnce(&loc3r::Scene) -> T) -> PyResult<T> {
        let state = self.state.read().map_err(|_| poisoned())?;
        Ok(state.scene.as_ref().map(f).unwrap_or_default())
    }
}

/// Copies a frame out of a NumPy array (any strides: views such as `frame[..., ::-1]` are
/// accepted), after checking that it is an RGB image of bytes.
fn frame_pixels(frame: &Bound<'_, PyAny>) -> PyResult<Array3<u8>> {
    let py = frame.py();
    let Ok(array) = frame.cast::<PyUntypedArray>() else {
        let type_name = frame.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        return Err(input_error(format!(
            "frame must be a numpy.ndarray of dtype uint8 and shape (H, W, 3), got a {type_name}; convert it with numpy.asarray(frame, dtype=numpy.uint8)"
        )));
    };
    let dtype = array.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<u8>(py)) {
        return Err(input_error(format!(
            "frame has dtype {dtype}, expected uint8 RGB values 0..255; convert it (e.g. (frame * 255).clip(0, 255).astype(numpy.uint8) for floats in 0..1)"
        )));
    }
    let shape = array.shape();
    if shape.len() != 3 || shape[2] != 3 || shape[0] == 0 || shape[1] == 0 {
        return Err(input_error(format!(
            "frame has shape {shape:?}, expected (H, W, 3) RGB with H, W > 0; convert grey or RGBA images to RGB first (OpenCV's BGR: frame[..., ::-1])"
        )));
    }
    let array = array.cast::<PyArray3<u8>>()?;
    let readonly = array.try_readonly().map_err(|e| input_error(format!("cannot read the frame: {e}")))?;
    Ok(readonly.as_array().to_owned())
}

#[pymethods]
impl Scene {
    /// Appends one live frame (`frame`: a NumPy uint8 array of shape (H, W, 3), RGB) taken
    /// `time_s` seconds after the stream started. Every frame must have the first one's size
    /// and times must not decrease. On error the scene is unchanged.
    fn push_frame(&self, py: Python<'_>, frame: &Bound<'_, PyAny>, time_s: f64) -> PyResult<()> {
        if !time_s.is_finite() || time_s < 0.0 {
            return Err(input_error(format!("time_s must be a finite number of seconds >= 0 since the stream started, got {time_s}")));
        }
        let pixels = frame_pixels(frame)?;
        let (height, width) = (pixels.shape()[0], pixels.shape()[1]);
        py.detach(|| {
            let mut state = self.state.write().map_err(|_| poisoned())?;
            if let Some((first_h, first_w)) = state.frame_size {
                if (height, width) != (first_h, first_w) {
                    return Err(input_error(format!(
                        "frame is {width}x{height} pixels but this scene's first frame was {first_w}x{first_h}; push frames of one size (resize them first)"
                    )));
                }
            }
            let index = state.scene.as_ref().map_or(0, |s| s.frames.len());
            let frames = Frames {
                frames: vec![Frame { index, time_s, rgb: pixels.into_shared() }],
                total_frames: index + 1,
                fps: if time_s > 0.0 { (index + 1) as f64 / time_s } else { 0.0 },
                // A stream so far lasts until its latest frame.
                duration_s: time_s,
            };
            match state.scene.as_mut() {
                Some(scene) => scene.push_frames(&frames).map_err(runtime_error)?,
                None => state.scene = Some(self.model.observe_frames(&frames).map_err(runtime_error)?),
            }
            state.frame_size = Some((height, width));
            Ok(())
        })
    }

    /// Where am I? Position and orientation for a situation (None: standing in the room).
    #[pyo3(signature = (situation = None))]
    fn localize(&self, py: Python<'_>, situation: Option<&str>) -> PyResult<Localization> {
        let pose = py.detach(|| self.read(|scene| scene.localize(situation).map_err(runtime_error)))?;
        Ok(Localization::from(&pose))
    }

    /// Answers a question about the scene. `stream`, if given, is called with each text
    /// piece as it is decoded; returning False stops the answer there (None or any other
    /// value goes on). An exception raised by `stream` stops the answer and propagates.
    #[pyo3(signature = (situation, question, *, max_new_tokens = 128, stream = None, temperature = 0.0, top_k = 0, top_p = 1.0, seed = 0))]
    #[allow(clippy::too_many_arguments)]
    fn ask(
        &self,
        py: Python<'_>,
        situation: Option<&str>,
        question: &str,
        max_new_tokens: usize,
        stream: Option<Py<PyAny>>,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
    ) -> PyResult<Answer> {
        let opts = GenerationOptions { max_new_tokens, temperature, top_k, top_p, seed };
        // The first exception of the callback (or Ctrl-C), raised once the runtime returns.
        let mut raised: Option<PyErr> = None;
        let answer = py.detach(|| {
            self.read(|scene| {
                scene
                    .ask_streaming(situation, question, &opts, |piece| {
                        Python::attach(|py| {
                            let outcome = py.check_signals().and_then(|()| match &stream {
                                // Only False stops: a callback such as `print` returns None.
                                Some(callback) => callback.call1(py, (piece,)).map(|r| !r.bind(py).is(PyBool::new(py, false).to_owned())),
                                None => Ok(true),
                            });
                            outcome.unwrap_or_else(|e| {
                                raised.get_or_insert(e);
                                false
                            })
                        })
                    })
                    .map_err(runtime_error)
            })
        });
        if let Some(e) = raised {
            return Err(e);
        }
        let answer = answer?;
        let localization = Py::new(py, Localization::from(&answer.pose))?;
        Ok(Answer {
            text: answer.answer,
            localization,
            prompt_tokens: answer.tokens.prompt,
            generated_tokens: answer.tokens.generated,
            token_ids: answer.token_ids,
            timings: answer.timings_ms,
        })
    }

    /// Frames observed so far.
    fn __len__(&self) -> PyResult<usize> {
        self.peek(|s| s.frames.len())
    }

    /// Frames observed so far (as `len(scene)`).
    #[getter]
    fn frame_count(&self) -> PyResult<usize> {
        self.peek(|s| s.frames.len())
    }

    /// Time of each observed frame, in seconds.
    #[getter]
    fn frame_times_s(&self) -> PyResult<Vec<f64>> {
        self.peek(|s| s.frames.iter().map(|f| f.time_s).collect())
    }

    /// CUT3R's camera-to-world pose of each frame, `[tx, ty, tz, qw, qx, qy, qz]` (world =
    /// the first frame).
    #[getter]
    fn camera_poses(&self) -> PyResult<Vec<[f32; 7]>> {
        self.peek(|s| s.frames.iter().map(|f| f.camera_pose).collect())
    }

    /// Duration of the video, or of the stream up to its latest frame, in seconds.
    #[getter]
    fn duration_s(&self) -> PyResult<f64> {
        self.peek(|s| s.duration_s())
    }

    /// Tokens in the cached video prefix.
    #[getter]
    fn prefix_tokens(&self) -> PyResult<usize> {
        self.peek(|s| s.prefix_tokens())
    }

    /// Bytes held by the scene's caches.
    #[getter]
    fn cache_bytes(&self) -> PyResult<usize> {
        self.peek(|s| s.cache_bytes())
    }

    /// Stage times (ms) of the last observe or push_frame.
    #[getter]
    fn observe_timings_ms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let timings = self.peek(|s| s.observe_timings.clone())?;
        timings_dict(py, &timings)
    }

    fn __repr__(&self) -> PyResult<String> {
        let (frames, duration, prefix) = self.peek(|s| (s.frames.len(), s.duration_s(), s.prefix_tokens()))?;
        Ok(format!("Scene(frames={frames}, duration_s={duration:.2}, prefix_tokens={prefix})"))
    }
}

fn timings_dict<'py>(py: Python<'py>, t: &Timings) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (key, value) in t.stages() {
        d.set_item(key, value)?;
    }
    Ok(d)
}

/// Position on the floor plan (metres, with σ per axis) and heading.
#[pyclass(frozen, eq, module = "loc3r")]
#[derive(Clone, PartialEq)]
struct Localization {
    #[pyo3(get)]
    x: f32,
    #[pyo3(get)]
    y: f32,
    #[pyo3(get)]
    sigma_x: f32,
    #[pyo3(get)]
    sigma_y: f32,
    #[pyo3(get)]
    yaw_deg: f64,
    /// Probability of each orientation bin.
    #[pyo3(get)]
    orientation_probs: Vec<f32>,
    /// False when the orientation distribution has no dominant direction.
    #[pyo3(get)]
    orientation_confident: bool,
}

impl From<&loc3r::Localization> for Localization {
    fn from(l: &loc3r::Localization) -> Self {
        Localization {
            x: l.position.x,
            y: l.position.y,
            sigma_x: l.position.sigma_x,
            sigma_y: l.position.sigma_y,
            yaw_deg: l.yaw_deg,
            orientation_probs: l.orientation_probs.clone(),
            orientation_confident: l.orientation_confident,
        }
    }
}

#[pymethods]
impl Localization {
    /// The attributes as a dict (JSON-serialisable).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("x", self.x)?;
        d.set_item("y", self.y)?;
        d.set_item("sigma_x", self.sigma_x)?;
        d.set_item("sigma_y", self.sigma_y)?;
        d.set_item("yaw_deg", self.yaw_deg)?;
        d.set_item("orientation_probs", self.orientation_probs.clone())?;
        d.set_item("orientation_confident", self.orientation_confident)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Localization(x={:.3}, y={:.3}, sigma_x={:.3}, sigma_y={:.3}, yaw_deg={:.1}, orientation_confident={}, orientation_probs=[{} values])",
            self.x,
            self.y,
            self.sigma_x,
            self.sigma_y,
            self.yaw_deg,
            if self.orientation_confident { "True" } else { "False" },
            self.orientation_probs.len()
        )
    }
}

/// An answer with the pose the model gave for the situation.
#[pyclass(frozen, module = "loc3r")]
struct Answer {
    #[pyo3(get)]
    text: String,
    #[pyo3(get)]
    localization: Py<Localization>,
    /// Tokens of the whole prompt (video prefix and question).
    #[pyo3(get)]
    prompt_tokens: usize,
    #[pyo3(get)]
    generated_tokens: usize,
    /// Ids of the generated tokens (stop token excluded).
    #[pyo3(get)]
    token_ids: Vec<u32>,
    timings: Timings,
}

#[pymethods]
impl Answer {
    /// Stage times of this answer in milliseconds.
    #[getter]
    fn timings_ms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        timings_dict(py, &self.timings)
    }

    /// The attributes as a dict (JSON-serialisable; the localization as a dict too).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("text", &self.text)?;
        d.set_item("localization", self.localization.get().to_dict(py)?)?;
        d.set_item("prompt_tokens", self.prompt_tokens)?;
        d.set_item("generated_tokens", self.generated_tokens)?;
        d.set_item("token_ids", self.token_ids.clone())?;
        d.set_item("timings_ms", self.timings_ms(py)?)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let l = self.localization.get();
        Ok(format!(
            "Answer(text={}, x={:.3}, y={:.3}, yaw_deg={:.1}, generated_tokens={}, total_ms={:.1})",
            PyString::new(py, &self.text).repr()?,
            l.x,
            l.y,
            l.yaw_deg,
            self.generated_tokens,
            self.timings.total
        ))
    }
}

/// Benchmark hook of python/bench_overhead.py, not API: the seconds `n` localize calls take
/// inside Rust (GIL released, no Python in between), to compare with `n` calls from Python.
#[pyfunction]
#[pyo3(signature = (scene, n, situation = None))]
fn _rust_localize_seconds(py: Python<'_>, scene: &Scene, n: usize, situation: Option<&str>) -> PyResult<f64> {
    py.detach(|| {
        scene.read(|s| {
            let start = Instant::now();
            for _ in 0..n {
                s.localize(situation).map_err(runtime_error)?;
            }
            Ok(start.elapsed().as_secs_f64())
        })
    })
}

/// Frames from a camera (/dev/videoN), a stream (rtsp://, http://, udp://), a video file or a
/// directory of images, decoded on a thread of the library. Iterate it for
/// `(index, time_s, frame)` tuples (`frame`: uint8 RGB of shape (H, W, 3)). With
/// `realtime=True` a file plays at its frame rate and frames the loop is too slow for are
/// dropped (counted in `dropped`), as a camera does; a source silent for `stall_timeout_s`
/// raises `loc3r.RuntimeError`.
#[pyclass(module = "loc3r")]
struct FrameSource {
    source: std::sync::Mutex<loc3r::live::FrameSource>,
}

/// `(index, time_s, frame)` as a [`FrameSource`] yields it.
type SourceFrame<'py> = (usize, f64, Bound<'py, PyArray3<u8>>);

#[pyfunction]
#[pyo3(signature = (source, *, realtime = true, stall_timeout_s = 10.0, image_fps = 10.0))]
fn frames(py: Python<'_>, source: &str, realtime: bool, stall_timeout_s: f64, image_fps: f64) -> PyResult<FrameSource> {
    let stall_timeout = std::time::Duration::try_from_secs_f64(stall_timeout_s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| input_error(format!("stall_timeout_s must be a positive number of seconds, got {stall_timeout_s}")))?;
    let opts = loc3r::live::SourceOptions { realtime, stall_timeout, image_fps, ..Default::default() };
    let source = py.detach(|| loc3r::live::FrameSource::open(source, &opts)).map_err(|e| runtime_error(e.into()))?;
    Ok(FrameSource { source: std::sync::Mutex::new(source) })
}

#[pymethods]
impl FrameSource {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<SourceFrame<'py>>> {
        let next = py.detach(|| self.source.lock().map_err(|_| poisoned()).map(|mut s| s.next_frame()))?;
        match next.map_err(|e| runtime_error(e.into()))? {
            Some(f) => Ok(Some((f.index, f.time_s, PyArray3::from_owned_array(py, f.rgb.into_owned())))),
            None => Ok(None),
        }
    }

    /// Frames per second the source declares.
    #[getter]
    fn fps(&self) -> PyResult<f64> {
        Ok(self.source.lock().map_err(|_| poisoned())?.fps())
    }

    /// Frames dropped because the consumer was busy (realtime sources).
    #[getter]
    fn dropped(&self) -> PyResult<usize> {
        Ok(self.source.lock().map_err(|_| poisoned())?.dropped())
    }
}

/// A scene fed from a live source with bounded memory (see `Model.live_scene`).
#[pyclass(frozen, module = "loc3r")]
struct LiveScene {
    live: std::sync::Mutex<loc3r::live::LiveScene>,
}

#[pymethods]
impl LiveScene {
    /// Offers the source's next frame; returns "skipped", "added" or "restarted".
    fn offer(&self, py: Python<'_>, index: usize, time_s: f64, frame: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        if !time_s.is_finite() || time_s < 0.0 {
            return Err(input_error(format!("time_s must be a finite number of seconds >= 0, got {time_s}")));
        }
        let rgb = frame_pixels(frame)?.into_shared();
        let offered = py.detach(|| {
            let mut live = self.live.lock().map_err(|_| poisoned())?;
            live.offer(loc3r::live::LiveFrame { index, time_s, rgb }).map_err(runtime_error)
        })?;
        Ok(match offered {
            loc3r::live::Offered::Skipped => "skipped",
            loc3r::live::Offered::Added => "added",
            loc3r::live::Offered::Restarted => "restarted",
        })
    }

    /// Where am I, in the frame of the current scene's first keyframe (`anchor`)?
    #[pyo3(signature = (situation = None))]
    fn localize(&self, py: Python<'_>, situation: Option<&str>) -> PyResult<Localization> {
        let pose = py.detach(|| {
            let live = self.live.lock().map_err(|_| poisoned())?;
            let scene = live.scene().ok_or_else(|| input_error("no keyframe yet; offer frames first".into()))?;
            scene.localize(situation).map_err(runtime_error)
        })?;
        Ok(Localization::from(&pose))
    }

    /// `(index, time_s)` of the source frame the current scene is anchored at; None before the first keyframe.
    #[getter]
    fn anchor(&self) -> PyResult<Option<(usize, f64)>> {
        Ok(self.live.lock().map_err(|_| poisoned())?.anchor())
    }

    /// Keyframes in the current scene (at most the window).
    #[getter]
    fn keyframes(&self) -> PyResult<usize> {
        Ok(self.live.lock().map_err(|_| poisoned())?.keyframes())
    }

    /// Times a full scene restarted from its newest keyframes.
    #[getter]
    fn restarts(&self) -> PyResult<usize> {
        Ok(self.live.lock().map_err(|_| poisoned())?.restarts())
    }
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(frames, m)?)?;
    m.add_class::<FrameSource>()?;
    m.add_class::<LiveScene>()?;
    m.add_function(wrap_pyfunction!(_rust_localize_seconds, m)?)?;
    m.add_class::<Model>()?;
    m.add_class::<Scene>()?;
    m.add_class::<Localization>()?;
    m.add_class::<Answer>()?;
    m.add("Error", py.get_type::<Error>())?;
    for fault in [Fault::Input, Fault::Bundle, Fault::Runtime, Fault::Internal] {
        let class = error_class(py, fault)?;
        m.add(class.name()?.to_string(), class)?;
    }
    Ok(())
}
