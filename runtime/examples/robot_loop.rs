//! A robot's "where am I?" loop: frames from a camera, stream, file or image directory at
//! their real rate; keyframes into a live scene of bounded size; a localisation every N
//! frames, printed as one JSON line on stdout (frame time, wall time, pose, latency).
//!
//!   cargo run --release -p loc3r --example robot_loop -- --bundle build/demo/bundle \
//!       --source /dev/video0 --every 10 --localize-every 10 --window 16 \
//!       --situation "I am facing the door"
//!
//! `--source` also takes `rtsp://…`, `http://…`, a video file (played at its frame rate;
//! `--as-fast-as-possible` reads every frame without pacing) or a directory of images
//! (`--image-fps`). Stops at the end of the source, after `--max-frames`, or on Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use loc3r::live::{FrameSource, KeyframePolicy, LiveScene, Offered, SourceOptions};
use loc3r::{Loc3r, SessionOptions};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Localise a moving camera against what it has seen: one JSON pose per line")]
struct Args {
    /// Bundle directory (from `loc3r-export export`).
    #[arg(long)]
    bundle: PathBuf,
    /// /dev/videoN, rtsp://…, http(s)://…, a video file or a directory of png/jpg frames.
    #[arg(long)]
    source: String,
    /// Consider every N-th frame as a keyframe.
    #[arg(long, default_value_t = 10)]
    every: usize,
    /// Take a considered frame only if the camera moved this far (CUT3R units, ~metres) ...
    #[arg(long)]
    min_move_m: Option<f32>,
    /// ... or turned this much (degrees).
    #[arg(long)]
    min_turn_deg: Option<f32>,
    /// Most keyframes in the scene (memory and prompt bound); a full scene restarts from its newest half.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Localise every N-th frame of the source.
    #[arg(long, default_value_t = 10)]
    localize_every: usize,
    /// Situation text for the localisation ("I am facing the door"); none: the camera's own pose.
    #[arg(long)]
    situation: Option<String>,
    /// Read a file or directory as fast as possible (every frame) instead of at its frame rate.
    #[arg(long)]
    as_fast_as_possible: bool,
    /// Frame rate of an image directory.
    #[arg(long, default_value_t = 10.0)]
    image_fps: f64,
    /// Seconds without a frame before the source counts as stalled.
    #[arg(long, default_value_t = 10.0)]
    stall_timeout_s: f64,
    /// Stop after this many source frames.
    #[arg(long)]
    max_frames: Option<usize>,
    /// Intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.localize_every > 0, "--localize-every must be at least 1");
    let model = Loc3r::open(&args.bundle, &SessionOptions { intra_threads: args.threads, ..Default::default() })
        .with_context(|| format!("opening the bundle {}", args.bundle.display()))?;
    let policy = KeyframePolicy { every: args.every, min_move_m: args.min_move_m, min_turn_deg: args.min_turn_deg, window: args.window };
    let mut live = LiveScene::new(&model, policy)?;
    let opts = SourceOptions {
        realtime: !args.as_fast_as_possible,
        stall_timeout: Duration::try_from_secs_f64(args.stall_timeout_s).context("--stall-timeout-s must be a positive number of seconds")?,
        image_fps: args.image_fps,
        ..Default::default()
    };
    let mut source = FrameSource::open(&args.source, &opts)?;
    eprintln!("robot_loop: {} ({:?}, {:.1} fps), keyframe every {} frames, window {}", source.name(), source.kind(), source.fps(), args.every, args.window);
    let start = Instant::now();
    let mut frames = 0usize;
    while let Some(frame) = source.next_frame()? {
        if args.max_frames.is_some_and(|m| frames >= m) {
            break;
        }
        frames += 1;
        let (index, time_s) = (frame.index, frame.time_s);
        let t = Instant::now();
        let offered = live.offer(frame)?;
        let keyframe_ms = t.elapsed().as_secs_f64() * 1e3;
        let Some(scene) = live.scene() else { continue };
        if index % args.localize_every != 0 {
            continue;
        }
        let t = Instant::now();
        let pose = scene.localize(args.situation.as_deref())?;
        let latency_ms = t.elapsed().as_secs_f64() * 1e3;
        let (anchor_frame, anchor_time_s) = live.anchor().expect("a scene has keyframes");
        let line = json!({
            "frame": index,
            "time_s": time_s,
            "wall_s": start.elapsed().as_secs_f64(),
            "x": pose.position.x, "y": pose.position.y,
            "sigma_x": pose.position.sigma_x, "sigma_y": pose.position.sigma_y,
            "yaw_deg": pose.yaw_deg,
            "orientation_confident": pose.orientation_confident,
            "localize_ms": latency_ms,
            "keyframe": match offered { Offered::Skipped => "skipped", Offered::Added => "added", Offered::Restarted => "restarted" },
            "keyframe_ms": keyframe_ms,
            "keyframes": live.keyframes(),
            "anchor_frame": anchor_frame,
            "anchor_time_s": anchor_time_s,
            "dropped": source.dropped(),
        });
        println!("{line}");
    }
    eprintln!("robot_loop: {frames} frames, {} restarts, {} dropped, {:.1} s", live.restarts(), source.dropped(), start.elapsed().as_secs_f64());
    Ok(())
}
