//! Every rule against central finite differences on the f64 interpreter
//! (|analytic − numeric| ≤ 1e-8 + 1e-6·|analytic|), and the rule table against the case list.

use std::collections::HashMap;

use loc3r_export::graph::{Dim, Value};
use loc3r_export::DType;
use ndarray::ArrayD;

use super::cases::{self, CaseBuilder, Init};
use super::{differentiate, supported_ops, Seed};
use crate::check::finite_difference_failures;
use crate::interp::{evaluate, Tensor};

/// SplitMix64: a seeded stream without a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn draw(&mut self, init: Init) -> f64 {
        match init {
            Init::Normal => self.uniform(-1.5, 1.5),
            Init::Positive => self.uniform(0.5, 2.0),
            Init::Avoid(kinks) => loop {
                let x = self.uniform(-1.5, 1.5);
                if kinks.iter().all(|k| (x - k).abs() > 0.1) {
                    break x;
                }
            },
        }
    }
}

fn concrete_shape(v: &Value, sizes: &[(&str, usize)]) -> Vec<usize> {
    v.shape()
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Sym(name) => sizes.iter().find(|(s, _)| s == name).map(|(_, n)| *n).unwrap_or_else(|| panic!("no test size for dim `{name}`")),
        })
        .collect()
}

fn random_array(rng: &mut Rng, shape: &[usize], init: Init) -> ArrayD<f64> {
    let n = shape.iter().product();
    ArrayD::from_shape_vec(shape.to_vec(), (0..n).map(|_| rng.draw(init)).collect()).expect("shape and length agree")
}

/// One case: loss = Σ y ⊙ R with a random projection R fed as an input of y's shape.
pub(crate) struct Prepared {
    pub builder: CaseBuilder,
    pub feeds: HashMap<String, Tensor>,
    pub params: Vec<Value>,
    pub grads: Vec<Value>,
    pub loss: Value,
}

pub(crate) fn prepare(name: &str, case: cases::CaseFn, seed: u64) -> Prepared {
    let mut cb = CaseBuilder::new(&name.replace('/', "_"));
    let y = case(&mut cb);
    let mut rng = Rng::new(seed);
    let mut feeds = HashMap::new();
    for (v, init) in &cb.inits {
        let shape = concrete_shape(v, &cb.sym_sizes);
        feeds.insert(v.name().to_string(), Tensor::Float(random_array(&mut rng, &shape, *init)));
    }
    let y_value = evaluate(&cb.g, &feeds, &[y.name()]).unwrap_or_else(|e| panic!("{name}: forward: {e}"));
    let y_shape = y_value[y.name()].shape().to_vec();
    let projection = cb.g.input("projection", DType::F32, y.shape().to_vec());
    feeds.insert("projection".into(), Tensor::Float(random_array(&mut rng, &y_shape, Init::Normal)));
    let mut s = cb.g.scope("loss");
    let weighted = s.mul("weighted", &y, &projection);
    let loss = s.reduce_sum("sum", &weighted, &[], false);
    let params: Vec<Value> = cb.inits.iter().map(|(v, _)| v.clone()).collect();
    let grads = differentiate(&mut cb.g, &loss, &params, &Seed::One).unwrap_or_else(|e| panic!("{name}: differentiate: {e}"));
    let grads = grads.grads.into_iter().map(|(_, g)| g).collect();
    Prepared { builder: cb, feeds, params, grads, loss }
}

#[test]
fn every_rule_has_a_case_and_every_case_a_rule() {
    let cases = cases::all();
    for op in supported_ops() {
        assert!(cases.iter().any(|(o, _, _)| *o == op), "the {op} rule has no finite-difference case in cases.rs");
    }
    for (op, name, _) in &cases {
        assert!(super::has_rule(op), "case {op}/{name} tests an op without a rule");
    }
}

#[test]
fn every_rule_matches_central_finite_differences_in_f64() {
    let mut failures = Vec::new();
    for (k, (op, name, case)) in cases::all().into_iter().enumerate() {
        let label = format!("{op}/{name}");
        let p = prepare(&label, case, 1000 + k as u64);
        failures.extend(finite_difference_failures(&p.builder.g, &p.feeds, &p.loss, &p.params, &p.grads, &label, usize::MAX));
    }
    assert!(failures.is_empty(), "{} gradient element(s) disagree:\n{}", failures.len(), failures.join("\n"));
}

/// A symbolic dim that might be 1 is unbroadcast in the graph (NonZero over the run-time
/// shapes), not by a guess from the static shapes; the f64 and ORT checks above run it both
/// with the dim broadcasting (m = 1) and not (m = n).
#[test]
fn ambiguous_symbolic_broadcasts_are_resolved_at_run_time() {
    let (_, _, case) = cases::all().into_iter().find(|(op, name, _)| *op == "Add" && name.starts_with("symbolic")).expect("the case exists");
    let p = prepare("ambiguous", case, 1);
    assert!(p.builder.g.nodes().iter().any(|n| n.op_type == "NonZero"), "the run-time unbroadcast was not emitted");
    let (_, _, case) = cases::all().into_iter().find(|(op, _, _)| *op == "MatMul").expect("the case exists");
    let p = prepare("static", case, 1);
    assert!(!p.builder.g.nodes().iter().any(|n| n.op_type == "NonZero"), "static shapes need no run-time unbroadcast");
}
