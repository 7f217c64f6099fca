//! Spatial ops: `Conv` and `ConvTranspose` over any number of spatial axes (groups,
//! strides, dilations, asymmetric pads, output padding), and `Resize` in `nearest` and
//! `linear` modes as a product of per-axis interpolation matrices ([`resize_axis_weights`],
//! which the Resize VJP shares so the two cannot drift apart; ONNX Runtime checks both).

use loc3r_export::graph::Attr;
use ndarray::{ArrayD, Dimension, IxDyn};

use super::args::NodeArgs;
use super::tensor::Tensor;
use super::OpResult;

/// Runs `a` if it is one of this family's ops.
pub(super) fn run(a: &NodeArgs) -> Option<OpResult> {
    Some(match a.op() {
        "Conv" => conv(a, false),
        "ConvTranspose" => conv(a, true),
        "Resize" => resize(a),
        _ => return None,
    })
}

/// Per spatial axis: stride, pads (begin, end), dilation, output padding.
struct Geometry {
    strides: Vec<usize>,
    pads: Vec<(usize, usize)>,
    dilations: Vec<usize>,
    output_padding: Vec<usize>,
    group: usize,
}

fn geometry(a: &NodeArgs, spatial: usize) -> Result<Geometry, String> {
    if let Ok(pad) = a.string_attr("auto_pad", "NOTSET") {
        if pad != "NOTSET" {
            return Err(format!("auto_pad {pad} is not supported (give explicit pads)"));
        }
    }
    if a.attr("output_shape").is_some() {
        return Err("ConvTranspose's output_shape is not supported (give pads and output_padding)".into());
    }
    let per_axis = |name: &str, default: usize| -> Result<Vec<usize>, String> {
        match a.ints_attr(name)? {
            None => Ok(vec![default; spatial]),
            Some(v) if v.len() == spatial && v.iter().all(|&x| x >= 0) => Ok(v.iter().map(|&x| x as usize).collect()),
            Some(v) => Err(format!("{name} {v:?} must hold {spatial} non-negative values")),
        }
    };
    let pads = match a.ints_attr("pads")? {
        None => vec![(0, 0); spatial],
        Some(p) if p.len() == 2 * spatial && p.iter().all(|&x| x >= 0) => (0..spatial).map(|i| (p[i] as usize, p[spatial + i] as usize)).collect(),
        Some(p) => return Err(format!("pads {p:?} must hold {} non-negative values", 2 * spatial)),
    };
    let group = a.int_attr("group", 1)?;
    if group < 1 {
        return Err(format!("group {group} must be at least 1"));
    }
    let strides = per_axis("strides", 1)?;
    let dilations = per_axis("dilations", 1)?;
    if strides.contains(&0) || dilations.contains(&0) {
        return Err("strides and dilations must be at least 1".into());
    }
    Ok(Geometry { strides, pads, dilations, output_padding: per_axis("output_padding", 0)?, group: group as usize })
}

