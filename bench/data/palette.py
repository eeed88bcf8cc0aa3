"""PASCAL VOC colour palette and palette-PNG mask I/O."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def voc_palette() -> list[int]:
    """The 256-entry VOC colour map (bit-interleaved class index), flattened RGB."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


_PALETTE = voc_palette()


def _palette_image(label: np.ndarray) -> Image.Image:
    im = Image.fromarray(label.astype(np.uint8), mode="P")
    im.putpalette(_PALETTE)
    return im


def save_palette_png(label: np.ndarray, path: Path) -> None:
    _palette_image(label).save(path, optimize=False)


def palette_png_bytes(label: np.ndarray) -> bytes:
    """The bytes `save_palette_png` would write."""
    import io

    buf = io.BytesIO()
    _palette_image(label).save(buf, format="PNG", optimize=False)
    return buf.getvalue()
