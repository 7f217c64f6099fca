//! `projector.onnx`: LLaVA's `mlp2x_gelu` projector, spatial pooling and grid newlines
//! (docs/prompt.md §4), plus Loc3R's camera projector.
//!
//! ```text
//! image_features [F,g²,Cv] ─fc1─GELU(erf)─fc2─▶ [F,g²,H] ─MatMul(P [T,g²])─▶ [F,T,H] ─+ e⊗newline─▶ vision_embeds [F,T,H]
//! camera_tokens  [F,Dc]    ─fc1─GELU(erf)─fc2─▶ camera_embeds [F,H]
//! ```
//! `P` folds pooling and the newline layout into one constant: row `t` of the output is
//! either a pooled grid token (bilinear 27→14, half-pixel, or 2×2 average 27→13) or a
//! newline slot (a zero row of `P`, with `e[t] = 1` adding `image_newline`). So the graph
//! is two MatMuls and an Add, exact and TensorRT-friendly, with T = G·(G+1) (210).

use std::sync::Arc;

use crate::checkpoint::Checkpoint;
use crate::config::{pooled_side, PoolMode};
use crate::error::Result;
use crate::graph::{Dim, GraphBuilder};
use crate::models::context::ModelGraph;
use crate::models::layers::{cast_to, mlp_erf, weight};
use crate::models::ExportOptions;
use crate::quant::ActivationQuant;
use crate::tensor::{DType, F32Tensor};

pub use loc3r_bundle::io::projector::{CAMERA_EMBEDS, CAMERA_TOKENS, IMAGE_FEATURES, VISION_EMBEDS};

pub fn graph(ckpt: &Checkpoint, opts: &ExportOptions) -> Result<GraphBuilder> {
    graph_with(ckpt, opts, None)
}

/// [`graph`] with INT8 activations from a calibration cache (`None`: float activations); the
/// pooling MatMul (an exact constant layout times the features) stays float.
pub fn graph_with(ckpt: &Checkpoint, opts: &ExportOptions, activations: Option<&ActivationQuant>) -> Result<GraphBuilder> {
    let cfg = ckpt.config();
    let (h, cv, dc) = (cfg.hidden_size, cfg.vision_config.hidden_size, cfg.loc3r.camera_token_dim);
    let grid = cfg.vision_grid();
    let w = ckpt.weights("projector")?;
    let mut g = ModelGraph::new("projector", opts.precision).with_activation_quant(activations);
    let dt = g.compute();
    g.set_doc(format!("LLaVA mlp2x_gelu projector, {:?} pooling with grid newlines, Loc3R camera projector", opts.pooling));

    // Vision path.
    let feats = g.input(IMAGE_FEATURES, DType::F32, [Dim::sym("frames"), (grid * grid).into(), cv.into()]);
    let x = cast_to(&mut g, "model.mm_projector", "to_io", &feats, dt);
    let z = mlp_erf(&mut g, &w.pp("mm_projector"), ("0", "2"), &x, cv, h, h)?;
    let (layout, newline_rows, tokens) = pool_and_newline_layout(grid, opts.pooling, cfg.mm_spatial_pool_stride);
    let layout = g.initializer("const/pool_newline_layout", Arc::new(layout), dt);
    let rows = g.initializer("const/newline_rows", Arc::new(newline_rows), dt);
    let newline = weight(&mut g, &w, "image_newline", &[h], dt)?;
    let mut s = g.scope("model.image_newline");
    let pooled = s.matmul("pool/MatMul", &layout, &z);
    let newlines = s.mul("place_newlines", &rows, &newline);
    let embeds = s.add("add_newlines", &pooled, &newlines);
    drop(s);
    let embeds = cast_to(&mut g, "model.image_newline", "to_f32", &embeds, DType::F32);
    g.output_with_shape(VISION_EMBEDS, &embeds, [Dim::sym("frames"), tokens.into(), h.into()]);

    // Camera path.
    let cam = g.input(CAMERA_TOKENS, DType::F32, [Dim::sym("frames"), dc.into()]);
    let cam = cast_to(&mut g, "model.loc3r.cam_projector", "to_io", &cam, dt);
    let hidden = cfg.loc3r.cam_projector_hidden;
    let cam = mlp_erf(&mut g, &w.pp("loc3r").pp("cam_projector"), ("0", "2"), &cam, dc, hidden, h)?;
    let cam = cast_to(&mut g, "model.loc3r.cam_projector", "to_f32", &cam, DType::F32);
    g.output_with_shape(CAMERA_EMBEDS, &cam, [Dim::sym("frames"), h.into()]);
    Ok(g.into_builder())
}

/// 1-D bilinear weights `[out, in]` of `interpolate(mode="bilinear", align_corners=False)`
/// without antialias: half-pixel source `(d + 0.5)·in/out − 0.5`, clamped at 0.
pub fn bilinear_weights(input: usize, output: usize) -> Vec<Vec<f64>> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|d| {
            let src = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            let lambda = src - i0 as f64;
            let mut row = vec![0.0; input];
            row[i0] += 1.0 - lambda;
            row[i1] += lambda;
            row
        })
        .collect()
}

