"""Pretraining the segmentation backbone on a user's dataset without the benchmark's classes
(`bench backbone pretrain --dataset DIR --layout voc|ade20k|coco`), as the paper's DeepLabV3+ is
"pretrained on irrelevant categories".

The user's set is written once into the pool layout the embedded sets use (VOC layout, classes.txt,
image_labels.json, images resized to `size` x `size`), so the pool pretraining recipe
(backbones/pretrain.py) runs on it unchanged:
- a class that is, or shows, a benchmark class (`excluded`: the benchmark's names, synonyms and
  hyponyms, bench/harness/declared.py) becomes 255 (ignored); the other classes are renumbered 1..K;
- an image whose labelled pixels are more than DOMINATED benchmark-class pixels is dropped (its
  unlabelled surroundings would teach the backbone the benchmark class as "background");
- ADE20K's 0 (unlabelled) becomes 255; VOC's and COCO's 0 stay background, crowd regions 255.
The class list (background + the K kept classes) is written beside the weights."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from bench.core.errors import BenchError
from bench.core.files import atomic_write_text
from bench.core.progress import progress
from bench.data.datasets import VocLayoutDataset
from bench.data.palette import save_palette_png
from bench.data.reading import IGNORE, coco_mask, read_image, read_mask

LAYOUTS = ("voc", "ade20k", "coco")
DOMINATED = 1 / 3  # an image is dropped when more than this share of its labelled pixels is a benchmark class


def source_classes(root: Path, layout: str) -> list[list[str]]:
    """Each class of the user's set (1..C) as its aliases."""
    listed = root / "classes.txt"
    if listed.is_file():
        return [[a.strip() for a in l.split(",") if a.strip()] for l in listed.read_text().splitlines() if l.strip()]
    if layout == "voc":
        from bench.data.classes import VOC_CLASSES

        return [[c] for c in VOC_CLASSES]
    if layout == "ade20k":
        info = root / "objectInfo150.csv"
        if not info.is_file():
            raise BenchError(f"{root} has no objectInfo150.csv or classes.txt; fix: keep ADEChallengeData2016's objectInfo150.csv")
        with open(info, newline="") as f:
            return [[a.strip() for a in row["Name"].split(";")] for row in csv.DictReader(f)]
    raise BenchError(f"layout {layout} takes its classes from the annotation file")


def _pairs(root: Path, layout: str) -> list[tuple[str, Path, object]]:
    """(id, image file, mask file or COCO entry) of the set's training images."""
    if layout == "voc":
        sets = root / "ImageSets" / "Segmentation"
        listed = next((sets / n for n in ("train.txt", "trainaug.txt") if (sets / n).is_file()), None)
        mask_dir = next((root / d for d in ("SegmentationClassAug", "SegmentationClass") if (root / d).is_dir()), None)
        if listed is None or mask_dir is None:
            raise BenchError(f"{root} is not in VOC layout (ImageSets/Segmentation/train.txt, SegmentationClass/); fix: --layout")
        return [(i, root / "JPEGImages" / f"{i}.jpg", mask_dir / f"{i}.png") for i in listed.read_text().split()]
    if layout == "ade20k":
        images = root / "images" / "training"
        if not images.is_dir():
            raise BenchError(f"{root} has no images/training/; fix: point --dataset at ADEChallengeData2016")
        return [(p.stem, p, root / "annotations" / "training" / f"{p.stem}.png") for p in sorted(images.glob("*.jpg"))]
    return []


