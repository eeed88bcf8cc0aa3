"""`bench run`, `bench sweep` and `bench check-method`: fit and evaluate methods, one cell or a
resumable grid, and the method contract."""
from __future__ import annotations

from pathlib import Path

from bench.cli.flags import (cell_flags, profile_flag, dataset_flags, device_flag, fold_flag, folds, pseudo_flag, results_flag,
                             set_flag)
from bench.core.settings import parse_overrides
from bench.harness.annotations import MODES


def add_parsers(sub) -> dict:
    r = sub.add_parser("run", help="train if needed, evaluate, write run records")
    cell_flags(r)
    r.add_argument("--seed", type=int, action="append", default=None, help="run only these seeds (repeatable)")
    set_flag(r)
    pseudo_flag(r)
    results_flag(r)
    r.add_argument("--save-predictions", type=Path, default=None, metavar="DIR")
    r.add_argument("--retrain", action="store_true", help="ignore a saved checkpoint (implies --force)")
    r.add_argument("--force", action="store_true", help="re-evaluate cells whose matching record already exists")
    r.add_argument("--allow-leak", action="store_true",
                   help="run although a pretrained network that must be disjoint saw benchmark classes; the row is marked ‡")
    r.add_argument("--dry-run", action="store_true", help="print the plan (`bench plan`) and stop; exit 2 when it does not fit")
    device_flag(r)

    pl = sub.add_parser("plan", help="what a run would build or reuse, with disk sizes and time estimates, before anything runs",
                        description="Every artefact of `bench run` with the same flags: pool nets, pseudo masks, feature "
                                    "stores, fits, records; each with its disk size and a time estimate on the device "
                                    "(a probe of one unit of work), the free space where the cache lives. Exit 2 when the "
                                    "new bytes do not fit.")
    cell_flags(pl)
    pl.add_argument("--seed", type=int, action="append", default=None)
    set_flag(pl)
    pseudo_flag(pl)
    results_flag(pl)
    pl.add_argument("--retrain", action="store_true")
    pl.add_argument("--force", action="store_true")
    device_flag(pl)

    sw = sub.add_parser("sweep", help="run a grid of cells (methods x modes x folds x ways x shots), resumable",
                        description="Cells whose records exist with the same fingerprint are skipped. Grid file "
                                    "format: see bench/harness/sweep.py. Flags replace the grid file's lists and restrict its variants.")
    sw.add_argument("--grid", type=Path, default=None, help="TOML grid file")
    sw.add_argument("--method", action="append", default=None, help="repeatable; 'all' = every registered method")
    sw.add_argument("--mode", action="append", choices=MODES, default=None)
    fold_flag(sw)
    sw.add_argument("--way", type=int, action="append", default=None)
    sw.add_argument("--shot", type=int, action="append", default=None)
    sw.add_argument("--seed", type=int, action="append", default=None)
    dataset_flags(sw, default=None)
    sw.add_argument("--preset", default=None)
    profile_flag(sw)
    results_flag(sw)
    sw.add_argument("--executor", choices=("local", "ray"), default="local")
    sw.add_argument("--jobs", type=int, default=None, help="local: parallel cells (default: the machine's cores)")
    sw.add_argument("--address", default=None, help="ray: address of an existing cluster (default: start a local one)")
    sw.add_argument("--threads", type=int, default=None,
                    help="local, with WSFSS_PIN=0 only: torch threads per cell (default: cores / jobs); pinned (the default), "
                         "every fit and evaluation runs at $WSFSS_THREADS (2) threads, so that numbers do not depend on --jobs")
    sw.add_argument("--cpus-per-cell", type=float, default=1.0, help="ray: CPUs each cell reserves")
    sw.add_argument("--gpus-per-cell", type=float, default=0, help="ray: GPUs each cell reserves (Ray's num_gpus); the cell runs on them")
    sw.add_argument("--dry-run", action="store_true", help="list the cells to run and stop")
    device_flag(sw)

    ct = sub.add_parser("control", help="support-sensitivity control: real episodes, supports of another class, "
                                        "empty support masks; one record per fold")
    cell_flags(ct)
    ct.add_argument("--seed", type=int, default=None, help="which run's episodes (default: the preset's first)")
    set_flag(ct)
    pseudo_flag(ct)
    results_flag(ct)
    device_flag(ct)

    cm = sub.add_parser("check-method", help="the method contract on the mini dataset, one line per check",
                        description="NAME: a built-in name, an entry point of the group wsfss_bench.methods, or "
                                    "module:Class. Exit 1 when a check fails.")
    cm.add_argument("name", metavar="NAME")
    set_flag(cm)
    device_flag(cm)
    return {"run": cmd_run, "plan": cmd_plan, "sweep": cmd_sweep, "control": cmd_control, "check-method": cmd_check_method}


