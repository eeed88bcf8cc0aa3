"""`bench report`: one Markdown page with every table of a results folder (settings, the paper
layouts that have records, pseudo-mask quality), the Δ charts, any PNG already in the folder's
figures/, and the environment the records were produced on (versions, CPU, commits)."""
from __future__ import annotations

import os
import platform
from collections import Counter
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.optim import recipe_label
from bench.core.records import load_records, named_config
from bench.core.files import atomic_write_text, cpu_name, environment_versions, git_commit
from bench.harness.control import VARIANTS, load_controls
from bench.report.tables import LAYOUTS, render_tables


def environment_lines(records) -> list[str]:
    commits = Counter(r.git_commit or "unknown" for _, r in records)
    produced = Counter(f"{r.versions.get('torch', '?')} / python {r.versions.get('python', '?')}" for _, r in records)
    lines = [f"- report written on: {platform.node() or 'unknown host'}, {cpu_name()}, {os.cpu_count()} cores, "
             f"commit {git_commit() or 'unknown'}",
             "- this machine: " + ", ".join(f"{k} {v}" for k, v in environment_versions().items())]
    lines += [f"- records made at commit {c}: {n}" for c, n in commits.most_common()]
    lines += [f"- records made with torch {v}: {n}" for v, n in produced.most_common()]
    return lines


def write_report(results_dir: Path, out: Path) -> Path:
    from bench.report.figures import curves_chart, delta_chart

    records = load_records(results_dir)
    if not records:
        raise BenchError(f"no run records under {results_dir}; fix: run `bench sweep` or `bench run` first")
    figures = Path(out).parent / "figures"
    sections = ["# wsfss-bench report", f"Results folder: `{results_dir}` · {len(records)} run records.", "## Environment",
                "\n".join(environment_lines(records)), "## Tables (all settings)", render_tables(results_dir)]
    for layout in LAYOUTS[1:]:
        try:
            sections += [f"## {layout}", render_tables(results_dir, layout=layout)]
        except BenchError as exc:  # a layout with no records of its kind: say so, do not fail the report
            sections += [f"## {layout}", f"_not shown: {exc}_"]
    try:
        charts = delta_chart(results_dir, figures / "delta.png")
        sections += ["## Δ = full − weak"] + [f"![{p.stem}]({p.relative_to(Path(out).parent)})" for p in charts]
    except BenchError as exc:
        sections += ["## Δ = full − weak", f"_not shown: {exc}_"]
    try:
        curves = curves_chart(results_dir, figures / "curves.png")
        sections += ["## Fits: loss and base-class validation curves, convergence verdicts"] + [
            f"![{p.stem}]({p.relative_to(Path(out).parent)})" for p in curves]
    except BenchError as exc:
        sections += ["## Fits: loss and base-class validation curves", f"_not shown: {exc}_"]
    controls = load_controls(results_dir)
    sections += ["## Support-sensitivity control (`bench control`)",
                 control_table(controls) if controls else "_not run: `bench control --method M --mode weak` adds it_"]
    others = sorted(p for p in figures.glob("*.png") if not p.name.startswith(("delta", "curves")))
    if others:
        sections += ["## Figures"] + [f"![{p.stem}]({p.relative_to(Path(out).parent)})" for p in others]
    atomic_write_text(Path(out), "\n\n".join(sections) + "\n")
    return Path(out)


def control_table(controls: list[dict]) -> str:
    """One row per (dataset, preset, setting, method, mode, fit recipe): mIoU over the control's
    folds for the real episodes, wrong-class supports and empty support masks, and what each
    control drops. Controls of two fit recipes are never averaged together; a `recipe` column
    shows them apart when the folder holds more than one (bench/core/optim.py recipe_label)."""
    from collections import defaultdict

    import numpy as np
    from tabulate import tabulate

    groups = defaultdict(list)
    for c in controls:
        named = {**named_config(c["config"], c.get("profile")), **c["pseudo"]}
        label = c["method"] + "".join(f" {k}={v}" for k, v in sorted(named.items()))
        recipe = recipe_label(c["recipes"]) if c.get("recipes") else "not recorded"
        groups[(c["dataset"], c["preset"], f"{c['way']}w{c['shot']}s", label, c["mode"], recipe)].append(c)
    several = len({key[-1] for key in groups}) > 1
    rows = []
    for key, recs in sorted(groups.items()):
        means = {v: float(np.mean([r["miou"][v] for r in recs])) for v in VARIANTS}
        rows.append([*key[:-1], *([key[-1]] if several else []),
                     ",".join(str(r["fold"]) for r in sorted(recs, key=lambda r: r["fold"])),
                     *(f"{means[v]:.1f}" for v in VARIANTS), f"{means['real'] - means['wrong_class']:.1f}",
                     f"{means['real'] - means['empty_masks']:.1f}"])
    header = ["dataset", "preset", "setting", "method", "mode", *(["recipe"] if several else []), "folds", "real",
              "wrong class", "empty masks", "drop (wrong)", "drop (empty)"]
    return tabulate(rows, header, tablefmt="github", disable_numparse=True)
