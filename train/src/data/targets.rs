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
    /// Tokens of frames without a valid pose (or without a depth image).
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
pub fn frame_bev_targets(
    depth: Option<&DepthImage>,
    k: &Intrinsics,
    pose: Option<&Pose>,
    geom: &GridGeometry,
    frame: &BevFrame,
    opts: &BevOptions,
) -> BevTargets {
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
fn token_target(
    depth: &DepthImage,
    k: &Intrinsics,
    pose: &Pose,
    rect: &NormRect,
    frame: &BevFrame,
    opts: &BevOptions,
    samples: &mut Vec<f64>,
) -> (Option<[f64; 2]>, Verdict) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::scannet::tests::write_scene;
    use loc3r_bundle::bev::{angle_between, cross, normalize, transform_point};

    const Z_UP: Vec3 = [0.0, 0.0, 1.0];
    const W: usize = 160;
    const H: usize = 120;

    /// ScanNet-like depth camera (hfov ≈ 58°) for a W×H image.
    fn k() -> Intrinsics {
        let f = W as f64 / 2.0 / 29f64.to_radians().tan();
        Intrinsics { fx: f, fy: f, cx: (W as f64 - 1.0) / 2.0, cy: (H as f64 - 1.0) / 2.0 }
    }

    /// The LLaVA-Video geometry: 384 px, 27 patches of 14 px, bilinear to 14.
    fn llava() -> GridGeometry {
        GridGeometry::bilinear(384, 14, 27, 14).unwrap()
    }

    /// Camera-to-world pose of a camera at `c`, heading `yaw` about z (0 = looking along +x),
    /// pitched down by `pitch` (OpenCV axes: x right, y down, z forward).
    fn camera(c: Vec3, yaw: f64, pitch: f64) -> Pose {
        let fwd = [yaw.cos() * pitch.cos(), yaw.sin() * pitch.cos(), -pitch.sin()];
        let right = normalize(cross(fwd, Z_UP)).unwrap();
        let down = cross(fwd, right);
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            m[i] = [right[i], down[i], fwd[i], c[i]];
        }
        m[3] = [0.0, 0.0, 0.0, 1.0];
        m
    }

    /// Renders z-depth (mm) of pixel centres by intersecting their rays with `hit(origin, dir)`
    /// (returns the ray parameter, = z-depth since dir has z = 1 in the camera).
    fn render(pose: &Pose, hit: impl Fn(Vec3, Vec3) -> Option<f64>) -> DepthImage {
        let k = k();
        let mut mm = vec![0u16; W * H];
        for y in 0..H {
            for x in 0..W {
                let d_c = [(x as f64 - k.cx) / k.fx, (y as f64 - k.cy) / k.fy, 1.0];
                let origin = transform_point(pose, [0.0; 3]);
                let tip = transform_point(pose, d_c);
                let dir = [tip[0] - origin[0], tip[1] - origin[1], tip[2] - origin[2]];
                if let Some(t) = hit(origin, dir).filter(|t| *t > 0.0 && *t < 60.0) {
                    mm[y * W + x] = (t * 1000.0).round() as u16;
                }
            }
        }
        DepthImage { width: W, height: H, millimetres: mm }
    }

    /// Where the ray through the centre of token (r, c) (a 27 px cell of the 384 image, mapped
    /// to the depth image's continuous pixel coordinates) meets `hit`.
    fn token_ray_hit(pose: &Pose, r: usize, c: usize, hit: impl Fn(Vec3, Vec3) -> Option<f64>) -> Option<Vec3> {
        let k = k();
        let (nu, nv) = (27.0 * (c as f64 + 0.5) / 384.0, 27.0 * (r as f64 + 0.5) / 384.0);
        let (u, v) = (nu * W as f64 - 0.5, nv * H as f64 - 0.5);
        let origin = transform_point(pose, [0.0; 3]);
        let tip = transform_point(pose, [(u - k.cx) / k.fx, (v - k.cy) / k.fy, 1.0]);
        let dir = [tip[0] - origin[0], tip[1] - origin[1], tip[2] - origin[2]];
        hit(origin, dir).map(|t| [origin[0] + t * dir[0], origin[1] + t * dir[1], origin[2] + t * dir[2]])
    }

    #[test]
    fn geometry_of_bilinear_and_average_pooling() {
        let g = llava();
        assert_eq!((g.pooled, g.cell_px, g.tokens_per_frame()), (14, 27.0, 196));
        let r = g.token_rect(2, 13);
        assert_eq!((r.u0, r.u1, r.v0, r.v1), (351.0 / 384.0, 378.0 / 384.0, 54.0 / 384.0, 81.0 / 384.0));
        let a = GridGeometry::average(384, 14, 27, 2).unwrap();
        assert_eq!((a.pooled, a.cell_px), (13, 28.0));
        // The exporter's pooling weights put every bilinear token at its cell's centre.
        let w = loc3r_export::models::projector::bilinear_weights(27, 14);
        for (j, row) in w.iter().enumerate() {
            let centre_px: f64 = row.iter().enumerate().map(|(i, wi)| wi * (i as f64 + 0.5) * 14.0).sum();
            assert!((centre_px - (j as f64 + 0.5) * g.cell_px).abs() < 1e-9, "token {j}: {centre_px}");
        }
        let mut v = VisionParams {
            image_size: 384,
            patch_size: 14,
            grid: 27,
            pooling: Pooling::Bilinear,
            pooled_grid: 14,
            tokens_per_frame: 210,
            resample: "bicubic".into(),
            rescale: 1.0 / 255.0,
            mean: [0.5; 3],
            std: [0.5; 3],
        };
        assert_eq!(GridGeometry::from_vision(&v).unwrap(), g);
        v.pooling = Pooling::Average;
        v.pooled_grid = 13;
        assert_eq!(GridGeometry::from_vision(&v).unwrap(), a);
        v.pooled_grid = 0;
        assert!(GridGeometry::from_vision(&v).is_err());
        v.pooled_grid = 12;
        assert!(GridGeometry::from_vision(&v).unwrap_err().to_string().contains("cannot give 12"));
        v.pooled_grid = 14;
        v.grid = 28;
        assert!(GridGeometry::from_vision(&v).unwrap_err().to_string().contains("do not fit"));
        // The tiny test checkpoint: 5 patches pooled bilinearly to 3.
        assert_eq!(GridGeometry::bilinear(20, 4, 5, 3).unwrap().cell_px, 20.0 / 3.0);
    }

    #[test]
    fn pixel_spans_take_pixels_whose_centres_are_inside() {
        assert_eq!(pixel_span(0.0, 0.25, 8), (0, 2));
        assert_eq!(pixel_span(0.25, 0.5, 8), (2, 4));
        // [0.1, 0.2) of 10 px: centres 0.5/10 = 0.05 (out), 1.5/10 = 0.15 (in), 2.5/10 (out).
        assert_eq!(pixel_span(0.1, 0.2, 10), (1, 2));
        assert_eq!(pixel_span(0.9, 1.2, 10), (9, 10));
    }

    #[test]
    fn fronto_parallel_plane_gives_the_ray_hit_points() {
        let anchor = camera([1.0, 2.0, 1.5], 0.4, 0.1);
        let frame = BevFrame::from_camera0(&anchor, Z_UP).unwrap();
        let pose = camera([1.3, 1.8, 1.4], 0.9, 0.25);
        // The plane z_c = 2.3456 m of this camera, in the world: n·x = n·c + D with n its axis.
        let n = [pose[0][2], pose[1][2], pose[2][2]];
        let c = [pose[0][3], pose[1][3], pose[2][3]];
        let plane = |o: Vec3, d: Vec3| {
            let dn = d[0] * n[0] + d[1] * n[1] + d[2] * n[2];
            let off = (c[0] - o[0]) * n[0] + (c[1] - o[1]) * n[1] + (c[2] - o[2]) * n[2] + 2.3456;
            Some(off / dn)
        };
        let depth = render(&pose, plane);
        let out = frame_bev_targets(Some(&depth), &k(), Some(&pose), &llava(), &frame, &BevOptions::default());
        assert_eq!(out.stats, MaskStats { tokens: 196, valid: 196, ..MaskStats::default() });
        assert!(out.mask.iter().all(|&m| m == 1.0));
        let mut worst = 0.0f64;
        for r in 0..14 {
            for cc in 0..14 {
                let expect = frame.point_to_bev(token_ray_hit(&pose, r, cc, plane).unwrap());
                let got = out.targets[r * 14 + cc];
                worst = worst.max((f64::from(got[0]) - expect[0]).abs().max((f64::from(got[1]) - expect[1]).abs()));
            }
        }
        eprintln!("fronto-parallel plane: worst BEV error {worst:.2e} m");
        assert!(worst < 1e-3, "worst BEV error {worst} m");
    }

    #[test]
    fn slanted_floor_within_one_percent_of_depth() {
        let pose = camera([0.5, -0.3, 1.5], -0.7, 25f64.to_radians());
        let frame = BevFrame::from_camera0(&pose, Z_UP).unwrap();
        let floor = |o: Vec3, d: Vec3| (d[2] < 0.0).then(|| -o[2] / d[2]);
        let depth = render(&pose, floor);
        let out = frame_bev_targets(Some(&depth), &k(), Some(&pose), &llava(), &frame, &BevOptions::default());
        assert!(out.stats.valid >= 120, "{:?}", out.stats);
        let mut worst = 0.0f64;
        for r in 0..14 {
            for c in 0..14 {
                if out.mask[r * 14 + c] == 0.0 {
                    continue;
                }
                let hit = token_ray_hit(&pose, r, c, floor).unwrap();
                let along = (0..3).map(|i| (hit[i] - pose[i][3]) * pose[i][2]).sum::<f64>();
                let expect = frame.point_to_bev(hit);
                let got = out.targets[r * 14 + c];
                let err = (f64::from(got[0]) - expect[0]).hypot(f64::from(got[1]) - expect[1]);
                assert!(err < 0.01 * along, "token ({r}, {c}): error {err} m at depth {along} m");
                worst = worst.max(err / along);
            }
        }
        eprintln!("slanted floor: {:?}, worst BEV error {:.2}% of depth", out.stats, 100.0 * worst);
        // The top row sees the floor beyond 10 m (no valid depth).
        assert!(out.mask[..14].iter().all(|&m| m == 0.0));
    }

    #[test]
    fn holes_layers_and_range_are_masked() {
        let pose = camera([0.0; 3], 0.0, 0.0);
        let frame = BevFrame::from_camera0(&pose, Z_UP).unwrap();
        let geom = llava();
        let mut depth = DepthImage { width: W, height: H, millimetres: vec![3000; W * H] };
        let span = |t: usize, len: usize| pixel_span(t as f64 * 27.0 / 384.0, (t + 1) as f64 * 27.0 / 384.0, len);
        let cell = |depth: &mut DepthImage, r: usize, c: usize, f: &dyn Fn(usize, usize) -> u16| {
            let ((x0, x1), (y0, y1)) = (span(c, W), span(r, H));
            for y in y0..y1 {
                for x in x0..x1 {
                    depth.millimetres[y * W + x] = f(x - x0, y - y0);
                }
            }
            (x1 - x0) * (y1 - y0)
        };
        // (1, 1): 60% of the rows are holes. (2, 2): two layers, 1.5 m and 3 m. (3, 3): 9 m.
        let (_, y_len) = span(1, H);
        cell(&mut depth, 1, 1, &|_, y| if (y as f64) < 0.6 * y_len as f64 { 0 } else { 3000 });
        cell(&mut depth, 2, 2, &|x, _| if x % 2 == 0 { 1500 } else { 3000 });
        cell(&mut depth, 3, 3, &|_, _| 9000);
        // (4, 4): exactly half the pixels valid is enough (the rule is "fewer than half").
        let pixels = cell(&mut depth, 4, 4, &|_, _| 3000);
        let mut k_th = 0;
        let ((x0, x1), (y0, y1)) = (span(4, W), span(4, H));
        for y in y0..y1 {
            for x in x0..x1 {
                if k_th < pixels / 2 {
                    depth.millimetres[y * W + x] = 0;
                }
                k_th += 1;
            }
        }
        let out = frame_bev_targets(Some(&depth), &k(), Some(&pose), &geom, &frame, &BevOptions::default());
        let m = |r: usize, c: usize| out.mask[r * 14 + c];
        assert_eq!((m(1, 1), m(2, 2), m(3, 3), m(4, 4), m(0, 0)), (0.0, 0.0, 0.0, 1.0, 1.0));
        assert_eq!(out.stats, MaskStats { tokens: 196, valid: 193, too_few_pixels: 1, out_of_range: 1, high_variance: 1, invalid_pose: 0 });
        assert!((out.stats.masked_fraction() - 3.0 / 196.0).abs() < 1e-15);
        // The masked two-layer cell still carries a lifted target (mean of the middle values).
        assert!(out.targets[2 * 14 + 2] != [0.0, 0.0]);
        let strict = BevOptions { max_depth_cv: 0.5, ..BevOptions::default() };
        assert_eq!(frame_bev_targets(Some(&depth), &k(), Some(&pose), &geom, &frame, &strict).stats.valid, 194);
    }

    #[test]
    fn median_and_std_conventions() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(population_std(&[1.0, 3.0]), 1.0);
    }

    #[test]
    fn scene_with_an_invalid_pose_masks_that_frame() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("scene0004_00");
        let p0 = camera([0.0, 0.0, 1.5], 0.3, 0.0);
        let p2 = camera([0.5, 0.2, 1.5], 0.5, 0.1);
        let wall = DepthImage { width: W, height: H, millimetres: vec![2500; W * H] };
        write_scene(&dir, &[Some(p0), None, Some(p2)], k(), &[wall]);
        let scene = ScanNetScene::open(&dir).unwrap();
        let frame = scene.bev_frame(0).unwrap();
        let out = bev_targets(&scene, &[0, 1, 2], &llava(), &frame, &BevOptions::default()).unwrap();
        assert_eq!((out.targets.len(), out.mask.len(), out.flat_targets().len()), (588, 588, 1176));
        assert_eq!(out.stats, MaskStats { tokens: 588, valid: 392, invalid_pose: 196, ..MaskStats::default() });
        assert!(out.mask[196..392].iter().all(|&m| m == 0.0) && out.targets[196..392].iter().all(|t| *t == [0.0, 0.0]));
        assert!(out.mask[..196].iter().chain(&out.mask[392..]).all(|&m| m == 1.0));
        // Frame 0's centre-most token lies straight ahead of camera 0 at 2.5 m.
        let t = out.targets[7 * 14 + 7];
        assert!((t[1] - 2.5).abs() < 0.2 && t[0].abs() < 0.2, "{t:?}");
        let e = bev_targets(&scene, &[0, 3], &llava(), &frame, &BevOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::FrameOutOfRange { frame: 3, .. }));
    }

    #[test]
    fn sqa3d_convention_on_a_known_pose() {
        // Camera 0 level at the origin looking along world +x: BEV forward = +x, right = −y.
        let frame = BevFrame::from_camera0(&camera([0.0, 0.0, 1.5], 0.0, 0.0), Z_UP).unwrap();
        let bs = [0.5, 0.0, 1.2];
        // Agent 1 m ahead of camera 0 (0.5 m from bs_center), ψ = π: body −x turns to +x.
        let (pos, yaw) = situation_target_sqa3d([0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], bs, &frame, SQA3D_BODY_FORWARD);
        assert!(pos[0].abs() < 1e-12 && (pos[1] - 1.0).abs() < 1e-12, "{pos:?}");
        assert!((yaw - std::f64::consts::FRAC_PI_2).abs() < 1e-12, "{yaw}");
    }

    #[test]
    fn sqa3d_round_trip_through_json_numbers() {
        let frame = BevFrame::from_camera0(&camera([2.0, -1.0, 1.4], 2.2, 0.3), Z_UP).unwrap();
        let bs = [1.7, 2.9, 1.3];
        for (x, y, psi) in [(0.3, -1.2, 0.4), (-2.5, 0.8, -2.9), (1.1, 1.9, 3.1), (0.0, 0.0, -0.01)] {
            let (s, c) = (psi / 2.0f64).sin_cos();
            let json = format!(r#"{{"position": {{"x": {x}, "y": {y}, "z": 0}}, "rotation": {{"_x": 0, "_y": 0, "_z": {s}, "_w": {c}}}}}"#);
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            let num = |a: &str, b: &str| v[a][b].as_f64().unwrap();
            let (pos, yaw) = situation_target_sqa3d(
                [num("position", "x"), num("position", "y"), num("position", "z")],
                [num("rotation", "_x"), num("rotation", "_y"), num("rotation", "_z"), num("rotation", "_w")],
                bs,
                &frame,
                SQA3D_BODY_FORWARD,
            );
            let (xy, psi_back) = sqa3d_from_bev(pos, yaw, &frame, bs, SQA3D_BODY_FORWARD);
            assert!((xy[0] - x).abs() < 1e-9 && (xy[1] - y).abs() < 1e-9, "{xy:?} vs ({x}, {y})");
            assert!(angle_between(psi_back, psi) < 1e-9, "{psi_back} vs {psi}");
            let (_, yaw_plus_x) = situation_target_sqa3d([x, y, 0.0], [0.0, 0.0, s, c], bs, &frame, [1.0, 0.0, 0.0]);
            assert!(angle_between(yaw_plus_x, yaw + std::f64::consts::PI) < 1e-12, "the body axis flips the facing");
        }
    }
}
