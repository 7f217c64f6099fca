//! Hostile configs and files (issue 13, failures 3 and 9): config numbers far outside any
//! real model, a `--cut3r-size` of millions of pixels, and FIFOs in place of checkpoint
//! files. Each must be refused with exit 2 and a message naming the field and the bound
//! (or the file), quickly and without allocating: every command runs as a child whose
//! peak RSS is read back with `wait4`, under a deadline that kills it if it hangs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loc3r-export"))
}

/// Far above what validating a config needs, far below the gigabytes the bugs allocated.
const MAX_RSS_MB: i64 = 256;
const DEADLINE: Duration = Duration::from_secs(20);

struct Outcome {
    /// None when killed at the deadline.
    code: Option<i32>,
    stderr: String,
    peak_rss_mb: i64,
}

/// Runs `cmd` as a child, killing it after [`DEADLINE`]; returns its exit code, stderr and peak RSS.
// The child is reaped by `wait4` (which also reports its peak RSS), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run(cmd: &mut Command) -> Outcome {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut killed = false;
    loop {
        // SAFETY: `pid` is our own unreaped child; status and usage are valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4 failed");
        if r == pid {
            break;
        }
        if start.elapsed() > DEADLINE && !killed {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = if killed || !libc::WIFEXITED(status) { None } else { Some(libc::WEXITSTATUS(status)) };
    Outcome { code, stderr: reader.join().unwrap(), peak_rss_mb: usage.ru_maxrss / 1024 }
}

fn make_tiny(dir: &Path, extra: &[&str]) {
    let out = Command::new(exe()).args(["make-tiny", "--quiet", "--seed", "5", "--out"]).arg(dir).args(extra).output().unwrap();
    assert!(out.status.success(), "make-tiny failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
}

/// Asserts a refusal: exit 2, no panic, small and quick; returns stderr.
fn refused(what: &str, o: Outcome) -> String {
    assert_eq!(o.code, Some(2), "{what}: expected exit 2, got {:?} (None = killed at the deadline); stderr: {}", o.code, o.stderr);
    assert!(!o.stderr.contains("panicked"), "{what}: {}", o.stderr);
    assert!(o.peak_rss_mb < MAX_RSS_MB, "{what}: peak RSS {} MB", o.peak_rss_mb);
    o.stderr
}

fn check(dir: &Path) -> Outcome {
    run(Command::new(exe()).args(["check", "--checkpoint"]).arg(dir))
}

fn export(dir: &Path, out: &Path, extra: &[&str]) -> Outcome {
    run(Command::new(exe()).args(["export", "--quiet", "--graphs", "cut3r_encoder", "--checkpoint"]).arg(dir).arg("--out").arg(out).args(extra))
}

#[test]
fn config_numbers_out_of_bounds_are_refused_by_check_and_export_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    make_tiny(&base, &[]);
    let huge = u64::MAX;
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("num_hidden_layers", Box::new(|v| v["num_hidden_layers"] = 1_000_000.into()), "1024"),
        ("num_hidden_layers", Box::new(move |v| v["num_hidden_layers"] = huge.into()), "1024"),
        ("vision_config.num_hidden_layers", Box::new(|v| v["vision_config"]["num_hidden_layers"] = 1_000_000.into()), "1024"),
        ("cut3r.dec_depth", Box::new(|v| v["cut3r"]["dec_depth"] = 1_000_000.into()), "1024"),
        ("cut3r.input_size", Box::new(|v| v["cut3r"]["input_size"] = serde_json::json!([1_000_000, 1_000_000])), "8192"),
        ("vocab_size", Box::new(move |v| v["vocab_size"] = huge.into()), "4194304"),
        ("max_position_embeddings", Box::new(|v| v["max_position_embeddings"] = 1_000_000_000.into()), "4194304"),
    ];
    for (i, (field, edit, bound)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir(&dir).unwrap();
        for entry in std::fs::read_dir(&base).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        edit_config(&dir, edit);
        let by_check = refused(&format!("check with {field}"), check(&dir));
        let by_export = refused(&format!("export with {field}"), export(&dir, &tmp.path().join(format!("out{i}")), &[]));
        for e in [&by_check, &by_export] {
            assert!(e.contains(field) && e.contains(bound), "{field}: the message names neither the field nor the bound {bound}: {e}");
        }
    }
}

