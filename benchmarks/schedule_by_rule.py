"""A method's embedded schedule chosen by the one convergence rule (bench/core/curves.py), on one
fold's base classes only: fits the method (full mode by default) with the first schedule length,
reads its curve (validation = fixed 1-way 1-shot episodes of the fold's *training* images and
classes, never a test class or image, never an evaluation), and doubles the length until the rule
holds or the cap is reached. Prints each fit's length, time, final validation score, gain over the
last quarter and verdict, and writes every curve to a JSON file for `bench`-style plotting.

    python benchmarks/schedule_by_rule.py --method pfenet --start 4000 --cap 64000 [--fold 0]
        [--mode full] [--cache-dir cache] [--set key=value ...] [--out cache/schedules/pfenet.json]

The length setting is each method's own: iterations (panet), steps (amp, pfenet), episodes (ours).
The cap is the method's documented one (README, the method's section; PFENet: 64,000 steps, a fit
of ~37 min on 2 cores). When the rule does not hold by the cap, the cap is the default.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import bench  # noqa: F401 - the CPU pins first (bench/core/pinning.py)
from bench.core.pinning import fixed_threads
from bench.core.settings import parse_overrides

LENGTH = {"panet": "iterations", "amp": "steps", "pfenet": "steps", "ours": "episodes"}


def fit_curve(method: str, length: int, train, extra: dict) -> tuple[dict, float]:
    from bench.harness.registry import create_method

    model = create_method(method, {**extra, LENGTH[method]: length})
    start = time.perf_counter()
    with fixed_threads():
        model.fit(train, {})
    return train.fit_curve(), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", required=True, choices=sorted(LENGTH))
    ap.add_argument("--start", type=int, required=True)
    ap.add_argument("--cap", type=int, required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--mode", default="full", choices=("full", "weak"))
    ap.add_argument("--dataset", default="openmoji5i")
    ap.add_argument("--cache-dir", type=Path, default=Path("cache"))
    ap.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from tabulate import tabulate

    from bench.core.files import atomic_write_text
    from bench.data.datasets import get_dataset
    from bench.harness.annotations import annotation_source
    from bench.harness.presets import get_preset
    from bench.harness.views import FitView

    dataset = get_dataset(args.dataset, args.cache_dir)
    annotations = annotation_source(args.mode, dataset, args.cache_dir)
    extra, rows, curves = parse_overrides(args.set), [], {}
    length = args.start
    while True:
        train = FitView(dataset, annotations, get_preset("wacv22"), args.fold, args.cache_dir)
        curve, seconds = fit_curve(args.method, length, train, extra)
        verdict = curve["verdict"]
        curves[length] = curve
        rows.append([length, round(seconds), curve["validation"][-1][1] if curve["validation"] else None,
                     verdict.get("gain"), verdict.get("converged")])
        print(tabulate(rows[-1:], tablefmt="plain"), flush=True)
        print(f"  validation: {' / '.join(f'{v:.1f}' for _, v in curve['validation'])}; {verdict.get('why')}", flush=True)
        if verdict.get("converged") or length * 2 > args.cap:
            break
        length *= 2
    print(tabulate(rows, headers=[LENGTH[args.method], "fit s", "val fg IoU", "gain last quarter", "converged"]))
    chosen = next((r[0] for r in rows if r[4]), None)
    print(f"{args.method}: " + (f"the rule holds at {LENGTH[args.method]}={chosen}" if chosen else
                                f"not converged by the cap {args.cap}: keep the cap and mark its rows"))
    if args.out:
        atomic_write_text(args.out, json.dumps({"method": args.method, "fold": args.fold, "mode": args.mode,
                                                "settings": extra, "curves": curves, "chosen": chosen}, indent=1))


if __name__ == "__main__":
    main()
