//! Quantized weights on ONNX Runtime (CPU), against references computed here.
//!
//! 1. Layout: one quantized Linear per graph, random shapes (K a multiple of the block and
//!    not), every width, zero-point choice, block size and both graph forms. ONNX Runtime's
//!    output must equal `x · dequantize(codes)ᵀ`, where `dequantize` reads the bytes the way
//!    the MatMulNBits / DequantizeLinear specs say. With float compute (accuracy_level 0, QDQ)
//!    the tolerance is float rounding: max |Δ| ≤ 1e-4 · (1 + max |y|). With accuracy_level 4
//!    ONNX Runtime also rounds the activations to int8 per block (a 1/254 step of the block's
//!    max |x|), so the bound is the error that rounding can cause: ≤ 2% of the output RMS.
//! 2. Per graph: the tiny decoder's `hidden_states` and `logits` (random prompt, no past)
//!    against the fp32 graph, relative L2 error: int8 ≤ 3% (measured 1.2-2.1%), int4 ≤ 30%
//!    (measured 20-24%: the tiny checkpoint's uniform random weights are the worst case for
//!    4-bit rounding; docs/quantization.md §3).

mod common;

use std::sync::Arc;

use common::*;
use loc3r_bundle::{QuantFormat, WeightBits};
use loc3r_export::models::context::ModelGraph;
use loc3r_export::models::qwen2::KvCacheLayout;
use loc3r_export::models::{self, ExportOptions};
use loc3r_export::quant::{self, rtn, QuantRequest, WeightQuant};
use loc3r_export::tensor::F32Tensor;
use loc3r_export::DType;
use ndarray::{ArrayD, IxDyn};

