"""The one resize rule of the harness (presets' `train_size` / `eval_size`): a square side, or
None for the image's own size. Images are resized bilinearly, masks nearest (labels never blend),
both through Pillow, so every place that resizes the same image gets the same array."""
from __future__ import annotations

import numpy as np
from PIL import Image


def target_shape(shape, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) an image of `shape` takes under `size` (square side, explicit (H, W), or None)."""
    if size is None:
        return tuple(int(v) for v in shape[:2])
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def resized_image(image: np.ndarray, size) -> np.ndarray:
    h, w = target_shape(image.shape, size)
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def resized_mask(mask: np.ndarray, size) -> np.ndarray:
    h, w = target_shape(mask.shape, size)
    if mask.shape[:2] == (h, w):
        return mask
    return np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))


def size_groups(keys) -> list[list[int]]:
    """Positions of equal keys (image shapes, or tuples of them), groups in order of first
    appearance: one sub-batch per size, and a single group, in input order, when all agree."""
    groups: dict = {}
    for n, key in enumerate(keys):
        groups.setdefault(key, []).append(n)
    return list(groups.values())
