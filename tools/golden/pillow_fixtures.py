#!/usr/bin/env python3
"""Pillow resize and decode fixtures for the runtime's preprocess stage (dev only).

Writes deterministic RGB test images of odd sizes and their Pillow `Image.resize` outputs
(BICUBIC and LANCZOS, upscale, downscale and single-pass cases) into
`tests/fixtures/preprocess/`, plus `manifest.json` listing every case. The Rust test
`runtime/tests/pillow_resize.rs` resizes the same inputs with `stages::preprocess::resize_pil`
and requires bit-exact equality.

Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
pixels as the width (python-pillow/Pillow#9549); older Pillow always runs horizontal first.
The cases below include pairs on both sides of that boundary.

Run with the dev venv (pillow is pinned in tools/golden/requirements.txt):

    .venv-dev/bin/python tools/golden/pillow_fixtures.py [--out tests/fixtures/preprocess]

It also writes decode cases (`decode` in the manifest): JPEGs saved by Pillow (4:2:0, 4:2:2, 4:4:4,
greyscale, progressive, an EXIF orientation, odd sizes that leave partial MCUs) and 16-bit PNGs,
each with Pillow's `exif_transpose(open(f)).convert("RGB")` as an 8-bit PNG; the runtime's
`read_image` must reproduce those bytes exactly. 16-bit greyscale is listed as refused (Pillow
clips it to white).

Images are PNG (lossless, so PIL and the `image` crate read identical bytes). To keep the
directory small (< 1.5 MB) the inputs are smooth gradients plus hard-edged 0/255 blocks
(which make the kernels overshoot, exercising the clipping) plus one patch of uniform noise
(which exercises the rounding of every weight).
"""

import argparse
import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps

# (name, width, height, seed)
INPUTS = [
    ("a_37x23", 37, 23, 1),
    ("b_640x480", 640, 480, 2),
    ("c_100x100", 100, 100, 3),
    ("d_17x300", 17, 300, 4),
    ("e_101x67", 101, 67, 5),
]

# (input name, filter, out width, out height)
CASES = [
    # SigLIP: every input to 384x384 with BICUBIC
    ("a_37x23", "bicubic", 384, 384),
    ("b_640x480", "bicubic", 384, 384),
    ("c_100x100", "bicubic", 384, 384),
    ("d_17x300", "bicubic", 384, 384),
    # other bicubic sizes: downscale, mixed, single-pass (one side unchanged)
    ("a_37x23", "bicubic", 16, 9),
    ("b_640x480", "bicubic", 213, 160),
    ("b_640x480", "bicubic", 640, 241),
    ("a_37x23", "bicubic", 80, 23),
    ("c_100x100", "bicubic", 171, 171),  # upscale by a non-integer factor
    ("d_17x300", "bicubic", 29, 512),  # CUT3R upscale of a portrait image
    ("d_17x300", "bicubic", 3, 7),  # extreme downscale (support >> size)
    # LANCZOS (CUT3R when the long side shrinks)
    ("b_640x480", "lanczos", 512, 384),
    ("b_640x480", "lanczos", 97, 61),
    ("c_100x100", "lanczos", 33, 77),
    ("a_37x23", "lanczos", 150, 101),  # lanczos upscale
    ("d_17x300", "lanczos", 5, 150),
    # Pillow 13 pass order (vertical first iff out_h < h and h - out_h > 2 (w - out_w)):
    # pairs on both sides of the boundary
    ("c_100x100", "bicubic", 90, 79),  # 21 > 20: vertical first
    ("c_100x100", "bicubic", 90, 80),  # 20 > 20 false: horizontal first
    ("d_17x300", "lanczos", 16, 297),  # 3 > 2: vertical first
    ("d_17x300", "lanczos", 15, 296),  # 4 > 4 false: horizontal first
]

FILTERS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}

# (file, source input, how it is written): JPEG via Pillow's encoder, 16-bit PNG by hand.
DECODE_CASES = [
    ("jpeg_420_q90_37x23.jpg", "a_37x23", dict(quality=90, subsampling=2)),
    ("jpeg_422_q75_101x67.jpg", "e_101x67", dict(quality=75, subsampling=1)),
    ("jpeg_444_q95_101x67.jpg", "e_101x67", dict(quality=95, subsampling=0)),
    ("jpeg_420_progressive_101x67.jpg", "e_101x67", dict(quality=85, subsampling=2, progressive=True)),
    ("jpeg_grey_101x67.jpg", "e_101x67", dict(quality=85, mode="L")),
    ("jpeg_420_exif6_101x67.jpg", "e_101x67", dict(quality=85, subsampling=2, orientation=6)),
    ("png_rgb16_37x23.png", "a_37x23", dict(png16="rgb")),
    ("png_rgba16_37x23.png", "a_37x23", dict(png16="rgba")),
    ("png_la16_37x23.png", "a_37x23", dict(png16="la")),
]
# Refused by the runtime with a clear error (Pillow turns it white).
REFUSED_CASES = [("png_grey16_37x23.png", "a_37x23", dict(png16="grey"))]


