"""In-RAM memos bounded in bytes, least recently used out first.

Every per-image memo (feature arrays, embeddings, trunk outputs) is bounded by what it holds, not
by how many entries: 4,096 entries were 780 MB of the embedded set's float16 features but would be
~49 GB of ResNet-50 features of 500x375 VOC images. The budget per memo is
$WSFSS_RAM_MB (default 2048 MB); 0 keeps nothing. The disk budget of the feature stores,
$WSFSS_STORE_GB, is read here too, so that records can keep both (`budgets`, in `pinning()`).
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch

DEFAULT_MB = 2048
DEFAULT_STORE_GB = 20.0


def default_budget() -> int:
    """Bytes each memo may hold: $WSFSS_RAM_MB megabytes (default 2048)."""
    return int(float(os.environ.get("WSFSS_RAM_MB", DEFAULT_MB)) * 2**20)


def store_budget() -> float:
    """Bytes a per-image feature store may take on disk ($WSFSS_STORE_GB; backbones/features.py)."""
    return float(os.environ.get("WSFSS_STORE_GB", DEFAULT_STORE_GB)) * 1e9


def budgets() -> dict:
    """The memory and disk budgets in force, for records: over a store's budget features are
    computed per batch (equal to stored ones up to a float16 step), and what a RAM memo evicts is
    recomputed in another batch, so a fit may move in its last bits with either."""
    return {"ram_mb": default_budget() / 2**20, "store_gb": store_budget() / 1e9}


def nbytes(value) -> int:
    """Bytes held by a tensor, an array, or a list/tuple/dict of them (other values: 0)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return 0


class BytesLRU:
    """A dict-like memo that evicts least recently used entries beyond `limit` bytes. An entry
    larger than the whole budget is returned to the caller but not kept."""

    def __init__(self, limit: int | None = None):
        self.limit = default_budget() if limit is None else int(limit)
        self._items: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self.held = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def get(self, key):
        """The value (now the most recently used) or None."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key, value) -> None:
        self.pop(key)
        size = nbytes(value)
        if size > self.limit:
            return
        self._items[key] = value
        self._sizes[key] = size
        self.held += size
        while self.held > self.limit:
            self.pop(next(iter(self._items)))

    def pop(self, key):
        if key not in self._items:
            return None
        self.held -= self._sizes.pop(key)
        return self._items.pop(key)

    def clear(self) -> None:
        self._items.clear()
        self._sizes.clear()
        self.held = 0


class FeatureMemo:
    """Per-test-image outputs of a network that is fixed after training: the runs of a protocol
    reuse a fold's test images, so each is computed once (keyed by id and size, since a preset
    may resize; bounded in bytes)."""

    def __init__(self, limit: int | None = None):
        self._memo = BytesLRU(limit)

    def __len__(self) -> int:
        return len(self._memo)

    def clear(self) -> None:
        self._memo.clear()

    def get(self, ids, images: list[np.ndarray], compute) -> list:
        """compute(list of images) -> per-image outputs (indexable); ids may be empty (no memo)."""
        if not ids or len(ids) != len(images):
            return list(compute(images))
        keys = [(i, im.shape) for i, im in zip(ids, images)]
        return self.by_key(keys, lambda at: compute([images[n] for n in at]))

    def by_key(self, keys: list, compute_at) -> list:
        """compute_at(positions in `keys`) -> outputs for the keys not yet memoised. The batch's
        own outputs are collected before anything is evicted (evicting a hit of this very batch
        once failed PFENet's training on openmoji20i with a KeyError)."""
        where = {k: n for n, k in enumerate(keys)}
        found = {k: v for k in where if (v := self._memo.get(k)) is not None}
        todo = [k for k in where if k not in found]
        if todo:
            found.update(zip(todo, compute_at([where[k] for k in todo])))
            for k in todo:
                self._memo.put(k, found[k])
        return [found[k] for k in keys]
