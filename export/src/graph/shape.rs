//! Shape rules for the wrapped ops, apart from the wiring (as tract keeps them).
//!
//! Each rule takes input shapes (and constant operands where the op needs them) and
//! returns the output shape, or `Err(message)` when the inputs cannot work together.
//! A dimension that depends on run-time data is named after the node and the axis
//! ([`unknown`]), so it still appears in `value_info` and stays distinct from other dims.

use super::Dim;

/// A dimension the builder cannot know: `<node>:<axis>`.
pub(crate) fn unknown(node: &str, axis: usize) -> Dim {
    Dim::Sym(format!("{node}:{axis}"))
}

/// Normalises a possibly negative axis against `rank`.
pub fn axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// Normalises a list of axes and rejects repeats.
pub fn axes(list: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(list.len());
    for &a in list {
        let a = axis(a, rank)?;
        if out.contains(&a) {
            return Err(format!("axis {a} is given twice in {list:?}"));
        }
        out.push(a);
    }
    Ok(out)
}

/// Multidirectional (numpy) broadcasting of any number of shapes.
pub(crate) fn broadcast(shapes: &[&[Dim]]) -> Result<Vec<Dim>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let mut acc = Dim::Fixed(1);
        for s in shapes {
            let Some(d) = (i + s.len()).checked_sub(rank).map(|j| &s[j]) else {
                continue;
            };
            acc = match (&acc, d) {
                (Dim::Fixed(1), d) => d.clone(),
                (a, Dim::Fixed(1)) => a.clone(),
                (a, d) if a == d => a.clone(),
                (Dim::Fixed(a), Dim::Fixed(b)) => {
                    let all: Vec<String> = shapes.iter().map(|s| super::shape_string(s)).collect();
                    return Err(format!("cannot broadcast {a} with {b} (shapes {})", all.join(", ")));
                }
                // A fixed size n > 1 against a symbol: the symbol must be 1 or n.
                (Dim::Fixed(n), Dim::Sym(_)) | (Dim::Sym(_), Dim::Fixed(n)) => Dim::Fixed(*n),
                (Dim::Sym(a), Dim::Sym(b)) => Dim::Sym(format!("max({a},{b})")),
            };
        }
        out.push(acc);
    }
    Ok(out)
}

/// numpy `matmul`: 1-D operands are promoted and the added axis removed again.
pub(crate) fn matmul(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, String> {
    if a.is_empty() || b.is_empty() {
        return Err("MatMul needs inputs of rank 1 or more".into());
    }
    let a2: Vec<Dim> = if a.len() == 1 { vec![Dim::Fixed(1), a[0].clone()] } else { a.to_vec() };
    let b2: Vec<Dim> = if b.len() == 1 { vec![b[0].clone(), Dim::Fixed(1)] } else { b.to_vec() };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if let (Dim::Fixed(x), Dim::Fixed(y)) = (ka, kb) {
        if x != y {
            return Err(format!("MatMul inner dimensions differ: {} x {}", super::shape_string(a), super::shape_string(b)));
        }
    }
    let mut out = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(out)
}

/// `Gemm`: `A' [M,K] x B' [K,N] -> [M,N]` (primes: optional transposes).
pub(crate) fn gemm(a: &[Dim], b: &[Dim], trans_a: bool, trans_b: bool) -> Result<Vec<Dim>, String> {
    if a.len() != 2 || b.len() != 2 {
        return Err(format!("Gemm needs 2-D inputs, got {} and {}", super::shape_string(a), super::shape_string(b)));
    }
    let (m, ka) = if trans_a { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
    let (kb, n) = if trans_b { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
    if let (Dim::Fixed(x), Dim::Fixed(y)) = (ka, kb) {
        if x != y {
            return Err(format!("Gemm inner dimensions differ: {x} vs {y}"));
        }
    }
    Ok(vec![m.clone(), n.clone()])
}

/// Splits a shape's element count into a fixed product and a list of symbols.
fn factor(dims: &[Dim]) -> (usize, Vec<String>) {
    let mut fixed = 1usize;
    let mut syms = Vec::new();
    for d in dims {
        match d {
            Dim::Fixed(n) => fixed *= n,
            Dim::Sym(s) => syms.push(s.clone()),
        }
    }
    (fixed, syms)
}

/// `Reshape` with a constant target (`0` copies the input dim, `-1` is inferred).
pub(crate) fn reshape(input: &[Dim], target: &[i64], node: &str) -> Result<Vec<Dim>, String> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        out.push(match t {
            0 => input.get(i).cloned().ok_or_else(|| format!("Reshape target {target:?} copies axis {i}, past the input's rank"))?,
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                Dim::Fixed(1) // placeholder
            }
            -1 => return Err(format!("Reshape target {target:?} has more than one -1")),
            t if t > 0 => Dim::Fixed(t as usize),
            t => return Err(format!("Reshape target {target:?} has the invalid entry {t}")),
        });
    }
    let (in_fixed, mut in_syms) = factor(input);
    let (out_fixed, out_syms) = factor(&out);
    // Cancel the symbols the output copies from the input.
    let mut cancelled = true;
    for s in &out_syms {
        match in_syms.iter().position(|x| x == s) {
            Some(p) => {
                in_syms.remove(p);
            }
            None => cancelled = false,
        }
    }
    match infer_at {
        Some(i) if cancelled && out_fixed != 0 && in_fixed % out_fixed == 0 => {
            let rest = in_fixed / out_fixed;
            out[i] = if in_syms.is_empty() {
                Dim::Fixed(rest)
            } else {
                let mut parts: Vec<String> = in_syms.iter().map(|s| if s.contains('+') { format!("({s})") } else { s.clone() }).collect();
                if rest != 1 {
                    parts.insert(0, rest.to_string());
                }
                Dim::Sym(parts.join("*"))
            };
        }
        Some(_) if cancelled && in_syms.is_empty() => {
            return Err(format!("cannot reshape {} to {target:?}", super::shape_string(input)));
        }
        Some(i) => out[i] = unknown(node, i),
        None if cancelled && in_syms.is_empty() && in_fixed != out_fixed => {
            return Err(format!("cannot reshape {} ({in_fixed} elements) to {target:?}", super::shape_string(input)));
        }
        None => {}
    }
    Ok(out)
}

