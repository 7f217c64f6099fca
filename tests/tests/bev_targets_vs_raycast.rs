//! BEV ground truth against the renderer: a synthetic room written in the ScanNet layout, its BEV
//! targets computed from the rendered depth exactly as training prepares them, and the hit
//! point the ray caster finds through each token's centre pixel, mapped to the same BEV frame.
//! On a plane 1/depth is affine in the pixel coordinates, so the median depth of a cell equals
//! the depth at its centre up to pixel discretisation: tokens whose cell sees one plane must
//! agree within 1% of their depth. Cells that see two surfaces (an object edge, a corner) are
//! only counted.

use loc3r_synth::camera::Intrinsics;
use loc3r_synth::output::write_room;
use loc3r_synth::render::hit_point;
use loc3r_synth::{generate_room, Options};
use loc3r_train::data::scannet::ScanNetScene;
use loc3r_train::data::targets::{bev_targets, BevOptions, GridGeometry};

#[test]
fn bev_targets_match_ray_cast_hits_at_token_centres() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { seed: 21, frames: 6, width: 320, height: 240, questions: 1, sample_frames: 3, video: false, ..Options::default() };
    let (mut checked, mut straddling, mut worst_rel) = (0usize, 0usize, 0f64);
    for index in 0..3 {
        let room = generate_room(&opts, index).unwrap();
        write_room(dir.path(), &opts, &room, None).unwrap();
        let scene = ScanNetScene::open(&dir.path().join("scenes").join(&room.scene_id)).unwrap();
        // The demo config's geometry: 112 px, 8×8 patches of 14 px, bilinear pooling to 4×4.
        let geom = GridGeometry::bilinear(112, 14, 8, 4).unwrap();
        let frames = [0usize, 2, 5];
        let targets = bev_targets(&scene, &frames, &geom, &room.bev, &BevOptions::default()).unwrap();
        let intr = Intrinsics::new(opts.width, opts.height);
        let g = geom.pooled;
        for (k, &f) in frames.iter().enumerate() {
            for r in 0..g {
                for c in 0..g {
                    let t = k * g * g + r * g + c;
                    if targets.mask[t] != 1.0 {
                        continue;
                    }
                    let rect = geom.token_rect(r, c);
                    let to_px = |nu: f64, nv: f64| (nu * opts.width as f64 - 0.5, nv * opts.height as f64 - 0.5);
                    let (u, v) = to_px((rect.u0 + rect.u1) / 2.0, (rect.v0 + rect.v1) / 2.0);
                    let (hit, depth) = hit_point(&room.room, &room.poses[f], &intr, u, v).expect("every ray hits the room box");
                    if !one_plane(
                        &|nu, nv| {
                            let (u, v) = to_px(nu, nv);
                            hit_point(&room.room, &room.poses[f], &intr, u, v).map(|h| 1.0 / h.1)
                        },
                        &rect,
                    ) {
                        straddling += 1;
                        continue;
                    }
                    let want = room.bev.point_to_bev(hit);
                    let got = targets.targets[t];
                    let err = ((f64::from(got[0]) - want[0]).powi(2) + (f64::from(got[1]) - want[1]).powi(2)).sqrt();
                    checked += 1;
                    worst_rel = worst_rel.max(err / depth);
                }
            }
        }
    }
    eprintln!("{checked} single-plane reliable tokens, worst BEV error {worst_rel:.5} of depth; {straddling} reliable tokens straddle two surfaces");
    assert!(checked >= 30, "enough single-plane reliable tokens to judge ({checked}; {straddling} straddle two surfaces)");
    assert!(worst_rel < 0.01, "worst BEV error {worst_rel:.4} of depth over {checked} single-plane tokens");
}

/// Whether inverse depth over the cell is one affine function of the image coordinates (the
/// cell sees a single plane): fitted on the corners, checked on a 5×5 grid.
fn one_plane(inv_depth: &dyn Fn(f64, f64) -> Option<f64>, rect: &loc3r_train::data::targets::NormRect) -> bool {
    let inset = 1e-3;
    let at = |a: f64, b: f64| inv_depth(rect.u0 + inset + a * (rect.u1 - rect.u0 - 2.0 * inset), rect.v0 + inset + b * (rect.v1 - rect.v0 - 2.0 * inset));
    let (Some(p00), Some(p10), Some(p01)) = (at(0.0, 0.0), at(1.0, 0.0), at(0.0, 1.0)) else { return false };
    (0..5).all(|i| {
        (0..5).all(|j| {
            let (a, b) = (i as f64 / 4.0, j as f64 / 4.0);
            at(a, b).is_some_and(|d| (d - (p00 + a * (p10 - p00) + b * (p01 - p00))).abs() <= 1e-9 * d.abs().max(1.0))
        })
    })
}
