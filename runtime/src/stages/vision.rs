//! SigLIP and the projector: frames -> `[camera_f, 210 vision tokens of frame f]` in LLM width.

use ndarray::{concatenate, s, Array2, Array3, Array4, ArrayView2, ArrayView4, Axis, Ix2, Ix3};

use loc3r_bundle::io;
use loc3r_bundle::Graph;

use crate::bundle::{batches, Bundle};
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::values;

/// Projected embeddings of the observed frames.
#[derive(Debug, Clone)]
pub struct VisionEmbeds {
    /// `[F, T, H]`: pooled grid tokens with a newline after every row (T = 210 at 384 px).
    pub vision: Array3<f32>,
    /// `[F, H]`: projected CUT3R camera tokens.
    pub camera: Array2<f32>,
}

impl VisionEmbeds {
    /// The video's embedding sequence: per frame the camera token then its vision tokens.
    pub fn spliced(&self) -> Array2<f32> {
        let (f, t, h) = self.vision.dim();
        let mut out = Array2::zeros((f * (t + 1), h));
        for i in 0..f {
            out.row_mut(i * (t + 1)).assign(&self.camera.row(i));
            out.slice_mut(ndarray::s![i * (t + 1) + 1..(i + 1) * (t + 1), ..]).assign(&self.vision.index_axis(ndarray::Axis(0), i));
        }
        out
    }
}

/// Runs SigLIP on `[F,3,S,S]` pixels and the projector on its features and the camera tokens,
/// `bundle.frame_batch` frames per call.
pub fn embed_frames(bundle: &Bundle, pixels: &Array4<f32>, camera_tokens: &Array2<f32>) -> Result<VisionEmbeds> {
    embed_frames_cancellable(bundle, pixels, camera_tokens, &Cancel::new())
}

/// [`embed_frames`], checking `cancel` before every frame batch.
pub fn embed_frames_cancellable(bundle: &Bundle, pixels: &Array4<f32>, camera_tokens: &Array2<f32>, cancel: &Cancel) -> Result<VisionEmbeds> {
    let frames = pixels.shape()[0];
    if frames == 0 || camera_tokens.nrows() != frames {
        // The pipeline passes CUT3R's camera tokens of these very frames: a mismatch is our bug.
        return Err(Error::Internal(format!(
            "embedding {frames} frames with {} camera tokens: need one camera token per frame, at least one frame",
            camera_tokens.nrows()
        )));
    }
    let mut parts = Vec::new();
    for range in batches(frames, bundle.frame_batch) {
        cancel.check()?;
        parts.push(embed_batch(bundle, pixels.slice(s![range.clone(), .., .., ..]), camera_tokens.slice(s![range, ..]))?);
    }
    let vision: Vec<_> = parts.iter().map(|p| p.vision.view()).collect();
    let camera: Vec<_> = parts.iter().map(|p| p.camera.view()).collect();
    let joined = |e: ndarray::ShapeError| Error::Bundle(format!("projector.onnx outputs of the frame batches: {e}"));
    Ok(VisionEmbeds { vision: concatenate(Axis(0), &vision).map_err(joined)?, camera: concatenate(Axis(0), &camera).map_err(joined)? })
}

/// SigLIP alone on `[F,3,S,S]` pixels: the image features `[F, P, Cv]` the projector consumes
/// (what training caches per frame, since SigLIP stays frozen).
pub fn siglip_features(bundle: &Bundle, pixels: &Array4<f32>) -> Result<Array3<f32>> {
    let mut parts = Vec::new();
    for range in batches(pixels.shape()[0], bundle.frame_batch) {
        let features = run_siglip(bundle, pixels.slice(s![range, .., .., ..]))?;
        parts.push(features.into_dimensionality::<Ix3>().map_err(|e| Error::Bundle(format!("siglip.onnx image_features: {e}")))?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    concatenate(Axis(0), &views).map_err(|e| Error::Bundle(format!("siglip.onnx outputs of the frame batches: {e}")))
}

fn run_siglip(bundle: &Bundle, pixels: ArrayView4<'_, f32>) -> Result<ndarray::ArrayD<f32>> {
    bundle.check_shape(Graph::Siglip, io::siglip::PIXEL_VALUES, pixels.shape())?;
    let mut siglip = bundle.lock(Graph::Siglip)?;
    let input = values::f32_view(pixels, io::siglip::PIXEL_VALUES)?;
    let out = siglip.run(ort::inputs![io::siglip::PIXEL_VALUES => input]).map_err(|e| Error::ort("running siglip", e))?;
    values::to_f32(&out[io::siglip::IMAGE_FEATURES], io::siglip::IMAGE_FEATURES)
}

fn embed_batch(bundle: &Bundle, pixels: ArrayView4<'_, f32>, camera_tokens: ArrayView2<'_, f32>) -> Result<VisionEmbeds> {
    let features = run_siglip(bundle, pixels)?;
    bundle.check_shape(Graph::Projector, io::projector::IMAGE_FEATURES, features.shape())?;
    bundle.check_shape(Graph::Projector, io::projector::CAMERA_TOKENS, camera_tokens.shape())?;
    let mut projector = bundle.lock(Graph::Projector)?;
    let feats = values::from_f32(features, "f32", io::projector::IMAGE_FEATURES)?;
    let cams = values::f32_view(camera_tokens, io::projector::CAMERA_TOKENS)?;
    let out = projector
        .run(ort::inputs![io::projector::IMAGE_FEATURES => feats, io::projector::CAMERA_TOKENS => cams])
        .map_err(|e| Error::ort("running projector", e))?;
    let vision = values::to_f32(&out[io::projector::VISION_EMBEDS], io::projector::VISION_EMBEDS)?
        .into_dimensionality::<Ix3>()
        .map_err(|e| Error::Bundle(format!("projector.onnx vision_embeds: {e}")))?;
    let camera = values::to_f32(&out[io::projector::CAMERA_EMBEDS], io::projector::CAMERA_EMBEDS)?
        .into_dimensionality::<Ix2>()
        .map_err(|e| Error::Bundle(format!("projector.onnx camera_embeds: {e}")))?;
    Ok(VisionEmbeds { vision, camera })
}