/// 1-D `stride`-wide average weights `[floor(in/stride), in]` of `avg_pool2d(stride)` (the
/// rows that do not fill a window are dropped).
fn average_weights(input: usize, stride: usize) -> Vec<Vec<f64>> {
    (0..input / stride)
        .map(|d| {
            let mut row = vec![0.0; input];
            row[stride * d..stride * (d + 1)].fill(1.0 / stride as f64);
            row
        })
        .collect()
}

/// The constant `P [T, g²]`, the newline indicator `e [T, 1]`, and T.
/// Output order per frame: for each pooled row a, the G pooled tokens (a, 0..G) then
/// one newline (docs/prompt.md §4).
pub fn pool_and_newline_layout(grid: usize, mode: PoolMode, stride: usize) -> (F32Tensor, F32Tensor, usize) {
    let axis = match mode {
        PoolMode::Bilinear => bilinear_weights(grid, pooled_side(grid, mode, stride)),
        PoolMode::Average => average_weights(grid, stride),
    };
    let pooled = axis.len();
    let tokens = pooled * (pooled + 1);
    let mut p = vec![0f32; tokens * grid * grid];
    let mut e = vec![0f32; tokens];
    for a in 0..pooled {
        for b in 0..pooled {
            let t = a * (pooled + 1) + b;
            for r in 0..grid {
                for c in 0..grid {
                    p[t * grid * grid + r * grid + c] = (axis[a][r] * axis[b][c]) as f32;
                }
            }
        }
        e[a * (pooled + 1) + pooled] = 1.0;
    }
    (F32Tensor::new(vec![tokens, grid * grid], p), F32Tensor::new(vec![tokens, 1], e), tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_27_to_14_matches_the_spec_table() {
        let w = bilinear_weights(27, 14);
        // (d, i0, w(i0), i1, w(i1)) of PyTorch `interpolate(27 -> 14, bilinear, align_corners=False)`.
        let table = [
            (0, 0, 0.535714, 1, 0.464286),
            (3, 6, 0.75, 7, 0.25),
            (6, 12, 0.964286, 13, 0.035714),
            (7, 13, 0.035714, 14, 0.964286),
            (13, 25, 0.464286, 26, 0.535714),
        ];
        for (d, i0, w0, i1, w1) in table {
            assert!((w[d][i0] - w0).abs() < 1e-6 && (w[d][i1] - w1).abs() < 1e-6, "row {d}: {:?}", &w[d]);
            assert!((w[d].iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // Exact weights are multiples of 1/28.
        for row in &w {
            for v in row {
                assert!((v * 28.0 - (v * 28.0).round()).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn tiny_grid_weights_match_the_spec() {
        // 5 -> 3 (the tiny config's pooling): sources 0.333, 2.0, 3.667.
        let w = bilinear_weights(5, 3);
        assert!((w[0][0] - 2.0 / 3.0).abs() < 1e-9 && (w[0][1] - 1.0 / 3.0).abs() < 1e-9);
        assert!((w[1][2] - 1.0).abs() < 1e-9);
        assert!((w[2][3] - 1.0 / 3.0).abs() < 1e-9 && (w[2][4] - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn layout_has_210_tokens_with_newlines_after_each_row() {
        let (p, e, t) = pool_and_newline_layout(27, PoolMode::Bilinear, 2);
        assert_eq!((t, p.shape.clone()), (210, vec![210, 729]));
        let newline_rows: Vec<usize> = (0..t).filter(|&i| e.data[i] == 1.0).collect();
        assert_eq!(newline_rows, (0..14).map(|a| a * 15 + 14).collect::<Vec<_>>());
        for r in newline_rows {
            assert!(p.data[r * 729..(r + 1) * 729].iter().all(|&v| v == 0.0));
        }
        let (_, _, t) = pool_and_newline_layout(27, PoolMode::Average, 2);
        assert_eq!(t, 182);
    }

    #[test]
    fn other_strides_follow_get_2dpool() {
        // Stride 3: bilinear 27 -> ceil(27/3) = 9 (source (d+0.5)·3−0.5: exact hits, weight 1),
        // average 28 -> floor(28/3) = 9 windows of 3 (the last row dropped).
        let w = bilinear_weights(27, 9);
        for (d, row) in w.iter().enumerate() {
            assert!((row[3 * d + 1] - 1.0).abs() < 1e-12, "row {d}: {row:?}");
        }
        let (_, _, t) = pool_and_newline_layout(27, PoolMode::Bilinear, 3);
        assert_eq!(t, 9 * 10);
        let a = average_weights(28, 3);
        assert_eq!(a.len(), 9);
        assert_eq!(&a[8][24..28], &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0]);
        let (_, _, t) = pool_and_newline_layout(28, PoolMode::Average, 3);
        assert_eq!(t, 90);
    }
}