/// `Transpose` with an explicit permutation.
pub(crate) fn transpose(input: &[Dim], perm: &[i64]) -> Result<Vec<Dim>, String> {
    let perm = axes(perm, input.len())?;
    if perm.len() != input.len() {
        return Err(format!("Transpose perm {perm:?} does not cover rank {}", input.len()));
    }
    Ok(perm.iter().map(|&p| input[p].clone()).collect())
}

/// `Concat` along `axis`; symbolic lengths add up as `a+b`.
pub(crate) fn concat(inputs: &[&[Dim]], axis_: i64) -> Result<Vec<Dim>, String> {
    let first = inputs.first().ok_or("Concat needs at least one input")?;
    let a = axis(axis_, first.len())?;
    let mut out = first.to_vec();
    let mut fixed = 0usize;
    let mut syms = Vec::new();
    for s in inputs {
        if s.len() != first.len() {
            return Err(format!("Concat inputs differ in rank: {} vs {}", super::shape_string(first), super::shape_string(s)));
        }
        for (i, (x, y)) in first.iter().zip(s.iter()).enumerate() {
            if i != a {
                if let (Dim::Fixed(p), Dim::Fixed(q)) = (x, y) {
                    if p != q {
                        return Err(format!("Concat inputs differ on axis {i}: {p} vs {q}"));
                    }
                }
            }
        }
        match &s[a] {
            Dim::Fixed(n) => fixed += n,
            Dim::Sym(x) => syms.push(x.clone()),
        }
    }
    out[a] = if syms.is_empty() {
        Dim::Fixed(fixed)
    } else {
        if fixed > 0 {
            syms.push(fixed.to_string());
        }
        Dim::Sym(syms.join("+"))
    };
    Ok(out)
}

/// `Gather`: `data[..axis] ++ indices ++ data[axis+1..]`.
pub(crate) fn gather(data: &[Dim], indices: &[Dim], axis_: i64) -> Result<Vec<Dim>, String> {
    let a = axis(axis_, data.len())?;
    Ok(data[..a].iter().chain(indices).chain(&data[a + 1..]).cloned().collect())
}

/// Reductions (`ReduceMean`, ...); empty `axes` reduces everything.
pub(crate) fn reduce(input: &[Dim], axes_: &[i64], keepdims: bool) -> Result<Vec<Dim>, String> {
    let ax = if axes_.is_empty() { (0..input.len()).collect() } else { axes(axes_, input.len())? };
    Ok(input
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (ax.contains(&i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Fixed(1)),
            (true, false) => None,
        })
        .collect())
}

/// `Unsqueeze`: axes refer to the output rank.
pub(crate) fn unsqueeze(input: &[Dim], axes_: &[i64]) -> Result<Vec<Dim>, String> {
    let ax = axes(axes_, input.len() + axes_.len())?;
    let mut rest = input.iter();
    Ok((0..input.len() + ax.len()).map(|i| if ax.contains(&i) { Dim::Fixed(1) } else { rest.next().cloned().unwrap_or(Dim::Fixed(1)) }).collect())
}

