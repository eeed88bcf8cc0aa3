"""Contact sheet: images with their masks blended on top (VOC colours, 255 in white), class names."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.data.palette import voc_palette


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    colours = np.array(voc_palette(), np.float32).reshape(256, 3)
    colours[255] = 255
    tint = colours[mask]
    keep = (mask == 0)[..., None]
    return np.where(keep, image, (1 - alpha) * image + alpha * tint).astype(np.uint8)


def contact_sheet(dataset, split: str, n: int, out: Path, cols: int = 8) -> None:
    ids = dataset.ids(split)[:n]
    h = w = 129
    rows = (len(ids) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * (h + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, image_id in enumerate(ids):
        image, mask = dataset.image(image_id), dataset.mask(image_id)
        tile = Image.fromarray(overlay(image, mask)).resize((w, h))
        x, y = (k % cols) * w, (k // cols) * (h + 14)
        sheet.paste(tile, (x, y))
        names = [dataset.class_names[c - 1] for c in np.unique(mask) if c not in (0, 255)]
        draw.text((x + 2, y + h), ",".join(names)[:24], fill="black")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
