//! AdamW with PyTorch's semantics, global gradient-norm clipping and the cosine schedule with
//! warmup (docs/training.md §4), on host f32 tensors.
//!
//! The update follows PyTorch's single-tensor AdamW op by op, in f32, so a step is
//! bit-comparable with `torch.optim.AdamW(foreach=False)` on the CPU:
//! ```text
//! θ ← θ·(1 − lr·wd)                                   decoupled decay, first
//! m ← lerp(m, g, 1 − β1);   v ← v·β2 + (1 − β2)·g·g
//! θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
//! ```
//! The bias corrections and the step size are computed in f64 host-side and rounded once.

/// AdamW hyper-parameters (defaults: Hugging Face's β1 = 0.9, β2 = 0.999, ε = 1e-8; no decay,
/// as the LLaVA-Video recipe).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// The moments of one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

impl Moments {
    pub fn zeros(n: usize) -> Moments {
        Moments { exp_avg: vec![0.0; n], exp_avg_sq: vec![0.0; n] }
    }
}

impl AdamW {
    /// One update of `param` with gradient `grad` at step `t` (1-based) and learning rate `lr`.
    pub fn step(&self, param: &mut [f32], grad: &[f32], state: &mut Moments, t: u64, lr: f64) {
        assert!(t >= 1, "AdamW steps count from 1");
        assert_eq!(param.len(), grad.len(), "param and grad sizes");
        let decay = (1.0 - lr * self.weight_decay) as f32;
        let bias_correction1 = 1.0 - self.beta1.powf(t as f64);
        let bias_correction2_sqrt = (1.0 - self.beta2.powf(t as f64)).sqrt();
        let step_size = (lr / bias_correction1) as f32;
        let (w1, b2, w2) = ((1.0 - self.beta1) as f32, self.beta2 as f32, (1.0 - self.beta2) as f32);
        let (bc2, eps) = (bias_correction2_sqrt as f32, self.eps as f32);
        for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(&mut state.exp_avg).zip(&mut state.exp_avg_sq) {
            if self.weight_decay != 0.0 {
                *p *= decay;
            }
            // torch.lerp(m, g, w) = m + w·(g − m) for w < 0.5
            *m += w1 * (g - *m);
            *v = *v * b2 + w2 * (g * g);
            let denom = v.sqrt() / bc2 + eps;
            *p -= step_size * (*m / denom);
        }
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: coefficient `max_norm / (norm + 1e-6)`, clamped to 1). Returns the norm
/// before clipping; a non-finite norm leaves the gradients as they are (the caller skips the step).
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f64) -> f64 {
    let norm = grads.iter().flat_map(|g| g.iter()).map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm.is_finite() {
        let coef = (max_norm / (norm + 1e-6)).min(1.0) as f32;
        if coef < 1.0 {
            for g in grads.iter_mut() {
                g.iter_mut().for_each(|x| *x *= coef);
            }
        }
    }
    norm
}

/// Hugging Face's cosine schedule with linear warmup, for update index `t` (0-based) of
/// `total`: `peak·t/W` while `t < W`, then `peak·½(1 + cos(π·(t − W)/(T − W)))` (update 0 has
/// learning rate 0, as in HF).
pub fn cosine_with_warmup(peak: f64, t: u64, warmup: u64, total: u64) -> f64 {
    if t < warmup {
        return peak * t as f64 / warmup.max(1) as f64;
    }
    let progress = (t - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps written out by hand from PyTorch's AdamW algorithm (in f64, with decay).
    #[test]
    fn two_adamw_steps_match_the_algorithm_by_hand() {
        let opt = AdamW { weight_decay: 0.1, ..AdamW::default() };
        let (lr, g1, g2) = (0.01, [0.5f32, -2.0], [0.25f32, 1.0]);
        let mut p = [1.0f32, -1.0];
        let mut st = Moments::zeros(2);
        opt.step(&mut p, &g1, &mut st, 1, lr);
        opt.step(&mut p, &g2, &mut st, 2, lr);
        for i in 0..2 {
            let (mut theta, mut m, mut v) = ([1.0f64, -1.0][i], 0.0f64, 0.0f64);
            for (t, g) in [(1, f64::from(g1[i])), (2, f64::from(g2[i]))] {
                theta *= 1.0 - lr * 0.1;
                m = 0.9 * m + 0.1 * g;
                v = 0.999 * v + 0.001 * g * g;
                let mhat = m / (1.0 - 0.9f64.powi(t));
                let vhat = v / (1.0 - 0.999f64.powi(t));
                theta -= lr * mhat / (vhat.sqrt() + 1e-8);
            }
            assert!((f64::from(p[i]) - theta).abs() < 1e-6, "param {i}: {} vs {theta}", p[i]);
            assert!((f64::from(st.exp_avg[i]) - m).abs() < 1e-7 && (f64::from(st.exp_avg_sq[i]) - v).abs() < 1e-7);
        }
        // The first step moves every parameter by ≈ lr (Adam's normalised step), decay aside.
        let mut q = [3.0f32];
        AdamW::default().step(&mut q, &[1e-3], &mut Moments::zeros(1), 1, 0.5);
        assert!((q[0] - 2.5).abs() < 1e-4, "{}", q[0]);
    }

    #[test]
    fn clipping_scales_to_the_max_norm_and_reports_the_norm() {
        let (mut a, mut b) = (vec![3.0f32, 0.0], vec![4.0f32]);
        let norm = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
        assert!((norm - 5.0).abs() < 1e-12);
        let after = (a[0] * a[0] + b[0] * b[0]).sqrt();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        let mut small = vec![0.1f32];
        clip_grad_norm(&mut [&mut small], 1.0);
        assert_eq!(small, vec![0.1]);
        let mut bad = vec![f32::NAN, 1.0];
        assert!(clip_grad_norm(&mut [&mut bad], 1.0).is_nan());
        assert_eq!(bad[1], 1.0);
    }

    #[test]
    fn cosine_schedule_warms_up_then_decays_to_zero() {
        assert_eq!(cosine_with_warmup(1e-3, 0, 10, 100), 0.0);
        assert!((cosine_with_warmup(1e-3, 5, 10, 100) - 5e-4).abs() < 1e-15);
        assert!((cosine_with_warmup(1e-3, 10, 10, 100) - 1e-3).abs() < 1e-15);
        assert!((cosine_with_warmup(1e-3, 55, 10, 100) - 5e-4).abs() < 1e-12);
        assert!(cosine_with_warmup(1e-3, 100, 10, 100).abs() < 1e-15);
        assert!(cosine_with_warmup(2.0, 3, 0, 0).abs() < 1e-15, "past the end the rate stays 0");
    }
}
