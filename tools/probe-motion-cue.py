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

  shift   no network: each pair's best global image shift (normalised cross-correlation over
          horizontal shifts of up to 28 pixels and vertical ones of up to 4), and how well its
          sign tells the direction of travel; also how often the camera's turn tells it. The
          synthetic cameras orbit the room while facing its centre, so the turn and the
          translation move the image in opposite directions and the whole-image shift says
          little: the direction is in the parallax between near and far surfaces.

  tools/probe-motion-cue.py --pairs build/pairs/train --fusion early --steps 1600
Prints one JSON line per evaluation: held-out translation error (m), rotation loss
1 - <q_hat, q>^2, and the share of pairs whose direction of travel (sign of x) is right; with
--objective turn, the share of held-out pairs whose turn is right (and, through it, the travel).

A first lesson in image motion: --pretrain trains on other pairs first, either a prepare-poses
directory (e.g. of `loc3r-synth --camera-path turn` rooms, pure turns) or `shifted-crops` (a
window of a training frame and the same frame's window 3-12 pixels to the side). The early
network learns shifted crops in a few hundred updates and, after them, the tour's direction
on unseen rooms (docs/demo.md); from scratch it stays at chance:

  tools/probe-motion-cue.py --pairs <tour pairs> --files '*-s0.safetensors' --objective turn \
      --pretrain shifted-crops --pretrain-steps 400 --steps 1000
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


def best_shift(a, b, max_dx=28, max_dy=4, min_overlap=24):
    """The horizontal shift (pixels) of b against a with the highest normalised correlation."""
    a = a - a.mean(dim=(1, 2), keepdim=True)
    b = b - b.mean(dim=(1, 2), keepdim=True)
    h, w = a.shape[1:]
    best, best_dx = -2.0, 0
    for dy in range(-max_dy, max_dy + 1):
        for dx in range(-max_dx, max_dx + 1):
            if w - abs(dx) < min_overlap:
                continue
            x = a[:, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            y = b[:, max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
            c = ((x * y).sum() / ((x * x).sum() * (y * y).sum()).sqrt().clamp_min(1e-9)).item()
            if c > best:
                best, best_dx = c, dx
    return best_dx


def report_global_shift(first, second, target):
    shifts = torch.tensor([float(best_shift(a, b)) for a, b in zip(first, second)])
    tx, turn = target[:, 0], target[:, 5]  # q_y: the turn about the camera's vertical axis
    moving = shifts != 0
    agree = ((shifts > 0) == (tx > 0))[moving].float().mean().item()
    print(json.dumps({
        "pairs": len(shifts),
        "corr_shift_translation_x": round(torch.corrcoef(torch.stack([shifts, tx]))[0, 1].item(), 3),
        "corr_shift_turn": round(torch.corrcoef(torch.stack([shifts, turn]))[0, 1].item(), 3),
        "direction_from_shift_sign": round(max(agree, 1 - agree), 3),
        "zero_shift_share": round(1 - moving.float().mean().item(), 3),
        "direction_from_turn_sign": round(((turn > 0) == (tx < 0)).float().mean().item(), 3),
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", required=True, help="prepare-poses output directory (longer sequences give their first pair)")
    p.add_argument("--files", default="*.safetensors", help="which files of --pairs, e.g. '*-s0.safetensors' for each video's first pair only")
    p.add_argument("--blank", choices=["first", "second"], help="replace that frame by zeros (can the other one alone tell?)")
    p.add_argument("--fusion", choices=["early", "late", "shift"], default="early")
    p.add_argument("--grid", default="4x3", help="late fusion: the per-frame feature grid, WxH")
    p.add_argument("--objective", choices=["pose", "turn"], default="pose",
                   help="pose: regress frame 1's pose (t, q); turn: classify which way the camera turned (sign of q_y)")
    p.add_argument("--pretrain", help="pairs learned first: a prepare-poses directory (all its pairs, e.g. of `loc3r-synth "
                   "--camera-path turn` rooms), or `shifted-crops` (pure image shifts cut from the training frames; --objective turn)")
    p.add_argument("--pretrain-files", default="*.safetensors")
    p.add_argument("--pretrain-steps", type=int, default=400)
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

    if a.pretrain == "shifted-crops" and a.objective != "turn":
        raise SystemExit("--pretrain shifted-crops teaches which way the image moved: use it with --objective turn")
    rooms, images, target = load_pairs(a.pairs, a.files)
    if a.fusion == "shift":
        return report_global_shift(images[:, 0], images[:, 1], target)
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
                      "grid": a.grid if a.fusion == "late" else None, "objective": a.objective,
                      "baseline_translation_m": round(baseline, 4)}), flush=True)

    def step_on(pair_first, pair_second, pair_target, idx):
        out = net(pair_first[idx], pair_second[idx])
        if a.objective == "turn":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], (pair_target[idx, 5] > 0).float())
        else:
            t, q = out[:, :3], torch.nn.functional.normalize(out[:, 3:], dim=-1)
            loss = (t - pair_target[idx, :3]).norm(dim=-1).mean() + (1 - (q * pair_target[idx, 3:]).sum(-1) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return out.detach()

    def held_out_report(step, phase, out_train, idx_train, pair_target):
        with torch.no_grad():
            out = net(first[held], second[held])
        report = {"phase": phase, "step": step, "seconds": round(time.time() - start)}
        if a.objective == "turn":
            # The camera turns toward the travel on the tour (q_y > 0 with x < 0), so a turn
            # classifier is also a travel-direction classifier there.
            report["train_turn_accuracy"] = round(((out_train[:, 0] > 0) == (pair_target[idx_train, 5] > 0)).float().mean().item(), 3)
            report["held_out_turn_accuracy"] = round(((out[:, 0] > 0) == (target[held, 5] > 0)).float().mean().item(), 3)
            report["held_out_direction_accuracy"] = round(((out[:, 0] > 0) == (target[held, 0] < 0)).float().mean().item(), 3)
        else:
            t, q = out[:, :3], torch.nn.functional.normalize(out[:, 3:], dim=-1)
            report["train_translation_m"] = round((out_train[:, :3] - pair_target[idx_train, :3]).norm(dim=-1).mean().item(), 4)
            report["held_out_translation_m"] = round((t - target[held, :3]).norm(dim=-1).mean().item(), 4)
            report["held_out_rotation"] = round((1 - (q * target[held, 3:]).sum(-1) ** 2).mean().item(), 4)
            report["held_out_direction_accuracy"] = round(((t[:, 0] > 0) == (target[held, 0] > 0)).float().mean().item(), 3)
        print(json.dumps(report), flush=True)

    start = time.time()
    if a.pretrain == "shifted-crops":
        # Pure image shifts cut from the training frames: a window of frame 0 and the window
        # k = 3..12 pixels to the side. Content moving left is what a right turn (q_y > 0) does.
        margin = 12
        width = images.shape[-1] - 2 * margin
        for step in range(1, a.pretrain_steps + 1):
            idx = train[torch.randint(0, len(train), (a.batch,))]
            k = torch.randint(3, margin + 1, (a.batch,)) * (torch.randint(0, 2, (a.batch,)) * 2 - 1)
            crop_a = torch.stack([images[i, 0, :, :, margin:margin + width] for i in idx.tolist()])
            crop_b = torch.stack([images[i, 0, :, :, margin + d:margin + d + width] for i, d in zip(idx.tolist(), k.tolist())])
            shift_target = torch.zeros(a.batch, 7)
            shift_target[:, 5] = k.sign().float()
            out = step_on(crop_a, crop_b, shift_target, torch.arange(a.batch))
            if step % a.eval_every == 0 or step == a.pretrain_steps:
                held_out_report(step, "pretrain", out, torch.arange(a.batch), shift_target)
    elif a.pretrain:
        # A first lesson on other pairs (e.g. `loc3r-synth --camera-path turn` rooms: pure turns).
        _, pre_images, pre_target = load_pairs(a.pretrain, a.pretrain_files)
        every = torch.arange(len(pre_target))
        for step in range(1, a.pretrain_steps + 1):
            idx = every[torch.randint(0, len(every), (a.batch,))]
            out = step_on(pre_images[:, 0], pre_images[:, 1], pre_target, idx)
            if step % a.eval_every == 0 or step == a.pretrain_steps:
                held_out_report(step, "pretrain", out, idx, pre_target)
    for step in range(1, a.steps + 1):
        idx = train[torch.randint(0, len(train), (a.batch,))]
        out = step_on(first, second, target, idx)
        if step % a.eval_every == 0 or step == a.steps:
            held_out_report(step, "train", out, idx, target)

if __name__ == "__main__":
    main()