#[test]
fn make_tiny_applies_the_same_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(loc3r_export::config::BUILTIN_CONFIGS[0].1).unwrap();
    v["cut3r"]["dec_depth"] = 1_000_000.into();
    let config = tmp.path().join("hostile.json");
    std::fs::write(&config, v.to_string()).unwrap();
    let o = run(Command::new(exe()).args(["make-tiny", "--quiet", "--out"]).arg(tmp.path().join("t")).arg("--config").arg(&config));
    let e = refused("make-tiny with cut3r.dec_depth 1e6", o);
    assert!(e.contains("cut3r.dec_depth") && e.contains("1024"), "{e}");
}

#[test]
fn a_huge_cut3r_size_is_refused_before_building_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    make_tiny(&ckpt, &[]);
    let e = refused("--cut3r-size", export(&ckpt, &tmp.path().join("out"), &["--cut3r-size", "1600000x1600000"]));
    assert!(e.contains("--cut3r-size") && e.contains("8192"), "{e}");
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn check_lists_a_bounded_number_of_problems_and_counts_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    make_tiny(&ckpt, &[]);
    // 200 layers where the checkpoint has 2: thousands of missing tensors.
    edit_config(&ckpt, |v| v["num_hidden_layers"] = 200.into());
    let e = refused("check with 200 layers", check(&ckpt));
    let listed = e.lines().filter(|l| l.starts_with("  - ")).count();
    assert_eq!(listed, loc3r_export::error::MAX_LISTED_PROBLEMS, "{e}");
    assert!(e.trim_end().lines().last().is_some_and(|l| l.starts_with("  … and ") && l.ends_with(" more")), "{e}");
}

fn mkfifo(path: &Path) {
    std::fs::remove_file(path).ok();
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn fifos_in_place_of_checkpoint_files_are_refused_instead_of_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    make_tiny(&base, &["--shards", "2"]);
    let shard = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("model-") && n.ends_with(".safetensors"))
        .expect("a shard");
    for (i, file) in [shard.as_str(), "cut3r.safetensors", "config.json", "tokenizer.json", "model.safetensors.index.json"].into_iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir(&dir).unwrap();
        for entry in std::fs::read_dir(&base).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        mkfifo(&dir.join(file));
        let by_check = refused(&format!("check with a FIFO as {file}"), check(&dir));
        let by_export = refused(&format!("export with a FIFO as {file}"), export(&dir, &tmp.path().join(format!("out{i}")), &[]));
        for e in [&by_check, &by_export] {
            assert!(e.contains(file) && e.contains("FIFO"), "{file}: {e}");
        }
    }
    // make-tiny --config and --names read files too.
    let fifo = tmp.path().join("config-fifo.json");
    mkfifo(&fifo);
    let e = refused(
        "make-tiny --config FIFO",
        run(Command::new(exe()).args(["make-tiny", "--quiet", "--out"]).arg(tmp.path().join("t")).arg("--config").arg(&fifo)),
    );
    assert!(e.contains("FIFO"), "{e}");
    let o = run(Command::new(exe()).args(["check", "--checkpoint"]).arg(&base).arg("--names").arg(&fifo));
    let e = refused("check --names FIFO", o);
    assert!(e.contains("FIFO"), "{e}");
}

/// A symlink to `/dev/zero` as `config.json` says what it is instead of reading forever.
#[test]
fn a_config_that_is_a_device_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    make_tiny(&dir, &[]);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("config.json")).unwrap();
    for (what, o) in [("check", check(&dir)), ("export", export(&dir, &tmp.path().join("out"), &[]))] {
        let e = refused(&format!("{what} with /dev/zero as config.json"), o);
        assert!(e.contains("config.json") && e.contains("character device"), "{what}: {e}");
    }
}

/// Concurrent exports to one `--out`: the second is refused with a clear message (exit 2)
/// while the first holds the output's lock, and succeeds once it is released. The manifest
/// echoes the config fields the exporter knows, not whatever else `config.json` carries.
#[test]
fn a_second_export_to_the_same_output_is_refused_while_the_first_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    make_tiny(&dir, &[]);
    edit_config(&dir, |v| v["padding_nobody_reads"] = "x".repeat(1 << 20).into());
    let out = tmp.path().join("bundle");
    let first = loc3r_export::bundle::OutputLock::acquire(&out).unwrap();
    let e = refused("an export while another holds the lock", export(&dir, &out, &[]));
    assert!(e.contains("another export is writing") && e.contains("--out"), "{e}");
    assert!(!out.exists(), "the refused export wrote nothing");
    drop(first);
    let o = export(&dir, &out, &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["config"]["hidden_size"].is_u64());
    assert!(manifest["config"].get("padding_nobody_reads").is_none(), "unknown config keys are not copied into the manifest");
    assert!(std::fs::metadata(out.join("manifest.json")).unwrap().len() < 200_000);
}
