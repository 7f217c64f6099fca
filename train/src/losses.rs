//! The paper's losses as graph builders (docs/training.md, "Losses"), all in f32, and the
//! orientation target computed host-side in f64.
//!
//! ```text
//! ℓ(b, μ, s) = ½·[(b − μ)²·e^(−s) + s],  s = Clip(log σ², −10, 10)          Gaussian NLL, per axis
//! L_BEV = mean_b  Σ_i Σ_a m_bi ℓ_bia / (2·max(1, Σ_i m_bi))                  valid tokens only
//! L_pos = mean_b  v_b · ½ Σ_a ℓ_ba                                            <Pos> token
//! L_ori = mean_b  v_b · Σ_k q_bk (log q_bk − LogSoftmax(z_b)_k)              KL, `batchmean`
//! L_LM  = mean_b  mean_{i∈A_b} −log p(y_i)                                    gathered positions
//! L     = L_LM + λ_BEV·L_BEV + λ_sit·(L_pos + λ_ori·L_ori)
//! ```
//! Samples without a situation (v_b = 0) stay in the denominator of the batch mean.

use std::f64::consts::PI;

use loc3r_export::graph::{Dim, GraphBuilder, Value};
use loc3r_export::DType;

/// Bounds of the log-variance before the loss (σ from 6.7 mm to 148 m); the runtime reports
/// σ with the same clamp.
pub const LOG_VARIANCE_RANGE: (f64, f64) = (-10.0, 10.0);

/// The weights of the total loss (`loc3r.loss_weights` in the checkpoint config).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossWeights {
    pub lm: f64,
    pub bev: f64,
    pub sit: f64,
    pub ori: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights { lm: 1.0, bev: 0.1, sit: 0.5, ori: 1.0 }
    }
}

impl LossWeights {
    /// Applies `lm=A,bev=B,sit=C,ori=D` overrides (any subset, any order).
    pub fn with_overrides(mut self, spec: &str) -> Result<LossWeights, String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected name=value (e.g. bev=0.1)"))?;
            let value: f64 = value.trim().parse().map_err(|_| format!("`{part}`: `{value}` is not a number"))?;
            if !value.is_finite() || value < 0.0 {
                return Err(format!("`{part}`: a loss weight must be finite and ≥ 0"));
            }
            match key.trim() {
                "lm" => self.lm = value,
                "bev" => self.bev = value,
                "sit" => self.sit = value,
                "ori" => self.ori = value,
                other => return Err(format!("`{other}` is not a loss weight; use lm, bev, sit or ori")),
            }
        }
        Ok(self)
    }
}

/// `δ` wrapped to (−π, π] (−π maps to +π), without atan2's dependence on the sign of zero.
pub fn wrap_angle(delta: f64) -> f64 {
    delta - 2.0 * PI * ((delta - PI) / (2.0 * PI)).ceil()
}

/// The wrapped-Gaussian orientation target over `bins` bins centred at 2πk/K:
/// q_k ∝ exp(−wrap(θ_k − yaw)²/(2σ²)), normalised in the log domain (no 0·log 0 when a
/// weight underflows). Returns `(q, Σ_k q_k log q_k)`.
pub fn orientation_target(yaw: f64, bins: usize, sigma: f64) -> (Vec<f64>, f64) {
    let logits: Vec<f64> = (0..bins)
        .map(|k| {
            let d = wrap_angle(2.0 * PI * k as f64 / bins as f64 - yaw);
            -d * d / (2.0 * sigma * sigma)
        })
        .collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    let log_q: Vec<f64> = logits.iter().map(|l| l - lse).collect();
    let q: Vec<f64> = log_q.iter().map(|l| l.exp()).collect();
    let neg_entropy = q.iter().zip(&log_q).map(|(q, l)| q * l).sum();
    (q, neg_entropy)
}

