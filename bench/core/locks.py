"""One builder per cached artefact across processes. `bench sweep` runs cells in parallel (a
process pool, or Ray tasks on one node) and many cells need the same pretrained net, feature
store or pseudo-mask folder on first use: without a lock each process would train it again, and
builders that stage into a fixed temporary folder would trample each other."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from bench.core.pinning import fixed_threads, pinned_threads


@contextmanager
def one_builder(artefact: Path):
    """Blocks while another process builds `artefact`; the caller checks again inside whether it
    exists. An advisory flock on `<artefact>.lock`, released when the process dies, so a killed
    worker never leaves the artefact locked. The holder runs with the pinned thread count (see build_threads)."""
    lock = Path(artefact).with_name(Path(artefact).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with build_threads():
            yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def build_threads():
    """A shared artefact is built with the pinned thread count (bench/core/pinning.py), whatever the
    caller's: a CPU-trained net depends on the thread count, so `bench run`, `bench sweep` (cores /
    jobs threads per worker) and another machine build the same artefact. While one worker builds
    (a pool pretraining of 20 min) the others wait on its lock, so their cores are free for it."""
    with fixed_threads(pinned_threads()):
        yield
