//! Training targets in the BEV frame (docs/training.md §2): the ground-truth BEV position of every
//! pooled vision token, lifted from depth, with its reliability mask; and SQA3D situation poses
//! (and their inverse for evaluation). All geometry runs in f64; targets are stored as f32.

use loc3r_bundle::bev::{heading_about_z, wrap_pi, BevFrame, Vec3};
use loc3r_bundle::manifest::VisionParams;
use loc3r_bundle::Pooling;

use super::scannet::{DepthImage, Intrinsics, Pose, ScanNetScene};
use super::DataError;

/// Which part of the original frame each pooled vision token stands for.
///
/// The vision tower sees the frame resized (no crop, aspect not kept) to `image_size`² and covers
/// its first `grid·patch` pixels with patches. Pooling then gives `pooled`² tokens per frame,
/// row-major, and token (r, c) owns a square cell of `cell_px` pixels of the resized image:
/// - bilinear (half-pixel, `align_corners=False`) from `grid` to `pooled`: output sample j sits at
///   patch coordinate `(j + ½)·grid/pooled`, the centre of a cell of `grid·patch/pooled` pixels
///   (27 px for 27 → 14 patches of 14 px);
/// - average with stride s (`pooled = ⌊grid/s⌋`): token c averages patches `[s·c, s·(c+1))`, i.e.
///   pixels `[s·patch·c, s·patch·(c+1))`.
///
/// In normalised image coordinates (0..1 over the original frame) token (r, c) owns
/// `u ∈ [c·cell/S, (c+1)·cell/S)`, `v ∈ [r·cell/S, (r+1)·cell/S)` with `S = image_size`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridGeometry {
    /// Side of the square the frame is resized to (pixels).
    pub image_size: usize,
    /// Tokens per side after pooling.
    pub pooled: usize,
    /// Side of the cell one token owns, in pixels of the resized image.
    pub cell_px: f64,
}

/// A token's rectangle in normalised image coordinates, half-open: `[u0, u1) × [v0, v1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormRect {
    pub u0: f64,
    pub u1: f64,
    pub v0: f64,
    pub v1: f64,
}

impl GridGeometry {
    /// The geometry of a bundle's vision settings. The pooled side is taken from the manifest
    /// (bilinear: `⌈grid/2⌉` in LLaVA-Video, average: `⌊grid/2⌋`) and checked for consistency;
    /// for average pooling the stride is the one integer s with `⌊grid/s⌋ = pooled` that is the
    /// largest (`grid / pooled`).
    pub fn from_vision(v: &VisionParams) -> Result<GridGeometry, DataError> {
        match v.pooling {
            Pooling::Bilinear => GridGeometry::bilinear(v.image_size, v.patch_size, v.grid, v.pooled_grid),
            Pooling::Average => {
                if v.pooled_grid == 0 {
                    return Err(DataError::Geometry("pooled_grid is 0; the manifest's vision settings are broken".into()));
                }
                GridGeometry::average(v.image_size, v.patch_size, v.grid, v.grid / v.pooled_grid).and_then(|g| {
                    if g.pooled == v.pooled_grid {
                        Ok(g)
                    } else {
                        Err(DataError::Geometry(format!("average pooling of a {}-patch grid cannot give {} tokens per side", v.grid, v.pooled_grid)))
                    }
                })
            }
        }
    }

    /// Bilinear (half-pixel) pooling of a `grid`² patch grid to `pooled`² tokens.
    pub fn bilinear(image_size: usize, patch: usize, grid: usize, pooled: usize) -> Result<GridGeometry, DataError> {
        check_grid(image_size, patch, grid)?;
        if pooled == 0 {
            return Err(DataError::Geometry("the pooled grid has no tokens; pooled_grid must be at least 1".into()));
        }
        Ok(GridGeometry { image_size, pooled, cell_px: (grid * patch) as f64 / pooled as f64 })
    }

