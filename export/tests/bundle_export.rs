//! `loc3r-export export` / `inspect` end to end through the binary: determinism, atomic
//! writes, refusal to clobber, integrity checks, and (when the dev venv has it) the
//! official `onnx.checker` plus Python onnxruntime.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loc3r-export"))
}

fn run(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(exe());
    cmd.args(args);
    for p in paths {
        cmd.arg(p);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn fails_with(out: &Output, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

fn checkpoint(dir: &Path) -> PathBuf {
    let ckpt = dir.join("ckpt");
    ok(&run(&["make-tiny", "--quiet", "--seed", "1", "--shards", "2", "--out"], &[&ckpt]));
    ckpt
}

fn export(ckpt: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["export", "--quiet"];
    args.extend_from_slice(extra);
    let mut cmd = Command::new(exe());
    cmd.args(&args).arg("--checkpoint").arg(ckpt).arg("--out").arg(out);
    cmd.output().unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn export_is_deterministic_and_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    for precision in ["fp32", "fp16"] {
        let (a, b) = (tmp.path().join(format!("a-{precision}")), tmp.path().join(format!("b-{precision}")));
        ok(&export(&ckpt, &a, &["--precision", precision]));
        ok(&export(&ckpt, &b, &["--precision", precision]));
        let names = files(&a);
        for g in ["siglip", "projector", "embed", "decoder", "heads", "cut3r_encoder", "cut3r_step"] {
            assert!(names.contains(&format!("{g}.onnx")), "{g}.onnx missing: {names:?}");
        }
        for f in ["manifest.json", "tokenizer.json", "cut3r_init.safetensors"] {
            assert!(names.contains(&f.to_string()), "{f} missing: {names:?}");
        }
        assert_eq!(names, files(&b));
        for n in &names {
            assert_eq!(std::fs::read(a.join(n)).unwrap(), std::fs::read(b.join(n)).unwrap(), "{n} differs between two exports");
        }
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(a.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["precision"], if precision == "fp32" { "f32" } else { "f16" });
        assert_eq!(manifest["runtime"]["vision"]["tokens_per_frame"], 12);
        assert_eq!(manifest["runtime"]["tokens"]["pos"], 1003);
        assert_eq!(manifest["graphs"]["decoder"]["outputs"].as_array().unwrap().len(), 2 + 2 * 2);
        // No staging directories are left beside the bundle.
        assert!(!files(tmp.path()).iter().any(|n| n.contains(".partial")), "{:?}", files(tmp.path()));
        let out = run(&["inspect", "--json"], &[&a]);
        ok(&out);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(report["graphs"].as_array().unwrap().iter().all(|g| g["loads"] == true), "{report}");
        assert_eq!(report["kv_cache"], "static", "the default KV cache layout");
    }
}

#[test]
fn kv_cache_layouts_have_their_interfaces() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    let names = |manifest: &serde_json::Value, side: &str| -> Vec<String> {
        manifest["graphs"]["decoder"][side].as_array().unwrap().iter().map(|io| io["name"].as_str().unwrap().to_string()).collect()
    };
    for (layout, extra_inputs, kv_outputs) in [("static", &["cache.0.key", "cache.1.value"][..], "present_new.1.value"), ("concat", &[][..], "present.1.value")]
    {
        let out = tmp.path().join(layout);
        ok(&export(&ckpt, &out, &["--graphs", "decoder", "--kv-cache", layout]));
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["runtime"]["llm"]["kv_cache"], layout);
        let (inputs, outputs) = (names(&manifest, "inputs"), names(&manifest, "outputs"));
        assert!(inputs.contains(&"past_key_values.1.value".to_string()), "{layout}: {inputs:?}");
        for name in extra_inputs {
            assert!(inputs.contains(&name.to_string()), "{layout}: {inputs:?}");
        }
        // The tiny config has 2 layers: a key and a value buffer each for the static layout.
        let want_buffers = if layout == "static" { 4 } else { 0 };
        assert_eq!(inputs.iter().filter(|n| n.starts_with("cache.")).count(), want_buffers, "{layout}: {inputs:?}");
        assert!(outputs.contains(&kv_outputs.to_string()), "{layout}: {outputs:?}");
        let out = run(&["inspect", "--json"], &[&out]);
        ok(&out);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["kv_cache"], layout);
    }
    fails_with(&export(&ckpt, &tmp.path().join("bad"), &["--kv-cache", "paged"]), 2, &["paged", "static", "concat"]);
}

