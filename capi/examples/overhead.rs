//! What the C layer costs: `loc3r_localize` against `Scene::localize` on the very same scene
//! (live frames; interleaved calls, µs), the fixed cost of one C call (`loc3r_scene_frames`,
//! ns), and RSS over 1,000 `loc3r_localize` calls on live frames, first on a fixed scene, then
//! with a frame pushed every 20 calls as a robot would.
//!
//!     cargo run -p loc3r-capi --example overhead [-- BUNDLE_DIR]
//!
//! Without a bundle it makes the tiny one (`make-tiny --seed 1`, exported) in a temporary
//! directory. Graphs run with one intra-op thread so that the two paths compete for nothing.

use std::ffi::{CStr, CString};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::Instant;

use loc3r_c::*;
use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::tiny::{make_tiny, TinyOptions};

const W: usize = 160;
const H: usize = 120;
const CALLS: usize = 1000;

/// The C test program's moving pattern: consecutive frames differ as a camera's would.
fn pixels(t: usize) -> Vec<u8> {
    let mut px = vec![0u8; W * H * 3];
    for y in 0..H {
        for x in 0..W {
            let p = &mut px[(y * W + x) * 3..][..3];
            let square = (20 + 8 * t..60 + 8 * t).contains(&x) && (30..70).contains(&y);
            p[0] = if square { 250 } else { (x * 255 / W) as u8 };
            p[1] = if square { 240 } else { (y * 255 / H) as u8 };
            p[2] = ((x + y + 16 * t) & 0xFF) as u8;
        }
    }
    px
}

