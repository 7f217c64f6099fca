//! `loc3r-serve`: command-line entry point of the runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loc3r::{Device, GenerationOptions, Loc3r, SessionOptions};

#[derive(Parser)]
#[command(
    name = "loc3r-serve",
    version,
    about = "Run Loc3R-VLM bundles: localisation and spatial questions about a video",
    long_about = "Run Loc3R-VLM bundles (made by `loc3r-export export`): observe a video once, then answer \
                  \"where am I?\" and spatial questions from its cached prefix.\n\nExit codes: 0 success, 2 invalid input (arguments, video, bundle), \
                  1 other failures (ONNX Runtime, device, I/O, internal errors)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer one or more questions about a video and print pose + answers.
    Run {
        /// Bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// Video file (anything FFmpeg reads) or a directory of images.
        #[arg(long)]
        video: PathBuf,
        /// Frames sampled uniformly from the video (default: the bundle's, 32 for Loc3R).
        #[arg(long)]
        frames: Option<usize>,
        /// Most pixels (width × height) per frame; larger videos and images are refused before decoding.
        #[arg(long, default_value_t = loc3r::DEFAULT_MAX_PIXELS)]
        max_pixels: u64,
        /// Where you are, e.g. "I am sitting on the bed facing the window" (default: standing in the room).
        #[arg(long)]
        situation: Option<String>,
        /// A question; repeat for several (later ones reuse the observed video).
        #[arg(long, required = true)]
        question: Vec<String>,
        /// cpu, cuda, tensorrt or tensorrt-rtx (a missing GPU provider is an error, never a CPU fallback;
        /// tensorrt runs the engines `loc3r-export compile` wrote for this machine).
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value_t = 128)]
        max_new_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Intra-op threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[command(flatten)]
        work: WorkLimits,
        /// Print JSON (one object per question) instead of a readable summary.
        #[arg(long)]
        json: bool,
        /// No progress output on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Serve the HTTP API (see README.md, section Serving): videos, localize, ask with SSE,
    /// OpenAI-style chat completions, health and Prometheus metrics.
    #[cfg(feature = "server")]
    Serve {
        /// Bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// Address to bind (port 0 picks a free port; the bound address is printed on stdout).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// cpu, cuda or tensorrt.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Intra-op threads per model job (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[command(flatten)]
        work: WorkLimits,
        /// Model jobs run at once on the blocking pool (default: the number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Model jobs waiting or running; more are refused with 429.
        #[arg(long, default_value_t = 256)]
        max_queue: usize,
        /// Registered videos kept; past it the least recently used is forgotten (404 afterwards).
        #[arg(long, default_value_t = 64)]
        max_sessions: usize,
        /// Memory budget of resident scenes (KV prefixes, embeddings) in MiB; the least recently
        /// used scene is evicted past it and re-observed on its next request.
        #[arg(long, default_value_t = 2048)]
        cache_mb: usize,
        /// File holding the API key: every route but /healthz then needs `Authorization: Bearer <key>`.
        #[arg(long)]
        api_key_file: Option<PathBuf>,
        /// Directory whose videos clients may name by path (JSON `{path}` and file:// URLs).
        #[arg(long)]
        allow_dir: Option<PathBuf>,
        /// Request body limit in MiB (uploads included).
        #[arg(long, default_value_t = 256)]
        max_body_mb: usize,
        /// Most frames a client may ask to sample.
        #[arg(long, default_value_t = 64)]
        max_frames: usize,
        /// Most pixels (width × height) per frame; larger videos and images are refused (422) before decoding.
        #[arg(long, default_value_t = loc3r::DEFAULT_MAX_PIXELS)]
        max_pixels: u64,
        /// Most new tokens a client may ask for.
        #[arg(long, default_value_t = 512)]
        max_new_tokens: usize,
        /// Per-request deadline in seconds (504 past it) of questions and localisations; the
        /// model work is stopped at the deadline.
        #[arg(long, default_value_t = 120.0)]
        request_timeout_s: f64,
        /// Deadline in seconds of observing a video (registering it, or re-observing an
        /// evicted one); past it 504 and the observation is stopped.
        #[arg(long, default_value_t = 600.0)]
        observe_timeout_s: f64,
        /// Seconds a connection has to send a whole request head, from opening or from its
        /// previous response (so also the idle keep-alive timeout); then it is closed.
        #[arg(long, default_value_t = 10.0)]
        header_timeout_s: f64,
        /// Seconds a request body may stall (no bytes arriving) before the request gets 408.
        #[arg(long, default_value_t = 60.0)]
        body_timeout_s: f64,
        /// On SIGINT/SIGTERM, seconds given to in-flight requests before they are cancelled.
        #[arg(long, default_value_t = 10.0)]
        shutdown_timeout_s: f64,
    },
    /// Check the runtime environment: which ONNX Runtime library is loaded and its build,
    /// which devices it can use and, for each GPU device, this machine's engine key and (with
    /// --bundle) the compiled engine directory it would load.
    Doctor {
        /// A bundle whose compiled engines (engines/<key>/) to report.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How much one model call may take; smaller bounds peak memory, results agree to float rounding.
#[derive(clap::Args, Debug, Clone)]
struct WorkLimits {
    /// Frames per call of the frame encoders (CUT3R, SigLIP); 0 = all frames at once.
    #[arg(long, default_value_t = SessionOptions::default().frame_batch)]
    frame_batch: usize,
    /// Prompt positions per decoder call when prefilling a video; 0 = the whole prompt at once.
    #[arg(long, default_value_t = SessionOptions::default().prefill_chunk)]
    prefill_chunk: usize,
    /// tensorrt/tensorrt-rtx without engines compiled for this machine: build them while
    /// loading (minutes per graph; development only) instead of refusing. Production runs
    /// `loc3r-export compile` first.
    #[arg(long)]
    allow_build: bool,
    /// Write ONNX Runtime's per-node profile of every graph under DIR (operators, input
    /// shapes, times; `<graph>_<timestamp>.json`), e.g. for tools/flops. Slows every call.
    #[arg(long, value_name = "DIR")]
    ort_profile: Option<PathBuf>,
    /// Bundles with INT8 activations on the CPU: use ONNX Runtime's fused integer kernels
    /// (faster; on x86 CPUs without VNNI they saturate and lose accuracy) instead of the exact
    /// QDQ arithmetic TensorRT computes (docs/quantization.md §6.5).
    #[arg(long)]
    int8_kernels: bool,
}

impl WorkLimits {
    fn session(&self, device: Device, intra_threads: usize) -> SessionOptions {
        SessionOptions {
            device,
            intra_threads,
            frame_batch: self.frame_batch,
            prefill_chunk: self.prefill_chunk,
            allow_build: self.allow_build,
            profile: self.ort_profile.clone(),
            int8_kernels: self.int8_kernels,
            ..SessionOptions::default()
        }
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe instead of panicking.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", printable(&format!("{e:#}")));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `text` with control characters (other than newline) and bidirectional overrides escaped
/// (`\u{1b}`), so echoed user input (a question, a file name) cannot drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The exit code of a failed command: that of the fault class of the first library error in
/// the chain (2 for the user's input or bundle, 1 for the rest); anything else is a failure (1).
fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain().find_map(|c| c.downcast_ref::<loc3r::Error>()).map_or(1, |e| e.fault().exit_code())
}

/// A duration option in seconds: finite, positive (or zero where `zero_ok`), at most 10^6 s.
#[cfg(feature = "server")]
fn seconds(flag: &str, secs: f64, zero_ok: bool) -> Result<std::time::Duration, loc3r::Error> {
    let ok = secs.is_finite() && (secs > 0.0 || (zero_ok && secs == 0.0)) && secs <= 1e6;
    if !ok {
        let what = if zero_ok { "0 or more" } else { "more than 0" };
        return Err(loc3r::Error::Input(format!("{flag} must be {what} and at most 1000000 seconds, got {secs}")));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    loc3r::ort_env::init()?;
    match cli.command {
        Command::Doctor { bundle, json } => {
            let info = loc3r::ort_env::init()?;
            let mut devices = serde_json::Map::new();
            let mut engines = serde_json::Map::new();
            for name in ["cpu", "cuda", "tensorrt", "tensorrt-rtx"] {
                let device = name.parse::<Device>()?;
                devices.insert(name.into(), device.provider_built_in()?.into());
                if let (Some(dir), Some(_)) = (&bundle, device.engine_target()) {
                    engines.insert(name.into(), loc3r::bundle::describe_engines(dir, &device).into());
                }
            }
            if json {
                let mut report = serde_json::json!({"onnxruntime": {"library": info.library, "build_info": info.build_info}, "devices": devices});
                if bundle.is_some() {
                    report["engines"] = engines.into();
                }
                println!("{report}");
            } else {
                println!("onnxruntime library: {}", info.library.display());
                println!("{}", info.build_info);
                let built_in: Vec<&str> = devices.iter().filter(|(_, on)| on.as_bool() == Some(true)).map(|(d, _)| d.as_str()).collect();
                println!("devices this build can use: {}", built_in.join(", "));
                if let Some(dir) = &bundle {
                    println!("engines of {}:", dir.display());
                    for (device, line) in &engines {
                        println!("  {device:<13} {}", line.as_str().unwrap_or_default());
                    }
                }
            }
        }
        #[cfg(feature = "server")]
        Command::Serve {
            bundle,
            addr,
            device,
            threads,
            work,
            workers,
            max_queue,
            max_sessions,
            cache_mb,
            api_key_file,
            allow_dir,
            max_body_mb,
            max_frames,
            max_pixels,
            max_new_tokens,
            request_timeout_s,
            observe_timeout_s,
            header_timeout_s,
            body_timeout_s,
            shutdown_timeout_s,
        } => {
            let device: Device = device.parse()?;
            let request_timeout = seconds("--request-timeout-s", request_timeout_s, false)?;
            let observe_timeout = seconds("--observe-timeout-s", observe_timeout_s, false)?;
            let header_timeout = seconds("--header-timeout-s", header_timeout_s, false)?;
            let body_timeout = seconds("--body-timeout-s", body_timeout_s, false)?;
            let shutdown_timeout = seconds("--shutdown-timeout-s", shutdown_timeout_s, true)?;
            let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
            loc3r::server::serve(loc3r::server::ServeConfig {
                bundle,
                addr,
                session: work.session(device, threads),
                workers,
                max_queue,
                max_sessions,
                cache_mb,
                api_key_file,
                allow_dir,
                max_body_mb,
                max_frames,
                max_pixels,
                max_new_tokens,
                request_timeout,
                observe_timeout,
                header_timeout,
                body_timeout,
                shutdown_timeout,
            })?;
        }
        Command::Run {
            bundle,
            video,
            frames,
            max_pixels,
            situation,
            question,
            device,
            max_new_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            threads,
            work,
            json,
            quiet,
        } => {
            let device: Device = device.parse()?;
            let opts = work.session(device, threads);
            let say = |msg: &str| {
                if !quiet && !json {
                    eprintln!("{}", printable(msg));
                }
            };
            say(&format!("loading bundle {}", bundle.display()));
            let model = Loc3r::open(&bundle, &opts).with_context(|| format!("opening bundle {}", bundle.display()))?;
            // User text is text: refuse special tokens before paying for the video (the library checks again).
            for q in &question {
                loc3r::stages::prompt::check_user_text("question", q, Some(&model.bundle().tokenizer)).map_err(loc3r::Error::from)?;
            }
            if let Some(s) = &situation {
                loc3r::stages::prompt::check_user_text("situation", s, Some(&model.bundle().tokenizer)).map_err(loc3r::Error::from)?;
            }
            let n = frames.unwrap_or(model.bundle().manifest.runtime.frames);
            say(&format!("observing {} ({n} frames)", video.display()));
            let spec = loc3r::FrameSpec::new(n).with_max_pixels(max_pixels);
            let scene = model.observe_video_with(&video, &spec).with_context(|| format!("observing {}", video.display()))?;
            let gen = GenerationOptions { max_new_tokens, temperature, top_k, top_p, seed };
            for (i, q) in question.iter().enumerate() {
                let mut answer = scene.ask(situation.as_deref(), q, &gen).with_context(|| format!("answering {q:?}"))?;
                if i == 0 {
                    // The first question pays for observing the video.
                    answer.timings_ms.include_observe(&scene.observe_timings);
                }
                if json {
                    let mut v = serde_json::to_value(&answer)?;
                    v["question"] = q.clone().into();
                    v["frames"] = serde_json::to_value(&scene.frames)?;
                    println!("{v}");
                } else {
                    println!("Q: {}", printable(q));
                    println!("A: {}", printable(&answer.answer));
                    let p = &answer.pose.position;
                    println!(
                        "   position x={:.3} y={:.3} (σ {:.3}, {:.3}) m, yaw {:.1}°{}",
                        p.x,
                        p.y,
                        p.sigma_x,
                        p.sigma_y,
                        answer.pose.yaw_deg,
                        if answer.pose.orientation_confident { "" } else { " (no dominant direction)" }
                    );
                    let t = &answer.timings_ms;
                    println!(
                        "   tokens: prompt {}, generated {}; ms: decode_video {:.0}, cut3r {:.0}, siglip {:.0}, prefill {:.1}, first_token {:.1}, decode {:.1}, total {:.0}",
                        answer.tokens.prompt, answer.tokens.generated, t.decode_video, t.cut3r, t.siglip, t.prefill, t.first_token, t.decode, t.total
                    );
                }
            }
        }
    }
    Ok(())
}
