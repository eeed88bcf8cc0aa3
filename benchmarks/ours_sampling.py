"""`ours` settings chosen on base classes only: fits `ours` / `ours-noE` on one fold's training
classes with each variant (e.g. the per-class pixel count of §3.3) and scores it on 1-way 1-shot
episodes of the *training* images and classes (never a test class or image).

Full mode scores on GT masks of the training images. In weak mode a training image has only
image-level labels, so its episodes are scored on the pseudo masks (all a weak-mode method may
see there): a proxy, reported beside, never the basis of a default.

    python benchmarks/ours_sampling.py --variant class_pixels=0 --variant class_pixels=100 \
        [--method ours --method ours-noE] [--mode full --mode weak] [--fold 0] [--episodes 300]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.harness.annotations import annotation_source
from bench.core.settings import parse_overrides
from bench.data.datasets import get_dataset
from bench.harness.episodes import base_class_iou
from bench.harness.views import FitView
from bench.harness.presets import get_preset
from bench.harness.registry import create_method


def variant_row(method: str, mode: str, variant: str, train: FitView, episodes: int, seed: int) -> list:
    model = create_method(method, parse_overrides([variant]) if variant else {})
    start = time.perf_counter()
    model.fit(train, {})
    fit_s = time.perf_counter() - start
    fg, fb = base_class_iou(model, train, episodes, seed)
    return [method, mode, variant or "(defaults)", round(fit_s), round(fg, 1), round(fb, 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", default=None, help="KEY=VALUE[ KEY=VALUE], repeatable")
    ap.add_argument("--method", action="append", default=None, choices=("ours", "ours-noE"))
    ap.add_argument("--mode", action="append", default=None, choices=("full", "weak"))
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--dataset", default="openmoji5i")
    ap.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = ap.parse_args()
    from tabulate import tabulate

    dataset = get_dataset(args.dataset, args.cache_dir)
    rows = []
    for mode in args.mode or ["full", "weak"]:
        train = FitView(dataset, annotation_source(mode, dataset, args.cache_dir), get_preset("wacv22"), args.fold, args.cache_dir)
        for method in args.method or ["ours"]:
            for variant in args.variant or [""]:
                rows.append(variant_row(method, mode, variant, train, args.episodes, args.seed))
                print(tabulate(rows[-1:], tablefmt="plain"), flush=True)
    print(tabulate(rows, headers=["method", "mode", "variant", "fit s", "base fg IoU", "base FB-IoU"]))


if __name__ == "__main__":
    main()
