"""`bench sweep`: a grid of cells (method × mode × fold × way × shot, plus --set/--pseudo-set
variants), each cell = one fold's fit and its runs (seeds), run on a local process pool or as Ray
tasks. A cell whose every seed already has a record with the same fingerprint (episodes, data,
annotations, config: runner.finished_record) is skipped, so an interrupted sweep resumes where it
stopped and nothing is computed twice. One cell's failure is reported at the end and does not
stop the others.

Grid file (TOML), every key optional except methods:

    dataset = "openmoji5i"
    preset = "wacv22"
    methods = ["ours", "panet"]
    modes = ["full", "weak"]
    folds = [0, 1, 2, 3]
    ways = [1]
    shots = [1, 5]
    seeds = [1234]              # default: every run of the preset
    [[variants]]                # extra rows: a method with --set / --pseudo-set values
    method = "ours"
    modes = ["weak"]
    pseudo = { saliency = "none" }
    [[variants]]                # or other lists: every key above but dataset/preset
    methods = ["all"]           # 'all' = every registered method
    shots = [5]
    seeds = [1234]

A variant's own keys replace the grid's for its cells. Ready-made grids: grids/*.toml.

Command-line lists (--method, --mode, --fold, --way, --shot) replace the grid's own and also
restrict its variants: `bench sweep --grid grids/table2b.toml --method panet` runs PANet's cells
of every row, not the 5-shot variant's `methods = ["all"]` too. --seed replaces the grid's seeds;
a variant keeps its own. A cell whose seeds another cell of the same method, mode, fold and setting
runs too is dropped (`--shot 5` on grids/table2a.toml: the grid's row then gives every run at 5
shots, which holds the variant's seed 1234).
"""
from __future__ import annotations

import collections
import os
import statistics
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from bench.data.classes import N_FOLDS
from bench.core.errors import BenchError
from bench.core.termination import EXIT_CODE, Terminated, unwind_on_first_stop_signal
from bench.harness.annotations import MODES


@dataclass(frozen=True)
class Cell:
    method: str
    mode: str
    fold: int
    way: int
    shot: int
    dataset: str = "openmoji5i"
    preset: str = "wacv22"
    config: tuple = ()  # sorted (key, value) pairs: hashable, so a cell can key a dict
    profile: str | None = None  # embedded | reference; None: by dataset
    pseudo: tuple = ()
    seeds: tuple | None = None

    def label(self) -> str:
        from bench.core.errors import BenchError
        from bench.harness.registry import method_label

        extra = "".join(f" {k}={v}" for k, v in self.config + self.pseudo)
        try:
            name = method_label(self.method)  # a module path shows as its class's name, as in the records
        except BenchError:
            name = self.method
        return f"{name}{extra} {self.mode} fold {self.fold} {self.way}w{self.shot}s"


@dataclass(frozen=True)
class Paths:
    """Where a cell reads and writes, and the device it runs on (None: cuda when available)."""

    cache_dir: Path
    results_dir: Path
    data_root: Path | None = None
    device: str | None = None


@dataclass
class Outcome:
    cell: Cell
    seconds: float = 0.0
    miou: list = field(default_factory=list)  # per seed, in record order
    error: str = ""


