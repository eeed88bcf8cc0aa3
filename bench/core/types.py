"""The core types that carry data between stages (DESIGN.md: the six typed concepts; the
IoUAccumulator lives in bench/harness/metrics.py and the RunRecord in bench/core/records.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

IGNORE = 255


@dataclass(frozen=True)
class EpisodeSpec:
    """One test episode: way j (1-based in labels) is class class_ids[j-1]; support_ids[j-1] holds
    its K support images and query_ids[j-1] its query (one query per way, as PANet)."""

    index: int
    dataset: str
    fold: int
    way: int
    shot: int
    class_ids: tuple[int, ...]
    support_ids: tuple[tuple[str, ...], ...]
    query_ids: tuple[str, ...]

    def to_json(self) -> dict:
        return {
            "index": self.index, "dataset": self.dataset, "fold": self.fold, "way": self.way, "shot": self.shot,
            "class_ids": list(self.class_ids), "support_ids": [list(s) for s in self.support_ids],
            "query_ids": list(self.query_ids),
        }

    @classmethod
    def from_json(cls, d: dict) -> "EpisodeSpec":
        return cls(d["index"], d["dataset"], d["fold"], d["way"], d["shot"], tuple(d["class_ids"]),
                   tuple(tuple(s) for s in d["support_ids"]), tuple(d["query_ids"]))


@dataclass
class EpisodeInput:
    """What a method sees at test time. Support masks come from the AnnotationSource (GT in full
    mode, pseudo masks in weak mode) as episode labels: 0 background, j = way j, 255 ignore.
    The query ground truth is never here."""

    class_ids: tuple[int, ...]
    support_images: list[list[np.ndarray]]  # [way][shot] HxWx3 uint8
    support_masks: list[list[np.ndarray]]  # [way][shot] HxW uint8
    query_images: list[np.ndarray]  # one per way
    support_ids: tuple[tuple[str, ...], ...] = ()
    query_ids: tuple[str, ...] = ()  # ids for bookkeeping only (saving predictions)

    @property
    def way(self) -> int:
        return len(self.class_ids)

    @property
    def shot(self) -> int:
        return len(self.support_images[0])


@runtime_checkable
class AnnotationSource(Protocol):
    """Where training masks and test support masks come from. Full vs weak is only this choice."""

    kind: str

    def mask(self, image_id: str) -> np.ndarray: ...

    def mask_store(self, ids): ...

    def fingerprint(self) -> str: ...


class GroundTruthMasks:
    kind = "full"

    def __init__(self, dataset):
        self.dataset = dataset

    def mask(self, image_id: str) -> np.ndarray:
        return self.dataset.mask(image_id)

    def mask_store(self, ids):
        """The GT masks of `ids` alone (bench/data/stores.py), with no way back to the reader."""
        return self.dataset.mask_store(ids)

    def fingerprint(self) -> str:
        return f"gt:{self.dataset.name}:{self.dataset.fingerprint()}"


class Method(Protocol):
    """A few-shot segmentation method. `fit` gets the fold's FitView (bench/harness/views.py),
    `predict` an EpisodeInput and returns one HxW uint8 label map (0..N) per query, at the query
    image's size. Methods never branch on full/weak: they only see masks. `name` labels records
    and tables (README, "Adding a method")."""

    name: str

    def fit(self, view: Any, config: dict) -> None: ...

    def predict(self, episode: EpisodeInput) -> list[np.ndarray]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def episode_labels(mask: np.ndarray, class_ids, ignore_255: bool = True) -> np.ndarray:
    """Global class mask -> episode labels: class_ids[j] -> j+1, 255 kept (or -> 0), rest -> 0."""
    lut = np.zeros(256, np.uint8)
    for j, c in enumerate(class_ids):
        lut[c] = j + 1
    lut[IGNORE] = IGNORE if ignore_255 else 0
    return lut[mask]
