#!/usr/bin/env python3
"""Dev-only whole-pipeline reference: image directory -> frames -> CUT3R + SigLIP -> prompt -> Qwen2
prefill (heads) + greedy decode, on the tiny checkpoint. See README-pipeline.md.

Built from the contracts in docs/, not from the Rust runtime:
  * frame sampling, time instruction, prompt, tokenisation: docs/prompt.md §1-§3;
  * SigLIP preprocessing (Pillow bicubic, /255, (x-0.5)/0.5): docs/prompt.md §4;
  * CUT3R preprocessing (long side with Python round, LANCZOS if S > long side else BICUBIC, centre crop
    to multiples of 16, [-1,1]): docs/cut3r.md §1 (cross-checked against the official
    `_resize_pil_image` source);
  * CUT3R: the OFFICIAL code (`ARCroco3DStereo._forward_impl`, state_init/mem_init, is_first on frame 0,
    update=1, reset=0), loaded and patched exactly as tools/golden/cut3r_golden.py does;
  * SigLIP / Qwen2: Hugging Face transformers modules built as tools/golden/vlm_golden.py does
    (eager attention, fp32); projector mlp2x_gelu (erf), bilinear pooling, grid newlines (LLaVA-NeXT code
    in vlm_golden.py); Loc3R: per frame [cam_projector(camera_token_f), vision tokens of frame f];
  * heads on the prefill's final-norm hidden states at <Pos>/<Ori>; position (x, y, sigma = exp(0.5 log
    sigma^2)); yaw by circular soft-argmax (paper eq. 9-10), bins at 2*pi*k/K, degrees in (-180, 180].

    .venv-dev/bin/python tools/golden/pipeline_golden.py --cut3r-repo /tmp/cut3r-src \
        --checkpoint /tmp/loc3r-tiny-seed1 --out tests/fixtures/pipeline_tiny [--write-frames]

`--write-frames` (re)creates the synthetic frames in OUT/frames/ first; without it the committed frames
are read as they are (they are the input of record).

Other inputs (defaults reproduce tests/fixtures/pipeline_tiny byte for byte):
  --frame-size WxH, --num-video-frames T   size and count of the synthetic frames (with --write-frames);
  --frames DIR                             read the frames from DIR instead of OUT/frames/;
  --lenient                                the >= 16 ids / greedy margin self-checks warn instead of
                                           failing; per-step margins are written to reference.json;
  --dump FILE.npz                          intermediate tensors (pixels, camera tokens, SigLIP features,
                                           vision/camera embeddings, prefill hidden states) for debugging.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import PIL
import PIL.Image
import torch
import transformers
from PIL import Image
from PIL.ImageOps import exif_transpose

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cut3r_golden  # noqa: E402  (RoPE patch, required-tensor list, commit helper)
import vlm_golden  # noqa: E402  (HF module builders, projector/pool/newline, checker)
from vlm_golden import Checker, Checkpoint, add_token_per_grid, build_qwen2, build_siglip, get_2dpool, mlp2  # noqa: E402

CUT3R_COMMIT = "8bc15dc92a6d7fd92920b4ec81540d3dec7d3ecf"
IMAGE_TOKEN_INDEX = -200
MAKE_TINY = "target/debug/loc3r-export make-tiny --out DIR --seed 1"

# Frames of the committed "video" (defaults of --num-video-frames and --frame-size).
NUM_VIDEO_FRAMES = 12
FRAME_W, FRAME_H = 160, 120

# The two questions (situation None = the default situation of the config). Chosen (by trying a few)
# so that greedy decoding on the tiny seed-1 checkpoint gives >= 16 ids with clear top-1/top-2 margins:
# the first is capped by max_new_tokens, the second ends on a stop id (38 ids), so both ways of ending
# a generation are covered.
QUESTIONS = [
    {"name": "q_default_situation", "situation": None, "question": "What is in front of me?",
     "max_new_tokens": 32},
    {"name": "q_custom_situation", "situation": "I am next to the lamp, looking at the table.",
     "question": "How far is the sofa?", "max_new_tokens": 64},
]
MIN_GENERATED = 16
MIN_MARGIN = 1e-3  # greedy top-1 minus top-2 logit, every step (fp32 graphs vs torch must not flip)


def log(msg: str) -> None:
    print(f"pipeline_golden: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# input frames


def make_frames(out: Path, W: int = FRAME_W, H: int = FRAME_H, count: int = NUM_VIDEO_FRAMES) -> None:
    """`count` deterministic WxH frames (default 12 of 160x120): a camera panning over a synthetic
    room-like panorama (smooth gradients, a floor, shapes with hard edges, stripes), plus a small object
    moving on its own."""
    PW = W + 8 * count
    yy, xx = np.mgrid[0:H, 0:PW].astype(np.float64)
    pano = np.zeros((H, PW, 3))
    pano[..., 0] = 60 + 120 * xx / PW
    pano[..., 1] = 90 + 80 * yy / H
    pano[..., 2] = 200 - 100 * xx / PW
    floor = yy > 0.65 * H
    pano[floor] = np.stack([150 + 40 * np.sin(xx[floor] / 9.0), 110 + 0 * xx[floor], 70 + 30 * (yy[floor] - 0.65 * H) / H], -1)
    # a "door" (dark rectangle with a frame), a "window" (bright with mullions), a round "lamp"
    pano[20:80, 30:58] = [70, 40, 25]
    pano[18:20, 28:60] = pano[80:82, 28:60] = [230, 230, 230]
    pano[15:50, 120:190] = [210, 235, 250]
    pano[15:50, 154:156] = pano[31:33, 120:190] = [90, 90, 100]
    lamp = (xx - 230) ** 2 + (yy - 40) ** 2 < 14 ** 2
    pano[lamp] = [250, 220, 90]
    stripes = (yy > 88) & (yy < 100) & (xx > 90) & (xx < 200) & ((xx // 5) % 2 == 0)
    pano[stripes] = [30, 120, 60]
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    for i in range(count):
        frame = pano[:, 8 * i: 8 * i + W].copy()
        # a ball moving on its own (down-right), not with the pan
        fy, fx = np.mgrid[0:H, 0:W]
        ball = (fx - (20 + 10 * i)) ** 2 + (fy - (30 + 4 * i)) ** 2 < 7 ** 2
        frame[ball] = [200, 30, 40]
        img = np.clip(np.round(frame), 0, 255).astype(np.uint8)
        Image.fromarray(img, "RGB").save(out / f"frame_{i:03d}.png", optimize=True)


def list_frames(d: Path) -> list[Path]:
    files = sorted((p for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")), key=lambda p: p.name)
    others = [p for p in d.iterdir() if p.suffix.lower() not in (".png", ".jpg", ".jpeg")]
    if others:
        raise SystemExit(f"{d}: non-image entries {others}")
    return files


def sample_indices(total: int, n: int) -> list[int]:
    """docs/prompt.md §1: numpy linspace(0, T-1, N, dtype=int), checked against floor(k*step) + pinned end."""
    idx = [int(i) for i in np.linspace(0, total - 1, n, dtype=int)]
    step = (total - 1) / (n - 1)
    by_hand = [math.floor(k * step) for k in range(n - 1)] + [total - 1]
    assert idx == by_hand, (idx, by_hand)
    return idx


# ------------------------------------------------------------------------------------------------
# preprocessing


def siglip_pixels(img: Image.Image, size: int) -> np.ndarray:
    """docs/prompt.md §4: Pillow bicubic to size x size (no aspect), /255, (x-0.5)/0.5, CHW."""
    r = img.resize((size, size), Image.BICUBIC)
    x = np.asarray(r, dtype=np.uint8).astype(np.float64) * (1 / 255)
    return ((x - 0.5) / 0.5).astype(np.float32).transpose(2, 0, 1)


def cut3r_image(img: Image.Image, long_side: int) -> Image.Image:
    """docs/cut3r.md §1 (long side with Python round, LANCZOS if S > long side, centre crop)."""
    W1, H1 = img.size
    S = max(W1, H1)
    interp = Image.LANCZOS if S > long_side else Image.BICUBIC
    img = img.resize((round(W1 * long_side / S), round(H1 * long_side / S)), interp)
    W, H = img.size
    cx, cy = W // 2, H // 2
    halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
    if W == H:
        halfh = 3 * halfw / 4
    return img.crop((cx - halfw, cy - halfh, cx + halfw, cy + halfh))


def cut3r_pixels(img: Image.Image, long_side: int) -> np.ndarray:
    x = np.asarray(cut3r_image(img, long_side), dtype=np.uint8).astype(np.float64) / 255.0
    return ((x - 0.5) / 0.5).astype(np.float32).transpose(2, 0, 1)


def official_resize_fn(cut3r_repo: Path):
    """The official `_resize_pil_image` (src/dust3r/utils/image.py), extracted from the source: the module
    itself imports torchvision and cv2, which the dev venv does not have."""
    src = (cut3r_repo / "src/dust3r/utils/image.py").read_text()
    fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "_resize_pil_image")
    ns = {"PIL": PIL}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "image.py", "exec"), ns)
    return ns["_resize_pil_image"]


# ------------------------------------------------------------------------------------------------
# CUT3R (official)


def official_cut3r(cut3r_repo: Path, ckpt_dir: Path, pose_head_only: bool = False):
    """The official model for the checkpoint, built once (analytic RoPE, fp32 encoder q/k, as
    cut3r_golden.py). Returns `run(images [F,3,H,W]) -> (camera tokens [F, Dc], poses [F, 7])`,
    which runs `_forward_impl` with state_init/mem_init, is_first on frame 0, update=1, reset=0.
    `pose_head_only` reduces the downstream head to the pose head (what cut3r_step computes)."""
    src = str(cut3r_repo / "src")
    if not os.path.isdir(os.path.join(src, "dust3r")):
        raise SystemExit(f"{cut3r_repo}: no src/dust3r; pass the CUT3R checkout root")
    sys.path.insert(0, src)
    import dust3r.blocks as dblocks
    from dust3r.model import ARCroco3DStereo, ARCroco3DStereoConfig
    from models import pos_embed as croco_pos_embed

    croco_pos_embed.RoPE2D.forward = cut3r_golden.analytic_rope_forward
    cfg = json.loads((ckpt_dir / "config.json").read_text())["cut3r"]
    W, H = cfg["input_size"]
    model = cut3r_golden.build_official_model(ARCroco3DStereo, ARCroco3DStereoConfig, cfg, ckpt_dir / "cut3r.safetensors")[0]
    for blk in model.enc_blocks:  # fp32 q/k around RoPE (as cut3r_golden.py's default)
        blk.attn.forward = types.MethodType(dblocks.Attention.forward, blk.attn)
    if pose_head_only:
        from dust3r.heads.postprocess import postprocess_pose

        head = model.downstream_head
        model._downstream_head = lambda decout, img_shape, **kwargs: {
            "camera_pose": postprocess_pose(head.pose_head(decout[-1][:, 0]), head.pose_mode)}

    cams = []
    model.dec_norm.register_forward_hook(lambda m, i, o: cams.append(o[:, 0].detach().clone()))

    def run(images: np.ndarray):
        cams.clear()
        F_, _, h, w = images.shape
        if (w, h) != (W, H):  # the bundle must then be exported with --cut3r-size {w}x{h}
            log(f"CUT3R input {w}x{h} (the config says {W}x{H}; export with --cut3r-size {w}x{h})")
        views = [dict(img=torch.from_numpy(images[i:i + 1]), true_shape=torch.tensor([[h, w]], dtype=torch.int32),
                      img_mask=torch.tensor([True]), ray_mask=torch.tensor([False]), ray_map=torch.zeros(1, h, w, 6),
                      update=torch.tensor([True]), reset=torch.tensor([False])) for i in range(F_)]
        with torch.no_grad():
            ress, _, _states = model._forward_impl(views, ret_state=True)
        assert len(cams) == F_
        return torch.cat(cams, 0), torch.cat([r["camera_pose"] for r in ress], 0)

    return run


# ------------------------------------------------------------------------------------------------
# prompt


def time_instruction(duration: float, times: list[float]) -> str:
    """docs/prompt.md §2, with Python %-formatting (`%.2f`)."""
    stamps = ",".join("%.2fs" % t for t in times)
    return ("The video lasts for %.2f seconds, and %d frames are uniformly sampled from it. "
            "These frames are located at %s.Please answer the following questions related to this video."
            % (duration, len(times), stamps))


def prompt_text(time_text: str, situation: str, question: str) -> str:
    """docs/prompt.md §2: ChatML with the Loc3R user content."""
    user = f"<image>\n{time_text}\n{situation}<Pos><Ori>{question}"
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


def tokenize_with_image(tok, text: str) -> list[int]:
    """docs/prompt.md §3: split on `<image>`, tokenise chunks independently (no special tokens added), -200 between."""
    chunks = text.split("<image>")
    ids: list[int] = []
    for i, c in enumerate(chunks):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        ids += tok.encode(c, add_special_tokens=False).ids
    return ids


# ------------------------------------------------------------------------------------------------


class MaskPadding(transformers.LogitsProcessor):
    """Ids >= tokenizer size are untrained padding rows (docs/prompt.md §5: never chosen)."""

    def __init__(self, limit: int):
        self.limit = limit

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.limit:] = -math.inf
        return scores


def circular_yaw_deg(logits: np.ndarray) -> tuple[float, np.ndarray]:
    """Paper eq. 9-10: p = softmax, (c, s) = sum p (cos, sin) theta_k, theta_k = 2 pi k / K."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    theta = 2 * math.pi * np.arange(len(p)) / len(p)
    c, s = float((p * np.cos(theta)).sum()), float((p * np.sin(theta)).sum())
    deg = math.degrees(math.atan2(s, c))
    if deg <= -180.0:
        deg += 360.0
    return deg, p


