//! Dev-only measurement of the CUT3R graphs (not part of the test suite):
//! export `cut3r_encoder` + `cut3r_step` at one input size, then time encoder and step chained
//! frame by frame on ONNX Runtime CPU, as the runtime's `cut3r` stage runs them.
//!
//! ```sh
//! cargo run --release -p loc3r-export --example cut3r_bench -- run --checkpoint /tmp/S
//! # a release-size CUT3R (enc 1024x24, dec 768x12, state 768) inside the small checkpoint:
//! cargo run --release -p loc3r-export --example cut3r_bench -- release-checkpoint --from /tmp/S --out /tmp/R
//! /usr/bin/time -v target/release/examples/cut3r_bench run --checkpoint /tmp/R --frames 10
//! ```
//!
//! `run` prints the export time and the peak RSS right after the export (before any session
//! exists), the ONNX sizes (graph + external data), session load times and ms/frame for the
//! encoder and the step (mean, median, min over `--frames` after one warm-up frame).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use loc3r::session::{load, SessionOptions};
use loc3r_export::bundle::{export_bundle, BundleOptions, Event, CUT3R_INIT_FILE};
use loc3r_export::checkpoint::{write_safetensors, SafetensorsFile, TensorRef, TensorToWrite, CONFIG_FILE, CUT3R_FILE, MODEL_FILE, TOKENIZER_FILE};
use loc3r_export::config::{Config, BUILTIN_CONFIGS};
use loc3r_export::models::cut3r::{self, io};
use loc3r_export::names::{NameMap, SourceFile};
use loc3r_export::tiny::init_values;
use loc3r_export::{DType, TensorData};
use ndarray::{ArrayD, IxDyn};
use ort::value::{DynValue, Tensor};

#[derive(Parser)]
#[command(about = "CUT3R export + ORT-CPU timing (dev only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Export cut3r_encoder + cut3r_step and time them chained on ORT CPU.
    Run {
        #[arg(long)]
        checkpoint: PathBuf,
        /// CUT3R input size WIDTHxHEIGHT.
        #[arg(long, default_value = "512x384")]
        size: String,
        /// fp32 or fp16.
        #[arg(long, default_value = "fp32")]
        precision: String,
        /// Timed frames (after one warm-up frame).
        #[arg(long, default_value_t = 10)]
        frames: usize,
        /// Intra-op threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Keep the exported bundle here (default: a temporary directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Time an existing bundle instead of exporting.
        #[arg(long, conflicts_with = "out")]
        bundle: Option<PathBuf>,
    },
    /// Copy a checkpoint, giving it the release CUT3R (config `cut3r` object and
    /// `loc3r.camera_token_dim` from models/loc3r-vlm-7b) and random weights of those shapes.
    ReleaseCheckpoint {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Dtype of the written weights.
        #[arg(long, default_value = "bf16")]
        dtype: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { checkpoint, size, precision, frames, threads, out, bundle } => {
            let size = parse_size(&size)?;
            let precision = match precision.as_str() {
                "fp32" | "f32" => DType::F32,
                "fp16" | "f16" => DType::F16,
                other => bail!("--precision {other}: use fp32 or fp16"),
            };
            let tmp = tempfile::tempdir_in(std::env::temp_dir())?;
            let dir = match bundle {
                Some(b) => b,
                None => {
                    let dir = out.unwrap_or_else(|| tmp.path().join("bundle"));
                    export(&checkpoint, &dir, size, precision)?;
                    dir
                }
            };
            report_sizes(&dir)?;
            time_frames(&dir, size, frames, threads)
        }
        Command::ReleaseCheckpoint { from, out, dtype } => {
            let dtype = match dtype.as_str() {
                "bf16" => DType::BF16,
                "f16" | "fp16" => DType::F16,
                "f32" | "fp32" => DType::F32,
                other => bail!("--dtype {other}: use bf16, f16 or f32"),
            };
            release_checkpoint(&from, &out, dtype)
        }
    }
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (w, h) = s.split_once('x').with_context(|| format!("--size {s}: expected WIDTHxHEIGHT"))?;
    Ok((w.parse()?, h.parse()?))
}

