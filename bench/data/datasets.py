"""Dataset readers with one interface: the embedded set and real PASCAL VOC share the VOC layout;
COCO 2014 is read through pycocotools.

Every reader returns images as HxWx3 uint8 and masks as HxW uint8 (0 background, 1..C classes,
255 ignore), and checks that the two agree in size.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from bench.data.reading import (IGNORE, cached_image, cached_mask, check_labels, check_same_size, coco_mask,  # noqa: F401
                                 rasterised_coco_mask, read_image, read_mask)  # re-exported: the readers' file primitives
from bench.data.classes import COCO_CLASSES, VOC_CLASSES, coco_fold_classes, pascal_fold_classes
from bench.core.errors import BenchError
from bench.core.progress import progress

if TYPE_CHECKING:
    from bench.data.stores import CocoMasks, ImageFiles, MaskFiles

DATASETS = ("openmoji5i", "openmoji5i-mini", "openmoji20i", "openmoji20i-mini", "pascal5i", "coco20i")
REAL_DATASETS = ("pascal5i", "coco20i")  # read from a user's disk; the others are generated
COCO_FAMILY = ("coco20i", "openmoji20i", "openmoji20i-mini")  # COCO-20i folds; the others PASCAL-5i's


def dataset_family(name: str) -> str:
    """"coco" or "pascal" by name, what the readers' `family` says, known before one is opened."""
    return "coco" if name in COCO_FAMILY else "pascal"


