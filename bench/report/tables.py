"""`bench table`: split-wise mIoU, mean over folds and Δ = full − weak, read from run records only.

Layouts:
- `settings` (default): one table per (dataset, preset, way, shot), every method and variant;
- `table2a` / `table2b`: the paper's Table 2 layouts, PASCAL-like (pascal5i, openmoji5i) and
  COCO-like (coco20i, openmoji20i) datasets, one block per (way, shot), each shot followed by every
  published cell of the paper's table for that shot (bench/data/paper_numbers.json, cited);
- `table3`: the ablations (`ours`, `ours-noE`, their variants) × mode × {1,2}-way × {1,5}-shot.

A fold's value is the mean over its runs (seeds) ± their standard deviation; the mean column is
the mean over folds per seed, then mean ± std over seeds (only when every fold has the same seeds;
in the paper's layouts, only over all four folds: a mean of the folds that happen to be there would
sit beside the paper's four-fold means as if it were one of them); Δ is paired by seed (the same
seed evaluates the same episodes in both modes). Records of the same setting, fold and seed must
share the episode file (sha256), and one layout table takes one preset: otherwise the table
refuses, naming both files."""
from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
from tabulate import tabulate

from bench.core.errors import BenchError
from bench.core.curves import MIN_GAIN, NOISE_SE, RULE
from bench.core.optim import recipe_label, recipes_of
from bench.core.records import RunRecord, load_records, record_files
from bench.data.classes import N_FOLDS
from bench.harness.annotations import MODES, supervision_legend
from bench.harness.metrics import Conventions, scores

FORMATS = ("markdown", "csv", "latex")
LAYOUTS = ("settings", "table2a", "table2b", "table3")
# the published benchmark a dataset stands in for: its paper numbers go beside it
BENCHMARK_OF = {"pascal5i": "pascal5i", "openmoji5i": "pascal5i", "openmoji5i-mini": "pascal5i",
                "coco20i": "coco20i", "openmoji20i": "coco20i", "openmoji20i-mini": "coco20i"}
LAYOUT_BENCHMARK = {"table2a": "pascal5i", "table2b": "coco20i"}
ABLATION_METHODS = ("ours", "ours-noE")


def first_conflict(records: list[tuple[Path, RunRecord]], key, agree) -> tuple | None:
    """The first (path, record, other_path, other) where two records of one key(r) do not
    agree(a, b); None when all agree. The shape every refusal below shares."""
    first: dict = {}
    for path, r in records:
        other_path, other = first.setdefault(key(r), (path, r))
        if not agree(other, r):
            return path, r, other_path, other
    return None


def check_compatible(records: list[tuple[Path, RunRecord]]) -> None:
    hit = first_conflict(records, lambda r: (r.dataset, r.preset, r.fold, r.way, r.shot, r.seed),
                         lambda a, b: (a.episode_sha256, a.dataset_fingerprint) == (b.episode_sha256, b.dataset_fingerprint))
    if hit:
        path, r, other_path, _ = hit
        raise BenchError(
            f"incompatible records in one table: {other_path} and {path} evaluate {r.dataset} {r.preset} "
            f"fold {r.fold} seed {r.seed} on different episodes or data; fix: re-run one of them or "
            f"table them from separate --results-dir folders"
        )


def check_tableable(records: list[tuple[Path, RunRecord]]) -> None:
    """The checks every consumer of a set of records runs (tables, figures, verify)."""
    check_compatible(records)
    check_same_settings(records)
    check_one_recipe(records)


def check_one_recipe(records: list[tuple[Path, RunRecord]]) -> None:
    """Numbers of one dataset side by side come from fits of one recipe (optimizer, pool backbone,
    trunk: bench/core/optim.py recipes_of): a fit of another recipe is another draw of the same
    method, as another seed would be, so a table mixing them would compare draws, not methods. A
    record that names no pinned fit (made before records had one) is left out of the check."""
    def recipes(r: RunRecord) -> dict | None:
        return recipes_of(r.recipes, r.pinning)

    recorded = [(p, r) for p, r in records if recipes(r)]
    hit = first_conflict(recorded, lambda r: r.dataset, lambda a, b: recipes(a) == recipes(b))
    if hit:
        path, r, other_path, other = hit
        raise BenchError(
            f"{other_path} ({recipe_label(recipes(other))}) and {path} ({recipe_label(recipes(r))}) are "
            f"{r.dataset} records of fits of two recipes; fix: re-run the older cells "
            f"(`bench sweep` re-runs them) or table the two recipes from separate --results-dir folders")


