"""Choice of AnnotationSource for a mode: full = ground-truth masks, weak = pseudo masks."""
from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError
from bench.core.types import GroundTruthMasks


def annotation_source(mode: str, dataset, cache_dir: Path, pseudo: dict | None = None):
    if mode == "full":
        if pseudo:
            raise BenchError("--pseudo-set only applies to --mode weak (full mode uses ground-truth masks)")
        return GroundTruthMasks(dataset)
    if mode == "weak":
        from pseudo_labels.source import pseudo_masks_for

        return pseudo_masks_for(dataset, cache_dir, pseudo)
    raise BenchError(f"unknown mode '{mode}'; use full or weak")
