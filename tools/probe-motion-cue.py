#!/usr/bin/env python3
"""Is the camera's motion between two frames learnable from the pixels CUT3R sees, and how?

A reference experiment for docs/demo.md (not part of `make test`; needs PyTorch, e.g.
`.venv-dev/bin/python` from tools/golden/setup). It trains a small convolutional network to
predict the pose of frame 1 in frame 0's camera from a pair of CUT3R input images, on the pair
files of `loc3r-train prepare-poses --frames 2` (2-frame sequences: `image` [2,3,H,W] in [-1, 1],
`target_pose` [2,7] = t, q; longer sequences give their first two frames), and scores rooms it
never saw against the mean translation.

Fusion:
  early   both frames stacked as 6 channels from the first convolution (the network compares
          pixels directly, as optical-flow networks do);
  late    each frame encoded alone to a grid of feature vectors (like CUT3R's per-frame patch
          tokens), the two grids compared by an MLP; --grid 4x3 is the demo CUT3R's token grid
          (64x48 pixels, 16-pixel patches), 8x6 that of 8-pixel patches.

  tools/probe-motion-cue.py --pairs build/pairs/train --fusion early --steps 1600
Prints one JSON line per evaluation: held-out translation error (m), rotation loss
1 - <q_hat, q>^2, and the share of pairs whose direction of travel (sign of x) is right.
"""
import argparse
import glob
import json
import os
import re
import time

import numpy as np
import torch
from safetensors.numpy import load_file


def load_pairs(directory, pattern):
    files = sorted(glob.glob(os.path.join(directory, pattern)))
    if not files:
        raise SystemExit(f"no {pattern} in {directory}: make them with `loc3r-train prepare-poses --frames 2`")
    rooms, images, poses = [], [], []
    for f in files:
        d = load_file(f)
        if d["image"].shape[0] < 2:
            raise SystemExit(f"{f} holds {d['image'].shape[0]} frame; a pair needs 2")
        m = re.search(r"-r(\d+)-", os.path.basename(f))
        rooms.append(int(m.group(1)) if m else len(rooms))
        images.append(d["image"][:2])
        poses.append(d["target_pose"][1])
    pose = torch.tensor(np.stack(poses))
    # q and -q are the same rotation: put every target in the hemisphere q_w >= 0.
    sign = torch.where(pose[:, 3:4] < 0, -1.0, 1.0)
    return np.array(rooms), torch.tensor(np.stack(images)), torch.cat([pose[:, :3], pose[:, 3:] * sign], 1)


def block(cin, cout):
    return torch.nn.Sequential(
        torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(cout, cout, 3, padding=1, stride=2), torch.nn.ReLU())


class Early(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(block(6, 32), block(32, 64), block(64, 96), block(96, 128),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                       torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 7))

    def forward(self, a, b):
        return self.net(torch.cat([a, b], 1))


class Late(torch.nn.Module):
    def __init__(self, image_hw, grid_wh):
        super().__init__()
        halvings = int(round(np.log2(image_hw[1] / grid_wh[0])))
        if image_hw[1] >> halvings != grid_wh[0] or image_hw[0] >> halvings != grid_wh[1]:
            raise SystemExit(f"a {grid_wh[0]}x{grid_wh[1]} grid is not a power-of-two reduction of {image_hw[1]}x{image_hw[0]} images")
        widths = [3, 32, 64, 96, 128, 128, 128][: halvings + 1]
        widths[-1] = 128
        self.encode = torch.nn.Sequential(*[block(a, b) for a, b in zip(widths, widths[1:])])
        self.compare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 128 * grid_wh[0] * grid_wh[1], 128),
                                           torch.nn.ReLU(), torch.nn.Linear(128, 7))

    def forward(self, a, b):
        return self.compare(torch.cat([self.encode(a), self.encode(b)], 1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", required=True, help="prepare-poses output directory (longer sequences give their first pair)")
    p.add_argument("--files", default="*.safetensors", help="which files of --pairs, e.g. '*-s0.safetensors' for each video's first pair only")
    p.add_argument("--blank", choices=["first", "second"], help="replace that frame by zeros (can the other one alone tell?)")
    p.add_argument("--fusion", choices=["early", "late"], default="early")
    p.add_argument("--grid", default="4x3", help="late fusion: the per-frame feature grid, WxH")
    p.add_argument("--steps", type=int, default=1600)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--held-out-rooms", type=int, default=200, help="the last N rooms (by index) are never trained on")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)

    rooms, images, target = load_pairs(a.pairs, a.files)
    cut = np.sort(np.unique(rooms))[-a.held_out_rooms]
    train = torch.tensor(rooms < cut).nonzero()[:, 0]
    held = torch.tensor(rooms >= cut).nonzero()[:, 0]
    first, second = images[:, 0], images[:, 1]
    if a.blank == "first":
        first = torch.zeros_like(first)
    elif a.blank == "second":
        second = torch.zeros_like(second)
    mean_t = target[train, :3].mean(0)
    baseline = (target[held, :3] - mean_t).norm(dim=-1).mean().item()
    if a.fusion == "early":
        net = Early()
    else:
        gw, gh = (int(v) for v in a.grid.lower().split("x"))
        net = Late(images.shape[-2:], (gw, gh))
    opt = torch.optim.Adam(net.parameters(), a.lr)
    print(json.dumps({"pairs": len(rooms), "train_pairs": len(train), "held_out_pairs": len(held), "fusion": a.fusion,
                      "grid": a.grid if a.fusion == "late" else None, "baseline_translation_m": round(baseline, 4)}), flush=True)

    def predict(idx):
        out = net(first[idx], second[idx])
        return out[:, :3], torch.nn.functional.normalize(out[:, 3:], dim=-1)

    def losses(idx):
        t, q = predict(idx)
        return (t - target[idx, :3]).norm(dim=-1), 1 - (q * target[idx, 3:]).sum(-1) ** 2, t

    start = time.time()
    for step in range(1, a.steps + 1):
        idx = train[torch.randint(0, len(train), (a.batch,))]
        lt, lq, _ = losses(idx)
        opt.zero_grad()
        (lt.mean() + lq.mean()).backward()
        opt.step()
        if step % a.eval_every == 0 or step == a.steps:
            with torch.no_grad():
                ht, hq, t = losses(held)
                direction = ((t[:, 0] > 0) == (target[held, 0] > 0)).float().mean().item()
            print(json.dumps({"step": step, "seconds": round(time.time() - start), "train_translation_m": round(lt.mean().item(), 4),
                              "held_out_translation_m": round(ht.mean().item(), 4), "held_out_rotation": round(hq.mean().item(), 4),
                              "held_out_direction_accuracy": round(direction, 3)}), flush=True)


if __name__ == "__main__":
    main()