def check_same_settings(records: list[tuple[Path, RunRecord]]) -> None:
    """One row = one network: refuse records of one row label that ran with different resolved
    settings (e.g. left over from before a method's default changed)."""
    hit = first_conflict(records, row_label, lambda a, b: a.method_config == b.method_config)
    if hit:
        path, r, other_path, other = hit
        keys = sorted(k for k in set(other.method_config) | set(r.method_config)
                      if other.method_config.get(k) != r.method_config.get(k))
        diff = ", ".join(f"{k}: {other.method_config.get(k)} vs {r.method_config.get(k)}" for k in keys[:4])
        raise BenchError(
            f"{other_path} and {path} are both row '{row_label(r)}' but ran with different settings ({diff}); "
            f"fix: re-run the stale cells (`bench sweep` re-runs them) or move the old records to another folder")


def check_one_per_column(records: list[tuple[Path, RunRecord]], layout: str, field: str) -> None:
    """A layout's column holds one protocol and one training schedule: refuse two values of the
    record field `field` ("preset" or "profile", bench/core/profiles.py) for one dataset."""
    hit = first_conflict(records, lambda r: r.dataset, lambda a, b: getattr(a, field) == getattr(b, field))
    if hit:
        path, r, other_path, other = hit
        mine, theirs = getattr(r, field), getattr(other, field)
        raise BenchError(
            f"--layout {layout} would put {r.dataset} records of two {field}s in one column: {other_path} "
            f"({theirs}) and {path} ({mine}); fix: pass --{field} {theirs} or --{field} {mine}")


def row_label(r: RunRecord, with_pseudo: bool = True) -> str:
    """'ours', 'ours [k=5]' (a --set variant), 'ours [saliency=none]' (weak on other pseudo masks);
    with_pseudo=False: the row whose full-mode numbers such a weak run is compared with."""
    settings = sorted(r.config.items()) + (sorted(r.pseudo.items()) if with_pseudo else [])
    label = f"{r.method} [{', '.join(f'{k}={v}' for k, v in settings)}]" if settings else r.method
    return label + (" ‡" if r.leaks else "")  # a network saw benchmark classes (--allow-leak): never averaged with clean runs


def runs_by_cell(records: list[RunRecord]) -> dict[tuple, dict[int, float]]:
    """(row label, mode, fold) -> {seed: mIoU}. A pseudo-mask variant row also gets the full-mode
    runs of its base row, so its Δ is against the same network trained on GT."""
    return _by_cell(records, lambda r: r.miou)


def marks_by_cell(records: list[RunRecord]) -> dict[tuple, str]:
    """(row label, mode, fold) -> the fit marks of its runs ("↑" not converged, "≈" converged only
    within the validation's noise, "?" no curve)."""
    return {cell: "".join(sorted(set(v.values()))) for cell, v in _by_cell(records, fit_mark).items()}


def _by_cell(records: list[RunRecord], value) -> dict[tuple, dict[int, object]]:
    cells: dict[tuple, dict[int, object]] = defaultdict(dict)
    variants = defaultdict(set)
    for r in records:
        if r.pseudo:
            variants[row_label(r, with_pseudo=False)].add(row_label(r))
    for r in records:
        cells[(row_label(r), r.mode, r.fold)][r.seed] = value(r)
        if r.mode == "full":
            for label in variants[row_label(r)]:
                cells[(label, "full", r.fold)][r.seed] = value(r)
    return cells


