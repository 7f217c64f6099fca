//! The prepared sample: one training example with its frozen encoders already run
//! (docs/training.md §5), read and written as safetensors.
//!
//! | tensor | dtype, shape | meaning |
//! |---|---|---|
//! | `image_features` | f32 [F, P, Cv] | SigLIP output per frame (P = grid²) |
//! | `camera_tokens` | f32 [F, Dc] | CUT3R camera token per frame |
//! | `input_ids` | i64 [S] | the prompt and answer, with the video placeholder −200 exactly once |
//! | `labels` | i64 [S] | the token each position must produce, −100 where unsupervised |
//! | `pos_target` | f32 [2] | agent position in the BEV frame |
//! | `yaw_target` | f32 [1] | agent yaw in the BEV frame, radians (bins at 2πk/K) |
//! | `situation_valid` | f32 [1] | 1 when the sample carries a ground-truth situation |
//! | `bev_target` | f32 [T, 2] | BEV ground truth of the T = F·G² pooled grid tokens, frame-major, row-major |
//! | `bev_mask` | f32 [T] | 1 where `bev_target` is reliable |
//!
//! Labels are aligned with `input_ids` (HF convention): position i's label is the token at i;
//! the logits of position i − 1 predict it. The video positions are never supervised.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use loc3r_export::checkpoint::{write_safetensors, TensorToWrite};
use loc3r_export::config::Config;
use loc3r_export::DType;

/// LLaVA's image placeholder id in `input_ids`.
pub const IMAGE_PLACEHOLDER: i64 = -200;
/// The label of an unsupervised position.
pub const IGNORE: i64 = -100;

/// Why a sample file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct SampleError {
    pub path: PathBuf,
    pub message: String,
}

/// One prepared sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub frames: usize,
    pub image_features: Vec<f32>,
    /// (P, Cv)
    pub feature_shape: (usize, usize),
    pub camera_tokens: Vec<f32>,
    pub camera_dim: usize,
    pub input_ids: Vec<i64>,
    pub labels: Vec<i64>,
    pub pos_target: [f32; 2],
    pub yaw_target: f32,
    pub situation_valid: f32,
    pub bev_target: Vec<f32>,
    pub bev_mask: Vec<f32>,
}

impl Sample {
    /// Where the video placeholder is in `input_ids` (its first occurrence; `validate` requires
    /// exactly one).
    pub fn placeholder(&self) -> Option<usize> {
        self.input_ids.iter().position(|&t| t == IMAGE_PLACEHOLDER)
    }

    /// Checks the sample against the checkpoint's config: shapes, the placeholder, the
    /// `<Pos>`/`<Ori>` tokens, label ids and finite targets. Every problem names the tensor.
    pub fn validate(&self, cfg: &Config) -> Result<(), String> {
        let grid = cfg.vision_grid();
        let (p, cv) = self.feature_shape;
        if p != grid * grid || cv != cfg.vision_config.hidden_size {
            return Err(format!(
                "image_features is [{}, {p}, {cv}], the checkpoint's SigLIP gives [F, {}, {}]",
                self.frames,
                grid * grid,
                cfg.vision_config.hidden_size
            ));
        }
        if self.camera_dim != cfg.loc3r.camera_token_dim {
            return Err(format!("camera_tokens has width {}, the checkpoint's camera tokens have {}", self.camera_dim, cfg.loc3r.camera_token_dim));
        }
        if self.frames == 0 {
            return Err("the sample has no frames".into());
        }
        let placeholders = self.input_ids.iter().filter(|&&t| t == IMAGE_PLACEHOLDER).count();
        if placeholders != 1 {
            return Err(format!("input_ids must hold the video placeholder {IMAGE_PLACEHOLDER} exactly once, found {placeholders}"));
        }
        if self.labels.len() != self.input_ids.len() {
            return Err(format!("labels has {} entries, input_ids {}; they must be aligned", self.labels.len(), self.input_ids.len()));
        }
        let vocab = cfg.vocab_size as i64;
        if let Some(bad) = self.input_ids.iter().find(|&&t| t != IMAGE_PLACEHOLDER && !(0..vocab).contains(&t)) {
            return Err(format!("input_ids holds {bad}, outside the vocabulary [0, {vocab})"));
        }
        if let Some(bad) = self.labels.iter().find(|&&t| t != IGNORE && !(0..vocab).contains(&t)) {
            return Err(format!("labels holds {bad}, neither {IGNORE} nor a token id"));
        }
        if self.placeholder().is_some_and(|at| self.labels[at] != IGNORE) || self.labels.first().is_some_and(|&l| l != IGNORE) {
            return Err("the placeholder and the first position cannot be supervised (label −100)".into());
        }
        for (name, id) in [("<Pos>", cfg.loc3r.pos_token_id), ("<Ori>", cfg.loc3r.ori_token_id)] {
            let n = self.input_ids.iter().filter(|&&t| t == i64::from(id)).count();
            if n != 1 {
                return Err(format!("input_ids must hold the {name} token ({id}) exactly once, found {n}"));
            }
        }
        let pooled = loc3r_export::config::pooled_side(grid, cfg.mm_spatial_pool_mode, cfg.mm_spatial_pool_stride);
        let t = self.frames * pooled * pooled;
        if self.bev_target.len() != 2 * t || self.bev_mask.len() != t {
            return Err(format!(
                "bev_target/bev_mask must cover T = {t} grid tokens ({} frames × {pooled}²): found {} and {}",
                self.frames,
                self.bev_target.len() / 2,
                self.bev_mask.len()
            ));
        }
        let finite = |name: &str, v: &[f32]| if v.iter().all(|x| x.is_finite()) { Ok(()) } else { Err(format!("{name} holds NaN or infinity")) };
        finite("pos_target", &self.pos_target)?;
        finite("yaw_target", &[self.yaw_target])?;
        finite("situation_valid", &[self.situation_valid])?;
        finite("bev_target", &self.bev_target)?;
        finite("bev_mask", &self.bev_mask)?;
        finite("image_features", &self.image_features)?;
        finite("camera_tokens", &self.camera_tokens)?;
        Ok(())
    }