/// Per-axis Gaussian NLL `½·[(b − μ)²·e^(−s) + s]` of `pred [.., 4] = (μx, μy, sx, sy)` against
/// `target [.., 2]`, with s clamped; returns `[.., 2]`.
///
/// ```text
/// pred ─Slice[0:2]─▶ μ ──────────┐
/// target ─────────────────────── b − μ ─²─┐
/// pred ─Slice[2:4]─▶ Clip(−10,10) ─▶ s ─Neg─Exp─·─▶ + s ─·½─▶ ℓ
/// ```
pub fn gaussian_nll(g: &mut GraphBuilder, path: &str, pred: &Value, target: &Value) -> Value {
    let mut s = g.scope(path);
    let last = pred.rank() as i64 - 1;
    let mu = s.slice("mean", pred, [0i64], [2i64], &[last], &[]);
    let log_var = s.slice("log_variance", pred, [2i64], [4i64], &[last], &[]);
    let log_var = s.clip("clamp", &log_var, Some(LOG_VARIANCE_RANGE.0), Some(LOG_VARIANCE_RANGE.1));
    let r = s.sub("residual", target, &mu);
    let r2 = s.mul("residual_squared", &r, &r);
    let neg = s.neg("neg_log_variance", &log_var);
    let precision = s.exp("precision", &neg);
    let t = s.mul("weighted_residual", &r2, &precision);
    let t = s.add("plus_log_variance", &t, &log_var);
    s.mul_scalar("half", &t, 0.5)
}

/// L_BEV from `pred [B,T,4]`, `target [B,T,2]`, `mask [B,T]`; a scalar.
pub fn bev_loss(g: &mut GraphBuilder, pred: &Value, target: &Value, mask: &Value) -> Value {
    let nll = gaussian_nll(g, "loss/bev/nll", pred, target);
    let mut s = g.scope("loss/bev");
    let per_token = s.reduce_sum("sum_axes", &nll, &[-1], false);
    let masked = s.mul("masked", &per_token, mask);
    let total = s.reduce_sum("sum_tokens", &masked, &[-1], false);
    let valid = s.reduce_sum("valid_tokens", mask, &[-1], false);
    let one = s.scalar(DType::F32, 1.0);
    let valid = s.max("at_least_one", &valid, &one);
    let valid = s.mul_scalar("times_two_axes", &valid, 2.0);
    let per_sample = s.div("per_sample", &total, &valid);
    s.reduce_mean("mean", &per_sample, &[], false)
}

/// L_pos from `pred [B,4]`, `target [B,2]`, `valid [B]`; a scalar.
pub fn position_loss(g: &mut GraphBuilder, pred: &Value, target: &Value, valid: &Value) -> Value {
    let nll = gaussian_nll(g, "loss/pos/nll", pred, target);
    let mut s = g.scope("loss/pos");
    let per_sample = s.reduce_mean("mean_axes", &nll, &[-1], false);
    let weighted = s.mul("valid_only", &per_sample, valid);
    s.reduce_mean("mean", &weighted, &[], false)
}

/// L_ori from `logits [B,K]`, the target `q [B,K]`, `Σ q log q [B]` and `valid [B]`; a scalar.
pub fn orientation_loss(g: &mut GraphBuilder, logits: &Value, q: &Value, q_neg_entropy: &Value, valid: &Value) -> Value {
    let mut s = g.scope("loss/ori");
    let log_p = s.log_softmax("log_probs", logits, -1);
    let cross = s.mul("q_log_p", q, &log_p);
    let cross = s.reduce_sum("sum_bins", &cross, &[-1], false);
    let kl = s.sub("kl", q_neg_entropy, &cross);
    let weighted = s.mul("valid_only", &kl, valid);
    s.reduce_mean("mean", &weighted, &[], false)
}

/// L_LM from the logits at the supervised positions `[B,N,V]`, their one-hot targets
/// `[B,N,V]` and a mask `[B,N]` (1 for real targets, 0 for padding); a scalar.
///
/// ```text
/// logits ─LogSoftmax─· onehot ─ReduceSum(V)─▶ log p(y) [B,N] ─·mask─ Σ_N / max(1, Σ mask) ─ −mean_B ─▶
/// ```
pub fn lm_loss(g: &mut GraphBuilder, logits: &Value, onehot: &Value, mask: &Value) -> Value {
    let mut s = g.scope("loss/lm");
    let log_p = s.log_softmax("log_probs", logits, -1);
    let picked = s.mul("pick", &log_p, onehot);
    let picked = s.reduce_sum("target_log_prob", &picked, &[-1], false);
    let picked = s.mul("supervised_only", &picked, mask);
    let total = s.reduce_sum("sum_positions", &picked, &[-1], false);
    let count = s.reduce_sum("count", mask, &[-1], false);
    let one = s.scalar(DType::F32, 1.0);
    let count = s.max("at_least_one", &count, &one);
    let mean = s.div("per_sample", &total, &count);
    let mean = s.reduce_mean("mean", &mean, &[], false);
    s.neg("negative_log_likelihood", &mean)
}