@dataclass
class VocLayoutDataset:
    """PASCAL-5i on disk (VOC2012 + SBD aug) or the embedded set, which is written in the same layout."""

    name: str
    root: Path
    mask_dir: str
    lists: dict[str, Path]  # split -> id list file
    class_names: tuple[str, ...] = VOC_CLASSES
    family: str = "pascal"  # pascal: PASCAL-5i folds; coco: COCO-20i folds (embedded COCO-like set)
    present: tuple[int, ...] | None = None  # coco family: the class ids that have images (None: all)
    memo_dir: Path | None = None  # where file digests are remembered between runs (bench/data/content.py)
    _ids: dict = field(default_factory=dict, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    def ids(self, split: str) -> list[str]:
        if split not in self.lists:
            raise BenchError(f"dataset {self.name} has no split '{split}'; it has {', '.join(self.lists)}")
        if split not in self._ids:
            lines = self.lists[split].read_text().split()
            # SBD-style lists hold "JPEGImages/x.jpg SegmentationClassAug/x.png" pairs; keep the ids.
            self._ids[split] = list(dict.fromkeys(Path(t).stem for t in lines if not t.endswith(".png")))
        return self._ids[split]

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / self.mask_dir / f"{image_id}.png"

    def image(self, image_id: str) -> np.ndarray:
        return cached_image(self.image_path(image_id))

    def mask(self, image_id: str) -> np.ndarray:
        mask = cached_mask(self.mask_path(image_id))
        image = self.image(image_id)
        check_same_size(image, mask, self.image_path(image_id), self.mask_path(image_id))
        check_labels(mask, len(self.class_names), self.mask_path(image_id))
        return mask

    def image_store(self, ids) -> "ImageFiles":
        """The images of `ids` alone, with no way back to this reader (what a method may hold)."""
        from bench.data.stores import ImageFiles

        return ImageFiles(self.name, self.fingerprint(), {i: self.image_path(i) for i in ids})

    def mask_store(self, ids) -> "MaskFiles":
        """The GT masks of `ids` alone (full mode's training masks), with no way back to this reader."""
        from bench.data.stores import MaskFiles

        return MaskFiles({i: (self.mask_path(i), self.image_path(i)) for i in ids}, len(self.class_names))

    def fold_classes(self, fold: int, coco_split: str = "contiguous") -> list[int]:
        if self.family == "coco":
            return [c for c in coco_fold_classes(fold, coco_split) if self.present is None or c in self.present]
        return pascal_fold_classes(fold)

    def fingerprint(self) -> str:
        """Content of the split lists, every listed image and mask, and the image-level labels
        (not the folder's path): an edited mask is a new fingerprint, a moved dataset is not.
        Computed once per process."""
        if self._fingerprint is None:
            from bench.data.content import files_fingerprint

            ids = list(dict.fromkeys(i for split in self.lists for i in self.ids(split)))
            files = [p for i in ids for p in (self.image_path(i), self.mask_path(i))]
            labels = self.root / "image_labels.json"
            files += [labels] if labels.is_file() else []
            head = [self.name] + [f"{s}:{p.read_text()}" for s, p in sorted(self.lists.items())]
            self._fingerprint = files_fingerprint(self.root, files, self.memo_dir, head, f"fingerprinting {self.name}")
        return self._fingerprint


def embedded_dataset(cache_dir: Path, spec=None, name: str = "openmoji5i") -> VocLayoutDataset:
    from bench.data.embedded.generate import EmbeddedSpec, generate

    root = generate(Path(cache_dir) / "datasets", spec or EmbeddedSpec())
    lists = {s: root / "ImageSets/Segmentation" / f"{s}.txt" for s in ("train", "val")}
    return VocLayoutDataset(name, root, "SegmentationClass", lists, memo_dir=_memo_dir(cache_dir))


def _memo_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "index"


def embedded_coco_dataset(cache_dir: Path, spec=None, name: str = "openmoji20i") -> VocLayoutDataset:
    """The COCO-like embedded set: COCO ids 1..80, images only for the 65 classes with a glyph;
    folds are COCO-20i's (either convention, set by the preset) minus the classes without one."""
    from bench.data.embedded.generate import coco_spec, generate
    from bench.data.embedded.sprites import coco_class_sources

    root = generate(Path(cache_dir) / "datasets", spec or coco_spec())
    lists = {s: root / "ImageSets/Segmentation" / f"{s}.txt" for s in ("train", "val")}
    sources = coco_class_sources()
    present = tuple(i + 1 for i, n in enumerate(COCO_CLASSES) if sources.get(n))
    return VocLayoutDataset(name, root, "SegmentationClass", lists, COCO_CLASSES, family="coco", present=present,
                            memo_dir=_memo_dir(cache_dir))


NO_POOL_FIX = "fix: --pseudo-set cam=vgg16 cam_weights=FILE (and saliency=onnx saliency_path=FILE or saliency=none)"


def find_pool(dataset) -> VocLayoutDataset | None:
    """The disjoint-class pool shipped beside an embedded dataset (pool/ in the same VOC layout,
    labels 1..P in pool/classes.txt order), or None: real datasets have none."""
    root = getattr(dataset, "root", None)
    if root is None or not (Path(root) / "pool" / "classes.txt").is_file():
        return None
    pool = Path(root) / "pool"
    names = tuple(pool.joinpath("classes.txt").read_text().splitlines())
    lists = {s: pool / "ImageSets/Segmentation" / f"{s}.txt" for s in ("train", "val")}
    return VocLayoutDataset(f"{dataset.name}-pool", pool, "SegmentationClass", lists, names, family="pool",
                            memo_dir=dataset.memo_dir)


def pool_dataset(dataset) -> VocLayoutDataset:
    """`find_pool`, or one clear error when the dataset has none."""
    pool = find_pool(dataset)
    if pool is None:
        raise BenchError(f"dataset {dataset.name} has no disjoint pool to train a CAM or saliency net on; {NO_POOL_FIX}")
    return pool


def require_pool(pool: VocLayoutDataset | None, what: str) -> VocLayoutDataset:
    """`pool` (a method's view holds the pool, not the dataset), or one clear error naming `what` needs it."""
    if pool is None:
        raise BenchError(f"{what} is pretrained on the dataset's disjoint pool, and this dataset has none; {NO_POOL_FIX}")
    if getattr(pool, "family", None) != "pool":  # a benchmark dataset here would pretrain on its own classes
        raise BenchError(f"{what}: {getattr(pool, 'name', pool)} is not a disjoint pool; pass find_pool(dataset)")
    return pool


def mini_spec():
    """A few seconds to generate: for smoke runs and the test suite, never for reported numbers."""
    from bench.data.embedded.generate import EmbeddedSpec

    return EmbeddedSpec(train_per_class=10, val_per_class=6, pool_train_per_class=2, pool_val_per_class=1, n_pool_classes=30)


def pascal_dataset(root: Path, memo_dir: Path | None = None) -> VocLayoutDataset:
    """VOC2012 with SBD aug masks: JPEGImages/, SegmentationClassAug/ (or SegmentationClass/), and
    trainaug + val lists in ImageSets/Segmentation/."""
    root = Path(root)
    if not root.is_dir():
        raise BenchError(f"PASCAL VOC folder {root} does not exist; fix: pass --data-root pointing at VOCdevkit/VOC2012")
    if not (root / "JPEGImages").is_dir():
        raise BenchError(f"{root} has no JPEGImages/ folder; fix: point --data-root at VOCdevkit/VOC2012")
    mask_dir = next((d for d in ("SegmentationClassAug", "SegmentationClass") if (root / d).is_dir()), None)
    if mask_dir is None:
        raise BenchError(f"{root} has neither SegmentationClassAug/ nor SegmentationClass/; fix: unpack the SBD aug masks there")
    sets = root / "ImageSets" / "Segmentation"
    lists = {}
    for split, names in {"train": ("trainaug.txt", "train_aug.txt", "train.txt"), "val": ("val.txt",)}.items():
        found = next((sets / n for n in names if (sets / n).is_file()), None)
        if found is None:
            raise BenchError(f"no {split} list in {sets} (looked for {', '.join(names)}); fix: add the list file")
        lists[split] = found
    return VocLayoutDataset("pascal5i", root, mask_dir, lists, memo_dir=memo_dir)


@dataclass
class CocoDataset:
    """COCO 2014: <root>/annotations/instances_{train,val}2014.json and <root>/{train,val}2014/*.jpg.
    Class id = position of the category in ascending category-id order (1..80); crowd regions -> 255."""

    name: str
    root: Path
    class_names: tuple[str, ...] = COCO_CLASSES
    family: str = "coco"
    memo_dir: Path | None = None
    _apis: dict = field(default_factory=dict, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    def _api(self, split: str):
        if split not in ("train", "val"):
            raise BenchError(f"dataset coco20i has no split '{split}'; it has train, val")
        if split not in self._apis:
            from pycocotools.coco import COCO

            path = self.root / "annotations" / f"instances_{split}2014.json"
            if not path.is_file():
                raise BenchError(f"missing COCO annotation file {path}; fix: unpack annotations_trainval2014.zip into {self.root}")
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                api = COCO(str(path))
            self._apis[split] = api
        return self._apis[split]

    def _split_of(self, image_id: str) -> str:
        return image_id.split("_", 1)[0]

    def ids(self, split: str) -> list[str]:
        return [f"{split}_{i}" for i in sorted(self._api(split).getImgIds())]

    def image_path(self, image_id: str) -> Path:
        split, num = image_id.split("_", 1)
        info = self._api(split).loadImgs(int(num))[0]
        return self.root / f"{split}2014" / info["file_name"]

    def image(self, image_id: str) -> np.ndarray:
        return cached_image(self.image_path(image_id))

    def mask(self, image_id: str) -> np.ndarray:
        height, width, anns, image_path, cat_index = self._mask_entry(image_id)
        mask = rasterised_coco_mask(self.mask_folder(self._split_of(image_id)), image_id, height, width, anns, cat_index)
        check_same_size(cached_image(image_path), mask, image_path, f"annotations of {image_id}")
        return mask

    def mask_folder(self, split: str) -> Path | None:
        """Where this split's rasterised masks are kept: cache/coco-masks/<split>-<annotation file
        sha256>, beside the cache's index (None without a cache dir: rasterised at every access)."""
        if self.memo_dir is None:
            return None
        from bench.core.files import file_sha

        self._api(split)  # a missing annotation file gets its own message
        sha = file_sha(self.root / "annotations" / f"instances_{split}2014.json")
        return Path(self.memo_dir).parent / "coco-masks" / f"{self.name}-{split}-{sha}"

    def _mask_entry(self, image_id: str) -> tuple[int, int, list[dict], Path, dict[int, int]]:
        """(height, width, annotations, image file, category id -> class id) of one image."""
        split, num = image_id.split("_", 1)
        api = self._api(split)
        info = api.loadImgs(int(num))[0]
        anns = api.loadAnns(api.getAnnIds(imgIds=int(num), iscrowd=None))
        cat_index = {c: k + 1 for k, c in enumerate(sorted(api.getCatIds()))}  # ascending category-id order
        return info["height"], info["width"], anns, self.image_path(image_id), cat_index

    def image_store(self, ids) -> "ImageFiles":
        from bench.data.stores import ImageFiles

        return ImageFiles(self.name, self.fingerprint(), {i: self.image_path(i) for i in ids})

    def mask_store(self, ids) -> "CocoMasks":
        """The GT masks of `ids` alone: their annotations copied out, no COCO index kept."""
        from bench.data.stores import CocoMasks

        return CocoMasks({i: self._mask_entry(i) for i in ids},
                         {s: self.mask_folder(s) for s in {self._split_of(i) for i in ids}})

    def fold_classes(self, fold: int, coco_split: str = "contiguous") -> list[int]:
        return coco_fold_classes(fold, coco_split)

    def fingerprint(self) -> str:
        """Content of both annotation files and every image (computed once per process)."""
        if self._fingerprint is None:
            from bench.data.content import files_fingerprint

            files = [self.root / "annotations" / f"instances_{s}2014.json" for s in ("train", "val")]
            files += [self.image_path(i) for s in ("train", "val") for i in self.ids(s)]
            self._fingerprint = files_fingerprint(self.root, files, self.memo_dir, [self.name], f"fingerprinting {self.name}")
        return self._fingerprint


def coco_dataset(root: Path, memo_dir: Path | None = None) -> CocoDataset:
    root = Path(root)
    if not root.is_dir():
        raise BenchError(f"COCO folder {root} does not exist; fix: pass --data-root pointing at the COCO 2014 root")
    if not (root / "annotations").is_dir():
        raise BenchError(f"{root} has no annotations/ folder; fix: unpack annotations_trainval2014.zip into {root}")
    return CocoDataset("coco20i", root, memo_dir=memo_dir)


def get_dataset(name: str, cache_dir: Path, data_root: Path | None = None):
    if name == "openmoji5i":
        return embedded_dataset(cache_dir)
    if name == "openmoji5i-mini":
        return embedded_dataset(cache_dir, mini_spec(), name)
    if name == "openmoji20i":
        return embedded_coco_dataset(cache_dir)
    if name == "openmoji20i-mini":
        from dataclasses import replace

        return embedded_coco_dataset(cache_dir, replace(mini_spec(), benchmark="coco", train_per_class=4, val_per_class=3), name)
    if name in REAL_DATASETS:
        env = {"pascal5i": "WSFSS_PASCAL_ROOT", "coco20i": "WSFSS_COCO_ROOT"}[name]
        root = data_root or os.environ.get(env)
        if root is None:
            raise BenchError(f"dataset {name} needs its folder on disk; fix: pass --data-root DIR or set {env}")
        reader = pascal_dataset if name == "pascal5i" else coco_dataset
        return reader(Path(root), _memo_dir(cache_dir))
    from bench.core.settings import did_you_mean

    raise BenchError(f"unknown dataset '{name}'{did_you_mean(name, DATASETS)}; known: {', '.join(DATASETS)}")


def class_pixel_counts(dataset, split: str, cache_dir: Path) -> dict[str, dict[int, int]]:
    """Per image: pixels of each class present. Computed from the GT masks once, cached as JSON.
    Used only to build test episodes (the protocol), identically for full and weak runs."""
    path = Path(cache_dir) / "index" / f"{dataset.name}-{dataset.fingerprint()}-{split}.json"
    if path.exists():
        raw = json.loads(path.read_text())
        return {k: {int(c): n for c, n in v.items()} for k, v in raw.items()}
    counts = {}
    for image_id in progress(dataset.ids(split), desc=f"indexing {dataset.name} {split}"):
        values, n = np.unique(dataset.mask(image_id), return_counts=True)
        counts[image_id] = {int(v): int(k) for v, k in zip(values, n) if v not in (0, IGNORE)}
    from bench.core.files import atomic_write_text

    atomic_write_text(path, json.dumps(counts))
    return counts


def image_labels(dataset, split: str, cache_dir: Path) -> dict[str, frozenset[int]]:
    """Image-level labels: the only annotation weak mode may use on training images."""
    label_file = getattr(dataset, "root", Path("/nonexistent")) / "image_labels.json"
    if label_file.is_file():
        raw = json.loads(label_file.read_text())
        return {i: frozenset(raw[i]) for i in dataset.ids(split)}
    return {i: frozenset(c) for i, c in class_pixel_counts(dataset, split, cache_dir).items()}
