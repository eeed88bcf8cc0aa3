"""What a method is given, and nothing more (DESIGN.md, "Layers and what a method may see").

`FitView` is `Method.fit`'s argument: the fold's training ids and base classes, training images and
masks (from the annotation source: GT in full mode, pseudo masks in weak mode, novel classes
removed), base-class episode sampling, the disjoint pool (its GT is allowed), an image-only store
of the test images, the cache folder and the preset's sizes. It is built from a dataset reader and
an annotation source but keeps neither: its stores (bench/data/stores.py) hold file paths of their
own ids only, so no attribute chain from it reaches a reader, an annotation source or a ground-truth
mask the protocol does not give (tests/test_views.py walks every attribute to show it).
`Method.predict` gets an `EpisodeInput` (bench/core/types.py): images, support masks, opaque ids."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.core import curves
from bench.core.types import EpisodeInput, episode_labels
from bench.data.datasets import find_pool, image_labels
from bench.data.sizes import resized_image, resized_mask
from bench.harness.presets import Preset


def training_labels(dataset, preset: Preset, fold: int, cache_dir: Path) -> dict:
    """{image id: base classes it holds} of a fold's training images: image-level labels with the
    novel classes removed, images left with none dropped (and, under "drop" presets, every image
    holding a novel class)."""
    novel = set(dataset.fold_classes(fold, preset.coco_split))
    labels = image_labels(dataset, preset.train_split, cache_dir)
    if preset.novel_in_train == "drop":
        labels = {i: l for i, l in labels.items() if not (l & novel)}
    return {i: l - novel for i, l in labels.items() if l - novel}


class FitView:
    """Training data of one fold, base classes only. Which images hold which class comes from the
    image-level labels; masks from the annotation source, with every novel-class pixel set to
    background ("background" presets) or every image holding a novel class dropped ("drop")."""

    __slots__ = ("dataset_name", "ids", "base_classes", "labels", "by_class", "train_size", "eval_size", "cache_dir",
                 "pool", "images", "test_images", "_masks", "_novel_lut", "_validation", "_tracker", "snapshot")

    def __init__(self, dataset, annotations, preset: Preset, fold: int, cache_dir: Path):
        novel = tuple(dataset.fold_classes(fold, preset.coco_split))
        self.dataset_name = dataset.name
        self.base_classes = tuple(c for c in range(1, len(dataset.class_names) + 1) if c not in novel)
        self.labels = training_labels(dataset, preset, fold, cache_dir)
        self.ids = sorted(self.labels)
        self.by_class = {c: [i for i in self.ids if c in self.labels[i]] for c in self.base_classes}
        self.train_size, self.eval_size = preset.train_size, preset.eval_size
        self.cache_dir = Path(cache_dir)
        self.pool = find_pool(dataset)  # the disjoint pool reader (its GT is allowed) or None
        test_ids = dataset.ids(preset.test_split)
        self.images = dataset.image_store(dict.fromkeys(self.ids + test_ids))  # raw images, train and test
        self.test_images = dataset.image_store(test_ids)
        self._masks = annotations.mask_store(self.ids)  # training ids only
        self._novel_lut = np.arange(256, dtype=np.uint8)
        self._novel_lut[list(novel)] = 0
        self._validation = None  # the fixed validation episodes, drawn on first use
        self._tracker = None
        self.snapshot: Path | None = None  # where the fit's resumable state goes (runner: beside its checkpoint)

    def image(self, image_id: str) -> np.ndarray:
        """A training image at the preset's `train_size` (its own size when None)."""
        return resized_image(self.images.image(image_id), self.train_size)

    def mask(self, image_id: str) -> np.ndarray:
        """Training mask in global class ids with no novel class left in it, at `train_size`."""
        return self._novel_lut[resized_mask(self._masks.mask(image_id), self.train_size)]

    def test_ids(self) -> list[str]:
        """The images test episodes draw from (for methods that precompute per-image features)."""
        return self.test_images.ids()

    def sample_episode(self, rng: np.random.Generator, way: int, shot: int) -> tuple[EpisodeInput, list[np.ndarray]]:
        """A base-class episode and its query masks (episode labels, from the annotation source)."""
        classes = [c for c in self.base_classes if len(self.by_class[c]) >= shot + 1]
        chosen = [classes[k] for k in rng.choice(len(classes), way, replace=False)]
        used: set[str] = set()
        s_imgs, s_masks, q_imgs, q_masks, s_ids, q_ids = [], [], [], [], [], []
        for c in chosen:
            candidates = [i for i in self.by_class[c] if i not in used]
            picks = [candidates[k] for k in rng.choice(len(candidates), shot + 1, replace=False)]
            used.update(picks)
            masks = [episode_labels(self.mask(i), chosen) for i in picks]
            s_imgs.append([self.image(i) for i in picks[:-1]])
            s_masks.append(masks[:-1])
            q_imgs.append(self.image(picks[-1]))
            q_masks.append(masks[-1])
            s_ids.append(tuple(picks[:-1]))
            q_ids.append(picks[-1])
        return EpisodeInput(tuple(chosen), s_imgs, s_masks, q_imgs, tuple(s_ids), tuple(q_ids)), q_masks

    def curve(self, total_steps: int, method) -> curves.Tracker:
        """The fit's curve recorder (bench/core/curves.py): the training loop calls `.step(i, loss)`
        after step i (from 1); validation runs `method.predict` on fixed base-class episodes."""
        self._tracker = curves.Tracker(total_steps, method, self.validation_counts, self.snapshot)
        return self._tracker

    def fit_curve(self) -> dict | None:
        """The curve and verdict of the fit this view served, or None if the method kept none."""
        return None if self._tracker is None else self._tracker.curve.as_dict()

    def loop_seconds(self) -> float | None:
        """Wall time of the training loop this view served (its steps and validations, not the
        preparation before it: pool nets, feature stores), or None if it kept no curve or did not finish."""
        return None if self._tracker is None else self._tracker.seconds

    def resumed_at(self) -> list[int]:
        """The steps the fit this view served was resumed from (empty: it ran through)."""
        return [] if self._tracker is None else list(self._tracker.resumed_at)

    def validation_score(self, predict) -> float:
        """Foreground IoU (%) of `predict` pooled over the fixed validation episodes."""
        return curves.pooled_iou(self.validation_counts(predict))

    def validation_counts(self, predict) -> list[tuple[int, int]]:
        """Per fixed validation episode, the foreground (intersection, union) of `predict`: 1-way
        1-shot, base classes, training images and training masks (what this view gives the method
        anyway), drawn with their own seed so that training never samples the same stream."""
        if self._validation is None:
            rng = np.random.default_rng(curves.VALIDATION_SEED)
            self._validation = [self.sample_episode(rng, 1, 1) for _ in range(curves.VALIDATION_EPISODES)]
        counts = []
        for episode, q_masks in self._validation:
            inter = union = 0
            for pred, gt in zip(predict(episode), q_masks):
                valid = gt != 255
                p, g = (pred == 1) & valid, (gt == 1) & valid
                inter += int((p & g).sum())
                union += int((p | g).sum())
            counts.append((inter, union))
        return counts
