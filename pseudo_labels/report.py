"""Pseudo-mask quality against GT: per-class IoU with the saliency gate, without it, and for the
all-foreground baseline (every pixel of an image given to each of its labelled classes), per fold
and overall; a record `bench table` shows; a PNG of examples like the paper's Fig. 3/5.

IoU of class c is binary and summed over images: |P_c & G_c| / |P_c | G_c| with 255 pixels left out,
so the all-foreground baseline is defined on multi-label images too.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from tabulate import tabulate

from bench.data.datasets import IGNORE, image_labels
from bench.core.files import atomic_write_text, environment_versions, git_commit
from bench.core.records import writable_results
from pseudo_labels.config import PseudoConfig
from pseudo_labels.generate import all_image_maps, build_pipeline, gated, generate_pseudo_masks, image_maps, pseudo_mask

VARIANTS = ("gated", "no_gate", "all_foreground")
VARIANT_TITLES = {"gated": "with saliency gate", "no_gate": "without gate", "all_foreground": "all foreground"}
QUALITY_RECORD = "pseudo_quality"


class BinaryIoU:
    """Per class: intersection, union, predicted and GT pixel counts, summed over images."""

    def __init__(self, n_classes: int):
        self.inter, self.union, self.pred, self.true = (np.zeros(n_classes + 1, np.int64) for _ in range(4))

    def update(self, pred_classes: dict[int, np.ndarray], gt: np.ndarray, class_ids) -> None:
        valid = gt != IGNORE
        for c in class_ids:
            p, g = pred_classes[c] & valid, (gt == c)
            self.inter[c] += int((p & g).sum())
            self.union[c] += int((p | g).sum())
            self.pred[c] += int(p.sum())
            self.true[c] += int(g.sum())

    def class_iou(self) -> dict[int, float]:
        return {c: 100.0 * self.inter[c] / self.union[c] for c in range(1, len(self.union)) if self.union[c] > 0}


def variant_predictions(tbar: np.ndarray, saliency, class_ids: list[int], cfg: PseudoConfig) -> dict[str, dict[int, np.ndarray]]:
    masks = {"gated": pseudo_mask(gated(tbar, saliency, cfg), class_ids, cfg.threshold),
             "no_gate": pseudo_mask(tbar, class_ids, cfg.threshold)}
    out = {v: {c: m == c for c in class_ids} for v, m in masks.items()}
    out["all_foreground"] = {c: np.ones(tbar.shape[1:], bool) for c in class_ids}
    return out


def quality(dataset, cfg: PseudoConfig, cache_dir: Path, splits=("train", "val"), log=print, pipe=None) -> dict:
    pipe = pipe or build_pipeline(dataset, cfg, cache_dir, log)
    root = generate_pseudo_masks(dataset, cfg, cache_dir, log, pipe)
    n_classes = len(dataset.class_names)
    acc = {v: BinaryIoU(n_classes) for v in VARIANTS}
    fg = {"inter": 0, "union": 0}
    n = 0
    for m in all_image_maps(pipe, dataset, splits, cache_dir, "scoring pseudo masks"):
        gt = dataset.mask(m.image_id)
        preds = variant_predictions(m.tbar, m.saliency, m.class_ids, cfg)
        for v in VARIANTS:
            acc[v].update(preds[v], gt, m.class_ids)
        if m.saliency is not None:
            valid = gt != IGNORE
            s, g = (m.saliency >= cfg.saliency_threshold) & valid, (gt > 0) & valid
            fg["inter"] += int((s & g).sum())
            fg["union"] += int((s | g).sum())
        n += 1
    class_iou = {v: acc[v].class_iou() for v in VARIANTS}
    folds = {v: [_mean([class_iou[v].get(c) for c in dataset.fold_classes(f)]) for f in range(4)] for v in VARIANTS}
    return {
        "record_type": QUALITY_RECORD, "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
        "fingerprint": root.name.rsplit("-", 1)[1], "masks": str(root), "splits": list(splits), "n_images": n,
        "config": dataclasses.asdict(cfg), "class_names": list(dataset.class_names),
        "class_iou": {v: {str(c): round(x, 3) for c, x in class_iou[v].items()} for v in VARIANTS},
        "fold_miou": {v: [round(x, 3) for x in folds[v]] for v in VARIANTS},
        "miou": {v: round(_mean(list(class_iou[v].values())), 3) for v in VARIANTS},
        "saliency_fg_iou": round(100.0 * fg["inter"] / fg["union"], 3) if fg["union"] else None,
        "versions": environment_versions(), "git_commit": git_commit(),
    }


def _mean(values) -> float:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def write_quality_record(record: dict, results_dir: Path) -> Path:
    path = writable_results(results_dir) / record["dataset"] / "pseudo-labels" / f"{record['fingerprint']}.json"
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def quality_table(record: dict, fmt: str = "github") -> str:
    names = record["class_names"]
    rows = []
    for c in sorted(int(k) for k in record["class_iou"]["all_foreground"]):
        rows.append([names[c - 1], (c - 1) // 5 if len(names) == 20 else ""] +
                    [_cell(record["class_iou"][v].get(str(c))) for v in VARIANTS])
    for f in range(4):
        rows.append([f"fold {f} mean", f] + [_cell(record["fold_miou"][v][f]) for v in VARIANTS])
    rows.append(["mIoU (all classes)", ""] + [_cell(record["miou"][v]) for v in VARIANTS])
    return tabulate(rows, ["class", "fold"] + [VARIANT_TITLES[v] for v in VARIANTS], tablefmt=fmt, disable_numparse=True)


def _cell(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.1f}"


def fold_summary_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """For `bench table`: one row per (record, variant) with fold mIoUs and their mean."""
    header = ["pseudo masks", "variant", "5^0", "5^1", "5^2", "5^3", "mean"]
    rows = []
    for r in records:
        label = f"{r['fingerprint']} (cam={r['config']['cam']}, words={r['config']['words']}, {r['config']['weighting']})"
        for v in VARIANTS:
            folds = r["fold_miou"][v]
            rows.append([label, VARIANT_TITLES[v]] + [_cell(x) for x in folds] + [_cell(_mean(folds))])
    return header, rows


def example_figure(dataset, cfg: PseudoConfig, cache_dir: Path, out: Path, n: int = 6, split: str = "val", pipe=None) -> Path:
    """Rows of (image, GT, pseudo mask, T-bar of the first labelled class, saliency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.data.show import overlay

    pipe = pipe or build_pipeline(dataset, cfg, cache_dir, log=lambda *_: None)
    labels = image_labels(dataset, split, cache_dir)
    ids = [i for i in dataset.ids(split) if labels[i]][:n]
    maps = image_maps(pipe, dataset, ids, labels)
    cols = ["image", "ground truth", "pseudo mask", "T-bar (eq. 3)", "saliency"]
    fig, axes = plt.subplots(len(maps), len(cols), figsize=(2.0 * len(cols), 2.0 * len(maps)), squeeze=False)
    for row, m in zip(axes, maps):
        image = dataset.image(m.image_id)
        mask = pseudo_mask(gated(m.tbar, m.saliency, cfg), m.class_ids, cfg.threshold)
        panels = [image, overlay(image, dataset.mask(m.image_id)), overlay(image, mask), m.tbar[0],
                  m.saliency if m.saliency is not None else np.zeros(image.shape[:2])]
        for k, (ax, panel) in enumerate(zip(row, panels)):
            ax.imshow(panel, cmap="jet" if k >= 3 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(", ".join(dataset.class_names[c - 1] for c in m.class_ids), fontsize=8)
    for ax, title in zip(axes[0], cols):
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def class_mask_quality(dataset, source, labels: dict[str, frozenset[int]]) -> dict[int, dict]:
    """Per class, over the images labelled with it (`labels`: image id -> classes): IoU, precision
    and recall of the source's masks against GT (pixels summed over images, 255 left out), and the
    share of those images whose mask has no pixel of the class: a support like that gives a method
    no foreground at all."""
    acc = BinaryIoU(len(dataset.class_names))
    images, empty = np.zeros_like(acc.inter), np.zeros_like(acc.inter)
    for image_id, classes in labels.items():
        mask = source.mask(image_id)
        acc.update({c: mask == c for c in classes}, dataset.mask(image_id), classes)
        for c in classes:
            images[c] += 1
            empty[c] += not (mask == c).any()
    pct = lambda a, b: 100.0 * a / b if b else 0.0  # noqa: E731
    return {c: {"iou": pct(acc.inter[c], acc.union[c]), "precision": pct(acc.inter[c], acc.pred[c]),
                "recall": pct(acc.inter[c], acc.true[c]), "empty_share": pct(empty[c], images[c]), "images": int(images[c])}
            for c in range(1, len(images)) if images[c]}