/// xorshift uniform in [-0.5, 0.5), deterministic per seed.
fn uniform(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

struct Case {
    m: usize,
    k: usize,
    n: usize,
    scheme: WeightQuant,
}

/// Runs one quantized Linear on ONNX Runtime; returns (ORT's y, the reference y, the float-weight y).
fn run_case(c: &Case, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (m, k, n) = (c.m, c.k, c.n);
    let mut w = uniform(seed, n * k);
    // An outlier per row, as real checkpoints have: what per-block scales are for.
    for r in 0..n {
        w[r * k + (r * 7) % k] *= 12.0;
    }
    let x = uniform(seed + 1, m * k).into_iter().map(|v| v * 4.0).collect::<Vec<_>>();
    let mut g = ModelGraph::new("linear", DType::F32).with_opset(quant::QDQ_OPSET);
    let input = g.input("x", DType::F32, [m, k]);
    let y = quant::quantized_linear(&mut g, &c.scheme, "w", Arc::new(F32Tensor::new(vec![n, k], w.clone())), &input, k, n, "layer");
    g.output("y", &y);
    let g = g.into_builder();
    let dir = tempfile::tempdir().unwrap();
    g.save(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut sess = unoptimized_session(&dir.path().join("linear.onnx"));
    let (out, _) = run(&mut sess, vec![f32_input("x", ArrayD::from_shape_vec(IxDyn(&[m, k]), x.clone()).unwrap())]);
    let got = out["y"].iter().copied().collect::<Vec<_>>();

    let packed = rtn::quantize(&w, n, k, &c.scheme, DType::F32);
    let deq = match c.scheme.format {
        QuantFormat::MatMulNBits => rtn::dequantize_matmulnbits(&packed, n, k, &c.scheme),
        QuantFormat::Qdq => rtn::dequantize_qdq(&packed, n, k, &c.scheme),
    };
    let matmul = |wt: &[f32]| -> Vec<f32> {
        (0..m)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .map(|(i, j)| (0..k).map(|kk| f64::from(x[i * k + kk]) * f64::from(wt[j * k + kk])).sum::<f64>() as f32)
            .collect()
    };
    (got, matmul(&deq), matmul(&w))
}

/// A session that runs the nodes as written: at its default level ONNX Runtime fuses a blocked
/// int4 DequantizeLinear → MatMul into MatMulNBits with int8 activations, which would test
/// that fusion rather than the bytes.
fn unoptimized_session(path: &std::path::Path) -> ort::session::Session {
    use ort::session::builder::GraphOptimizationLevel;
    let env = loc3r::ort_env::environment().unwrap_or_else(|e| panic!("{e}"));
    let build = || -> ort::Result<ort::session::Session> {
        let builder = ort::session::Session::builder(env)?.with_intra_threads(1).map_err(ort::Error::<()>::from)?;
        let mut builder = builder.with_optimization_level(GraphOptimizationLevel::Disable).map_err(ort::Error::<()>::from)?;
        builder.commit_from_file(path)
    };
    build().unwrap_or_else(|e| panic!("ONNX Runtime cannot load {}: {e}", path.display()))
}

fn rms(v: &[f32]) -> f32 {
    (v.iter().map(|a| a * a).sum::<f32>() / v.len() as f32).sqrt()
}

fn scheme(bits: WeightBits, format: QuantFormat, block_size: Option<usize>, symmetric: bool, accuracy_level: Option<u8>) -> WeightQuant {
    WeightQuant { bits, format, block_size, symmetric, accuracy_level }
}

#[test]
fn matmulnbits_equals_dequantize_then_matmul() {
    let mut seed = 10;
    let shapes = [(3, 64, 24), (5, 100, 17), (1, 200, 33), (4, 48, 8)];
    for bits in [WeightBits::Int4, WeightBits::Int8] {
        for block in [16, 32, 64, 128] {
            for symmetric in [true, false] {
                for &(m, k, n) in &shapes {
                    seed += 2;
                    let c = Case { m, k, n, scheme: scheme(bits, QuantFormat::MatMulNBits, Some(block), symmetric, Some(0)) };
                    let (got, want, _) = run_case(&c, seed);
                    let peak = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                    assert!(
                        worst <= 1e-4 * (1.0 + peak),
                        "{bits} block {block} symmetric {symmetric} [{m}x{k}]·[{k}x{n}]: max |ORT - reference| = {worst} (peak {peak})"
                    );
                }
            }
        }
    }
}

#[test]
fn matmulnbits_with_int8_compute_stays_within_activation_rounding() {
    let mut seed = 500;
    for bits in [WeightBits::Int4, WeightBits::Int8] {
        for block in [32, 128] {
            for &(m, k, n) in &[(3, 256, 40), (2, 100, 24)] {
                seed += 2;
                let c = Case { m, k, n, scheme: scheme(bits, QuantFormat::MatMulNBits, Some(block), true, Some(4)) };
                let (got, want, _) = run_case(&c, seed);
                let err = rms(&got.iter().zip(&want).map(|(a, b)| a - b).collect::<Vec<_>>());
                assert!(err <= 0.02 * rms(&want), "{bits} block {block} [{m}x{k}]·[{k}x{n}] accuracy_level 4: RMS error {err} > 2% of {}", rms(&want));
            }
        }
    }
}

#[test]
fn dequantize_linear_blocked_int4_and_per_channel_int8_equal_the_reference() {
    let mut seed = 900;
    for (bits, block) in [(WeightBits::Int4, Some(32)), (WeightBits::Int4, Some(16)), (WeightBits::Int8, None)] {
        for &(m, k, n) in &[(3, 64, 24), (2, 100, 17), (4, 33, 9)] {
            seed += 2;
            let c = Case { m, k, n, scheme: scheme(bits, QuantFormat::Qdq, block, true, None) };
            let (got, want, float) = run_case(&c, seed);
            let peak = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-4 * (1.0 + peak), "QDQ {bits} block {block:?} [{m}x{k}]·[{k}x{n}]: max |ORT - reference| = {worst}");
            // And the quantization itself is close to the float weights (a sanity bound, not the gate).
            let q_err = rms(&want.iter().zip(&float).map(|(a, b)| a - b).collect::<Vec<_>>());
            assert!(q_err <= 0.2 * rms(&float), "QDQ {bits}: quantization error {q_err} vs output RMS {}", rms(&float));
        }
    }
}

/// The tiny decoder (concat layout, no past) on a random prompt: hidden states and logits.
fn decoder_outputs(weights: Option<&str>, format: Option<QuantFormat>, accuracy_level: Option<u8>) -> (ArrayD<f32>, ArrayD<f32>) {
    let (_, ckpt) = tiny_checkpoint();
    let cfg = ckpt.config();
    let request = QuantRequest { weights: weights.map(str::to_string), format, accuracy_level, ..QuantRequest::default() };
    let opts = ExportOptions {
        precision: DType::F32,
        pooling: cfg.mm_spatial_pool_mode,
        cut3r_size: (cfg.cut3r.input_size[0], cfg.cut3r.input_size[1]),
        cut3r_points: false,
        kv_cache: KvCacheLayout::Concat,
        weights: request.resolve().unwrap(),
    };
    let g = models::qwen2::graph(ckpt, &opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    g.save(dir.path()).unwrap();
    let mut sess = session(&dir.path().join("decoder.onnx"));
    let (h, s) = (cfg.hidden_size, 9);
    let embeds = ArrayD::from_shape_vec(IxDyn(&[1, s, h]), uniform(77, s * h).into_iter().map(|v| v * 0.1).collect()).unwrap();
    let mut inputs = vec![
        f32_input("inputs_embeds", embeds),
        i64_input("attention_mask", ArrayD::from_elem(IxDyn(&[1, s]), 1)),
        i64_input("position_ids", ArrayD::from_shape_vec(IxDyn(&[1, s]), (0..s as i64).collect()).unwrap()),
    ];
    for i in 0..cfg.num_hidden_layers {
        for name in [models::qwen2::past_key(i), models::qwen2::past_value(i)] {
            inputs.push(f32_input(&name, ArrayD::zeros(IxDyn(&[1, cfg.num_key_value_heads, 0, cfg.head_dim()]))));
        }
    }
    let (out, _) = run(&mut sess, inputs);
    (out["hidden_states"].clone(), out["logits"].clone())
}

fn relative_l2(got: &ArrayD<f32>, want: &ArrayD<f32>) -> f32 {
    let diff: f32 = got.iter().zip(want.iter()).map(|(a, b)| (a - b) * (a - b)).sum();
    let norm: f32 = want.iter().map(|b| b * b).sum();
    (diff / norm).sqrt()
}

#[test]
fn quantized_decoder_stays_within_the_stated_error_of_fp32() {
    let (hidden, logits) = decoder_outputs(None, None, None);
    let mut failures = Vec::new();
    for (weights, format, level, bound) in [
        ("int8", QuantFormat::MatMulNBits, Some(0), 0.03),
        ("int8", QuantFormat::MatMulNBits, Some(4), 0.03),
        ("int8", QuantFormat::Qdq, None, 0.03),
        ("int4", QuantFormat::MatMulNBits, Some(0), 0.30),
        ("int4", QuantFormat::MatMulNBits, Some(4), 0.30),
        ("int4", QuantFormat::Qdq, None, 0.30),
    ] {
        let (h, l) = decoder_outputs(Some(weights), Some(format), level);
        let (eh, el) = (relative_l2(&h, &hidden), relative_l2(&l, &logits));
        eprintln!("decoder {weights} {format} accuracy_level {level:?}: relative L2 error hidden_states {eh:.5}, logits {el:.5}");
        if !(eh <= bound && el <= bound) {
            failures.push(format!("decoder {weights} {format} accuracy_level {level:?}: hidden_states {eh}, logits {el} > {bound}"));
        }
        assert!(eh > 0.0, "decoder {weights} {format}: identical to fp32, so nothing was quantized");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_already_quantized_checkpoint_is_refused() {
    let (dir, _) = tiny_checkpoint();
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path().join("tiny")).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    let config_path = copy.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["quantization_config"] = serde_json::json!({"quant_method": "gptq", "bits": 4});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = copy.path().join("bundle");
    let opts = loc3r_export::bundle::BundleOptions {
        weights: QuantRequest { weights: Some("int4".into()), ..QuantRequest::default() }.resolve().unwrap(),
        ..Default::default()
    };
    let e = loc3r_export::bundle::export_bundle(copy.path(), &out, &opts, |_| {}).unwrap_err();
    assert_eq!(e.fault(), loc3r_export::Fault::Input);
    let message = e.to_string();
    assert!(message.contains("already quantized (gptq)") && message.contains("float checkpoint"), "{message}");
    assert!(!out.exists(), "nothing is written for a refused checkpoint");
}