/// The named parts of the total, each a scalar value of the graph.
#[derive(Debug, Clone)]
pub struct LossParts {
    pub lm: Option<Value>,
    pub bev: Option<Value>,
    pub pos: Option<Value>,
    pub ori: Option<Value>,
}

/// L = λ_LM·L_LM + λ_BEV·L_BEV + λ_sit·(L_pos + λ_ori·L_ori), leaving out absent parts.
pub fn total(g: &mut GraphBuilder, parts: &LossParts, w: &LossWeights) -> Value {
    let mut s = g.scope("loss");
    let mut terms: Vec<Value> = Vec::new();
    let mut push = |s: &mut loc3r_export::graph::Scope<'_>, name: &str, v: &Option<Value>, weight: f64| {
        if let Some(v) = v {
            terms.push(if weight == 1.0 { v.clone() } else { s.mul_scalar(name, v, weight) });
        }
    };
    push(&mut s, "weighted_lm", &parts.lm, w.lm);
    push(&mut s, "weighted_bev", &parts.bev, w.bev);
    push(&mut s, "weighted_pos", &parts.pos, w.sit);
    push(&mut s, "weighted_ori", &parts.ori, w.sit * w.ori);
    match terms.len() {
        0 => s.scalar(DType::F32, 0.0),
        1 => terms.remove(0),
        _ => {
            let mut acc = terms[0].clone();
            for (k, t) in terms.iter().enumerate().skip(1) {
                acc = s.add(&format!("total_{k}"), &acc, t);
            }
            acc
        }
    }
}

