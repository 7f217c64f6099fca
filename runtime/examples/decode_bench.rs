//! Decode speed of two bundles of the same checkpoint (e.g. the static and the concat KV
//! cache layouts) after a shared prefix of N positions, measured in one process: one
//! discarded warm-up round each, then rounds interleaved in alternating order so that
//! machine load affects both alike. Prints ms per decode step (median of the rounds) and
//! the ratio.
//!
//!   cargo run --release -p loc3r --example decode_bench -- BUNDLE_A BUNDLE_B [PREFIX_LEN ...]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use loc3r::stages::decode::{KvCache, Llm, Prefix};
use loc3r::{Loc3r, SessionOptions};

const STEPS: usize = 32;
const ROUNDS: usize = 5;

/// Deterministic ordinary-text ids, cycled to `n`.
fn prompt_ids(model: &Loc3r, n: usize) -> Result<Vec<u32>> {
    let text = "The robot stands in a living room. A sofa is to its left, a table in front of it, and a window behind the table. ";
    let ids = model.bundle().tokenizer.encode(text, false).map_err(|e| anyhow::anyhow!("{e}"))?.get_ids().to_vec();
    Ok(ids.iter().copied().cycle().take(n).collect())
}

/// Milliseconds per decode step for `STEPS` greedy-free steps (fixed ids) after `prefix`.
fn decode_ms(llm: &Llm<'_>, prefix: &KvCache, ids: &[u32]) -> Result<f64> {
    let mut seq = llm.sequence(Prefix::Shared(prefix), STEPS + 1)?;
    seq.feed(&llm.embed(&ids[..1])?)?;
    let start = Instant::now();
    for &id in &ids[1..=STEPS] {
        seq.feed_token(id)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1000.0 / STEPS as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        bail!("usage: decode_bench BUNDLE_A BUNDLE_B [PREFIX_LEN ...]");
    }
    let lens: Vec<usize> = if args.len() > 2 { args[2..].iter().map(|s| s.parse()).collect::<Result<_, _>>()? } else { vec![1379, 5295] };
    let opts = SessionOptions::default();
    let models = [&args[0], &args[1]].map(|p| Loc3r::open(&PathBuf::from(p), &opts).with_context(|| format!("opening {p}")));
    let [a, b] = models;
    let (a, b) = (a?, b?);
    let layout = |m: &Loc3r| m.bundle().manifest.runtime.llm.kv_cache.as_str();
    println!(
        "decode after a shared prefix, {STEPS} steps x {ROUNDS} rounds after a warm-up (median), A = {} ({}), B = {} ({})",
        args[0],
        layout(&a),
        args[1],
        layout(&b)
    );
    for n in lens {
        let ids = prompt_ids(&a, n + STEPS + 1)?;
        let (llm_a, llm_b) = (Llm::new(a.bundle())?, Llm::new(b.bundle())?);
        let prefix_a = llm_a.prefill(&llm_a.embed(&ids[..n])?)?.cache;
        let prefix_b = llm_b.prefill(&llm_b.embed(&ids[..n])?)?.cache;
        decode_ms(&llm_a, &prefix_a, &ids[n..])?;
        decode_ms(&llm_b, &prefix_b, &ids[n..])?;
        let (mut ms_a, mut ms_b) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                ms_a.push(decode_ms(&llm_a, &prefix_a, &ids[n..])?);
                ms_b.push(decode_ms(&llm_b, &prefix_b, &ids[n..])?);
            } else {
                ms_b.push(decode_ms(&llm_b, &prefix_b, &ids[n..])?);
                ms_a.push(decode_ms(&llm_a, &prefix_a, &ids[n..])?);
            }
        }
        let (ma, mb) = (median(ms_a), median(ms_b));
        println!("prefix {n:>6}: A {ma:8.2} ms/step, B {mb:8.2} ms/step, A/B {:.3}", ma / mb);
    }
    Ok(())
}