fn ok(status: Loc3rStatus) {
    if status != Loc3rStatus::LOC3R_OK {
        let message = unsafe { CStr::from_ptr(loc3r_last_error()) };
        panic!("{status:?}: {}", message.to_string_lossy());
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS");
    kib / 1024.0
}

/// (minimum, median, mean) in µs.
fn stats(us: &mut [f64]) -> (f64, f64, f64) {
    us.sort_by(f64::total_cmp);
    (us[0], us[us.len() / 2], us.iter().sum::<f64>() / us.len() as f64)
}

fn tiny_bundle(dir: &Path) -> PathBuf {
    let checkpoint = dir.join("checkpoint");
    make_tiny(&checkpoint, &TinyOptions { seed: 1, ..TinyOptions::default() }, |_, _| {}).expect("make-tiny");
    let bundle = dir.join("bundle");
    export_bundle(&checkpoint, &bundle, &BundleOptions::default(), |_| {}).expect("export");
    bundle
}

fn push_c(scene: *mut Loc3rScene, t: usize) {
    let px = pixels(t);
    ok(unsafe { loc3r_push_frame(scene, px.as_ptr(), W as u32, H as u32, W * 3, t as f64) });
}

fn localize_c(scene: *const Loc3rScene) -> Loc3rPose {
    let mut pose =
        Loc3rPose { x: 0.0, y: 0.0, sigma_x: 0.0, sigma_y: 0.0, yaw_deg: 0.0, orientation_confidence: 0.0, orientation_bins: 0, orientation_confident: false };
    ok(unsafe { loc3r_localize(scene, ptr::null(), &mut pose) });
    pose
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bundle = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| tiny_bundle(tmp.path()));
    println!("bundle: {}", bundle.display());

    // One scene of 8 live frames; the Rust API is timed on the scene behind the C handle, so
    // that both paths run the same sessions on the same memory.
    let c_path = CString::new(bundle.to_str().expect("UTF-8 bundle path")).expect("no NUL");
    let options = Loc3rOpenOptions { intra_threads: 1, ..Loc3rOpenOptions::default() };
    let mut c_model = ptr::null_mut();
    ok(unsafe { loc3r_open(c_path.as_ptr(), c"cpu".as_ptr(), &options, &mut c_model) });
    let mut c_scene = ptr::null_mut();
    ok(unsafe { loc3r_scene_new(c_model, &mut c_scene) });
    for t in 0..8 {
        push_c(c_scene, t);
    }

    // Interleaved, alternating which goes first, so that drift and cache effects fall on both.
    let rust_call = || black_box(with_rust_scene(c_scene, |s| s.localize(None).expect("localize")).expect("a scene with frames"));
    let mut c_call = || {
        black_box(localize_c(c_scene));
    };
    for _ in 0..20 {
        rust_call();
        c_call();
    }
    let (mut rust_us, mut c_us, mut diff_us) = (Vec::with_capacity(CALLS), Vec::with_capacity(CALLS), Vec::with_capacity(CALLS));
    for i in 0..CALLS {
        let time = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        };
        let (r, c) = if i % 2 == 0 {
            let r = time(&mut || {
                rust_call();
            });
            (r, time(&mut c_call))
        } else {
            let c = time(&mut c_call);
            (
                time(&mut || {
                    rust_call();
                }),
                c,
            )
        };
        rust_us.push(r);
        c_us.push(c);
        diff_us.push(c - r);
    }
    let (pose, reference) = (localize_c(c_scene), rust_call());
    assert_eq!((pose.x, pose.yaw_deg), (reference.position.x, reference.yaw_deg), "both paths give the same pose");
    let (r0, rm, ra) = stats(&mut rust_us);
    let (c0, cm, ca) = stats(&mut c_us);
    let (_, dm, da) = stats(&mut diff_us);
    println!("localize, {CALLS} interleaved calls on 8 live frames (min / median / mean):");
    println!("  Rust API  {r0:8.1} / {rm:8.1} / {ra:8.1} µs");
    println!("  C ABI     {c0:8.1} / {cm:8.1} / {ca:8.1} µs");
    println!("  C - Rust  {:+8.1} / {dm:+8.1} / {da:+8.1} µs (min: difference of the minima; median, mean: of the paired differences)", c0 - r0);
    println!("  (the Rust calls include the handle lookup and read lock of `with_rust_scene`, a few dozen ns)");

    // The fixed cost of crossing the boundary: a call that does no model work.
    let n = 1_000_000;
    let mut count = 0usize;
    let t = Instant::now();
    for _ in 0..n {
        ok(unsafe { loc3r_scene_frames(black_box(c_scene), &mut count) });
    }
    let c_ns = t.elapsed().as_secs_f64() * 1e9 / n as f64;
    println!("fixed cost of one C call (loc3r_scene_frames: panic guard, handle lookup, read lock): {c_ns:.0} ns");

    // RSS: 1,000 calls on the fixed 8-frame scene, then 1,000 on a scene that gets a new frame
    // every 20 calls (its caches grow with every frame; the calls themselves must not).
    let before = rss_mib();
    for _ in 0..CALLS {
        c_call();
    }
    println!("RSS over {CALLS} loc3r_localize calls on 8 live frames: {before:.1} -> {:.1} MiB", rss_mib());
    ok(loc3r_scene_free(c_scene));
    let mut live = ptr::null_mut();
    ok(unsafe { loc3r_scene_new(c_model, &mut live) });
    push_c(live, 0);
    let start = rss_mib();
    let mut line = format!("RSS over {CALLS} loc3r_localize calls with a frame pushed every 20 (frames: MiB):");
    let t = Instant::now();
    for i in 1..=CALLS {
        black_box(localize_c(live));
        if i % 20 == 0 {
            push_c(live, i / 20);
        }
        if i % 200 == 0 {
            let mut n = 0;
            ok(unsafe { loc3r_scene_frames(live, &mut n) });
            line.push_str(&format!(" {n}: {:.1}", rss_mib()));
        }
    }
    println!("{line} (from {start:.1} MiB with 1 frame; {:.1} s)", t.elapsed().as_secs_f64());
    ok(loc3r_scene_free(live));
    ok(loc3r_close(c_model));
}
