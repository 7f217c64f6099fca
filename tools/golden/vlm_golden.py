#!/usr/bin/env python3
"""Dev-only golden fixtures for the VLM graphs (siglip, projector, embed, decoder, heads).

Reference = Hugging Face `transformers` modules (SiglipVisionModel, Qwen2ForCausalLM, eager attention,
fp32) plus torch code that follows LLaVA-NeXT (`get_2dPool`, `add_token_per_grid`, `mlp2x_gelu`) for the
projector/pooling/newlines and the Loc3R camera projector and heads (docs/prompt.md §4,
docs/heads.md, docs/bundle.md §3). Before writing anything, the reference is cross-checked against independent
NumPy float64 re-implementations and the SPEC_* tables below (see `self_checks`); any mismatch aborts.

    tools/golden/setup                         # once: torch + transformers into .venv-dev/
    .venv-dev/bin/python tools/golden/vlm_golden.py --checkpoint DIR --out tests/fixtures/vlm_tiny

DIR is a checkpoint made by `loc3r-export make-tiny --out DIR --seed 1` (tools/golden/regen-vlm-tiny does
both steps). Inputs are drawn from NumPy's PCG64 (`default_rng([seed, k])`), stable across versions.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

SIGLIP_PREFIX = "model.vision_tower.vision_tower.vision_model."
DEFAULT_MAKE_TINY = "loc3r-export make-tiny --out DIR --seed 1"

# Published per-axis weights of LLaVA's bilinear pooling 27 -> 14 (6 decimals), (i0, i1, w(i0), w(i1)).
SPEC_BILINEAR_27_14 = [
    (0, 1, 0.535714, 0.464286), (2, 3, 0.607143, 0.392857), (4, 5, 0.678571, 0.321429),
    (6, 7, 0.75, 0.25), (8, 9, 0.821429, 0.178571), (10, 11, 0.892857, 0.107143),
    (12, 13, 0.964286, 0.035714), (13, 14, 0.035714, 0.964286), (15, 16, 0.107143, 0.892857),
    (17, 18, 0.178571, 0.821429), (19, 20, 0.25, 0.75), (21, 22, 0.321429, 0.678571),
    (23, 24, 0.392857, 0.607143), (25, 26, 0.464286, 0.535714),
]
# Source coordinates of the tiny config's 5 -> 3 bilinear pooling, by hand: (d + 0.5)·5/3 − 0.5.
SPEC_BILINEAR_5_3_SRC = [1 / 3, 2.0, 11 / 3]


def log(msg: str) -> None:
    print(f"vlm_golden: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# checkpoint


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Checkpoint:
    def __init__(self, root: Path):
        self.root = root
        self.config = json.loads((root / "config.json").read_text())
        index = root / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.model_files = sorted(set(weight_map.values()))
        elif (root / "model.safetensors").exists():
            self.model_files = ["model.safetensors"]
        else:
            raise SystemExit(f"{root}: neither model.safetensors nor model.safetensors.index.json")
        self.tensors: dict[str, torch.Tensor] = {}
        self.file_metadata: dict[str, dict] = {}
        for name in self.model_files:
            with safe_open(root / name, framework="pt") as f:
                self.file_metadata[name] = f.metadata() or {}
                for k in f.keys():
                    if k in self.tensors:
                        raise SystemExit(f"tensor {k} appears in two shards")
                    self.tensors[k] = f.get_tensor(k).to(torch.float32)
        if index.exists():
            missing = set(weight_map) ^ set(self.tensors)
            if missing:
                raise SystemExit(f"index weight_map and shard contents differ: {sorted(missing)[:5]}")
        if not (root / "cut3r.safetensors").exists():
            raise SystemExit(f"{root}: cut3r.safetensors missing")
        self.hashed_files = self.model_files + ["cut3r.safetensors"]
        self.sha256 = {name: sha256_file(root / name) for name in self.hashed_files}

    def get(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise SystemExit(f"checkpoint tensor missing: {name}")
        return self.tensors[name]


# ------------------------------------------------------------------------------------------------
# HF reference modules


def build_siglip(ck: Checkpoint) -> tuple[SiglipVisionModel, list[str]]:
    vc = dict(ck.config["vision_config"])
    vc.pop("model_type", None)
    cfg = SiglipVisionConfig(**vc, vision_use_head=False, attention_dropout=0.0)
    model = SiglipVisionModel._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    n_layers = cfg.num_hidden_layers
    sd, ignored = {}, []
    for k, v in ck.tensors.items():
        if not k.startswith(SIGLIP_PREFIX):
            continue
        rest = k[len(SIGLIP_PREFIX):]
        if rest.startswith("encoder.layers."):
            j = int(rest.split(".")[2])
            if j >= n_layers:  # an untrimmed tower: run only the configured layers (LLaVA drops SigLIP's last layer)
                ignored.append(k)
                continue
        if rest.startswith("head."):
            ignored.append(k)
            continue
        sd[rest] = v
    # transformers 4.x wraps the tower in `.vision_model`; 5.x does not.
    wrap = "vision_model." if any(k.startswith("vision_model.") for k in model.state_dict()) else ""
    model.load_state_dict({wrap + k: v for k, v in sd.items()}, strict=True)
    return model, ignored


def build_qwen2(ck: Checkpoint) -> tuple[Qwen2ForCausalLM, bool]:
    c = ck.config
    cfg = Qwen2Config(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
        num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c["num_key_value_heads"], hidden_act=c.get("hidden_act", "silu"),
        max_position_embeddings=c["max_position_embeddings"], rms_norm_eps=c["rms_norm_eps"],
        rope_theta=c["rope_theta"], tie_word_embeddings=False, use_sliding_window=False,
        attention_dropout=0.0,
    )
    assert cfg.rope_parameters["rope_type"] == "default" and cfg.rope_parameters["rope_theta"] == c["rope_theta"]
    assert all(t == "full_attention" for t in cfg.layer_types)
    model = Qwen2ForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    assert model.config._attn_implementation == "eager"
    sd = {k: v for k, v in ck.tensors.items()
          if k.startswith(("model.embed_tokens.", "model.layers.", "model.norm.")) or k == "lm_head.weight"}
    sd = {k: v for k, v in sd.items() if not k.endswith(".inv_freq")}
    tied = "lm_head.weight" not in sd
    if tied:  # absent lm_head = tied to the embeddings (docs/bundle.md §6)
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    model.load_state_dict(sd, strict=True)
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    return model, tied


# ------------------------------------------------------------------------------------------------
# LLaVA / Loc3R pieces in torch


def mlp2(x, ck: Checkpoint, prefix: str):
    """Linear -> exact (erf) GELU -> Linear (`mlp2x_gelu`, and the Loc3R MLPs)."""
    h = F.linear(x, ck.get(prefix + "0.weight"), ck.get(prefix + "0.bias"))
    h = F.gelu(h, approximate="none")
    return F.linear(h, ck.get(prefix + "2.weight"), ck.get(prefix + "2.bias"))


def get_2dpool(feat: torch.Tensor, mode: str, stride: int = 2) -> torch.Tensor:
    """LLaVA-NeXT `get_2dPool`: [F, g*g, C] -> [F, g'*g', C]."""
    f, n, c = feat.shape
    g = int(math.isqrt(n))
    assert g * g == n
    x = feat.view(f, g, g, c).permute(0, 3, 1, 2).contiguous()
    if mode == "average":
        x = F.avg_pool2d(x, stride)
    elif mode == "bilinear":
        x = F.interpolate(x, size=[math.ceil(g / stride)] * 2, mode="bilinear")
    else:
        raise ValueError(mode)
    return x.permute(0, 2, 3, 1).reshape(f, -1, c)


def add_token_per_grid(feat: torch.Tensor, newline: torch.Tensor) -> torch.Tensor:
    """LLaVA-Video `add_token_per_grid`: [F, G*G, C] -> [F*G*(G+1), C] (frame, row, col + newline)."""
    g = int(math.isqrt(feat.shape[1]))
    f, c = feat.shape[0], feat.shape[-1]
    x = feat.view(f, 1, g, g, -1).permute(4, 0, 2, 1, 3).contiguous()
    x = x.flatten(1, 2).flatten(2, 3)
    x = torch.cat((x, newline[:, None, None].expand(*x.shape[:-1], 1)), dim=-1)
    return x.flatten(1, 2).transpose(0, 1)


def vision_embeds(ck: Checkpoint, image_features: torch.Tensor, mode: str) -> torch.Tensor:
    proj = mlp2(image_features, ck, "model.mm_projector.")
    pooled = get_2dpool(proj, mode, ck.config.get("mm_spatial_pool_stride", 2))
    seq = add_token_per_grid(pooled, ck.get("model.image_newline"))
    return seq.reshape(image_features.shape[0], -1, seq.shape[-1])


# ------------------------------------------------------------------------------------------------
# independent NumPy float64 references (for self-checks only)


def np_layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def np_gelu_erf(x):
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / math.sqrt(2)))


def np_softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def np_lin(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def np_siglip(ck: Checkpoint, pixels: np.ndarray) -> list[np.ndarray]:
    """SigLIP (docs/prompt.md §4) by hand. Returns the hidden state after embeddings and after every layer."""
    vc = ck.config["vision_config"]
    T = lambda n: ck.get(SIGLIP_PREFIX + n).double().numpy()  # noqa: E731
    p, d, nh, eps = vc["patch_size"], vc["hidden_size"], vc["num_attention_heads"], vc["layer_norm_eps"]
    g = vc["image_size"] // p
    outs = []
    for img in pixels.astype(np.float64):
        img = img[:, : g * p, : g * p]  # "valid" conv: the remainder is never seen
        patches = img.reshape(3, g, p, g, p).transpose(1, 3, 0, 2, 4).reshape(g * g, 3 * p * p)  # t = g*r + c
        x = patches @ T("embeddings.patch_embedding.weight").reshape(d, -1).T + T("embeddings.patch_embedding.bias")
        x = x + T("embeddings.position_embedding.weight")
        hs = [x]
        for j in range(vc["num_hidden_layers"]):
            L = lambda n: T(f"encoder.layers.{j}.{n}")  # noqa: E731
            h = np_layernorm(x, L("layer_norm1.weight"), L("layer_norm1.bias"), eps)
            q, k, v = (np_lin(h, L(f"self_attn.{n}_proj.weight"), L(f"self_attn.{n}_proj.bias")) for n in "qkv")
            hd = d // nh
            heads = []
            for a in range(nh):
                s = slice(a * hd, (a + 1) * hd)
                heads.append(np_softmax(q[:, s] @ k[:, s].T * hd ** -0.5) @ v[:, s])
            x = x + np_lin(np.concatenate(heads, -1), L("self_attn.out_proj.weight"), L("self_attn.out_proj.bias"))
            h = np_layernorm(x, L("layer_norm2.weight"), L("layer_norm2.bias"), eps)
            x = x + np_lin(np_gelu_tanh(np_lin(h, L("mlp.fc1.weight"), L("mlp.fc1.bias"))), L("mlp.fc2.weight"), L("mlp.fc2.bias"))
            hs.append(x)
        outs.append(np.stack(hs))
    return list(np.stack(outs, 1))  # per stage: [F, N, d]


def np_bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Half-pixel bilinear formula (docs/prompt.md §4): A [n_out, n_in]."""
    s = n_in / n_out
    a = np.zeros((n_out, n_in))
    for d in range(n_out):
        src = max((d + 0.5) * s - 0.5, 0.0)
        i0 = int(math.floor(src))
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        a[d, i0] += 1 - lam
        a[d, i1] += lam
    return a


