//! LoRA on the decoder's attention projections (docs/training.md §3.1): every
//! `model.layers.<i>.self_attn.{q,k,v,o}_proj` Linear gets a trainable low-rank update while
//! its weight stays frozen, `y = x·Wᵀ + b + (α/r)·(x·Aᵀ)·Bᵀ`, A `[r, in]`, B `[out, r]`.
//! The factors are named as PEFT names them (`<module>.lora_A.weight`, `<module>.lora_B.weight`);
//! A starts as PyTorch's default Linear init (kaiming-uniform a = √5: U(±1/√in)), seeded by the
//! run's seed and the tensor name, B at zero, so an adapted graph starts exactly where the plain
//! one is. When training ends the update is merged into the weight (`W + (α/r)·B·A`) and the
//! checkpoint holds plain Linear weights the exporter reads unchanged.

use std::io;
use std::sync::Arc;

use loc3r_export::graph::{GraphBuilder, Value};
use loc3r_export::{DType, TensorData};

use crate::graph::TrainGraphError;

/// The projections that get adapters.
pub const TARGETS: [&str; 4] = ["q_proj", "k_proj", "v_proj", "o_proj"];
/// Default rank r.
pub const DEFAULT_RANK: usize = 16;
/// Default α (the update is scaled by α/r).
pub const DEFAULT_ALPHA: f64 = 32.0;

/// Rank, scale and the seed of A's initial values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraOptions {
    pub rank: usize,
    pub alpha: f64,
    pub seed: u64,
}

impl Default for LoraOptions {
    fn default() -> Self {
        LoraOptions { rank: DEFAULT_RANK, alpha: DEFAULT_ALPHA, seed: 0 }
    }
}

impl LoraOptions {
    /// Refuses a rank of 0 and an α that is not a positive finite number.
    pub fn validate(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("--lora-rank must be at least 1 (16 is the default)".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("--lora-alpha must be a positive number (got {}; 32 is the default)", self.alpha));
        }
        Ok(())
    }

    /// α/r, the factor on the low-rank update.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// Whether `name` is a LoRA factor (`….lora_A.weight` or `….lora_B.weight`).
pub fn is_factor(name: &str) -> bool {
    name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight")
}

/// The module path of an adaptable weight: `model.layers.<i>.self_attn.<target>.weight` → its
/// path without `.weight`.
fn target_module(name: &str) -> Option<&str> {
    let module = name.strip_suffix(".weight")?;
    let rest = module.strip_prefix("model.layers.")?;
    let (layer, proj) = rest.split_once(".self_attn.")?;
    (!layer.is_empty() && layer.bytes().all(|b| b.is_ascii_digit()) && TARGETS.contains(&proj)).then_some(module)
}

/// One adapted Linear: the frozen weight and its two factors.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// The frozen weight's checkpoint name (`….q_proj.weight`).
    pub weight: String,
    /// `….lora_A.weight`, `[rank, in]` in the checkpoint's layout.
    pub a: String,
    /// `….lora_B.weight`, `[out, rank]` in the checkpoint's layout.
    pub b: String,
    pub in_dim: usize,
    pub out_dim: usize,
    pub rank: usize,
    /// α/r.
    pub scale: f64,
    /// The frozen weight as the graph holds it (`[in, out]`, transposed from the checkpoint).
    pub base: Arc<dyn TensorData>,
}

impl Adapter {
    /// `W + (α/r)·B·A` in the checkpoint's layout `[out, in]`: products and sums in f64, rounded
    /// to f32 once. `a` and `b` are row-major in the checkpoint's layout.
    pub fn merged(&self, a: &[f32], b: &[f32]) -> io::Result<Vec<f32>> {
        let (n_in, n_out, r) = (self.in_dim, self.out_dim, self.rank);
        if a.len() != r * n_in || b.len() != n_out * r {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`{}`: LoRA factors of {} and {} values, expected {} and {}", self.weight, a.len(), b.len(), r * n_in, n_out * r),
            ));
        }
        let mut bytes = Vec::with_capacity(n_in * n_out * 4);
        self.base.write_as(DType::F32, &mut bytes)?;
        let transposed: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut out = vec![0f32; n_out * n_in];
        let mut row = vec![0f64; n_in];
        for o in 0..n_out {
            row.iter_mut().for_each(|x| *x = 0.0);
            for k in 0..r {
                let bk = f64::from(b[o * r + k]);
                for (acc, &ak) in row.iter_mut().zip(&a[k * n_in..(k + 1) * n_in]) {
                    *acc += bk * f64::from(ak);
                }
            }
            for (i, delta) in row.iter().enumerate() {
                out[o * n_in + i] = (f64::from(transposed[i * n_out + o]) + self.scale * delta) as f32;
            }
        }
        Ok(out)
    }
}