/// `Squeeze`: the named axes must be 1 (or symbolic); empty `axes` drops every fixed 1.
pub(crate) fn squeeze(input: &[Dim], axes_: &[i64]) -> Result<Vec<Dim>, String> {
    if axes_.is_empty() {
        return Ok(input.iter().filter(|d| **d != Dim::Fixed(1)).cloned().collect());
    }
    let ax = axes(axes_, input.len())?;
    for &a in &ax {
        if let Dim::Fixed(n) = input[a] {
            if n != 1 {
                return Err(format!("cannot squeeze axis {a} of size {n}"));
            }
        }
    }
    Ok(input.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, d)| d.clone()).collect())
}

/// A dimension `end` at or above this is "to the end" (callers pass `i64::MAX`).
const OPEN_END: i64 = i64::MAX / 2;

/// `Slice` with constant starts/ends/axes/steps.
pub(crate) fn slice(input: &[Dim], starts: &[i64], ends: &[i64], axes_: &[i64], steps: &[i64], node: &str) -> Result<Vec<Dim>, String> {
    if starts.len() != ends.len() || (!axes_.is_empty() && axes_.len() != starts.len()) || (!steps.is_empty() && steps.len() != starts.len()) {
        return Err(format!("Slice starts {starts:?}, ends {ends:?}, axes {axes_:?}, steps {steps:?} differ in length"));
    }
    let ax = if axes_.is_empty() { (0..starts.len()).collect() } else { axes(axes_, input.len())? };
    let mut out = input.to_vec();
    for (k, &a) in ax.iter().enumerate() {
        let (start, end, step) = (starts[k], ends[k], steps.get(k).copied().unwrap_or(1));
        if step == 0 {
            return Err("Slice step 0".into());
        }
        out[a] = match &input[a] {
            Dim::Fixed(n) => Dim::Fixed(slice_len(*n as i64, start, end, step)),
            Dim::Sym(_) if start == 0 && end >= OPEN_END && step == 1 => input[a].clone(),
            Dim::Sym(_) => unknown(node, a),
        };
    }
    Ok(out)
}

/// Length of `start:end:step` over `n` elements, with ONNX's clamping rules.
fn slice_len(n: i64, start: i64, end: i64, step: i64) -> usize {
    let norm = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let len = if step > 0 {
        let (s, e) = (norm(start).clamp(0, n), norm(end).clamp(0, n));
        (e - s + step - 1).div_euclid(step)
    } else {
        let (s, e) = (norm(start).clamp(0, n - 1), norm(end).clamp(-1, n - 1));
        (s - e + (-step) - 1).div_euclid(-step)
    };
    len.max(0) as usize
}

/// `Split` into parts of the given sizes along `axis`.
pub(crate) fn split(input: &[Dim], axis_: i64, sizes: &[usize]) -> Result<Vec<Vec<Dim>>, String> {
    let a = axis(axis_, input.len())?;
    if let Dim::Fixed(n) = input[a] {
        let total: usize = sizes.iter().sum();
        if total != n {
            return Err(format!("Split sizes {sizes:?} add up to {total}, but axis {a} has {n}"));
        }
    }
    Ok(sizes
        .iter()
        .map(|&s| {
            let mut o = input.to_vec();
            o[a] = Dim::Fixed(s);
            o
        })
        .collect())
}

/// Spatial output size of a convolution or pooling window.
pub(crate) fn conv_dim(input: usize, kernel: usize, stride: usize, pad: (usize, usize), dilation: usize) -> Result<usize, String> {
    let span = dilation * (kernel.max(1) - 1) + 1;
    let padded = input + pad.0 + pad.1;
    if padded < span {
        return Err(format!("kernel span {span} is larger than the padded input {padded}"));
    }
    Ok((padded - span) / stride.max(1) + 1)
}

