//! Indexing ops: `Gather`, `GatherElements`, `GatherND`, `ScatterElements`, `ScatterND`,
//! `OneHot`. Negative indices count from the end of their axis; out-of-range indices are
//! errors naming the index.

use ndarray::{ArrayD, Axis, Dimension, IxDyn};

use super::args::{axis, one, NodeArgs};
use super::tensor::{by_kind, from_vec, reshape, Elem, Tensor};
use super::OpResult;

/// Runs `a` if it is an indexing op.
pub(super) fn run(a: &NodeArgs) -> Option<OpResult> {
    let x = a.input(0);
    Some(match a.op() {
        "Gather" => x.and_then(|x| by_kind!(x, T => gather::<T>(a))),
        "GatherElements" => x.and_then(|x| by_kind!(x, T => gather_elements::<T>(a))),
        "GatherND" => x.and_then(|x| by_kind!(x, T => gather_nd::<T>(a))),
        "ScatterElements" => x.and_then(|x| by_kind!(x, T => scatter_elements::<T>(a))),
        "ScatterND" => x.and_then(|x| by_kind!(x, T => scatter_nd::<T>(a))),
        "OneHot" => a.input(2).and_then(|v| by_kind!(v, T => one_hot::<T>(a))),
        _ => return None,
    })
}

/// `i` as a position on an axis of `dim` (negative counts from the end).
fn position(i: i64, dim: usize) -> Result<usize, String> {
    let d = dim as i64;
    let p = if i < 0 { i + d } else { i };
    if (0..d).contains(&p) {
        Ok(p as usize)
    } else {
        Err(format!("index {i} is out of range for an axis of size {dim}"))
    }
}

fn gather<T: Elem>(a: &NodeArgs) -> OpResult {
    let data = a.typed::<T>(0)?;
    let indices = a.typed::<i64>(1)?;
    let ax = axis(a.int_attr("axis", 0)?, data.ndim())?;
    let picks: Vec<usize> = indices.iter().map(|&i| position(i, data.shape()[ax])).collect::<Result<_, _>>()?;
    let picked = data.select(Axis(ax), &picks);
    let shape: Vec<usize> = data.shape()[..ax].iter().chain(indices.shape()).chain(&data.shape()[ax + 1..]).copied().collect();
    one(T::wrap(reshape(&picked, &shape)?))
}

/// `index` with its entry on `ax` replaced by the position `i`.
fn along(index: &[usize], ax: usize, i: usize) -> Vec<usize> {
    let mut v = index.to_vec();
    v[ax] = i;
    v
}

fn gather_elements<T: Elem>(a: &NodeArgs) -> OpResult {
    let data = a.typed::<T>(0)?;
    let indices = a.typed::<i64>(1)?;
    let ax = axis(a.int_attr("axis", 0)?, data.ndim())?;
    if indices.ndim() != data.ndim() {
        return Err(format!("indices {:?} must have the rank of data {:?}", indices.shape(), data.shape()));
    }
    let mut out = Vec::with_capacity(indices.len());
    for (ix, &i) in indices.indexed_iter() {
        let src = along(ix.slice(), ax, position(i, data.shape()[ax])?);
        out.push(*data.get(IxDyn(&src)).ok_or_else(|| format!("indices {:?} reach outside data {:?}", indices.shape(), data.shape()))?);
    }
    one(T::wrap(from_vec(indices.shape(), out)?))
}

/// How `Scatter*` combines an update with the element already there.
fn combiner<T: ScatterArith>(a: &NodeArgs) -> Result<fn(T, T) -> Result<T, String>, String> {
    match a.string_attr("reduction", "none")? {
        "none" => Ok(|_, u| Ok(u)),
        "add" => Ok(|x, u| T::add(x, u)),
        "mul" => Ok(|x, u| T::mul(x, u)),
        "max" => Ok(|x, u| Ok(if T::greater(u, x) { u } else { x })),
        "min" => Ok(|x, u| Ok(if T::greater(x, u) { u } else { x })),
        other => Err(format!("reduction `{other}` is not one of none, add, mul, max, min")),
    }
}

/// Arithmetic the scatter reductions need, per element kind.
trait ScatterArith: Elem {
    fn add(x: Self, y: Self) -> Result<Self, String>;
    fn mul(x: Self, y: Self) -> Result<Self, String>;
    fn greater(x: Self, y: Self) -> bool;
}
impl ScatterArith for f64 {
    fn add(x: f64, y: f64) -> Result<f64, String> {
        Ok(x + y)
    }
    fn mul(x: f64, y: f64) -> Result<f64, String> {
        Ok(x * y)
    }
    fn greater(x: f64, y: f64) -> bool {
        x > y
    }
}
impl ScatterArith for i64 {
    fn add(x: i64, y: i64) -> Result<i64, String> {
        x.checked_add(y).ok_or_else(|| "integer overflow".into())
    }
    fn mul(x: i64, y: i64) -> Result<i64, String> {
        x.checked_mul(y).ok_or_else(|| "integer overflow".into())
    }
    fn greater(x: i64, y: i64) -> bool {
        x > y
    }
}
impl ScatterArith for bool {
    fn add(x: bool, y: bool) -> Result<bool, String> {
        Ok(x || y)
    }
    fn mul(x: bool, y: bool) -> Result<bool, String> {
        Ok(x && y)
    }
    fn greater(x: bool, y: bool) -> bool {
        x & !y
    }
}

