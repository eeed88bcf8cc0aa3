"""The `bench` command line. User errors print one line and exit with code 2."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.data.classes import N_FOLDS
from bench.errors import BenchError


def _default_cache() -> Path:
    return Path(os.environ.get("WSFSS_CACHE", "cache"))


def parse_overrides(pairs: list[str]) -> dict:
    """--set key=value pairs (`--set a=1 b=2`, `--set a=1 --set b=2` or `--set "a=1 b=2"`); values
    parsed as int, float, bool or kept as strings."""
    out = {}
    for pair in (p for token in pairs or [] for p in token.split()):
        if "=" not in pair:
            raise BenchError(f"--set expects key=value pairs (several after one flag: --set a=1 b=2), got '{pair}'; "
                             f"fix: write it as key=value, or put a positional argument before --set")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value.strip())
    return out


def _parse_value(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _folds(value: str) -> tuple[int, ...]:
    if value == "all":
        return tuple(range(N_FOLDS))
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"folds are 'all' or comma-separated numbers, got '{value}'") from None


class _ExtendFolds(argparse.Action):
    """`--fold 0 --fold 2` means folds 0 and 2, like `--fold 0,2`; a plain `store` kept only the last."""

    def __call__(self, parser, namespace, values, option_string=None):
        folds = getattr(namespace, self.dest) or ()
        setattr(namespace, self.dest, tuple(dict.fromkeys((*folds, *values))))


def _device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, metavar="cpu|cuda[:N]",
                        help="where the networks run (default: cuda when available, else cpu)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Weakly supervised few-shot segmentation benchmark")
    p.add_argument("--cache-dir", type=Path, default=None, help="datasets, episodes, checkpoints (default ./cache or $WSFSS_CACHE)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train if needed, evaluate, write run records")
    r.add_argument("--method", required=True)
    r.add_argument("--mode", choices=("full", "weak"), default="weak")
    r.add_argument("--dataset", default="openmoji5i")
    r.add_argument("--data-root", type=Path, default=None, help="folder of a real dataset (pascal5i, coco20i)")
    r.add_argument("--fold", type=_folds, action=_ExtendFolds, default=None,
                   help="'all' (default) or e.g. 0 or 0,2 (repeatable)")
    r.add_argument("--way", type=int, default=1)
    r.add_argument("--shot", type=int, default=1)
    r.add_argument("--preset", default="wacv22")
    r.add_argument("--seed", type=int, action="append", default=None, help="run only these seeds (repeatable)")
    r.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="method config override")
    r.add_argument("--pseudo-set", dest="pseudo", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="weak mode: pseudo-label setting override, e.g. saliency=none (see `bench pseudo --help`)")
    r.add_argument("--results-dir", type=Path, default=Path("results"))
    r.add_argument("--save-predictions", type=Path, default=None, metavar="DIR")
    r.add_argument("--retrain", action="store_true", help="ignore a saved checkpoint (implies --force)")
    r.add_argument("--force", action="store_true", help="re-evaluate cells whose matching record already exists")
    _device_flag(r)

    t = sub.add_parser("table", help="tables from run records (no re-running)")
    t.add_argument("--results-dir", type=Path, default=Path("results"))
    t.add_argument("--format", choices=("markdown", "csv", "latex"), default="markdown")
    t.add_argument("--dataset", default=None)
    t.add_argument("--preset", default=None, help="name@version as in the records, e.g. wacv22@v1")
    t.add_argument("--way", type=int, default=None)
    t.add_argument("--shot", type=int, default=None)
    t.add_argument("--layout", choices=("settings", "table2a", "table2b", "table3"), default="settings",
                   help="settings: one table per dataset/preset/way/shot; table2a/2b/3: the paper's layouts beside its numbers")
    t.add_argument("--out", type=Path, default=None, help="also write the table to this file (.md, .csv or .tex)")

    sw = sub.add_parser("sweep", help="run a grid of cells (methods x modes x folds x ways x shots), resumable",
                        description="Cells whose records exist with the same fingerprint are skipped. Grid file "
                                    "format: see bench/sweep.py. Flags add to / override the grid file's lists.")
    sw.add_argument("--grid", type=Path, default=None, help="TOML grid file")
    sw.add_argument("--method", action="append", default=None, help="repeatable; 'all' = every registered method")
    sw.add_argument("--mode", action="append", choices=("full", "weak"), default=None)
    sw.add_argument("--fold", type=_folds, action=_ExtendFolds, default=None, help="'all' or e.g. 0 or 0,2 (repeatable)")
    sw.add_argument("--way", type=int, action="append", default=None)
    sw.add_argument("--shot", type=int, action="append", default=None)
    sw.add_argument("--seed", type=int, action="append", default=None)
    sw.add_argument("--dataset", default=None)
    sw.add_argument("--data-root", type=Path, default=None)
    sw.add_argument("--preset", default=None)
    sw.add_argument("--results-dir", type=Path, default=Path("results"))
    sw.add_argument("--executor", choices=("local", "ray"), default="local")
    sw.add_argument("--jobs", type=int, default=None, help="local: parallel cells (default: the machine's cores)")
    sw.add_argument("--address", default=None, help="ray: address of an existing cluster (default: start a local one)")
    sw.add_argument("--threads", type=int, default=None,
                    help="local: torch threads per cell (default: cores / jobs); lower it to share the machine")
    sw.add_argument("--cpus-per-cell", type=float, default=1.0, help="ray: CPUs each cell reserves")
    sw.add_argument("--dry-run", action="store_true", help="list the cells to run and stop")
    _device_flag(sw)

    fg = sub.add_parser("figure", help="PNG figures: episode panels (Fig. 5 style) or the Δ bar chart")
    fsub = fg.add_subparsers(dest="figure_command", required=True)
    ep = fsub.add_parser("episodes", help="support with its mask, query GT (green), pseudo (yellow), prediction (red)")
    ep.add_argument("--method", required=True)
    ep.add_argument("--mode", choices=("full", "weak"), default="weak")
    ep.add_argument("--dataset", default="openmoji5i")
    ep.add_argument("--data-root", type=Path, default=None)
    ep.add_argument("--preset", default="wacv22")
    ep.add_argument("--fold", type=int, default=0)
    ep.add_argument("--way", type=int, default=1)
    ep.add_argument("--shot", type=int, default=1)
    ep.add_argument("--seed", type=int, default=None, help="which run's episode file (default: the preset's first)")
    ep.add_argument("--episode", type=int, action="append", default=None, help="episode index (repeatable)")
    ep.add_argument("--random", type=int, default=4, help="otherwise this many random episodes")
    ep.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
    ep.add_argument("--pseudo-set", dest="pseudo", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
    ep.add_argument("--out", type=Path, default=Path("results/figures/episodes.png"))
    _device_flag(ep)
    dl = fsub.add_parser("delta", help="full vs weak mean mIoU and Δ per method, error bars over runs")
    dl.add_argument("--results-dir", type=Path, default=Path("results"))
    dl.add_argument("--dataset", default=None)
    dl.add_argument("--preset", default=None)
    dl.add_argument("--way", type=int, default=None)
    dl.add_argument("--shot", type=int, default=None)
    dl.add_argument("--out", type=Path, default=Path("results/figures/delta.png"))

    cl = fsub.add_parser("classes", help="per class: each method's Δ against the class's pseudo-mask IoU, with a CSV")
    cl.add_argument("--results-dir", type=Path, default=Path("results"))
    cl.add_argument("--dataset", default=None)
    cl.add_argument("--data-root", type=Path, default=None)
    cl.add_argument("--preset", default=None)
    cl.add_argument("--way", type=int, default=None)
    cl.add_argument("--shot", type=int, default=None)
    cl.add_argument("--out", type=Path, default=Path("results/figures/classes.png"))

    rp = sub.add_parser("report", help="one Markdown page: every table and figure of a results folder, and the environment")
    rp.add_argument("--results-dir", type=Path, default=Path("results"))
    rp.add_argument("--out", type=Path, default=None, help="default: <results-dir>/report.md")

    v = sub.add_parser("verify", help="compare records with expected numbers; exit 1 on a miss")
    v.add_argument("expected", type=Path, help="CSV or JSON: dataset, preset, method, mode, way, shot, fold, miou[, tolerance]")
    v.add_argument("--results-dir", type=Path, default=Path("results"))
    v.add_argument("--tolerance", type=float, default=0.5, help="absolute mIoU points (default 0.5)")

    cl = sub.add_parser("claims", help="the paper's four claims checked on the records: holds / fails, with the numbers")
    cl.add_argument("--results-dir", type=Path, default=Path("results"))
    cl.add_argument("--dataset", default=None)
    cl.add_argument("--preset", default=None, help="name@version as in the records, e.g. wacv22@v1")

    sub.add_parser("list", help="methods, datasets, presets")

    bb = sub.add_parser("backbone", help="the frozen DeepLabV3+ (pretrained on the disjoint pool) and its feature cache")
    bsub = bb.add_subparsers(dest="backbone_command", required=True)
    for name, text in (("pretrain", "pretrain DeepLabV3+ on the pool (cached) and print its held-out mIoU"),
                       ("features", "compute and store the decoder features of every train and test image")):
        q = bsub.add_parser(name, help=text)
        q.add_argument("--dataset", default="openmoji5i")
        q.add_argument("--data-root", type=Path, default=None)
        q.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                       help="fields of backbones/pretrain.py:BackboneConfig, e.g. arch=r18-os16 steps=300")
        _device_flag(q)

    tr = sub.add_parser("trunk", help="the baselines' VGG-16 trunk, pretrained on the disjoint pool's object crops")
    tsub = tr.add_subparsers(dest="trunk_command", required=True)
    q = tsub.add_parser("pretrain", help="pretrain the VGG-16 trunk on pool crops (cached) and print its held-out top-1")
    q.add_argument("--dataset", default="openmoji5i")
    q.add_argument("--data-root", type=Path, default=None)
    q.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="fields of backbones/trunks.py:TrunkConfig, e.g. width=0.5 epochs=8")
    _device_flag(q)

    ps = sub.add_parser("pseudo", help="pseudo masks from image-level labels (CAM x word vectors, saliency gate)",
                        description="Settings (--set KEY=VALUE) are the fields of pseudo_labels/config.py:PseudoConfig.")
    psub = ps.add_subparsers(dest="pseudo_command", required=True)
    for name, text in (("train-cam", "train the pool CAM classifier (cached) and print its held-out accuracy"),
                       ("train-saliency", "train the pool saliency net (cached) and print its held-out foreground IoU"),
                       ("generate", "write pseudo masks for every train and test image (cached by fingerprint)"),
                       ("neighbours", "CAM classes with the largest weights w_k for a benchmark class"),
                       ("report", "pseudo-mask mIoU vs GT per class and fold, with/without gate, all-foreground; PNG of examples")):
        q = psub.add_parser(name, help=text)
        q.add_argument("--dataset", default="openmoji5i")
        q.add_argument("--data-root", type=Path, default=None)
        q.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
        _device_flag(q)
        if name == "neighbours":
            q.add_argument("class_name", metavar="CLASS")
            q.add_argument("--top", type=int, default=10)
        if name == "report":
            q.add_argument("--results-dir", type=Path, default=Path("results"))
            q.add_argument("--figure", type=Path, default=None, help="examples PNG (default results/<dataset>/pseudo-labels/<fp>.png)")
            q.add_argument("--split", choices=("train", "val", "both"), default="both")

    d = sub.add_parser("data", help="embedded dataset")
    dsub = d.add_subparsers(dest="data_command", required=True)
    prep = dsub.add_parser("prepare", help="generate the embedded dataset (done on first use otherwise)")
    prep.add_argument("--dataset", default="openmoji5i", choices=("openmoji5i", "openmoji5i-mini", "openmoji20i", "openmoji20i-mini"))
    show = dsub.add_parser("show", help="PNG contact sheet of images with mask overlays")
    show.add_argument("--dataset", default="openmoji5i")
    show.add_argument("--data-root", type=Path, default=None)
    show.add_argument("--split", default="train")
    show.add_argument("--n", type=int, default=32)
    show.add_argument("--out", type=Path, default=Path("openmoji5i_sheet.png"))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cache = args.cache_dir or _default_cache()
    try:
        if hasattr(args, "device"):
            from bench.device import use_device

            use_device(args.device)
        return COMMANDS[args.command](args, cache)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished records are kept, re-run to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into `head` and the like: the reader left, which is not our error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def cmd_run(args, cache: Path) -> int:
    from bench.runner import RunRequest, run

    req = RunRequest(
        method=args.method, mode=args.mode, dataset=args.dataset, folds=args.fold or _folds("all"),
        way=args.way, shot=args.shot, preset=args.preset, seeds=tuple(args.seed) if args.seed else None,
        config=parse_overrides(args.overrides), pseudo=parse_overrides(args.pseudo),
        data_root=args.data_root, cache_dir=cache, results_dir=args.results_dir,
        save_predictions=args.save_predictions, retrain=args.retrain, force=args.force,
    )
    paths = run(req)
    print(f"wrote {len(paths)} record(s) under {args.results_dir}/; see them with `bench table`")
    return 0


def cmd_table(args, cache: Path) -> int:
    from bench.tables import render_tables

    filters = {"dataset": args.dataset, "preset": args.preset, "way": args.way, "shot": args.shot}
    fmt = args.format
    if args.out is not None:
        fmt = {".csv": "csv", ".tex": "latex"}.get(args.out.suffix, args.format)
    text = render_tables(args.results_dir, fmt, filters, args.layout)
    print(text, end="")
    if args.out is not None:
        from bench.records import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_sweep(args, cache: Path) -> int:
    from bench.sweep import Paths, grid_cells, load_grid, pending_cells, sweep

    grid = load_grid(args.grid) if args.grid else {}
    for key, value in (("methods", args.method), ("modes", args.mode), ("folds", list(args.fold) if args.fold else None),
                       ("ways", args.way), ("shots", args.shot), ("seeds", args.seed), ("dataset", args.dataset),
                       ("preset", args.preset)):
        if value is not None:
            grid[key] = value
    cells = grid_cells(grid)
    paths = Paths(cache, args.results_dir, args.data_root, args.device)
    if args.dry_run:
        todo = pending_cells(cells, paths)
        print(f"{len(cells)} cells, {len(cells) - len(todo)} recorded, {len(todo)} to run:")
        for cell in todo:
            print(f"  {cell.label()}")
        return 0
    outcomes = sweep(cells, paths, args.executor, args.jobs, args.address, args.cpus_per_cell, args.threads)
    failed = sum(1 for o in outcomes if o.error)
    from bench.tables import BENCHMARK_OF, LAYOUT_BENCHMARK

    layouts = sorted({lay for lay, bench in LAYOUT_BENCHMARK.items() for c in cells if BENCHMARK_OF.get(c.dataset) == bench})
    shown = " and ".join(f"`bench table --layout {lay}`" for lay in layouts) or "`bench table`"
    print(f"sweep done: {len(outcomes) - failed} cells run, {failed} failed; {shown} shows them")
    return 1 if failed else 0


def cmd_figure(args, cache: Path) -> int:
    from bench import figures

    if args.figure_command == "delta":
        filters = {"dataset": args.dataset, "preset": args.preset, "way": args.way, "shot": args.shot}
        for path in figures.delta_chart(args.results_dir, args.out, filters):
            print(f"wrote {path}")
        return 0
    if args.figure_command == "classes":
        filters = {"dataset": args.dataset, "preset": args.preset, "way": args.way, "shot": args.shot}
        png, table = figures.class_delta_chart(args.results_dir, cache, args.out, filters, args.data_root)
        print(f"wrote {png} and {table}")
        return 0
    from bench.runner import RunRequest

    req = RunRequest(method=args.method, mode=args.mode, dataset=args.dataset, folds=(args.fold,), way=args.way,
                     shot=args.shot, preset=args.preset, seeds=(args.seed,) if args.seed is not None else None,
                     config=parse_overrides(args.overrides), pseudo=parse_overrides(args.pseudo),
                     data_root=args.data_root, cache_dir=cache)
    path, ious = figures.episode_panels(req, args.episode, args.random, 0, args.out)
    print(f"wrote {path} (foreground IoU of the drawn episodes: {', '.join(f'{v:.0f}' for v in ious)})")
    return 0


def cmd_report(args, cache: Path) -> int:
    from bench.report import write_report

    path = write_report(args.results_dir, args.out or args.results_dir / "report.md")
    print(f"wrote {path}")
    return 0


def cmd_verify(args, cache: Path) -> int:
    from tabulate import tabulate

    from bench.verify import expected_rows, observed_values, verify_rows

    rows = verify_rows(expected_rows(args.expected), observed_values(args.results_dir), args.tolerance)
    print(tabulate(rows, ["setting", "fold", "expected", "observed", "|diff|", "tolerance", "status"], tablefmt="github",
                   disable_numparse=True))
    misses = sum(1 for r in rows if r[-1] != "ok")
    print(f"{len(rows) - misses} of {len(rows)} within tolerance" + (f"; {misses} missed" if misses else ""))
    return 1 if misses else 0


def cmd_claims(args, cache: Path) -> int:
    from bench.claims import render_claims

    print(render_claims(args.results_dir, {"dataset": args.dataset, "preset": args.preset}), end="")
    return 0


def cmd_list(args, cache: Path) -> int:
    from bench.data.datasets import DATASETS
    from bench.presets import PRESETS
    from bench.registry import METHODS, TEST_ONLY

    print("methods:")
    for name in sorted(METHODS):
        print(f"  {name}{'  (test-only)' if name in TEST_ONLY else ''}")
    print("datasets:\n  " + "\n  ".join(f"{d}{_DATASET_NOTES[d]}" for d in DATASETS))
    print("presets:")
    for p in PRESETS.values():
        print(f"  {p.label():<16} {p.runs} x {p.episodes} episodes  {p.note}")
    return 0


_DATASET_NOTES = {"openmoji5i": "  (embedded default)", "openmoji5i-mini": "  (embedded, tiny: smoke runs and tests)",
                  "openmoji20i": "  (embedded COCO-like: 65 of the 80 COCO classes, COCO-20i folds)",
                  "openmoji20i-mini": "  (embedded COCO-like, tiny: tests)",
                  "pascal5i": "  (needs --data-root)", "coco20i": "  (needs --data-root)"}


def cmd_data(args, cache: Path) -> int:
    from bench.data.datasets import get_dataset

    if args.data_command == "prepare":
        ds = get_dataset(args.dataset, cache)
        print(f"{ds.name} ready at {ds.root} ({len(ds.ids('train'))} train, {len(ds.ids('val'))} val images)")
        return 0
    from bench.data.show import contact_sheet

    ds = get_dataset(args.dataset, cache, args.data_root)
    contact_sheet(ds, args.split, args.n, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_pseudo(args, cache: Path) -> int:
    from bench.data.datasets import get_dataset
    from pseudo_labels import commands

    dataset = get_dataset(args.dataset, cache, args.data_root)
    return commands.COMMANDS[args.pseudo_command](args, dataset, cache)


def cmd_backbone(args, cache: Path) -> int:
    from backbones.features import FeatureCache
    from backbones.pretrain import backbone_config, pretrained_backbone
    from bench.data.datasets import get_dataset

    dataset = get_dataset(args.dataset, cache, args.data_root)
    model, meta, path = pretrained_backbone(dataset, backbone_config(parse_overrides(args.overrides)), cache)
    if args.backbone_command == "pretrain":
        if "val_miou" in meta:
            print(f"DeepLabV3+ {meta['arch']} pretrained on the pool in {meta['train_s']:.0f} s: held-out mIoU "
                  f"{meta['val_miou']:.1f}%, object-vs-background IoU {meta.get('val_object_iou', float('nan')):.1f}%, "
                  f"pixel accuracy {meta['val_pixel_acc']:.1f}%")
        print(f"weights: {path}")
        return 0
    features = FeatureCache(dataset, model, path, cache)
    ids = dataset.ids("train") + dataset.ids("val")
    features.ensure(ids)
    print(f"features of {len(ids)} images at {features.root}")
    return 0


def cmd_trunk(args, cache: Path) -> int:
    from backbones.trunks import TrunkConfig, pretrained_vgg16
    from bench.data.datasets import get_dataset
    from bench.settings import settings_from

    dataset = get_dataset(args.dataset, cache, args.data_root)
    _, meta = pretrained_vgg16(dataset, settings_from(TrunkConfig, parse_overrides(args.overrides), "trunk"), cache)
    if "val_top1" in meta:
        print(f"VGG-16 trunk (width {meta['width']:g}) pretrained on pool crops in {meta['train_s']:.0f} s: "
              f"held-out top-1 {meta['val_top1']:.1f}% over the pool's classes")
    return 0


COMMANDS = {"claims": cmd_claims, "run": cmd_run, "sweep": cmd_sweep, "verify": cmd_verify, "figure": cmd_figure, "report": cmd_report, "backbone": cmd_backbone, "trunk": cmd_trunk, "table": cmd_table, "list": cmd_list, "data": cmd_data, "pseudo": cmd_pseudo}

if __name__ == "__main__":
    sys.exit(main())