/// Spatial output size of a transposed convolution.
pub(crate) fn conv_transpose_dim(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: (usize, usize),
    dilation: usize,
    output_padding: usize,
) -> Result<usize, String> {
    let full = stride * input.saturating_sub(1) + output_padding + dilation * (kernel.max(1) - 1) + 1;
    full.checked_sub(pad.0 + pad.1).ok_or_else(|| format!("pads {pad:?} remove more than the output {full}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dims;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast(&[&dims!["b", 1, 4], &dims![3, 1]]).unwrap(), dims!["b", 3, 4]);
        assert_eq!(broadcast(&[&dims!["s"], &dims![1]]).unwrap(), dims!["s"]);
        assert_eq!(broadcast(&[&dims![], &dims![2, 2]]).unwrap(), dims![2, 2]);
        assert!(broadcast(&[&dims![3], &dims![4]]).is_err());
    }

    #[test]
    fn matmul_shapes() {
        assert_eq!(matmul(&dims!["b", "s", 8], &dims![8, 4]).unwrap(), dims!["b", "s", 4]);
        assert_eq!(matmul(&dims![2, 1, 3, 5], &dims![4, 5, 6]).unwrap(), dims![2, 4, 3, 6]);
        assert_eq!(matmul(&dims![5], &dims![5, 6]).unwrap(), dims![6]);
        assert_eq!(matmul(&dims![3, 5], &dims![5]).unwrap(), dims![3]);
        assert!(matmul(&dims![3, 5], &dims![4, 6]).is_err());
    }

    #[test]
    fn reshape_shapes() {
        assert_eq!(reshape(&dims!["b", "s", 64], &[0, 0, 4, 16], "n").unwrap(), dims!["b", "s", 4, 16]);
        assert_eq!(reshape(&dims!["b", "s", 64], &[-1, 64], "n").unwrap(), dims!["b*s", 64]);
        assert_eq!(reshape(&dims!["b", 4, 16], &[0, -1], "n").unwrap(), dims!["b", 64]);
        assert_eq!(reshape(&dims![2, 3, 4], &[-1, 4], "n").unwrap(), dims![6, 4]);
        assert_eq!(reshape(&dims!["b", 6], &[-1, 4], "n").unwrap(), dims!["n:0", 4]);
        assert!(reshape(&dims![2, 3], &[4, 2], "n").is_err());
        assert!(reshape(&dims![2, 3], &[-1, 4], "n").is_err());
        assert!(reshape(&dims![2, 3], &[-1, -1], "n").is_err());
    }

    #[test]
    fn array_shapes() {
        assert_eq!(transpose(&dims!["b", "s", 4, 16], &[0, 2, 1, 3]).unwrap(), dims!["b", 4, "s", 16]);
        assert_eq!(concat(&[&dims!["b", "p", 8], &dims!["b", "s", 8]], 1).unwrap(), dims!["b", "p+s", 8]);
        assert_eq!(concat(&[&dims![2, 3], &dims![2, 5]], -1).unwrap(), dims![2, 8]);
        assert!(concat(&[&dims![2, 3], &dims![3, 5]], 1).is_err());
        assert_eq!(gather(&dims![100, 16], &dims!["b", "s"], 0).unwrap(), dims!["b", "s", 16]);
        assert_eq!(gather(&dims!["b", "s", 16], &dims![], 1).unwrap(), dims!["b", 16]);
        assert_eq!(reduce(&dims!["b", "s", 16], &[-1], true).unwrap(), dims!["b", "s", 1]);
        assert_eq!(reduce(&dims!["b", "s", 16], &[1, 2], false).unwrap(), dims!["b"]);
        assert_eq!(unsqueeze(&dims!["b", "s"], &[1, -1]).unwrap(), dims!["b", 1, "s", 1]);
        assert_eq!(squeeze(&dims!["b", 1, "s", 1], &[1]).unwrap(), dims!["b", "s", 1]);
        assert!(squeeze(&dims!["b", 2], &[1]).is_err());
        assert_eq!(split(&dims!["b", 12], -1, &[4, 8]).unwrap(), vec![dims!["b", 4], dims!["b", 8]]);
        assert!(split(&dims!["b", 12], -1, &[4, 4]).is_err());
    }

    #[test]
    fn slice_shapes() {
        assert_eq!(slice(&dims![10, "s"], &[2], &[i64::MAX], &[0], &[], "n").unwrap(), dims![8, "s"]);
        assert_eq!(slice(&dims![10], &[-3], &[-1], &[], &[], "n").unwrap(), dims![2]);
        assert_eq!(slice(&dims![10], &[-1], &[i64::MIN], &[], &[-1], "n").unwrap(), dims![10]);
        assert_eq!(slice(&dims![10], &[0], &[10], &[], &[3], "n").unwrap(), dims![4]);
        assert_eq!(slice(&dims!["b", "s", 8], &[0], &[i64::MAX], &[1], &[], "n").unwrap(), dims!["b", "s", 8]);
        assert_eq!(slice(&dims!["b", "s", 8], &[-1], &[i64::MAX], &[1], &[], "n").unwrap(), dims!["b", "n:1", 8]);
    }

    #[test]
    fn conv_sizes() {
        assert_eq!(conv_dim(384, 14, 14, (0, 0), 1).unwrap(), 27);
        assert_eq!(conv_dim(5, 3, 1, (1, 1), 1).unwrap(), 5);
        assert_eq!(conv_dim(7, 3, 2, (1, 1), 2).unwrap(), 3);
        assert_eq!(conv_transpose_dim(4, 2, 2, (0, 0), 1, 0).unwrap(), 8);
        assert_eq!(conv_transpose_dim(4, 3, 2, (1, 1), 1, 1).unwrap(), 8);
    }
}
