//! loc3r-synth: writes seeded synthetic rooms (RGB-D frames, poses, ScanNet layout, video,
//! situated questions with BEV ground truth). See docs/synthetic-rooms.md.

use anyhow::Context;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use loc3r_synth::output::{write_room, write_run_files};
use loc3r_synth::scene::ObjectCount;
use loc3r_synth::trajectory::CameraPath;
use loc3r_synth::video::VideoEncoder;
use loc3r_synth::{generate_room, Options, SynthError};
use std::path::PathBuf;
use std::time::Instant;

/// Seeded, deterministic synthetic rooms for training and evaluating localisation.
///
/// Room i of seed S is generated from a seed derived from (S, i) alone: it does not depend on
/// --rooms, and the same options give byte-identical files (videos: same ffmpeg build). Output,
/// per room, in the ScanNet export layout under OUT/scenes/synth-s<S>-r<i:04>/: color/{i}.jpg,
/// depth/{i}.png (uint16 z-depth in mm, 0 = invalid), pose/{i}.txt (camera-to-world, OpenCV
/// camera axes), intrinsic/, <scene>.txt, <scene>_vh_clean_2.ply (room box), scene.json,
/// questions.jsonl and video.mp4 (frame i = color/i.jpg = pose/i.txt); and OUT/questions.jsonl
/// plus SQA3D and ScanQA files under OUT/annotations/.
#[derive(Debug, Parser)]
#[command(name = "loc3r-synth", version, about, long_about)]
struct Cli {
    /// Number of rooms (room indices 0..N).
    #[arg(long)]
    rooms: usize,
    /// Base seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Frames per room, on a closed loop 0.6 m inside the walls (at least 2).
    #[arg(long, default_value_t = 64)]
    frames: usize,
    /// Colour and depth size WxH (even, 32..=4096); horizontal field of view 58°.
    #[arg(long, default_value = "320x240", value_parser = parse_size)]
    size: (usize, usize),
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Objects per room (doors and windows included): N or MIN-MAX. A room that cannot fit MIN
    /// objects is an error.
    #[arg(long, default_value = "4-10", value_parser = parse_count)]
    objects: ObjectCount,
    /// Situated questions per room (fewer when the room offers fewer unambiguous ones).
    #[arg(long, default_value_t = 12)]
    questions: usize,
    /// Frames a question is meant to be asked with (the `frames` field of questions.jsonl);
    /// default 16, or --frames when that is smaller.
    #[arg(long)]
    sample_frames: Option<usize>,
    /// Split name in the annotation file names.
    #[arg(long, default_value = "train")]
    split: String,
    /// Add depth noise (σ = 2 mm·(d/1 m)²) and 1 % holes, deterministic per seed.
    #[arg(long)]
    depth_noise: bool,
    /// Skip video.mp4 (no ffmpeg needed).
    #[arg(long)]
    no_video: bool,
    /// Write into an existing non-empty --out (scenes being written are replaced).
    #[arg(long)]
    force: bool,
    /// Print a JSON summary (rooms, frames, questions, seconds) on stdout.
    #[arg(long)]
    json: bool,
    /// How the camera moves: `loop` tours the room on the closed loop facing its centre (what
    /// the questions are about); `turn` stands at one point of the loop and pans to and fro across
    /// the room, a pure rotation: pretraining data for CUT3R's motion features (docs/demo.md).
    #[arg(long, value_enum, default_value = "loop")]
    camera_path: PathArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PathArg {
    Loop,
    Turn,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?} is not WxH (e.g. 320x240)"))?;
    let parse = |v: &str| v.trim().parse::<usize>().map_err(|_| format!("{s:?} is not WxH with whole numbers (e.g. 320x240)"));
    Ok((parse(w)?, parse(h)?))
}

fn parse_count(s: &str) -> Result<ObjectCount, String> {
    let parse = |v: &str| v.trim().parse::<usize>().map_err(|_| format!("{s:?} is not N or MIN-MAX (e.g. 4-10)"));
    let (min, max) = match s.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(s)?, parse(s)?),
    };
    Ok(ObjectCount { min, max })
}

fn usage_error(msg: impl std::fmt::Display) -> ! {
    Cli::command().error(ErrorKind::ValueValidation, msg).exit()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = Options {
        seed: cli.seed,
        frames: cli.frames,
        width: cli.size.0,
        height: cli.size.1,
        objects: cli.objects,
        questions: cli.questions,
        sample_frames: cli.sample_frames.unwrap_or(16.min(cli.frames)),
        split: cli.split.clone(),
        depth_noise: cli.depth_noise,
        video: !cli.no_video,
        path: match cli.camera_path {
            PathArg::Loop => CameraPath::Loop,
            PathArg::Turn => CameraPath::Turn,
        },
    };
    if cli.rooms == 0 {
        usage_error("--rooms 0: ask for at least one room");
    }
    if let Err(e) = opts.validate() {
        usage_error(e);
    }
    let non_empty = cli.out.is_dir() && std::fs::read_dir(&cli.out).map(|mut d| d.next().is_some()).unwrap_or(false);
    if cli.out.exists() && !cli.out.is_dir() {
        usage_error(format!("--out {} exists and is not a directory", cli.out.display()));
    }
    if non_empty && !cli.force {
        usage_error(format!("--out {} exists and is not empty; pass --force to write into it or choose another directory", cli.out.display()));
    }
    let encoder = if opts.video {
        match VideoEncoder::detect() {
            Ok(e) => Some(e),
            Err(e) => usage_error(e),
        }
    } else {
        None
    };
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    let start = Instant::now();
    let mut written = Vec::with_capacity(cli.rooms);
    for index in 0..cli.rooms {
        let room_start = Instant::now();
        let g = match generate_room(&opts, index) {
            Ok(g) => g,
            Err(e @ SynthError::ObjectsDoNotFit { .. }) => usage_error(format!("room {index}: {e}")),
            Err(e) => return Err(e).with_context(|| format!("generating room {index}")),
        };
        let w = write_room(&cli.out, &opts, &g, encoder.as_ref()).with_context(|| format!("writing room {index} ({})", g.scene_id))?;
        eprintln!(
            "[{}/{}] {}: {:.1}×{:.1}×{:.1} m, {} objects, {} frames, {} questions, {:.1} s",
            index + 1,
            cli.rooms,
            g.scene_id,
            g.room.width,
            g.room.depth,
            g.room.height,
            g.room.objects.len(),
            w.frames,
            w.records.len(),
            room_start.elapsed().as_secs_f64()
        );
        written.push(w);
    }
    write_run_files(&cli.out, &opts.split, &written).context("writing questions.jsonl and annotations")?;
    let seconds = start.elapsed().as_secs_f64();
    let frames: usize = written.iter().map(|w| w.frames).sum();
    let questions: usize = written.iter().map(|w| w.records.len()).sum();
    if cli.json {
        println!("{}", serde_json::json!({ "rooms": cli.rooms, "frames": frames, "questions": questions, "seconds": seconds, "out": cli.out }));
    } else {
        eprintln!("{} rooms, {frames} frames, {questions} questions in {seconds:.1} s -> {}", cli.rooms, cli.out.display());
    }
    Ok(())
}
