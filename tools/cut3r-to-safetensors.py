#!/usr/bin/env python3
"""Convert an official CUT3R checkpoint (.pth) to `cut3r.safetensors` (docs/bundle.md §6).

    tools/cut3r-to-safetensors cut3r_512_dpt_4_64.pth OUT_DIR/cut3r.safetensors [--cut3r-points]

* Reads the pickled dict (`torch.load(weights_only=False)`: its `args` entry is an OmegaConf
  object, so omegaconf must be installed; only open trusted files) and takes `model` (or the
  dict itself if it is a bare state_dict).
* Strips a leading `module.` when every key has one (as the official loader does).
* Drops the DPT aliases `downstream_head.dpt_*.scratch.layer_rn.{0..3}.weight`: they share
  storage with `scratch.layer{1..4}_rn.weight`, which safetensors cannot store twice. When
  only the alias is present it is renamed to the canonical name instead.
* Keeps the official names and dtypes (tensors are made contiguous; nothing is cast).
* Verifies every tensor the exporter needs, by expanding the families `cut3r` (and, with
  `--cut3r-points`, `cut3r_points`) of models/names.json exactly like export/src/names.rs,
  with the shape symbols read off the checkpoint itself (widths, depths, state and memory
  sizes, DPT dims). Any missing or mis-shaped tensor is listed and nothing is written: the
  official load is `strict=False`, so a missing key would otherwise silently become random.
* Prints the constructor string `args.model` when present: check `state_dec_num_heads` there
  against the checkpoint's config.json (docs/cut3r.md §4; head counts are not in the weights).

Needs torch and safetensors (the dev venv: tools/golden/setup) and omegaconf for real .pth files.
"""

import argparse
import json
import os
import re
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALIAS = re.compile(r"^(downstream_head\.dpt_\w+\.scratch\.)layer_rn\.([0-3])\.weight$")


def load_state_dict(path):
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    args = None
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        args = ckpt.get("args")
        sd = ckpt["model"]
    elif isinstance(ckpt, dict):
        sd = ckpt
    else:
        sys.exit(f"{path}: expected a dict with a `model` state_dict, found {type(ckpt).__name__}")
    sd = {k: v for k, v in sd.items() if hasattr(v, "shape")}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    model_args = getattr(args, "model", None) if args is not None else None
    return sd, model_args


def drop_aliases(sd):
    out, dropped, renamed = {}, [], []
    for k, v in sd.items():
        m = ALIAS.match(k)
        if m:
            canonical = f"{m.group(1)}layer{int(m.group(2)) + 1}_rn.weight"
            if canonical in sd:
                dropped.append(k)
                continue
            renamed.append((k, canonical))
            k = canonical
        out[k] = v
    return out, dropped, renamed


def symbols_from(sd):
    """Shape symbols of models/names.json (export/src/names.rs `symbols`), read off the tensors."""

    def shape(name, axis):
        if name not in sd:
            return None
        return int(sd[name].shape[axis])

    def count(prefix):
        idx = {int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r"\.(\d+)\.", k)] if m}
        return max(idx) + 1 if idx else 0

    s = {
        "cp": shape("patch_embed.proj.weight", 2),
        "ce": shape("patch_embed.proj.weight", 0),
        "cd": shape("decoder_embed.weight", 0),
        "state_size": shape("register_tokens.weight", 0),
        "mem_size": shape("pose_retriever.mem", 1),
        "enc_depth": count("enc_blocks"),
        "dec_depth": count("dec_blocks"),
    }
    fc1 = shape("enc_blocks.0.mlp.fc1.weight", 0)
    if fc1 and s["ce"]:
        s["mlp_ratio"] = fc1 // s["ce"]
    if s["cd"]:
        s["cm"] = 2 * s["cd"]
        if "mlp_ratio" in s:
            s["cd4"] = s["mlp_ratio"] * s["cd"]
    for k in range(4):
        s[f"dpt{k}"] = shape(f"downstream_head.dpt_self.act_postprocess.{k}.0.weight", 0)
    s["dpt_feat"] = shape("downstream_head.dpt_self.scratch.layer1_rn.weight", 0)
    s["dpt_last"] = shape("downstream_head.dpt_self.head.0.weight", 0)
    return {k: v for k, v in s.items() if v is not None}