    /// Average pooling with window and stride `stride` (`⌊grid/stride⌋` tokens per side).
    pub fn average(image_size: usize, patch: usize, grid: usize, stride: usize) -> Result<GridGeometry, DataError> {
        check_grid(image_size, patch, grid)?;
        if stride == 0 || grid / stride == 0 {
            return Err(DataError::Geometry(format!("average pooling stride {stride} leaves no token of a {grid}-patch grid")));
        }
        Ok(GridGeometry { image_size, pooled: grid / stride, cell_px: (stride * patch) as f64 })
    }

    /// Pooled grid tokens per frame (`pooled²`; newline tokens are not counted).
    pub fn tokens_per_frame(&self) -> usize {
        self.pooled * self.pooled
    }

    /// The normalised rectangle token (r, c) owns.
    pub fn token_rect(&self, r: usize, c: usize) -> NormRect {
        let s = self.image_size as f64;
        let at = |k: usize| k as f64 * self.cell_px / s;
        NormRect { u0: at(c), u1: at(c + 1), v0: at(r), v1: at(r + 1) }
    }
}

fn check_grid(image_size: usize, patch: usize, grid: usize) -> Result<(), DataError> {
    if patch == 0 || grid == 0 || grid * patch > image_size {
        return Err(DataError::Geometry(format!("{grid} patches of {patch} px do not fit a {image_size} px image; check the manifest's vision settings")));
    }
    Ok(())
}

/// Depth filter and mask thresholds (docs/training.md §2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BevOptions {
    /// Depth pixels count only strictly inside (min, max) metres.
    pub valid_depth_m: (f64, f64),
    /// Mask a token when fewer than this fraction of its pixels hold a valid depth.
    pub min_valid_frac: f64,
    /// Mask a token whose median depth is outside [min, max] metres.
    pub median_range_m: (f64, f64),
    /// Mask a token whose depth std / median exceeds this (mixed surfaces, grazing views).
    pub max_depth_cv: f64,
}

impl Default for BevOptions {
    fn default() -> BevOptions {
        BevOptions { valid_depth_m: (0.1, 10.0), min_valid_frac: 0.5, median_range_m: (0.2, 8.0), max_depth_cv: 0.10 }
    }
}

/// How many tokens were kept and why the others were masked (first failing reason counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskStats {
    pub tokens: usize,
    pub valid: usize,
    /// Tokens of frames whose pose is invalid.
    pub invalid_pose: usize,
    /// Fewer valid depth pixels than `min_valid_frac` of the cell (holes, out-of-range depth).
    pub too_few_pixels: usize,
    /// Median depth outside `median_range_m`.
    pub out_of_range: usize,
    /// Depth std / median above `max_depth_cv`.
    pub high_variance: usize,
}

impl MaskStats {
    /// Fraction of tokens masked (0 when there are no tokens).
    pub fn masked_fraction(&self) -> f64 {
        if self.tokens == 0 {
            0.0
        } else {
            (self.tokens - self.valid) as f64 / self.tokens as f64
        }
    }

    fn add(&mut self, o: &MaskStats) {
        self.tokens += o.tokens;
        self.valid += o.valid;
        self.invalid_pose += o.invalid_pose;
        self.too_few_pixels += o.too_few_pixels;
        self.out_of_range += o.out_of_range;
        self.high_variance += o.high_variance;
    }
}

/// BEV targets of the pooled grid tokens of a list of frames: frame-major, row-major within a
/// frame, `T = frames · pooled²` entries (the prepared sample's `bev_target` / `bev_mask`).
#[derive(Debug, Clone, PartialEq)]
pub struct BevTargets {
    /// BEV (x, y) in metres; 0 where nothing could be lifted.
    pub targets: Vec<[f32; 2]>,
    /// 1 where the target is reliable, else 0.
    pub mask: Vec<f32>,
    pub stats: MaskStats,
}