def tensor_summary(t: torch.Tensor) -> dict:
    a = t.detach().double().numpy()
    return {"shape": list(a.shape), "sum": float(a.sum()), "abs_sum": float(np.abs(a).sum()),
            "first": [float(v) for v in a.reshape(-1)[:4]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cut3r-repo", required=True, type=Path, help="official CUT3R sources (directory holding src/)")
    ap.add_argument("--checkpoint", required=True, type=Path, help=f"tiny checkpoint ({MAKE_TINY})")
    ap.add_argument("--out", required=True, type=Path, help="fixture dir (tests/fixtures/pipeline_tiny)")
    ap.add_argument("--write-frames", action="store_true", help="(re)create OUT/frames/ first")
    ap.add_argument("--frame-size", default=f"{FRAME_W}x{FRAME_H}", help="WxH of the synthetic frames (--write-frames)")
    ap.add_argument("--num-video-frames", type=int, default=NUM_VIDEO_FRAMES, help="number of synthetic frames (--write-frames)")
    ap.add_argument("--frames", type=Path, help="read the frames from this directory instead of OUT/frames/")
    ap.add_argument("--lenient", action="store_true",
                    help=f"report instead of enforcing >= {MIN_GENERATED} ids and greedy margins >= {MIN_MARGIN}")
    ap.add_argument("--dump", type=Path, help="write intermediate tensors to this .npz")
    ap.add_argument("--checkpoint-command", default=MAKE_TINY, help="how the checkpoint was made (recorded)")
    args = ap.parse_args()
    try:
        frame_w, frame_h = (int(v) for v in args.frame_size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--frame-size {args.frame_size}: expected WxH, e.g. 200x120")
    if args.frames is not None and args.write_frames:
        raise SystemExit("--frames and --write-frames exclude each other (--write-frames writes OUT/frames/)")
    if not args.write_frames and ((frame_w, frame_h) != (FRAME_W, FRAME_H) or args.num_video_frames != NUM_VIDEO_FRAMES):
        raise SystemExit("--frame-size and --num-video-frames shape the synthetic frames: add --write-frames")

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    chk = Checker()
    ck = Checkpoint(args.checkpoint)
    cfg = ck.config
    lc, vc = cfg["loc3r"], cfg["vision_config"]
    frames_dir = args.out / "frames" if args.frames is None else args.frames
    if args.write_frames:
        make_frames(frames_dir, frame_w, frame_h, args.num_video_frames)
    files = list_frames(frames_dir)
    T, N, fps = len(files), lc["num_frames"], 1.0
    idx = sample_indices(T, N)
    times = [i / fps for i in idx]
    duration = T / fps
    log(f"{T} frames in {frames_dir}, sampled {idx}")

    pil = [exif_transpose(Image.open(files[i])).convert("RGB") for i in idx]
    sig = np.stack([siglip_pixels(im, vc["image_size"]) for im in pil])
    cut_long = lc["cut3r_long_side"]
    official_resize = official_resize_fn(args.cut3r_repo)
    for im in pil:
        mine = cut3r_image(im, cut_long)
        theirs = official_resize(im, cut_long)
        W, H = theirs.size
        cx, cy = W // 2, H // 2
        hw, hh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
        if W == H:  # official load_images: `if not (square_ok) and W == H: halfh = 3 * halfw / 4`
            hh = 3 * hw / 4
        theirs = theirs.crop((cx - hw, cy - hh, cx + hw, cy + hh))
        chk.true(f"CUT3R preprocessing == official _resize_pil_image + crop ({im.size} -> {mine.size})",
                 mine.size == theirs.size and np.array_equal(np.asarray(mine), np.asarray(theirs)))
    cut = np.stack([cut3r_pixels(im, cut_long) for im in pil])
    dump = {"siglip_pixels": sig, "cut3r_pixels": cut}

    with torch.no_grad():
        cam_tokens, cam_poses = official_cut3r(args.cut3r_repo, args.checkpoint)(cut)
        chk.true(f"camera tokens [{N},{lc['camera_token_dim']}]", tuple(cam_tokens.shape) == (N, lc["camera_token_dim"]))

        siglip, _ = build_siglip(ck)
        llm, _ = build_qwen2(ck)
        feats = siglip(pixel_values=torch.from_numpy(sig), output_hidden_states=True).hidden_states[-1]
        proj = mlp2(feats, ck, "model.mm_projector.")
        pooled = get_2dpool(proj, cfg["mm_spatial_pool_mode"], cfg.get("mm_spatial_pool_stride", 2))
        grid = add_token_per_grid(pooled, ck.get("model.image_newline")).reshape(N, -1, cfg["hidden_size"])
        cam_emb = mlp2(cam_tokens, ck, "model.loc3r.cam_projector.")
        video = torch.cat([cam_emb[:, None], grid], 1).reshape(-1, cfg["hidden_size"])  # [cam_f, grid_f] per frame
        per_frame = grid.shape[1] + 1
        dump.update(camera_tokens=cam_tokens.numpy(), camera_poses=cam_poses.numpy(), siglip_features=feats.numpy(),
                    vision_embeds=grid.numpy(), camera_embeds=cam_emb.numpy())
        log(f"video tokens {video.shape[0]} ({per_frame} per frame)")

        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(args.checkpoint / "tokenizer.json"))
        tok_size = tok.get_vocab_size(with_added_tokens=True)
        stop = [lc["im_end_token_id"], lc["endoftext_token_id"]]
        time_text = time_instruction(duration, times)
        emb_table = llm.get_input_embeddings()

        results, warnings = [], []
        for q in QUESTIONS:
            situation = q["situation"] if q["situation"] is not None else lc["default_situation"]
            text = prompt_text(time_text, situation, q["question"])
            ids = tokenize_with_image(tok, text)
            chk.true(f"{q['name']}: one placeholder", ids.count(IMAGE_TOKEN_INDEX) == 1)
            at = ids.index(IMAGE_TOKEN_INDEX)
            text_ids = torch.tensor([i for i in ids if i >= 0])
            te = emb_table(text_ids)
            embeds = torch.cat([te[:at], video, te[at:]], 0)[None]
            S = embeds.shape[1]
            shift = video.shape[0] - 1
            pos_at = ids.index(lc["pos_token_id"]) + shift
            ori_at = ids.index(lc["ori_token_id"]) + shift
            chk.true(f"{q['name']}: <Pos>, <Ori> once each, adjacent, after the video",
                     ids.count(lc["pos_token_id"]) == 1 and ids.count(lc["ori_token_id"]) == 1
                     and ori_at == pos_at + 1 and pos_at > at + shift)

            out = llm(inputs_embeds=embeds, attention_mask=torch.ones(1, S, dtype=torch.int64),
                      position_ids=torch.arange(S)[None], output_hidden_states=True, use_cache=False)
            hidden = out.hidden_states[-1][0]
            dump[f"{q['name']}/prefill_embeds"] = embeds[0].numpy()
            dump[f"{q['name']}/prefill_hidden"] = hidden.numpy()
            np_logits, np_hidden, _ = vlm_golden.np_qwen2(ck, embeds[0].numpy())
            chk.close(f"{q['name']}: prefill hidden HF vs numpy float64", hidden, np_hidden, 1e-4)
            chk.close(f"{q['name']}: prefill last logits HF vs numpy float64", out.logits[0, -1], np_logits[-1], 1e-4)

            position = mlp2(hidden[pos_at], ck, "model.loc3r.pos_head.").double().numpy()
            ori_logits = mlp2(hidden[ori_at], ck, "model.loc3r.ori_head.").numpy()
            yaw, probs = circular_yaw_deg(ori_logits)
            sigma = np.exp(0.5 * np.clip(position[2:4], -10.0, 10.0))  # the clamp training and the runtime apply

            gen = llm.generate(inputs_embeds=embeds, attention_mask=torch.ones(1, S, dtype=torch.int64),
                               max_new_tokens=q["max_new_tokens"], do_sample=False, eos_token_id=stop, pad_token_id=stop[1],
                               logits_processor=transformers.LogitsProcessorList([MaskPadding(tok_size)]),
                               output_logits=True, return_dict_in_generate=True)
            seq = gen.sequences[0].tolist()
            stopped = bool(seq) and seq[-1] in stop
            generated = seq[:-1] if stopped else seq
            raw = torch.cat(gen.logits, 0)  # raw logits per step (before the mask)
            chk.true(f"{q['name']}: step-0 logits == prefill last logits",
                     float((raw[0] - out.logits[0, -1]).abs().max()) < 1e-5)
            # full recompute (no KV cache) of every step
            full_in = torch.cat([embeds, emb_table(torch.tensor(seq[:-1] if len(seq) > 1 else [], dtype=torch.int64))[None]], 1)
            full = llm(inputs_embeds=full_in, use_cache=False).logits[0, S - 1:]
            chk.close(f"{q['name']}: generate (KV cache) logits vs full recompute", raw, full, 1e-4)
            masked = raw.clone()
            masked[:, tok_size:] = -math.inf
            chk.true(f"{q['name']}: ids == argmax(masked logits)", masked.argmax(-1).tolist() == seq)
            unmasked_same = raw.argmax(-1).tolist() == seq
            top2 = masked.topk(2, -1).values
            margins = (top2[:, 0] - top2[:, 1]).tolist()
            for what, ok in [(f"{q['name']}: >= {MIN_GENERATED} generated ids ({len(generated)}, stop token: {stopped})",
                              len(generated) >= MIN_GENERATED),
                             (f"{q['name']}: greedy margin >= {MIN_MARGIN} every step (min {min(margins):.3e})",
                              min(margins) >= MIN_MARGIN)]:
                if args.lenient and not ok:
                    warnings.append(what)
                    log(f"WARNING (--lenient) {what}: not met")
                else:
                    chk.true(what, ok)
            log(f"{q['name']}: {len(ids)} prompt ids (+{shift} video), generated {len(generated)} ids "
                f"(stopped {stopped}), padding mask irrelevant: {unmasked_same}, pos {position}, yaw {yaw:.3f}")
            results.append({
                "name": q["name"],
                "situation": q["situation"],
                "situation_used": situation,
                "question": q["question"],
                "prompt_text": text,
                "prompt_ids": ids,
                "prompt_tokens": S,
                "pos_index": pos_at,
                "ori_index": ori_at,
                "max_new_tokens": q["max_new_tokens"],
                "generated_ids": generated,
                "stopped_on": seq[-1] if stopped else None,
                "answer": tok.decode(generated, skip_special_tokens=True).strip(),
                "greedy_min_margin": min(margins),
                "padding_mask_changes_ids": not unmasked_same,
                "position": {"x": float(position[0]), "y": float(position[1]),
                             "sigma_x": float(sigma[0]), "sigma_y": float(sigma[1])},
                "position_raw": [float(v) for v in position],
                "orientation_logits": [float(v) for v in ori_logits],
                "orientation_probs": [float(v) for v in probs],
                "yaw_deg": yaw,
            })
            if args.lenient:
                results[-1]["greedy_margins"] = margins  # per step, top-1 minus top-2 (masked)

    # The test joins this to the fixture dir (an absolute path stays as it is).
    video_dir = "frames" if args.frames is None else str(args.frames.resolve())
    ref = {
        "generator": "tools/golden/pipeline_golden.py",
        "checkpoint_command": args.checkpoint_command,
        "checkpoint_sha256": ck.sha256,
        "cut3r_repo": "https://github.com/CUT3R/CUT3R",
        "cut3r_commit": cut3r_golden.repo_commit(str(args.cut3r_repo)),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": __import__("tokenizers").__version__, "pillow": PIL.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
        "notes": ("CPU fp32; CUT3R official _forward_impl with analytic RoPE and fp32 encoder q/k "
                  "(as tools/golden/cut3r_golden.py); greedy with ids >= tokenizer size masked; "
                  "heads on final-norm prefill hidden states"),
        "video": {"dir": video_dir, "total_frames": T, "fps": fps, "duration_s": duration,
                  "files": [f.name for f in files]},
        "num_frames": N,
        "sampled_indices": idx,
        "frame_times_s": times,
        "time_instruction": time_text,
        "tokenizer_size": tok_size,
        "stop_ids": stop,
        "video_tokens": int(video.shape[0]),
        "tokens_per_frame": per_frame,
        "camera_tokens": {"summary": tensor_summary(cam_tokens),
                          "per_frame_norm": [float(v) for v in cam_tokens.double().norm(dim=-1)],
                          "values": [[float(v) for v in row] for row in cam_tokens]},
        "camera_poses": [[float(v) for v in row] for row in cam_poses],
        "questions": results,
        "checks": chk.lines,
    }
    if args.lenient:
        ref["lenient"] = {"min_generated": MIN_GENERATED, "min_margin": MIN_MARGIN, "not_met": warnings}
    if tuple(cut.shape[-1:-3:-1]) != tuple(cfg["cut3r"]["input_size"]):
        ref["cut3r_input_size"] = [int(cut.shape[-1]), int(cut.shape[-2])]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "reference.json"
    path.write_text(json.dumps(ref, indent=1) + "\n")
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    log(f"wrote {path}; fixture dir {size} bytes; {len(chk.lines)} checks passed")
    if warnings:
        log(f"{len(warnings)} self-checks not met (--lenient): " + "; ".join(warnings))
    if args.dump is not None:
        np.savez(args.dump, **dump)
        log(f"wrote {args.dump}")


if __name__ == "__main__":
    main()
