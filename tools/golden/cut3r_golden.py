#!/usr/bin/env python3
"""Golden CUT3R fixtures from the OFFICIAL implementation (dev-only; see README-cut3r.md).

    .venv-dev/bin/python tools/golden/cut3r_golden.py \
        --cut3r-repo /tmp/cut3r-src --checkpoint /tmp/tiny1 --out tests/fixtures/cut3r_tiny

`--checkpoint` is a loc3r checkpoint directory (config.json with a "cut3r" object plus
cut3r.safetensors with the official state_dict names), e.g. `loc3r-export make-tiny --out DIR
--seed 1`. The official model class `ARCroco3DStereo` is built from the config's "cut3r" object,
loaded with our weights, and run through its own sequence path (`_forward_impl`, as `demo.py`)
on CPU in fp32 over seeded random frames. Two run-time patches, both documented in
README-cut3r.md:

1. RoPE: the official pure-PyTorch fallback (used when the cuRoPE CUDA kernel is not compiled)
   looks cos/sin up with `F.embedding` and fails on the camera token's position (-1,-1)
   (docs/numerics.md §3). `RoPE2D.forward` is replaced by an analytic version with the cuRoPE
   kernel's semantics (cos/sin from float positions, angles computed in float64, rounded to
   fp32; rotation in fp32; result cast back to the input dtype).
2. Encoder q/k fp16 rounding (docs/numerics.md §3): by default the encoder attention
   runs the DUSt3R `Attention.forward` (official code, identical except that it keeps q/k in
   fp32 around RoPE), so the fixtures are fp32 math end to end, which is what our fp32 graphs
   implement. `--encoder-fp16-rope` keeps the official fp16 rounding instead (bit-parity with a
   GPU run); the fixtures record which one was used.

Outputs (all float32, little endian) in OUT/cut3r_golden.safetensors, per frame i:
  frame.{i}.image [1,3,H,W]  frame.{i}.is_first/update/reset [1]
  frame.{i}.features [1,N,Ce]  frame.{i}.state_in [1,S,Dc]  frame.{i}.memory_in [1,M,2Dc]
  frame.{i}.camera_token [1,Dc]  frame.{i}.camera_pose [1,7]
  frame.{i}.state_out [1,S,Dc]  frame.{i}.memory_out [1,M,2Dc]
and state_init [1,S,Dc], mem_init [1,M,2Dc]. state_in/memory_in of frame i are the chained
state_out/memory_out of frame i-1 (state_init/mem_init for frame 0). Metadata (safetensors
header and OUT/meta.json): sha256 of cut3r.safetensors, command, CUT3R commit, options.
"""

import argparse
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import types

import numpy as np


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def repo_commit(repo):
    try:
        out = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        marker = os.path.join(repo, "COMMIT")
        if os.path.exists(marker):
            return open(marker).read().strip()
        return "unknown"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cut3r-repo", required=True, help="checkout of github.com/CUT3R/CUT3R (the directory holding src/)")
    p.add_argument("--cut3r-commit", default=None, help="commit of that checkout (default: git rev-parse, or a COMMIT file)")
    p.add_argument("--checkpoint", required=True, help="loc3r checkpoint dir (config.json + cut3r.safetensors)")
    p.add_argument("--out", required=True, help="output dir (e.g. tests/fixtures/cut3r_tiny)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--seed", type=int, default=1234, help="seed of the random frames")
    p.add_argument("--no-update-frame", type=int, default=2, help="frame with update=0")
    p.add_argument("--reset-frame", type=int, default=4, help="frame with reset=1")
    p.add_argument("--points-frames", default="0,5,7",
                   help="frames whose point maps (and decoder hooks) are saved, comma-separated ('' for none)")
    p.add_argument("--encoder-fp16-rope", action="store_true",
                   help="keep the official fp16 rounding of encoder q/k around RoPE (default: fp32)")
    return p.parse_args()