def grid_cells(grid: dict, only: dict | None = None) -> list[Cell]:
    """Every cell of a grid dict (a parsed grid file, or the flags), in a stable order. `only`:
    key of ONLY_KEYS -> the values a cell may take (the command line's lists), for every row."""
    if not grid.get("methods") and not grid.get("variants"):
        raise BenchError("the sweep grid names no method; fix: pass --method NAME or `methods = [...]` in the grid file")
    base = {k: grid[k] for k in ("dataset", "preset", "profile") if k in grid}
    rows = ([{"methods": grid["methods"]}] if grid.get("methods") else []) + list(grid.get("variants", []))
    only = only or {}
    given = _row_methods({"methods": only["methods"]}) if "methods" in only else None  # the flags' methods, expanded once
    cells = []
    for row in rows:
        unknown = set(row) - ROW_KEYS
        if unknown:
            raise BenchError(f"unknown key(s) {', '.join(sorted(unknown))} in a sweep variant; fix: use {', '.join(sorted(ROW_KEYS))}")
        seeds = row.get("seeds", grid.get("seeds"))
        methods, modes = _row_methods(row, given), row.get("modes", grid.get("modes", ["full", "weak"]))
        for mode in modes:
            if mode not in MODES:
                raise BenchError(f"unknown mode '{mode}' in the sweep grid; use {', '.join(MODES)}")
        for method, mode, way, shot, fold in product(methods, modes, row.get("ways", grid.get("ways", [1])),
                                                     row.get("shots", grid.get("shots", [1])),
                                                     row.get("folds", grid.get("folds", list(range(N_FOLDS))))):
            cells.append(Cell(method, mode, int(fold), int(way), int(shot), **base,
                              config=tuple(sorted(row.get("set", {}).items())),
                              pseudo=tuple(sorted(row.get("pseudo", {}).items())) if mode != "full" else (),
                              seeds=tuple(seeds) if seeds else None))
    allowed = {ONLY_KEYS[k]: set(given if k == "methods" else v) for k, v in only.items()}
    return uncovered([c for c in dict.fromkeys(cells) if all(getattr(c, f) in values for f, values in allowed.items())])


def uncovered(cells: list[Cell]) -> list[Cell]:
    """`cells` less each one whose seeds another cell of the same method, mode, fold, setting and
    settings runs too (no seeds = every run of the preset): `--shot 5` on a grid whose own row gives
    every run and whose 5-shot variant gives seed 1234 evaluated seed 1234 twice."""
    from dataclasses import replace

    from bench.harness.presets import get_preset

    rest = [replace(c, seeds=None) for c in cells]
    shared = {r for r, n in collections.Counter(rest).items() if n > 1}  # only these need their runs resolved
    runs = [(set(c.seeds) if c.seeds is not None else set(get_preset(c.preset).seeds())) if rest[i] in shared else None
            for i, c in enumerate(cells)]

    def covered(i: int) -> bool:  # of two cells with the same seeds, the first stays
        return rest[i] in shared and any(rest[j] == rest[i] and (runs[i] < runs[j] or (runs[i] == runs[j] and j < i))
                                         for j in range(len(cells)) if j != i)

    return [c for i, c in enumerate(cells) if not covered(i)]


CLEANUP_S = 60.0  # how long a stopped worker may take to unwind before it is killed
ONLY_KEYS = {"methods": "method", "modes": "mode", "folds": "fold", "ways": "way", "shots": "shot"}  # grid key -> Cell field


ROW_KEYS = {"method", "methods", "modes", "folds", "ways", "shots", "seeds", "set", "pseudo"}


def _row_methods(row: dict, given: list[str] | None = None) -> list[str]:
    """A row's method names; 'all' = every built-in and entry-point method, or the command line's
    methods (already expanded) where it names some (a module path, as a plug-in is run, is not among 'every')."""
    from bench.harness.registry import known_methods

    names = row.get("methods") or ([row["method"]] if "method" in row else [])
    if not names:
        raise BenchError("a sweep variant names no method; fix: add method = \"NAME\" (or methods = [...]) to it")
    if "all" in names:
        names = list(given) if given else list(known_methods())
    return list(names)


def load_grid(path: Path) -> dict:
    import tomllib

    if not Path(path).is_file():
        raise BenchError(f"sweep grid file {path} not found; fix: pass an existing TOML file (see `bench sweep --help`)")
    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"sweep grid file {path} is not valid TOML ({exc}); fix the file") from None


def cell_request(cell: Cell, paths: Paths):
    from bench.harness.runner import RunRequest

    return RunRequest(method=cell.method, mode=cell.mode, dataset=cell.dataset, folds=(cell.fold,), way=cell.way,
                      shot=cell.shot, preset=cell.preset, seeds=cell.seeds, config=dict(cell.config),
                      pseudo=dict(cell.pseudo), data_root=paths.data_root, cache_dir=paths.cache_dir,
                      results_dir=paths.results_dir, profile=cell.profile)