/// A symbolic batch dim for loss inputs.
pub fn batch() -> Dim {
    Dim::sym("batch")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_maps_minus_pi_to_pi_and_keeps_the_interval() {
        assert_eq!(wrap_angle(-PI), PI);
        assert_eq!(wrap_angle(PI), PI);
        assert!((wrap_angle(3.0 * PI / 2.0) + PI / 2.0).abs() < 1e-12);
        assert!((wrap_angle(-3.0 * PI / 2.0) - PI / 2.0).abs() < 1e-12);
        for k in -20..20 {
            let x = wrap_angle(k as f64 * 0.7);
            assert!(x > -PI && x <= PI, "{x}");
        }
    }

    #[test]
    fn orientation_target_is_a_distribution_peaked_at_the_yaw() {
        let (q, neg_entropy) = orientation_target(PI / 2.0, 36, 10f64.to_radians());
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let argmax = q.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k);
        assert_eq!(argmax, Some(9));
        // One bin width σ: the peak holds about 0.40 of the mass.
        assert!((q[9] - 0.40).abs() < 0.01, "{}", q[9]);
        assert!(neg_entropy < 0.0);
        // Far tails underflow in linear space but stay finite in the log domain.
        let (q, h) = orientation_target(0.0, 360, 1f64.to_radians());
        assert!(q.iter().all(|x| x.is_finite()) && h.is_finite());
    }

    #[test]
    fn loss_weight_overrides() {
        let w = LossWeights::default().with_overrides("bev=0.5, ori=2").unwrap();
        assert_eq!(w, LossWeights { lm: 1.0, bev: 0.5, sit: 0.5, ori: 2.0 });
        assert!(LossWeights::default().with_overrides("foo=1").unwrap_err().contains("not a loss weight"));
        assert!(LossWeights::default().with_overrides("bev=-1").is_err());
        assert!(LossWeights::default().with_overrides("bev").is_err());
    }

    use std::collections::HashMap;

    use ndarray::{ArrayD, IxDyn};

    use crate::autodiff::tests::Rng;
    use crate::autodiff::{differentiate, Seed};
    use crate::check::finite_difference_failures;
    use crate::interp::{evaluate, Tensor};

    fn array(shape: &[usize], values: Vec<f64>) -> ArrayD<f64> {
        ArrayD::from_shape_vec(IxDyn(shape), values).expect("shape and length agree")
    }

    fn nll(b: f64, mu: f64, s: f64) -> f64 {
        let s = s.clamp(-10.0, 10.0);
        0.5 * ((b - mu).powi(2) * (-s).exp() + s)
    }

    /// Every part and the total against plain f64 loops, and the gradients of the
    /// predictions against finite differences (B = 2, T = 5, K = 8, N = 3, V = 6; one sample
    /// without a situation, one BEV sample without a valid token, one log-variance clamped).
    #[test]
    fn losses_match_direct_f64_loops_and_finite_differences() {
        let (b, t, k, n, v) = (2usize, 5usize, 8usize, 3usize, 6usize);
        let weights = LossWeights { lm: 0.7, bev: 0.3, sit: 0.9, ori: 1.3 };
        let mut rng = Rng::new(7);
        let mut draw = |len: usize, lo: f64, hi: f64| (0..len).map(|_| rng.uniform(lo, hi)).collect::<Vec<f64>>();

        let mut bev_pred = draw(b * t * 4, -1.5, 1.5);
        bev_pred[3] = 11.5; // log σy² of token 0 beyond the clamp: no gradient there
        let bev_target = draw(b * t * 2, -2.0, 2.0);
        let bev_mask = vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let pos_pred = draw(b * 4, -1.5, 1.5);
        let pos_target = draw(b * 2, -2.0, 2.0);
        let valid = vec![1.0, 0.0];
        let ori_logits = draw(b * k, -1.5, 1.5);
        let (mut q, mut q_h) = (Vec::new(), Vec::new());
        for yaw in [0.3, -2.9] {
            let (qs, h) = orientation_target(yaw, k, 15f64.to_radians());
            q.extend(qs);
            q_h.push(h);
        }
        let lm_logits = draw(b * n * v, -2.0, 2.0);
        let targets = [2usize, 5, 0, 1, 1, 4];
        let mut onehot = vec![0.0; b * n * v];
        for (i, &y) in targets.iter().enumerate() {
            onehot[i * v + y] = 1.0;
        }
        let lm_mask = vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0];

        let mut g = GraphBuilder::new("losses");
        let inp = |g: &mut GraphBuilder, name: &str, shape: &[usize]| g.input(name, DType::F32, shape.iter().map(|&d| Dim::Fixed(d)));
        let p_bev = inp(&mut g, "bev_pred", &[b, t, 4]);
        let i_bev_t = inp(&mut g, "bev_target", &[b, t, 2]);
        let i_bev_m = inp(&mut g, "bev_mask", &[b, t]);
        let p_pos = inp(&mut g, "pos_pred", &[b, 4]);
        let i_pos_t = inp(&mut g, "pos_target", &[b, 2]);
        let i_valid = inp(&mut g, "valid", &[b]);
        let p_ori = inp(&mut g, "ori_logits", &[b, k]);
        let i_q = inp(&mut g, "q", &[b, k]);
        let i_qh = inp(&mut g, "q_neg_entropy", &[b]);
        let p_lm = inp(&mut g, "lm_logits", &[b, n, v]);
        let i_onehot = inp(&mut g, "onehot", &[b, n, v]);
        let i_lm_m = inp(&mut g, "lm_mask", &[b, n]);
        let parts = LossParts {
            bev: Some(bev_loss(&mut g, &p_bev, &i_bev_t, &i_bev_m)),
            pos: Some(position_loss(&mut g, &p_pos, &i_pos_t, &i_valid)),
            ori: Some(orientation_loss(&mut g, &p_ori, &i_q, &i_qh, &i_valid)),
            lm: Some(lm_loss(&mut g, &p_lm, &i_onehot, &i_lm_m)),
        };
        let loss = total(&mut g, &parts, &weights);
        let params = vec![p_bev, p_pos, p_ori, p_lm];
        let grads: Vec<Value> = differentiate(&mut g, &loss, &params, &Seed::One).expect("differentiable").grads.into_iter().map(|(_, g)| g).collect();

        let feeds: HashMap<String, Tensor> = [
            ("bev_pred", array(&[b, t, 4], bev_pred.clone())),
            ("bev_target", array(&[b, t, 2], bev_target.clone())),
            ("bev_mask", array(&[b, t], bev_mask.clone())),
            ("pos_pred", array(&[b, 4], pos_pred.clone())),
            ("pos_target", array(&[b, 2], pos_target.clone())),
            ("valid", array(&[b], valid.clone())),
            ("ori_logits", array(&[b, k], ori_logits.clone())),
            ("q", array(&[b, k], q.clone())),
            ("q_neg_entropy", array(&[b], q_h.clone())),
            ("lm_logits", array(&[b, n, v], lm_logits.clone())),
            ("onehot", array(&[b, n, v], onehot)),
            ("lm_mask", array(&[b, n], lm_mask.clone())),
        ]
        .into_iter()
        .map(|(name, a)| (name.to_string(), Tensor::Float(a)))
        .collect();

        // The reference, written from the formulas with plain loops.
        let mut want_bev = 0.0;
        for bi in 0..b {
            let (mut sum, mut count) = (0.0, 0.0);
            for ti in 0..t {
                let m = bev_mask[bi * t + ti];
                let p = &bev_pred[(bi * t + ti) * 4..][..4];
                let y = &bev_target[(bi * t + ti) * 2..][..2];
                sum += m * (nll(y[0], p[0], p[2]) + nll(y[1], p[1], p[3]));
                count += m;
            }
            want_bev += sum / (2.0 * f64::max(1.0, count)) / b as f64;
        }
        let mut want_pos = 0.0;
        let mut want_ori = 0.0;
        for bi in 0..b {
            let p = &pos_pred[bi * 4..][..4];
            want_pos += valid[bi] * 0.5 * (nll(pos_target[bi * 2], p[0], p[2]) + nll(pos_target[bi * 2 + 1], p[1], p[3])) / b as f64;
            let z = &ori_logits[bi * k..][..k];
            let lse = z.iter().map(|x| x.exp()).sum::<f64>().ln();
            let kl: f64 = (0..k).map(|j| q[bi * k + j] * (q[bi * k + j].ln() - (z[j] - lse))).sum();
            want_ori += valid[bi] * kl / b as f64;
        }
        let mut want_lm = 0.0;
        for bi in 0..b {
            let (mut sum, mut count) = (0.0, 0.0);
            for ni in 0..n {
                let row = &lm_logits[(bi * n + ni) * v..][..v];
                let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
                sum += lm_mask[bi * n + ni] * (row[targets[bi * n + ni]] - lse);
                count += lm_mask[bi * n + ni];
            }
            want_lm -= sum / f64::max(1.0, count) / b as f64;
        }
        let want_total = weights.lm * want_lm + weights.bev * want_bev + weights.sit * (want_pos + weights.ori * want_ori);

        let names =
            [parts.lm.as_ref(), parts.bev.as_ref(), parts.pos.as_ref(), parts.ori.as_ref(), Some(&loss)].map(|v| v.expect("all parts").name().to_string());
        let out = evaluate(&g, &feeds, &names.iter().map(String::as_str).collect::<Vec<_>>()).expect("evaluates");
        // The parts agree to rounding; the total's weights are f32 constants in the graph.
        for ((name, want), tol) in names.iter().zip([want_lm, want_bev, want_pos, want_ori, want_total]).zip([1e-12, 1e-12, 1e-12, 1e-12, 1e-7]) {
            let got = out[name].float().expect("float").iter().next().copied().unwrap_or(f64::NAN);
            assert!((got - want).abs() <= tol * want.abs().max(1.0), "{name}: graph {got}, loops {want}");
        }
        let failures = finite_difference_failures(&g, &feeds, &loss, &params, &grads, "losses", usize::MAX);
        assert!(failures.is_empty(), "{}", failures.join("\n"));

        // The clamped log-variance gets no gradient; the masked tokens none either.
        let bev_grad = evaluate(&g, &feeds, &[grads[0].name()]).expect("evaluates")[grads[0].name()].float().expect("float").clone();
        assert_eq!(bev_grad[[0, 0, 3]], 0.0);
        assert!(bev_grad.slice(ndarray::s![1, .., ..]).iter().all(|&x| x == 0.0));
    }
}
