//! Rewriting a built graph: [`GraphBuilder::insert_on_edge`] puts new nodes between a value and
//! the nodes that read it (the training path's LoRA adapters, docs/training.md §3.1). A child
//! module of the builder, so it can reorder nodes without exposing them mutably.

use std::collections::HashSet;

use super::GraphBuilder;
use crate::graph::Value;

impl GraphBuilder {
    /// Inserts a subgraph on the edge leaving `value`: `build` adds nodes (reading `value` and
    /// anything that exists where `value` is produced) and returns their result; the nodes are
    /// placed right after `value`'s producer, so the node list stays topologically ordered, and
    /// every node that read `value` before reads the result instead. Returns the result.
    ///
    /// ```text
    /// before:  producer ─value─▶ consumers
    /// after:   producer ─value─▶ [ build's nodes ] ─result─▶ consumers
    /// ```
    /// A graph output cannot be rerouted (its name is the contract), nor can `build` read a value
    /// produced after `value`; both are recorded as problems.
    pub fn insert_on_edge(&mut self, value: &Value, build: impl FnOnce(&mut GraphBuilder) -> Value) -> Value {
        let producer = self.nodes.iter().position(|n| n.outputs.iter().any(|o| o == value.name()));
        let first_new = self.nodes.len();
        let result = build(self);
        let added: Vec<_> = self.nodes.drain(first_new..).collect();
        let at = producer.map_or(0, |p| p + 1);
        let mut visible: HashSet<&str> = self.nodes[..at].iter().flat_map(|n| n.outputs.iter().map(String::as_str)).collect();
        visible.extend(self.inputs.iter().map(|v| v.name()));
        visible.extend(self.initializers.iter().map(|i| i.value.name()));
        let mut problems = Vec::new();
        for node in &added {
            for input in node.inputs.iter().filter(|i| !i.is_empty()) {
                if !visible.contains(input.as_str()) {
                    problems.push(format!("insert_on_edge `{}`: node `{}` reads `{input}`, which is produced later", value.name(), node.name));
                }
            }
            visible.extend(node.outputs.iter().map(String::as_str));
        }
        if self.outputs.iter().any(|o| o.name() == value.name()) {
            problems.push(format!("insert_on_edge: `{}` is a graph output and cannot be rerouted", value.name()));
        }
        let count = added.len();
        self.nodes.splice(at..at, added);
        for node in &mut self.nodes[at + count..] {
            for input in node.inputs.iter_mut().filter(|i| *i == value.name()) {
                *input = result.name().to_string();
            }
        }
        for p in problems {
            self.problem(p);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::GraphBuilder;
    use crate::tensor::DType;

    #[test]
    fn inserted_nodes_follow_the_producer_and_feed_its_former_consumers() {
        let mut g = GraphBuilder::new("edge");
        let x = g.input("x", DType::F32, [2usize]);
        let y = g.scope("a").add_scalar("shift", &x, 1.0);
        let z = g.scope("b").mul("square", &y, &y);
        let w = g.scope("c").add("sum", &z, &y);
        g.output("w", &w);
        let y2 = g.insert_on_edge(&y, |g| g.scope("edge").mul_scalar("double", &y, 2.0));
        g.check().unwrap();
        let names: Vec<&str> = g.nodes().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(&names[..4], ["a/shift", "edge/double", "b/square", "c/sum"]);
        assert_eq!(g.nodes()[1].inputs[0], y.name(), "the inserted node still reads the original value");
        assert_eq!(g.nodes()[2].inputs, [y2.name(), y2.name()]);
        assert_eq!(g.nodes()[3].inputs[1], y2.name());

        // Reading a value produced after the edge is refused.
        let mut bad = GraphBuilder::new("bad");
        let x = bad.input("x", DType::F32, [2usize]);
        let y = bad.scope("a").add_scalar("shift", &x, 1.0);
        let later = bad.scope("b").mul("square", &y, &y);
        bad.output("later", &later);
        bad.insert_on_edge(&y, |g| g.scope("edge").add("uses_later", &y, &later));
        assert!(bad.check().unwrap_err().to_string().contains("produced later"));
    }
}