/// A LoRA factor held as the exporter holds Linear weights: transposed (`[in, out]` of the
/// factor's own Linear), so the graph needs no Transpose and `grad.<name>` comes back in the
/// checkpoint's layout (crate::graph::finish).
#[derive(Debug)]
struct Factor {
    /// The graph's layout.
    shape: [usize; 2],
    /// Row-major in the graph's layout.
    values: Vec<f32>,
}

impl Factor {
    /// From values in the checkpoint's layout `[rows, cols]`.
    fn from_checkpoint_layout(rows: usize, cols: usize, values: &[f32]) -> Factor {
        let mut t = vec![0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = values[r * cols + c];
            }
        }
        Factor { shape: [cols, rows], values: t }
    }
}

impl TensorData for Factor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn transposed_from_checkpoint(&self) -> bool {
        true
    }

    fn write_as(&self, dtype: DType, out: &mut dyn io::Write) -> io::Result<()> {
        loc3r_export::tensor::write_f32s_as(&self.values, dtype, out)
    }
}

/// Adds a LoRA branch to every attention projection of the decoder in `g` (a composed forward
/// graph whose projection weights are still initializers). The factors are new initializers,
/// to be made trainable by name ([`is_factor`]); the projection weights stay frozen.
///
/// ```text
/// x ─MatMul(Wᵀ [in,out])─▶ y ──────────────────────────────────────────▶ Add ─▶ (+ b) ─▶ …
///  └─MatMul(Aᵀ [in,r])─▶ u ─Mul(α/r)─▶ ─MatMul(Bᵀ [r,out])─▶ d ─────────┘
/// ```
/// The branch joins the MatMul's output, before the bias Add of q/k/v (o_proj has no bias), so
/// `y' = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ + b`. With B = 0 the Add adds exact zeros: the adapted graph's
/// values equal the plain graph's bit for bit. Scaling u (r wide) rather than d is cheaper.
pub fn adapt(g: &mut GraphBuilder, opts: &LoraOptions) -> Result<Vec<Adapter>, TrainGraphError> {
    opts.validate().map_err(|m| TrainGraphError::Export(loc3r_export::Error::Invalid(m)))?;
    let targets: Vec<(String, Arc<dyn TensorData>, DType)> = g
        .initializers()
        .iter()
        .filter(|i| !i.inline && i.data.transposed_from_checkpoint() && target_module(i.value.name()).is_some())
        .map(|i| (i.value.name().to_string(), i.data.clone(), i.value.dtype()))
        .collect();
    if targets.is_empty() {
        return Err(TrainGraphError::Export(loc3r_export::Error::Invalid(format!(
            "the {} graph has no attention projections (model.layers.<i>.self_attn.{{q,k,v,o}}_proj) for LoRA",
            g.name()
        ))));
    }
    let internal = |m: String| TrainGraphError::Export(loc3r_export::Error::Internal(m));
    let mut adapters = Vec::with_capacity(targets.len());
    for (weight, base, dtype) in targets {
        let module = target_module(&weight).expect("filtered above").to_string();
        let &[n_in, n_out] = base.shape() else {
            return Err(internal(format!("`{weight}` has shape {:?}, not [in, out]", base.shape())));
        };
        let users: Vec<_> = g.nodes().iter().filter(|n| n.inputs.contains(&weight)).collect();
        let [matmul] = users[..] else {
            return Err(internal(format!("`{weight}` is read by {} nodes; LoRA expects the one MatMul of its Linear", users.len())));
        };
        if matmul.op_type != "MatMul" || matmul.inputs.get(1) != Some(&weight) {
            return Err(internal(format!("`{weight}` is read by {} `{}`, not as the weight of a MatMul", matmul.op_type, matmul.name)));
        }
        let (x_name, y_name) = (matmul.inputs[0].clone(), matmul.outputs[0].clone());
        let missing = |n: &str| internal(format!("the value `{n}` around `{weight}` is not in the graph"));
        let x = g.value(&x_name).ok_or_else(|| missing(&x_name))?;
        let y = g.value(&y_name).ok_or_else(|| missing(&y_name))?;

        let r = opts.rank;
        let (a_name, b_name) = (format!("{module}.lora_A.weight"), format!("{module}.lora_B.weight"));
        let a_init = crate::init::linear_init(&a_name, &[r, n_in], &[], opts.seed);
        let a = g.initializer(&a_name, Arc::new(Factor::from_checkpoint_layout(r, n_in, &a_init)), dtype);
        let b = g.initializer(&b_name, Arc::new(Factor { shape: [r, n_out], values: vec![0.0; r * n_out] }), dtype);
        let scale = opts.scale();
        g.insert_on_edge(&y, |g| lora_branch(g, &module, &x, &y, &a, &b, scale));
        adapters.push(Adapter { weight, a: a_name, b: b_name, in_dim: n_in, out_dim: n_out, rank: r, scale, base });
    }
    Ok(adapters)
}