class Expander:
    """The name-map expansion of export/src/names.rs (Tensor and Block entries, {i}, repeat, bind)."""

    def __init__(self, raw, prefix):
        self.raw, self.prefix, self.out = raw, prefix, []

    @staticmethod
    def eval(d, sym):
        """A dim expression (`12`, `ce`, `3*C`); None when a symbol is unknown (its tensor is missing)."""
        if isinstance(d, int):
            return d
        v = 1
        for f in d.split("*"):
            f = f.strip()
            x = int(f) if f.isdigit() else sym.get(f)
            if x is None:
                return None
            v *= x
        return v

    @staticmethod
    def indices(repeat, sym):
        if repeat is None:
            return [None]
        if isinstance(repeat, int):
            return list(range(repeat))
        if isinstance(repeat, str):
            return list(range(sym.get(repeat.strip()) or 0))
        a, b = repeat
        return list(range(a, b + 1))

    def entries(self, entries, at, sym):
        join = lambda a, b: b if not a else f"{a}.{b}"  # noqa: E731
        idx = lambda t, i: t if i is None else t.replace("{i}", str(i))  # noqa: E731
        for e in entries:
            if "block" in e:
                inner = dict(sym)
                for k, v in e.get("bind", {}).items():
                    inner[k] = self.eval(v, sym)
                for i in self.indices(e.get("repeat"), sym):
                    self.entries(self.raw["blocks"][e["block"]], join(at, idx(e["at"], i)), inner)
            else:
                for i in self.indices(e.get("repeat"), sym):
                    logical = join(at, idx(e["name"], i))
                    ckpt = idx(e["checkpoint"], i) if e.get("checkpoint") else self.prefix + logical
                    fallback = idx(e["fallback"], i) if e.get("fallback") else None
                    self.out.append((ckpt, [self.eval(d, sym) for d in e["shape"]], fallback))


def required(names_path, families, sym):
    raw = json.load(open(names_path))
    specs = []
    for fam in families:
        f = raw["families"][fam]
        ex = Expander(raw, f.get("prefix", ""))
        ex.entries(f["tensors"], "", sym)
        specs += ex.out
    return specs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pth", help="official checkpoint, e.g. cut3r_512_dpt_4_64.pth")
    p.add_argument("out", help="output file, normally <checkpoint dir>/cut3r.safetensors")
    p.add_argument("--cut3r-points", action="store_true", help="also require the point-map heads (family cut3r_points)")
    p.add_argument("--names", default=os.path.join(REPO, "models", "names.json"), help="name map (default: models/names.json)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    args = p.parse_args()

    if os.path.exists(args.out) and not args.force:
        sys.exit(f"{args.out} exists; pass --force to overwrite it")
    sd, model_args = load_state_dict(args.pth)
    sd, dropped, renamed = drop_aliases(sd)
    sym = symbols_from(sd)
    families = ["cut3r"] + (["cut3r_points"] if args.cut3r_points else [])
    specs = required(args.names, families, sym)
    problems = [f"no `{b}.N.*` tensors at all" for b in ("enc_blocks", "dec_blocks") if not sym.get(b.split("_")[0] + "_depth")]
    show = lambda shape: "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"  # noqa: E731
    for name, shape, fallback in specs:
        key = name if name in sd else (fallback if fallback and fallback in sd else None)
        if key is None:
            problems.append(f"missing `{name}` (expected shape {show(shape)})")
        elif any(d is not None and d != f for d, f in zip(shape, sd[key].shape)) or len(shape) != len(sd[key].shape):
            problems.append(f"`{key}`: expected shape {show(shape)}, found {list(sd[key].shape)}")
    if problems:
        sys.exit(f"{args.pth}: refusing to convert, {len(problems)} problem(s) with the tensors the exporter needs "
                 f"(families {', '.join(families)}):\n  " + "\n  ".join(problems))

    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in sd.items()}
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"source": os.path.basename(args.pth), "converter": "tools/cut3r-to-safetensors"})
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"wrote {args.out}: {len(tensors)} tensors ({len(specs)} required ones verified, "
          f"{len(dropped)} DPT aliases dropped, {len(renamed)} renamed)")
    print(f"shape symbols: {json.dumps(sym, sort_keys=True)}")
    if model_args:
        print(f"constructor (args.model): {model_args}")
        m = re.search(r"state_dec_num_heads\s*=\s*(\d+)", str(model_args))
        print("state_dec_num_heads: " + (m.group(1) if m else "not set (class default 16)") +
              " -- config.json `cut3r.state_dec_num_heads` must match")


if __name__ == "__main__":
    main()