    /// Reads a sample file (shapes checked; [`validate`](Self::validate) checks it against a model).
    pub fn read(path: &Path) -> Result<Sample, SampleError> {
        let err = |message: String| SampleError { path: path.to_path_buf(), message };
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let get = |name: &str, dtype: safetensors::Dtype| -> Result<(Vec<usize>, Vec<u8>), SampleError> {
            let t = st.tensor(name).map_err(|_| err(format!("missing tensor `{name}`")))?;
            if t.dtype() != dtype {
                return Err(err(format!("`{name}` is {:?}, expected {dtype:?}", t.dtype())));
            }
            Ok((t.shape().to_vec(), t.data().to_vec()))
        };
        let f32s = |name: &str, rank: usize| -> Result<(Vec<usize>, Vec<f32>), SampleError> {
            let (shape, data) = get(name, safetensors::Dtype::F32)?;
            if shape.len() != rank {
                return Err(err(format!("`{name}` has shape {shape:?}, expected rank {rank}")));
            }
            Ok((shape, data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
        };
        let i64s = |name: &str| -> Result<Vec<i64>, SampleError> {
            let (shape, data) = get(name, safetensors::Dtype::I64)?;
            if shape.len() != 1 {
                return Err(err(format!("`{name}` has shape {shape:?}, expected [S]")));
            }
            Ok(data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
        };
        let (fshape, image_features) = f32s("image_features", 3)?;
        let (cshape, camera_tokens) = f32s("camera_tokens", 2)?;
        if cshape[0] != fshape[0] {
            return Err(err(format!("camera_tokens has {} frames, image_features {}", cshape[0], fshape[0])));
        }
        let scalar = |name: &str, n: usize| -> Result<Vec<f32>, SampleError> {
            let (shape, v) = f32s(name, 1)?;
            if shape != [n] {
                return Err(err(format!("`{name}` has shape {shape:?}, expected [{n}]")));
            }
            Ok(v)
        };
        let pos = scalar("pos_target", 2)?;
        let (bshape, bev_target) = f32s("bev_target", 2)?;
        let (mshape, bev_mask) = f32s("bev_mask", 1)?;
        if bshape.get(1) != Some(&2) || mshape[0] != bshape[0] {
            return Err(err(format!("bev_target {bshape:?} and bev_mask {mshape:?} must be [T, 2] and [T]")));
        }
        Ok(Sample {
            frames: fshape[0],
            image_features,
            feature_shape: (fshape[1], fshape[2]),
            camera_tokens,
            camera_dim: cshape[1],
            input_ids: i64s("input_ids")?,
            labels: i64s("labels")?,
            pos_target: [pos[0], pos[1]],
            yaw_target: scalar("yaw_target", 1)?[0],
            situation_valid: scalar("situation_valid", 1)?[0],
            bev_target,
            bev_mask,
        })
    }

    /// Writes the sample (safetensors, metadata `format: pt`).
    pub fn write(&self, path: &Path) -> Result<(), loc3r_export::Error> {
        let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let i64_bytes = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (p, cv) = self.feature_shape;
        let t = self.bev_mask.len();
        let tensors: Vec<(TensorToWrite, Vec<u8>)> = vec![
            (spec("image_features", DType::F32, &[self.frames, p, cv]), f32_bytes(&self.image_features)),
            (spec("camera_tokens", DType::F32, &[self.frames, self.camera_dim]), f32_bytes(&self.camera_tokens)),
            (spec("input_ids", DType::I64, &[self.input_ids.len()]), i64_bytes(&self.input_ids)),
            (spec("labels", DType::I64, &[self.labels.len()]), i64_bytes(&self.labels)),
            (spec("pos_target", DType::F32, &[2]), f32_bytes(&self.pos_target)),
            (spec("yaw_target", DType::F32, &[1]), f32_bytes(&[self.yaw_target])),
            (spec("situation_valid", DType::F32, &[1]), f32_bytes(&[self.situation_valid])),
            (spec("bev_target", DType::F32, &[t, 2]), f32_bytes(&self.bev_target)),
            (spec("bev_mask", DType::F32, &[t]), f32_bytes(&self.bev_mask)),
        ];
        let specs: Vec<TensorToWrite> = tensors.iter().map(|(s, _)| s.clone()).collect();
        let data: BTreeMap<String, &[u8]> = tensors.iter().map(|(s, d)| (s.name.clone(), d.as_slice())).collect();
        let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        write_safetensors(path, &specs, Some(&metadata), |t, w| w.write_all(data[&t.name]))
    }
}

impl Sample {
    /// A random sample shaped for `cfg` (`frames` frames; text, the video, a situation with
    /// `<Pos><Ori>`, a question and a supervised three-token answer): for smoke tests and
    /// benchmarks of the training path, deterministic in `seed`.
    pub fn random_for(cfg: &Config, frames: usize, seed: u64) -> Sample {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state >> 33
        };
        let vocab = cfg.vocab_size as u64;
        let special = [u64::from(cfg.loc3r.pos_token_id), u64::from(cfg.loc3r.ori_token_id)];
        let token = |next: &mut dyn FnMut() -> u64| loop {
            let t = next() % vocab.min(1 << 20);
            if !special.contains(&t) {
                break t as i64;
            }
        };
        let mut ids: Vec<i64> = (0..4).map(|_| token(&mut next)).collect();
        ids.push(IMAGE_PLACEHOLDER);
        ids.extend((0..3).map(|_| token(&mut next)));
        ids.push(i64::from(cfg.loc3r.pos_token_id));
        ids.push(i64::from(cfg.loc3r.ori_token_id));
        ids.extend((0..3).map(|_| token(&mut next)));
        let answer_start = ids.len();
        ids.extend((0..3).map(|_| token(&mut next)));
        let labels = ids.iter().enumerate().map(|(i, &t)| if i >= answer_start { t } else { IGNORE }).collect();
        let mut uniform = |n: usize, lo: f32, hi: f32| (0..n).map(|_| lo + (hi - lo) * (next() as f32 / (1u64 << 31) as f32)).collect::<Vec<f32>>();
        let grid = cfg.vision_grid();
        let pooled = loc3r_export::config::pooled_side(grid, cfg.mm_spatial_pool_mode, cfg.mm_spatial_pool_stride);
        let t = frames * pooled * pooled;
        Sample {
            frames,
            image_features: uniform(frames * grid * grid * cfg.vision_config.hidden_size, -1.0, 1.0),
            feature_shape: (grid * grid, cfg.vision_config.hidden_size),
            camera_tokens: uniform(frames * cfg.loc3r.camera_token_dim, -1.0, 1.0),
            camera_dim: cfg.loc3r.camera_token_dim,
            input_ids: ids,
            labels,
            pos_target: [1.5, -0.7],
            yaw_target: 2.2,
            situation_valid: 1.0,
            bev_target: uniform(2 * t, -3.0, 3.0),
            bev_mask: (0..t).map(|i| if i % 4 == 3 { 0.0 } else { 1.0 }).collect(),
        }
    }
}

fn spec(name: &str, dtype: DType, shape: &[usize]) -> TensorToWrite {
    TensorToWrite { name: name.to_string(), dtype, shape: shape.to_vec() }
}
