"""The Python API the command line is a thin layer over, for scripts and notebooks:

    from bench import api
    records = api.run("ours", mode="weak", dataset="openmoji5i-mini", preset="quick", folds=[0])
    frame = api.table(dataset="openmoji5i-mini")      # one row per method, mode, split
    checks = api.check_method("mypkg.mymodule:MyMethod")

Every function takes the same names as the CLI flags and returns data, not text."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.core.records import RunRecord, load_records
from bench.data.classes import N_FOLDS
from bench.harness.contract import Check
from bench.harness.control import ControlRecord
from bench.harness.control import control as _control
from bench.harness.contract import check_method as _check_method
from bench.harness.runner import RunRequest
from bench.harness.runner import run as _run
from bench.report.tables import check_tableable, rescored, selected_records, setting_frame


def run(method: str, mode: str = "weak", dataset: str = "openmoji5i", folds=None, way: int = 1, shot: int = 1,
        preset: str = "wacv22", seeds=None, config: dict | None = None, pseudo: dict | None = None,
        data_root: Path | None = None, cache_dir: Path = Path("cache"), results_dir: Path = Path("results"),
        force: bool = False, retrain: bool = False, save_predictions: Path | None = None, allow_leak: bool = False,
        log=print, profile: str | None = None) -> list[RunRecord]:
    """`bench run`: fits (or loads) and evaluates, writes the records, and returns them."""
    req = RunRequest(method=method, mode=mode, dataset=dataset, folds=tuple(folds) if folds is not None else tuple(range(N_FOLDS)),
                     way=way, shot=shot, preset=preset, seeds=tuple(seeds) if seeds is not None else None,
                     config=dict(config or {}), pseudo=dict(pseudo or {}), data_root=data_root, cache_dir=Path(cache_dir),
                     results_dir=Path(results_dir), force=force, retrain=retrain, save_predictions=save_predictions,
                     allow_leak=allow_leak, profile=profile)
    paths = {Path(p).resolve() for p in _run(req, log=log).paths}
    return [r for p, r in load_records(Path(results_dir)) if p.resolve() in paths]


def control(method: str, mode: str = "weak", dataset: str = "openmoji5i", folds=None, way: int = 1, shot: int = 1,
            preset: str = "wacv22", seed: int | None = None, config: dict | None = None, pseudo: dict | None = None,
            data_root: Path | None = None, cache_dir: Path = Path("cache"), results_dir: Path = Path("results"),
            log=print, profile: str | None = None) -> list[ControlRecord]:
    """`bench control`: the support-sensitivity control (bench/harness/control.py), one record per fold."""
    req = RunRequest(method=method, mode=mode, dataset=dataset, folds=tuple(folds) if folds is not None else tuple(range(N_FOLDS)),
                     way=way, shot=shot, preset=preset, seeds=(seed,) if seed is not None else None, config=dict(config or {}),
                     pseudo=dict(pseudo or {}), data_root=data_root, cache_dir=Path(cache_dir), results_dir=Path(results_dir),
                     profile=profile)
    return _control(req, log=log)


def records(results_dir: Path = Path("results"), **filters) -> list[RunRecord]:
    """Every run record under `results_dir` whose fields equal the given filters (dataset=..., way=...)."""
    return [r for _, r in selected_records(Path(results_dir), filters)]


def table(results_dir: Path = Path("results"), scoring: dict | None = None, **filters) -> pd.DataFrame:
    """`bench table`'s numbers as a long DataFrame: dataset, preset, way, shot, method (the table's
    row label), mode (full, weak or Δ), split (a fold, or 'mean'), miou (mean over runs), std, runs.
    Refuses the record sets `bench table` refuses. `scoring` re-scores as `bench table --absent-ways
    --fbiou --iou` do, e.g. {"absent_ways": "skip", "iou": "per-episode"}."""
    chosen = rescored(selected_records(Path(results_dir), filters), scoring)
    check_tableable(chosen)
    return setting_frame([r for _, r in chosen])


def check_method(name: str, config: dict | None = None, cache_dir: Path = Path("cache")) -> list[Check]:
    """`bench check-method`: each check of the method contract (bench/harness/contract.py)."""
    return _check_method(name, config, Path(cache_dir), log=lambda *_: None)