def run_request(args, cache: Path):
    from bench.harness.runner import RunRequest

    return RunRequest(method=args.method, mode=args.mode, dataset=args.dataset, folds=tuple(args.fold or folds("all")),
                      way=args.way, shot=args.shot, preset=args.preset, seeds=tuple(args.seed) if args.seed else None,
                      config=parse_overrides(args.overrides), pseudo=parse_overrides(args.pseudo), data_root=args.data_root,
                      cache_dir=cache, results_dir=args.results_dir, retrain=getattr(args, "retrain", False),
                      force=getattr(args, "force", False), profile=args.profile,
                      save_predictions=getattr(args, "save_predictions", None), allow_leak=getattr(args, "allow_leak", False))


def print_plan(requests) -> int:
    """Prints the plan of the requests; refuses (BenchError, exit 2) when it does not fit on the disk."""
    from bench.harness.plan import plan_all

    made = plan_all(requests)
    print("\n".join(made.lines()))
    made.check_fits()
    return 0


def cmd_plan(args, cache: Path) -> int:
    return print_plan([run_request(args, cache)])


def cmd_run(args, cache: Path) -> int:
    from bench.harness.runner import run
    from bench.report.publish import against_published_sets

    if args.dry_run:
        return print_plan([run_request(args, cache)])
    ran = run(run_request(args, cache))
    kept = len(ran.kept)
    print(f"wrote {len(ran.written)} record(s){f', kept {kept} existing' if kept > 0 else ''} under {args.results_dir}/; "
          "see them with `bench table`")
    for line in against_published_sets(args.results_dir, ran.paths):  # the README's numbers, for one
        print(line)
    return 0


def cmd_sweep(args, cache: Path) -> int:
    from bench.harness.sweep import ONLY_KEYS, Paths, grid_cells, load_grid, pending_cells, sweep
    from bench.report.tables import BENCHMARK_OF, LAYOUT_BENCHMARK

    grid = load_grid(args.grid) if args.grid else {}
    given = {key: value for key, value in (("methods", args.method), ("modes", args.mode),
                                           ("folds", list(args.fold) if args.fold else None), ("ways", args.way),
                                           ("shots", args.shot), ("seeds", args.seed), ("dataset", args.dataset),
                                           ("preset", args.preset), ("profile", args.profile)) if value is not None}
    grid.update(given)
    cells = grid_cells(grid, only={k: v for k, v in given.items() if k in ONLY_KEYS})
    paths = Paths(cache, args.results_dir, args.data_root, args.device)
    if args.dry_run:
        todo = pending_cells(cells, paths, build=False)  # looks pseudo masks up, never makes them
        print(f"{len(cells)} cells, {len(cells) - len(todo)} recorded, {len(todo)} to run:")
        for cell in todo:
            print(f"  {cell.label()}")
        if todo:
            from bench.harness.sweep import cell_request

            print("plan of the cells to run:")
            return print_plan([cell_request(c, paths) for c in todo])
        return 0
    outcomes = sweep(cells, paths, args.executor, args.jobs, args.address, args.cpus_per_cell, args.threads,
                     gpus_per_cell=args.gpus_per_cell)
    failed = sum(1 for o in outcomes if o.error)
    layouts = sorted({lay for lay, bench in LAYOUT_BENCHMARK.items() for c in cells if BENCHMARK_OF.get(c.dataset) == bench})
    shown = " and ".join(f"`bench table --layout {lay}`" for lay in layouts) or "`bench table`"
    print(f"sweep done: {len(outcomes) - failed} cells run, {failed} failed; {shown} shows them")
    return 1 if failed else 0


def cmd_check_method(args, cache: Path) -> int:
    from bench import api

    checks = api.check_method(args.name, parse_overrides(args.overrides), cache)
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if not c.ok]
    print(f"{args.name}: " + (f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "every check passed"))
    return 1 if failed else 0


def cmd_control(args, cache: Path) -> int:
    from bench import api

    records = api.control(args.method, args.mode, args.dataset, args.fold or folds("all"), args.way, args.shot,
                          args.preset, args.seed, parse_overrides(args.overrides), parse_overrides(args.pseudo),
                          args.data_root, cache, args.results_dir, profile=args.profile)
    print(f"wrote {len(records)} control record(s) under {args.results_dir}/; `bench report` tables them")
    return 0