def analytic_rope_forward(self, tokens, positions):
    """RoPE-2D with cuRoPE semantics for any (also negative) position (docs/numerics.md §3).

    tokens (B, heads, N, D), positions (B, N, 2) as (y, x). First half of D is rotated with y,
    second half with x; within a half, pairs (j, j+Q) with theta_j = p * base^(-j/Q), Q = D/4.
    """
    import torch

    B, nh, N, D = tokens.shape
    assert D % 4 == 0, f"RoPE head dim {D} must be a multiple of 4"
    Q = D // 4
    inv = self.base ** (-torch.arange(Q, dtype=torch.float64) / Q)  # (Q,)
    pos = positions.to(torch.float64)  # (B, N, 2)
    out = []
    for axis, half in enumerate(tokens.float().chunk(2, dim=-1)):
        ang = pos[:, :, axis, None] * inv  # (B, N, Q)
        cos = ang.cos().to(torch.float32)[:, None]  # (B, 1, N, Q)
        sin = ang.sin().to(torch.float32)[:, None]
        u, v = half[..., :Q], half[..., Q:]
        out += [u * cos - v * sin, v * cos + u * sin]
    return torch.cat(out, dim=-1).to(tokens.dtype)


# Every tensor of these families must come from our file (the camera-token path + init + pose head,
# and the point-map heads: final_transform and the self/cross DPT adapters).
REQUIRED_PREFIXES = (
    "patch_embed.proj.", "enc_blocks.", "enc_norm.", "decoder_embed.", "dec_blocks.", "dec_blocks_state.",
    "dec_norm.", "dec_norm_state.", "decoder_embed_state.", "register_tokens.", "pose_token",
    "pose_retriever.", "downstream_head.pose_head.", "downstream_head.final_transform.",
    "downstream_head.dpt_self.", "downstream_head.dpt_cross.",
)


def use_config_dpt_dims(cfg):
    """Patch 3: the official DPTPts3dPose hard-codes its DPT widths (layer_dims [96,192,384,768],
    feature_dim 256, last_dim 128). Build its adapters with the config's widths instead (the same
    values for the release config); only these hyperparameters change, the forward code is official.
    """
    import dust3r.heads.dpt_head as dpt_head

    official = dpt_head.DPTOutputAdapter_fix
    if getattr(official, "_loc3r_config_dims", False):
        official = official.__mro__[1]

    class ConfigDims(official):
        _loc3r_config_dims = True

        def __init__(self, **kw):
            kw.update(layer_dims=list(cfg["dpt_layer_dims"]), feature_dim=cfg["dpt_feature_dim"], last_dim=cfg["dpt_last_dim"])
            super().__init__(**kw)

    dpt_head.DPTOutputAdapter_fix = ConfigDims


def build_official_model(ARCroco3DStereo, ARCroco3DStereoConfig, cfg, weights_path):
    """The official model for our `cut3r` config object, with our weights loaded.

    Only keys the model has with the same shape are loaded (the official loader's fallback
    would silently drop the whole decoder on one size mismatch); every tensor on the
    camera-token path must come from our file.
    Returns (model, our tensors, model state_dict, loaded tensors, load_state_dict result).
    """
    import torch
    from safetensors.torch import load_file

    W, H = cfg["input_size"]
    conf = ARCroco3DStereoConfig(
        state_size=cfg["state_size"], state_pe=cfg["state_pe"], pos_embed=cfg["pos_embed"],
        rgb_head=cfg["rgb_head"], pose_head=cfg["pose_head"], patch_embed_cls="PatchEmbedDust3R",
        img_size=(max(W, H), max(W, H)), head_type=cfg["head_type"], output_mode="pts3d+pose",
        depth_mode=("exp", -math.inf, math.inf), conf_mode=("exp", 1, math.inf),
        pose_mode=("exp", -math.inf, math.inf), enc_embed_dim=cfg["enc_embed_dim"],
        enc_depth=cfg["enc_depth"], enc_num_heads=cfg["enc_num_heads"], dec_embed_dim=cfg["dec_embed_dim"],
        dec_depth=cfg["dec_depth"], dec_num_heads=cfg["dec_num_heads"],
        state_dec_num_heads=cfg["state_dec_num_heads"], local_mem_size=cfg["local_mem_size"],
        patch_size=cfg["patch_size"], mlp_ratio=cfg["mlp_ratio"], landscape_only=False,
    )
    use_config_dpt_dims(cfg)
    torch.manual_seed(0)  # only the RGB head and the ray-map encoder stay random (not exported, not compared)
    model = ARCroco3DStereo(conf).eval()
    ours = load_file(str(weights_path))
    theirs = model.state_dict()
    usable = {k: v for k, v in ours.items() if k in theirs and tuple(theirs[k].shape) == tuple(v.shape)}
    # Aliases (the DPT's `scratch.layer_rn.i` is `scratch.layer{i+1}_rn`): one parameter under two
    # names; our file keeps one name, the alias gets the same tensor.
    by_storage = {}
    for k, t in theirs.items():
        by_storage.setdefault(t.data_ptr(), []).append(k)
    for names in by_storage.values():
        source = next((k for k in names if k in usable), None)
        for k in names:
            if source is not None and k not in usable:
                usable[k] = usable[source]
    res = model.load_state_dict(usable, strict=False)
    missing_required = [k for k in theirs if k not in usable and k.startswith(REQUIRED_PREFIXES)]
    if missing_required:
        sys.exit(f"required CUT3R tensors missing or mis-shaped in {weights_path}: {missing_required}")
    return model, ours, theirs, usable, res