def fit_mark(r: RunRecord) -> str:
    """The one convergence rule's verdict on the record's fit (bench/core/curves.py) as a mark:
    "↑" did not converge, "≈" met the rule only within the validation's noise (a gain of MIN_GAIN or
    more that its SE cannot tell from none), "?" no curve (a record or checkpoint from before
    curves), "" otherwise."""
    verdict = (r.fit or {}).get("verdict", {})
    if verdict.get("converged") is False:
        return "↑"
    if verdict.get("within_noise"):
        return "≈"
    if not r.fit or (verdict.get("converged") is None and verdict.get("why") != "no training"):
        return "?"
    return ""


def fit_legend(recs: list[RunRecord]) -> str:
    marks = {fit_mark(r) for r in recs}
    parts = []
    if "↑" in marks:
        parts.append(f"↑ = a fit of the cell did not converge ({RULE})")
    if "≈" in marks:
        parts.append(f"≈ = a fit of the cell met the rule only within the validation's noise: it gained {MIN_GAIN:g} point "
                     f"or more over the last quarter, less than {NOISE_SE:g} bootstrap SE (a plateau or a slow rise; "
                     "`bench figure curves` shows it)")
    if "?" in marks:
        parts.append("? = a fit of the cell has no curve (fitted before curves were recorded; --retrain gives one)")
    return "; ".join(parts)


def folds_mark(marks: dict, label: str, mode: str, folds: list[int]) -> str:
    """The marks of a mean over folds: every mark one of its folds carries."""
    return "".join(sorted(set("".join(marks.get((label, mode, f), "") for f in folds))))


def _marked(text: str, mark: str) -> str:
    return f"{text} {mark}" if text and mark else text


ALL_FOLDS = list(range(N_FOLDS))  # a mean in the paper's layouts averages these or stays empty


def fold_list(folds) -> str:
    """'0, 1 of 4': which of the benchmark's folds a number covers, as every report names them."""
    return f"{', '.join(map(str, sorted(folds)))} of {N_FOLDS}"


def fold_mean_per_seed(cells: dict, label: str, mode: str, folds: list[int]) -> dict[int, float] | None:
    """{seed: mean over folds} when every fold has runs of the same seeds, else None."""
    runs = [cells.get((label, mode, f)) for f in folds]
    if not all(runs):
        return None
    seeds = set(runs[0])
    if any(set(r) != seeds for r in runs):
        return None
    return {s: float(np.mean([r[s] for r in runs])) for s in seeds}


def fmt(v: tuple | None) -> str:
    """A `stat`: '20.0', '20.0 ± 0.3' over more than one run, '' for missing."""
    if v is None:
        return ""
    mean, std, n = v
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def stat(values: dict | None) -> tuple[float, float, int] | None:
    """(mean, std, n) of {seed: value}; None when there is none."""
    if not values:
        return None
    v = list(values.values())
    return float(np.mean(v)), float(np.std(v)), len(v)


def split_header(dataset: str, fold: int) -> str:
    return f"{'20' if BENCHMARK_OF.get(dataset) == 'coco20i' else '5'}^{fold}"


def setting_rows(records: list[RunRecord], mean_folds: list[int] | None = None) -> tuple[list[str], list[list]]:
    """Header and rows of one setting: method | full f0..f3 mean | weak f0..f3 mean | Δ. The mean
    is over `mean_folds` (default: the folds of the records, those the header shows)."""
    folds = sorted({r.fold for r in records})
    mean_folds = mean_folds or folds
    dataset = records[0].dataset
    cells, marks = runs_by_cell(records), marks_by_cell(records)
    modes = [m for m in MODES if any(r.mode == m for r in records)]
    deltas = [m for m in modes if m != "full" and "full" in modes]  # Δ = full − each other mode
    header = ["method"]
    for mode in modes:
        header += [f"{mode} {split_header(dataset, f)}" for f in folds] + [f"{mode} mean"]
    header += [f"Δ (full−{m})" for m in deltas]
    rows = []
    for label in sorted({row_label(r) for r in records}):
        row, per_seed = [label], {}
        for mode in modes:
            row += [_marked(fmt(stat(cells.get((label, mode, f)))), marks.get((label, mode, f), "")) for f in folds]
            per_seed[mode] = fold_mean_per_seed(cells, label, mode, mean_folds)
            row.append(_marked(fmt(stat(per_seed[mode])), folds_mark(marks, label, mode, mean_folds)))
        row += [fmt(stat(paired_delta(per_seed["full"], per_seed[m]))) for m in deltas]
        rows.append(row)
    return header, rows


