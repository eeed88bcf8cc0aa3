"""`bench table`: split-wise mIoU, mean over folds and Δ = full − weak, read from run records only.

One table per setting (dataset, preset, way, shot). A fold's value is the mean over its runs
(seeds). Records of the same setting, fold and seed must share the episode file (sha256);
otherwise the table refuses, naming both files."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from tabulate import tabulate

from bench.errors import BenchError
from bench.records import RunRecord, load_records

FORMATS = ("markdown", "csv", "latex")


def check_compatible(records: list[tuple[Path, RunRecord]]) -> None:
    seen: dict[tuple, tuple[Path, RunRecord]] = {}
    for path, r in records:
        key = (r.dataset, r.preset, r.fold, r.way, r.shot, r.seed)
        if key in seen:
            other_path, other = seen[key]
            if other.episode_sha256 != r.episode_sha256 or other.dataset_fingerprint != r.dataset_fingerprint:
                raise BenchError(
                    f"incompatible records in one table: {other_path} and {path} evaluate {r.dataset} {r.preset} "
                    f"fold {r.fold} seed {r.seed} on different episodes or data; fix: re-run one of them or "
                    f"table them from separate --results-dir folders"
                )
        else:
            seen[key] = (path, r)


def setting_rows(records: list[RunRecord]) -> tuple[list[str], list[list]]:
    """Header and rows of one setting: method | full f0..f3 mean | weak f0..f3 mean | Δ.
    Weak runs on non-default pseudo masks get their own row ('ours [saliency=none]'), beside
    the same method's full numbers."""
    folds = sorted({r.fold for r in records})
    by_cell: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        by_cell[(_row_label(r), r.mode, r.fold)].append(r.miou)
        if r.mode == "full":
            for variant in {_row_label(o) for o in records if o.method == r.method and o.pseudo}:
                by_cell[(variant, "full", r.fold)].append(r.miou)
    modes = [m for m in ("full", "weak") if any(r.mode == m for r in records)]
    header = ["method"]
    for mode in modes:
        header += [f"{mode} 5^{f}" for f in folds] + [f"{mode} mean"]
    if len(modes) == 2:
        header.append("Δ (full−weak)")
    rows = []
    for label in sorted({_row_label(r) for r in records}):
        row, means = [label], {}
        for mode in modes:
            vals = [np.mean(by_cell[(label, mode, f)]) if by_cell.get((label, mode, f)) else None for f in folds]
            row += [_fmt(v) for v in vals]
            present = [v for v in vals if v is not None]
            means[mode] = float(np.mean(present)) if present and len(present) == len(folds) else None
            row.append(_fmt(means[mode]))
        if len(modes) == 2:
            both = means["full"] is not None and means["weak"] is not None
            row.append(_fmt(means["full"] - means["weak"]) if both else "")
        rows.append(row)
    return header, rows


def _row_label(r: RunRecord) -> str:
    if not r.pseudo:
        return r.method
    return f"{r.method} [{', '.join(f'{k}={v}' for k, v in sorted(r.pseudo.items()))}]"


def _csv(header, rows) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header] + rows)
    return buf.getvalue().rstrip("\n")


def _fmt(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.1f}"


def _titled_table(title: str, header: list[str], rows: list[list], fmt: str) -> str:
    if fmt == "csv":
        return "# " + title + "\n" + _csv(header, rows)
    if fmt == "latex":
        return f"% {title}\n" + tabulate(rows, header, tablefmt="latex_booktabs", disable_numparse=True)
    return f"### {title}\n\n" + tabulate(rows, header, tablefmt="github", disable_numparse=True)


def render_tables(results_dir: Path, fmt: str = "markdown", filters: dict | None = None) -> str:
    if fmt not in FORMATS:
        raise BenchError(f"unknown table format '{fmt}'; use one of {', '.join(FORMATS)}")
    records = load_records(results_dir)
    for key, value in (filters or {}).items():
        if value is not None:
            records = [(p, r) for p, r in records if getattr(r, key) == value]
    quality = _quality_sections(results_dir, fmt, (filters or {}).get("dataset"))
    if not records and not quality:
        raise BenchError(f"no run records under {results_dir} match; fix: run `bench run ...` first")
    check_compatible(records)
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for _, r in records:
        groups[(r.dataset, r.preset, r.way, r.shot)].append(r)
    out = []
    for (dataset, preset, way, shot), recs in sorted(groups.items()):
        header, rows = setting_rows(recs)
        runs = sorted({r.seed for r in recs})
        title = f"{dataset} · {preset} · {way}-way {shot}-shot · mIoU (%) · runs: seeds {', '.join(map(str, runs))}"
        out.append(_titled_table(title, header, rows, fmt))
    return "\n\n".join(out + quality) + "\n"


def _quality_sections(results_dir: Path, fmt: str, dataset: str | None) -> list[str]:
    """Pseudo-mask quality records (`bench pseudo report`): fold-wise mIoU of the masks vs GT."""
    import json

    from pseudo_labels.report import QUALITY_RECORD, fold_summary_rows

    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(Path(results_dir).glob("*/pseudo-labels/*.json")):
        raw = json.loads(path.read_text())
        if raw.get("record_type") == QUALITY_RECORD and dataset in (None, raw["dataset"]):
            by_dataset[raw["dataset"]].append(raw)
    out = []
    for name, recs in sorted(by_dataset.items()):
        header, rows = fold_summary_rows(recs)
        title = f"{name} · pseudo-mask quality · mIoU (%) against GT, train + test images"
        out.append(_titled_table(title, header, rows, fmt))
    return out
