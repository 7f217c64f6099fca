#!/usr/bin/env python3
"""Dev-only: times the PyTorch original of the Loc3R pipeline on CPU, for `tools/bench` to report
the runtime's stage times as ratios against it in one run (same machine, same checkpoint, same
video frames, same prompt lengths, same number of generated tokens).

The reference is what the original code does per question:
  * CUT3R: the official `ARCroco3DStereo._forward_impl` over the frames, with its downstream head
    reduced to the pose head (like for like: loc3r's cut3r_step computes the camera token and pose;
    `--cut3r-heads all` keeps the official DPT point-map heads, which the VLM does not use);
  * SigLIP + projector + pooling + newlines: Hugging Face `SiglipVisionModel` and the LLaVA code;
  * LLM: Hugging Face `Qwen2ForCausalLM` (SDPA attention, fp32) prefill over the spliced prompt
    (logits of the last position only, as `generate` does), then greedy decoding with its KV cache, `max_new_tokens` tokens (no early stop, like the runtime
    run it is compared with when the model does not stop);
  * a second question re-encodes the video and prefills the whole prompt again (the paper's
    pipeline has no per-video cache): its cost is measured, not assumed.

Peak RSS of this process is reported too (`ru_maxrss`). Needs `.venv-dev` (tools/golden/setup) and
the official CUT3R sources (`--cut3r-repo`, or `$CUT3R_REPO`); without them CUT3R is skipped and
reported as such.

    .venv-dev/bin/python tools/bench_reference.py --checkpoint build/bench/checkpoint \\
        --video build/bench/room.mp4 --indices 0,17,34 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "golden"))
import pipeline_golden as pg  # noqa: E402  (preprocessing, prompt, the official CUT3R)
import vlm_golden as vg  # noqa: E402  (HF module builders, projector/pool/newline)

QUESTIONS = ["Where is the chair relative to me?", "Which direction am I facing?"]


def extract_frames(video: Path, indices: list[int], out: Path) -> list[Image.Image]:
    """The sampled frames as RGB images, decoded by the ffmpeg CLI (not timed)."""
    select = "+".join(f"eq(n\\,{i})" for i in indices)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(video), "-vf", f"select={select}", "-vsync", "0",
                    str(out / "f_%05d.png")], check=True)
    files = sorted(out.glob("f_*.png"))
    if len(files) != len(set(indices)):
        raise SystemExit(f"ffmpeg extracted {len(files)} frames for {len(set(indices))} distinct indices")
    by_index = dict(zip(sorted(set(indices)), files))
    return [Image.open(by_index[i]).convert("RGB") for i in indices]


class Timer:
    def __init__(self):
        self.ms: dict[str, float] = {}

    def run(self, name: str, fn):
        start = time.perf_counter()
        out = fn()
        self.ms[name] = (time.perf_counter() - start) * 1000
        return out


def encode_video(ck, frames, siglip, cut3r, times: Timer):
    """Camera tokens (official CUT3R) and vision tokens (SigLIP + LLaVA) -> [F*(1+G), C] video embeds."""
    cfg, lc, vc = ck.config, ck.config["loc3r"], ck.config["vision_config"]

    # Preprocessing is not timed, as in the runtime's stage timings.
    pixels = torch.from_numpy(np.stack([pg.siglip_pixels(im, vc["image_size"]) for im in frames]))

    def vision():
        feats = siglip(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
        return vg.vision_embeds(ck, feats, cfg["mm_spatial_pool_mode"])

    grid = times.run("siglip", vision)
    n = len(frames)
    if cut3r is not None:
        cut3r_pixels = np.stack([pg.cut3r_pixels(im, lc["cut3r_long_side"]) for im in frames])
        cams, _poses = times.run("cut3r", lambda: cut3r(cut3r_pixels))
    else:  # timing only: a stand-in of the right shape
        cams = torch.zeros(n, lc["camera_token_dim"])
    cam_emb = vg.mlp2(cams, ck, "model.loc3r.cam_projector.")
    return torch.cat([cam_emb[:, None], grid], 1).reshape(-1, cfg["hidden_size"])


def answer(llm, emb_table, tok, ids, video, max_new_tokens: int, times: Timer) -> int:
    at = ids.index(pg.IMAGE_TOKEN_INDEX)
    text = emb_table(torch.tensor([i for i in ids if i >= 0]))
    embeds = torch.cat([text[:at], video, text[at:]], 0)[None]

    def prefill():
        return llm(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)

    out = times.run("prefill", prefill)

    def decode():
        cache, logits = vg.out_cache(out), out.logits[:, -1]
        for _ in range(max_new_tokens - 1):
            token = logits.argmax(-1, keepdim=True)
            step = llm(inputs_embeds=emb_table(token), cache=cache, use_cache=True)
            cache, logits = vg.out_cache(step), step.logits[:, -1]

    times.run("decode", decode)
    return embeds.shape[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--video", required=True, type=Path)
    ap.add_argument("--indices", required=True, help="sampled frame indices (the runtime's, comma-separated)")
    ap.add_argument("--duration", type=float, required=True, help="video duration in seconds (for the time instruction)")
    ap.add_argument("--fps", type=float, required=True, help="frame rate (frame times = index / fps)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--cut3r-repo", type=Path, default=os.environ.get("CUT3R_REPO"))
    ap.add_argument("--cut3r-heads", choices=["pose", "all"], default="pose",
                    help="official CUT3R head: only the pose (like loc3r) or also the DPT point maps")
    ap.add_argument("--json", type=Path, required=True, help="where to write the timings")
    args = ap.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    cut3r_repo = args.cut3r_repo if args.cut3r_repo and (Path(args.cut3r_repo) / "src/dust3r").is_dir() else None
    if cut3r_repo is None:
        print("reference: no official CUT3R sources (--cut3r-repo / $CUT3R_REPO): CUT3R not timed", file=sys.stderr)
    indices = [int(i) for i in args.indices.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        frames = extract_frames(args.video, indices, Path(tmp))

    ck = vg.Checkpoint(args.checkpoint)
    lc = ck.config["loc3r"]
    siglip, _ = vg.build_siglip(ck)
    llm, _ = vg.build_qwen2(ck)
    # The modules hold their own copies now: keep only what the LLaVA/Loc3R glue reads, so the
    # reference's peak RSS counts its weights once.
    ck.tensors = {k: v for k, v in ck.tensors.items() if k.startswith(("model.mm_projector.", "model.loc3r.", "model.image_newline"))}
    import gc
    gc.collect()
    llm.set_attn_implementation("sdpa")  # the fast path of the original, not the eager golden path
    emb_table = llm.get_input_embeddings()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(args.checkpoint / "tokenizer.json"))
    time_text = pg.time_instruction(args.duration, [i / args.fps for i in indices])

    cut3r = pg.official_cut3r(Path(cut3r_repo), args.checkpoint, pose_head_only=args.cut3r_heads == "pose") if cut3r_repo is not None else None
    rows = []
    with torch.no_grad():
        # One discarded warm-up pass (first-call allocations and kernel selection), so the timed
        # questions are the reference at its best; the runtime's first question gets no warm-up.
        warm_ids = pg.tokenize_with_image(tok, pg.prompt_text(time_text, lc["default_situation"], QUESTIONS[0]))
        answer(llm, emb_table, tok, warm_ids, encode_video(ck, frames[:1], siglip, cut3r, Timer()), 2, Timer())
        for q in QUESTIONS:  # the original re-encodes the video for every question
            times = Timer()
            start = time.perf_counter()
            video = encode_video(ck, frames, siglip, cut3r, times)
            ids = pg.tokenize_with_image(tok, pg.prompt_text(time_text, lc["default_situation"], q))
            prompt_tokens = answer(llm, emb_table, tok, ids, video, args.max_new_tokens, times)
            times.ms["total"] = (time.perf_counter() - start) * 1000
            rows.append({"question": q, "prompt_tokens": prompt_tokens, "generated": args.max_new_tokens, "timings_ms": times.ms})
            print(f"reference {len(indices)} frames, {q!r}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in times.ms.items()),
                  file=sys.stderr)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.json.write_text(json.dumps({"frames": len(indices), "cut3r_timed": cut3r_repo is not None, "cut3r_heads": args.cut3r_heads, "peak_rss_mib": peak_mib,
                                     "torch": torch.__version__, "threads": torch.get_num_threads(), "questions": rows}, indent=1))


if __name__ == "__main__":
    main()