def setting_frame(records: list[RunRecord]):
    """The numbers of every setting's table, long: one row per (dataset, preset, way, shot, row
    label, mode, split) with the mean over runs, its std and the run count; mode 'Δ' is the paired
    full − weak of the fold means."""
    import pandas as pd

    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.preset, r.way, r.shot)].append(r)
    rows = []
    for (dataset, preset, way, shot), recs in sorted(groups.items()):
        folds, cells = sorted({r.fold for r in recs}), runs_by_cell(recs)
        for label in sorted({row_label(r) for r in recs}):
            per_seed = {}
            for mode in MODES:
                for f in folds:
                    rows.append((dataset, preset, way, shot, label, mode, str(f), stat(cells.get((label, mode, f)))))
                per_seed[mode] = fold_mean_per_seed(cells, label, mode, folds)
                rows.append((dataset, preset, way, shot, label, mode, "mean", stat(per_seed[mode])))
            for m in MODES[1:]:  # "Δ" = full − weak, "Δ weak-test" = full − weak-test
                rows.append((dataset, preset, way, shot, label, "Δ" + ("" if m == "weak" else f" {m}"), "mean",
                             stat(paired_delta(per_seed["full"], per_seed[m]))))
    columns = ["dataset", "preset", "way", "shot", "method", "mode", "split", "miou", "std", "runs"]
    return pd.DataFrame([(*row[:-1], *row[-1]) for row in rows if row[-1] is not None], columns=columns)


def paired_delta(full: dict | None, weak: dict | None) -> dict | None:
    if not full or not weak:
        return None
    common = sorted(set(full) & set(weak))
    return {s: full[s] - weak[s] for s in common} or None


def _csv(header, rows) -> str:
    import csv
    import io

    buf = io.StringIO()
    plain = [[re.sub(r" [?↑≈]+$", "", c) if isinstance(c, str) else c for c in row] for row in rows]  # marks: legend only
    csv.writer(buf, lineterminator="\n").writerows([header] + plain)
    return buf.getvalue().rstrip("\n")


def titled_table(title: str, header: list[str], rows: list[list], fmt_name: str, legend: str = "") -> str:
    """A table with its title, and `legend` (the scoring conventions) as a line under it."""
    if fmt_name == "csv":
        return "# " + title + "\n" + _csv(header, rows) + (f"\n# scoring: {legend}" if legend else "")
    if fmt_name == "latex":
        return (f"% {title}\n" + tabulate(rows, header, tablefmt="latex_booktabs", disable_numparse=True)
                + (f"\n% scoring: {legend}" if legend else ""))
    return (f"### {title}\n\n" + tabulate(rows, header, tablefmt="github", disable_numparse=True)
            + (f"\n\nscoring: {legend}" if legend else ""))


def record_conventions(r: RunRecord, overrides: dict | None = None) -> Conventions:
    """The scoring conventions of a record's preset (v1 presets had none: every way scored, merged
    FB-IoU), with a table's overrides (--absent-ways, --fbiou, --iou) applied."""
    preset = r.preset_config or {}
    conv = Conventions(preset.get("absent_ways", "score"), preset.get("fbiou", "merged"))
    return replace(conv, **{k: v for k, v in (overrides or {}).items() if v is not None})


