"""Image files for the tests: hostile headers that declare far more pixels than the bytes hold, and letters."""

from __future__ import annotations

import struct
import zlib

from PIL import Image, ImageDraw, ImageFont


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A grey PNG declaring ``width`` x ``height`` pixels whose data holds a few bytes: decoding it fails.

    A reader that reports "too large" for it therefore decided from the header alone.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + _chunk(b"IEND", b""))


def letter_image(text: str = "A", size: int = 112) -> Image.Image:
    """``text`` in DejaVu Sans Bold (the font matplotlib ships), black on white paper, ``size`` x ``size``."""
    from lenet_tf.data.synthetic import font_files

    image = Image.new("L", (size, size), 255)
    font = ImageFont.truetype(next(f for f in font_files() if f.endswith("DejaVuSans-Bold.ttf")), size * 0.8)
    ImageDraw.Draw(image).text((size // 2, size // 2), text, fill=0, anchor="mm", font=font)
    return image
