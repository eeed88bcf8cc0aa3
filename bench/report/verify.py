"""`bench verify`: compare run records with expected numbers (a CSV or JSON file), within a
tolerance, and exit non-zero on a miss, so downstream users can pin a reproduction in their CI.

Expected file columns (CSV header or JSON keys): dataset, preset (name@version), method (a table
row label, e.g. `ours` or `ours [saliency=none]`), mode, way, shot, fold (a number, or `mean` for
the mean over the four folds), miou, and optionally tolerance (absolute, in mIoU points; default
--tolerance). A fold's value is the mean over its runs, as in `bench table`; a `mean` row misses
when a fold has no runs, rather than pass on the folds that happen to be there."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.core.records import load_records
from bench.report.tables import ALL_FOLDS, check_tableable, fold_list, row_label

REQUIRED = ("dataset", "preset", "method", "mode", "way", "shot", "fold", "miou")


def expected_rows(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"expected-numbers file {path} not found; fix: pass a CSV or JSON file with columns {', '.join(REQUIRED)}")
    try:
        rows = json.loads(path.read_text()) if path.suffix == ".json" else list(csv.DictReader(path.open()))
    except (json.JSONDecodeError, csv.Error) as exc:
        raise BenchError(f"cannot read {path} ({exc}); fix: a CSV with a header row or a JSON list of objects") from None
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED if k not in row or row[k] in ("", None)]
        if missing:
            raise BenchError(f"{path} row {i + 1} lacks {', '.join(missing)}; fix: give every row {', '.join(REQUIRED)}")
    return rows


def observed_values(results_dir: Path) -> dict[tuple, dict[int, float]]:
    """(dataset, preset, row label, mode, way, shot) -> {fold: mean mIoU over its runs}."""
    records = load_records(results_dir)
    check_tableable(records)
    runs: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _, r in records:
        runs[(r.dataset, r.preset, row_label(r), r.mode, r.way, r.shot)][r.fold].append(r.miou)
    return {k: {f: float(np.mean(v)) for f, v in folds.items()} for k, folds in runs.items()}


def observed_mean(folds: dict[int, float]) -> float | None:
    """The mean over all four folds' values; None when one is missing."""
    return float(np.mean([folds[f] for f in ALL_FOLDS])) if all(f in folds for f in ALL_FOLDS) else None


def verify_rows(expected: list[dict], observed: dict, tolerance: float) -> list[list]:
    """[setting, fold, expected, observed, |diff|, tolerance, status] per expected row."""
    out = []
    for row in expected:
        key = (row["dataset"], row["preset"], row["method"], row["mode"], int(row["way"]), int(row["shot"]))
        tol = float(row.get("tolerance") or tolerance)
        folds = observed.get(key, {})
        fold = str(row["fold"]).strip()
        got = observed_mean(folds) if fold == "mean" else folds.get(int(fold))
        want = float(row["miou"])
        setting = f"{row['method']} {row['mode']} {row['dataset']} {row['preset']} {row['way']}w{row['shot']}s"
        if got is None:
            absent = f"absent (folds {fold_list(folds)})" if folds else "absent"
            out.append([setting, fold, f"{want:.2f}", absent, "", f"{tol:g}", "MISS"])
            continue
        diff = abs(got - want)
        out.append([setting, fold, f"{want:.2f}", f"{got:.2f}", f"{diff:.2f}", f"{tol:g}", "ok" if diff <= tol else "MISS"])
    return out
