"""What weak mode builds before its first fit, as plan entries (bench/core/plans.py): the pool CAM
classifier and saliency net (unless the user gives theirs) and one pseudo mask per train and test
image. Nothing here trains or generates."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.core.plans import Need, state_bytes, training_unit
from bench.data.datasets import find_pool
from pseudo_labels.config import PseudoConfig
from pseudo_labels.generate import SPLITS
from pseudo_labels.train import CROP_SIZE, TRAIN_SIZES

PROBE_BATCH = 8
SIDE_FILES = 4096  # the .json meta and .classes.txt beside a pool net


def pseudo_needs(dataset, overrides: dict | None, cache_dir: Path) -> list[Need]:
    """The pool nets a pseudo-mask setting (--pseudo-set values) trains and the masks it writes, each sized."""
    from pseudo_labels.config import pseudo_config

    cfg = pseudo_config(overrides)
    needs = []
    pool = find_pool(dataset)
    if cfg.cam == "pool" and pool is not None:
        needs.append(_cam_need(pool, cfg, cache_dir))
    if cfg.saliency == "pool" and pool is not None:
        needs.append(_saliency_need(pool, cfg, cache_dir))
    needs.append(_masks_need(dataset, cfg, overrides, cache_dir))
    return needs


def _cam_need(pool, cfg: PseudoConfig, cache_dir: Path) -> Need:
    from pseudo_labels.nets import CamNet
    from pseudo_labels.train import model_path

    net = lambda: CamNet(len(pool.class_names), cfg.cam_width)  # noqa: E731
    n_train, n_objects = pool_counts(pool)
    size = TRAIN_SIZES[len(TRAIN_SIZES) // 2]
    # stage 1 sees every object crop (64 px) per epoch, stage 2 every whole image (97-129 px)
    images = cfg.cam_crop_epochs * n_objects * (CROP_SIZE / size) ** 2 + cfg.cam_epochs * n_train
    return Need(f"CAM classifier (width {cfg.cam_width}) trained on {pool.name}", model_path(cache_dir, "cam", pool, cfg),
                _net_bytes(net()), training_unit(net, PROBE_BATCH, size), images / PROBE_BATCH)


def _saliency_need(pool, cfg: PseudoConfig, cache_dir: Path) -> Need:
    from pseudo_labels.nets import SaliencyNet
    from pseudo_labels.train import model_path

    net = lambda: SaliencyNet(cfg.saliency_width)  # noqa: E731
    n_train, _ = pool_counts(pool)
    size = TRAIN_SIZES[len(TRAIN_SIZES) // 2]
    return Need(f"saliency net (width {cfg.saliency_width}) trained on {pool.name}", model_path(cache_dir, "saliency", pool, cfg),
                _net_bytes(net()), training_unit(net, PROBE_BATCH, size), cfg.saliency_epochs * n_train / PROBE_BATCH)


def _net_bytes(net) -> int:
    return state_bytes({"state_dict": net.state_dict(), "meta": {}}) + SIDE_FILES


def pool_counts(pool) -> tuple[int, int]:
    """Training images of the pool and their labelled objects (one crop each in CAM stage 1)."""
    ids = pool.ids("train")
    labels = json.loads((Path(pool.root) / "image_labels.json").read_text())
    return len(ids), sum(len(labels.get(i, ())) for i in ids)


def _masks_need(dataset, cfg: PseudoConfig, overrides: dict | None, cache_dir: Path) -> Need:
    """One palette PNG per train and test image, sized from the dataset's own GT masks encoded
    the same way (a pseudo mask holds the same labels on the same grid). Reused when a finished
    folder of this setting and dataset content exists (its fingerprint also names the nets'
    weights, unknown before they are trained, so the folder is found by its manifest)."""
    from pseudo_labels.source import cached_pseudo_masks

    ids = [i for split in SPLITS for i in dataset.ids(split)]
    done = cached_pseudo_masks(dataset, cache_dir, overrides)
    if done is not None:
        return Need(f"pseudo masks of {len(ids)} images", done.root, 0, exists=True, kind="pseudo masks")
    what = f"pseudo masks of {len(ids)} images ({cfg.cam} CAM, saliency {cfg.saliency})"
    return Need(what, Path(cache_dir) / "pseudo" / "masks" / f"{dataset.name}-<fingerprint>",
                int(len(ids) * mean_mask_png_bytes(dataset, ids)) + SIDE_FILES, None, 0, exists=False,
                note="time: part of the pool nets' forward passes, not probed", kind="pseudo masks")


def mean_mask_png_bytes(dataset, ids: list[str], sample: int = 24) -> float:
    from bench.data.palette import palette_png_bytes

    picks = [ids[k] for k in np.linspace(0, len(ids) - 1, min(sample, len(ids))).astype(int)]
    return float(np.mean([len(palette_png_bytes(dataset.mask(i))) for i in picks]))
