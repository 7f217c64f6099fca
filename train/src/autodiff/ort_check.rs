//! Every finite-difference case's training graph also runs on ONNX Runtime (CPU, f32): the
//! analytic gradients ORT computes must equal the f64 interpreter's within
//! |Δ| ≤ 1e-5·max|g| + 1e-4·|g| (analytic against analytic, so no finite-difference noise).
//! This is what shows the emitted backward nodes are valid ONNX that a real runtime accepts.

use std::collections::HashMap;

use ndarray::ArrayD;
use ort::session::Session;
use ort::value::{DynValue, Tensor as OrtTensor};

use super::cases;
use super::tests::prepare;
use crate::interp::evaluate;

fn session(path: &std::path::Path) -> Session {
    let env = loc3r_bundle::ort_env::environment().unwrap_or_else(|e| panic!("{e}"));
    let build = || -> ort::Result<Session> {
        let builder = Session::builder(env)?.with_intra_threads(1).map_err(ort::Error::<()>::from)?;
        // Unoptimised, so ORT runs exactly the nodes we emitted.
        let mut builder = builder.with_optimization_level(ort::session::builder::GraphOptimizationLevel::Disable).map_err(ort::Error::<()>::from)?;
        builder.commit_from_file(path)
    };
    build().unwrap_or_else(|e| panic!("ONNX Runtime cannot load {}: {e}", path.display()))
}

#[test]
fn every_case_runs_on_onnx_runtime_and_matches_the_interpreter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for (k, (op, name, case)) in cases::all().into_iter().enumerate() {
        let label = format!("{op}/{name}");
        let mut p = prepare(&label, case, 1000 + k as u64);
        let mut outputs = vec![p.builder.g.output("loss", &p.loss.clone()).name().to_string()];
        for (param, grad) in p.params.clone().iter().zip(p.grads.clone()) {
            outputs.push(p.builder.g.output(&format!("{}_grad", param.name()), &grad).name().to_string());
        }
        let case_dir = dir.path().join(format!("case{k}"));
        std::fs::create_dir_all(&case_dir).expect("case dir");
        p.builder.g.save(&case_dir).unwrap_or_else(|e| panic!("{label}: {e}"));
        let mut s = session(&case_dir.join(format!("{}.onnx", p.builder.g.name())));
        let feeds: Vec<(String, DynValue)> = p
            .feeds
            .iter()
            .map(|(n, t)| {
                let a: ArrayD<f32> = t.float().expect("float feeds").mapv(|x| x as f32);
                (n.clone(), OrtTensor::from_array(a).expect("tensor").into_dyn())
            })
            .collect();
        let got = s.run(feeds).unwrap_or_else(|e| panic!("{label}: ONNX Runtime: {e}"));
        let want_names: Vec<&str> = p.grads.iter().map(|g| g.name()).collect();
        let want = evaluate(&p.builder.g, &p.feeds, &want_names).expect("interpreter");
        let got: HashMap<String, ArrayD<f32>> =
            outputs.iter().map(|n| (n.clone(), got[n.as_str()].try_extract_array::<f32>().expect("f32 output").to_owned())).collect();
        for (param, grad) in p.params.iter().zip(&p.grads) {
            let reference = want[grad.name()].float().expect("float");
            let ort = &got[&format!("{}_grad", param.name())];
            assert_eq!(ort.shape(), reference.shape(), "{label}: {}", param.name());
            let scale = reference.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (a, b) in ort.iter().zip(reference.iter()) {
                if (f64::from(*a) - b).abs() > 1e-5 * scale + 1e-4 * b.abs() {
                    failures.push(format!("{label}: d/d{}: ORT {a:e}, interpreter {b:e}", param.name()));
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