/// `--cut3r-points` adds `cut3r_points.onnx` and the step's decoder hooks; without the flag
/// neither exists, and asking for the graph alone says which flag it needs.
#[test]
fn cut3r_points_is_opt_in_and_adds_the_step_hooks() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    let io_names = |manifest: &serde_json::Value, graph: &str, side: &str| -> Vec<String> {
        manifest["graphs"][graph][side].as_array().unwrap().iter().map(|io| io["name"].as_str().unwrap().to_string()).collect()
    };
    let hooks = ["decoder_half", "decoder_three_quarters", "decoder_final"];
    for (args, with_points) in [(&["--graphs", "cut3r_encoder,cut3r_step"][..], false), (&["--cut3r-points"][..], true)] {
        let out = tmp.path().join(format!("points-{with_points}"));
        ok(&export(&ckpt, &out, args));
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(files(&out).contains(&"cut3r_points.onnx".to_string()), with_points);
        let step_outputs = io_names(&manifest, "cut3r_step", "outputs");
        assert_eq!(hooks.iter().all(|h| step_outputs.contains(&h.to_string())), with_points, "{step_outputs:?}");
        if with_points {
            let inputs = io_names(&manifest, "cut3r_points", "inputs");
            assert_eq!(inputs, ["features", "decoder_half", "decoder_three_quarters", "decoder_final", "camera_token"]);
            let outputs = io_names(&manifest, "cut3r_points", "outputs");
            assert_eq!(outputs, ["pts3d_in_self_view", "conf_self", "pts3d_in_other_view", "conf"]);
            let shape = &manifest["graphs"]["cut3r_points"]["outputs"][2]["shape"];
            assert_eq!(shape, &serde_json::json!([1, 48, 64, 3]), "points at the CUT3R input size");
            let report = run(&["inspect", "--json"], &[&out]);
            ok(&report);
            let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
            assert!(report["graphs"].as_array().unwrap().iter().all(|g| g["loads"] == true), "{report}");
        }
    }
    fails_with(&export(&ckpt, &tmp.path().join("alone"), &["--graphs", "cut3r_points"]), 2, &["cut3r_points", "--cut3r-points"]);
}

#[test]
fn graph_subset_and_unknown_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    let out = tmp.path().join("b");
    ok(&export(&ckpt, &out, &["--graphs", "heads,embed"]));
    let names = files(&out);
    assert!(names.contains(&"heads.onnx".into()) && names.contains(&"embed.onnx".into()) && !names.contains(&"decoder.onnx".into()));
    fails_with(&export(&ckpt, &tmp.path().join("c"), &["--graphs", "heads,vision"]), 2, &["unknown graph `vision`", "siglip"]);
    assert!(!tmp.path().join("c").exists());
}

#[test]
fn refuses_to_clobber_a_directory_that_is_not_a_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    let out = tmp.path().join("precious");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    fails_with(&export(&ckpt, &out, &[]), 2, &["precious", "not a loc3r bundle", "--force"]);
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "keep me");
    ok(&export(&ckpt, &out, &["--force"]));
    assert!(out.join("manifest.json").is_file() && !out.join("notes.txt").exists());
    // Re-exporting over an existing bundle replaces it without --force.
    ok(&export(&ckpt, &out, &["--graphs", "heads"]));
    assert!(!out.join("decoder.onnx").exists());
}

#[test]
fn unwritable_destination_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    // Writing fails (a file where a directory must be made): a failure of the output, exit 1.
    fails_with(&export(&ckpt, &file.join("bundle"), &[]), 1, &["cannot write", "a-file"]);
    // An --out that names a file is refused before anything is written: a bad argument, exit 2.
    fails_with(&export(&ckpt, &file, &[]), 2, &["a-file", "not a directory"]);
}

#[test]
fn bad_checkpoint_is_reported_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    std::fs::remove_file(ckpt.join("cut3r.safetensors")).unwrap();
    let out = tmp.path().join("b");
    fails_with(&export(&ckpt, &out, &[]), 2, &["cut3r.safetensors", "missing"]);
    assert!(!out.exists());
    assert!(!files(tmp.path()).iter().any(|n| n.contains(".partial")));
}

#[test]
fn inspect_detects_corruption_and_other_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    let out = tmp.path().join("b");
    ok(&export(&ckpt, &out, &["--graphs", "decoder"]));
    let data = out.join("decoder.onnx.data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    fails_with(&run(&["inspect", "--no-load"], &[&out]), 2, &["decoder.onnx.data", "sha256"]);

    let manifest = out.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("\"format_version\": 1", "\"format_version\": 99");
    std::fs::write(&manifest, text).unwrap();
    fails_with(&run(&["inspect"], &[&out]), 2, &["format version 99"]);
    fails_with(&run(&["inspect"], &[&tmp.path().join("nope")]), 2, &["manifest.json"]);
}

/// The official checker (full check) and Python onnxruntime, from the dev venv
/// (tools/golden/setup). CI has no dev venv: the test says so and checks nothing else.
#[test]
fn onnx_checker_and_python_onnxruntime_accept_every_graph() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-dev/bin/python");
    let has_onnx = python.is_file() && Command::new(&python).args(["-c", "import onnx, onnxruntime"]).status().is_ok_and(|s| s.success());
    if !has_onnx {
        println!(
            "SKIPPED: no .venv-dev with onnx + onnxruntime (run tools/golden/setup); the Rust-side ORT load is covered by export_is_deterministic_and_complete"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path());
    for precision in ["fp32", "fp16"] {
        let out = tmp.path().join(precision);
        ok(&export(&ckpt, &out, &["--precision", precision, "--cut3r-points"]));
        let script = "import sys, glob, onnx, onnxruntime as ort\n\
                      for p in sorted(glob.glob(sys.argv[1] + '/*.onnx')):\n\
                      \x20   onnx.checker.check_model(p, full_check=True)\n\
                      \x20   ort.InferenceSession(p, providers=['CPUExecutionProvider'])\n\
                      \x20   print('ok', p)\n";
        let res = Command::new(&python).args(["-c", script]).arg(&out).output().unwrap();
        assert!(res.status.success(), "{precision}: {}{}", String::from_utf8_lossy(&res.stdout), String::from_utf8_lossy(&res.stderr));
        assert_eq!(String::from_utf8_lossy(&res.stdout).lines().filter(|l| l.starts_with("ok ")).count(), 8);
    }
}