/// The branch of one adapted Linear, nodes under `<module>/lora/`:
///
/// ```text
/// x ─down: MatMul(Aᵀ)─▶ ─scale: Mul(α/r)─▶ ─up: MatMul(Bᵀ)─▶ d ─┐
/// y ──────────────────────────────────────────────────────── add ─▶ y + d
/// ```
fn lora_branch(g: &mut GraphBuilder, module: &str, x: &Value, y: &Value, a_t: &Value, b_t: &Value, scale: f64) -> Value {
    let mut s = g.scope(format!("{module}/lora"));
    let u = s.matmul("down", x, a_t);
    let u = s.mul_scalar("scale", &u, scale);
    let d = s.matmul("up", &u, b_t);
    s.add("add", y, &d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_attention_projections_of_layers_are_targets() {
        assert_eq!(target_module("model.layers.3.self_attn.q_proj.weight"), Some("model.layers.3.self_attn.q_proj"));
        assert_eq!(target_module("model.layers.12.self_attn.o_proj.weight"), Some("model.layers.12.self_attn.o_proj"));
        for other in ["model.layers.3.self_attn.q_proj.bias", "model.layers.3.mlp.up_proj.weight", "model.layers.x.self_attn.k_proj.weight", "lm_head.weight"] {
            assert_eq!(target_module(other), None, "{other}");
        }
        assert!(is_factor("model.layers.0.self_attn.v_proj.lora_B.weight") && !is_factor("model.layers.0.self_attn.v_proj.weight"));
    }

    #[test]
    fn bad_rank_and_alpha_are_refused() {
        assert!(LoraOptions::default().validate().is_ok());
        assert!(LoraOptions { rank: 0, ..Default::default() }.validate().unwrap_err().contains("--lora-rank"));
        for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(LoraOptions { alpha, ..Default::default() }.validate().unwrap_err().contains("--lora-alpha"), "{alpha}");
        }
    }

    /// The merge against a direct f64 evaluation of W + (α/r)·B·A on a 3×2 weight, rank 2.
    #[test]
    fn merge_adds_the_scaled_product_in_the_checkpoint_layout() {
        // W [out=3, in=2] held transposed [2, 3].
        let w = [[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let base = Factor::from_checkpoint_layout(3, 2, &w.concat());
        let adapter = Adapter { weight: "w".into(), a: "a".into(), b: "b".into(), in_dim: 2, out_dim: 3, rank: 2, scale: 0.5, base: Arc::new(base) };
        let a = [0.1f32, -0.2, 0.3, 0.4]; // [2, 2]
        let b = [1.0f32, 2.0, -1.0, 0.5, 0.0, 3.0]; // [3, 2]
        let merged = adapter.merged(&a, &b).expect("merges");
        for o in 0..3 {
            for i in 0..2 {
                let delta: f64 = (0..2).map(|k| f64::from(b[o * 2 + k]) * f64::from(a[k * 2 + i])).sum();
                assert_eq!(merged[o * 2 + i], (f64::from(w[o][i]) + 0.5 * delta) as f32, "({o}, {i})");
            }
        }
        assert!(adapter.merged(&a[..3], &b).is_err());
    }
}
