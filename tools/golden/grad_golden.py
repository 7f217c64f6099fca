#!/usr/bin/env python3
"""Dev-only training reference: the Loc3R losses and their gradients by PyTorch autograd, and one
torch.optim.AdamW step, for one prepared sample on a make-tiny checkpoint. Writes
tests/fixtures/train_tiny/grads.safetensors (models/tiny/config.json) and
tests/fixtures/train_variant/grads.safetensors (its own config.json, average pooling; the commands are
in its README), which train/tests/torch_parity.rs compares with the
ONNX training graph of `loc3r-train grad` (losses 1e-5 relative, gradients 1e-4 of max|g_ref| per
tensor, the AdamW step 1e-6 of max|theta_ref|).

Built from the contracts in docs/, not from the Rust training code:
  * the sample: docs/training.md §5 (image_features are the projector's input, labels aligned with
    input_ids, the placeholder -200 once);
  * the splice: docs/prompt.md §3 / docs/training.md §5: per frame [cam_projector(camera_token_f),
    the frame's pooled grid rows, a newline row after each grid row], at the placeholder's position;
  * the projector: LLaVA mlp2x_gelu (exact erf GELU), then get_2dPool (bilinear F.interpolate to
    ceil(g/stride), align_corners=False) and add_token_per_grid, as tools/golden/vlm_golden.py;
  * the decoder: HF Qwen2 (`Qwen2ForCausalLM` from the config, eager attention, fp32) over the
    whole sequence, position ids 0..S-1, causal; its last_hidden_state is after the final RMSNorm;
  * heads (docs/heads.md §1): pos/ori Linear-GELU(erf)-Linear at <Pos>/<Ori>, bev Linear at the
    grid tokens (frame-major, row-major, camera and newline rows skipped);
  * losses (docs/training.md §1, float32): Gaussian NLL with s = clamp(log sigma^2, -10, 10),
    BEV mean over valid (token, axis) pairs with max(1, .), position v * 1/2 sum_a l_a,
    orientation kl_div(log_softmax(z), q, batchmean) with the wrapped-Gaussian target q computed in
    float64 in the log domain (docs/training.md §2) and then cast, LM mean cross entropy where the
    logits at sequence position i-1 predict label i (label != -100); total
    L_lm + 0.1 L_bev + 0.5 (L_pos + L_ori) (or the config's loc3r.loss_weights);
  * the optimizer (docs/training.md §4): clip_grad_norm_(all trainable tensors, 1.0), then
    torch.optim.AdamW(foreach=False) with lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.1
    for tensors of rank >= 2 and 0 for the others (two parameter groups), step 1.

Every tensor of every trainable group is a leaf: heads, projector (mm_projector, image_newline,
cam_projector) and every Qwen2 tensor (embeddings, layers, final norm, lm_head).

Self-checks before writing: the HF forward against the NumPy float64 Qwen2 of vlm_golden.py, and the
whole computation repeated in float64 (the float32 rounding floor of each gradient is logged and
recorded in the metadata `f32_vs_f64_worst_grad_rel`).

Regenerate the fixture (the checkpoint is deterministic in its seed; its sha256 is recorded):

    cargo build -p loc3r-export -p loc3r-train --bins
    target/debug/loc3r-export make-tiny --out /tmp/loc3r-tiny-seed1 --seed 1
    target/debug/loc3r-train random-samples --checkpoint /tmp/loc3r-tiny-seed1 --out /tmp/train-samples \\
        --count 1 --frames 2 --seed 3
    cp /tmp/train-samples/000000.safetensors tests/fixtures/train_tiny/sample.safetensors
    .venv-dev/bin/python tools/golden/grad_golden.py --checkpoint /tmp/loc3r-tiny-seed1 \\
        --sample tests/fixtures/train_tiny/sample.safetensors --out tests/fixtures/train_tiny/grads.safetensors

`--set NAME[INDEX]=VALUE` (repeatable) overrides one element of a head or projector tensor of the
checkpoint before anything is computed, e.g. `--set model.loc3r.bev_head.bias[2]=10` puts the BEV
log-variances around the clamp (tests/fixtures/train_variant); the overrides are recorded in the
metadata `param_overrides` ({name: {flat index: value}}) for the test to apply the same.

Output (`grads.safetensors`, float32, sorted keys): rank-0 `loss`, `loss.lm`, `loss.bev`, `loss.pos`,
`loss.ori`; `grad.<checkpoint name>` for every trainable tensor in the checkpoint's layout
([out, in] for Linear weights); `adamw.<name>` the parameter after the AdamW step for the tensors of
ADAMW_TENSORS. The metadata holds the hyper-parameters, versions and the checkpoint's sha256.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import vlm_golden  # noqa: E402  (Checkpoint, build_qwen2, pooling/newline, NumPy Qwen2, writer)
from vlm_golden import Checker, Checkpoint, add_token_per_grid, build_qwen2, get_2dpool, write_safetensors  # noqa: E402

IMAGE_TOKEN_INDEX = -200
IGNORE = -100
MAKE_TINY = "loc3r-export make-tiny --out DIR --seed 1"
SAMPLE_COMMAND = "loc3r-train random-samples --checkpoint DIR --out SAMPLES --count 1 --frames 2 --seed 3"

LR, BETAS, EPS, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-3, (0.9, 0.999), 1e-8, 0.1, 1.0
# Tensors whose value after the AdamW step is written (every group; decayed and not decayed).
ADAMW_TENSORS = [
    "model.loc3r.pos_head.0.weight",
    "model.loc3r.bev_head.bias",
    "model.mm_projector.0.bias",
    "model.image_newline",
    "model.loc3r.cam_projector.2.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.1.self_attn.k_proj.bias",
    "model.norm.weight",
]
TRAINABLE_PREFIXES = ("model.loc3r.pos_head.", "model.loc3r.ori_head.", "model.loc3r.bev_head.",
                      "model.mm_projector.", "model.loc3r.cam_projector.",
                      "model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")


def log(msg: str) -> None:
    print(f"grad_golden: {msg}", file=sys.stderr)


vlm_golden.log = log  # the Checker's lines carry this tool's name


def is_trainable(name: str) -> bool:
    return name == "model.image_newline" or name.startswith(TRAINABLE_PREFIXES)


def read_sample(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def orientation_log_target(yaw: float, bins: int, sigma: float) -> torch.Tensor:
    """docs/training.md §2, float64: log q_k = -wrap(theta_k - yaw)^2 / (2 sigma^2) - logsumexp,
    theta_k = 2 pi k / K, wrap(d) = d - 2 pi ceil((d - pi) / 2 pi) in (-pi, pi]."""
    theta = 2 * math.pi * torch.arange(bins, dtype=torch.float64) / bins
    d = theta - yaw
    d = d - 2 * math.pi * torch.ceil((d - math.pi) / (2 * math.pi))
    logits = -d * d / (2 * sigma * sigma)
    return logits - torch.logsumexp(logits, 0)


class Layout:
    """Where things are in the spliced sequence (docs/prompt.md §3, docs/training.md §5)."""

    def __init__(self, ids: list[int], labels: list[int], frames: int, pooled: int, lc: dict):
        assert ids.count(IMAGE_TOKEN_INDEX) == 1, "one placeholder"
        assert len(labels) == len(ids)
        self.at = ids.index(IMAGE_TOKEN_INDEX)
        assert labels[self.at] == IGNORE, "the placeholder is never supervised"
        self.per_frame = 1 + pooled * (pooled + 1)  # camera row, then G rows of (G tokens + newline)
        self.video = frames * self.per_frame
        self.total = len(ids) - 1 + self.video
        seq = lambda i: i if i < self.at else i - 1 + self.video  # noqa: E731
        assert ids.count(lc["pos_token_id"]) == 1 and ids.count(lc["ori_token_id"]) == 1
        self.pos = seq(ids.index(lc["pos_token_id"]))
        self.ori = seq(ids.index(lc["ori_token_id"]))
        self.grid = [self.at + f * self.per_frame + 1 + r * (pooled + 1) + c
                     for f in range(frames) for r in range(pooled) for c in range(pooled)]
        sup = [(seq(i) - 1, t) for i, t in enumerate(labels) if t != IGNORE]
        self.lm_rows = [p for p, _ in sup]
        self.lm_targets = [t for _, t in sup]
        assert all(0 <= p < self.total for p in self.lm_rows)


def mlp(x, p, prefix):
    """Linear -> exact (erf) GELU -> Linear (mlp2x_gelu and the Loc3R MLPs)."""
    h = F.gelu(F.linear(x, p[prefix + "0.weight"], p[prefix + "0.bias"]), approximate="none")
    return F.linear(h, p[prefix + "2.weight"], p[prefix + "2.bias"])


def gaussian_nll(pred, target):
    """docs/training.md §1, per axis: 1/2 ((t - mu)^2 exp(-s) + s), s clamped to [-10, 10]."""
    mu, s = pred[..., 0:2], torch.clamp(pred[..., 2:4], -10.0, 10.0)
    return 0.5 * ((target - mu) ** 2 * torch.exp(-s) + s)


def losses(p, llm, sample, lay: Layout, cfg: dict, weights: dict, dtype):
    """The four losses and the total for one sample (B = 1), computed in `dtype`."""
    lc = cfg["loc3r"]
    H = cfg["hidden_size"]
    feats = sample["image_features"].to(dtype)
    frames = feats.shape[0]
    cams = sample["camera_tokens"].to(dtype)
    ids = sample["input_ids"].tolist()

    # projector: mlp2x_gelu, get_2dPool, grid newlines; camera projector
    z = mlp(feats, p, "model.mm_projector.")
    pooled = get_2dpool(z, cfg["mm_spatial_pool_mode"], cfg.get("mm_spatial_pool_stride", 2))
    grid = add_token_per_grid(pooled, p["model.image_newline"]).reshape(frames, -1, H)
    cam = mlp(cams, p, "model.loc3r.cam_projector.")
    video = torch.cat([cam[:, None], grid], 1).reshape(-1, H)
    assert video.shape[0] == lay.video

    # embeddings and the splice
    text = torch.tensor([t for t in ids if t != IMAGE_TOKEN_INDEX], dtype=torch.int64)
    te = F.embedding(text, p["model.embed_tokens.weight"])
    embeds = torch.cat([te[:lay.at], video, te[lay.at:]], 0)[None]
    S = embeds.shape[1]
    assert S == lay.total

    # decoder (final-norm hidden states), every Qwen2 tensor from `p`
    inner = {k[len("model."):]: v for k, v in p.items() if k.startswith(("model.embed_tokens.", "model.layers.", "model.norm."))}
    out = torch.func.functional_call(
        llm.model, inner, args=(),
        kwargs=dict(inputs_embeds=embeds, attention_mask=torch.ones(1, S, dtype=torch.int64),
                    position_ids=torch.arange(S)[None], use_cache=False))
    hidden = out.last_hidden_state[0]

    # heads
    position = mlp(hidden[lay.pos], p, "model.loc3r.pos_head.")
    ori_logits = mlp(hidden[lay.ori], p, "model.loc3r.ori_head.")
    bev = F.linear(hidden[lay.grid], p["model.loc3r.bev_head.weight"], p["model.loc3r.bev_head.bias"])

    # losses (B = 1)
    v = sample["situation_valid"].to(dtype)[0]
    mask = sample["bev_mask"].to(dtype)
    bev_nll = gaussian_nll(bev, sample["bev_target"].to(dtype)).sum(-1)
    l_bev = (bev_nll * mask).sum() / (2 * torch.clamp(mask.sum(), min=1.0))
    l_pos = v * 0.5 * gaussian_nll(position, sample["pos_target"].to(dtype)).sum()
    log_q = orientation_log_target(float(sample["yaw_target"][0]), lc["orientation_bins"],
                                   math.radians(lc["orientation_sigma_deg"])).to(dtype)
    l_ori = v * F.kl_div(F.log_softmax(ori_logits, -1)[None], log_q[None], reduction="batchmean", log_target=True)
    logits = F.linear(hidden[lay.lm_rows], p["lm_head.weight"])
    l_lm = F.cross_entropy(logits, torch.tensor(lay.lm_targets, dtype=torch.int64), reduction="mean")
    total = (weights["lm"] * l_lm + weights["bev"] * l_bev
             + weights["sit"] * (l_pos + weights["ori"] * l_ori))
    return {"loss": total, "loss.lm": l_lm, "loss.bev": l_bev, "loss.pos": l_pos, "loss.ori": l_ori}, embeds, bev


def parse_overrides(items: list[str]) -> dict[str, dict[int, float]]:
    """`NAME[INDEX]=VALUE` -> {name: {flat index: value}}."""
    out: dict[str, dict[int, float]] = {}
    for item in items:
        m = re.fullmatch(r"([\w.]+)\[(\d+)\]=(.+)", item)
        if not m:
            raise SystemExit(f"--set {item}: expected NAME[INDEX]=VALUE")
        out.setdefault(m.group(1), {})[int(m.group(2))] = float(m.group(3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, type=Path, help=f"tiny checkpoint ({MAKE_TINY})")
    ap.add_argument("--sample", required=True, type=Path, help="prepared sample (docs/training.md §5)")
    ap.add_argument("--out", required=True, type=Path, help="grads.safetensors to write")
    ap.add_argument("--checkpoint-command", default=MAKE_TINY, help="how the checkpoint was made (recorded)")
    ap.add_argument("--sample-command", default=SAMPLE_COMMAND, help="how the sample was made (recorded)")
    ap.add_argument("--bench", type=int, default=0, metavar="N",
                    help="time N training steps (f32 forward + autograd of every trainable tensor, after one warm-up), "
                         "print them as JSON and exit without checks or output (tools/bench-train)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--set", action="append", default=[], metavar="NAME[INDEX]=VALUE",
                    help="override one element of a head/projector tensor (recorded in the metadata)")
    args = ap.parse_args()
    overrides = parse_overrides(args.set)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    chk = Checker()
    ck = Checkpoint(args.checkpoint)
    cfg = ck.config
    lc = cfg["loc3r"]
    weights = {"lm": 1.0, "bev": 0.1, "sit": 0.5, "ori": 1.0}
    weights.update(lc.get("loss_weights", {}))
    sample = read_sample(args.sample)
    frames, P, _ = sample["image_features"].shape
    g = math.isqrt(P)
    assert g * g == P
    stride = cfg.get("mm_spatial_pool_stride", 2)
    pooled = math.ceil(g / stride) if cfg["mm_spatial_pool_mode"] == "bilinear" else g // stride
    lay = Layout(sample["input_ids"].tolist(), sample["labels"].tolist(), frames, pooled, lc)
    chk.true(f"bev_target covers the {len(lay.grid)} grid tokens", tuple(sample["bev_target"].shape) == (len(lay.grid), 2))
    log(f"{frames} frames, sequence {lay.total} ({lay.video} video rows), {len(lay.lm_rows)} supervised, "
        f"<Pos> {lay.pos}, <Ori> {lay.ori}, {int(sample['bev_mask'].sum())}/{len(lay.grid)} valid BEV tokens")

    llm, tied = build_qwen2(ck)
    assert not tied, "the tiny checkpoint has its own lm_head"
    names = sorted(n for n in ck.tensors if is_trainable(n))
    for n, elems in overrides.items():
        # The decoder self-check reads the Qwen2 tensors from the checkpoint: override heads/projector only.
        chk.true(f"--set {n}: a trainable head or projector tensor", n in names and n.startswith(("model.loc3r.", "model.mm_projector.")))
        chk.true(f"--set {n}: indices within {ck.get(n).numel()}", all(i < ck.get(n).numel() for i in elems))

    def initial(n: str) -> torch.Tensor:
        t = ck.get(n).clone()
        for i, v in overrides.get(n, {}).items():
            t.view(-1)[i] = v
        return t

    params = {n: initial(n).requires_grad_(True) for n in names}
    llm_names = {k for k in llm.state_dict() if not k.endswith("inv_freq")}
    chk.true("every Qwen2 tensor is a trainable leaf", llm_names <= set(params))

    if args.bench:
        import json, resource, time
        times = []
        for i in range(args.bench + 1):  # the first run warms up
            t0 = time.perf_counter()
            step_parts, _, _ = losses(params, llm, sample, lay, cfg, weights, torch.float32)
            torch.autograd.grad(step_parts["loss"], [params[n] for n in names], allow_unused=True)
            if i:
                times.append(time.perf_counter() - t0)
        print(json.dumps({"step_s_min": min(times), "step_s_median": sorted(times)[len(times) // 2],
                          "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                          "sequence": lay.total, "trainable_tensors": len(names)}))
        return

    parts, embeds, bev = losses(params, llm, sample, lay, cfg, weights, torch.float32)
    with torch.no_grad():  # where the BEV log-variances sit relative to the clamp
        s = bev[:, 2:4]
        beyond = int(((s < -10.0) | (s > 10.0)).sum())
        gap = float((s.abs() - 10.0).abs().min())
        valid = sample["bev_mask"].bool()
        log(f"valid-token BEV log-variances beyond the clamp: {int(((s[valid] < -10.0) | (s[valid] > 10.0)).sum())}; s_x {[round(float(x), 4) for x in s[:, 0]]}")
        log(f"BEV log-variances in [{float(s.min()):.4f}, {float(s.max()):.4f}]: {beyond} of {s.numel()} beyond the clamp, "
            f"closest {gap:.2e} from it")
    with torch.no_grad():  # the HF decoder against the NumPy float64 one of vlm_golden.py
        _, np_hidden, _ = vlm_golden.np_qwen2(ck, embeds[0].numpy().astype(np.float64))
        hf = llm.model(inputs_embeds=embeds, position_ids=torch.arange(embeds.shape[1])[None], use_cache=False)
        chk.close("decoder hidden states: HF fp32 vs NumPy float64", hf.last_hidden_state[0], np_hidden, 1e-4)
    grads = torch.autograd.grad(parts["loss"], [params[n] for n in names], allow_unused=True)
    unused = [n for n, gr in zip(names, grads) if gr is None]
    chk.true(f"every trainable tensor gets a gradient ({len(names)} tensors)", not unused)
    grads = dict(zip(names, (gr.detach() for gr in grads)))
    log("losses " + ", ".join(f"{k} {float(v):.6f}" for k, v in parts.items()))

    # The float32 rounding floor: the same computation in float64.
    llm64 = copy.deepcopy(llm).double()
    p64 = {n: initial(n).double().requires_grad_(True) for n in names}
    parts64, _, _ = losses(p64, llm64, sample, lay, cfg, weights, torch.float64)
    g64 = torch.autograd.grad(parts64["loss"], [p64[n] for n in names])
    # (a loss that is exactly 0, as L_pos and L_ori without a situation, counts absolutely)
    loss_floor = max(abs(float(parts[k]) - float(parts64[k])) / max(abs(float(parts64[k])), 1.0 if float(parts64[k]) == 0.0 else 0.0)
                     for k in parts)
    grad_floor, worst = 0.0, ""
    for n, gg in zip(names, g64):
        rel = float((grads[n].double() - gg).abs().max() / gg.abs().max().clamp(min=1e-30))
        if rel > grad_floor:
            grad_floor, worst = rel, n
    log(f"float32 vs float64: losses {loss_floor:.2e} relative, gradients {grad_floor:.2e} of max|g| ({worst})")
    chk.true(f"float32 vs float64: losses within 1e-6 relative ({loss_floor:.2e})", loss_floor < 1e-6)
    chk.true(f"float32 vs float64: gradients within 1e-5 of max|g| ({grad_floor:.2e}, {worst})", grad_floor < 1e-5)

    # One AdamW step (after clipping the global norm).
    with torch.no_grad():
        leaves = {n: initial(n).requires_grad_(True) for n in names}
        for n in names:
            leaves[n].grad = grads[n].clone()
        norm = torch.nn.utils.clip_grad_norm_([leaves[n] for n in names], MAX_GRAD_NORM)
    opt = torch.optim.AdamW(
        [{"params": [leaves[n] for n in names if leaves[n].dim() >= 2], "weight_decay": WEIGHT_DECAY},
         {"params": [leaves[n] for n in names if leaves[n].dim() < 2], "weight_decay": 0.0}],
        lr=LR, betas=BETAS, eps=EPS, foreach=False)
    opt.step()
    log(f"AdamW step: gradient norm before clipping {float(norm):.6f}")

    out = {k: v.detach().reshape(()).to(torch.float32) for k, v in parts.items()}
    out.update({f"grad.{n}": grads[n].contiguous() for n in names})
    out.update({f"adamw.{n}": leaves[n].detach().clone().contiguous() for n in ADAMW_TENSORS})
    if overrides:
        metadata_overrides = {
            "param_overrides": json.dumps({n: {str(i): v for i, v in sorted(e.items())} for n, e in sorted(overrides.items())}),
            "bev_log_variance_beyond_clamp": f"{beyond} of {s.numel()} (closest {gap:.2e} from +-10)",
        }
    else:
        metadata_overrides = {}
    metadata = {
        "format": "pt",
        "generator": "tools/golden/grad_golden.py",
        "checkpoint_command": args.checkpoint_command,
        "checkpoint_sha256": json.dumps(ck.sha256, sort_keys=True),
        "sample_command": args.sample_command,
        "loss_weights": json.dumps(weights, sort_keys=True),
        "adamw": json.dumps({"lr": LR, "betas": list(BETAS), "eps": EPS, "weight_decay_rank_ge_2": WEIGHT_DECAY,
                             "max_grad_norm": MAX_GRAD_NORM, "step": 1, "foreach": False}),
        "grad_norm_before_clipping": f"{float(norm):.9g}",
        "f32_vs_f64_worst_grad_rel": f"{grad_floor:.3e} ({worst})",
        "f32_vs_f64_worst_loss_rel": f"{loss_floor:.3e}",
        "versions": json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                                "numpy": np.__version__, "python": sys.version.split()[0]}),
        "checks": json.dumps(chk.lines),
        **metadata_overrides,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(args.out, out, metadata)
    log(f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(names)} gradients, {len(ADAMW_TENSORS)} AdamW tensors; "
        f"{len(chk.lines)} checks passed")


if __name__ == "__main__":
    main()
