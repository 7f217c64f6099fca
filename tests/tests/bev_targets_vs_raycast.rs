//! BEV ground truth against the renderer: a synthetic room written in the ScanNet layout, its BEV
//! targets computed from the rendered depth exactly as training prepares them, and the hit
//! point the ray caster finds through each token's centre pixel, mapped to the same BEV frame.
//! On a plane the median depth of a cell equals the depth at its centre up to pixel
//! discretisation, so reliable tokens must agree to a fraction of their depth.

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
    let (mut checked, mut within, mut worst_rel) = (0usize, 0usize, 0f64);
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
                    let u = (rect.u0 + rect.u1) / 2.0 * opts.width as f64 - 0.5;
                    let v = (rect.v0 + rect.v1) / 2.0 * opts.height as f64 - 0.5;
                    let (hit, depth) = hit_point(&room.room, &room.poses[f], &intr, u, v).expect("every ray hits the room box");
                    let want = room.bev.point_to_bev(hit);
                    let got = targets.targets[t];
                    let err = ((f64::from(got[0]) - want[0]).powi(2) + (f64::from(got[1]) - want[1]).powi(2)).sqrt();
                    checked += 1;
                    worst_rel = worst_rel.max(err / depth);
                    if err <= 0.01 * depth + 2e-3 {
                        within += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 30, "enough reliable tokens to judge ({checked})");
    // Cells straddling a corner or an object edge whose depths differ by less than the mask's
    // spread threshold may legitimately disagree; they are a small minority.
    assert!(within as f64 >= 0.9 * checked as f64, "{within} of {checked} reliable tokens within 1% of depth (worst {worst_rel:.3} of depth)");
}
