//! Every finite-difference case's training graph also runs on ONNX Runtime (CPU, f32): the
//! analytic gradients ORT computes must equal the f64 interpreter's (analytic against analytic,
//! so no finite-difference noise). This shows the emitted backward nodes are valid ONNX that a
//! real runtime accepts, with the semantics the interpreter gives them.

use super::cases;
use super::tests::prepare;
use crate::check::onnx_runtime_disagreements;

#[test]
fn every_case_runs_on_onnx_runtime_and_matches_the_interpreter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for (k, (op, name, case)) in cases::all().into_iter().enumerate() {
        let label = format!("{op}/{name}");
        let mut p = prepare(&label, case, 1000 + k as u64);
        p.builder.g.output("loss", &p.loss.clone());
        let mut outputs = Vec::new();
        for (param, grad) in p.params.clone().iter().zip(p.grads.clone()) {
            outputs.push(p.builder.g.output(&format!("{}_grad", param.name()), &grad).name().to_string());
        }
        let case_dir = dir.path().join(format!("case{k}"));
        std::fs::create_dir_all(&case_dir).expect("case dir");
        let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
        let (bad, _) = onnx_runtime_disagreements(&p.builder.g, &p.feeds, &names, &case_dir);
        failures.extend(bad.into_iter().map(|b| format!("{label}: {b}")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