/// `Conv`: `y[n, m, o] = b[m] + Σ_{c, k} x[n, g·C/G + c, o·s + k·d − p] · w[m, c, k]` (g = m's group);
/// `ConvTranspose` scatters instead: `y[n, g·M/G + m, i·s + k·d − p] += x[n, c, i] · w[c, m, k]`.
fn conv(a: &NodeArgs, transpose: bool) -> OpResult {
    let (x, w) = (a.float(0)?, a.float(1)?);
    if x.ndim() < 3 || w.ndim() != x.ndim() {
        return Err(format!("x {:?} and w {:?} must be [N, C, spatial…] and a weight of the same rank", x.shape(), w.shape()));
    }
    let spatial = x.ndim() - 2;
    let geo = geometry(a, spatial)?;
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let kernel = &w.shape()[2..];
    let g = geo.group;
    // Conv: w [M, C/G, k…]; ConvTranspose: w [C, M/G, k…].
    let (m, w_in) = if transpose { (w.shape()[1] * g, w.shape()[0]) } else { (w.shape()[0], w.shape()[1] * g) };
    if w_in != c || c % g != 0 || m % g != 0 {
        return Err(format!("x {:?} and w {:?} disagree on channels for group {g}", x.shape(), w.shape()));
    }
    let mut out_spatial = Vec::with_capacity(spatial);
    for (i, &k) in kernel.iter().enumerate() {
        let (input, s, d) = (x.shape()[2 + i], geo.strides[i], geo.dilations[i]);
        let (pb, pe) = geo.pads[i];
        let span = d * (k.max(1) - 1) + 1;
        let size = if transpose {
            (s * input.saturating_sub(1) + geo.output_padding[i] + span).checked_sub(pb + pe)
        } else {
            (input + pb + pe).checked_sub(span).map(|free| free / s + 1)
        };
        out_spatial.push(size.ok_or_else(|| format!("axis {i}: the kernel span {span} and pads {:?} leave no output", geo.pads[i]))?);
    }
    let mut shape = vec![n, m];
    shape.extend(&out_spatial);
    let mut y = ArrayD::<f64>::zeros(IxDyn(&shape));
    if let Some(b) = a.opt(2) {
        let b = b.float().map_err(|e| format!("B: {e}"))?;
        if b.shape() != [m] {
            return Err(format!("B has shape {:?}, want [{m}]", b.shape()));
        }
        for (ix, v) in y.indexed_iter_mut() {
            *v = b[ix[1]];
        }
    }
    let (cg, mg) = (c / g, m / g);
    let kernel_points: Vec<IxDyn> = ndarray::indices(IxDyn(kernel)).into_iter().collect();
    // The input position a kernel point touches, for output (conv) / input (transpose) `at`.
    let source = |at: &IxDyn, k: &IxDyn, axis: usize, len: usize| -> Option<usize> {
        let p = (at[axis] * geo.strides[axis] + k[axis] * geo.dilations[axis]) as isize - geo.pads[axis].0 as isize;
        (p >= 0 && (p as usize) < len).then_some(p as usize)
    };
    let mut xi = vec![0usize; 2 + spatial];
    let mut wi = vec![0usize; 2 + spatial];
    if !transpose {
        for (ix, out) in y.indexed_iter_mut() {
            let (nn, mm) = (ix[0], ix[1]);
            let at = IxDyn(&ix.slice()[2..]);
            let grp = mm / mg;
            let mut acc = 0.0;
            for k in &kernel_points {
                let Some(pos) = (0..spatial).map(|i| source(&at, k, i, x.shape()[2 + i])).collect::<Option<Vec<_>>>() else { continue };
                for ci in 0..cg {
                    xi[0] = nn;
                    xi[1] = grp * cg + ci;
                    xi[2..].copy_from_slice(&pos);
                    wi[0] = mm;
                    wi[1] = ci;
                    wi[2..].copy_from_slice(k.slice());
                    acc += x[IxDyn(&xi)] * w[IxDyn(&wi)];
                }
            }
            *out += acc;
        }
    } else {
        let mut yi = vec![0usize; 2 + spatial];
        for (ix, &xv) in x.indexed_iter() {
            let (nn, ci) = (ix[0], ix[1]);
            let at = IxDyn(&ix.slice()[2..]);
            let grp = ci / cg;
            for k in &kernel_points {
                let Some(pos) = (0..spatial).map(|i| source(&at, k, i, out_spatial[i])).collect::<Option<Vec<_>>>() else { continue };
                for mi in 0..mg {
                    wi[0] = ci;
                    wi[1] = mi;
                    wi[2..].copy_from_slice(k.slice());
                    yi[0] = nn;
                    yi[1] = grp * mg + mi;
                    yi[2..].copy_from_slice(&pos);
                    y[IxDyn(&yi)] += xv * w[IxDyn(&wi)];
                }
            }
        }
    }
    Ok(vec![Tensor::Float(y)])
}