def rescored(records: list[tuple[Path, RunRecord]], overrides: dict | None) -> list[tuple[Path, RunRecord]]:
    """Records with miou, fbiou and class_iou recomputed from their sums under the overridden
    conventions; one clear error for a record that lacks the sums a convention needs."""
    if not any((overrides or {}).values()):
        return records
    out = []
    for path, r in records:
        conv = record_conventions(r, overrides)
        if (conv.absent_ways == "skip" and not r.inter_skip) or (conv.iou == "per-episode" and not r.episode_iou):
            raise BenchError(f"record {path} has no sums for '{conv.legend()}' (written before they were kept); "
                             f"fix: re-run that cell, or table it without --absent-ways/--iou")
        sums = {"inter": r.inter, "union": r.union, "inter_skip": r.inter_skip, "union_skip": r.union_skip,
                "fb_inter": r.fb_inter, "fb_union": r.fb_union, "episode_iou": r.episode_iou}
        new = scores(sums, r.class_ids, conv)
        out.append((path, replace(r, miou=new["miou"], fbiou=new["fbiou"], class_iou=new["class_iou"])))
    return out


def scoring_legend(recs: list[RunRecord], overrides: dict | None) -> str:
    """The line under a table: its scoring conventions and what each of its modes gave."""
    legend = f"{record_conventions(recs[0], overrides).legend()}; supervision: {supervision_legend({r.mode for r in recs})}"
    leaks = sorted({f"{role}: {', '.join(found[:3])}{' ...' if len(found) > 3 else ''}"
                    for r in recs for role, found in r.leaks.items()})
    legend += (f"; ‡ = run with --allow-leak, a pretrained network saw benchmark classes ({'; '.join(leaks)})"
               if leaks else "")
    fits = fit_legend(recs)
    return legend + (f"; {fits}" if fits else "")


def folds_legend(recs: list[RunRecord]) -> str:
    """Why a mean cell of a paper's layout is empty, when a row of the table lacks runs of a fold."""
    present = defaultdict(set)
    for r in recs:
        present[(row_label(r), r.mode, r.way, r.shot)].add(r.fold)
    if all(len(folds) == N_FOLDS for folds in present.values()):
        return ""
    return f"; a mean is over all {N_FOLDS} folds: empty where the row lacks runs of one"


def selected_records(results_dir: Path, filters: dict | None) -> list[tuple[Path, RunRecord]]:
    """The records whose field equals each filter's value (one of its values, for a set); None: any."""
    records = load_records(results_dir)
    for key, value in (filters or {}).items():
        if isinstance(value, (set, frozenset)):
            records = [(p, r) for p, r in records if getattr(r, key) in value]
        elif value is not None:
            records = [(p, r) for p, r in records if getattr(r, key) == value]
    return records


def render_tables(results_dir: Path, fmt_name: str = "markdown", filters: dict | None = None, layout: str = "settings",
                  scoring: dict | None = None) -> str:
    """Every table of the records under `results_dir` matching `filters`; `scoring` overrides the
    records' conventions ({"absent_ways": "skip", "fbiou": "per_class", "iou": "per-episode"})."""
    if fmt_name not in FORMATS:
        raise BenchError(f"unknown table format '{fmt_name}'; use one of {', '.join(FORMATS)}")
    if layout not in LAYOUTS:
        raise BenchError(f"unknown table layout '{layout}'; use one of {', '.join(LAYOUTS)}")
    records = rescored(selected_records(results_dir, filters), scoring)
    if layout != "settings":
        return layout_tables(records, layout, fmt_name, results_dir, (filters or {}).get("shot"), scoring)
    quality = _quality_sections(results_dir, fmt_name, (filters or {}).get("dataset"))
    if not records and not quality:
        raise BenchError(f"no run records under {results_dir} match; fix: run `bench run ...` first")
    check_tableable(records)
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for _, r in records:
        groups[(r.dataset, r.preset, r.profile, r.way, r.shot)].append(r)  # never two profiles in one table
    out = []
    for (dataset, preset, profile, way, shot), recs in sorted(groups.items()):
        header, rows = setting_rows(recs)
        title = f"{dataset} · {preset} · profile {profile} · {setting_header(way, shot)} · mIoU (%) · {_runs_note(recs)}"
        out.append(titled_table(title, header, rows, fmt_name, scoring_legend(recs, scoring)))
    return "\n\n".join(out + quality) + "\n"


