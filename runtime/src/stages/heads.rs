//! The Loc3R heads: `heads.onnx` run on the hidden states at `<Pos>`/`<Ori>` and of the
//! video's grid tokens ([`run`]), and the decoding of its outputs into a position with σ, a
//! yaw with its bin probabilities and one BEV position per grid token (pure math below).
//!
//! Conventions (docs/heads.md): `pos_head` and `bev_head` output
//! `(x, y, log σx², log σy²)` in metres in the BEV frame; `ori_head` outputs `K` logits over
//! yaw bins centred at `θ_k = 2πk/K`, decoded by the circular soft-argmax of the paper
//! (eq. 9-10): `p = softmax(logits)`, `c = Σ p_k cos θ_k`, `s = Σ p_k sin θ_k`,
//! `yaw = atan2(s, c)`. The training target is the wrapped Gaussian of eq. 6-7
//! ([`wrapped_gaussian_target`]).
//!
//! All arithmetic is done in f64 and stored as f32 only where the result type says so.

use std::f64::consts::PI;

use loc3r_bundle::io::heads::{BEV, ORIENTATION_LOGITS, ORI_HIDDEN, POSITION, POS_HIDDEN, VISION_HIDDEN};
use loc3r_bundle::Graph;
use ndarray::{Array1, ArrayView2, Axis};
use serde::Serialize;

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::values;

/// Position + orientation from the heads.
#[derive(Debug, Clone, Serialize)]
pub struct Localization {
    pub position: PositionJson,
    pub yaw_deg: f64,
    pub orientation_probs: Vec<f32>,
    /// False when the orientation distribution has no dominant direction.
    pub orientation_confident: bool,
    /// Per pooled grid token of every frame: BEV position with σ.
    #[serde(skip)]
    pub bev: Vec<Position>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PositionJson {
    pub x: f32,
    pub y: f32,
    pub sigma_x: f32,
    pub sigma_y: f32,
}

/// Runs `heads.onnx` on the hidden states at `<Pos>` (`pos`, `[H]`) and `<Ori>` (`ori`, `[H]`)
/// and of the pooled grid tokens (`grid_hidden`, `[T, H]`), and decodes its outputs.
pub fn run(bundle: &Bundle, pos: Array1<f32>, ori: Array1<f32>, grid_hidden: ArrayView2<'_, f32>) -> Result<Localization> {
    let h = pos.len();
    bundle.check_shape(Graph::Heads, VISION_HIDDEN, &[1, grid_hidden.nrows(), grid_hidden.ncols()])?;
    let mut heads = bundle.lock(Graph::Heads)?;
    let inputs = ort::inputs![
        POS_HIDDEN => values::from_f32(pos.into_shape_with_order((1, h)).expect("[1,H]").into_dyn(), "f32", POS_HIDDEN)?,
        ORI_HIDDEN => values::from_f32(ori.into_shape_with_order((1, h)).expect("[1,H]").into_dyn(), "f32", ORI_HIDDEN)?,
        VISION_HIDDEN => values::f32_view(grid_hidden.insert_axis(Axis(0)), VISION_HIDDEN)?,
    ];
    let out = heads.run(inputs).map_err(|e| Error::ort("running heads", e))?;
    let p = values::to_f32(&out[POSITION], POSITION)?;
    let o = values::to_f32(&out[ORIENTATION_LOGITS], ORIENTATION_LOGITS)?;
    let bev = values::to_f32(&out[BEV], BEV)?;
    let p: Vec<f32> = p.iter().copied().collect();
    let [x, y, log_var_x, log_var_y] = p[..] else {
        return Err(Error::Bundle(format!("heads.onnx position has {} values, expected 4", p.len())));
    };
    let position = decode_position([x, y, log_var_x, log_var_y]);
    let logits: Vec<f32> = o.iter().copied().collect();
    let orientation = decode_orientation(&logits).map_err(|e| Error::Bundle(format!("heads.onnx orientation_logits: {e}")))?;
    let bev = bev.index_axis(Axis(0), 0).into_dimensionality::<ndarray::Ix2>().map_err(|e| Error::Bundle(format!("heads.onnx bev: {e}")))?;
    let bev = decode_bev(bev).map_err(|e| Error::Bundle(format!("heads.onnx bev: {e}")))?;
    Ok(Localization {
        position: PositionJson { x: position.x, y: position.y, sigma_x: position.sigma_x, sigma_y: position.sigma_y },
        yaw_deg: orientation.yaw_deg,
        orientation_probs: orientation.probs,
        orientation_confident: orientation.confident,
        bev,
    })
}

/// Errors of the heads stage: only shape/size problems of the head outputs.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HeadsError {
    #[error("orientation logits are empty (K = 0); the bundle's `K` must be at least 1")]
    NoBins,
    #[error("orientation logits contain a non-finite value at bin {bin} ({value})")]
    NonFiniteLogit { bin: usize, value: f32 },
    #[error("bev output must have shape [T, 4], found {found:?}")]
    BevShape { found: Vec<usize> },
    #[error("wrapped Gaussian target needs sigma > 0 and K >= 1, got sigma = {sigma}, K = {k}")]
    BadTarget { sigma: f64, k: usize },
}