def coco_pairs(root: Path) -> tuple[list[list[str]], list[tuple[str, Path, object]]]:
    files = sorted((root / "annotations").glob("instances_train*.json"))
    if not files:
        raise BenchError(f"{root}/annotations has no instances_train*.json; fix: point --dataset at a COCO root")
    raw = json.loads(files[0].read_text())
    cats = sorted(raw["categories"], key=lambda c: c["id"])
    index = {c["id"]: k + 1 for k, c in enumerate(cats)}
    by_image = {}
    for ann in raw["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    folder = root / files[0].stem.replace("instances_", "")
    pairs = [(str(im["id"]), folder / im["file_name"], (im["height"], im["width"], by_image.get(im["id"], []), index))
             for im in sorted(raw["images"], key=lambda im: im["id"])]
    return [[c["name"]] for c in cats], pairs


def pretraining_set(root: Path, layout: str, benchmark_classes, out: Path, size: int = 129, val_share: float = 0.1,
                    log=print) -> tuple[VocLayoutDataset, dict]:
    """The user's set in the pool layout (written once to `out`), and what was kept and dropped."""
    from bench.data.vocabulary import overlap  # the names and hyponyms the run's class check uses

    root = Path(root)
    if layout not in LAYOUTS:
        raise BenchError(f"unknown --layout {layout}; use {', '.join(LAYOUTS)}")
    if layout == "coco":
        classes, pairs = coco_pairs(root)
    else:
        classes, pairs = source_classes(root, layout), _pairs(root, layout)
    excluded = [k + 1 for k, aliases in enumerate(classes) if overlap(tuple(aliases), benchmark_classes)]
    kept = [k + 1 for k in range(len(classes)) if k + 1 not in excluded]
    if not kept:
        raise BenchError(f"every class of {root} is a benchmark class; fix: pretrain on a set with other classes")
    lut = np.full(256, IGNORE, np.uint8)
    lut[0] = IGNORE if layout == "ade20k" else 0
    for new, old in enumerate(kept, 1):
        lut[old] = new
    done = out / "COMPLETE"
    summary_file = out / "summary.json"
    if done.is_file():
        return _as_pool(out, root), json.loads(summary_file.read_text())
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    written, dropped, labels = [], 0, {}
    for image_id, image_path, target in progress(pairs, desc=f"converting {root.name} for pretraining"):
        mask = (coco_mask(*target) if layout == "coco" else read_mask(target)).astype(np.uint8)
        labelled = (mask != IGNORE) & ((mask != 0) | (layout != "ade20k"))
        bench_px = np.isin(mask, excluded) & labelled
        if labelled.any() and bench_px.sum() > DOMINATED * labelled.sum():
            dropped += 1
            continue
        new = lut[mask]
        image = Image.fromarray(read_image(image_path)).resize((size, size), Image.BILINEAR)
        image.save(out / "JPEGImages" / f"{image_id}.jpg", quality=95)
        new = np.asarray(Image.fromarray(new).resize((size, size), Image.NEAREST))
        save_palette_png(new, out / "SegmentationClass" / f"{image_id}.png")
        labels[image_id] = sorted(int(c) for c in np.unique(new) if c not in (0, IGNORE))
        written.append(image_id)
    if len(written) < 2:
        raise BenchError(f"{root}: only {len(written)} image(s) left after dropping those dominated by benchmark classes")
    n_val = max(1, int(len(written) * val_share))
    atomic_write_text(out / "ImageSets/Segmentation/train.txt", "\n".join(written[n_val:]) + "\n")
    atomic_write_text(out / "ImageSets/Segmentation/val.txt", "\n".join(written[:n_val]) + "\n")
    atomic_write_text(out / "classes.txt", "\n".join(classes[k - 1][0] for k in kept) + "\n")
    atomic_write_text(out / "image_labels.json", json.dumps(labels))
    summary = {"source": str(root), "layout": layout, "kept": [classes[k - 1][0] for k in kept],
               "ignored": [classes[k - 1][0] for k in excluded], "images": len(written), "dropped": dropped,
               "dominated_share": DOMINATED}
    atomic_write_text(summary_file, json.dumps(summary, indent=1) + "\n")
    done.write_text("")
    log(f"{root}: {len(kept)} classes kept, {len(excluded)} set to ignore, {len(written)} images "
        f"({dropped} dropped as dominated by benchmark classes)")
    return _as_pool(out, root), summary


def _as_pool(out: Path, root: Path) -> VocLayoutDataset:
    lists = {s: out / "ImageSets/Segmentation" / f"{s}.txt" for s in ("train", "val")}
    names = tuple(out.joinpath("classes.txt").read_text().splitlines())
    return VocLayoutDataset(f"{root.name}-pretraining", out, "SegmentationClass", lists, names, family="pool")