def _runs_note(recs: list[RunRecord]) -> str:
    seeds = sorted({r.seed for r in recs})
    note = f"runs: seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    return note + " (± std over runs)" if len(seeds) > 1 else note


def _runs_note_by_setting(recs: list[RunRecord]) -> str:
    """One runs note, or one per (way, shot) column when the columns ran different seeds."""
    settings = sorted({(r.way, r.shot) for r in recs})
    notes = {ws: _runs_note([r for r in recs if (r.way, r.shot) == ws]) for ws in settings}
    if len(set(notes.values())) == 1:
        return next(iter(notes.values()))
    return "; ".join(f"{setting_header(w, s)} {note}" for (w, s), note in notes.items())


def layout_tables(records: list[tuple[Path, RunRecord]], layout: str, fmt_name: str, results_dir: Path,
                  shot: int | None = None, scoring: dict | None = None) -> str:
    """The paper's layout of the records, each shot followed by every published cell of it (only
    `shot`'s block when the table was asked for one shot)."""
    if layout == "table3":
        records = [(p, r) for p, r in records if r.method in ABLATION_METHODS]
    else:
        records = [(p, r) for p, r in records if BENCHMARK_OF.get(r.dataset) == LAYOUT_BENCHMARK[layout]]
    if not records:
        wanted = "ours/ours-noE records" if layout == "table3" else f"records of a {LAYOUT_BENCHMARK[layout]}-like dataset"
        raise BenchError(f"--layout {layout} needs {wanted} under {results_dir}; fix: run `bench sweep` or `bench run` for them")
    check_tableable(records)
    check_one_per_column(records, layout, "preset")
    check_one_per_column(records, layout, "profile")
    paper = paper_numbers()
    out = []
    by_dataset: dict[str, list[RunRecord]] = defaultdict(list)
    for _, r in records:
        by_dataset[r.dataset].append(r)
    for dataset, recs in sorted(by_dataset.items()):
        if layout == "table3":
            header, rows = ablation_rows(recs)
            out.append(titled_table(f"Table 3 layout · {dataset} · {recs[0].preset} · profile {recs[0].profile} · mean mIoU (%) over folds · "
                                    f"{_runs_note_by_setting(recs)}", header, rows, fmt_name,
                                    scoring_legend(recs, scoring) + folds_legend(recs)))
            out.append(published_table3(paper, fmt_name))
            continue
        shots = [shot] if shot else sorted({r.shot for r in recs} | {e["shot"] for e in paper["numbers"] if e["table"] == layout})
        for k in shots:
            for way in sorted({r.way for r in recs if r.shot == k}):
                block = [r for r in recs if (r.way, r.shot) == (way, k)]
                header, rows = setting_rows(block, ALL_FOLDS)
                out.append(titled_table(f"Table {layout[-2:]} layout · {dataset} · {block[0].preset} · profile {block[0].profile} · {setting_header(way, k)} · "
                                        f"mIoU (%) · {_runs_note(block)}", header, rows, fmt_name,
                                        scoring_legend(block, scoring) + folds_legend(block)))
            out.append(published_table2(paper, layout, k, fmt_name))
    return "\n\n".join(b for b in out if b) + "\n"


def setting_header(way: int, shot: int) -> str:
    return f"{way}-way {shot}-shot"


def ablation_rows(records: list[RunRecord]) -> tuple[list[str], list[list]]:
    """label | mode | one column per (way, shot): mean over folds ± std over runs."""
    settings = sorted({(r.way, r.shot) for r in records})
    header = ["method", "mode"] + [setting_header(w, s) for w, s in settings]
    pseudo_variants = {row_label(r) for r in records if r.pseudo}
    per_setting = []  # (runs by cell, folds) of each (way, shot) column
    for way, shot in settings:
        sub = [r for r in records if (r.way, r.shot) == (way, shot)]
        per_setting.append((runs_by_cell(sub), ALL_FOLDS, marks_by_cell(sub)))
    rows = []
    for label in sorted({row_label(r) for r in records}):
        for mode in ("weak",) if label in pseudo_variants else ("full", "weak"):  # its full row is its base's
            row = [label, mode] + [_marked(fmt(stat(fold_mean_per_seed(cells, label, mode, folds))),
                                           folds_mark(marks, label, mode, folds))
                                   for cells, folds, marks in per_setting]
            if any(row[2:]):
                rows.append(row)
    return header, rows


