"""Hostile inputs for the fuzz tests and for ``benchmarks/fuzz_inputs.py``: small valid files of every format the
docs promise, written by PIL, and TF Serving bodies of every form, then mutated byte by byte or value by value.

Each mutation is a plain function of a seeded ``random.Random``, so that Hypothesis (``st.randoms``) drives it in
the suite and a long run draws millions of inputs from a seed without Hypothesis's overhead.
"""

from __future__ import annotations

import base64
import io
import json
import random
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

_INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF]
_WIDE = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x00\xff\xff"]


def _drawing(size: int = 24) -> Image.Image:
    image = Image.new("L", (size, size), 255)
    ImageDraw.Draw(image).line([(6, 5), (18, 5), (10, 20)], fill=0, width=3)
    return image


def _saved(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


@cache
def seed_pictures() -> dict[str, bytes]:
    """Small valid pictures, ``name -> bytes``: every format and the modes and codecs phones, scanners and editors
    write (grey, palette, RGBA, 16-bit, progressive JPEG, animated GIF, multi-page and compressed TIFF, WebP)."""
    grey = _drawing()
    rgba = Image.merge("RGBA", [grey] * 3 + [grey.point(lambda v: 255 - v)])
    frames = [grey, grey.rotate(90)]
    return {
        "grey.png": _saved(grey, "PNG"),
        "rgba.png": _saved(rgba, "PNG"),
        "palette.png": _saved(grey.convert("P"), "PNG"),
        "16bit.png": _saved(Image.fromarray(np.asarray(grey, np.uint16) * 257), "PNG"),
        "rgb.jpg": _saved(grey.convert("RGB"), "JPEG", quality=80),
        "progressive.jpg": _saved(grey, "JPEG", progressive=True),
        "rgb.bmp": _saved(grey.convert("RGB"), "BMP"),
        "grey.bmp": _saved(grey, "BMP"),
        "animated.gif": _saved(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "raw.tif": _saved(grey, "TIFF"),
        "lzw.tif": _saved(grey, "TIFF", compression="tiff_lzw"),
        "jpeg.tif": _saved(grey.convert("RGB"), "TIFF", compression="jpeg"),
        "pages.tif": _saved(frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="packbits"),
        "lossy.webp": _saved(grey.convert("RGB"), "WEBP", quality=60),
        "lossless.webp": _saved(rgba, "WEBP", lossless=True),
    }


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """``data`` with 1-8 random mutations: flipped bits, interesting bytes and 32-bit values (sizes, offsets,
    counts), deleted, repeated or inserted runs, truncation."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not out:
            out += bytes([rng.randrange(256)])
        at = rng.randrange(len(out))
        kind = rng.randrange(7)
        if kind == 0:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at] = rng.choice(_INTERESTING)
        elif kind == 2:
            out[at:at + 4] = rng.choice(_WIDE)
        elif kind == 3:
            del out[at:at + rng.randint(1, 64)]
        elif kind == 4:
            run = out[at:at + rng.randint(1, 64)]
            out[at:at] = run * rng.randint(1, 8)
        elif kind == 5:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            del out[rng.randint(at, len(out)):]
    return bytes(out)


def mutated_picture(rng: random.Random) -> tuple[str, bytes]:
    """One seed picture (its name) mutated by :func:`mutate_bytes`."""
    name = rng.choice(sorted(seed_pictures()))
    return name, mutate_bytes(seed_pictures()[name], rng)


def _random_leaf(rng: random.Random):
    return rng.choice([0, 255, 256, -1, 2 ** 64, 7.5, float("nan"), True, None, "a" * rng.randint(0, 40), [], {},
                       {"b64": "AAAA"}, [0] * 28])


def _mutate_value(value, rng: random.Random, depth: int = 0):
    """``value`` (nested lists and objects) with one random structural change somewhere inside."""
    if isinstance(value, list) and value and depth < 6 and rng.random() < 0.8:
        value = list(value)
        at = rng.randrange(len(value))
        kind = rng.randrange(5)
        if kind == 0:
            value[at] = _mutate_value(value[at], rng, depth + 1)
        elif kind == 1:
            del value[at]
        elif kind == 2:
            value.insert(at, _random_leaf(rng))
        elif kind == 3:
            value = value * rng.randint(2, 4)
        else:
            value[at] = [value[at]]
        return value
    if isinstance(value, dict) and value and depth < 6:
        key = rng.choice(sorted(value))
        mutated = dict(value)
        if rng.random() < 0.2:
            mutated[rng.choice(["instances", "inputs", "images", "b64", "signature_name", "x"])] = mutated.pop(key)
        else:
            mutated[key] = _mutate_value(value[key], rng, depth + 1)
        return mutated
    return _random_leaf(rng)


@cache
def seed_bodies() -> list[dict]:
    """Valid TF Serving predict bodies of every form: row and columnar, named inputs, a channel axis, pictures."""
    digit = (255 - np.asarray(_drawing(28))).tolist()
    picture = {"b64": base64.b64encode(seed_pictures()["grey.png"]).decode()}
    return [{"instances": [digit]}, {"instances": [digit, digit]}, {"inputs": [digit]},
            {"inputs": {"images": [digit]}}, {"instances": [{"images": digit}]},
            {"instances": [[[[v] for v in row] for row in digit]]}, {"signature_name": "serving_default",
                                                                       "instances": [digit]},
            {"signature_name": "predict_images", "instances": [picture]},
            {"signature_name": "predict_images", "inputs": {"images": [picture, picture]}}]


def mutated_body(rng: random.Random) -> bytes:
    """A seed body with structural mutations (JSON values of other types, lengths and depths), sometimes with byte
    mutations of its text on top."""
    body = rng.choice(seed_bodies())
    for _ in range(rng.randint(1, 4)):
        body = _mutate_value(body, rng)
    text = json.dumps(body).encode()
    return mutate_bytes(text, rng) if rng.random() < 0.3 else text
