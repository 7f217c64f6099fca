//! The small vocabulary VJP rules are written in: the node's inputs `i(k)`, outputs `o(k)`,
//! incoming gradients `go(k)`, whether input `k` needs a gradient `needs(k)`, and `set(k, g)`
//! for the gradient it produces (the same vocabulary as ONNX Runtime's `I`, `O`, `GO`, `GI`).
//! Emission goes through the exporter's [`Scope`] wrappers, so backward nodes get the same
//! names, dtypes and shape checks as forward ones.

use loc3r_export::graph::{Attr, Dim, GraphBuilder, Node, Scope, Value};
use loc3r_export::DType;

pub(crate) struct Vjp<'g> {
    pub s: Scope<'g>,
    node: Node,
    inputs: Vec<Option<Value>>,
    outputs: Vec<Value>,
    grads_out: Vec<Option<Value>>,
    needed: Vec<bool>,
    produced: Vec<Option<Value>>,
}

impl<'g> Vjp<'g> {
    pub fn new(
        g: &'g mut GraphBuilder,
        node: &Node,
        inputs: Vec<Option<Value>>,
        outputs: Vec<Value>,
        grads_out: Vec<Option<Value>>,
        needed: Vec<bool>,
    ) -> Vjp<'g> {
        let produced = vec![None; inputs.len()];
        Vjp { s: g.scope(format!("grad/{}", node.name)), node: node.clone(), inputs, outputs, grads_out, needed, produced }
    }

    /// Forward input `k` (a rule only asks for inputs the op requires).
    pub fn i(&self, k: usize) -> Result<Value, String> {
        self.inputs.get(k).cloned().flatten().ok_or_else(|| format!("input {k} is missing"))
    }

    /// Forward input `k`, if given.
    pub fn i_opt(&self, k: usize) -> Option<Value> {
        self.inputs.get(k).cloned().flatten()
    }

    /// Forward output `k`.
    pub fn o(&self, k: usize) -> Value {
        self.outputs[k].clone()
    }

    pub fn output_count(&self) -> usize {
        self.outputs.len()
    }

    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// The gradient arriving at output `k`, if any reached it.
    pub fn go(&self, k: usize) -> Option<Value> {
        self.grads_out.get(k).cloned().flatten()
    }

    /// The gradient of the single output (every single-output rule starts here).
    pub fn g(&self) -> Value {
        self.go(0).expect("a node is only visited when its output received a gradient")
    }

    /// Whether input `k` needs a gradient.
    pub fn needs(&self, k: usize) -> bool {
        self.needed.get(k).copied().unwrap_or(false)
    }

    /// Records the gradient of input `k` (ignored when it needs none).
    pub fn set(&mut self, k: usize, grad: Value) {
        if self.needs(k) {
            self.produced[k] = Some(grad);
        }
    }

    /// The produced gradients by input name, each checked against its input's dtype and rank.
    pub fn finish(self) -> Result<Vec<(String, Value)>, String> {
        let mut out = Vec::new();
        for (k, grad) in self.produced.into_iter().enumerate() {
            let Some(grad) = grad else {
                if self.needed[k] {
                    return Err(format!("the rule produced no gradient for input {k} (`{}`)", self.node.inputs[k]));
                }
                continue;
            };
            let input = self.inputs[k].as_ref().expect("a needed input exists");
            if grad.dtype() != input.dtype() || grad.rank() != input.rank() {
                return Err(format!("gradient {grad:?} does not match input {input:?} (a bug in the rule)"));
            }
            out.push((self.node.inputs[k].clone(), grad));
        }
        Ok(out)
    }

    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.node.attrs.iter().find(|(k, _)| k == name).map(|(_, a)| a)
    }

    pub fn attr_int(&self, name: &str, default: i64) -> i64 {
        match self.attr(name) {
            Some(Attr::Int(v)) => *v,
            _ => default,
        }
    }

    pub fn attr_float(&self, name: &str, default: f32) -> f32 {
        match self.attr(name) {
            Some(Attr::Float(v)) => *v,
            _ => default,
        }
    }

    pub fn attr_ints(&self, name: &str) -> Option<Vec<i64>> {
        match self.attr(name) {
            Some(Attr::Ints(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// The values of an integer constant input (axes, split sizes, slice bounds).
    pub fn const_ints(&self, k: usize) -> Option<Vec<i64>> {
        let v = self.i_opt(k)?;
        self.s.const_ints(&v).map(<[i64]>::to_vec)
    }

    /// A scalar of `dtype`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> Value {
        self.s.scalar(dtype, v)
    }

    /// Declares that `v` has `like`'s shape (after a Reshape/Expand to `Shape(like)`).
    pub fn shaped_like(&mut self, v: &Value, like: &Value) -> Value {
        self.s.refine_shape(v, like.shape().to_vec())
    }

    /// `Reshape(t, shape(like))`, with a constant target when `like`'s shape is fixed.
    pub fn reshape_like(&mut self, step: &str, t: &Value, like: &Value) -> Value {
        if t.shape() == like.shape() {
            return t.clone();
        }
        let r = match like.fixed_shape() {
            Some(shape) => self.s.reshape(step, t, shape.iter().map(|&d| d as i64).collect::<Vec<_>>()),
            None => {
                let shape = self.s.shape(&format!("{step}/shape"), like);
                self.s.reshape(step, t, &shape)
            }
        };
        self.shaped_like(&r, like)
    }

    /// `Expand(t, shape(like))`.
    pub fn expand_like(&mut self, step: &str, t: &Value, like: &Value) -> Value {
        let r = match like.fixed_shape() {
            Some(shape) => self.s.expand(step, t, shape.iter().map(|&d| d as i64).collect::<Vec<_>>()),
            None => {
                let shape = self.s.shape(&format!("{step}/shape"), like);
                self.s.expand(step, t, &shape)
            }
        };
        self.shaped_like(&r, like)
    }

    /// Zeros shaped like `like`.
    pub fn zeros_like(&mut self, step: &str, like: &Value) -> Value {
        let z = match like.fixed_shape() {
            Some(shape) => self.s.constant_of_shape(step, shape.iter().map(|&d| d as i64).collect::<Vec<_>>(), like.dtype(), 0.0),
            None => {
                let shape = self.s.shape(&format!("{step}/shape"), like);
                self.s.constant_of_shape(step, &shape, like.dtype(), 0.0)
            }
        };
        self.shaped_like(&z, like)
    }

    /// The unbroadcast `U(grad, x)`: sums `grad` (shaped like a broadcast result) over the
    /// axes `x` was broadcast along, giving `x`'s shape.
    ///
    /// ```text
    /// r = rank(grad) − rank(x)
    /// axes = {0..r} ∪ {i ≥ r : x.dim[i−r] = 1 ≠ grad.dim[i]}
    /// grad ─ReduceSum(axes, keepdims=1)─▶ ─Reshape(shape(x))─▶
    /// ```
    /// Decided from the static shapes. When a symbolic dim of `x` might be 1 at run time where
    /// `grad`'s is not (the builder cannot tell), the axes are computed in the graph instead:
    /// `NonZero(shape(x) == 1 ∧ shape(grad) ≠ 1)`, reduced with `noop_with_empty_axes`.
    pub fn unbroadcast(&mut self, step: &str, grad: &Value, x: &Value) -> Result<Value, String> {
        let (gr, xr) = (grad.rank(), x.rank());
        if xr > gr {
            return Err(format!("cannot unbroadcast {grad:?} to the larger {x:?}"));
        }
        let r = gr - xr;
        let mut axes: Vec<i64> = (0..r as i64).collect();
        let mut ambiguous = false;
        for i in r..gr {
            let (xd, gd) = (&x.shape()[i - r], &grad.shape()[i]);
            match (xd, gd) {
                _ if xd == gd => {}
                (Dim::Fixed(1), _) => axes.push(i as i64),
                (Dim::Fixed(a), Dim::Fixed(b)) => return Err(format!("axis {i}: {grad:?} cannot come from broadcasting {x:?} ({a} vs {b})")),
                (Dim::Fixed(_), Dim::Sym(_)) => {} // x has size n > 1 there, so grad's symbol is n too
                (Dim::Sym(_), _) => ambiguous = true,
            }
        }
        if ambiguous {
            return Ok(self.unbroadcast_at_run_time(step, grad, x));
        }
        if axes.is_empty() {
            return Ok(grad.clone());
        }
        let summed = self.s.reduce_sum(step, grad, &axes, true);
        Ok(self.reshape_like(&format!("{step}/reshape"), &summed, x))
    }

    /// ```text
    /// shape(x), left-padded with 1 to rank(grad) ─Equal 1─┐
    /// shape(grad) ─Equal 1─Not────────────────────────────And─NonZero─Reshape[-1]─▶ axes
    /// grad ─ReduceSum(axes, keepdims=1, noop_with_empty_axes=1)─Reshape(shape(x))─▶
    /// ```
    fn unbroadcast_at_run_time(&mut self, step: &str, grad: &Value, x: &Value) -> Value {
        let r = grad.rank() - x.rank();
        let s = &mut self.s;
        let mut xs = s.shape(&format!("{step}/x_shape"), x);
        if r > 0 {
            let ones = s.ints(&vec![1; r]);
            xs = s.concat(&format!("{step}/x_shape_padded"), &[&ones, &xs], 0);
        }
        let gs = s.shape(&format!("{step}/grad_shape"), grad);
        let one = s.scalar_i64(1);
        let x_one = s.equal(&format!("{step}/x_is_one"), &xs, &one);
        let g_one = s.equal(&format!("{step}/grad_is_one"), &gs, &one);
        let g_more = s.not(&format!("{step}/grad_is_more"), &g_one);
        let reduce = s.and(&format!("{step}/broadcast_axes"), &x_one, &g_more);
        let count = Dim::sym(format!("{}:count", s.node_name(&format!("{step}/axis_indices"))));
        let idx = s.op(&format!("{step}/axis_indices"), "NonZero", &[&reduce], &[], DType::I64, [Dim::Fixed(1), count]);
        let axes = s.reshape(&format!("{step}/axes"), &idx, [-1i64]);
        let summed = s.op(
            &format!("{step}/ReduceSum"),
            "ReduceSum",
            &[grad, &axes],
            &[("keepdims", Attr::Int(1)), ("noop_with_empty_axes", Attr::Int(1))],
            grad.dtype(),
            (0..grad.rank()).map(|i| Dim::sym(format!("{}:{i}", s.node_name(&format!("{step}/ReduceSum"))))).collect::<Vec<_>>(),
        );
        self.reshape_like(&format!("{step}/reshape"), &summed, x)
    }
}