def paper_numbers() -> dict:
    """The committed published numbers: {"sources": {...}, "claims": [...], "numbers": [...]}."""
    text = resources.files("bench.data").joinpath("paper_numbers.json").read_text()
    return json.loads(text)


def paper_entries(paper: dict, table: str, **match) -> list[dict]:
    return [e for e in paper["numbers"] if e["table"] == table and all(e.get(k) == v for k, v in match.items())]


def published_table2(paper: dict, table: str, shot: int, fmt_name: str) -> str:
    """Every published cell of Table 2a/2b for one shot, in the paper's rows: way, method,
    backbone, full splits and mean, weak splits and mean, the paper's Δ. A dagger marks PANet's
    mean copied into every split; '–' a cell the paper leaves empty."""
    entries = paper_entries(paper, table, shot=shot)
    benchmark = LAYOUT_BENCHMARK[table]
    splits = [split_header(benchmark, f) for f in range(4)]
    header = (["way", "method", "backbone"] + [f"full {s}" for s in splits] + ["full mean"]
              + [f"weak {s}" for s in splits] + ["weak mean", "Δ (full−weak)", "source"])
    rows = []
    for e in sorted(entries, key=lambda e: (e["way"], PAPER_ORDER.index(e["method"]) if e["method"] in PAPER_ORDER else 99)):
        row = [str(e["way"]), e["method"], e["backbone"]]
        for mode in ("full", "weak"):
            cell = e.get(mode) or {}
            mark = "†" if cell.get("copied") else ""
            row += [_num((cell.get("folds") or {}).get(str(f)), mark) for f in range(4)] + [_num(cell.get("mean"))]
        rows.append(row + [_num(e.get("delta")), e["source"]])
    title = (f"published · Table {table[-2:]} · {benchmark} · {shot}-shot (sources in bench/data/paper_numbers.json; "
             f"† = PANet's published mean copied into every split; '–' = empty in the paper)")
    return titled_table(title, header, rows, fmt_name)


PAPER_ORDER = ("co-att", "amp", "panet", "pfenet", "ours")  # the paper's row order


def published_table3(paper: dict, fmt_name: str) -> str:
    entries = paper_entries(paper, "table3")
    columns = [(1, 1), (2, 1), (1, 5), (2, 5)]
    header = ["method", "paper's row", "mode"] + [setting_header(w, s) for w, s in columns] + ["source"]
    rows = [[e["method"], e["paper_row"], e["mode"]] + [_num(e["values"].get(f"{w}w{s}s")) for w, s in columns] + [e["source"]]
            for e in entries]
    return titled_table("published · Table 3 · pascal5i · weak, mean over splits (sources in bench/data/paper_numbers.json)",
                        header, rows, fmt_name)


def _num(v, mark: str = "") -> str:
    return "–" if v is None else f"{v:.1f}{mark}"


def _quality_sections(results_dir: Path, fmt_name: str, dataset: str | None) -> list[str]:
    """Pseudo-mask quality records (`bench pseudo report`): fold-wise mIoU of the masks vs GT."""
    from pseudo_labels.report import QUALITY_RECORD, fold_summary_rows

    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for path in (p for p in record_files(results_dir) if p.parent.name == "pseudo-labels"):
        raw = json.loads(path.read_text())
        if raw.get("record_type") == QUALITY_RECORD and dataset in (None, raw["dataset"]):
            by_dataset[raw["dataset"]].append(raw)
    out = []
    for name, recs in sorted(by_dataset.items()):
        header, rows = fold_summary_rows(recs)
        title = f"{name} · pseudo-mask quality · mIoU (%) against GT, train + test images"
        out.append(titled_table(title, header, rows, fmt_name))
    return out
