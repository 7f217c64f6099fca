"""Fixtures of the Python bindings' tests: a tiny random bundle (`loc3r-export make-tiny`
exported, as the Rust end-to-end tests make theirs), a short synthetic video and frames.

The tests import the `loc3r` of the Python path: `make python-test` installs the wheel it
built into a directory of its own and puts that first.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import loc3r

REPO = Path(__file__).resolve().parents[2]

# The tiny model's CUT3R input is exported for 4:3 frames (160x120 here, like the Rust tests).
HEIGHT, WIDTH = 120, 160


def _export_command():
    """`loc3r-export`: the binary named by LOC3R_EXPORT (set by `make python-test`), else
    built and run through cargo."""
    exe = os.environ.get("LOC3R_EXPORT")
    if exe:
        return [exe]
    cargo = os.environ.get("CARGO", "cargo")
    return [cargo, "run", "--quiet", "--manifest-path", str(REPO / "Cargo.toml"), "-p", "loc3r-export", "--bin", "loc3r-export", "--"]


def _run(args):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tool = _export_command()
    _run(tool + ["make-tiny", "--quiet", "--seed", "1", "--out", root / "checkpoint"])
    _run(tool + ["export", "--quiet", "--checkpoint", root / "checkpoint", "--out", root / "bundle"])
    return root / "bundle"


@pytest.fixture(scope="session")
def model(bundle):
    # One thread per graph: the answers do not depend on it and CI machines are small.
    return loc3r.open(bundle, threads=1)


@pytest.fixture(scope="session")
def video(tmp_path_factory):
    """Five frames of FFmpeg's moving test pattern at 10 fps."""
    path = tmp_path_factory.mktemp("video") / "testsrc.mp4"
    _run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={WIDTH}x{HEIGHT}:rate=10",
          "-frames:v", "5", "-pix_fmt", "yuv420p", path])
    return path


def make_frames(n, seed=0):
    """`n` different RGB frames (smooth gradients plus noise, shifted per frame)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    for i in range(n):
        base = np.stack([(x + 7 * i) % 256, (y * 2 + 3 * i) % 256, (x + y + 11 * i) % 256], axis=-1)
        noise = rng.integers(0, 32, size=(HEIGHT, WIDTH, 3))
        frames.append(((base + noise) % 256).astype(np.uint8))
    return frames


@pytest.fixture(scope="session")
def frames():
    return make_frames(4)


@pytest.fixture(scope="session")
def live_scene(model, frames):
    """A scene of three live frames pushed one by one (shared: the tests only read it)."""
    scene = model.scene()
    for i, frame in enumerate(frames[:3]):
        scene.push_frame(frame, 0.5 * i)
    return scene
