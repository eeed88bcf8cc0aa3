"""PFENet training schedule, chosen on base classes only: trains PFENet on one fold's training
classes with each given schedule and scores it on 1-way 1-shot episodes drawn from the *training*
images and classes (never a test class or image), at the argmax the benchmark uses. Prints, per
schedule, the training time per step, foreground IoU and FB-IoU, so the default steps/lr can be
picked against the time budget (benchmarks/budget.py) without looking at test numbers.

    python benchmarks/pfenet_schedule.py --schedule 3000:0.025 --schedule 4000:0.025 [--fold 0]
        [--episodes 150] [--cache-dir cache] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.harness.annotations import annotation_source
from bench.data.datasets import get_dataset
from bench.harness.episodes import base_class_iou
from bench.harness.views import FitView
from bench.harness.presets import get_preset
from bench.core.settings import parse_overrides
from methods.pfenet import Pfenet


def schedule_row(steps: int, lr: float, extra: dict, train: FitView, args) -> list:
    model = Pfenet(steps=steps, lr=lr, **extra)
    start = time.perf_counter()
    model.fit(train, {})
    fit_s = time.perf_counter() - start
    fg, fb = base_class_iou(model, train, args.episodes, args.seed)
    return [steps, lr, round(fit_s), round(fit_s / steps, 3), round(fg, 1), round(fb, 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schedule", action="append", required=True, help="STEPS:LR, repeatable")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=150)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--cache-dir", type=Path, default=Path("cache"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another PfenetConfig value")
    args = ap.parse_args()
    from tabulate import tabulate

    dataset = get_dataset("openmoji5i", args.cache_dir)
    train = FitView(dataset, annotation_source("full", dataset, args.cache_dir), get_preset("wacv22"),
                        args.fold, args.cache_dir)
    extra = parse_overrides(args.set)
    rows = []
    for item in args.schedule:
        steps, lr = item.split(":")
        rows.append(schedule_row(int(steps), float(lr), extra, train, args))
        print(tabulate(rows[-1:], tablefmt="plain"), flush=True)
    print(tabulate(rows, headers=["steps", "lr", "fit s", "s/step", "fg IoU", "FB-IoU"]))


if __name__ == "__main__":
    main()