/// Peak resident set size of this process so far, in MiB (Linux `ru_maxrss` is in KiB).
fn peak_rss_mib() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn export(checkpoint: &Path, dir: &Path, size: (usize, usize), precision: DType) -> Result<()> {
    let opts = BundleOptions {
        precision,
        graphs: Some(vec![cut3r::ENCODER_GRAPH.into(), cut3r::STEP_GRAPH.into()]),
        cut3r_size: Some(size),
        ..BundleOptions::default()
    };
    let start = Instant::now();
    let report = export_bundle(checkpoint, dir, &opts, |e| {
        if let Event::Finished(g) = e {
            println!("exported {:14} {:>12} parameters  {:>8.1} MiB  {:6.1} s", g.graph, g.parameters, g.bytes as f64 / 1048576.0, g.seconds);
        }
    })
    .with_context(|| format!("exporting {}", checkpoint.display()))?;
    println!(
        "export: {:.1} s wall (incl. manifest sha256), bundle {:.1} MiB, peak RSS after export {:.0} MiB",
        start.elapsed().as_secs_f64(),
        report.total_bytes as f64 / 1048576.0,
        peak_rss_mib()
    );
    Ok(())
}

fn report_sizes(dir: &Path) -> Result<()> {
    for graph in [cut3r::ENCODER_GRAPH, cut3r::STEP_GRAPH] {
        let onnx = std::fs::metadata(dir.join(format!("{graph}.onnx")))?.len();
        let data = std::fs::metadata(dir.join(format!("{graph}.onnx.data"))).map(|m| m.len()).unwrap_or(0);
        println!("size {graph:14} {:>9.1} MiB ({} B graph + {} B external data)", (onnx + data) as f64 / 1048576.0, onnx, data);
    }
    Ok(())
}

fn f32_tensor(file: &std::sync::Arc<SafetensorsFile>, name: &str) -> Result<DynValue> {
    let t = TensorRef::new(file, name).with_context(|| format!("{CUT3R_INIT_FILE} has no {name}"))??;
    let a = ArrayD::from_shape_vec(IxDyn(t.shape()), t.to_f32())?;
    Ok(Tensor::from_array(a)?.into_dyn())
}

fn flag(v: f32) -> Result<DynValue> {
    Ok(Tensor::from_array(ArrayD::from_elem(IxDyn(&[1]), v))?.into_dyn())
}

/// The machine, for the record: CPU model, cores and the load average when timing starts
/// (other processes on a shared machine inflate the numbers).
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cpu}, {cores} cores, load average {}", load.join(" "))
}

fn stats(ms: &mut [f64]) -> String {
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    format!("mean {mean:8.1} ms  median {:8.1} ms  min {:8.1} ms", ms[ms.len() / 2], ms[0])
}

/// Encoder then step per frame, features and state/memory passed on as ORT values.
fn time_frames(dir: &Path, (width, height): (usize, usize), frames: usize, threads: usize) -> Result<()> {
    let opts = SessionOptions { intra_threads: threads, ..SessionOptions::default() };
    let t = Instant::now();
    let mut enc = load(&dir.join(format!("{}.onnx", cut3r::ENCODER_GRAPH)), &opts)?;
    let t_enc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut step = load(&dir.join(format!("{}.onnx", cut3r::STEP_GRAPH)), &opts)?;
    println!("session load: encoder {t_enc:.1} s, step {:.1} s; peak RSS {:.0} MiB", t.elapsed().as_secs_f64(), peak_rss_mib());

    let init = SafetensorsFile::open(&dir.join(CUT3R_INIT_FILE))?;
    let mut state = f32_tensor(&init, cut3r::STATE_INIT)?;
    let mut memory = f32_tensor(&init, cut3r::MEM_INIT)?;
    // A fixed pseudo-random image in [-1, 1] (the timing does not depend on the values).
    let n = 3 * height * width;
    let pixels: Vec<f32> = (0..n).map(|i| ((i as u64).wrapping_mul(2654435761) % 2001) as f32 / 1000.0 - 1.0).collect();
    let image = ArrayD::from_shape_vec(IxDyn(&[1, 3, height, width]), pixels)?;

    println!("machine: {}", machine());
    let (mut enc_ms, mut step_ms) = (Vec::new(), Vec::new());
    for i in 0..=frames {
        let t = Instant::now();
        let mut out = enc.run(vec![(io::IMAGE.to_string(), Tensor::from_array(image.clone())?.into_dyn())])?;
        let features = out.remove(io::FEATURES).context("encoder output")?;
        let e = t.elapsed().as_secs_f64() * 1e3;
        drop(out);
        let t = Instant::now();
        let inputs: Vec<(String, DynValue)> = vec![
            (io::FEATURES.into(), features),
            (io::STATE.into(), state),
            (io::MEMORY.into(), memory),
            (io::IS_FIRST.into(), flag(f32::from(u8::from(i == 0)))?),
            (io::UPDATE.into(), flag(1.0)?),
            (io::RESET.into(), flag(0.0)?),
        ];
        let mut out = step.run(inputs)?;
        state = out.remove(io::STATE_OUT).context("state_out")?;
        memory = out.remove(io::MEMORY_OUT).context("memory_out")?;
        let pose = out.remove(io::CAMERA_POSE).context("camera_pose")?;
        let s = t.elapsed().as_secs_f64() * 1e3;
        let (_, pose) = pose.try_extract_tensor::<f32>()?;
        println!("frame {i:3}{}: encoder {e:8.1} ms, step {s:8.1} ms, pose {:?}", if i == 0 { " (warm-up)" } else { "" }, &pose[..3]);
        if i > 0 {
            enc_ms.push(e);
            step_ms.push(s);
        }
    }
    if frames > 0 {
        let total: Vec<f64> = enc_ms.iter().zip(&step_ms).map(|(a, b)| a + b).collect();
        println!("{width}x{height}, {frames} frames, intra_threads {threads} (0 = one per core); {}:", machine());
        println!("  encoder  {}", stats(&mut enc_ms));
        println!("  step     {}", stats(&mut step_ms));
        println!("  total    {}", stats(&mut total.clone()));
    }
    println!("peak RSS {:.0} MiB", peak_rss_mib());
    Ok(())
}

