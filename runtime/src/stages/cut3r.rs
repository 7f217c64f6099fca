//! The CUT3R recurrence (docs/cut3r.md §2-§3): `cut3r_encoder` batched over frames, then
//! `cut3r_step` frame by frame carrying the state and memory, starting from the bundle's
//! `cut3r_init.safetensors` (read once, when the model is opened: [`Cut3rState::initial`])
//! with `is_first` on the first frame.

use ndarray::{s, Array2, Array4, ArrayD, Axis};
use ort::session::SessionInputValue;
use ort::value::DynValue;

use loc3r_bundle::io::cut3r::{CAMERA_POSE, CAMERA_TOKEN, FEATURES, IMAGE, IS_FIRST, MEMORY, MEMORY_OUT, RESET, STATE, STATE_OUT, UPDATE};
use loc3r_bundle::io::cut3r_init::{MEM_INIT, STATE_INIT};
use loc3r_bundle::Graph;

use crate::bundle::{batches, Bundle};
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::values;

pub const INIT_FILE: &str = loc3r_bundle::io::cut3r_init::FILE;

/// Recurrent state between frames.
pub struct Cut3rState {
    state: DynValue,
    memory: DynValue,
    /// Frames seen since the start (is_first is set for frame 0).
    pub frames_seen: usize,
}

impl Cut3rState {
    /// The initial state of a new sequence, from the bundle's [`INIT_FILE`]. Every observed
    /// video starts from it (the recurrence never modifies it), so a model reads it once.
    pub fn initial(bundle: &Bundle) -> Result<Cut3rState> {
        let path = bundle.dir.join(INIT_FILE);
        let bytes = std::fs::read(&path).map_err(|error| Error::BundleFile { path: path.clone(), error })?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Bundle(format!("{}: {e}", path.display())))?;
        let read = |name: &str| -> Result<DynValue> {
            let t = st.tensor(name).map_err(|e| Error::Bundle(format!("{}: `{name}`: {e}", path.display())))?;
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(Error::Bundle(format!("{}: `{name}` must be f32", path.display())));
            }
            let data: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            values::from_f32(values::array(t.shape(), data), "f32", name)
        };
        Ok(Cut3rState { state: read(STATE_INIT)?, memory: read(MEM_INIT)?, frames_seen: 0 })
    }
}

impl std::fmt::Debug for Cut3rState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cut3rState").field("frames_seen", &self.frames_seen).finish()
    }
}

/// Per-frame outputs.
#[derive(Debug, Clone)]
pub struct CameraTokens {
    /// `[F, Dc]`
    pub tokens: Array2<f32>,
    /// `[F, 7]`: `[tx, ty, tz, qw, qx, qy, qz]`, camera-to-world (world = first frame).
    pub poses: Array2<f32>,
}

pub struct Cut3r<'b> {
    bundle: &'b Bundle,
}

impl<'b> Cut3r<'b> {
    pub fn new(bundle: &'b Bundle) -> Result<Cut3r<'b>> {
        bundle.session(Graph::Cut3rEncoder)?;
        bundle.session(Graph::Cut3rStep)?;
        Ok(Cut3r { bundle })
    }

    fn input_dtype(&self, graph: Graph, input: &str) -> Result<String> {
        let g = self.bundle.manifest.graph(graph)?;
        g.input(input).map(|i| i.dtype.clone()).ok_or_else(|| Error::Bundle(format!("{} has no input `{input}`", graph.file_name())))
    }

    /// Encodes frames `[F,3,H,W]` and runs the recurrence over them, continuing `state`;
    /// returns the camera outputs and the state after the last frame (`state` itself is
    /// left as it was, so a caller can drop the result if a later stage fails).
    pub fn run(&self, pixels: &Array4<f32>, state: &Cut3rState) -> Result<(CameraTokens, Cut3rState)> {
        self.run_cancellable(pixels, state, &Cancel::new())
    }

    /// [`Cut3r::run`], checking `cancel` before every encoder batch and every recurrence step.
    pub fn run_cancellable(&self, pixels: &Array4<f32>, state: &Cut3rState, cancel: &Cancel) -> Result<(CameraTokens, Cut3rState)> {
        let frames = pixels.shape()[0];
        if frames == 0 {
            // The pipeline refuses empty videos before any stage runs.
            return Err(Error::Internal("no frames for CUT3R".into()));
        }
        let image_dtype = self.input_dtype(Graph::Cut3rEncoder, IMAGE)?;
        let features_dtype = self.input_dtype(Graph::Cut3rStep, FEATURES)?;
        let features = {
            let mut enc = self.bundle.lock(Graph::Cut3rEncoder)?;
            let mut parts = Vec::new();
            for range in batches(frames, self.bundle.frame_batch) {
                cancel.check()?;
                let batch = pixels.slice(s![range, .., .., ..]);
                self.bundle.check_shape(Graph::Cut3rEncoder, IMAGE, batch.shape())?;
                let image = values::from_f32(batch.to_owned().into_dyn(), &image_dtype, "cut3r image")?;
                let out = enc.run(ort::inputs![IMAGE => image]).map_err(|e| Error::ort("running cut3r_encoder", e))?;
                parts.push(values::to_f32(&out[FEATURES], "cut3r features")?);
            }
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Bundle(format!("cut3r_encoder features: {e}")))?
        };
        let dc = self.bundle.manifest.runtime.cut3r.dim;
        let mut tokens = Array2::zeros((frames, dc));
        let mut poses = Array2::zeros((frames, 7));
        let mut step = self.bundle.lock(Graph::Cut3rStep)?;
        let mut carried: Option<(DynValue, DynValue)> = None;
        for f in 0..frames {
            cancel.check()?;
            let (state_in, memory_in) = match &carried {
                Some((s, m)) => (s, m),
                None => (&state.state, &state.memory),
            };
            let feat: ArrayD<f32> = features.slice(s![f..f + 1, .., ..]).to_owned().into_dyn();
            let flag = |v: f32| values::from_f32(values::array(&[1], vec![v]), "f32", "cut3r flag");
            let inputs: Vec<(String, SessionInputValue<'_>)> = vec![
                (FEATURES.into(), values::from_f32(feat, &features_dtype, "cut3r features")?.into()),
                (STATE.into(), state_in.into()),
                (MEMORY.into(), memory_in.into()),
                (IS_FIRST.into(), flag(if state.frames_seen + f == 0 { 1.0 } else { 0.0 })?.into()),
                (UPDATE.into(), flag(1.0)?.into()),
                (RESET.into(), flag(0.0)?.into()),
            ];
            let mut out = step.run(inputs).map_err(|e| Error::ort("running cut3r_step", e))?;
            let mut take = |name: &str| out.remove(name).ok_or_else(|| Error::Bundle(format!("cut3r_step.onnx has no output `{name}`")));
            let token = take(CAMERA_TOKEN)?;
            let pose = take(CAMERA_POSE)?;
            let new_state = take(STATE_OUT)?;
            let new_memory = take(MEMORY_OUT)?;
            tokens.row_mut(f).assign(&values::to_f32(&token, CAMERA_TOKEN)?.index_axis(Axis(0), 0));
            poses.row_mut(f).assign(&values::to_f32(&pose, CAMERA_POSE)?.index_axis(Axis(0), 0));
            carried = Some((new_state, new_memory));
        }
        let (state_out, memory_out) = carried.expect("at least one frame");
        Ok((CameraTokens { tokens, poses }, Cut3rState { state: state_out, memory: memory_out, frames_seen: state.frames_seen + frames }))
    }
}