/// A decoded position with per-axis standard deviation (metres, BEV frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub x: f32,
    pub y: f32,
    pub sigma_x: f32,
    pub sigma_y: f32,
}

/// A decoded yaw.
#[derive(Debug, Clone, PartialEq)]
pub struct Orientation {
    /// Yaw in radians, in (-π, π].
    pub yaw_rad: f64,
    /// Yaw in degrees, in (-180, 180].
    pub yaw_deg: f64,
    /// softmax(logits), one per bin.
    pub probs: Vec<f32>,
    /// Mean resultant length `R = |Σ p_k e^{iθ_k}|` in [0, 1]: 1 for a single hot bin,
    /// 0 for a uniform (or otherwise balanced) distribution.
    pub resultant_length: f64,
    /// `false` when `R < MIN_RESULTANT`: the direction is undefined and `yaw_*` is 0.
    pub confident: bool,
}

/// Below this mean resultant length the circular mean is numerically meaningless
/// (e.g. uniform probabilities give `R ≈ 1e-17` from rounding alone). Such outputs decode
/// to yaw 0 with `confident = false`, so callers never see NaN or a random direction.
pub const MIN_RESULTANT: f64 = 1e-6;

/// The range the log-variance is clamped to before σ is reported: the same clamp training
/// applies before its Gaussian NLL (docs/heads.md §3), so σ stays within 6.7 mm … 148 m and a
/// head output the model was never trained to produce cannot overflow to ∞.
pub const LOG_VARIANCE_RANGE: (f64, f64) = (-10.0, 10.0);

/// `[x, y, log σx², log σy²]` -> position with σ = exp(½·clamp(log σ²)).
pub fn decode_position(out: [f32; 4]) -> Position {
    let [x, y, log_var_x, log_var_y] = out;
    let sigma = |s: f32| (0.5 * f64::from(s).clamp(LOG_VARIANCE_RANGE.0, LOG_VARIANCE_RANGE.1)).exp() as f32;
    Position { x, y, sigma_x: sigma(log_var_x), sigma_y: sigma(log_var_y) }
}

/// BEV head output `[T, 4]` (one row per vision token) -> one [`Position`] per token.
pub fn decode_bev(bev: ArrayView2<'_, f32>) -> Result<Vec<Position>, HeadsError> {
    if bev.ncols() != 4 {
        return Err(HeadsError::BevShape { found: bev.shape().to_vec() });
    }
    Ok(bev.rows().into_iter().map(|r| decode_position([r[0], r[1], r[2], r[3]])).collect())
}

/// Centre of bin `k` of `K`: `θ_k = 2πk/K` (radians).
pub fn bin_centre(k: usize, num_bins: usize) -> f64 {
    2.0 * PI * k as f64 / num_bins as f64
}

