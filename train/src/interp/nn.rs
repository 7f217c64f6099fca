//! Linear algebra and normalisation: `MatMul` (numpy batch broadcasting, 1-D operands),
//! `Gemm`, `LayerNormalization`.

use ndarray::{s, Array2, Array3, ArrayD, Axis, Ix2};

use super::args::{axis, NodeArgs};
use super::tensor::{broadcast_shape, broadcast_to, reshape, zip2, Tensor};
use super::OpResult;

/// Runs `a` if it is one of this family's ops.
pub(super) fn run(a: &NodeArgs) -> Option<OpResult> {
    Some(match a.op() {
        "MatMul" => a.float(0).and_then(|x| Ok(vec![Tensor::Float(matmul(x, a.float(1)?)?)])),
        "Gemm" => gemm(a),
        "LayerNormalization" => layer_norm(a),
        _ => return None,
    })
}

/// numpy `matmul`: a 1-D left operand is a row (its axis removed after), a 1-D right
/// operand a column; the batch dims broadcast.
pub(crate) fn matmul(a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>, String> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(format!("MatMul operands must have rank 1 or more, got {:?} and {:?}", a.shape(), b.shape()));
    }
    let a2 = if a.ndim() == 1 { a.view().insert_axis(Axis(0)) } else { a.view() };
    let b2 = if b.ndim() == 1 { b.view().insert_axis(Axis(1)) } else { b.view() };
    let (ra, rb) = (a2.ndim(), b2.ndim());
    let (m, k) = (a2.shape()[ra - 2], a2.shape()[ra - 1]);
    let (k2, n) = (b2.shape()[rb - 2], b2.shape()[rb - 1]);
    if k != k2 {
        return Err(format!("MatMul inner dims differ: {:?} x {:?}", a.shape(), b.shape()));
    }
    let batch = broadcast_shape(&[&a2.shape()[..ra - 2], &b2.shape()[..rb - 2]])?;
    let count: usize = batch.iter().product();
    let full = |tail: [usize; 2]| -> Vec<usize> { batch.iter().copied().chain(tail).collect() };
    let a3 = reshape(&broadcast_to(&a2.to_owned(), &full([m, k]))?.to_owned(), &[count, m, k])?;
    let b3 = reshape(&broadcast_to(&b2.to_owned(), &full([k, n]))?.to_owned(), &[count, k, n])?;
    let (a3, b3) = (a3.into_dimensionality::<ndarray::Ix3>().map_err(|e| e.to_string())?, b3.into_dimensionality::<ndarray::Ix3>().map_err(|e| e.to_string())?);
    let mut out = Array3::<f64>::zeros((count, m, n));
    for i in 0..count {
        out.slice_mut(s![i, .., ..]).assign(&a3.slice(s![i, .., ..]).dot(&b3.slice(s![i, .., ..])));
    }
    let mut shape = batch.clone();
    if a.ndim() > 1 {
        shape.push(m);
    }
    if b.ndim() > 1 {
        shape.push(n);
    }
    reshape(&out.into_dyn(), &shape)
}

fn matrix(x: &ArrayD<f64>, which: &str) -> Result<Array2<f64>, String> {
    x.clone().into_dimensionality::<Ix2>().map_err(|_| format!("Gemm's {which} must be 2-D, got {:?}", x.shape()))
}

/// `Gemm`: `alpha·A'·B' + beta·C`, `C` broadcast to `[M, N]`.
fn gemm(a: &NodeArgs) -> OpResult {
    let mut x = matrix(a.float(0)?, "A")?;
    let mut y = matrix(a.float(1)?, "B")?;
    if a.int_attr("transA", 0)? != 0 {
        x = x.reversed_axes();
    }
    if a.int_attr("transB", 0)? != 0 {
        y = y.reversed_axes();
    }
    if x.ncols() != y.nrows() {
        return Err(format!("Gemm inner dims differ: A' is {:?}, B' is {:?}", x.shape(), y.shape()));
    }
    let (alpha, beta) = (a.float_attr("alpha", 1.0)?, a.float_attr("beta", 1.0)?);
    let mut out = (x.dot(&y) * alpha).into_dyn();
    if a.opt(2).is_some() {
        let c = broadcast_to(a.float(2)?, out.shape())?;
        out.zip_mut_with(&c, |o, &c| *o += beta * c);
    }
    Ok(vec![Tensor::Float(out)])
}