/// `from` with the release CUT3R: config `cut3r` object and `loc3r.camera_token_dim` of the
/// built-in loc3r-vlm-7b config, every tensor the name map lists rewritten with random values
/// (make-tiny's `init_values`, seed 0) at the new shapes.
fn release_checkpoint(from: &Path, out: &Path, dtype: DType) -> Result<()> {
    if out.exists() {
        bail!("{}: exists; remove it or choose another --out", out.display());
    }
    let release_text = BUILTIN_CONFIGS.iter().find(|(n, _)| *n == "loc3r-vlm-7b").context("built-in release config")?.1;
    let release: serde_json::Value = serde_json::from_str(release_text)?;
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(from.join(CONFIG_FILE))?)?;
    config["cut3r"] = release["cut3r"].clone();
    config["loc3r"]["camera_token_dim"] = release["cut3r"]["dec_embed_dim"].clone();
    let text = serde_json::to_string_pretty(&config)? + "\n";
    let cfg = Config::from_json(&text, "release-size CUT3R config")?;
    let names = NameMap::builtin(&cfg)?;

    std::fs::create_dir_all(out)?;
    std::fs::write(out.join(CONFIG_FILE), &text)?;
    std::fs::copy(from.join(TOKENIZER_FILE), out.join(TOKENIZER_FILE))?;
    for (file, which) in [(MODEL_FILE, SourceFile::Model), (CUT3R_FILE, SourceFile::Cut3r)] {
        let tensors: Vec<TensorToWrite> = names
            .families
            .iter()
            .flat_map(|f| &f.tensors)
            .filter(|t| t.file == which)
            .map(|t| TensorToWrite { name: t.checkpoint.clone(), dtype, shape: t.shape.clone() })
            .collect();
        let params: usize = tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
        let start = Instant::now();
        write_safetensors(&out.join(file), &tensors, None, |t, w| loc3r_export::tensor::write_f32s_as(&init_values(&t.name, &t.shape, 0), t.dtype, w))?;
        println!("{file}: {} tensors, {:.1} M parameters, {dtype}, {:.1} s", tensors.len(), params as f64 / 1e6, start.elapsed().as_secs_f64());
    }
    let c = &cfg.cut3r;
    println!(
        "{}: CUT3R enc {}x{} (heads {}), dec {}x{} (heads {}, state heads {}), state {}, memory {}, camera_token_dim {}",
        out.display(),
        c.enc_embed_dim,
        c.enc_depth,
        c.enc_num_heads,
        c.dec_embed_dim,
        c.dec_depth,
        c.dec_num_heads,
        c.state_dec_num_heads,
        c.state_size,
        c.local_mem_size,
        cfg.loc3r.camera_token_dim
    );
    Ok(())
}
