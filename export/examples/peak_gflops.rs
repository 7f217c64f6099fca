//! What this machine's matrix kernels reach through ONNX Runtime, measured (not assumed), as
//! the reference `tools/flops` divides each stage's achieved rate by (`make bench`):
//!
//! * `f32 gemm`: MatMul 2048×2048×2048 in f32 (MLAS SGEMM), the compute peak of the fp32
//!   stages;
//! * `int4 gemm`: the same product with int4 block-32 weights as `MatMulNBits` with
//!   accuracy_level 4 (int8 dot products), the compute peak of the `--preset cpu` decoder;
//! * `f32 gemv` and `int4 gemv`: one row against 4096×4096 weights, the memory-bound case that
//!   decoding one token is; reported as GFLOP/s and as GB/s of weights streamed.
//!
//! ```sh
//! cargo run --release -p loc3r-export --example peak_gflops -- --threads 2 --json
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use loc3r::session::{load, SessionOptions};
use loc3r_bundle::{QuantFormat, WeightBits};
use loc3r_export::models::context::ModelGraph;
use loc3r_export::quant::{quantized_linear, WeightQuant};
use loc3r_export::tensor::F32Tensor;
use loc3r_export::tiny::init_values;
use loc3r_export::DType;
use ndarray::{ArrayD, IxDyn};
use ort::value::Tensor;

#[derive(Parser)]
#[command(about = "Peak GFLOP/s of ONNX Runtime's CPU matrix kernels on this machine (dev only)")]
struct Cli {
    /// Intra-op threads (0: ONNX Runtime's default, one per core), as the runtime is run.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seconds to spend timing each kernel (after a warm-up run).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Deterministic values (the tiny checkpoints' initialiser: what matters here is only that
/// they are not zeros or denormals).
fn values(n: usize, seed: u64) -> Vec<f32> {
    init_values("peak.weight", &[n, 1], seed)
}

struct Kernel {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    int4: bool,
}

struct Measured {
    name: &'static str,
    gflops: f64,
    /// Weight bytes streamed per second (GB/s).
    weight_gbps: f64,
    ms: f64,
}

fn measure(kernel: &Kernel, threads: usize, seconds: f64, dir: &std::path::Path) -> Result<Measured> {
    let Kernel { name, m, k, n, int4 } = *kernel;
    let mut g = ModelGraph::new(&format!("peak_{}", name.replace(' ', "_")), DType::F32);
    let x = g.input("x", DType::F32, [m, k]);
    let weight = Arc::new(F32Tensor::new(vec![n, k], values(n * k, 7)));
    let y = if int4 {
        let scheme = WeightQuant { bits: WeightBits::Int4, format: QuantFormat::MatMulNBits, block_size: Some(32), symmetric: true, accuracy_level: Some(4) };
        quantized_linear(&mut g, &scheme, "w", weight, &x, k, n, "w")
    } else {
        // x · Wᵀ with W stored transposed, as the exporter stores Linear weights.
        let wt: Vec<f32> = (0..k * n).map(|i| weight.data[(i % n) * k + i / n]).collect();
        let w = g.initializer("w", Arc::new(F32Tensor::new(vec![k, n], wt)), DType::F32);
        g.scope("w").matmul("MatMul", &x, &w)
    };
    g.output("y", &y);
    let graph = g.into_builder();
    let stats = graph.save(dir).context("writing the microbenchmark graph")?;
    let opts = SessionOptions { intra_threads: threads, ..SessionOptions::default() };
    let mut session = load(&stats.onnx_path, &opts)?;
    let input = ArrayD::from_shape_vec(IxDyn(&[m, k]), values(m * k, 3))?;
    let mut run = || -> Result<()> {
        session.run(ort::inputs!["x" => Tensor::from_array(input.clone())?])?;
        Ok(())
    };
    run()?;
    let (start, mut runs) = (Instant::now(), 0u32);
    while runs < 3 || start.elapsed().as_secs_f64() < seconds {
        run()?;
        runs += 1;
    }
    let per_run = start.elapsed().as_secs_f64() / f64::from(runs);
    let flops = 2.0 * (m * k * n) as f64;
    let weight_bytes = if int4 { (k * n) as f64 / 2.0 + (k * n / 32) as f64 * 4.0 } else { (k * n * 4) as f64 };
    Ok(Measured { name, gflops: flops / per_run / 1e9, weight_gbps: weight_bytes / per_run / 1e9, ms: per_run * 1e3 })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::tempdir()?;
    let kernels = [
        Kernel { name: "f32 gemm", m: 2048, k: 2048, n: 2048, int4: false },
        Kernel { name: "int4 gemm", m: 2048, k: 2048, n: 2048, int4: true },
        Kernel { name: "f32 gemv", m: 1, k: 4096, n: 4096, int4: false },
        Kernel { name: "int4 gemv", m: 1, k: 4096, n: 4096, int4: true },
    ];
    let mut rows = Vec::new();
    for (i, kernel) in kernels.iter().enumerate() {
        let sub = dir.path().join(format!("k{i}"));
        std::fs::create_dir_all(&sub)?;
        rows.push(measure(kernel, cli.threads, cli.seconds, &sub)?);
    }
    if cli.json {
        let obj: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|r| (r.name.replace(' ', "_"), serde_json::json!({"gflops": r.gflops, "weight_gbps": r.weight_gbps, "ms": r.ms})))
            .chain([("threads".to_string(), serde_json::json!(cli.threads))])
            .collect();
        println!("{}", serde_json::Value::Object(obj));
    } else {
        println!("{:12} {:>10} {:>12} {:>10}", "kernel", "GFLOP/s", "weights GB/s", "ms/run");
        for r in &rows {
            println!("{:12} {:10.1} {:12.2} {:10.2}", r.name, r.gflops, r.weight_gbps, r.ms);
        }
    }
    Ok(())
}
