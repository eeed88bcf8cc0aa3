"""Commands that read records only: `bench table`, `figure`, `report`, `verify`, `claims`, and
`publish`, which copies them into a published set."""
from __future__ import annotations

import sys
from pathlib import Path

from bench.cli.flags import (dataset_flags, filters_of, mode_flag, pseudo_flag, record_filters,
                             results_flag, set_flag)
from bench.core.settings import parse_overrides
from bench.harness.metrics import ABSENT_WAYS, FBIOU, IOU_MEAN


def add_parsers(sub) -> dict:
    t = sub.add_parser("table", help="tables from run records (no re-running)")
    results_flag(t)
    t.add_argument("--format", choices=("markdown", "csv", "latex"), default="markdown")
    record_filters(t)
    t.add_argument("--layout", choices=("settings", "table2a", "table2b", "table3"), default="settings",
                   help="settings: one table per dataset/preset/way/shot; table2a/2b/3: the paper's layouts beside its numbers")
    t.add_argument("--out", type=Path, default=None, help="also write the table to this file (.md, .csv or .tex)")
    t.add_argument("--absent-ways", choices=ABSENT_WAYS, default=None,
                   help="re-score N-way records: score every way on every query, or skip a way on queries without its class (PANet); default: the preset's")
    t.add_argument("--fbiou", choices=FBIOU, default=None, help="FB-IoU foreground merged over ways, or from per-class sums (PANet); default: the preset's")
    t.add_argument("--iou", choices=IOU_MEAN, default=None, help="class IoU pooled over all episodes (default), or per episode then averaged")

    fg = sub.add_parser("figure", help="PNG figures: episode panels (Fig. 5 style) or the Δ bar chart")
    fsub = fg.add_subparsers(dest="figure_command", required=True)
    ep = fsub.add_parser("episodes", help="support with its mask, query GT (green), pseudo (yellow), prediction (red); "
                                          "drawn from a record's saved predictions, no model is fitted")
    ep.add_argument("--method", required=True)
    mode_flag(ep)
    dataset_flags(ep)
    ep.add_argument("--preset", default="wacv22")
    ep.add_argument("--fold", type=int, default=0)
    ep.add_argument("--way", type=int, default=1)
    ep.add_argument("--shot", type=int, default=1)
    ep.add_argument("--seed", type=int, default=None, help="which run's episode file (default: the preset's first)")
    ep.add_argument("--episode", type=int, action="append", default=None, help="episode index (repeatable)")
    ep.add_argument("--random", type=int, default=4, help="otherwise this many random episodes")
    set_flag(ep, None)
    pseudo_flag(ep)
    ep.add_argument("--out", type=Path, default=Path("results/figures/episodes.png"))
    results_flag(ep)
    ep.add_argument("--predictions", type=Path, default=None, metavar="DIR",
                    help="the folder of `bench run --save-predictions DIR` (any episode); default: the sample beside the record")
    dl = fsub.add_parser("delta", help="full vs weak mean mIoU and Δ per method, error bars over runs")
    results_flag(dl)
    record_filters(dl)
    dl.add_argument("--out", type=Path, default=Path("results/figures/delta.png"))
    cv = fsub.add_parser("curves", help="each fit's training loss and base-class validation score, with its convergence verdict")
    results_flag(cv)
    record_filters(cv)
    cv.add_argument("--out", type=Path, default=Path("results/figures/curves.png"))
    cl = fsub.add_parser("classes", help="per class: each method's Δ against the class's pseudo-mask IoU, with a CSV")
    results_flag(cl)
    record_filters(cl)
    cl.add_argument("--data-root", type=Path, default=None)
    cl.add_argument("--out", type=Path, default=Path("results/figures/classes.png"))

    rp = sub.add_parser("report", help="one Markdown page: every table and figure of a results folder, and the environment")
    results_flag(rp)
    rp.add_argument("--out", type=Path, default=None, help="default: <results-dir>/report.md")

    v = sub.add_parser("verify", help="compare records with expected numbers; exit 1 on a miss")
    v.add_argument("expected", type=Path, help="CSV or JSON: dataset, preset, method, mode, way, shot, fold, miou[, tolerance]")
    results_flag(v)
    v.add_argument("--tolerance", type=float, default=0.5, help="absolute mIoU points (default 0.5)")

    c = sub.add_parser("claims", help="the paper's four claims checked on the records: holds / fails, with the numbers")
    results_flag(c)
    record_filters(c, way_shot=False)

    pb = sub.add_parser("publish", help="copy run records into a published set (committed to git, sha256 per file)")
    pb.add_argument("--to", type=Path, required=True, metavar="DIR", help="the published set, e.g. results/published/mkl-compatible")
    results_flag(pb)
    record_filters(pb)
    pb.add_argument("--method", action="append", default=None, help="only this method's records, its variant rows included (repeatable)")
    pb.add_argument("--mode", action="append", default=None, help="only this mode's records (repeatable)")
    pb.add_argument("--replace", action="store_true", help="publish records whose numbers differ from the published ones")
    pb.add_argument("--pseudo-only", action="store_true",
                    help="only the pseudo-mask quality records (of --dataset, else of every dataset), no run records")
    return {"table": cmd_table, "figure": cmd_figure, "report": cmd_report, "verify": cmd_verify, "claims": cmd_claims,
            "publish": cmd_publish}


