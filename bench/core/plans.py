"""What a run will build before it builds it (`bench plan`, `--dry-run`): each layer declares the
artefacts it would write as `Need`s; bench/harness/plan.py gathers them for a request.

A Need's size is computed, not guessed: the architecture is built with random weights (its
checkpoint's bytes are those of its state), a feature store's bytes per pixel come from one forward
pass, a folder of PNG masks is sized from the dataset's own mask files. Its time is a probe: one
unit of the work (a forward and backward pass of a training batch, one forward pass of a stored
image) is timed on the chosen device and multiplied by the number of units. Heads, data loading
and evaluation bookkeeping are not in the probes, so times are estimates (the plan says so)."""
from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class Need:
    what: str  # what it is, for a person: "DeepLabV3+ r18-os16 pretrained on the pool"
    path: Path | None  # where it is (or will be) written; None: nothing is written
    bytes: int  # disk bytes once built (0 when nothing is written)
    unit: Callable[[], None] | None = None  # one unit of the work, timed by `probe_seconds`
    count: float = 0  # units of work to build it
    exists: bool | None = None  # None: decided by whether `path` exists
    note: str = ""
    kind: str = ""  # "pseudo masks": fits trained on them are keyed by them (bench/harness/plan.py)

    def built(self) -> bool:
        if self.exists is not None:
            return self.exists
        return self.path is not None and self.path.exists()


def probe_seconds(unit: Callable[[], None], repeats: int = 2) -> float:
    """Seconds of one unit of work: one warm-up call, then the fastest of `repeats`."""
    unit()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        unit()
        best = min(best, time.perf_counter() - t0)
    return best


def state_bytes(state) -> int:
    """Bytes of `torch.save(state)` (a pool net's file) without writing it."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell()


def pickled_bytes(state) -> int:
    """Bytes of a method checkpoint (the runner pickles the method's state_dict)."""
    import pickle

    return len(pickle.dumps(state))


def training_unit(model_factory: Callable, batch: int, size: int | tuple[int, int], outputs=None) -> Callable[[], None]:
    """One training step's compute of a network: forward and backward of a random batch
    (`outputs(model, x)` picks what the loss reads; default the model's output)."""
    import torch

    model = model_factory()
    model.train()
    h, w = (size, size) if isinstance(size, int) else size
    from bench.core.device import device

    x = torch.randn(batch, 3, h, w, device=device())

    def unit():
        out = outputs(model, x) if outputs else model(x)
        out = out if isinstance(out, torch.Tensor) else sum(o.float().mean() for o in out)
        out.float().mean().backward()
        model.zero_grad(set_to_none=True)

    return unit


def human_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s"


def free_bytes(folder: Path) -> int:
    """Free space on the disk that holds `folder` (its nearest existing parent when not made yet)."""
    import shutil

    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


@dataclass
class PlanContext:
    """What a method's `plan` hook is told: the same things its `fit` would get, without the work."""

    pool: object | None  # the disjoint pool reader (None on real data)
    cache_dir: Path
    images: object  # image store of every training and test image (bench/data/stores.py)
    train_ids: list  # training images of the planned folds (union)
    test_ids: list
    train_size: object  # the preset's sizes (bench/data/sizes.py)
    eval_size: object
    fold_images: int  # training images of one fold (the largest), for epoch-based schedules
    n_base: int  # base classes of a fold
    way: int
    shot: int


@dataclass
class MethodPlan:
    """A method's answer: shared artefacts (pool nets, feature stores), what one fold's checkpoint
    holds (a state of the same shapes, so its pickled size is exact; None: nothing saved), and the
    fit's and one evaluation episode's work as (timed unit, count)."""

    needs: list
    state: dict | None
    fit: tuple  # (unit, count)
    episode: tuple  # (unit, count per episode)


def square(size, default: int = 129) -> tuple[int, int]:
    """A representative (H, W) for probes: the preset's size, or `default` for 'own size'."""
    if size is None:
        return default, default
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
