"""One builder per cached artefact across processes. `bench sweep` runs cells in parallel (a
process pool, or Ray tasks on one node) and many cells need the same pretrained net, feature
store or pseudo-mask folder on first use: without a lock each process would train it again, and
builders that stage into a fixed temporary folder would trample each other."""
from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def one_builder(artefact: Path):
    """Blocks while another process builds `artefact`; the caller checks again inside whether it
    exists. An advisory flock on `<artefact>.lock`, released when the process dies, so a killed
    worker never leaves the artefact locked. The holder runs with every core (see build_threads)."""
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
    """Torch uses every core while building a shared artefact, then the caller's count again. A
    sweep worker runs with cores / jobs threads, and while it builds (a pool pretraining of
    20 min) the other workers wait on the same lock: one thread would leave their cores idle.
    Also, a CPU-trained net depends on the thread count, so a fixed count makes `bench run` and
    `bench sweep` build the same artefact on one machine."""
    torch = sys.modules.get("torch")  # builders that never import torch (dataset drawing) stay torch-free
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
