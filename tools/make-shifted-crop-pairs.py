#!/usr/bin/env python3
"""Pure-turn pose pairs for CUT3R made by shifting a window across a wider frame.

A reference experiment for docs/demo.md (not part of `make test`; needs numpy, Pillow and
safetensors). From rooms rendered wider than CUT3R's input (e.g. `loc3r-synth --size 96x48
--frames 2 --no-video`), each frame gives one pair: the input-sized window at a fixed offset and
the window k = 6..16 pixels to the side, written in the layout of `loc3r-train prepare-poses`
(`image` [2,3,H,W] in [-1, 1], `target_pose` [2,7] = t, q with q = (w, x, y, z)), so
`loc3r-train train --objective cut3r-pose` trains on them unchanged. A sideways shift of the
window is, to first order, a turn about the camera's vertical axis by atan(k / f): content
moving left (k > 0) is a right turn, +q_y.

  tools/make-shifted-crop-pairs.py --rooms build/wide --out build/crop-pairs --seed 1
"""
import argparse
import glob
import math
import os

import numpy as np
from PIL import Image
from safetensors.numpy import save_file


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rooms", required=True, help="loc3r-synth output directory (its scenes/ are read)")
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="64x48", help="CUT3R input WxH (the window)")
    p.add_argument("--min-shift", type=int, default=6)
    p.add_argument("--max-shift", type=int, default=16)
    p.add_argument("--hfov", type=float, default=58.0, help="horizontal field of view of the rendered frames (degrees)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    width, height = (int(v) for v in a.size.lower().split("x"))
    rng = np.random.default_rng(a.seed)
    scenes = sorted(glob.glob(os.path.join(a.rooms, "scenes", "*")))
    if not scenes:
        raise SystemExit(f"no scenes in {a.rooms}/scenes: render them with loc3r-synth first")
    os.makedirs(a.out, exist_ok=True)
    written = 0
    for scene in scenes:
        for path in sorted(glob.glob(os.path.join(scene, "color", "*.jpg"))):
            img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
            rendered_h, rendered_w = img.shape[:2]
            margin = (rendered_w - width) // 2
            if rendered_h != height or margin < a.max_shift:
                raise SystemExit(f"{path} is {rendered_w}x{rendered_h}: render {height} rows and at least "
                                 f"{width + 2 * a.max_shift} columns (e.g. --size {width + 2 * a.max_shift}x{height})")
            focal = (rendered_w / 2) / math.tan(math.radians(a.hfov / 2))
            img = ((img - 0.5) / 0.5).transpose(2, 0, 1)
            k = int(rng.integers(a.min_shift, a.max_shift + 1)) * (1 if rng.random() < 0.5 else -1)
            first = img[:, :, margin:margin + width]
            second = img[:, :, margin + k:margin + k + width]
            turn = math.atan(k / focal)
            pose = np.array([[0, 0, 0, 1, 0, 0, 0], [0, 0, 0, math.cos(turn / 2), 0, math.sin(turn / 2), 0]], np.float32)
            name = f"{os.path.basename(scene)}-f{os.path.splitext(os.path.basename(path))[0]}.safetensors"
            save_file({"image": np.ascontiguousarray(np.stack([first, second])), "target_pose": pose}, os.path.join(a.out, name))
            written += 1
    print(f"wrote {written} pairs to {a.out}")


if __name__ == "__main__":
    main()
