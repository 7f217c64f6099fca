//! `loc3r-train grad` end to end: a tiny checkpoint and a prepared sample in, the documented
//! safetensors out; bad input exits 2 naming the problem, nothing half-written is left.

use std::path::Path;
use std::process::Command;

use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::sample::Sample;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loc3r-train"))
}

fn grad(ck: &Path, sample: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    bin().arg("grad").arg("--checkpoint").arg(ck).arg("--sample").arg(sample).arg("--out").arg(out).args(extra).output().expect("runs")
}

#[test]
fn grad_writes_losses_and_gradients_and_refuses_bad_samples() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { seed: 2, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    let cfg = Checkpoint::open(&ck, None, Requirements::default()).expect("opens").config().clone();
    let sample = Sample::random_for(&cfg, 2, 5);
    let sample_path = dir.path().join("s.safetensors");
    sample.write(&sample_path).expect("writes");

    let out = dir.path().join("g.safetensors");
    let run = grad(&ck, &sample_path, &out, &["--train", "heads,projector", "--loss-weights", "bev=0.2", "--json"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON on stdout");
    for key in ["loss", "loss.lm", "loss.bev", "loss.pos", "loss.ori"] {
        assert!(report[key].as_f64().is_some_and(f64::is_finite), "{key}: {report}");
    }
    let bytes = std::fs::read(&out).expect("output written");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    assert!(names.contains(&"grad.model.mm_projector.0.weight".to_string()) && names.contains(&"grad.model.loc3r.bev_head.weight".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("grad.model.layers.")), "the LLM is frozen with --train heads,projector");
    let w = st.tensor("grad.model.mm_projector.0.weight").expect("grad");
    assert_eq!(w.shape(), [cfg.hidden_size, cfg.vision_config.hidden_size], "checkpoint layout [out, in]");
    assert_eq!(st.tensor("loss").expect("loss").shape(), Vec::<usize>::new().as_slice());

    // LoRA: the factors' gradients, in PEFT's layout (A [r, in] with the default r = 16).
    let lora_out = dir.path().join("lora.safetensors");
    let run = grad(&ck, &sample_path, &lora_out, &["--train", "lora"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let bytes = std::fs::read(&lora_out).expect("output written");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let a = st.tensor("grad.model.layers.0.self_attn.q_proj.lora_A.weight").expect("grad of A");
    assert_eq!(a.shape(), [16, cfg.hidden_size]);
    assert!(st.names().iter().all(|n| !n.ends_with("_proj.weight")), "the projections themselves are frozen");

    // Bad input: exit 2, the message names the problem, no output file.
    let mut two = sample.clone();
    let at = two.placeholder().expect("the random sample has its placeholder");
    two.input_ids[at + 1] = loc3r_train::sample::IMAGE_PLACEHOLDER;
    let bad = dir.path().join("two_placeholders.safetensors");
    two.write(&bad).expect("writes");
    let bad_out = dir.path().join("bad.safetensors");
    let run = grad(&ck, &bad, &bad_out, &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("exactly once"), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!bad_out.exists());
    let mut short = sample.clone();
    short.labels.pop();
    short.write(&bad).expect("writes");
    let run = grad(&ck, &bad, &bad_out, &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("aligned"));
    let mut nan = sample.clone();
    nan.pos_target[0] = f32::NAN;
    nan.write(&bad).expect("writes");
    assert_eq!(grad(&ck, &bad, &bad_out, &[]).status.code(), Some(2));
    std::fs::write(&bad, b"not safetensors").expect("writes");
    let run = grad(&ck, &bad, &bad_out, &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("two_placeholders.safetensors"));
    let run = grad(&ck, &sample_path, &bad_out, &["--train", "lora,llm"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("`lora` and `llm`"), "{}", String::from_utf8_lossy(&run.stderr));
    let run = grad(&dir.path().join("missing"), &sample_path, &bad_out, &[]);
    assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!bad_out.exists());
}

#[test]
fn devices_are_checked_before_any_work_and_the_update_placement_is_a_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { seed: 4, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    let cfg = Checkpoint::open(&ck, None, Requirements::default()).expect("opens").config().clone();
    let samples = dir.path().join("samples");
    std::fs::create_dir_all(&samples).expect("dir");
    Sample::random_for(&cfg, 2, 9).write(&samples.join("0.safetensors")).expect("writes");
    let train = |out: &Path, extra: &[&str]| {
        bin()
            .arg("train")
            .arg("--checkpoint")
            .arg(&ck)
            .arg("--samples")
            .arg(&samples)
            .arg("--out")
            .arg(out)
            .args(["--steps", "2", "--train", "heads"])
            .args(extra)
            .output()
            .expect("runs")
    };

    // The device-resident path on CPU memory (what CUDA runs) trains from the command line.
    let run = train(&dir.path().join("graph"), &["--update", "graph"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("graph/log.jsonl")).expect("log").lines().count(), 2);

    // Unknown values name the choices.
    for (flag, value, hint) in [("--device", "gpu", "cuda:N"), ("--update", "device", "host")] {
        let run = train(&dir.path().join("bad"), &[flag, value]);
        assert_eq!(run.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&run.stderr).contains(hint), "{}", String::from_utf8_lossy(&run.stderr));
    }

    // CUDA where this ONNX Runtime has no CUDA provider: exit 2, one line naming what is
    // missing, for `train` and for `grad`, and nothing written.
    if (loc3r_train::device::Device::Cuda { device_id: 0 }).check_available().is_err() {
        let out = dir.path().join("cuda");
        let run = train(&out, &["--device", "cuda"]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("cuda:0") && stderr.contains("--device cpu"), "{stderr}");
        assert!(!out.join("trainer_state.json").exists());
        let g = dir.path().join("g.safetensors");
        let run = grad(&ck, &samples.join("0.safetensors"), &g, &["--device", "cuda:0"]);
        assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
        assert!(!g.exists());
    }
}