def png16(arr16: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG (big-endian samples, filter 0 on every row), written by hand: Pillow cannot
    write 16-bit RGB."""
    h, w = arr16.shape[:2]
    rows = arr16.astype(">u2").reshape(h, -1).tobytes()
    stride = len(rows) // h
    raw = b"".join(b"\0" + rows[i * stride:(i + 1) * stride] for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_decode_input(path: Path, src: np.ndarray, how: dict, seed: int) -> None:
    if "png16" in how:
        rng = np.random.default_rng(seed)
        # 16-bit samples whose low byte is noise: the high-byte rule and rounding differ on ~half
        base = src.astype(np.int64) * 257
        rgb16 = (base + rng.integers(-128, 128, size=src.shape)).clip(0, 65535).astype(np.uint16)
        alpha = rng.integers(0, 65536, size=src.shape[:2] + (1,), dtype=np.uint16)
        grey = rgb16[..., :1]
        arr, ct = {"rgb": (rgb16, 2), "rgba": (np.concatenate([rgb16, alpha], -1), 6),
                   "la": (np.concatenate([grey, alpha], -1), 4), "grey": (grey[..., 0], 0)}[how["png16"]]
        path.write_bytes(png16(arr, ct))
        return
    im = Image.fromarray(src, "RGB")
    opts = {k: v for k, v in how.items() if k in ("quality", "subsampling", "progressive")}
    if how.get("mode") == "L":
        im = im.convert("L")
    if "orientation" in how:
        exif = Image.Exif()
        exif[0x0112] = how["orientation"]
        opts["exif"] = exif.tobytes()
    im.save(path, "JPEG", **opts)


def make_image(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3), np.float64)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)
        img[..., c] = 127.5 + 120 * np.sin(2 * np.pi * (fx * x / w + fy * y / h) + ph)
    img = np.round(img)
    # hard-edged blocks of 0 and 255 (overshoot -> clipping)
    for _ in range(6):
        bw, bh = max(1, w // rng.integers(3, 8)), max(1, h // rng.integers(3, 8))
        x0, y0 = rng.integers(0, max(1, w - bw)), rng.integers(0, max(1, h - bh))
        img[y0 : y0 + bh, x0 : x0 + bw, :] = rng.choice([0, 255], size=3)
    # one patch of uniform noise (at most 64x64)
    nw, nh = min(w, 64), min(h, 64)
    x0, y0 = rng.integers(0, w - nw + 1), rng.integers(0, h - nh + 1)
    img[y0 : y0 + nh, x0 : x0 + nw, :] = rng.integers(0, 256, size=(nh, nw, 3))
    return img.astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[2]
    ap.add_argument("--out", type=Path, default=root / "tests/fixtures/preprocess")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    images = {}
    manifest = {"pillow_version": PIL.__version__, "inputs": {}, "cases": []}
    for name, w, h, seed in INPUTS:
        arr = make_image(w, h, seed)
        im = Image.fromarray(arr, "RGB")
        images[name] = im
        fname = f"in_{name}.png"
        im.save(args.out / fname, optimize=True)
        manifest["inputs"][name] = {"file": fname, "width": w, "height": h}
    for name, filt, ow, oh in CASES:
        out = images[name].resize((ow, oh), FILTERS[filt])
        arr = np.asarray(out)
        assert arr.shape == (oh, ow, 3)
        fname = f"out_{name}_{filt}_{ow}x{oh}.png"
        out.save(args.out / fname, optimize=True)
        manifest["cases"].append(
            {
                "input": name,
                "filter": filt,
                "width": ow,
                "height": oh,
                "file": fname,
                "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
            }
        )
    manifest["decode"] = []
    for i, (fname, name, how) in enumerate(DECODE_CASES + REFUSED_CASES):
        write_decode_input(args.out / fname, np.asarray(images[name]), how, seed=100 + i)
        case = {"input": fname}
        if (fname, name, how) in REFUSED_CASES:
            case["refused"] = True
        else:
            with Image.open(args.out / fname) as im:
                out = ImageOps.exif_transpose(im).convert("RGB")
            out_name = f"decoded_{Path(fname).stem}.png"
            out.save(args.out / out_name, optimize=True)
            case.update(expected=out_name, width=out.width, height=out.height)
        manifest["decode"].append(case)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(manifest['cases'])} cases to {args.out} ({total / 1e6:.2f} MB), Pillow {PIL.__version__}")


if __name__ == "__main__":
    main()
