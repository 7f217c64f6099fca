//! Neural-network ops: `LayerNormalization`, `Conv`, `ConvTranspose`, `Resize`.
//!
//! Every wrapper emits exactly one node, named `<scope>/<step>`.

use super::builder::Scope;
use super::{shape, Attr, Dim, Value};

/// Options of [`Scope::conv`] and [`Scope::conv_transpose`]. Empty vectors mean the ONNX
/// defaults (strides and dilations 1, pads 0); the kernel shape comes from the weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvOptions {
    /// One per spatial axis.
    pub strides: Vec<usize>,
    /// `[x1_begin, x2_begin, …, x1_end, x2_end, …]`, as ONNX orders them.
    pub pads: Vec<usize>,
    /// One per spatial axis.
    pub dilations: Vec<usize>,
    /// Channel groups (1: dense; `C`: depthwise).
    pub group: usize,
    /// `ConvTranspose` only: extra size added to one side of each output axis.
    pub output_padding: Vec<usize>,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions { strides: Vec::new(), pads: Vec::new(), dilations: Vec::new(), group: 1, output_padding: Vec::new() }
    }
}

impl ConvOptions {
    /// Stride `s` and symmetric padding `p` on every one of `spatial` axes
    /// (`ConvOptions::uniform(2, 14, 0)` is a ViT patch embedding).
    pub fn uniform(spatial: usize, stride: usize, pad: usize) -> ConvOptions {
        ConvOptions { strides: vec![stride; spatial], pads: vec![pad; 2 * spatial], ..ConvOptions::default() }
    }

    fn attrs(&self, kernel: &[usize], transpose: bool) -> Vec<(&'static str, Attr)> {
        let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&x| x as i64).collect());
        let mut a = Vec::new();
        if !kernel.is_empty() {
            a.push(("kernel_shape", ints(kernel)));
        }
        if !self.strides.is_empty() {
            a.push(("strides", ints(&self.strides)));
        }
        if !self.pads.is_empty() {
            a.push(("pads", ints(&self.pads)));
        }
        if !self.dilations.is_empty() {
            a.push(("dilations", ints(&self.dilations)));
        }
        if self.group != 1 {
            a.push(("group", Attr::Int(self.group as i64)));
        }
        if transpose && !self.output_padding.is_empty() {
            a.push(("output_padding", ints(&self.output_padding)));
        }
        a
    }

    /// Per-axis (stride, (pad_begin, pad_end), dilation, output_padding) for axis `i` of `n`.
    fn axis(&self, i: usize, n: usize) -> (usize, (usize, usize), usize, usize) {
        let pads = if self.pads.len() == 2 * n { (self.pads[i], self.pads[n + i]) } else { (0, 0) };
        (self.strides.get(i).copied().unwrap_or(1), pads, self.dilations.get(i).copied().unwrap_or(1), self.output_padding.get(i).copied().unwrap_or(0))
    }

    fn check(&self, spatial: usize) -> Result<(), String> {
        let bad = |v: &[usize], want: usize| !v.is_empty() && v.len() != want;
        if bad(&self.strides, spatial) || bad(&self.dilations, spatial) || bad(&self.pads, 2 * spatial) || bad(&self.output_padding, spatial) {
            return Err(format!("conv options {self:?} do not match {spatial} spatial axes"));
        }
        if self.group == 0 {
            return Err("conv group must be at least 1".into());
        }
        Ok(())
    }
}

/// How [`Scope::resize`] chooses the output size.
#[derive(Debug, Clone, PartialEq)]
pub enum ResizeTarget {
    /// One factor per axis (including batch and channels, usually 1.0).
    Scales(Vec<f32>),
    /// The full output shape.
    Sizes(Vec<usize>),
}

