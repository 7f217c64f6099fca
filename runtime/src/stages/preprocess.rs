//! Stage `preprocess`: sampled RGB frames -> the pixel tensors of SigLIP and CUT3R.
//!
//! * SigLIP (docs/prompt.md §4): PIL bicubic to `S×S` (no aspect preservation), then
//!   `v = u8 × (1/255)` (f64 product stored as f32, like HF `rescale`), then
//!   `(v − 0.5) / 0.5` in f32; `[F, 3, S, S]`, RGB.
//! * CUT3R (docs/cut3r.md §1, official `load_images`): resize so the long side is `long_side`
//!   (Python `round`), PIL LANCZOS when the long side shrinks, BICUBIC otherwise; centre crop
//!   to multiples of 16; torchvision `ToTensor` (`u8 as f32 / 255` in f32) then
//!   `Normalize(0.5, 0.5)`; `[F, 3, H, W]`.
//!
//! Both resizes are Pillow's `Image.resize` reproduced bit for bit ([`resize_pil`]), see
//! Pillow `src/libImaging/Resample.c`.

use ndarray::{Array3, Array4, ArrayView3};
use rayon::prelude::*;

use super::video::Frames;

/// Errors of the preprocess stage.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PreprocessError {
    #[error("frame {frame}: expected an RGB image of shape [H, W, 3] with H, W > 0, found {shape:?}")]
    BadFrame { frame: usize, shape: Vec<usize> },
    #[error("cannot resize to {width}x{height}: sizes must be at least 1")]
    BadSize { width: usize, height: usize },
    #[error(
        "frame {frame} ({in_w}x{in_h}): the video's aspect gives a CUT3R input of {got_w}x{got_h} \
         but the bundle was exported for {want_w}x{want_h}; re-export the bundle with \
         --cut3r-size {got_w}x{got_h}"
    )]
    Cut3rSize { frame: usize, in_w: usize, in_h: usize, got_w: usize, got_h: usize, want_w: usize, want_h: usize },
    #[error("no frames to preprocess")]
    NoFrames,
}

// ---------------------------------------------------------------------------------------
// Pillow resampling (Resample.c), 8 bits per channel
// ---------------------------------------------------------------------------------------

/// Pillow resampling filters we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BICUBIC`: cubic convolution, a = −0.5, support 2.
    Bicubic,
    /// `Image.LANCZOS`: windowed sinc, a = 3, support 3.
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    /// The kernels exactly as written in Resample.c (same operation order, f64).
    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

/// Fixed-point fraction bits of the 8-bit path: 32 − 8 − 2 (Pillow `PRECISION_BITS`).
const PRECISION_BITS: u32 = 22;

/// Per output sample: first input index and tap count, plus `ksize` i32 weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// Pillow `precompute_coeffs` + `normalize_coeffs_8bpc` for the full box `[0, in_size)`.
fn precompute_coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    // Pillow passes the box edges as C floats: (double)(in1 - in0) with in0 = 0.
    let scale = (in_size as f32) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = 0.0 + (xx as f64 + 0.5) * scale;
        // C `(int)` truncates toward zero; negative values are clamped to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let count = (xmax - xmin).max(0) as usize;
        let mut ww = 0.0f64;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = filter.eval(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for (x, out) in row.iter_mut().enumerate().take(count) {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            // round half away from zero, then truncate (C `(int)`)
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            *out = if v < 0.0 { (-0.5 + scaled) as i32 } else { (0.5 + scaled) as i32 };
        }
        bounds.push((xmin as usize, count));
    }
    Coeffs { ksize, bounds, weights }
}

/// Pillow `clip8`: arithmetic shift by `PRECISION_BITS`, clamp to [0, 255].
#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass over input rows `rows` of an interleaved `[h, w, 3]` image.
fn resample_horizontal(src: &[u8], w: usize, rows: std::ops::Range<usize>, out_w: usize, c: &Coeffs) -> Vec<u8> {
    let mut out = vec![0u8; rows.len() * out_w * 3];
    for (oy, y) in rows.enumerate() {
        let src_row = &src[y * w * 3..(y + 1) * w * 3];
        let dst_row = &mut out[oy * out_w * 3..(oy + 1) * out_w * 3];
        for xx in 0..out_w {
            let (xmin, count) = c.bounds[xx];
            let k = &c.weights[xx * c.ksize..xx * c.ksize + count];
            let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
            for (x, &kx) in k.iter().enumerate() {
                let p = &src_row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                s0 = s0.wrapping_add((p[0] as i32).wrapping_mul(kx));
                s1 = s1.wrapping_add((p[1] as i32).wrapping_mul(kx));
                s2 = s2.wrapping_add((p[2] as i32).wrapping_mul(kx));
            }
            dst_row[xx * 3] = clip8(s0);
            dst_row[xx * 3 + 1] = clip8(s1);
            dst_row[xx * 3 + 2] = clip8(s2);
        }
    }
    out
}