/// The rows of one axis's interpolation matrix: output index → `(input index, weight)` pairs,
/// as ONNX Runtime computes `Resize` (`nearest`, `linear`; coordinate modes `half_pixel`,
/// `pytorch_half_pixel`, `align_corners`, `asymmetric`). `scale` is the factor the op was
/// given (`output / input` when it was given sizes).
pub(crate) fn resize_axis_weights(
    mode: &str,
    coordinates: &str,
    nearest_mode: &str,
    input: usize,
    output: usize,
    scale: f64,
) -> Result<Vec<Vec<(usize, f64)>>, String> {
    if input == 0 || output == 0 || scale <= 0.0 {
        return Err(format!("cannot resize {input} → {output} (scale {scale})"));
    }
    let last = (input - 1) as f64;
    let original = |x: usize| -> Result<f64, String> {
        let x = x as f64;
        Ok(match coordinates {
            "half_pixel" => (x + 0.5) / scale - 0.5,
            "pytorch_half_pixel" if output > 1 => (x + 0.5) / scale - 0.5,
            "pytorch_half_pixel" => 0.0,
            "align_corners" if output > 1 => x * last / (output - 1) as f64,
            "align_corners" => 0.0,
            "asymmetric" => x / scale,
            other => {
                return Err(format!("coordinate_transformation_mode {other} is not supported (half_pixel, pytorch_half_pixel, align_corners, asymmetric)"))
            }
        })
    };
    let clamp = |i: f64| i.clamp(0.0, last) as usize;
    (0..output)
        .map(|o| {
            let x = original(o)?;
            Ok(match mode {
                "nearest" => {
                    let frac = x - x.floor();
                    let i = match nearest_mode {
                        "round_prefer_floor" if frac == 0.5 => x.floor(),
                        "round_prefer_ceil" if frac == 0.5 => x.ceil(),
                        "round_prefer_floor" | "round_prefer_ceil" => x.round(),
                        "floor" => x.floor(),
                        "ceil" => x.ceil(),
                        other => return Err(format!("nearest_mode {other} is not supported")),
                    };
                    vec![(clamp(i), 1.0)]
                }
                "linear" => {
                    let x = x.clamp(0.0, last);
                    let lo = x.floor();
                    let frac = x - lo;
                    let (i0, i1) = (clamp(lo), clamp(lo + 1.0));
                    if frac == 0.0 || i0 == i1 {
                        vec![(i0, 1.0)]
                    } else {
                        vec![(i0, 1.0 - frac), (i1, frac)]
                    }
                }
                other => Err(format!("Resize mode {other} is not supported here (nearest, linear)"))?,
            })
        })
        .collect()
}

/// The resize attributes a separable interpolation needs; anything else is refused.
pub(crate) fn check_resize_attrs<'a>(attr: impl Fn(&str) -> Option<&'a Attr>) -> Result<(), String> {
    let text = |name: &str| {
        attr(name).map(|v| match v {
            Attr::Int(i) => i.to_string(),
            Attr::String(s) => s.clone(),
            other => format!("{other:?}"),
        })
    };
    for (name, allowed) in [("antialias", "0"), ("keep_aspect_ratio_policy", "stretch"), ("exclude_outside", "0")] {
        if let Some(v) = text(name) {
            if v != allowed {
                return Err(format!("Resize with {name} = {v} is not supported"));
            }
        }
    }
    if attr("axes").is_some() {
        return Err("Resize with `axes` is not supported (give a scale or size for every axis)".into());
    }
    Ok(())
}

