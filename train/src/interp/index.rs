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
        "NonZero" => x.and_then(non_zero),
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
/// Combines the element already in place with an update (or fails on overflow).
type Combine<T> = fn(T, T) -> Result<T, String>;

fn combiner<T: ScatterArith>(a: &NodeArgs) -> Result<Combine<T>, String> {
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
/// `NonZero(x)`: the indices of the non-zero (true) elements, `[rank, count]` in row-major order.
fn non_zero(x: &Tensor) -> OpResult {
    let hits: Vec<Vec<usize>> = match x {
        Tensor::Float(v) => v.indexed_iter().filter(|(_, e)| **e != 0.0).map(|(i, _)| i.slice().to_vec()).collect(),
        Tensor::Int(v) => v.indexed_iter().filter(|(_, e)| **e != 0).map(|(i, _)| i.slice().to_vec()).collect(),
        Tensor::Bool(v) => v.indexed_iter().filter(|(_, e)| **e).map(|(i, _)| i.slice().to_vec()).collect(),
    };
    let rank = x.shape().len();
    let count = hits.len();
    let out = ArrayD::from_shape_fn(IxDyn(&[rank, count]), |ix| hits[ix[1]][ix[0]] as i64);
    one(Tensor::Int(out))
}

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

#[cfg(test)]
mod tests {
    use loc3r_export::graph::{Attr, Dim, GraphBuilder};
    use loc3r_export::DType;

    use crate::interp::testing::{assert_floats, assert_ints, eval, floats, ints, ramp};

    #[test]
    fn gather_takes_negative_indices_on_any_axis() {
        let xv = ramp(12, 0.0, 1.0);
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [3usize, 4]);
        let idx = g.input("idx", DType::I64, [2usize, 2]);
        let mut s = g.scope("t");
        let rows = s.gather("rows", &x, &idx, 0); // [2, 2, 4]
        let cols = s.gather("cols", &x, &idx, -1); // [3, 2, 2]
        let one = s.scalar_i64(-1);
        let last = s.gather("last", &x, &one, 1); // [3]
        let got = eval(&g, &[("x", floats(&[3, 4], &xv)), ("idx", ints(&[2, 2], &[0, -1, 2, 1]))], &[&rows, &cols, &last]);
        let row = |r: usize| (0..4).map(move |c| (r * 4 + c) as f64);
        let want: Vec<f64> = [0, 2, 2, 1].into_iter().flat_map(row).collect();
        assert_floats(&got[0], &[2, 2, 4], &want);
        let want: Vec<f64> = (0..3).flat_map(|r| [0, 3, 2, 1].map(|c| (r * 4 + c) as f64)).collect();
        assert_floats(&got[1], &[3, 2, 2], &want);
        assert_floats(&got[2], &[3], &[3.0, 7.0, 11.0]);
    }

    #[test]
    fn gather_rejects_out_of_range_indices() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [3usize]);
        let i = g.constant_i64(&[3], &[1]);
        let y = g.scope("t").gather("Gather", &x, &i, 0);
        let feeds = [("x".to_string(), floats(&[3], &[1.0, 2.0, 3.0]))].into_iter().collect();
        let err = crate::interp::evaluate(&g, &feeds, &[y.name()]).unwrap_err().to_string();
        assert!(err.contains("t/Gather") && err.contains("index 3 is out of range for an axis of size 3"), "{err}");
    }

    #[test]
    fn gather_elements_and_scatter_elements() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize, 3]);
        let mut s = g.scope("t");
        let idx = s.constant_i64(&[2, 0, -1, 1, 1, 0], &[2, 3]);
        let ge = s.op("GatherElements", "GatherElements", &[&x, &idx], &[("axis", Attr::Int(1))], DType::F32, [2usize, 3]);
        let upd = s.constant_f32(&[10.0, 20.0, 30.0, 40.0, 50.0, 60.0], &[2, 3]);
        let col = s.constant_i64(&[1, 0, 1], &[1, 3]);
        let upd_row = s.constant_f32(&[1.0, 2.0, 3.0], &[1, 3]);
        let set = s.op("ScatterElements", "ScatterElements", &[&x, &col, &upd_row], &[], DType::F32, [2usize, 3]);
        let add = s.op("ScatterAdd", "ScatterElements", &[&x, &idx, &upd], &[("axis", Attr::Int(-1)), ("reduction", "add".into())], DType::F32, [2usize, 3]);
        let got = eval(&g, &[("x", floats(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))], &[&ge, &set, &add]);
        assert_floats(&got[0], &[2, 3], &[3.0, 1.0, 3.0, 5.0, 5.0, 4.0]);
        assert_floats(&got[1], &[2, 3], &[1.0, 2.0, 3.0, 1.0, 5.0, 3.0]);
        // Row 0 gets 10 at col 2, 20 at col 0, 30 at col 2; row 1: 40 at 1, 50 at 1, 60 at 0.
        assert_floats(&got[2], &[2, 3], &[21.0, 2.0, 43.0, 64.0, 95.0, 6.0]);
    }

    #[test]
    fn scatter_nd_and_gather_nd_address_slices() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize, 2, 2]);
        let mut s = g.scope("t");
        let idx = s.constant_i64(&[1, 0, 1, 0, -1, 1], &[3, 2]);
        let upd = s.constant_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
        let set = s.op("ScatterND", "ScatterND", &[&x, &idx, &upd], &[], DType::F32, [2usize, 2, 2]);
        let add = s.op("ScatterAdd", "ScatterND", &[&x, &idx, &upd], &[("reduction", "add".into())], DType::F32, [2usize, 2, 2]);
        let gidx = s.constant_i64(&[1, 1, 0, 0], &[2, 2]);
        let gnd = s.op("GatherND", "GatherND", &[&x, &gidx], &[], DType::F32, [2usize, 2]);
        let xv = ramp(8, 0.0, 1.0);
        let got = eval(&g, &[("x", floats(&[2, 2, 2], &xv))], &[&set, &add, &gnd]);
        assert_floats(&got[0], &[2, 2, 2], &[0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0]);
        assert_floats(&got[1], &[2, 2, 2], &[0.0, 1.0, 2.0, 3.0, 8.0, 11.0, 11.0, 13.0]);
        assert_floats(&got[2], &[2, 2], &[6.0, 7.0, 0.0, 1.0]);
    }

    #[test]
    fn non_zero_lists_coordinates_row_major() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::I64, [2usize, 3]);
        let nz = g.scope("t").op("NonZero", "NonZero", &[&x], &[], DType::I64, [Dim::Fixed(2), Dim::sym("n")]);
        let got = eval(&g, &[("x", ints(&[2, 3], &[0, 4, 0, -1, 0, 2]))], &[&nz]);
        assert_eq!(got[0], ints(&[2, 3], &[0, 1, 1, 1, 0, 2]));
    }

    #[test]
    fn one_hot_on_a_leading_axis_with_negative_indices() {
        let mut g = GraphBuilder::new("t");
        let i = g.input("i", DType::I64, [3usize]);
        let mut s = g.scope("t");
        let depth = s.scalar_i64(3);
        let values = s.constant_i64(&[0, 5], &[2]);
        let oh = s.op("OneHot", "OneHot", &[&i, &depth, &values], &[("axis", Attr::Int(0))], DType::I64, [3usize, 3]);
        let got = eval(&g, &[("i", ints(&[3], &[0, -1, 7]))], &[&oh]);
        // Column j is index j's one-hot vector; 7 is out of range (all off).
        assert_ints(&got[0], &[3, 3], &[5, 0, 0, 0, 0, 0, 0, 5, 0]);
    }
}