/// Vertical pass; `bounds` are relative to the first row of `src`.
fn resample_vertical(src: &[u8], w: usize, out_h: usize, c: &Coeffs, row_shift: usize) -> Vec<u8> {
    let stride = w * 3;
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for yy in 0..out_h {
        let (ymin, count) = c.bounds[yy];
        let ymin = ymin - row_shift;
        let k = &c.weights[yy * c.ksize..yy * c.ksize + count];
        acc.fill(HALF);
        for (y, &ky) in k.iter().enumerate() {
            let row = &src[(ymin + y) * stride..(ymin + y + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add((p as i32).wrapping_mul(ky));
            }
        }
        for (o, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Whether Pillow runs the vertical pass first.
///
/// Pillow 13 (python-pillow/Pillow#9549, "if height is scaled down significantly more than
/// width, resize vertically first") swaps the order of the two passes when the height
/// shrinks by more than twice as many pixels as the width does. Because the intermediate
/// image is rounded to uint8, the order changes the result by up to a few LSB. The rule
/// `out_h < h && h − out_h > 2·(w − out_w)` is not in Pillow <= 12 (always horizontal
/// first); it was derived by probing Pillow 13.0.0 (the pinned dev version) on ~400
/// random size pairs plus exact boundaries, with no mismatch
/// (see tools/golden/pillow_fixtures.py, which includes cases on both sides).
fn vertical_first(w: usize, h: usize, out_w: usize, out_h: usize) -> bool {
    out_h < h && (h - out_h) as i64 > 2 * (w as i64 - out_w as i64)
}

/// Pillow `Image.resize((out_w, out_h), filter)` of an RGB image, bit-exact (Pillow 13):
/// two separable passes with a uint8 intermediate, horizontal first unless
/// [`vertical_first`]; a pass is skipped when its size does not change
/// (`ImagingResampleInner`); equal sizes return a copy.
pub fn resize_pil(rgb: ArrayView3<'_, u8>, out_w: usize, out_h: usize, filter: Filter) -> Result<Array3<u8>, PreprocessError> {
    let (h, w, ch) = rgb.dim();
    if h == 0 || w == 0 || ch != 3 {
        return Err(PreprocessError::BadFrame { frame: 0, shape: rgb.shape().to_vec() });
    }
    if out_w == 0 || out_h == 0 {
        return Err(PreprocessError::BadSize { width: out_w, height: out_h });
    }
    let std = rgb.as_standard_layout();
    let src = std.as_slice().expect("standard layout is contiguous");
    let need_h = out_w != w;
    let need_v = out_h != h;
    let out = match (need_h, need_v) {
        (false, false) => src.to_vec(),
        (true, false) => resample_horizontal(src, w, 0..h, out_w, &precompute_coeffs(w, out_w, filter)),
        (false, true) => resample_vertical(src, w, out_h, &precompute_coeffs(h, out_h, filter), 0),
        (true, true) => {
            let horiz = precompute_coeffs(w, out_w, filter);
            let vert = precompute_coeffs(h, out_h, filter);
            if vertical_first(w, h, out_w, out_h) {
                let tmp = resample_vertical(src, w, out_h, &vert, 0);
                resample_horizontal(&tmp, w, 0..out_h, out_w, &horiz)
            } else {
                // Only the input rows the vertical pass reads are resampled horizontally.
                let first = vert.bounds[0].0;
                let (lmin, lcount) = vert.bounds[out_h - 1];
                let tmp = resample_horizontal(src, w, first..lmin + lcount, out_w, &horiz);
                resample_vertical(&tmp, out_w, out_h, &vert, first)
            }
        }
    };
    Ok(Array3::from_shape_vec((out_h, out_w, 3), out).expect("sizes computed above"))
}

/// `Image.resize(..., BICUBIC)` bit-exactly (see [`resize_pil`]).
pub fn resize_bicubic_pil(rgb: &Array3<u8>, out_w: usize, out_h: usize) -> Result<Array3<u8>, PreprocessError> {
    resize_pil(rgb.view(), out_w, out_h, Filter::Bicubic)
}

/// `Image.resize(..., LANCZOS)` bit-exactly (see [`resize_pil`]).
pub fn resize_lanczos_pil(rgb: &Array3<u8>, out_w: usize, out_h: usize) -> Result<Array3<u8>, PreprocessError> {
    resize_pil(rgb.view(), out_w, out_h, Filter::Lanczos)
}

// ---------------------------------------------------------------------------------------
// SigLIP
// ---------------------------------------------------------------------------------------

fn check_frame(i: usize, f: &ArrayView3<'_, u8>) -> Result<(), PreprocessError> {
    let (h, w, c) = f.dim();
    if h == 0 || w == 0 || c != 3 {
        return Err(PreprocessError::BadFrame { frame: i, shape: f.shape().to_vec() });
    }
    Ok(())
}

/// Writes an `[H, W, 3]` u8 image as CHW f32 into `dst` with the per-value map `norm`.
fn hwc_to_chw(img: &Array3<u8>, dst: &mut [f32], norm: impl Fn(u8) -> f32) {
    let (h, w, _) = img.dim();
    let plane = h * w;
    let src = img.as_slice().expect("resize output is contiguous");
    for (p, px) in src.chunks_exact(3).enumerate() {
        for c in 0..3 {
            dst[c * plane + p] = norm(px[c]);
        }
    }
}

/// SigLIP normalisation of one byte: HF `rescale` (f64 product with 1/255, cast to f32),
/// then `normalize` with mean = std = 0.5 in f32.
#[inline]
pub fn siglip_norm(u: u8) -> f32 {
    let v = (u as f64 * (1.0 / 255.0)) as f32;
    (v - 0.5) / 0.5
}

/// CUT3R normalisation of one byte: torchvision `ToTensor` (f32 division by 255), then
/// `Normalize(0.5, 0.5)` in f32.
#[inline]
pub fn cut3r_norm(u: u8) -> f32 {
    let v = u as f32 / 255.0;
    (v - 0.5) / 0.5
}

/// SigLIP pixel values `[F, 3, S, S]` (parallel over frames).
pub fn siglip_pixels(frames: &[ArrayView3<'_, u8>], image_size: usize) -> Result<Array4<f32>, PreprocessError> {
    if frames.is_empty() {
        return Err(PreprocessError::NoFrames);
    }
    if image_size == 0 {
        return Err(PreprocessError::BadSize { width: 0, height: 0 });
    }
    for (i, f) in frames.iter().enumerate() {
        check_frame(i, f)?;
    }
    let s = image_size;
    let mut out = Array4::<f32>::zeros((frames.len(), 3, s, s));
    let buf = out.as_slice_mut().expect("fresh array is contiguous");
    buf.par_chunks_mut(3 * s * s).zip(frames.par_iter()).try_for_each(|(dst, f)| {
        let resized = resize_pil(f.view(), s, s, Filter::Bicubic)?;
        hwc_to_chw(&resized, dst, siglip_norm);
        Ok(())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// CUT3R
// ---------------------------------------------------------------------------------------

/// The CUT3R `load_images` geometry for one input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut3rGeometry {
    /// Size after the long-side resize.
    pub resized: (usize, usize),
    /// Filter used for that resize.
    pub filter: Filter,
    /// Crop box `(left, top, right, bottom)` in the resized image.
    pub crop: (usize, usize, usize, usize),
}

impl Cut3rGeometry {
    /// Final (width, height).
    pub fn size(&self) -> (usize, usize) {
        (self.crop.2 - self.crop.0, self.crop.3 - self.crop.1)
    }
}

/// docs/cut3r.md §1: long side to `long_side` (`round(x·L/S)`, Python round = half to even),
/// LANCZOS if `S > L` else BICUBIC; centre crop with `halfw = ((2·cx)//16)·8`,
/// `halfh = ((2·cy)//16)·8`, and `halfh = 3·halfw/4` for a square image.
pub fn cut3r_geometry(in_w: usize, in_h: usize, long_side: usize) -> Cut3rGeometry {
    let s = in_w.max(in_h);
    // Python: int(round(x * L / S)); x·L is an exact integer, `/` is correctly rounded.
    let scaled = |x: usize| ((x * long_side) as f64 / s as f64).round_ties_even() as usize;
    let (w, h) = (scaled(in_w), scaled(in_h));
    let filter = if s > long_side { Filter::Lanczos } else { Filter::Bicubic };
    let (cx, cy) = (w / 2, h / 2);
    let halfw = ((2 * cx) / 16) * 8;
    let mut halfh = ((2 * cy) / 16) * 8;
    if w == h {
        // `3*halfw/4` is a Python float; halfw is a multiple of 8, so it is an exact integer
        // and PIL's crop rounding does not change it.
        halfh = 3 * halfw / 4;
    }
    Cut3rGeometry { resized: (w, h), filter, crop: (cx - halfw, cy.saturating_sub(halfh), cx + halfw, cy + halfh) }
}

/// CUT3R input images `[F, 3, height, width]` in [-1, 1]; every frame must come out at the
/// bundle's fixed `(width, height)`, otherwise a [`PreprocessError::Cut3rSize`] says which
/// `--cut3r-size` to export with.
pub fn cut3r_pixels(frames: &[ArrayView3<'_, u8>], long_side: usize, width: usize, height: usize) -> Result<Array4<f32>, PreprocessError> {
    if frames.is_empty() {
        return Err(PreprocessError::NoFrames);
    }
    let mut geoms = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        check_frame(i, f)?;
        let (in_h, in_w, _) = f.dim();
        let g = cut3r_geometry(in_w, in_h, long_side);
        let (got_w, got_h) = g.size();
        if (got_w, got_h) != (width, height) {
            return Err(PreprocessError::Cut3rSize { frame: i, in_w, in_h, got_w, got_h, want_w: width, want_h: height });
        }
        geoms.push(g);
    }
    let mut out = Array4::<f32>::zeros((frames.len(), 3, height, width));
    let buf = out.as_slice_mut().expect("fresh array is contiguous");
    buf.par_chunks_mut(3 * height * width).zip(frames.par_iter().zip(geoms.par_iter())).try_for_each(|(dst, (f, g))| {
        let resized = resize_pil(f.view(), g.resized.0, g.resized.1, g.filter)?;
        let (l, t, r, b) = g.crop;
        let cropped = resized.slice(ndarray::s![t..b, l..r, ..]).as_standard_layout().into_owned();
        hwc_to_chw(&cropped, dst, cut3r_norm);
        Ok(())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The stage
// ---------------------------------------------------------------------------------------

/// Sizes the bundle was exported for (manifest runtime params).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreprocessSpec {
    /// SigLIP input side (384).
    pub siglip_size: usize,
    /// CUT3R long side (512).
    pub cut3r_long_side: usize,
    /// CUT3R input (width, height) fixed at export.
    pub cut3r_width: usize,
    pub cut3r_height: usize,
}

/// Model inputs of one set of frames.
#[derive(Debug, Clone)]
pub struct Pixels {
    /// `[F, 3, S, S]`
    pub siglip: Array4<f32>,
    /// `[F, 3, H, W]`
    pub cut3r: Array4<f32>,
}

/// The stage's main function: both pixel tensors of the sampled frames.
pub fn preprocess(frames: &Frames, spec: &PreprocessSpec) -> Result<Pixels, PreprocessError> {
    let views: Vec<ArrayView3<'_, u8>> = frames.frames.iter().map(|f| f.rgb.view()).collect();
    let cut3r = cut3r_pixels(&views, spec.cut3r_long_side, spec.cut3r_width, spec.cut3r_height)?;
    let siglip = siglip_pixels(&views, spec.siglip_size)?;
    Ok(Pixels { siglip, cut3r })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(h: usize, w: usize, seed: u64) -> Array3<u8> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        Array3::from_shape_fn((h, w, 3), |_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
    }

    #[test]
    fn cut3r_geometry_matches_the_spec_examples() {
        let size = |w, h| cut3r_geometry(w, h, 512).size();
        assert_eq!(size(640, 480), (512, 384));
        assert_eq!(size(1920, 1080), (512, 288));
        assert_eq!(size(1080, 1920), (288, 512));
        let g = cut3r_geometry(6000, 4000, 512);
        assert_eq!(g.resized, (512, 341));
        assert_eq!(g.size(), (512, 336));
        assert_eq!(g.filter, Filter::Lanczos);
        // square: 512x512 -> 512x384 (halfh = 3·halfw/4)
        let g = cut3r_geometry(300, 300, 512);
        assert_eq!(g.resized, (512, 512));
        assert_eq!(g.filter, Filter::Bicubic);
        assert_eq!(g.size(), (512, 384));
        assert_eq!(g.crop, (0, 64, 512, 448));
        // S == L: BICUBIC, no resize
        assert_eq!(cut3r_geometry(512, 384, 512).filter, Filter::Bicubic);
        // Python round half to even: 3·512/6 = 256 exactly; 5·512/1024 = 2.5 -> 2
        assert_eq!(cut3r_geometry(1024, 5, 512).resized, (512, 2));
        assert_eq!(cut3r_geometry(1024, 7, 512).resized, (512, 4)); // 3.5 -> 4
    }

    #[test]
    fn cut3r_size_mismatch_is_a_clear_error() {
        let f = noise(1080, 1920, 1);
        let err = cut3r_pixels(&[f.view()], 512, 512, 384).unwrap_err();
        assert!(matches!(err, PreprocessError::Cut3rSize { got_w: 512, got_h: 288, .. }));
        let msg = err.to_string();
        assert!(msg.contains("512x288") && msg.contains("512x384") && msg.contains("--cut3r-size 512x288"), "{msg}");
    }

    #[test]
    fn cut3r_pixels_shape_and_range() {
        let f = noise(48, 64, 2);
        let px = cut3r_pixels(&[f.view(), f.view()], 512, 512, 384).unwrap();
        assert_eq!(px.shape(), &[2, 3, 384, 512]);
        assert!(px.iter().all(|&v| (-1.0..=1.0).contains(&v)));
        assert_eq!(px.index_axis(ndarray::Axis(0), 0), px.index_axis(ndarray::Axis(0), 1));
    }

    #[test]
    fn identity_resize_is_a_copy_and_constant_images_stay_constant() {
        let f = noise(23, 37, 3);
        assert_eq!(resize_bicubic_pil(&f, 37, 23).unwrap(), f);
        let c = Array3::from_elem((17, 30, 3), 200u8);
        for (w, h) in [(384, 384), (5, 7), (30, 40), (60, 17)] {
            assert!(resize_bicubic_pil(&c, w, h).unwrap().iter().all(|&v| v == 200));
            assert!(resize_lanczos_pil(&c, w, h).unwrap().iter().all(|&v| v == 200));
        }
    }

    #[test]
    fn siglip_pixels_layout_and_normalisation() {
        // 2x1 image: left pixel (0, 128, 255), right pixel (255, 0, 10); upscale to 4x4
        let mut f = Array3::<u8>::zeros((1, 2, 3));
        f[[0, 0, 1]] = 128;
        f[[0, 0, 2]] = 255;
        f[[0, 1, 0]] = 255;
        f[[0, 1, 2]] = 10;
        let px = siglip_pixels(&[f.view()], 4).unwrap();
        assert_eq!(px.shape(), &[1, 3, 4, 4]);
        let r = resize_bicubic_pil(&f, 4, 4).unwrap();
        for c in 0..3 {
            for y in 0..4 {
                for x in 0..4 {
                    assert_eq!(px[[0, c, y, x]], siglip_norm(r[[y, x, c]]));
                }
            }
        }
        assert_eq!(siglip_norm(0), -1.0);
        assert_eq!(siglip_norm(255), 1.0);
        assert_eq!(cut3r_norm(0), -1.0);
        assert_eq!(cut3r_norm(255), 1.0);
        for u in 0..=255u8 {
            assert!((siglip_norm(u) - (u as f32 / 127.5 - 1.0)).abs() < 1e-6);
            assert!((siglip_norm(u) - cut3r_norm(u)).abs() < 1e-6);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let empty = Array3::<u8>::zeros((0, 4, 3));
        assert!(matches!(siglip_pixels(&[empty.view()], 384), Err(PreprocessError::BadFrame { .. })));
        let gray = Array3::<u8>::zeros((4, 4, 1));
        assert!(matches!(resize_bicubic_pil(&gray, 2, 2), Err(PreprocessError::BadFrame { .. })));
        assert!(matches!(siglip_pixels(&[], 384), Err(PreprocessError::NoFrames)));
        let f = noise(4, 4, 0);
        assert!(matches!(resize_bicubic_pil(&f, 0, 2), Err(PreprocessError::BadSize { .. })));
    }
}
