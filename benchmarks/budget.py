"""Time budget per method and mode, from the run records of one results folder: training per fold
(the larger of the fold's `fit_s`, what the run's process spent: one-time preparations such as
pretraining a trunk or the feature cache count here when they ran in that fold, and `fit_loop_s`, the
whole training loop from the checkpoint's sidecar, which a resumed fit or a re-evaluation from a saved
checkpoint still carries), evaluation per fold (all runs), and the total for all 4 folds against the
baselines issue's budget (training + `wacv22` evaluation <= 30 min on 2 cores). Records older than
`fit_loop_s` re-evaluated from a checkpoint hold a load time: run with --retrain first.

    python benchmarks/budget.py [--results-dir results] [--budget-min 30]
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from bench.core.records import load_records, mode_label


def budget_rows(results_dir: Path, budget_s: float) -> list[list]:
    cells: dict[tuple, dict[int, dict]] = defaultdict(lambda: defaultdict(lambda: {"fit": 0.0, "eval": 0.0}))
    for _, r in load_records(results_dir):
        fold = cells[(r.method, mode_label(r.mode, r.pseudo), r.dataset, r.preset, r.way, r.shot)][r.fold]
        fit = max(r.timings.get("fit_s", 0.0), r.timings.get("fit_loop_s") or 0.0)
        fold["fit"] = max(fold["fit"], fit)  # the same fit is copied into every run's record
        fold["eval"] += r.timings.get("eval_s", 0.0)
    rows = []
    for (method, mode, dataset, preset, way, shot), folds in sorted(cells.items()):
        fit, ev = sum(f["fit"] for f in folds.values()), sum(f["eval"] for f in folds.values())
        total = (fit + ev) * 4 / len(folds)  # extrapolated to 4 folds when fewer ran
        rows.append([method, mode, f"{dataset} {preset} {way}w{shot}s", len(folds), round(fit / len(folds)),
                     round(ev / len(folds)), round(total / 60, 1), f"{total / budget_s:.2f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--budget-min", type=float, default=30.0)
    args = ap.parse_args()
    from tabulate import tabulate

    rows = budget_rows(args.results_dir, args.budget_min * 60)
    print(tabulate(rows, headers=["method", "mode", "cell", "folds", "train s/fold", "eval s/fold",
                                  "4 folds min", f"/ {args.budget_min:g} min"]))


if __name__ == "__main__":
    main()