def cmd_table(args, cache: Path) -> int:
    from bench.core.files import atomic_write_text
    from bench.report.tables import render_tables

    fmt = args.format
    if args.out is not None:
        fmt = {".csv": "csv", ".tex": "latex"}.get(args.out.suffix, args.format)
    scoring = {"absent_ways": args.absent_ways, "fbiou": args.fbiou, "iou": args.iou}
    text = render_tables(args.results_dir, fmt, filters_of(args), args.layout, scoring)
    print(text, end="")
    if args.out is not None:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_figure(args, cache: Path) -> int:
    from bench.report import figures

    if args.figure_command == "curves":
        for path in figures.curves_chart(args.results_dir, args.out, filters_of(args)):
            print(f"wrote {path}")
        return 0
    if args.figure_command == "delta":
        for path in figures.delta_chart(args.results_dir, args.out, filters_of(args)):
            print(f"wrote {path}")
        return 0
    if args.figure_command == "classes":
        png, table = figures.class_delta_chart(args.results_dir, cache, args.out, filters_of(args), args.data_root)
        print(f"wrote {png} and {table}")
        return 0
    from bench.harness.runner import RunRequest

    req = RunRequest(method=args.method, mode=args.mode, dataset=args.dataset, folds=(args.fold,), way=args.way,
                     shot=args.shot, preset=args.preset, seeds=(args.seed,) if args.seed is not None else None,
                     config=parse_overrides(args.overrides), pseudo=parse_overrides(args.pseudo),
                     data_root=args.data_root, cache_dir=cache, results_dir=args.results_dir)
    path, ious = figures.episode_panels(req, args.episode, args.random, 0, args.out, predictions=args.predictions)
    print(f"wrote {path} (foreground IoU of the drawn episodes: {', '.join(f'{v:.0f}' for v in ious)})")
    return 0


def cmd_report(args, cache: Path) -> int:
    from bench.report.page import write_report

    path = write_report(args.results_dir, args.out or args.results_dir / "report.md")
    print(f"wrote {path}")
    return 0


def cmd_verify(args, cache: Path) -> int:
    from tabulate import tabulate

    from bench.report.verify import expected_rows, observed_values, verify_rows

    rows = verify_rows(expected_rows(args.expected), observed_values(args.results_dir), args.tolerance)
    print(tabulate(rows, ["setting", "fold", "expected", "observed", "|diff|", "tolerance", "status"], tablefmt="github",
                   disable_numparse=True))
    misses = sum(1 for r in rows if r[-1] != "ok")
    print(f"{len(rows) - misses} of {len(rows)} within tolerance" + (f"; {misses} missed" if misses else ""))
    return 1 if misses else 0


def cmd_claims(args, cache: Path) -> int:
    from bench.report.claims import render_claims

    print(render_claims(args.results_dir, {"dataset": args.dataset, "preset": args.preset}), end="")
    return 0


def cmd_publish(args, cache: Path) -> int:
    from bench.report.publish import publish

    filters = {**filters_of(args), "method": set(args.method) if args.method else None,
               "mode": set(args.mode) if args.mode else None}
    lines = publish(args.results_dir, args.to, filters, args.replace, args.pseudo_only)
    kept = sum(line.startswith("kept") for line in lines)
    print("\n".join(lines))
    print(f"published {len(lines) - kept} file(s) into {args.to} ({kept} there already with the same numbers); "
          f"commit the folder to keep them")
    return 0