fn resize(a: &NodeArgs) -> OpResult {
    let x = a.float(0)?;
    check_resize_attrs(|name| a.attr(name))?;
    let (mode, coordinates, nearest) = (
        a.string_attr("mode", "nearest")?,
        a.string_attr("coordinate_transformation_mode", "half_pixel")?,
        a.string_attr("nearest_mode", "round_prefer_floor")?,
    );
    let rank = x.ndim();
    let (sizes, scales): (Vec<usize>, Vec<f64>) = match (a.opt(3), a.opt(2)) {
        (Some(_), _) => {
            let sizes = a.ints(3)?;
            if sizes.len() != rank || sizes.iter().any(|&s| s < 1) {
                return Err(format!("sizes {sizes:?} must hold {rank} positive values"));
            }
            let sizes: Vec<usize> = sizes.iter().map(|&s| s as usize).collect();
            let scales = sizes.iter().zip(x.shape()).map(|(&o, &i)| o as f64 / i as f64).collect();
            (sizes, scales)
        }
        (None, Some(s)) => {
            let scales: Vec<f64> = s.float().map_err(|e| format!("scales: {e}"))?.iter().copied().collect();
            if scales.len() != rank || scales.iter().any(|&s| s <= 0.0) {
                return Err(format!("scales {scales:?} must hold {rank} positive values"));
            }
            // ONNX: output = floor(input · scale), with the scale as given (f32).
            let sizes = x.shape().iter().zip(&scales).map(|(&i, &s)| (i as f64 * s as f32 as f64).floor() as usize).collect();
            (sizes, scales)
        }
        (None, None) => return Err("Resize needs scales or sizes".into()),
    };
    let mut y = x.clone();
    for axis in 0..rank {
        let (input, output) = (x.shape()[axis], sizes[axis]);
        if input == output && scales[axis] == 1.0 {
            continue;
        }
        let rows = resize_axis_weights(mode, coordinates, nearest, input, output, scales[axis])?;
        let mut shape = y.shape().to_vec();
        shape[axis] = output;
        let mut next = ArrayD::<f64>::zeros(IxDyn(&shape));
        for (ix, v) in next.indexed_iter_mut() {
            let mut src = ix.clone();
            *v = rows[ix[axis]]
                .iter()
                .map(|&(i, wgt)| {
                    src[axis] = i;
                    wgt * y[&src]
                })
                .sum();
        }
        y = next;
    }
    Ok(vec![Tensor::Float(y)])
}

#[cfg(test)]
mod tests {
    use loc3r_export::graph::{ConvOptions, GraphBuilder, ResizeOptions, ResizeTarget};
    use loc3r_export::{dims, DType};

    use crate::interp::testing::{assert_floats, eval1, floats, ramp};

    #[test]
    fn conv_by_hand() {
        // 1×1×3×3 input, 2×2 kernel of ones, stride 1, pad 0: sums of 2×2 windows.
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [1usize, 1, 3, 3]);
        let w = g.input("w", DType::F32, [1usize, 1, 2, 2]);
        let y = g.scope("t").conv("Conv", &x, &w, None, &ConvOptions::default());
        let got = eval1(&g, &[("x", floats(&[1, 1, 3, 3], &ramp(9, 1.0, 1.0))), ("w", floats(&[1, 1, 2, 2], &[1.0; 4]))], &y);
        assert_floats(&got, &[1, 1, 2, 2], &[12.0, 16.0, 24.0, 28.0]);
    }

    #[test]
    fn conv_transpose_by_hand() {
        // Stride 2, kernel 2 of [1, 2; 3, 4]: every input pixel stamps its own 2×2 block.
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [1usize, 1, 1, 2]);
        let w = g.input("w", DType::F32, [1usize, 1, 2, 2]);
        let y = g.scope("t").conv_transpose("ConvTranspose", &x, &w, None, &ConvOptions::uniform(2, 2, 0));
        let got = eval1(&g, &[("x", floats(&[1, 1, 1, 2], &[1.0, 10.0])), ("w", floats(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]))], &y);
        assert_floats(&got, &[1, 1, 2, 4], &[1.0, 2.0, 10.0, 20.0, 3.0, 4.0, 30.0, 40.0]);
    }

    #[test]
    fn resize_by_hand() {
        // align_corners ×2 of [0, 3]: 0, 1, 2, 3; half_pixel ×2 of [0, 4]: 0, 1, 3, 4.
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, dims![1, 1, 1, 2]);
        let mut ac = ResizeOptions::linear(ResizeTarget::Sizes(vec![1, 1, 1, 4]));
        ac.coordinate_transformation_mode = "align_corners".into();
        let a = g.scope("a").resize("Resize", &x, &ac);
        let h = g.scope("h").resize("Resize", &x, &ResizeOptions::linear(ResizeTarget::Scales(vec![1.0, 1.0, 1.0, 2.0])));
        assert_floats(&eval1(&g, &[("x", floats(&[1, 1, 1, 2], &[0.0, 3.0]))], &a), &[1, 1, 1, 4], &[0.0, 1.0, 2.0, 3.0]);
        assert_floats(&eval1(&g, &[("x", floats(&[1, 1, 1, 2], &[0.0, 4.0]))], &h), &[1, 1, 1, 4], &[0.0, 1.0, 3.0, 4.0]);
    }
}
