"""Supervision settings, named, and the annotation sources each one uses. Papers call different
things "weak": the WACV'22 paper trains and tests on image-level labels (pseudo masks for training
and for the test supports), while IMR-HSNet (IJCAI'22), AFANet and TLG train on base-class pixel
masks and use image-level labels only at test. A mode fixes three things, recorded in every
record and named under every table:
- full: training masks GT, test support masks GT, the query's class not given;
- weak: training masks pseudo, test support masks pseudo, not given (the paper's setting);
- weak-test: training masks GT, test support masks pseudo, not given (the IMR-HSNet setting).
The query is always scored against GT."""
from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError
from bench.core.types import GroundTruthMasks

SUPERVISION = {  # mode -> what it gives
    "full": {"train_masks": "gt", "support_masks": "gt", "query_class_given": False},
    "weak": {"train_masks": "pseudo", "support_masks": "pseudo", "query_class_given": False},
    "weak-test": {"train_masks": "gt", "support_masks": "pseudo", "query_class_given": False},
}
MODES = tuple(SUPERVISION)


def check_mode(mode: str) -> None:
    if mode not in SUPERVISION:
        raise BenchError(f"unknown mode '{mode}'; use {', '.join(MODES)}")


def annotation_sources(mode: str, dataset, cache_dir: Path, pseudo: dict | None = None, build: bool = True):
    """(source of the training masks, source of the test support masks) of a mode. Pseudo masks are
    generated on first use; with build=False only looked up in the cache (None where not made yet),
    for callers that promise to run nothing (`bench sweep --dry-run`)."""
    check_mode(mode)
    kinds = SUPERVISION[mode]
    if pseudo and "pseudo" not in kinds.values():
        raise BenchError("--pseudo-set only applies to modes that use pseudo masks (weak, weak-test); full mode uses "
                         "ground-truth masks")
    sources = {}
    for kind in set(kinds.values()) - {False, True}:
        if kind == "gt":
            sources[kind] = GroundTruthMasks(dataset)
        else:
            from pseudo_labels.source import cached_pseudo_masks, pseudo_masks_for

            sources[kind] = pseudo_masks_for(dataset, cache_dir, pseudo) if build else cached_pseudo_masks(dataset, cache_dir, pseudo)
    return sources[kinds["train_masks"]], sources[kinds["support_masks"]]


def annotation_source(mode: str, dataset, cache_dir: Path, pseudo: dict | None = None, build: bool = True):
    """The source of the test support masks of a mode (for full and weak: also the training masks)."""
    return annotation_sources(mode, dataset, cache_dir, pseudo, build)[1]


def training_mode(mode: str) -> str:
    """The mode whose fit this mode's fit is: weak-test trains on GT as full does (one checkpoint)."""
    return "full" if SUPERVISION[mode]["train_masks"] == "gt" else "weak"


def supervision_legend(modes) -> str:
    words = {"gt": "GT", "pseudo": "pseudo"}
    return ", ".join(f"{m} = training {words[SUPERVISION[m]['train_masks']]}, supports {words[SUPERVISION[m]['support_masks']]}"
                     for m in MODES if m in set(modes)) + "; query class never given"