/// `LayerNormalization` over the axes from `axis` on: outputs `Y`, `Mean` and `InvStdDev`
/// (the last two with the normalised axes kept as size 1). `stash_type` does not matter in f64.
fn layer_norm(a: &NodeArgs) -> OpResult {
    let x = a.float(0)?;
    let ax = axis(a.int_attr("axis", -1)?, x.ndim())?;
    let eps = a.float_attr("epsilon", 1e-5)?;
    let outer: usize = x.shape()[..ax].iter().product();
    let inner: usize = x.shape()[ax..].iter().product();
    let rows = reshape(x, &[outer, inner])?;
    let mut normed = rows.clone();
    let mut means = Vec::with_capacity(outer);
    let mut inv_stds = Vec::with_capacity(outer);
    for mut row in normed.rows_mut() {
        let mean = row.sum() / inner as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / inner as f64;
        let inv = 1.0 / (var + eps).sqrt();
        row.mapv_inplace(|v| (v - mean) * inv);
        means.push(mean);
        inv_stds.push(inv);
    }
    let normed = reshape(&normed, x.shape())?;
    let scale = broadcast_to(a.float(1)?, x.shape()).map_err(|e| format!("Scale: {e}"))?.to_owned();
    let mut y = zip2(&normed, &scale, |v, s| v * s)?;
    if a.opt(2).is_some() {
        let b = broadcast_to(a.float(2)?, x.shape()).map_err(|e| format!("B: {e}"))?.to_owned();
        y = zip2(&y, &b, |v, b| v + b)?;
    }
    let stat_shape: Vec<usize> = x.shape().iter().enumerate().map(|(i, &d)| if i < ax { d } else { 1 }).collect();
    let mean = reshape(&ArrayD::from_shape_vec(vec![outer], means).map_err(|e| e.to_string())?, &stat_shape)?;
    let inv_std = reshape(&ArrayD::from_shape_vec(vec![outer], inv_stds).map_err(|e| e.to_string())?, &stat_shape)?;
    Ok(vec![Tensor::Float(y), Tensor::Float(mean), Tensor::Float(inv_std)])
}

#[cfg(test)]
mod tests {
    use loc3r_export::graph::{Attr, GemmOptions, GraphBuilder, NodeSpec, OutputSpec};
    use loc3r_export::{dims, DType};

    use crate::interp::testing::{assert_floats, eval, floats, ramp};

    /// `sum_k a[.., i, k]·b[.., k, j]` by loops, for row-major operands.
    fn mm(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        (0..m * n).map(|ij| (0..k).map(|kk| a[ij / n * k + kk] * b[kk * n + ij % n]).sum()).collect()
    }

    #[test]
    fn matmul_with_vectors_and_batch_broadcast() {
        let mut g = GraphBuilder::new("t");
        let v = g.input("v", DType::F32, [3usize]);
        let m = g.input("m", DType::F32, [3usize, 2]);
        let a = g.input("a", DType::F32, [2usize, 1, 2, 3]);
        let b = g.input("b", DType::F32, [4usize, 3, 2]);
        let mut s = g.scope("t");
        let vm = s.matmul("vm", &v, &m); // [2]
        let mt = s.transpose("mt", &m, &[1, 0]);
        let mv = s.matmul("mv", &mt, &v); // [2]
        let ab = s.matmul("ab", &a, &b); // [2, 4, 2, 2]
        let (vv, mvals, av, bv) = (ramp(3, 1.0, 1.0), ramp(6, -1.0, 0.5), ramp(12, 0.5, 0.25), ramp(24, -2.0, 0.2));
        let feeds = [("v", floats(&[3], &vv)), ("m", floats(&[3, 2], &mvals)), ("a", floats(&[2, 1, 2, 3], &av)), ("b", floats(&[4, 3, 2], &bv))];
        let got = eval(&g, &feeds, &[&vm, &mv, &ab]);
        let want = mm(&vv, &mvals, 1, 3, 2);
        assert_floats(&got[0], &[2], &want);
        assert_floats(&got[1], &[2], &want);
        let mut want = Vec::new();
        for i in 0..2 {
            for j in 0..4 {
                want.extend(mm(&av[i * 6..i * 6 + 6], &bv[j * 6..j * 6 + 6], 2, 3, 2));
            }
        }
        assert_floats(&got[2], &[2, 4, 2, 2], &want);
    }