def pending_cells(cells: list[Cell], paths: Paths, build: bool = True) -> list[Cell]:
    """The cells with at least one seed lacking a finished record. Builds what the check needs
    (dataset, episode files, pseudo masks) once, here, before any worker starts. With build=False
    (`--dry-run`, which promises to run nothing) pseudo masks are only looked up: a cell whose
    masks are not made yet is pending, as its records would be keyed by the masks' fingerprint."""
    from bench.data.datasets import get_dataset
    from bench.harness.annotations import annotation_source
    from bench.harness.presets import get_preset
    from bench.harness.registry import create_method
    from bench.harness.runner import pending_seeds, request_seeds, resolved_request

    sources: dict[tuple, object] = {}
    todo = []
    for cell in cells:
        create_method(cell.method, dict(cell.config))  # unknown method or setting: fail before anything runs
        req = resolved_request(cell_request(cell, paths))
        preset = get_preset(cell.preset)
        dataset = get_dataset(cell.dataset, paths.cache_dir, paths.data_root)
        key = (cell.dataset, cell.mode, cell.pseudo)
        if key not in sources:
            sources[key] = annotation_source(cell.mode, dataset, paths.cache_dir, req.pseudo, build)
        if sources[key] is None or pending_seeds(req, preset, dataset, sources[key], cell.fold, request_seeds(req, preset)):
            todo.append(cell)
    return todo


