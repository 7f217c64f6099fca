"""Cost of the Python layer: per-call overhead of `scene.localize()` against the same calls
made inside Rust, and the process's resident memory over 1,000 localize calls on live frames.

    python python/bench_overhead.py [--bundle DIR] [--calls 1000]

Without --bundle it makes the tiny random bundle of the tests (`loc3r-export make-tiny` +
`export`, through LOC3R_EXPORT or cargo). Prints one JSON object.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# Python puts a script's directory first on the path; this one (python/) holds the package's
# sources without the compiled extension, which would hide the installed loc3r.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import loc3r  # noqa: E402
from loc3r import _native  # noqa: E402

REPO = HERE.parent
HEIGHT, WIDTH = 120, 160


def tiny_bundle(root):
    exe = os.environ.get("LOC3R_EXPORT")
    tool = [exe] if exe else [os.environ.get("CARGO", "cargo"), "run", "--quiet", "--manifest-path", str(REPO / "Cargo.toml"),
                              "-p", "loc3r-export", "--bin", "loc3r-export", "--"]
    for args in (["make-tiny", "--quiet", "--seed", "1", "--out", root / "checkpoint"],
                 ["export", "--quiet", "--checkpoint", root / "checkpoint", "--out", root / "bundle"]):
        done = subprocess.run([str(a) for a in tool + args], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"making the tiny bundle failed:\n{done.stderr}")
    return root / "bundle"


def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def frame(i, rng):
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(x + 7 * i) % 256, (y * 2 + 3 * i) % 256, (x + y + 11 * i) % 256], axis=-1)
    return ((base + rng.integers(0, 32, size=base.shape)) % 256).astype(np.uint8)


def overhead(scene, pairs):
    """Per-call µs of localize from Python (the whole call, as a caller sees it) and inside
    Rust (the runtime's localize alone, timed by the hook), measured in pairs whose order
    alternates, so both see the same machine load and cache state. Minimums estimate the cost
    without interference from other processes; medians what a loaded machine gives.

    `crossing_us` is exact per call rather than a difference of two calls: the hook's own
    call seen from Python minus the time it spent in the runtime, i.e. the cost of entering
    Rust, releasing and retaking the GIL and the scene's lock, all of which localize pays too
    (localize adds building its result object). `crossing_without_inference_us` is the same
    call with nothing to run: the crossing with warm caches."""
    python_us, rust_us, crossing_us = [], [], []
    clock, localize, hook = time.perf_counter, scene.localize, _native._rust_localize_seconds

    def from_python():
        start = clock()
        localize()
        python_us.append((clock() - start) * 1e6)

    def from_rust():
        start = clock()
        inner = hook(scene, 1)
        outer = clock() - start
        rust_us.append(inner * 1e6)
        crossing_us.append((outer - inner) * 1e6)

    for i in range(pairs):
        first, second = (from_python, from_rust) if i % 2 == 0 else (from_rust, from_python)
        first()
        second()
    diffs = [p - r for p, r in zip(python_us, rust_us)]
    # The crossing alone, no inference in between to evict the caches the return path uses.
    bare_us = []
    for _ in range(20 * pairs):
        start = clock()
        hook(scene, 0)
        bare_us.append((clock() - start) * 1e6)
    return {
        "pairs": pairs,
        "python_us": {"min": round(min(python_us), 1), "median": round(statistics.median(python_us), 1)},
        "rust_us": {"min": round(min(rust_us), 1), "median": round(statistics.median(rust_us), 1)},
        "overhead_us": {"min_minus_min": round(min(python_us) - min(rust_us), 1), "median_of_pair_differences": round(statistics.median(diffs), 1)},
        "crossing_us": {"min": round(min(crossing_us), 2), "median": round(statistics.median(crossing_us), 2)},
        "crossing_without_inference_us": {"min": round(min(bare_us), 2), "median": round(statistics.median(bare_us), 2)},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="an exported bundle (default: a tiny random one)")
    parser.add_argument("--calls", type=int, default=1000, help="localize calls of the memory runs")
    parser.add_argument("--frames", type=int, default=8, help="live frames pushed before the fixed-scene runs")
    parser.add_argument("--pairs", type=int, default=2000, help="Python/Rust call pairs of the overhead run")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    if min(args.calls, args.frames, args.pairs) < 1:
        parser.error("--calls, --frames and --pairs must be at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or tiny_bundle(Path(tmp))
        model = loc3r.open(bundle, threads=args.threads)
        rng = np.random.default_rng(0)
        scene = model.scene()
        for i in range(args.frames):
            scene.push_frame(frame(i, rng), 0.1 * i)
        for _ in range(20):
            scene.localize()  # warm-up: first-call allocations of ONNX Runtime

        result = {"bundle": str(bundle), "live_frames": len(scene), "loc3r": loc3r.__version__,
                  "python": sys.version.split()[0]}
        result["localize"] = overhead(scene, args.pairs)

        # A fixed live scene: every call allocates and frees the same; the RSS must stay flat.
        marks = sorted({min(100, args.calls), max(1, args.calls // 2), args.calls})
        rss = {"start": rss_mib()}
        for i in range(1, args.calls + 1):
            scene.localize()
            if i in marks:
                rss[f"after_{i}"] = rss_mib()
        result["rss_mib_fixed_scene"] = {k: round(v, 1) for k, v in rss.items()}
        result["rss_growth_mib_fixed_scene_after_first_mark"] = round(rss[f"after_{marks[-1]}"] - rss[f"after_{marks[0]}"], 2)

        # A robot loop: a new live frame every 10th call, localize on every call. The scene's
        # cache grows with its frames, and ONNX Runtime keeps buffers for the longest prompt
        # it has run (its allocator settles within two runs); the third identical loop shows
        # whether anything else is left behind.
        for run in ("robot_loop_1", "robot_loop_2", "robot_loop_3"):
            live = model.scene()
            live.push_frame(frame(0, rng), 0.0)
            rss0 = rss_mib()
            for i in range(1, args.calls + 1):
                if i % 10 == 0:
                    live.push_frame(frame(i, rng), 0.01 * i)
                live.localize()
            result[run] = {"calls": args.calls, "frames_at_end": len(live), "rss_start_mib": round(rss0, 1),
                           "rss_end_mib": round(rss_mib(), 1), "scene_cache_mib": round(live.cache_bytes / 2**20, 1)}
            del live
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
