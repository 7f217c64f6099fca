//! `loc3r-export`: checkpoint -> ONNX bundle. Command-line parsing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loc3r_export::bundle::{export_bundle, BundleOptions, Event};
use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::config::PoolMode;
use loc3r_export::inspect::inspect;
use loc3r_export::models::qwen2::KvCacheLayout;
use loc3r_export::tensorrt::compile::{compile_bundle, describe, CompileEvent, CompileOptions};
use loc3r_export::tensorrt::lint::{lint_bundle, render, LintOptions};
use loc3r_export::tensorrt::profile::ProfileLimits;
use loc3r_export::tensorrt::{LintTarget, TrtVersion};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_export::DType;

#[derive(Parser)]
#[command(
    name = "loc3r-export",
    version,
    about = "Turn a Loc3R-VLM checkpoint (safetensors) into a bundle of ONNX graphs",
    long_about = "Turn a Loc3R-VLM checkpoint (safetensors, HF/LLaVA + CUT3R names) into a bundle of ONNX graphs \
                  that the loc3r runtime runs, check them for TensorRT (`lint`) and compile them into GPU engines (`compile`).\n\n\
                  Exit codes: 0 success, 2 invalid input (checkpoint, config, name map, arguments, a bundle to inspect) or a missing \
                  GPU provider library, 1 other failures (writing the output, ONNX Runtime, an engine build, lint errors, internal errors)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a complete random checkpoint (config, sharded weights, CUT3R weights, tokenizer) for tests.
    MakeTiny {
        /// Output directory (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Random seed: the same seed writes the same bytes.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Built-in config: `tiny` (every structural feature, seconds) or `small` (CPU benchmark size, ~0.6B parameters),
        /// or the path of a config.json (same schema as models/tiny/config.json) for other shapes.
        #[arg(long, default_value = "tiny")]
        config: String,
        /// Split the model weights into K shards with a model.safetensors.index.json.
        #[arg(long, default_value_t = 1)]
        shards: usize,
        /// Stored dtype of the weights: f32, f16 or bf16.
        #[arg(long, default_value = "f32", value_parser = parse_dtype)]
        dtype: DType,
        /// Leave out lm_head.weight (tied to the token embeddings).
        #[arg(long)]
        tied_lm_head: bool,
        /// Qwen2 tokenizer.json for configs with the real vocabulary (default: models/qwen2/tokenizer.json).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Learn the small byte-level BPE's merges from this text file (configs with a small vocabulary;
        /// default: an embedded English corpus).
        #[arg(long)]
        tokenizer_corpus: Option<PathBuf>,
        /// Write a LLaVA-Video layout without the Loc3R additions (no model.loc3r.* tensors, no
        /// `loc3r` config section, no <Pos>/<Ori> tokens, no cut3r.safetensors): the input of
        /// `loc3r-train init`.
        #[arg(long)]
        without_loc3r: bool,
        /// With --without-loc3r: write the CUT3R weights to this file (outside the checkpoint).
        #[arg(long, requires = "without_loc3r")]
        cut3r_out: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Print a JSON summary on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Export a checkpoint to a bundle of ONNX graphs + manifest.json + tokenizer.json.
    Export {
        /// Checkpoint directory (config.json, model safetensors, cut3r.safetensors, tokenizer.json).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Bundle directory to write (replaced atomically if it is already a bundle).
        #[arg(long)]
        out: PathBuf,
        /// Weight/activation precision: fp32 or fp16 (norm statistics and softmax stay fp32).
        #[arg(long, default_value = "fp32", value_parser = parse_dtype)]
        precision: DType,
        /// Comma-separated subset of graphs (default: all): siglip, projector, embed, decoder, heads, cut3r_encoder,
        /// cut3r_step, and cut3r_points (needs --cut3r-points).
        #[arg(long, value_delimiter = ',')]
        graphs: Option<Vec<String>>,
        /// Vision pooling: bilinear (LLaVA-Video release, 210 tokens/frame) or average (182); default from config.json.
        #[arg(long)]
        pooling: Option<String>,
        /// CUT3R input size WxH (multiples of the CUT3R patch size); default from config.json.
        #[arg(long)]
        cut3r_size: Option<String>,
        /// Also export `cut3r_points.onnx` (the CUT3R point-map heads: points in the camera and
        /// world frames with confidences); cut3r_step then also outputs the decoder hooks it reads.
        #[arg(long)]
        cut3r_points: bool,
        /// Decoder KV cache interface: `static` (a preallocated cache the runtime fills in
        /// place; nothing is copied or allocated per decode step) or `concat` (optimum /
        /// onnxruntime-genai style `present = concat(past, new)`, copies the cache every step).
        #[arg(long, default_value = "static")]
        kv_cache: KvCacheLayout,
        /// Overwrite --out even if it is a non-empty directory that is not a bundle.
        #[arg(long)]
        force: bool,
        /// A name map other than the built-in models/names.json.
        #[arg(long)]
        names: Option<PathBuf>,
        #[command(flatten)]
        quant: QuantArgs,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List a bundle's graphs and I/O, verify every sha256 and load each graph in ONNX Runtime.
    Inspect {
        /// Bundle directory.
        bundle: PathBuf,
        /// Skip loading the graphs in ONNX Runtime.
        #[arg(long)]
        no_load: bool,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check that every graph of a bundle goes to TensorRT whole (static: no GPU needed).
    ///
    /// Ops and attributes against TensorRT 10's ONNX parser, element types, control flow,
    /// contrib ops, opset, fp16 hazards, shapes a profile can cover, external-data layout.
    /// Exit 0: no errors (warnings allowed); 1: errors found; 2: not a bundle.
    Lint {
        /// Bundle directory.
        bundle: PathBuf,
        /// tensorrt (ONNX Runtime's TensorRT provider, TensorRT 10) or tensorrt-rtx.
        #[arg(long, default_value = "tensorrt")]
        target: LintTarget,
        /// The oldest TensorRT the engines will be built with (10.3 for JetPack 6).
        #[arg(long, default_value = "10.14")]
        trt_version: TrtVersion,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Compile a bundle's graphs ahead of time for a GPU target, under BUNDLE/engines/<target-key>/.
    ///
    /// tensorrt-fp16: one TensorRT engine per graph (EP-context models, strongly typed: the
    /// fp16 comes from the graphs), with one explicit optimization profile covering every
    /// dynamic input. tensorrt-rtx: the same through the TensorRT-RTX plugin (RTX GPUs).
    /// cuda: the graphs saved after ONNX Runtime's optimizations for the CUDA provider.
    /// The target key names the GPU architecture and the TensorRT, CUDA and ONNX Runtime
    /// versions; the runtime refuses engines of another key.
    ///
    /// GPU verification pending: the profile, option and packaging logic is tested, but no
    /// engine has been built by this command on real hardware yet (see README).
    Compile {
        /// Bundle directory (written by `loc3r-export export`; fp16 for tensorrt-fp16).
        #[arg(long)]
        bundle: PathBuf,
        /// tensorrt-fp16, tensorrt-rtx or cuda.
        #[arg(long)]
        target: loc3r_bundle::engines::EngineTarget,
        /// CUDA device to build on.
        #[arg(long, default_value_t = 0)]
        device_id: i32,
        /// Largest frames per encoder call (siglip, projector, cut3r_encoder; heads: frames of vision tokens) [default: 64].
        #[arg(long)]
        max_frames: Option<u32>,
        /// Largest positions per decoder call (the prefill chunk; decode steps are 1) [default: 2048, at most the context].
        #[arg(long)]
        max_prefill: Option<u32>,
        /// Largest positions a sequence holds (past plus new) [default: the model's, at most 8192].
        #[arg(long)]
        max_context: Option<u32>,
        /// TensorRT builder optimization level 0-5 (1 builds fast for smoke tests).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=5))]
        builder_level: u8,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Validate a checkpoint: every tensor the graphs need is present, well-shaped and of a usable dtype.
    Check {
        #[arg(long)]
        checkpoint: PathBuf,
        /// A name map other than the built-in models/names.json.
        #[arg(long)]
        names: Option<PathBuf>,
        /// Also require the CUT3R point-map heads (for --cut3r-points exports).
        #[arg(long)]
        cut3r_points: bool,
        /// Print a JSON summary on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Weight-only quantization of linear layers (docs/quantization.md).
#[derive(clap::Args)]
struct QuantArgs {
    /// Weights of the LLM decoder's linear layers: fp (as --precision), int8 or int4
    /// (round to nearest, scales per block or per output channel).
    #[arg(long, help_heading = "Quantization")]
    weights: Option<String>,
    /// Weights per scale along the input axis: 16, 32, 64, 128 or 256 (int4 default 32;
    /// int8 MatMulNBits default 128; int8 QDQ is per output channel).
    #[arg(long, help_heading = "Quantization")]
    block_size: Option<usize>,
    /// How graphs carry the weights: matmulnbits (ONNX Runtime CPU/CUDA, the default) or qdq
    /// (DequantizeLinear + MatMul, opset 21, for TensorRT).
    #[arg(long, value_parser = parse_quant_format, help_heading = "Quantization")]
    quant_format: Option<loc3r_bundle::QuantFormat>,
    /// A zero point per block (asymmetric codes; MatMulNBits only). Default: symmetric.
    #[arg(long, help_heading = "Quantization")]
    zero_points: bool,
    /// MatMulNBits accuracy_level: 0 (A's type) .. 4 (int8: ONNX Runtime quantizes the
    /// activations per block and multiplies in integers; the default).
    #[arg(long, help_heading = "Quantization")]
    accuracy_level: Option<u8>,
    /// More layer groups to quantize with the decoder's, comma-separated: lm_head, siglip
    /// (SigLIP MLPs), cut3r (CUT3R MLPs).
    #[arg(long, value_delimiter = ',', help_heading = "Quantization")]
    quantize_also: Vec<loc3r_export::quant::QuantLayer>,
    /// A named combination instead of the flags above: cpu (the fastest that passes the
    /// accuracy gates on the CPU) or tensorrt-int8 (int8 QDQ, per channel).
    #[arg(long, help_heading = "Quantization")]
    preset: Option<loc3r_export::quant::Preset>,
    /// Activations of the encoders (siglip, projector, cut3r_encoder): fp (the default) or int8
    /// (QuantizeLinear/DequantizeLinear at every Linear's input with int8 per-channel weights,
    /// ranges from --calibration). cut3r_step, norms, softmax and the decoder stay float.
    #[arg(long, help_heading = "Quantization")]
    activations: Option<String>,
    /// The calibration cache of --activations int8 (with --preset tensorrt-int8 it implies
    /// --activations int8), written by `loc3r-calibrate` on the float bundle of this checkpoint.
    #[arg(long, help_heading = "Quantization")]
    calibration: Option<PathBuf>,
}

impl QuantArgs {
    fn request(&self) -> loc3r_export::quant::QuantRequest {
        loc3r_export::quant::QuantRequest {
            weights: self.weights.clone(),
            block_size: self.block_size,
            format: self.quant_format,
            zero_points: self.zero_points,
            accuracy_level: self.accuracy_level,
            also: self.quantize_also.clone(),
            preset: self.preset,
        }
    }

    fn activation_request(&self) -> loc3r_export::quant::ActivationRequest {
        loc3r_export::quant::ActivationRequest { activations: self.activations.clone(), calibration: self.calibration.clone() }
    }
}

fn parse_quant_format(s: &str) -> Result<loc3r_bundle::QuantFormat, String> {
    match s {
        "matmulnbits" => Ok(loc3r_bundle::QuantFormat::MatMulNBits),
        "qdq" => Ok(loc3r_bundle::QuantFormat::Qdq),
        other => Err(format!("`{other}` is not one of matmulnbits, qdq")),
    }
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" | "fp32" | "float32" => Ok(DType::F32),
        "f16" | "fp16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(format!("`{other}` is not one of f32, f16, bf16")),
    }
}

fn parse_size(s: &str) -> anyhow::Result<(usize, usize)> {
    let bad = || loc3r_export::Error::Invalid(format!("--cut3r-size {s}: expected WIDTHxHEIGHT, e.g. 512x384"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?))
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`loc3r-export inspect B | head`) instead of panicking.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One readable message, no backtrace: the chain joined with ": ".
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code of a failed command: that of the fault class of the first library error in
/// the chain (2 for bad input, 1 for write failures and bugs); anything else is a failure (1).
fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain().find_map(|c| c.downcast_ref::<loc3r_export::Error>()).map_or(1, |e| e.fault().exit_code())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::MakeTiny { out, seed, config, shards, dtype, tied_lm_head, tokenizer, tokenizer_corpus, without_loc3r, cut3r_out, quiet, json } => {
            let opts = TinyOptions { config, seed, shards, dtype, tied_lm_head, qwen2_tokenizer: tokenizer, tokenizer_corpus, without_loc3r, cut3r_out };
            let bar = progress_bar(quiet || json, "writing tensors");
            let report = make_tiny(&out, &opts, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .with_context(|| format!("make-tiny --out {}", out.display()))?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "wrote {} ({} config, seed {}): {} tensors, {} parameters, {} in {} files",
                    report.dir.display(),
                    report.config,
                    seed,
                    report.tensors,
                    report.parameters,
                    human_bytes(report.bytes),
                    report.files.len()
                );
            }
        }
        Command::Export { checkpoint, out, precision, graphs, pooling, cut3r_size, cut3r_points, kv_cache, force, names, quant, quiet, json } => {
            let weights = quant.request().resolve()?;
            let activations = quant.activation_request().resolve(quant.preset, &quant.quantize_also)?;
            let pooling = match pooling.as_deref() {
                None => None,
                Some("bilinear") => Some(PoolMode::Bilinear),
                Some("average") => Some(PoolMode::Average),
                Some(other) => anyhow::bail!(loc3r_export::Error::Invalid(format!("--pooling {other}: use bilinear or average"))),
            };
            let cut3r_size = cut3r_size.as_deref().map(parse_size).transpose()?;
            let opts = BundleOptions { precision, graphs, pooling, cut3r_size, cut3r_points, kv_cache, force, names, weights, activations };
            let multi = indicatif::MultiProgress::new();
            if quiet || json {
                multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let mut bars: Vec<(String, indicatif::ProgressBar)> = Vec::new();
            let style = indicatif::ProgressStyle::with_template("{spinner} {msg:<12} {elapsed}").expect("valid template");
            let report = export_bundle(&checkpoint, &out, &opts, |event| match event {
                Event::Plan(names) => {
                    for n in names {
                        let bar = multi.add(indicatif::ProgressBar::new_spinner().with_style(style.clone()).with_message(format!("{n} (queued)")));
                        bars.push((n, bar));
                    }
                }
                Event::Started(n) => {
                    if let Some((_, bar)) = bars.iter().find(|(b, _)| *b == n) {
                        bar.set_message(n.clone());
                        bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    }
                }
                Event::Finished(r) => {
                    if let Some((_, bar)) = bars.iter().find(|(b, _)| *b == r.graph) {
                        bar.finish_with_message(format!("{} done", r.graph));
                    }
                }
            })
            .with_context(|| format!("exporting {} to {}", checkpoint.display(), out.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                match &report.quantization {
                    Some(q) => println!("bundle {} ({}, weights {q}):", report.bundle.display(), report.precision),
                    None => println!("bundle {} ({}):", report.bundle.display(), report.precision),
                }
                if let Some(a) = &report.activations {
                    println!("activations: {a}");
                }
                println!("{:<12} {:>14} {:>12} {:>9}", "graph", "parameters", "size", "seconds");
                for g in &report.graphs {
                    println!("{:<12} {:>14} {:>12} {:>9.2}", g.graph, g.parameters, human_bytes(g.bytes), g.seconds);
                }
                println!("{:<12} {:>14} {:>12}", "total", report.graphs.iter().map(|g| g.parameters).sum::<u64>(), human_bytes(report.total_bytes));
            }
        }
        Command::Inspect { bundle, no_load, json } => {
            let report = inspect(&bundle, !no_load).with_context(|| format!("inspecting {}", bundle.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "bundle {}: format {} by {}, precision {}, {} KV cache",
                    bundle.display(),
                    report.format_version,
                    report.producer,
                    report.precision,
                    report.kv_cache
                );
                match &report.quantization {
                    Some(q) => println!("weights: {q}"),
                    None => println!("weights: {} (not quantized)", report.precision),
                }
                if let Some(a) = &report.activations {
                    println!("activations: {a}");
                }
                for g in &report.graphs {
                    let status = match g.loads {
                        Some(true) => "loads in ORT",
                        Some(false) => "FAILS to load",
                        None => "not loaded",
                    };
                    println!("\n{} ({}, {} parameters, {}; {status})", g.name, g.entry.file, g.entry.parameters, human_bytes(g.bytes));
                    for (dir, list) in [("in ", &g.entry.inputs), ("out", &g.entry.outputs)] {
                        for io in list {
                            let shape: Vec<String> = io.shape.iter().map(|d| d.to_string().trim_matches('"').to_string()).collect();
                            println!("  {dir} {:<32} {:<5} [{}]", io.name, io.dtype, shape.join(", "));
                        }
                    }
                }
                println!("\n{} files verified", report.files_checked);
            }
            if !report.problems.is_empty() {
                anyhow::bail!(loc3r_export::Error::Invalid(format!("{} problem(s): {}", report.problems.len(), report.problems.join("; "))));
            }
        }
        Command::Lint { bundle, target, trt_version, json } => {
            let opts = LintOptions { target, tensorrt: trt_version, limits: None };
            let report = lint_bundle(&bundle, &opts).with_context(|| format!("linting {}", bundle.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render(&report));
            }
            if !report.passed() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Compile { bundle, target, device_id, max_frames, max_prefill, max_context, builder_level, quiet, json } => {
            let manifest = loc3r_bundle::Manifest::read(&bundle).map_err(|e| loc3r_export::Error::Invalid(format!("--bundle {}: {e}", bundle.display())))?;
            let limits = ProfileLimits::resolve(&manifest, max_frames, max_prefill, max_context)?;
            let opts = CompileOptions { target, device_id, limits, builder_optimization_level: builder_level };
            let multi = indicatif::MultiProgress::new();
            if quiet || json {
                multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let style = indicatif::ProgressStyle::with_template("{spinner} {msg:<16} {elapsed}").expect("valid template");
            let mut bars: Vec<(String, indicatif::ProgressBar)> = Vec::new();
            let report = compile_bundle(&bundle, &opts, |event| match event {
                CompileEvent::Plan(names) => {
                    for n in names {
                        let bar = multi.add(indicatif::ProgressBar::new_spinner().with_style(style.clone()).with_message(format!("{n} (queued)")));
                        bars.push((n, bar));
                    }
                }
                CompileEvent::Started(n) => {
                    if let Some((_, bar)) = bars.iter().find(|(b, _)| *b == n) {
                        bar.set_message(format!("{n} building"));
                        bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    }
                }
                CompileEvent::Finished { graph, seconds } => {
                    if let Some((_, bar)) = bars.iter().find(|(b, _)| *b == graph) {
                        bar.finish_with_message(format!("{graph} done ({seconds:.1} s)"));
                    }
                }
            })
            .with_context(|| format!("compiling {} for {target}", bundle.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let record = loc3r_bundle::engines::read_record(&report.engine_dir)?;
                println!("compiled {} for {target} on {} -> {}", bundle.display(), describe(&record.facts), report.engine_dir.display());
                for (graph, seconds) in &report.graphs {
                    println!("  {graph:<14} {seconds:>8.1} s");
                }
            }
        }
        Command::Check { checkpoint, names, cut3r_points, json } => {
            let ckpt = Checkpoint::open(&checkpoint, names.as_deref(), Requirements { cut3r_points })?;
            let summary = ckpt.summary();
            if json {
                let v = serde_json::json!({"checkpoint": checkpoint, "ok": true, "families": summary});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("checkpoint {}: OK", checkpoint.display());
                println!("{:<14} {:>8} {:>15} {:>12}  dtype", "family", "tensors", "parameters", "size");
                for f in &summary {
                    println!("{:<14} {:>8} {:>15} {:>12}  {}", f.family, f.tensors, f.parameters, human_bytes(f.bytes as u64), f.dtypes.join(","));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(hidden: bool, message: &'static str) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})").expect("valid template").progress_chars("=> "));
    bar.set_message(message);
    bar
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