def np_avg_matrix(n_in: int) -> np.ndarray:
    n_out = n_in // 2
    a = np.zeros((n_out, n_in))
    for d in range(n_out):
        a[d, 2 * d] = a[d, 2 * d + 1] = 0.5
    return a


def torch_pool_matrix(n_in: int, mode: str) -> np.ndarray:
    """The 1-D matrix that get_2dPool applies, recovered by pooling basis images."""
    basis = torch.eye(n_in * n_in, dtype=torch.float64).view(n_in * n_in, n_in, n_in)[:, None]
    if mode == "bilinear":
        out = F.interpolate(basis, size=(math.ceil(n_in / 2),) * 2, mode="bilinear")
    else:
        out = F.avg_pool2d(basis, 2)
    full = out.reshape(n_in * n_in, -1).T.numpy()  # [out_tokens, in_tokens]
    g = int(math.isqrt(full.shape[0]))
    # Separable pooling is A (x) A; every row of A sums to 1, so summing out the column index of
    # output column 0 leaves A.
    a = full.reshape(g, g, n_in, n_in)[:, 0, :, :].sum(-1)
    kron = np.kron(a, a)
    assert np.allclose(kron, full, atol=1e-12), "pooling is not separable A (x) A"
    return a


def np_qwen2(ck: Checkpoint, embeds: np.ndarray):
    """Qwen2 (HF `modeling_qwen2.py`) by hand (batch 1, positions 0..S-1). Returns logits, final hidden, per-layer (k, v)."""
    c = ck.config
    T = lambda n: ck.get(n).double().numpy()  # noqa: E731
    H, nh, kvh = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd, eps = H // nh, c["rms_norm_eps"]
    S = embeds.shape[0]
    inv = 1.0 / c["rope_theta"] ** (np.arange(0, hd, 2) / hd)
    ang = np.arange(S)[:, None] * inv[None]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(v):  # [heads, S, hd]
        rot = np.concatenate([-v[..., hd // 2:], v[..., : hd // 2]], -1)
        return v * cos + rot * sin

    def rms(x, w):
        return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w

    x = embeds.astype(np.float64)
    kv = []
    mask = np.triu(np.full((S, S), -np.inf), 1)
    for i in range(c["num_hidden_layers"]):
        P = f"model.layers.{i}."
        h = rms(x, T(P + "input_layernorm.weight"))
        q = np_lin(h, T(P + "self_attn.q_proj.weight"), T(P + "self_attn.q_proj.bias")).reshape(S, nh, hd).transpose(1, 0, 2)
        k = np_lin(h, T(P + "self_attn.k_proj.weight"), T(P + "self_attn.k_proj.bias")).reshape(S, kvh, hd).transpose(1, 0, 2)
        v = np_lin(h, T(P + "self_attn.v_proj.weight"), T(P + "self_attn.v_proj.bias")).reshape(S, kvh, hd).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        kv.append((k, v))
        rep = nh // kvh
        o = np.stack([np_softmax(q[a] @ k[a // rep].T / math.sqrt(hd) + mask) @ v[a // rep] for a in range(nh)])
        x = x + np_lin(o.transpose(1, 0, 2).reshape(S, H), T(P + "self_attn.o_proj.weight"))
        h = rms(x, T(P + "post_attention_layernorm.weight"))
        g = np_lin(h, T(P + "mlp.gate_proj.weight"))
        x = x + np_lin(g / (1 + np.exp(-g)) * np_lin(h, T(P + "mlp.up_proj.weight")), T(P + "mlp.down_proj.weight"))
    hidden = rms(x, T("model.norm.weight"))
    lm = T("lm_head.weight") if "lm_head.weight" in ck.tensors else T("model.embed_tokens.weight")
    return hidden @ lm.T, hidden, kv


# ------------------------------------------------------------------------------------------------
# checks


class Checker:
    def __init__(self):
        self.lines = []

    def close(self, what, got, want, tol):
        got = np.asarray(got.detach().double() if isinstance(got, torch.Tensor) else got, dtype=np.float64)
        want = np.asarray(want.detach().double() if isinstance(want, torch.Tensor) else want, dtype=np.float64)
        if got.shape != want.shape:
            raise SystemExit(f"CHECK FAILED {what}: shape {got.shape} vs {want.shape}")
        err = float(np.abs(got - want).max()) if got.size else 0.0
        scale = float(np.abs(want).max()) if want.size else 0.0
        line = f"{what}: max|diff| {err:.2e} (max|ref| {scale:.2f}, tol {tol:.0e})"
        self.lines.append(line)
        log("check " + line)
        if not err <= tol:
            raise SystemExit(f"CHECK FAILED {line}")

    def true(self, what, cond):
        self.lines.append(f"{what}: {'ok' if cond else 'FAILED'}")
        log("check " + self.lines[-1])
        if not cond:
            raise SystemExit(f"CHECK FAILED {what}")


def get_kv(cache, i):
    if hasattr(cache, "layers"):
        return cache.layers[i].keys, cache.layers[i].values
    return cache[i][0], cache[i][1]


def out_cache(out):
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


# ------------------------------------------------------------------------------------------------


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """safetensors with a deterministic header (sorted keys), so a rerun reproduces the bytes.
    (`safetensors.save_file` writes `__metadata__` in hash-map order.)"""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)
    with safe_open(path, framework="pt") as f:  # read back
        assert f.metadata() == metadata and set(f.keys()) == set(tensors)
        for name in tensors:
            assert torch.equal(f.get_tensor(name), tensors[name])


def rng(seed: int, k: int) -> np.random.Generator:
    return np.random.default_rng([seed, k])


def t32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, type=Path, help="tiny checkpoint dir (loc3r-export make-tiny)")
    ap.add_argument("--out", required=True, type=Path, help="fixture dir, e.g. tests/fixtures/vlm_tiny")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fixture inputs (default 0)")
    ap.add_argument("--make-tiny-command", default=DEFAULT_MAKE_TINY,
                    help=f"recorded in the metadata (default: '{DEFAULT_MAKE_TINY}')")
    args = ap.parse_args()

    torch.set_num_threads(1)  # reproducible reductions
    torch.manual_seed(0)
    ck = Checkpoint(args.checkpoint)
    cfg = ck.config
    H, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    kvh, hd = cfg["num_key_value_heads"], cfg["hidden_size"] // cfg["num_attention_heads"]
    vc, lc = cfg["vision_config"], cfg["loc3r"]
    chk = Checker()

    siglip, ignored = build_siglip(ck)
    if ignored:
        log(f"ignored {len(ignored)} vision tensors beyond the configured tower: {ignored[:3]}...")
    llm, tied = build_qwen2(ck)
    log(f"checkpoint {args.checkpoint}: files {ck.hashed_files}, lm_head {'tied' if tied else 'stored'}")

    meta = {
        "format": "pt",
        "generator": "tools/golden/vlm_golden.py",
        "make_tiny_command": args.make_tiny_command,
        "checkpoint_generator": ck.file_metadata[ck.model_files[0]].get("generator", ""),
        "checkpoint_sha256": json.dumps(ck.sha256, sort_keys=True),
        "input_seed": str(args.seed),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "numpy_version": np.__version__,
    }
    for name, digest in ck.sha256.items():
        meta[f"sha256:{name}"] = digest
    fixtures: dict[str, dict[str, torch.Tensor]] = {}

    with torch.no_grad():
        # ---------------- siglip
        g = vc["image_size"] // vc["patch_size"]
        pixels = t32(rng(args.seed, 1).uniform(-1.0, 1.0, (2, 3, vc["image_size"], vc["image_size"])))
        so = siglip(pixel_values=pixels, output_hidden_states=True)
        feats = so.hidden_states[-1]
        ref = np_siglip(ck, pixels.numpy())
        for j, (hf, mine) in enumerate(zip(so.hidden_states, ref)):
            chk.close(f"siglip hidden_states[{j}] HF vs numpy", hf, mine, 1e-5)
        post = dict(siglip.named_modules())[("vision_model." if hasattr(siglip, "vision_model") else "") + "post_layernorm"]
        chk.close("siglip last_hidden_state == post_layernorm(hidden_states[-1])", so.last_hidden_state, post(feats), 1e-6)
        chk.true("siglip post_layernorm changes the features (so not applying it is observable)",
                 float((so.last_hidden_state - feats).abs().max()) > 1e-2)
        chk.true(f"siglip features [2,{g * g},{vc['hidden_size']}]", tuple(feats.shape) == (2, g * g, vc["hidden_size"]))
        fixtures["siglip"] = {"pixel_values": pixels, "image_features": feats}

        # ---------------- projector, pooling, newlines, camera projector
        for n_in in (27, 5):
            a_bil = torch_pool_matrix(n_in, "bilinear")
            chk.close(f"bilinear pool matrix {n_in}->{math.ceil(n_in / 2)} F.interpolate vs the half-pixel formula (docs/prompt.md)",
                      a_bil, np_bilinear_matrix(n_in, math.ceil(n_in / 2)), 1e-12)
            chk.close(f"average pool matrix {n_in}->{n_in // 2} F.avg_pool2d vs 2x2 blocks (last row/col dropped)",
                      torch_pool_matrix(n_in, "average"), np_avg_matrix(n_in), 1e-12)
        a27 = torch_pool_matrix(27, "bilinear")
        table = np.zeros((14, 27))
        for d, (i0, i1, w0, w1) in enumerate(SPEC_BILINEAR_27_14):
            table[d, i0] += w0
            table[d, i1] += w1
        chk.close("bilinear 27->14 matrix vs the documented 27->14 table (6 decimals)", a27, table, 6e-7)
        chk.close("bilinear 27->14 weights are multiples of 1/28", a27 * 28, np.round(a27 * 28), 1e-9)
        src53 = [float(np.dot(row, np.arange(5))) for row in torch_pool_matrix(5, "bilinear")]
        chk.close("bilinear 5->3 source coordinates vs hand-computed (1/3, 2, 11/3)", src53, SPEC_BILINEAR_5_3_SRC, 1e-12)

        img_in = t32(rng(args.seed, 2).standard_normal((2, g * g, vc["hidden_size"])))
        gb, ga = math.ceil(g / 2), g // 2
        ve = vision_embeds(ck, img_in, "bilinear")
        ve_avg = vision_embeds(ck, img_in, "average")
        chk.true(f"vision_embeds [2,{gb * (gb + 1)},{H}]", tuple(ve.shape) == (2, gb * (gb + 1), H))
        chk.true(f"vision_embeds_average [2,{ga * (ga + 1)},{H}]", tuple(ve_avg.shape) == (2, ga * (ga + 1), H))
        # numpy: projector, pooling as A (x) A over tokens, explicit per-row newline
        Tn = lambda n: ck.get(n).double().numpy()  # noqa: E731
        x = img_in.double().numpy()
        z = np_lin(np_gelu_erf(np_lin(x, Tn("model.mm_projector.0.weight"), Tn("model.mm_projector.0.bias"))),
                   Tn("model.mm_projector.2.weight"), Tn("model.mm_projector.2.bias"))
        nl = Tn("model.image_newline")
        for name, a, got in (("bilinear", np_bilinear_matrix(g, gb), ve), ("average", np_avg_matrix(g), ve_avg)):
            gg = a.shape[0]
            pooled = np.einsum("pt,ftc->fpc", np.kron(a, a), z).reshape(2, gg, gg, H)
            seq = np.concatenate([pooled, np.broadcast_to(nl, (2, gg, 1, H))], 2).reshape(2, gg * (gg + 1), H)
            chk.close(f"vision_embeds ({name}) torch vs numpy (A(x)A + row newlines)", got, seq, 1e-5)
        z_tanh = np_lin(np_gelu_tanh(np_lin(x, Tn("model.mm_projector.0.weight"), Tn("model.mm_projector.0.bias"))),
                        Tn("model.mm_projector.2.weight"), Tn("model.mm_projector.2.bias"))
        chk.true("projector: tanh-GELU would differ by > 1e-4 (erf vs tanh is observable)",
                 float(np.abs(z_tanh - z).max()) > 1e-4)
        cam_in = t32(rng(args.seed, 3).standard_normal((2, lc["camera_token_dim"])))
        cam = mlp2(cam_in, ck, "model.loc3r.cam_projector.")
        cam_np = np_lin(np_gelu_erf(np_lin(cam_in.double().numpy(), Tn("model.loc3r.cam_projector.0.weight"),
                                           Tn("model.loc3r.cam_projector.0.bias"))),
                        Tn("model.loc3r.cam_projector.2.weight"), Tn("model.loc3r.cam_projector.2.bias"))
        chk.close("camera_embeds torch vs numpy", cam, cam_np, 1e-5)
        fixtures["projector"] = {"image_features": img_in, "vision_embeds": ve, "vision_embeds_average": ve_avg,
                                 "camera_tokens": cam_in, "camera_embeds": cam}

        # ---------------- embed
        ids = torch.tensor([[1001, 0, 1003, 1004, 1023, 1002, 1000, 7, 42, 255, 256, 999]], dtype=torch.int64)
        emb = llm.get_input_embeddings()(ids)
        chk.close("inputs_embeds == embed_tokens rows", emb[0], ck.get("model.embed_tokens.weight")[ids[0]], 0)
        fixtures["embed"] = {"input_ids": ids, "inputs_embeds": emb}

        # ---------------- decoder
        S, N_NEW = 20, 32
        dec_in = t32(rng(args.seed, 4).standard_normal((1, S, H)))
        pre_norm = {}
        hook = llm.model.layers[-1].register_forward_hook(
            lambda m, i, o: pre_norm.__setitem__("x", o[0] if isinstance(o, tuple) else o))
        out = llm(inputs_embeds=dec_in, use_cache=True, output_hidden_states=True)
        hook.remove()
        logits, hidden = out.logits, out.hidden_states[-1]
        chk.close("decoder hidden_states[-1] == model.norm(last layer output)", hidden, llm.model.norm(pre_norm["x"]), 0)
        chk.close("decoder logits == lm_head(hidden_states[-1])", logits, llm.lm_head(hidden), 1e-6)
        np_logits, np_hidden, np_kv = np_qwen2(ck, dec_in[0].numpy())
        chk.close("decoder logits HF vs numpy", logits[0], np_logits, 1e-4)
        chk.close("decoder hidden_states HF vs numpy", hidden[0], np_hidden, 1e-5)
        cache = out_cache(out)
        present = {}
        for i in range(L):
            k, v = get_kv(cache, i)
            chk.true(f"present.{i} shape [1,{kvh},{S},{hd}]", tuple(k.shape) == tuple(v.shape) == (1, kvh, S, hd))
            chk.close(f"present.{i}.key (post-RoPE) HF vs numpy", k[0], np_kv[i][0], 1e-5)
            chk.close(f"present.{i}.value HF vs numpy", v[0], np_kv[i][1], 1e-5)
            present[f"present.{i}.key"], present[f"present.{i}.value"] = k.clone(), v.clone()

        gen = llm.generate(inputs_embeds=dec_in, attention_mask=torch.ones(1, S, dtype=torch.int64),
                           max_new_tokens=N_NEW, min_new_tokens=N_NEW, do_sample=False, eos_token_id=None,
                           pad_token_id=0, output_logits=True, output_scores=True, return_dict_in_generate=True)
        seq = gen.sequences[0]
        greedy_ids = seq[-N_NEW:].clone()
        chk.true("generate returned only the 32 new ids", seq.shape[0] == N_NEW)
        greedy_logits = torch.cat(gen.logits, 0)
        chk.close("generate scores == raw logits (no logits processor active)", torch.cat(gen.scores, 0), greedy_logits, 0)
        chk.true("greedy_ids == argmax(greedy_logits)", bool((greedy_logits.argmax(-1) == greedy_ids).all()))
        chk.close("greedy step 0 logits == full-forward last logits", greedy_logits[0], logits[0, -1], 1e-5)
        # KV-cache decode (generate) vs full recompute without cache, every step
        full_in = torch.cat([dec_in, llm.get_input_embeddings()(greedy_ids[None, :-1])], 1)
        full = llm(inputs_embeds=full_in, use_cache=False).logits[0, S - 1:]
        chk.close("generate (KV cache) logits vs full recompute, 32 steps", greedy_logits, full, 1e-4)
        chk.true("full recompute argmax == greedy_ids", bool((full.argmax(-1) == greedy_ids).all()))
        np_full, _, _ = np_qwen2(ck, full_in[0].numpy())
        chk.close("greedy logits vs numpy full recompute", greedy_logits, np_full[S - 1:], 1e-4)
        # manual step-by-step with an explicit cache and explicit positions
        step_cache = out_cache(llm(inputs_embeds=dec_in, use_cache=True))
        step_logits = [logits[0, -1]]
        for t in range(N_NEW - 1):
            o = llm(inputs_embeds=llm.get_input_embeddings()(greedy_ids[None, t:t + 1]), cache=step_cache,
                    position_ids=torch.tensor([[S + t]]), use_cache=True)
            step_cache = out_cache(o)
            step_logits.append(o.logits[0, -1])
        chk.close("manual cached decode vs generate", torch.stack(step_logits), greedy_logits, 1e-5)
        top2 = greedy_logits.topk(2, -1).values
        margins = (top2[:, 0] - top2[:, 1]).tolist()
        min_margin = min(margins)
        chk.lines.append("greedy top-1 minus top-2 logit per step: " + " ".join(f"{m:.4f}" for m in margins))
        chk.true(f"greedy top-1/top-2 margin >= 1e-3 at every step (min {min_margin:.2e})", min_margin >= 1e-3)
        fixtures["decoder"] = {"inputs_embeds": dec_in, "logits": logits, "hidden_states": hidden, **present,
                               "greedy_ids": greedy_ids.to(torch.int64), "greedy_logits": greedy_logits}

        # ---------------- heads
        r = rng(args.seed, 5)
        pos_h = t32(r.standard_normal((2, H)))
        ori_h = t32(r.standard_normal((2, H)))
        vis_h = t32(r.standard_normal((2, 10, H)))
        position = mlp2(pos_h, ck, "model.loc3r.pos_head.")
        ori = mlp2(ori_h, ck, "model.loc3r.ori_head.")
        bev = F.linear(vis_h, ck.get("model.loc3r.bev_head.weight"), ck.get("model.loc3r.bev_head.bias"))
        for name, got, inp in (("pos_head", position, pos_h), ("ori_head", ori, ori_h)):
            p = f"model.loc3r.{name}."
            want = np_lin(np_gelu_erf(np_lin(inp.double().numpy(), Tn(p + "0.weight"), Tn(p + "0.bias"))),
                          Tn(p + "2.weight"), Tn(p + "2.bias"))
            chk.close(f"{name} torch vs numpy", got, want, 1e-5)
        chk.close("bev_head torch vs numpy", bev, np_lin(vis_h.double().numpy(), Tn("model.loc3r.bev_head.weight"),
                                                         Tn("model.loc3r.bev_head.bias")), 1e-5)
        chk.true(f"orientation_logits [2,{lc['orientation_bins']}]", tuple(ori.shape) == (2, lc["orientation_bins"]))
        fixtures["heads"] = {"pos_hidden": pos_h, "ori_hidden": ori_h, "vision_hidden": vis_h,
                             "position": position, "orientation_logits": ori, "bev": bev}

    # ---------------- write
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, tensors in fixtures.items():
        tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
        for k, v in tensors.items():
            assert v.dtype in (torch.float32, torch.int64), (name, k, v.dtype)
        path = args.out / f"{name}.safetensors"
        write_safetensors(path, tensors, {**meta, "fixture": name})
        total += path.stat().st_size
        log(f"wrote {path} ({path.stat().st_size} bytes): " +
            ", ".join(f"{k} {list(v.shape)} {str(v.dtype).replace('torch.', '')}" for k, v in tensors.items()))
    (args.out / "checks.txt").write_text(
        "# self-checks run by tools/golden/vlm_golden.py before writing these fixtures (all passed)\n"
        + "".join(line + "\n" for line in chk.lines))
    log(f"{len(chk.lines)} checks passed; {total} bytes of fixtures in {args.out}")


if __name__ == "__main__":
    main()
