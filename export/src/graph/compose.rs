//! Composing graphs: [`GraphBuilder::absorb`] inlines one builder's graph into another, as the
//! runtime chains the bundle's graphs (a training graph is the exporter's graphs composed).
//! A child module of the builder, so it can move nodes, values and constants without copies
//! of the bookkeeping.

use std::collections::HashMap;

use super::{GraphBuilder, Initializer};
use crate::graph::Value;

impl GraphBuilder {
    /// Inlines graph `other` into this one, as the runtime chains separate graphs: each of
    /// `other`'s inputs named in `bind` reads the given value of this graph instead; its other
    /// inputs become inputs of this graph (or reuse an input of the same name). Initializers
    /// and constants of the same name are shared (the same checkpoint tensor is one weight).
    /// Returns `other`'s outputs by name, as values of this graph. Node and value names keep
    /// their scopes, which are unique per model family; a clash is recorded as a problem.
    ///
    /// ```text
    /// self ── bound value ──▶ [ other's nodes ] ──▶ other's outputs (plain values here)
    /// ```
    pub fn absorb(&mut self, other: GraphBuilder, bind: &[(&str, &Value)]) -> HashMap<String, Value> {
        self.absorb_instance(other, bind, None)
    }

    /// [`absorb`](Self::absorb) for a graph inlined more than once (a recurrent step unrolled
    /// over frames): every node and node output of `other` is renamed `<instance>/<name>`, so
    /// the copies do not clash, while its initializers and constants are still shared by name
    /// (every copy reads the same weights, and their gradients add up).
    pub fn absorb_instance(&mut self, other: GraphBuilder, bind: &[(&str, &Value)], instance: Option<&str>) -> HashMap<String, Value> {
        let prefixed = |name: &str| match instance {
            Some(p) => format!("{p}/{name}"),
            None => name.to_string(),
        };
        let mut rename: HashMap<String, String> = HashMap::new();
        for input in &other.inputs {
            match bind.iter().find(|(name, _)| *name == input.name()) {
                Some((_, value)) => {
                    if value.dtype() != input.dtype() || value.rank() != input.rank() {
                        self.problem(format!("absorb `{}`: input `{}` is {input:?}, bound to {value:?}", other.name, input.name()));
                    }
                    rename.insert(input.name().to_string(), value.name().to_string());
                }
                None => {
                    if !self.inputs.iter().any(|v| v.name() == input.name()) {
                        self.input(input.name(), input.dtype(), input.shape().to_vec());
                    }
                }
            }
        }
        for (name, _) in bind {
            if !other.inputs.iter().any(|v| v.name() == *name) {
                self.problem(format!("absorb `{}`: it has no input `{name}` to bind", other.name));
            }
        }
        for (name, (c, v)) in other.constants {
            if !self.constants.contains_key(&name) {
                self.initializers.push(Initializer { value: v.clone(), data: c.clone(), inline: true });
                self.value_names.insert(name.clone(), None);
                self.constants.insert(name, (c, v));
            }
        }
        for init in other.initializers {
            if init.inline {
                continue;
            }
            if let Some(mine) = self.initializers.iter().find(|i| i.value.name() == init.value.name()) {
                // One checkpoint tensor, one weight; the same name in another layout (a tied LM
                // head stored transposed) cannot share it.
                if mine.value.shape() != init.value.shape()
                    || mine.value.dtype() != init.value.dtype()
                    || mine.data.transposed_from_checkpoint() != init.data.transposed_from_checkpoint()
                {
                    self.problem(format!("absorb `{}`: initializer `{}` is {:?} here and {:?} there", other.name, init.value.name(), mine.value, init.value));
                }
                continue;
            }
            if self.value_names.contains_key(init.value.name()) {
                self.problem(format!("absorb `{}`: initializer `{}` clashes with a value of this graph", other.name, init.value.name()));
                continue;
            }
            self.value_names.insert(init.value.name().to_string(), None);
            self.initializers.push(init);
        }
        for v in other.values {
            let slot = self.values.len();
            let name = self.claim_value_name(prefixed(v.name()), Some(slot));
            if instance.is_some() {
                rename.insert(v.name().to_string(), name.clone());
            }
            self.values.push(Value::new(name, v.dtype(), v.shape().to_vec()));
        }
        let renamed = |n: &String| rename.get(n).cloned().unwrap_or_else(|| n.clone());
        for mut node in other.nodes {
            node.name = prefixed(&node.name);
            node.outputs = node.outputs.iter().map(|n| if n.is_empty() { n.clone() } else { renamed(n) }).collect();
            if !self.node_names.insert(node.name.clone()) {
                self.problem(format!("absorb `{}`: the node name `{}` is used twice", other.name, node.name));
            }
            node.inputs = node.inputs.iter().map(renamed).collect();
            for (domain, version) in &other.domains {
                self.domains.entry(domain.clone()).or_insert(*version);
            }
            self.nodes.push(node);
        }
        self.problems.extend(other.problems.into_iter().map(|p| format!("absorbed `{}`: {p}", other.name)));
        other.outputs.iter().map(|o| (o.name().to_string(), self.node_value(&renamed(&o.name().to_string())).cloned().unwrap_or_else(|| o.clone()))).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::dims;
    use crate::graph::GraphBuilder;
    use crate::tensor::{DType, F32Tensor};

    #[test]
    fn absorb_binds_inputs_and_shares_weights_and_constants() {
        let w = Arc::new(F32Tensor::new(vec![2], vec![1.0, 2.0]));
        let mut inner = GraphBuilder::new("inner");
        let x = inner.input("x", DType::F32, [2usize]);
        let extra = inner.input("extra", DType::F32, [2usize]);
        let weight = inner.initializer("shared.weight", w.clone(), DType::F32);
        let mut s = inner.scope("inner");
        let y = s.mul("scale", &x, &weight);
        let y = s.add_scalar("shift", &y, 1.0);
        let y = s.add("plus_extra", &y, &extra);
        inner.output("y", &y);

        let mut g = GraphBuilder::new("outer");
        let a = g.input("a", DType::F32, [2usize]);
        g.initializer("shared.weight", w, DType::F32);
        let one = g.scalar(DType::F32, 1.0);
        let a = g.scope("outer").add("plus_one", &a, &one);
        let outs = g.absorb(inner, &[("x", &a)]);
        let y = outs["y"].clone();
        assert_eq!(y.shape(), &dims![2][..]);
        g.output("out", &y);
        g.check().unwrap();
        assert_eq!(g.inputs().iter().map(|v| v.name()).collect::<Vec<_>>(), ["a", "extra"]);
        assert_eq!(g.initializers().iter().filter(|i| i.value.name() == "shared.weight").count(), 1);
        assert_eq!(g.initializers().iter().filter(|i| i.value.name() == "const/f32/1.0").count(), 1);
        let scale = g.nodes().iter().find(|n| n.name == "inner/scale").unwrap();
        assert_eq!(scale.inputs[0], "outer/plus_one/output_0");

        // Two instances of one graph: distinct nodes, one shared weight.
        let twice = |tag: &str| {
            let mut step = GraphBuilder::new("step");
            let x = step.input("x", DType::F32, [2usize]);
            let weight = step.initializer("shared.weight", Arc::new(F32Tensor::new(vec![2], vec![1.0, 2.0])), DType::F32);
            let y = step.scope("step").mul(tag, &x, &weight);
            step.output("y", &y);
            step
        };
        let mut chain = GraphBuilder::new("chain");
        let mut x = chain.input("x0", DType::F32, [2usize]);
        for t in 0..3 {
            x = chain.absorb_instance(twice("scale"), &[("x", &x)], Some(&format!("frame{t}")))["y"].clone();
        }
        chain.output("y", &x);
        chain.check().unwrap();
        assert_eq!(chain.initializers().iter().filter(|i| i.value.name() == "shared.weight").count(), 1);
        let names: Vec<&str> = chain.nodes().iter().map(|n| n.name.as_str()).collect();
        assert!(names.contains(&"frame0/step/scale") && names.contains(&"frame2/step/scale"), "{names:?}");
        let last = chain.nodes().iter().find(|n| n.name == "frame2/step/scale").unwrap();
        assert_eq!(last.inputs, ["frame1/y", "shared.weight"]);

        let mut bad = GraphBuilder::new("bad");
        let other = GraphBuilder::new("other");
        let v = bad.input("v", DType::F32, [1usize]);
        bad.absorb(other, &[("nope", &v)]);
        assert!(bad.check().unwrap_err().to_string().contains("no input `nope`"));
    }
}