impl BevTargets {
    /// The targets flattened to `[T·2]` (x, y interleaved), as the sample stores them.
    pub fn flat_targets(&self) -> Vec<f32> {
        self.targets.iter().flatten().copied().collect()
    }
}

/// BEV targets for `sampled_frames` of a scene, in the BEV frame `frame` (normally
/// `scene.bev_frame(sampled_frames[0])`). Frames with an invalid pose get masked tokens with
/// target 0 (their depth is not read).
pub fn bev_targets(scene: &ScanNetScene, sampled_frames: &[usize], geom: &GridGeometry, frame: &BevFrame, opts: &BevOptions) -> Result<BevTargets, DataError> {
    let k = scene.depth_intrinsics();
    let mut out = BevTargets { targets: Vec::new(), mask: Vec::new(), stats: MaskStats::default() };
    for &f in sampled_frames {
        let pose = scene.pose(f)?;
        let depth = match pose {
            Some(_) => Some(scene.depth(f)?),
            None => None,
        };
        let one = frame_bev_targets(depth.as_ref(), &k, pose.as_ref(), geom, frame, opts);
        out.targets.extend(one.targets);
        out.mask.extend(one.mask);
        out.stats.add(&one.stats);
    }
    Ok(out)
}

/// The BEV targets of one frame's `pooled²` tokens from its depth image (intrinsics `k`) and
/// camera-to-world pose. `None` for either masks every token with target 0.
pub fn frame_bev_targets(depth: Option<&DepthImage>, k: &Intrinsics, pose: Option<&Pose>, geom: &GridGeometry, frame: &BevFrame, opts: &BevOptions) -> BevTargets {
    let n = geom.tokens_per_frame();
    let (Some(depth), Some(pose)) = (depth, pose.filter(|p| p.iter().flatten().all(|v| v.is_finite()))) else {
        let stats = MaskStats { tokens: n, invalid_pose: n, ..MaskStats::default() };
        return BevTargets { targets: vec![[0.0; 2]; n], mask: vec![0.0; n], stats };
    };
    let mut out = BevTargets { targets: Vec::with_capacity(n), mask: Vec::with_capacity(n), stats: MaskStats { tokens: n, ..MaskStats::default() } };
    let mut samples = Vec::new();
    for r in 0..geom.pooled {
        for c in 0..geom.pooled {
            let rect = geom.token_rect(r, c);
            let (target, verdict) = token_target(depth, k, pose, &rect, frame, opts, &mut samples);
            out.targets.push(target.map_or([0.0; 2], |b| [b[0] as f32, b[1] as f32]));
            out.mask.push(f32::from(u8::from(verdict == Verdict::Valid)));
            let s = &mut out.stats;
            match verdict {
                Verdict::Valid => s.valid += 1,
                Verdict::TooFewPixels => s.too_few_pixels += 1,
                Verdict::OutOfRange => s.out_of_range += 1,
                Verdict::HighVariance => s.high_variance += 1,
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Valid,
    TooFewPixels,
    OutOfRange,
    HighVariance,
}

/// Pixel indices `[lo, hi)` of a W-pixel axis whose centres `(x + ½)/W` lie in `[a, b)`.
fn pixel_span(a: f64, b: f64, w: usize) -> (usize, usize) {
    let wf = w as f64;
    let clamp = |x: f64| x.ceil().clamp(0.0, wf) as usize;
    (clamp(a * wf - 0.5), clamp(b * wf - 0.5))
}

/// One token: median depth of its rectangle lifted at the rectangle's centre, and its verdict.
/// The target is computed whenever at least one valid pixel exists, even if masked.
fn token_target(depth: &DepthImage, k: &Intrinsics, pose: &Pose, rect: &NormRect, frame: &BevFrame, opts: &BevOptions, samples: &mut Vec<f64>) -> (Option<[f64; 2]>, Verdict) {
    let (x0, x1) = pixel_span(rect.u0, rect.u1, depth.width);
    let (y0, y1) = pixel_span(rect.v0, rect.v1, depth.height);
    let pixels = (x1 - x0) * (y1 - y0);
    samples.clear();
    for y in y0..y1 {
        for x in x0..x1 {
            let d = f64::from(depth.at(x, y)) / 1000.0;
            if d > opts.valid_depth_m.0 && d < opts.valid_depth_m.1 {
                samples.push(d);
            }
        }
    }
    if samples.is_empty() {
        return (None, Verdict::TooFewPixels);
    }
    let median = median_in_place(samples);
    let u = (rect.u0 + rect.u1) / 2.0 * depth.width as f64 - 0.5;
    let v = (rect.v0 + rect.v1) / 2.0 * depth.height as f64 - 0.5;
    let world = loc3r_bundle::bev::transform_point(pose, k.unproject(u, v, median));
    let target = Some(frame.point_to_bev(world));
    let verdict = if (samples.len() as f64) < opts.min_valid_frac * pixels as f64 {
        Verdict::TooFewPixels
    } else if median < opts.median_range_m.0 || median > opts.median_range_m.1 {
        Verdict::OutOfRange
    } else if population_std(samples) / median > opts.max_depth_cv {
        Verdict::HighVariance
    } else {
        Verdict::Valid
    };
    (target, verdict)
}

/// Median of a non-empty slice (sorted in place); for an even count the mean of the two middle
/// values, so a two-layer cell split evenly does not pick one layer arbitrarily.
fn median_in_place(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Standard deviation with the 1/n normalisation (the samples are the whole cell, not a draw).
fn population_std(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

/// SQA3D's body axis the agent faces along: −x (the official visualisation draws the arrow head
/// there). Targets and the evaluation inverse must use the same axis.
pub const SQA3D_BODY_FORWARD: Vec3 = [-1.0, 0.0, 0.0];

/// The SQA3D agent pose as BEV targets `(position [x, y] metres, yaw radians in (−π, π])`.
///
/// `position_xyz` is relative to the raw mesh's bounding-box centre `bs_center` in the scene's
/// z-up world (its z, always 0 in the release, is ignored: the 3-D point takes `bs_center`'s
/// height, which the BEV drops anyway). `rotation_xyzw` rotates about z by `ψ = 2·atan2(z, w)`;
/// the agent faces `R_z(ψ)·body_forward`.
pub fn situation_target_sqa3d(position_xyz: [f64; 3], rotation_xyzw: [f64; 4], bs_center: Vec3, frame: &BevFrame, body_forward: Vec3) -> ([f64; 2], f64) {
    let world = [position_xyz[0] + bs_center[0], position_xyz[1] + bs_center[1], bs_center[2]];
    let psi = 2.0 * rotation_xyzw[2].atan2(rotation_xyzw[3]);
    let (s, c) = psi.sin_cos();
    let facing = [c * body_forward[0] - s * body_forward[1], s * body_forward[0] + c * body_forward[1], body_forward[2]];
    (frame.point_to_bev(world), frame.yaw_of(facing))
}

/// The evaluation inverse of [`situation_target_sqa3d`]: a BEV pose back to SQA3D's convention,
/// `(world x, y relative to bs_center, ψ radians in (−π, π])`, ψ being the z-rotation that turns
/// `body_forward` into the predicted facing direction.
pub fn sqa3d_from_bev(pos: [f64; 2], yaw: f64, frame: &BevFrame, bs_center: Vec3, body_forward: Vec3) -> ([f64; 2], f64) {
    let world = frame.bev_to_point(pos);
    let facing = frame.yaw_to_direction(yaw);
    let psi = wrap_pi(heading_about_z(facing) - heading_about_z(body_forward));
    ([world[0] - bs_center[0], world[1] - bs_center[1]], psi)
}
