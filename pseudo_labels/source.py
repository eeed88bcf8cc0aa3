"""Weak mode's AnnotationSource: pseudo masks read from the generator's cache folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.data.datasets import check_same_size, read_mask
from pseudo_labels.config import pseudo_config
from pseudo_labels.generate import check_complete, generate_pseudo_masks


class PseudoMasks:
    kind = "weak"

    def __init__(self, dataset, root: Path):
        self.dataset = dataset
        self.root = check_complete(Path(root))
        self.manifest = json.loads((self.root / "manifest.json").read_text())

    def mask_path(self, image_id: str) -> Path:
        return self.root / "SegmentationClass" / f"{image_id}.png"

    def mask(self, image_id: str) -> np.ndarray:
        mask = read_mask(self.mask_path(image_id))
        check_same_size(self.dataset.image(image_id), mask, self.dataset.image_path(image_id), self.mask_path(image_id))
        return mask

    def mask_store(self, ids):
        """The pseudo masks of `ids` alone, as files: no way back to the dataset reader."""
        from bench.data.stores import MaskFiles

        return MaskFiles({i: (self.mask_path(i), self.dataset.image_path(i)) for i in ids})

    def fingerprint(self) -> str:
        return f"pseudo:{self.dataset.name}:{self.manifest['fingerprint']}"


def pseudo_masks_for(dataset, cache_dir: Path, overrides: dict | None = None, log=print) -> PseudoMasks:
    """Pseudo masks of `dataset` under the given settings, generated on first use."""
    root = generate_pseudo_masks(dataset, pseudo_config(overrides), Path(cache_dir), log)
    return PseudoMasks(dataset, root)


def cached_pseudo_masks(dataset, cache_dir: Path, overrides: dict | None = None) -> PseudoMasks | None:
    """The finished pseudo masks of `dataset` under the given settings if they are in the cache,
    else None; never generates (for figures drawn from records)."""
    from dataclasses import asdict

    from pseudo_labels.config import PseudoConfig

    want = json.loads(json.dumps(asdict(pseudo_config(overrides))))
    defaults = json.loads(json.dumps(asdict(PseudoConfig())))
    for manifest in sorted((Path(cache_dir) / "pseudo" / "masks").glob(f"{dataset.name}-*/manifest.json")):
        found = json.loads(manifest.read_text())
        config = found.get("config", {})  # a setting added since it was written had its default value
        if (all(config.get(k, defaults[k]) == v for k, v in want.items()) and found.get("dataset_fingerprint") == dataset.fingerprint()
                and (manifest.parent / "COMPLETE").is_file()):
            return PseudoMasks(dataset, manifest.parent)
    return None


def recorded_pseudo_masks(dataset, cache_dir: Path, annotation_fingerprint: str) -> PseudoMasks:
    """The pseudo masks a weak record was made with ("pseudo:<dataset>:<fingerprint>"), read from the
    cache; one clear error when they are gone."""
    from bench.core.errors import BenchError
    from pseudo_labels.generate import pseudo_root

    root = pseudo_root(cache_dir, dataset, annotation_fingerprint.rsplit(":", 1)[-1])
    if not (root / "COMPLETE").is_file():
        raise BenchError(f"the pseudo masks of this record ({annotation_fingerprint}) are not in {root.parent}; "
                         f"fix: `bench pseudo generate` with the record's pseudo settings, or re-run the cell")
    return PseudoMasks(dataset, root)