fn scatter_elements<T: ScatterArith>(a: &NodeArgs) -> OpResult {
    let mut out = a.typed::<T>(0)?.clone();
    let indices = a.typed::<i64>(1)?;
    let updates = a.typed::<T>(2)?;
    let ax = axis(a.int_attr("axis", 0)?, out.ndim())?;
    let combine = combiner::<T>(a)?;
    if indices.shape() != updates.shape() || indices.ndim() != out.ndim() {
        return Err(format!("indices {:?} and updates {:?} must share a shape of the data's rank {}", indices.shape(), updates.shape(), out.ndim()));
    }
    let dim = out.shape()[ax];
    for ((ix, &i), &u) in indices.indexed_iter().zip(updates.iter()) {
        let dst = along(ix.slice(), ax, position(i, dim)?);
        let slot = out.get_mut(IxDyn(&dst)).ok_or_else(|| format!("indices {:?} reach outside data", indices.shape()))?;
        *slot = combine(*slot, u)?;
    }
    one(T::wrap(out))
}

/// Flat row-major offsets of the `data` slices addressed by `indices [.., k]`, and the
/// slice length (the product of `data`'s dims after `k`).
fn nd_offsets(data_shape: &[usize], indices: &ArrayD<i64>) -> Result<(Vec<usize>, usize), String> {
    let k = *indices.shape().last().ok_or("indices must have rank 1 or more")?;
    if k > data_shape.len() {
        return Err(format!("index tuples of length {k} exceed the data rank {}", data_shape.len()));
    }
    let slice: usize = data_shape[k..].iter().product();
    let flat: Vec<i64> = indices.iter().copied().collect();
    let mut offsets = Vec::new();
    if k == 0 {
        offsets.resize(indices.len(), 0);
        return Ok((offsets, slice));
    }
    for tuple in flat.chunks(k) {
        let mut off = 0;
        for (d, &i) in tuple.iter().enumerate() {
            off = off * data_shape[d] + position(i, data_shape[d])?;
        }
        offsets.push(off * slice);
    }
    Ok((offsets, slice))
}

fn gather_nd<T: Elem>(a: &NodeArgs) -> OpResult {
    let data = a.typed::<T>(0)?;
    let indices = a.typed::<i64>(1)?;
    if a.int_attr("batch_dims", 0)? != 0 {
        return Err("GatherND with batch_dims is not supported by the reference interpreter".into());
    }
    let (offsets, slice) = nd_offsets(data.shape(), indices)?;
    let flat: Vec<T> = data.iter().copied().collect();
    let out: Vec<T> = offsets.iter().flat_map(|&o| flat[o..o + slice].iter().copied()).collect();
    let k = indices.shape()[indices.ndim() - 1];
    let shape: Vec<usize> = indices.shape()[..indices.ndim() - 1].iter().chain(&data.shape()[k..]).copied().collect();
    one(T::wrap(from_vec(&shape, out)?))
}

fn scatter_nd<T: ScatterArith>(a: &NodeArgs) -> OpResult {
    let data = a.typed::<T>(0)?;
    let indices = a.typed::<i64>(1)?;
    let updates = a.typed::<T>(2)?;
    let combine = combiner::<T>(a)?;
    let (offsets, slice) = nd_offsets(data.shape(), indices)?;
    let k = indices.shape()[indices.ndim() - 1];
    let want: Vec<usize> = indices.shape()[..indices.ndim() - 1].iter().chain(&data.shape()[k..]).copied().collect();
    if updates.shape() != want.as_slice() {
        return Err(format!("updates have shape {:?}, the indices and data need {want:?}", updates.shape()));
    }
    let mut out: Vec<T> = data.iter().copied().collect();
    let upd: Vec<T> = updates.iter().copied().collect();
    for (j, &o) in offsets.iter().enumerate() {
        for e in 0..slice {
            out[o + e] = combine(out[o + e], upd[j * slice + e])?;
        }
    }
    one(T::wrap(from_vec(data.shape(), out)?))
}

/// `OneHot(indices, depth, values=[off, on])`: a new axis `axis` of length `depth`;
/// indices in `[-depth, depth)` (negative counts from the end), others give all `off`.
fn one_hot<T: Elem>(a: &NodeArgs) -> OpResult {
    let indices: ArrayD<i64> = match a.input(0)? {
        Tensor::Float(x) => x.mapv(|v| v.trunc() as i64),
        Tensor::Int(x) => x.clone(),
        Tensor::Bool(_) => return Err("OneHot indices must be numeric".into()),
    };
    let depth = match a.input(1)? {
        Tensor::Float(x) if x.len() == 1 => x.iter().next().map_or(0, |v| v.trunc() as i64),
        Tensor::Int(x) if x.len() == 1 => x.iter().next().copied().unwrap_or(0),
        _ => return Err("OneHot depth must be one number".into()),
    };
    if depth < 1 {
        return Err(format!("OneHot depth {depth} must be positive"));
    }
    let values = a.typed::<T>(2)?;
    let [off, on] = values.iter().copied().collect::<Vec<_>>()[..] else {
        return Err(format!("OneHot values must hold [off, on], got {} elements", values.len()));
    };
    let ax = axis(a.int_attr("axis", -1)?, indices.ndim() + 1)?;
    let mut shape = indices.shape().to_vec();
    shape.insert(ax, depth as usize);
    let out = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
        let mut src = ix.slice().to_vec();
        let d = src.remove(ax) as i64;
        let i = indices[IxDyn(&src)];
        let i = if i < 0 { i + depth } else { i };
        if i == d {
            on
        } else {
            off
        }
    });
    one(T::wrap(out))
}