/// Numerically stable softmax in f64 (subtracts the max logit first).
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Maps any angle in radians to (-π, π].
fn wrap_pi(a: f64) -> f64 {
    let mut w = a.rem_euclid(2.0 * PI); // [0, 2π)
    if w > PI {
        w -= 2.0 * PI;
    }
    w
}

/// Circular soft-argmax over `K = logits.len()` yaw bins (paper eq. 9-10).
pub fn decode_orientation(logits: &[f32]) -> Result<Orientation, HeadsError> {
    if logits.is_empty() {
        return Err(HeadsError::NoBins);
    }
    if let Some((bin, &value)) = logits.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(HeadsError::NonFiniteLogit { bin, value });
    }
    let k = logits.len();
    // 1. probabilities
    let probs = softmax(logits);
    // 2. expectation on the unit circle (eq. 9)
    let (mut c, mut s) = (0.0f64, 0.0f64);
    for (i, p) in probs.iter().enumerate() {
        let theta = bin_centre(i, k);
        c += p * theta.cos();
        s += p * theta.sin();
    }
    // 3. angle (eq. 10), with the degenerate zero-resultant case made explicit
    let resultant_length = c.hypot(s);
    let confident = resultant_length >= MIN_RESULTANT;
    let yaw_rad = if confident { wrap_pi(s.atan2(c)) } else { 0.0 };
    let mut yaw_deg = yaw_rad.to_degrees();
    if yaw_deg <= -180.0 {
        yaw_deg += 360.0;
    }
    Ok(Orientation { yaw_rad, yaw_deg, probs: probs.into_iter().map(|p| p as f32).collect(), resultant_length, confident })
}

