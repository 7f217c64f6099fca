//! `loc3r-calibrate`: command-line parsing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use loc3r_calibrate::{calibrate, write_cache, Options, Progress};
use loc3r_export::quant::Method;

#[derive(Parser)]
#[command(
    name = "loc3r-calibrate",
    version,
    about = "Measure the activation ranges of a float bundle's encoders over real frames, for INT8 activations",
    long_about = "Run a float bundle's siglip, projector and cut3r_encoder graphs over real frames (prepared exactly as the \
                  runtime prepares a video) and write a calibration cache: for every activation that feeds a MatMul/Gemm with \
                  a weight, its range. `loc3r-export export --activations int8 --calibration FILE` (or --preset tensorrt-int8 \
                  --calibration FILE) then puts int8 QuantizeLinear/DequantizeLinear pairs there.\n\n\
                  Exit codes: 0 success, 2 invalid input (arguments, frames, a bundle that is not float), 1 other failures."
)]
struct Cli {
    /// The float bundle (loc3r-export export without --weights, --preset or --activations).
    #[arg(long)]
    bundle: PathBuf,
    /// Frames: a video file, a directory of images (one sequence) or a directory of videos;
    /// repeat for more sources.
    #[arg(long, required = true)]
    frames: Vec<PathBuf>,
    /// The calibration cache to write (JSON).
    #[arg(long)]
    out: PathBuf,
    /// How each range is chosen: minmax (largest magnitude), percentile (of the magnitudes) or
    /// entropy (TensorRT's KL-divergence threshold on a histogram).
    #[arg(long, default_value = "entropy")]
    method: Method,
    /// The percentile of --method percentile.
    #[arg(long)]
    percentile: Option<f64>,
    /// Most frames in all.
    #[arg(long, default_value_t = 256)]
    max_frames: usize,
    /// Frames sampled uniformly from each video (or image directory), as the runtime samples a video.
    #[arg(long, default_value_t = 16)]
    frames_per_video: usize,
    /// Frames per graph call (the measured values of a call are held in memory at once).
    #[arg(long, default_value_t = 2)]
    frame_batch: usize,
    /// ONNX Runtime intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e.chain().find_map(|c| c.downcast_ref::<loc3r_calibrate::Error>()).map_or(1, |e| e.fault().exit_code());
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.percentile.is_some() && cli.method != Method::Percentile {
        anyhow::bail!(loc3r_calibrate::Error::Invalid(format!(
            "--percentile applies to --method percentile; drop it or use --method percentile (not {})",
            cli.method
        )));
    }
    if cli.frame_batch == 0 {
        anyhow::bail!(loc3r_calibrate::Error::Invalid("--frame-batch must be at least 1".into()));
    }
    let opts = Options {
        bundle: cli.bundle.clone(),
        sources: cli.frames.clone(),
        method: cli.method,
        percentile: cli.percentile.unwrap_or(99.99),
        max_frames: cli.max_frames,
        frames_per_video: cli.frames_per_video,
        frame_batch: cli.frame_batch,
        threads: cli.threads,
    };
    let quiet = cli.quiet;
    let mut last_report = 0.0;
    let cache = calibrate(&opts, |p| {
        if quiet {
            return;
        }
        match p {
            Progress::Frames { sequences, frames, unreadable, first_unreadable } => {
                eprintln!("{frames} frames from {sequences} sequence(s)");
                if let Some(first) = first_unreadable {
                    eprintln!("skipped {unreadable} unreadable image(s) or video(s); first: {first}");
                }
            }
            Progress::Plan(graphs) => {
                let list: Vec<String> = graphs.iter().map(|(g, n)| format!("{g} {n}")).collect();
                eprintln!("activations to measure: {}", list.join(", "));
            }
            Progress::Sequence { index, count, source, seconds } => {
                eprintln!("sequence {index}/{count}: {} ({seconds:.1} s)", source.display());
            }
            Progress::Done { frames, total, seconds } => {
                // About one line a second on long runs, and the last one.
                if seconds - last_report >= 1.0 || frames == total {
                    last_report = seconds;
                    eprintln!("frame {frames}/{total}, {seconds:.1} s");
                }
            }
        }
    })
    .with_context(|| format!("calibrating {}", cli.bundle.display()))?;
    write_cache(&cache, &cli.out)?;
    let values: usize = cache.graphs.values().map(|g| g.values.len()).sum();
    if cli.json {
        let summary = serde_json::json!({
            "out": cli.out,
            "method": cache.method,
            "percentile": cache.percentile,
            "frames": cache.frames,
            "graphs": cache.graphs.iter().map(|(g, r)| (g.clone(), r.values.len())).collect::<std::collections::BTreeMap<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("wrote {} ({} over {} frames): {values} activation ranges", cli.out.display(), cache.method, cache.frames);
    }
    Ok(())
}
