"""Why support-pixel balance moves `ours`: per setting, the share of support pixels labelled
foreground (what the k-NN vote's prior sees), and the query foreground the method predicts against
the query's GT (predicted share, precision, recall, IoU; pooled over the episodes of one run).

    python benchmarks/ours_balance.py [--method ours] [--fold 0] [--seed 1234] \
        [--variant class_pixels=0 --variant class_pixels=50] [--mode full --mode weak]

Loads the fold checkpoints `bench run` saved (fits them if missing); 1-way 1-shot, `wacv22`.
Test episodes of one run are used, as `bench run` would score them: a diagnostic of a finished
setting, never a way to choose one (benchmarks/ours_sampling.py does that on base classes).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.harness.annotations import annotation_source
from bench.core.settings import parse_overrides
from bench.data.datasets import get_dataset
from bench.harness.episodes import build_episode_input, load_or_sample_episodes, query_ground_truth
from bench.harness.views import FitView
from bench.harness.presets import get_preset
from bench.harness.runner import RunRequest, fitted_method
from pseudo_labels.report import BinaryIoU


def balance_row(method_name: str, mode: str, variant: str, fold: int, seed: int, cache_dir: Path) -> list:
    preset = get_preset("wacv22")
    dataset = get_dataset("openmoji5i", cache_dir)
    annotations = annotation_source(mode, dataset, cache_dir)
    req = RunRequest(method=method_name, mode=mode, folds=(fold,), config=parse_overrides([variant]) if variant else {},
                     cache_dir=cache_dir)
    method = fitted_method(req, FitView(dataset, annotations, preset, fold, cache_dir), fold, annotations)
    episodes, _, _ = load_or_sample_episodes(cache_dir, preset, dataset, fold, 1, 1, seed)
    support_fg, known = [], 0
    acc = BinaryIoU(1)  # episode labels: 1 is the foreground
    for spec in episodes:
        episode = build_episode_input(spec, dataset, annotations, preset)
        mask = episode.support_masks[0][0]
        support_fg.append((mask == 1).sum() / max((mask != 255).sum(), 1))
        pred, gt = method.predict(episode)[0], query_ground_truth(spec, dataset, preset)[0]
        acc.update({1: pred == 1}, gt, (1,))
        known += int((gt != 255).sum())
    pct = lambda a, b: round(100 * a / max(b, 1), 1)  # noqa: E731
    return [method_name, mode, variant or "(defaults)", round(100 * float(np.mean(support_fg)), 1),
            pct(acc.pred[1], known), pct(acc.true[1], known), pct(acc.inter[1], acc.pred[1]),
            pct(acc.inter[1], acc.true[1]), pct(acc.inter[1], acc.union[1])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", action="append", default=None, choices=("ours", "ours-noE"))
    ap.add_argument("--mode", action="append", default=None, choices=("full", "weak"))
    ap.add_argument("--variant", action="append", default=None, help="KEY=VALUE[ KEY=VALUE], repeatable")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = ap.parse_args()
    from tabulate import tabulate

    rows = [balance_row(m, mode, v, args.fold, args.seed, args.cache_dir)
            for m in args.method or ["ours"] for mode in args.mode or ["full", "weak"]
            for v in args.variant or ["class_pixels=0", ""]]
    print(tabulate(rows, headers=["method", "mode", "variant", "support mask fg %", "pred fg %", "GT fg %",
                                  "precision", "recall", "fg IoU"]))


if __name__ == "__main__":
    main()