/// Options of [`Scope::resize`]; the string fields take ONNX's spellings.
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeOptions {
    pub target: ResizeTarget,
    /// `nearest`, `linear` or `cubic`.
    pub mode: String,
    /// `half_pixel` (default), `align_corners`, `asymmetric`, `pytorch_half_pixel`, ...
    pub coordinate_transformation_mode: String,
    /// For `nearest`: `round_prefer_floor` (default), `floor`, `ceil`, `round_prefer_ceil`.
    pub nearest_mode: String,
    /// For `cubic`: -0.75 (ONNX default); PyTorch's bicubic uses -0.75 as well.
    pub cubic_coeff_a: f32,
}

impl ResizeOptions {
    fn with_mode(target: ResizeTarget, mode: &str) -> ResizeOptions {
        ResizeOptions {
            target,
            mode: mode.to_string(),
            coordinate_transformation_mode: "half_pixel".to_string(),
            nearest_mode: "round_prefer_floor".to_string(),
            cubic_coeff_a: -0.75,
        }
    }
    /// Nearest-neighbour resize.
    pub fn nearest(target: ResizeTarget) -> ResizeOptions {
        Self::with_mode(target, "nearest")
    }
    /// (Bi/tri)linear resize, `half_pixel` coordinates (PyTorch `align_corners=False`).
    pub fn linear(target: ResizeTarget) -> ResizeOptions {
        Self::with_mode(target, "linear")
    }
    /// Bicubic resize.
    pub fn cubic(target: ResizeTarget) -> ResizeOptions {
        Self::with_mode(target, "cubic")
    }
}

impl Scope<'_> {
    /// `LayerNormalization(x, scale, bias)` over the axes from `axis` to the end.
    /// ORT computes it in fp32 for fp16 inputs (`stash_type` 1, the default).
    pub fn layer_norm(&mut self, step: &str, x: &Value, scale: &Value, bias: Option<&Value>, axis: i64, epsilon: f32) -> Value {
        let mut typed = vec![x, scale];
        typed.extend(bias);
        let dtype = self.same_dtype(step, "LayerNormalization", &typed);
        if let Err(e) = shape::axis(axis, x.rank()) {
            self.fail(step, e);
        }
        let attrs = vec![("axis", Attr::Int(axis)), ("epsilon", Attr::Float(epsilon))];
        self.emit(step, "LayerNormalization", &[Some(x), Some(scale), bias], attrs, dtype, x.shape().to_vec())
    }

    /// `Conv(x [N, C, d…], w [M, C/group, k…], b [M])` → `[N, M, o…]`.
    pub fn conv(&mut self, step: &str, x: &Value, w: &Value, b: Option<&Value>, opts: &ConvOptions) -> Value {
        self.conv_like(step, "Conv", x, w, b, opts)
    }

    /// `ConvTranspose(x [N, C, d…], w [C, M/group, k…], b [M])` → `[N, M, o…]` with
    /// `o = stride·(d−1) + output_padding + dilation·(k−1) + 1 − pads`.
    pub fn conv_transpose(&mut self, step: &str, x: &Value, w: &Value, b: Option<&Value>, opts: &ConvOptions) -> Value {
        self.conv_like(step, "ConvTranspose", x, w, b, opts)
    }

    fn conv_like(&mut self, step: &str, op: &str, x: &Value, w: &Value, b: Option<&Value>, opts: &ConvOptions) -> Value {
        let transpose = op == "ConvTranspose";
        let mut typed = vec![x, w];
        typed.extend(b);
        let dtype = self.same_dtype(step, op, &typed);
        let node = self.node_name(step);
        let rule = conv_shape(x.shape(), w.shape(), opts, transpose, &node);
        let out = self.shape_or(step, rule, x.shape());
        let kernel: Vec<usize> = w.shape().iter().skip(2).map(|d| d.fixed().unwrap_or(0)).collect();
        let kernel = if kernel.contains(&0) { Vec::new() } else { kernel };
        let attrs = opts.attrs(&kernel, transpose);
        self.emit(step, op, &[Some(x), Some(w), b], attrs, dtype, out)
    }

    /// `Resize(x)` to the sizes or by the scales of `opts.target`.
    pub fn resize(&mut self, step: &str, x: &Value, opts: &ResizeOptions) -> Value {
        let node = self.node_name(step);
        let (scales, sizes, out) = match &opts.target {
            ResizeTarget::Scales(f) => {
                let out = if f.len() == x.rank() {
                    x.shape()
                        .iter()
                        .zip(f)
                        .enumerate()
                        .map(|(i, (d, &s))| match d {
                            Dim::Fixed(n) => Dim::Fixed((*n as f64 * f64::from(s)).floor() as usize),
                            Dim::Sym(_) if s == 1.0 => d.clone(),
                            Dim::Sym(_) => shape::unknown(&node, i),
                        })
                        .collect()
                } else {
                    self.fail(step, format!("Resize scales {f:?} do not match rank {}", x.rank()));
                    x.shape().to_vec()
                };
                (Some(self.constant_f32(f, &[f.len()])), None, out)
            }
            ResizeTarget::Sizes(s) => {
                if s.len() != x.rank() {
                    self.fail(step, format!("Resize sizes {s:?} do not match rank {}", x.rank()));
                }
                let ints: Vec<i64> = s.iter().map(|&v| v as i64).collect();
                (None, Some(self.ints(&ints)), s.iter().map(|&v| Dim::Fixed(v)).collect())
            }
        };
        let mut attrs =
            vec![("mode", Attr::String(opts.mode.clone())), ("coordinate_transformation_mode", Attr::String(opts.coordinate_transformation_mode.clone()))];
        match opts.mode.as_str() {
            "nearest" => attrs.push(("nearest_mode", Attr::String(opts.nearest_mode.clone()))),
            "cubic" => attrs.push(("cubic_coeff_a", Attr::Float(opts.cubic_coeff_a))),
            _ => {}
        }
        // Inputs: X, roi (unused: left out), scales, sizes.
        self.emit(step, "Resize", &[Some(x), None, scales.as_ref(), sizes.as_ref()], attrs, x.dtype(), out)
    }
}