/// Training target of the orientation head (paper eq. 6-7): a wrapped Gaussian around
/// `yaw` (radians) over the `K` bin centres, `w_k = exp(-wrap(θ_k − yaw)² / 2σ²)`,
/// normalised to sum to 1; `wrap` maps to (-π, π] and `sigma` is in radians.
pub fn wrapped_gaussian_target(yaw: f64, num_bins: usize, sigma: f64) -> Result<Vec<f64>, HeadsError> {
    if num_bins == 0 || sigma.is_nan() || sigma <= 0.0 || sigma.is_infinite() || !yaw.is_finite() {
        return Err(HeadsError::BadTarget { sigma, k: num_bins });
    }
    let w: Vec<f64> = (0..num_bins)
        .map(|k| {
            let d = wrap_pi(bin_centre(k, num_bins) - yaw);
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let sum: f64 = w.iter().sum();
    if sum.is_nan() || sum <= 0.0 {
        // Only when every bin is > ~38σ away, impossible with d <= π unless σ is tiny:
        // fall back to a one-hot on the nearest bin rather than dividing by zero.
        let nearest = (0..num_bins)
            .min_by(|&a, &b| {
                let da = wrap_pi(bin_centre(a, num_bins) - yaw).abs();
                let db = wrap_pi(bin_centre(b, num_bins) - yaw).abs();
                da.total_cmp(&db)
            })
            .unwrap_or(0);
        return Ok((0..num_bins).map(|k| if k == nearest { 1.0 } else { 0.0 }).collect());
    }
    Ok(w.into_iter().map(|v| v / sum).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sigma_uses_the_training_clamp() {
        let p = super::decode_position([1.0, -2.0, 2.0, -30.0]);
        assert_eq!((p.x, p.y), (1.0, -2.0));
        assert!((p.sigma_x - 1f32.exp()).abs() < 1e-6);
        assert!((p.sigma_y - (-5f32).exp()).abs() < 1e-9, "log σ² = −30 reports σ at the clamp −10");
        let far = super::decode_position([0.0, 0.0, 1e30, f32::INFINITY]);
        assert!(far.sigma_x.is_finite() && (far.sigma_y - 5f32.exp()).abs() < 1e-3);
    }

    use super::*;
    use ndarray::array;

    /// Circular distance in degrees.
    fn circ_deg(a: f64, b: f64) -> f64 {
        let d = (a - b).rem_euclid(360.0);
        d.min(360.0 - d)
    }

    /// Logits with the given bins hot (equal logits) and the others at -1000 (p = 0 exactly).
    fn hot(k: usize, bins: &[usize]) -> Vec<f32> {
        (0..k).map(|i| if bins.contains(&i) { 0.0 } else { -1000.0 }).collect()
    }

    #[test]
    fn position_sigma_is_exp_half_log_var() {
        let p = decode_position([1.5, -2.0, 0.0, 2.0 * 0.5f32.ln()]);
        assert_eq!((p.x, p.y), (1.5, -2.0));
        assert_eq!(p.sigma_x, 1.0);
        assert!((p.sigma_y - 0.5).abs() < 1e-7);
        // log σ² = 2 ln 3 -> σ = 3
        let p = decode_position([0.0, 0.0, 2.0 * 3f32.ln(), -2.0 * 10f32.ln()]);
        assert!((p.sigma_x - 3.0).abs() < 1e-5);
        assert!((p.sigma_y - 0.1).abs() < 1e-7);
    }

    #[test]
    fn bev_decodes_each_row_and_checks_shape() {
        let bev = array![[1.0f32, 2.0, 0.0, 0.0], [3.0, 4.0, 2.0 * 2f32.ln(), 0.0]];
        let out = decode_bev(bev.view()).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], decode_position([1.0, 2.0, 0.0, 0.0]));
        assert!((out[1].sigma_x - 2.0).abs() < 1e-6);
        let bad = ndarray::Array2::<f32>::zeros((3, 5));
        assert_eq!(decode_bev(bad.view()), Err(HeadsError::BevShape { found: vec![3, 5] }));
    }

    #[test]
    fn single_hot_bin_gives_its_centre() {
        for k in [8usize, 36] {
            for b in 0..k {
                let o = decode_orientation(&hot(k, &[b])).unwrap();
                let want = 360.0 * b as f64 / k as f64;
                assert!(circ_deg(o.yaw_deg, want) < 1e-9, "K={k} b={b}: {} vs {want}", o.yaw_deg);
                assert!(o.yaw_deg > -180.0 && o.yaw_deg <= 180.0);
                assert!(o.confident);
                assert!((o.resultant_length - 1.0).abs() < 1e-12);
                assert_eq!(o.probs[b], 1.0);
            }
        }
        // K = 36, bin 9 = 90°, bin 27 = 270° = -90°, bin 18 = 180°
        assert!((decode_orientation(&hot(36, &[9])).unwrap().yaw_deg - 90.0).abs() < 1e-9);
        assert!((decode_orientation(&hot(36, &[27])).unwrap().yaw_deg + 90.0).abs() < 1e-9);
        assert!(circ_deg(decode_orientation(&hot(36, &[18])).unwrap().yaw_deg, 180.0) < 1e-9);
        assert_eq!(decode_orientation(&hot(36, &[0])).unwrap().yaw_deg, 0.0);
    }

    #[test]
    fn two_equal_adjacent_bins_give_the_midpoint() {
        // K = 36: bins 1 (10°) and 2 (20°) -> 15°
        let o = decode_orientation(&hot(36, &[1, 2])).unwrap();
        assert!((o.yaw_deg - 15.0).abs() < 1e-9, "{}", o.yaw_deg);
        assert!((o.probs[1] - 0.5).abs() < 1e-7 && (o.probs[2] - 0.5).abs() < 1e-7);
        // R = cos(5°) for two unit vectors 10° apart
        assert!((o.resultant_length - 5f64.to_radians().cos()).abs() < 1e-12);
        // K = 8: bins 2 (90°) and 3 (135°) -> 112.5°
        let o = decode_orientation(&hot(8, &[2, 3])).unwrap();
        assert!((o.yaw_deg - 112.5).abs() < 1e-9, "{}", o.yaw_deg);
        // K = 8: bins 7 (315°) and 0 (0°) -> -22.5°
        let o = decode_orientation(&hot(8, &[7, 0])).unwrap();
        assert!((o.yaw_deg + 22.5).abs() < 1e-9, "{}", o.yaw_deg);
    }

    #[test]
    fn wraps_around_plus_minus_180() {
        // K = 36: bin 17 = 170°, bin 19 = 190° = -170° -> 180°
        let o = decode_orientation(&hot(36, &[17, 19])).unwrap();
        assert!(circ_deg(o.yaw_deg, 180.0) < 1e-9, "{}", o.yaw_deg);
        assert!(o.yaw_deg > -180.0 && o.yaw_deg <= 180.0);
        // K = 8: bins 3 (135°) and 5 (225° = -135°) -> 180°
        let o = decode_orientation(&hot(8, &[3, 5])).unwrap();
        assert!(circ_deg(o.yaw_deg, 180.0) < 1e-9, "{}", o.yaw_deg);
        // the linear mean of 170° and -170° would be 0°: make sure we are far from it
        assert!(o.yaw_deg.abs() > 179.0);
    }

    #[test]
    fn uniform_is_not_confident_and_yaw_zero() {
        for k in [8usize, 36] {
            let o = decode_orientation(&vec![0.25f32; k]).unwrap();
            assert!(!o.confident);
            assert_eq!(o.yaw_rad, 0.0);
            assert_eq!(o.yaw_deg, 0.0);
            assert!(o.resultant_length < 1e-12);
            assert!(o.probs.iter().all(|&p| (p - 1.0 / k as f32).abs() < 1e-7));
        }
        // two opposite bins also cancel
        let o = decode_orientation(&hot(8, &[0, 4])).unwrap();
        assert!(!o.confident && o.yaw_deg == 0.0);
    }

    #[test]
    fn softmax_is_stable_for_large_logits() {
        let mut l = vec![1e30f32; 36];
        l[5] = 1e30 * 1.000_001;
        let o = decode_orientation(&l).unwrap();
        assert!(o.probs.iter().all(|p| p.is_finite()));
        assert!((o.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn bad_logits_are_errors() {
        assert_eq!(decode_orientation(&[]), Err(HeadsError::NoBins));
        assert!(matches!(decode_orientation(&[0.0, f32::NAN]), Err(HeadsError::NonFiniteLogit { bin: 1, .. })));
    }

    #[test]
    fn wrapped_gaussian_target_is_normalised_wrapped_and_decodes_back() {
        let k = 36;
        let sigma = 10f64.to_radians();
        // at a bin centre near the wrap point: 350° (bin 35)
        let t = wrapped_gaussian_target(350f64.to_radians(), k, sigma).unwrap();
        assert!((t.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let argmax = (0..k).max_by(|&a, &b| t[a].total_cmp(&t[b])).unwrap();
        assert_eq!(argmax, 35);
        // symmetric across the wrap: bins 34 and 0 are both 10° away
        assert!((t[34] - t[0]).abs() < 1e-15);
        // exp(-1/2) ratio one σ away
        assert!((t[0] / t[35] - (-0.5f64).exp()).abs() < 1e-12);
        // decoding log(target) gives the yaw back (symmetric target -> exact circular mean)
        let logits: Vec<f32> = t.iter().map(|p| p.ln() as f32).collect();
        let o = decode_orientation(&logits).unwrap();
        assert!(circ_deg(o.yaw_deg, -10.0) < 1e-3, "{}", o.yaw_deg);
        // between two bins (185° is the midpoint of bins 18 and 19 for K = 36)
        let t = wrapped_gaussian_target(185f64.to_radians(), 36, sigma).unwrap();
        let logits: Vec<f32> = t.iter().map(|p| p.ln() as f32).collect();
        let o = decode_orientation(&logits).unwrap();
        assert!(circ_deg(o.yaw_deg, 185.0) < 1e-3, "{}", o.yaw_deg);
        assert!(wrapped_gaussian_target(0.0, 8, 0.0).is_err());
        assert!(wrapped_gaussian_target(0.0, 0, 1.0).is_err());
    }
}
