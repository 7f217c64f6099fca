//! `loc3r-export lint` and `compile` through the binary: the TensorRT lint passes on every
//! bundle variant the exporter writes and fails, naming the node, on graphs broken the ways
//! TensorRT cares about; `compile` refuses what it cannot build and, on a machine without the
//! GPU provider (every CI machine so far), says in one line which library is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use loc3r_export::graph::proto::{self, AttributeProto, ModelProto};
use prost::Message;

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loc3r-export"))
}

fn run(args: &[&str]) -> Output {
    Command::new(exe()).args(args).output().unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn checkpoint(dir: &Path) -> PathBuf {
    let ckpt = dir.join("ckpt");
    ok(&run(&["make-tiny", "--quiet", "--seed", "3", "--out", path(&ckpt)]));
    ckpt
}

fn export(ckpt: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["export", "--quiet", "--checkpoint", path(ckpt), "--out", path(out)];
    args.extend_from_slice(extra);
    ok(&run(&args));
}

fn lint_json(bundle: &Path, target: &str) -> (Option<i32>, serde_json::Value) {
    let out = run(&["lint", path(bundle), "--target", target, "--json"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

fn read_model(path: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

fn write_model(path: &Path, model: &ModelProto) {
    std::fs::write(path, model.encode_to_vec()).unwrap();
}

/// Every variant the test suite exports: both precisions, both KV cache layouts, with and
/// without the CUT3R point maps; for both TensorRT targets.
#[test]
fn lint_passes_on_every_exported_bundle_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    for precision in ["fp32", "fp16"] {
        for kv in ["static", "concat"] {
            for points in [false, true] {
                let bundle = tmp.path().join(format!("{precision}-{kv}-{points}"));
                let mut extra = vec!["--precision", precision, "--kv-cache", kv];
                if points {
                    extra.push("--cut3r-points");
                }
                export(&ckpt, &bundle, &extra);
                for target in ["tensorrt", "tensorrt-rtx"] {
                    let (code, report) = lint_json(&bundle, target);
                    let variant = format!("{precision} {kv} points={points} {target}");
                    assert_eq!(code, Some(0), "{variant}: {report:#}");
                    assert!(report["findings"].as_array().unwrap().iter().all(|f| f["severity"] != "error"), "{variant}: {report:#}");
                    let graphs = report["graphs"].as_array().unwrap();
                    assert_eq!(graphs.len(), if points { 8 } else { 7 }, "{variant}");
                    for g in graphs {
                        assert_eq!(g["whole_graph_on_tensorrt"], true, "{variant}: {g}");
                        assert!(g["nodes"].as_u64().unwrap() > 0, "{variant}: {g}");
                    }
                }
            }
        }
    }
}

/// Weight-quantized bundles: the QDQ form TensorRT consumes (`--preset tensorrt-int8`, and
/// int4 blocked QDQ) lints clean; ONNX Runtime's MatMulNBits form (`--preset cpu`) fails on
/// every quantized layer, each named.
#[test]
fn qdq_bundles_pass_the_lint_and_matmulnbits_bundles_name_every_contrib_node() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    for (name, extra) in
        [("int8-qdq", &["--preset", "tensorrt-int8"][..]), ("int4-qdq", &["--weights", "int4", "--block-size", "32", "--quant-format", "qdq"][..])]
    {
        let bundle = tmp.path().join(name);
        export(&ckpt, &bundle, extra);
        for target in ["tensorrt", "tensorrt-rtx"] {
            let (code, report) = lint_json(&bundle, target);
            assert_eq!(code, Some(0), "{name} {target}: {report:#}");
        }
    }
    let bundle = tmp.path().join("cpu");
    export(&ckpt, &bundle, &["--preset", "cpu"]);
    let (code, report) = lint_json(&bundle, "tensorrt");
    assert_eq!(code, Some(1), "{report:#}");
    let contrib: Vec<&serde_json::Value> = report["findings"].as_array().unwrap().iter().filter(|f| f["severity"] == "error").collect();
    assert!(!contrib.is_empty());
    assert!(contrib.iter().all(|f| f["graph"] == "decoder" && f["op_type"] == "MatMulNBits"), "{report:#}");
    assert!(contrib.iter().any(|f| f["node"].as_str().unwrap_or_default().contains("lm_head")), "{report:#}");
}

/// One bundle, broken three ways in three graphs: a contrib op, a Loop, an attribute TensorRT
/// does not implement. Each fails the lint with its graph and node named; the human report
/// says the same.
#[test]
fn a_broken_graph_fails_the_lint_with_the_node_named() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    let bundle = tmp.path().join("fp16");
    export(&ckpt, &bundle, &["--precision", "fp16", "--cut3r-points"]);

    // decoder: the first MatMul becomes ONNX Runtime's contrib MatMulNBits.
    let decoder_path = bundle.join("decoder.onnx");
    let mut decoder = read_model(&decoder_path);
    let node = decoder.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type() == "MatMul").expect("the decoder has a MatMul");
    node.op_type = Some("MatMulNBits".into());
    node.domain = Some("com.microsoft".into());
    let contrib = node.name().to_string();
    write_model(&decoder_path, &decoder);

    // siglip: an Add becomes a Loop.
    let siglip_path = bundle.join("siglip.onnx");
    let mut siglip = read_model(&siglip_path);
    let node = siglip.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type() == "Add").expect("siglip has an Add");
    node.op_type = Some("Loop".into());
    let looped = node.name().to_string();
    write_model(&siglip_path, &siglip);

    // Whichever graph resizes (CUT3R's point-map heads upsample): its Resize switches to cubic.
    let (resized_graph, resize) = ["cut3r_points", "projector", "cut3r_encoder", "cut3r_step", "heads", "siglip"]
        .into_iter()
        .find_map(|graph| {
            let file = bundle.join(format!("{graph}.onnx"));
            let mut model = read_model(&file);
            let node = model.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type() == "Resize")?;
            node.attribute.retain(|a| a.name() != "mode");
            node.attribute.push(AttributeProto {
                name: Some("mode".into()),
                s: Some(b"cubic".to_vec()),
                r#type: Some(proto::attribute_proto::AttributeType::String as i32),
                ..Default::default()
            });
            let name = node.name().to_string();
            write_model(&file, &model);
            Some((graph, name))
        })
        .expect("some graph of the bundle has a Resize");

    let (code, report) = lint_json(&bundle, "tensorrt");
    assert_eq!(code, Some(1), "{report:#}");
    let findings = report["findings"].as_array().unwrap();
    let find = |graph: &str, node: &str, rule: &str| {
        findings
            .iter()
            .find(|f| f["graph"] == graph && f["node"] == node && f["rule"] == rule && f["severity"] == "error")
            .unwrap_or_else(|| panic!("no {rule} error on {graph}/{node}: {report:#}"))
    };
    let f = find("decoder", &contrib, "G02");
    assert!(f["message"].as_str().unwrap().contains("com.microsoft:MatMulNBits"), "{f}");
    assert!(!f["fix"].as_str().unwrap().is_empty());
    find("siglip", &looped, "G06");
    let f = find(resized_graph, &resize, "G05");
    assert!(f["message"].as_str().unwrap().contains("cubic"), "{f}");
    let verdict = |graph: &str| report["graphs"].as_array().unwrap().iter().find(|g| g["graph"] == graph).unwrap()["whole_graph_on_tensorrt"].clone();
    assert_eq!(verdict("decoder"), false);
    assert_eq!(verdict("embed"), true, "untouched graphs still pass");

    let out = run(&["lint", path(&bundle)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [contrib.as_str(), looped.as_str(), resize.as_str(), "NOT compatible", "fix:"] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }

    // compile lints first: the broken bundle is refused before any GPU is looked for.
    let out = run(&["compile", "--bundle", path(&bundle), "--target", "tensorrt-fp16", "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not compatible with tensorrt") && err.contains(&contrib) && err.contains("nothing was compiled"), "{err}");
}

