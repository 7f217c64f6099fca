//! Shared by the integration tests: the whole-graph gradient check on ONNX Runtime.

use std::collections::HashMap;

use loc3r_train::session::{Evaluated, HostParam, Runner};
use ndarray::ArrayD;

/// `⟨∇L, v⟩` from `eval`'s gradients against the central difference of `loss` along a random
/// direction v (seeded) over every parameter: f32 graphs, h = 3e-3, asserted within 2e-2
/// relative + 1e-4. Returns (analytic, numeric).
pub fn assert_directional_derivative(
    runner: &mut Runner,
    params: &mut [HostParam],
    eval: &Evaluated,
    feeds: &HashMap<String, ArrayD<f32>>,
    seed: u64,
) -> (f64, f64) {
    let none = HashMap::<String, ArrayD<i64>>::new();
    let mut state = seed;
    let mut rnd = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let v: Vec<Vec<f64>> = params.iter().map(|p| p.value.iter().map(|_| rnd()).collect()).collect();
    let norm = v.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    let analytic: f64 = eval.grads.iter().zip(&v).map(|(g, d)| g.iter().zip(d).map(|(a, b)| f64::from(*a) * b / norm).sum::<f64>()).sum();
    let h = 3e-3;
    let mut at = |sign: f64| {
        let base: Vec<Vec<f32>> = params.iter().map(|p| p.value.clone()).collect();
        for ((p, d), b) in params.iter_mut().zip(&v).zip(&base) {
            p.value = b.iter().zip(d).map(|(x, y)| (f64::from(*x) + sign * h * y / norm) as f32).collect();
        }
        let losses = runner.run(params, feeds, &none).expect("runs").losses;
        for (p, b) in params.iter_mut().zip(base) {
            p.value = b;
        }
        f64::from(losses.iter().find(|(n, _)| n == "loss").expect("the graph has a loss").1)
    };
    let numeric = (at(1.0) - at(-1.0)) / (2.0 * h);
    println!("directional derivative: analytic {analytic:.6}, central difference {numeric:.6}");
    assert!((analytic - numeric).abs() <= 2e-2 * analytic.abs() + 1e-4, "analytic {analytic} vs numeric {numeric}");
    (analytic, numeric)
}
