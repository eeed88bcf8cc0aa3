"""Flags that several commands share, each declared once, and the small parsers they use."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.data.classes import N_FOLDS
from bench.harness.annotations import MODES


def default_cache() -> Path:
    return Path(os.environ.get("WSFSS_CACHE", "cache"))


def folds(value: str) -> tuple[int, ...]:
    if value == "all":
        return tuple(range(N_FOLDS))
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"folds are 'all' or comma-separated numbers, got '{value}'") from None


class ExtendFolds(argparse.Action):
    """`--fold 0 --fold 2` means folds 0 and 2, like `--fold 0,2`; a plain `store` kept only the last."""

    def __call__(self, parser, namespace, values, option_string=None):
        chosen = getattr(namespace, self.dest) or ()
        setattr(namespace, self.dest, tuple(dict.fromkeys((*chosen, *values))))


def fold_flag(p: argparse.ArgumentParser, help: str = "'all' or e.g. 0 or 0,2 (repeatable)") -> None:
    p.add_argument("--fold", type=folds, action=ExtendFolds, default=None, help=help)


def dataset_flags(p: argparse.ArgumentParser, default: str | None = "openmoji5i", root: bool = True) -> None:
    """--dataset, and --data-root for the real datasets."""
    p.add_argument("--dataset", default=default)
    if root:
        p.add_argument("--data-root", type=Path, default=None, help="folder of a real dataset (pascal5i, coco20i)")


def results_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-dir", type=Path, default=Path("results"))


def device_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, metavar="cpu|cuda[:N]",
                   help="where the networks run (default: cuda when available, else cpu)")


def set_flag(p: argparse.ArgumentParser, help: str | None = "method config override") -> None:
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=help)


def pseudo_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pseudo-set", dest="pseudo", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="weak mode: pseudo-label setting override, e.g. saliency=none (see `bench pseudo --help`)")


def mode_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default="weak",
                   help="full: GT masks; weak: pseudo masks for training and test supports (the paper); "
                        "weak-test: GT for training, pseudo for test supports (IMR-HSNet)")


def cell_flags(p: argparse.ArgumentParser) -> None:
    """What names one setting of a method's runs: method, mode, dataset, folds, way, shot, preset."""
    p.add_argument("--method", required=True)
    mode_flag(p)
    dataset_flags(p)
    fold_flag(p, "'all' (default) or e.g. 0 or 0,2 (repeatable)")
    p.add_argument("--way", type=int, default=1)
    p.add_argument("--shot", type=int, default=1)
    p.add_argument("--preset", default="wacv22")
    profile_flag(p)


def profile_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=("embedded", "reference"), default=None,
                   help="training schedule: embedded (CPU budget) or reference (the reference codes' cited values, "
                        "bench/core/profiles.py); default: reference on pascal5i/coco20i, embedded on the generated sets")


def record_filters(p: argparse.ArgumentParser, way_shot: bool = True) -> None:
    """Which records a table, figure or check reads: --dataset/--preset (and --way/--shot)."""
    p.add_argument("--dataset", default=None)
    p.add_argument("--preset", default=None, help="name@version as in the records, e.g. wacv22@v2")
    p.add_argument("--profile", choices=("embedded", "reference"), default=None, help="only records of this profile")
    if way_shot:
        p.add_argument("--way", type=int, default=None)
        p.add_argument("--shot", type=int, default=None)


def filters_of(args) -> dict:
    return {"dataset": args.dataset, "preset": args.preset, "way": getattr(args, "way", None),
            "shot": getattr(args, "shot", None), "profile": args.profile}