#[test]
fn lint_of_something_that_is_not_a_bundle_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["lint", path(tmp.path())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("manifest.json") && err.contains("bundle"), "{err}");
    let out = run(&["lint", path(&tmp.path().join("absent")), "--target", "tensorrt-rtx"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["lint", path(tmp.path()), "--target", "openvino"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses unknown targets");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tensorrt-rtx"));
}

/// Without the provider library (or a GPU), `compile` fails in one line that names what is
/// missing and how to install it, exit 2; on a machine that has everything, the test says so
/// and checks nothing about the error.
#[test]
fn compile_without_the_provider_names_the_missing_library_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    let bundle = tmp.path().join("fp16");
    export(&ckpt, &bundle, &["--precision", "fp16"]);
    let ort = loc3r_bundle::ort_env::init().expect("ONNX Runtime is installed for the tests");
    for target in loc3r_bundle::engines::EngineTarget::ALL {
        if loc3r_bundle::gpu::probe(target, 0, &ort.library).is_ok() {
            eprintln!("{target}: this machine has the provider, a GPU and its libraries; the missing-provider error cannot be shown here");
            continue;
        }
        let out = run(&["compile", "--bundle", path(&bundle), "--target", target.name(), "--quiet"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        let probe = loc3r_bundle::gpu::probe(target, 0, &ort.library).unwrap_err();
        if let loc3r_bundle::gpu::ProbeError::Missing(missing) = probe {
            assert_eq!(out.status.code(), Some(2), "{target}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{target}: one line: {err}");
            assert!(err.contains(&missing.library) && err.contains("not found") && err.contains("install"), "{target}: {err}");
        }
        assert!(
            !bundle.join("engines").read_dir().is_ok_and(|mut d| d.any(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.'))),
            "{target}: no engine directory"
        );
    }
}

#[test]
fn compile_refuses_limits_that_cannot_form_a_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    let bundle = tmp.path().join("fp16");
    export(&ckpt, &bundle, &["--precision", "fp16"]);
    for (args, needle) in [
        (&["--max-prefill", "512", "--max-context", "256"][..], "--max-prefill 512 exceeds --max-context 256"),
        (&["--max-context", "100000"][..], "positions"),
        (&["--max-frames", "0"][..], "--max-frames 0"),
    ] {
        let mut all = vec!["compile", "--bundle", path(&bundle), "--target", "tensorrt-fp16"];
        all.extend_from_slice(args);
        let out = run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = run(&["compile", "--bundle", path(&tmp.path().join("absent")), "--target", "cuda"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