/// Output shape of `Conv`/`ConvTranspose`.
fn conv_shape(x: &[Dim], w: &[Dim], opts: &ConvOptions, transpose: bool, node: &str) -> Result<Vec<Dim>, String> {
    if x.len() < 3 || w.len() != x.len() {
        return Err(format!("conv needs x [N, C, spatial…] and w of the same rank, got {} and {}", super::shape_string(x), super::shape_string(w)));
    }
    let spatial = x.len() - 2;
    opts.check(spatial)?;
    let g = opts.group;
    // Channels: Conv w is [M, C/g, k…]; ConvTranspose w is [C, M/g, k…].
    let (c_in_w, out_c) = if transpose {
        (w[0].clone(), w[1].fixed().map(|m| Dim::Fixed(m * g)).unwrap_or_else(|| shape::unknown(node, 1)))
    } else {
        (w[1].fixed().map(|c| Dim::Fixed(c * g)).unwrap_or_else(|| w[1].clone()), w[0].clone())
    };
    if let (Dim::Fixed(a), Dim::Fixed(b)) = (&x[1], &c_in_w) {
        if a != b {
            return Err(format!("conv input has {a} channels, the weight {} expects {b} (group {g})", super::shape_string(w)));
        }
    }
    let mut out = vec![x[0].clone(), out_c];
    for i in 0..spatial {
        let (stride, pad, dil, opad) = opts.axis(i, spatial);
        out.push(match (&x[2 + i], &w[2 + i]) {
            (Dim::Fixed(d), Dim::Fixed(k)) if transpose => Dim::Fixed(shape::conv_transpose_dim(*d, *k, stride, pad, dil, opad)?),
            (Dim::Fixed(d), Dim::Fixed(k)) => Dim::Fixed(shape::conv_dim(*d, *k, stride, pad, dil)?),
            _ => shape::unknown(node, 2 + i),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::dims;
    use crate::graph::testing::{assert_close, feed_f32, run_f32};
    use crate::graph::GraphBuilder;
    use crate::tensor::{DType, F32Tensor};

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        // A small deterministic generator (no rand dependency): values in [-1, 1).
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn weight(g: &mut GraphBuilder, name: &str, shape: &[usize], seed: u32) -> (Value, Vec<f32>) {
        let data = pseudo(shape.iter().product(), seed);
        let v = g.initializer(name, Arc::new(F32Tensor::new(shape.to_vec(), data.clone())), DType::F32);
        (v, data)
    }

    #[test]
    fn conv_shapes() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("pixel_values", DType::F32, dims!["frames", 3, 384, 384]);
        let (w, _) = weight(&mut g, "patch.weight", &[1152, 3, 14, 14], 1);
        let y = g.scope("patch").conv("Conv", &x, &w, None, &ConvOptions::uniform(2, 14, 0));
        assert_eq!(y.shape(), &dims!["frames", 1152, 27, 27][..]);
        let (wt, _) = weight(&mut g, "up.weight", &[1152, 64, 2, 2], 2);
        let u = g.scope("up").conv_transpose("ConvTranspose", &y, &wt, None, &ConvOptions::uniform(2, 2, 0));
        assert_eq!(u.shape(), &dims!["frames", 64, 54, 54][..]);
        let (bad, _) = weight(&mut g, "bad.weight", &[8, 4, 3, 3], 3);
        g.scope("bad").conv("Conv", &x, &bad, None, &ConvOptions::default());
        let err = g.check().unwrap_err().to_string();
        assert!(err.contains("node `bad/Conv`: conv input has 3 channels"), "{err}");
    }

    /// LayerNorm -> MatMul -> Softmax, the core of every attention/MLP block.
    #[test]
    fn layer_norm_matmul_softmax_matches_reference() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("ln_mm_sm");
        let x = g.input("x", DType::F32, dims!["batch", "seq", 8]);
        let (gamma, gv) = weight(&mut g, "norm.weight", &[8], 10);
        let (beta, bv) = weight(&mut g, "norm.bias", &[8], 11);
        let (w, wv) = weight(&mut g, "proj.weight", &[8, 5], 12);
        let h = g.scope("norm").layer_norm("LayerNormalization", &x, &gamma, Some(&beta), -1, 1e-5);
        let mut s = g.scope("proj");
        let y = s.matmul("MatMul", &h, &w);
        let p = s.softmax("Softmax", &y, -1);
        assert_eq!(p.shape(), &dims!["batch", "seq", 5][..]);
        g.output("probs", &p);
        g.save(dir.path()).unwrap();

        let (b, sq) = (2, 3);
        let xv = pseudo(b * sq * 8, 13);
        let out = run_f32(&dir.path().join("ln_mm_sm.onnx"), vec![feed_f32("x", ArrayD::from_shape_vec(IxDyn(&[b, sq, 8]), xv.clone()).unwrap())]);
        let mut want = Vec::new();
        for row in xv.chunks(8) {
            let mean = row.iter().sum::<f32>() / 8.0;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 8.0;
            let n: Vec<f32> = row.iter().enumerate().map(|(i, v)| (v - mean) / (var + 1e-5).sqrt() * gv[i] + bv[i]).collect();
            let logits: Vec<f32> = (0..5).map(|j| (0..8).map(|k| n[k] * wv[k * 5 + j]).sum()).collect();
            let m = logits.iter().cloned().fold(f32::MIN, f32::max);
            let z: f32 = logits.iter().map(|l| (l - m).exp()).sum();
            want.extend(logits.iter().map(|l| (l - m).exp() / z));
        }
        assert_close(&out["probs"], &ArrayD::from_shape_vec(IxDyn(&[b, sq, 5]), want).unwrap(), 1e-5);
    }

    /// Grouped, strided, padded Conv with bias; then ConvTranspose; against direct loops.
    #[test]
    fn conv_and_conv_transpose_match_reference() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("conv");
        let x = g.input("x", DType::F32, dims!["n", 4, 7, 7]);
        let (w, wv) = weight(&mut g, "conv.weight", &[6, 2, 3, 3], 20);
        let (b, bv) = weight(&mut g, "conv.bias", &[6], 21);
        let opts = ConvOptions { group: 2, ..ConvOptions::uniform(2, 2, 1) };
        let y = g.scope("conv").conv("Conv", &x, &w, Some(&b), &opts);
        assert_eq!(y.shape(), &dims!["n", 6, 4, 4][..]);
        let (wt, wtv) = weight(&mut g, "up.weight", &[6, 3, 2, 2], 22);
        let u = g.scope("up").conv_transpose("ConvTranspose", &y, &wt, None, &ConvOptions::uniform(2, 2, 0));
        assert_eq!(u.shape(), &dims!["n", 3, 8, 8][..]);
        g.output("y", &y);
        g.output("u", &u);
        g.save(dir.path()).unwrap();

        let xv = ArrayD::from_shape_vec(IxDyn(&[1, 4, 7, 7]), pseudo(4 * 49, 23)).unwrap();
        let out = run_f32(&dir.path().join("conv.onnx"), vec![feed_f32("x", xv.clone())]);
        let want_y = ArrayD::from_shape_fn(IxDyn(&[1, 6, 4, 4]), |ix| {
            let (m, oy, ox) = (ix[1], ix[2], ix[3]);
            let grp = m / 3;
            let mut acc = bv[m];
            for c in 0..2 {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix_) = ((oy * 2 + ky) as i64 - 1, (ox * 2 + kx) as i64 - 1);
                        if (0..7).contains(&iy) && (0..7).contains(&ix_) {
                            acc += xv[[0, grp * 2 + c, iy as usize, ix_ as usize]] * wv[((m * 2 + c) * 3 + ky) * 3 + kx];
                        }
                    }
                }
            }
            acc
        });
        assert_close(&out["y"], &want_y, 1e-5);
        // Stride 2, kernel 2: every output pixel comes from exactly one input pixel.
        let want_u = ArrayD::from_shape_fn(IxDyn(&[1, 3, 8, 8]), |ix| {
            let (m, oy, ox) = (ix[1], ix[2], ix[3]);
            (0..6).map(|c| want_y[[0, c, oy / 2, ox / 2]] * wtv[((c * 3 + m) * 2 + oy % 2) * 2 + ox % 2]).sum()
        });
        assert_close(&out["u"], &want_u, 1e-5);
    }

    #[test]
    fn resize_matches_reference() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("resize");
        let x = g.input("x", DType::F32, dims!["n", 2, 3, 4]);
        let up = g.scope("up").resize("Resize", &x, &ResizeOptions::nearest(ResizeTarget::Scales(vec![1.0, 1.0, 2.0, 2.0])));
        assert_eq!(up.shape(), &dims!["n", 2, 6, 8][..]);
        let lin = g.scope("lin").resize("Resize", &x, &ResizeOptions::linear(ResizeTarget::Sizes(vec![1, 2, 3, 2])));
        assert_eq!(lin.shape(), &dims![1, 2, 3, 2][..]);
        g.output("up", &up);
        g.output("lin", &lin);
        g.save(dir.path()).unwrap();

        let xv = ArrayD::from_shape_vec(IxDyn(&[1, 2, 3, 4]), pseudo(24, 30)).unwrap();
        let out = run_f32(&dir.path().join("resize.onnx"), vec![feed_f32("x", xv.clone())]);
        let want = ArrayD::from_shape_fn(IxDyn(&[1, 2, 6, 8]), |ix| xv[[0, ix[1], ix[2] / 2, ix[3] / 2]]);
        assert_close(&out["up"], &want, 0.0);
        // Halving the width with half_pixel linear averages neighbouring pairs.
        let want = ArrayD::from_shape_fn(IxDyn(&[1, 2, 3, 2]), |ix| (xv[[0, ix[1], ix[2], 2 * ix[3]]] + xv[[0, ix[1], ix[2], 2 * ix[3] + 1]]) / 2.0);
        assert_close(&out["lin"], &want, 1e-6);
    }
}