def run_cell(cell: Cell, paths: Paths, threads: int = 0) -> Outcome:
    """One cell in this process; never raises (the error text is the outcome)."""
    import json

    import torch

    from bench.core.device import use_device
    from bench.core.records import RunRecord
    from bench.harness.runner import run

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        use_device(paths.device)
        ran = run(cell_request(cell, paths), log=lambda *_: None)
        mious = [RunRecord(**json.loads(Path(p).read_text())).miou for p in ran.paths]
        return Outcome(cell, time.perf_counter() - start, mious)
    except BenchError as exc:
        return Outcome(cell, time.perf_counter() - start, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a cell's crash is reported, the sweep goes on
        last = traceback.format_exception(exc)[-3:]
        return Outcome(cell, time.perf_counter() - start, error="".join(last).strip())


class Eta:
    """Remaining time: each pending cell is expected to take its method's mean so far (methods differ
    by 10x in cost; one global mean after a cheap first cell promised minutes for an hour's work),
    or the mean of all finished cells for a method not seen yet; divided by the parallelism."""

    def __init__(self, cells: list[Cell], workers: int):
        self.pending = collections.Counter(c.method for c in cells)
        self.total, self.workers, self.done = len(cells), workers, 0
        self.seconds: dict[str, list[float]] = collections.defaultdict(list)
        self.start = time.perf_counter()

    def add(self, outcome: Outcome) -> str:
        self.done += 1
        self.pending[outcome.cell.method] -= 1
        self.seconds[outcome.cell.method].append(outcome.seconds)
        return (f"[{self.done}/{self.total}] elapsed {_minutes(time.perf_counter() - self.start)}, "
                f"ETA {_minutes(self.left())}")

    def left(self) -> float:
        every = [s for times in self.seconds.values() for s in times]
        mean = statistics.fmean(every) if every else 0.0
        work = sum(n * statistics.fmean(self.seconds.get(m) or [mean]) for m, n in self.pending.items())
        return work / max(1, min(self.workers, self.total - self.done))


def _minutes(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def local_outcomes(cells: list[Cell], paths: Paths, jobs: int, threads: int | None = None, cell_fn=None):
    """Yields each cell's Outcome as it finishes, `jobs` processes at a time, each with `threads`
    torch threads; by default an equal share of the cores (2 cores, 2 jobs: one thread each, no
    oversubscription). Fewer threads leave cores to another sweep sharing the machine. `cell_fn`
    (default run_cell, same signature, importable by a spawned worker) runs one cell."""
    cell_fn = cell_fn or run_cell
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    if jobs <= 1:
        for cell in cells:
            yield cell_fn(cell, paths, threads)
        return
    import multiprocessing

    # spawn: a fresh interpreter per worker (torch and fork do not mix well)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=unwind_on_first_stop_signal)
    try:
        futures = {pool.submit(_cell_in_worker, cell_fn, c, paths, threads) for c in cells}
        while futures:
            done, futures = wait(futures, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()
    except BaseException as exc:
        # an interrupted, terminated or abandoned sweep stops its running fits: left alone they
        # would train on, orphaned, for up to an hour, and queued cells would still start
        _stop_workers(pool, grace_s=0.0 if isinstance(exc, Terminated) else 10.0)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _cell_in_worker(cell_fn, cell: Cell, paths: Paths, threads: int) -> Outcome:
    try:
        return cell_fn(cell, paths, threads)
    except (KeyboardInterrupt, Terminated) as exc:
        # the cell's cleanup (atomic writes, locks, staged folders) ran as the interrupt unwound;
        # leave now: a pool worker that survives it would take the next queued cell
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE if isinstance(exc, Terminated) else 130)


def _stop_workers(pool: ProcessPoolExecutor, grace_s: float) -> None:
    """SIGTERM to each worker still alive after `grace_s`. SIGTERM to the sweep (`timeout`, a
    scheduler) reached this process only: no grace. Ctrl-C in a terminal reached the workers too,
    through the process group: they get time to unwind before a SIGTERM could cut their cleanup
    short (as does a sweep abandoned by its caller, or failed: the cause is not known here). Each
    unwinds and exits (_cell_in_worker)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # private: no public list before 3.14
    deadline = time.monotonic() + grace_s
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + CLEANUP_S
    for proc in processes:  # a worker ignores signals after its first (termination.py): a stuck cleanup is killed
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()


def ray_outcomes(cells: list[Cell], paths: Paths, address: str | None, cpus_per_cell: float, gpus_per_cell: float = 0):
    """Each cell as a Ray task on an existing cluster (`address`; None starts a local one). The
    cache and results folders must be one shared filesystem path on every node. With
    `gpus_per_cell`, Ray places each cell on a node with that many free GPUs and sets the task's
    CUDA_VISIBLE_DEVICES to them; the cell then runs on cuda (its first visible GPU) unless
    --device says otherwise, and its records keep both (`placement`)."""
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs Ray; fix: pip install 'wsfss-bench[ray]' (or pip install ray)") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, log_to_driver=False, include_dashboard=False)
    try:
        task = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell)(run_cell)
        threads = max(1, int(cpus_per_cell))
        pending = [task.remote(c, paths, threads) for c in cells]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def sweep(cells: list[Cell], paths: Paths, executor: str = "local", jobs: int | None = None, address: str | None = None,
          cpus_per_cell: float = 1.0, threads: int | None = None, log=print, gpus_per_cell: float = 0) -> list[Outcome]:
    if gpus_per_cell and executor != "ray":
        raise BenchError("--gpus-per-cell reserves GPUs through Ray; fix: add --executor ray, or use --device cuda:N "
                         "for the local executor")
    todo = pending_cells(cells, paths)
    log(f"sweep: {len(cells)} cells, {len(cells) - len(todo)} already recorded (skipped), {len(todo)} to run"
        + (f" on {executor}" if todo else ""))
    if not todo:
        return []
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    outcomes_iter = (ray_outcomes(todo, paths, address, cpus_per_cell, gpus_per_cell) if executor == "ray"
                     else local_outcomes(todo, paths, jobs, threads))
    eta = Eta(todo, jobs)
    outcomes = []
    for outcome in outcomes_iter:
        outcomes.append(outcome)
        # the error's last line now, so a long sweep that fails early can be stopped; the full text comes at the end
        status = (f"FAILED: {outcome.error.splitlines()[-1][:160]}" if outcome.error
                  else "mIoU " + ", ".join(f"{m:.1f}" for m in outcome.miou))
        log(f"{eta.add(outcome)}  {outcome.cell.label()}: {status} ({_minutes(outcome.seconds)})")
    failed = [o for o in outcomes if o.error]
    if failed:
        log(f"\n{len(failed)} of {len(todo)} cells failed (the others' records are written):")
        for o in failed:
            log(f"- {o.cell.label()}: {o.error}")
    return outcomes