def main():
    args = parse_args()
    src = os.path.join(os.path.abspath(args.cut3r_repo), "src")
    if not os.path.isdir(os.path.join(src, "dust3r")):
        sys.exit(f"{args.cut3r_repo}: no src/dust3r; pass the CUT3R checkout root")
    commit = args.cut3r_commit or repo_commit(args.cut3r_repo)
    sys.path.insert(0, src)

    import torch
    from safetensors.numpy import save_file

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    import dust3r.blocks as dblocks
    from dust3r.model import ARCroco3DStereo, ARCroco3DStereoConfig
    from models import pos_embed as croco_pos_embed  # croco/ is on sys.path via dust3r.utils.path_to_croco

    # Patch 1: analytic RoPE (the class is the pure-PyTorch fallback unless cuRoPE compiled).
    croco_pos_embed.RoPE2D.forward = analytic_rope_forward

    ckpt_dir = os.path.abspath(args.checkpoint)
    cfg = json.load(open(os.path.join(ckpt_dir, "config.json")))["cut3r"]
    weights_path = os.path.join(ckpt_dir, "cut3r.safetensors")
    W, H = cfg["input_size"]
    assert abs(cfg["norm_eps"] - 1e-6) < 1e-12, "official LayerNorms use eps 1e-6"
    model, ours, theirs, usable, res = build_official_model(ARCroco3DStereo, ARCroco3DStereoConfig, cfg, weights_path)
    skipped = sorted(set(ours) - set(usable))
    not_loaded = [k for k in theirs if k not in usable]
    print(f"loaded {len(usable)} tensors; {len(skipped)} of our keys skipped (aliases), "
          f"{len(not_loaded)} model keys left random (RGB head/ray map only); load result: "
          f"{len(res.missing_keys)} missing, {len(res.unexpected_keys)} unexpected", file=sys.stderr)
    assert all(k.startswith(("downstream_head.dpt_rgb.", "enc_blocks_ray_map.", "enc_norm_ray_map.", "patch_embed_ray_map.",
                             "masked_img_token", "masked_ray_map_token"))
               for k in not_loaded), [k for k in not_loaded if "dpt_rgb" not in k][:10]

    # Patch 2: encoder q/k stay fp32 around RoPE unless asked otherwise.
    if not args.encoder_fp16_rope:
        for blk in model.enc_blocks:
            blk.attn.forward = types.MethodType(dblocks.Attention.forward, blk.attn)

    # Capture the encoder output (per batched call) and the camera token (dec_norm(I_L)[:, 0]).
    captured = {"features": [], "camera_token": [], "head_input": []}
    model.enc_norm.register_forward_hook(lambda m, i, o: captured["features"].append(o.detach().clone()))
    model.dec_norm.register_forward_hook(lambda m, i, o: captured["camera_token"].append(o[:, 0].detach().clone()))
    # The head's input list [F, dec[2L/4][:,1:], dec[3L/4][:,1:], dec[L]] (the hooks cut3r_step exports).
    model.downstream_head.register_forward_pre_hook(
        lambda m, args: captured["head_input"].append([t.detach().clone() for t in args[0]]))

    T = args.frames
    assert 0 < args.no_update_frame < T and 0 < args.reset_frame < T - 1 and args.reset_frame != args.no_update_frame
    g = torch.Generator().manual_seed(args.seed)
    views = []
    for i in range(T):
        img = torch.rand(1, 3, H, W, generator=g) * 2 - 1
        views.append(dict(
            img=img, true_shape=torch.tensor([[H, W]], dtype=torch.int32),
            img_mask=torch.tensor([True]), ray_mask=torch.tensor([False]),
            ray_map=torch.zeros(1, H, W, 6),
            update=torch.tensor([i != args.no_update_frame]), reset=torch.tensor([i == args.reset_frame]),
        ))
    with torch.no_grad():
        ress, _, states = model._forward_impl(views, ret_state=True)

    feats = captured["features"][0]  # one batched encoder call over all frames
    assert feats.shape[0] == T and len(captured["camera_token"]) == T, (feats.shape, len(captured["camera_token"]))
    out = {}
    f32 = lambda t: t.detach().to(torch.float32).contiguous().numpy()  # noqa: E731
    out["state_init"] = f32(states[0][2])
    out["mem_init"] = f32(states[0][4])
    for i in range(T):
        v = views[i]
        out[f"frame.{i}.image"] = f32(v["img"])
        out[f"frame.{i}.is_first"] = np.array([1.0 if i == 0 else 0.0], np.float32)
        out[f"frame.{i}.update"] = np.array([float(v["update"][0])], np.float32)
        out[f"frame.{i}.reset"] = np.array([float(v["reset"][0])], np.float32)
        out[f"frame.{i}.features"] = f32(feats[i:i + 1])
        out[f"frame.{i}.state_in"] = f32(states[i][0])
        out[f"frame.{i}.memory_in"] = f32(states[i][3])
        out[f"frame.{i}.camera_token"] = f32(captured["camera_token"][i])
        out[f"frame.{i}.camera_pose"] = f32(ress[i]["camera_pose"])
        out[f"frame.{i}.state_out"] = f32(states[i + 1][0])
        out[f"frame.{i}.memory_out"] = f32(states[i + 1][3])
    points_frames = [int(f) for f in args.points_frames.split(",") if f.strip()]
    assert all(0 <= f < T for f in points_frames), points_frames
    for i in points_frames:
        F, half, three_quarters, final = captured["head_input"][i]
        assert torch.equal(F, feats[i:i + 1]), "head hook 0 is the encoder output"
        out[f"frame.{i}.decoder_half"] = f32(half)
        out[f"frame.{i}.decoder_three_quarters"] = f32(three_quarters)
        out[f"frame.{i}.decoder_final"] = f32(final[:, 1:])
        for name in ("pts3d_in_self_view", "conf_self", "pts3d_in_other_view", "conf"):
            out[f"frame.{i}.{name}"] = f32(ress[i][name])
    for k, a in out.items():
        assert np.isfinite(a).all(), k

    meta = {
        "cut3r_safetensors_sha256": sha256_file(weights_path),
        "command": "tools/golden/cut3r_golden.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "checkpoint_command": "loc3r-export make-tiny --out DIR --seed 1",
        "cut3r_repo": "https://github.com/CUT3R/CUT3R",
        "cut3r_commit": commit,
        "torch": torch.__version__,
        "frames": str(T),
        "seed": str(args.seed),
        "no_update_frame": str(args.no_update_frame),
        "reset_frame": str(args.reset_frame),
        "points_frames": ",".join(str(f) for f in points_frames),
        "dpt_dims": "config (patched DPTOutputAdapter_fix widths)",
        "image_size_wh": f"{W}x{H}",
        "encoder_qk_rope": "fp16 (official quirk)" if args.encoder_fp16_rope else "fp32 (patched)",
        "rope": "analytic (patched RoPE2D.forward, cuRoPE semantics)",
        "device": "cpu fp32",
    }
    os.makedirs(args.out, exist_ok=True)
    save_file(out, os.path.join(args.out, "cut3r_golden.safetensors"), metadata=meta)
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    for i in range(T):
        print(f"frame {i}: update={out[f'frame.{i}.update'][0]:.0f} reset={out[f'frame.{i}.reset'][0]:.0f} "
              f"pose={np.array2string(out[f'frame.{i}.camera_pose'][0], precision=4)}")
    print(f"wrote {args.out}/cut3r_golden.safetensors ({len(out)} tensors) and meta.json")


if __name__ == "__main__":
    main()