    #[test]
    fn gemm_with_transposes_alpha_beta_and_broadcast_bias() {
        let mut g = GraphBuilder::new("t");
        let a = g.input("a", DType::F32, [3usize, 2]); // A' = a^T: [2, 3]
        let b = g.input("b", DType::F32, [4usize, 3]); // B' = b^T: [3, 4]
        let c = g.input("c", DType::F32, [4usize]);
        let opts = GemmOptions { alpha: 0.5, beta: 2.0, trans_a: true, trans_b: true };
        let y = g.scope("t").gemm("Gemm", &a, &b, Some(&c), opts);
        let (av, bv, cv) = (ramp(6, -1.0, 0.5), ramp(12, 0.0, 0.25), ramp(4, 1.0, -1.0));
        let got = eval(&g, &[("a", floats(&[3, 2], &av)), ("b", floats(&[4, 3], &bv)), ("c", floats(&[4], &cv))], &[&y]);
        let want: Vec<f64> = (0..8)
            .map(|ij| {
                let (i, j) = (ij / 4, ij % 4);
                0.5 * (0..3).map(|k| av[k * 2 + i] * bv[j * 3 + k]).sum::<f64>() + 2.0 * cv[j]
            })
            .collect();
        assert_floats(&got[0], &[2, 4], &want);
    }

    /// Normalising the last two axes, with the optional Mean and InvStdDev outputs.
    #[test]
    fn layer_norm_over_trailing_axes_with_statistics() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize, 2, 3]);
        let scale = g.input("scale", DType::F32, [3usize]);
        let bias = g.input("bias", DType::F32, [2usize, 3]);
        let spec = NodeSpec {
            op_type: "LayerNormalization",
            inputs: vec![Some(&x), Some(&scale), Some(&bias)],
            attrs: vec![("axis".into(), Attr::Int(-2)), ("epsilon".into(), Attr::Float(0.25))],
            outputs: vec![
                OutputSpec { name: None, dtype: DType::F32, shape: dims![2, 2, 3] },
                OutputSpec { name: None, dtype: DType::F32, shape: dims![2, 1, 1] },
                OutputSpec { name: None, dtype: DType::F32, shape: dims![2, 1, 1] },
            ],
            ..NodeSpec::default()
        };
        let outs = g.scope("t").node("LayerNormalization", spec);
        let (xv, sv, bv) = ([1.0, 2.0, 4.0, -1.0, 0.0, 3.0, 5.0, 5.0, 6.0, 7.0, 2.0, 5.0], [1.0, 2.0, 0.5], ramp(6, 0.0, 0.1));
        let got = eval(&g, &[("x", floats(&[2, 2, 3], &xv)), ("scale", floats(&[3], &sv)), ("bias", floats(&[2, 3], &bv))], &outs.iter().collect::<Vec<_>>());
        let (mut y, mut means, mut invs) = (Vec::new(), Vec::new(), Vec::new());
        for row in xv.chunks(6) {
            let mean = row.iter().sum::<f64>() / 6.0;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 6.0;
            let inv = 1.0 / (var + 0.25).sqrt();
            y.extend(row.iter().enumerate().map(|(i, v)| (v - mean) * inv * sv[i % 3] + bv[i]));
            means.push(mean);
            invs.push(inv);
        }
        assert_floats(&got[0], &[2, 2, 3], &y);
        assert_floats(&got[1], &[2, 1, 1], &means);
        assert_floats(&got[2], &[2, 1, 1], &invs);
    }
}
