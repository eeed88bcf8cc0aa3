"""Where the networks run: `--device cpu|cuda|cuda:N` (default: cuda when available).

One process-wide choice, set once by the command line (or a sweep worker) before any model is
built; every model and tensor goes there through `device()` / `tensor()`, and every result leaves
through `to_numpy()`, so a method never needs to know which device it is on. The choice is not
part of any fingerprint: the numbers do not depend on it beyond float rounding.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from bench.core.errors import BenchError

_current: torch.device | None = None
_requested: str | None = None


def parse_device(spec: str | None) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N' -> a device that exists here; None -> cuda when available, else cpu."""
    if spec is None or spec == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", spec):
        raise BenchError(f"unknown device '{spec}'; use cpu, cuda or cuda:N")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchError(f"--device {spec}: no CUDA device is available here (torch {torch.__version__}); fix: --device cpu")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise BenchError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s); fix: cuda:0 .. "
                             f"cuda:{torch.cuda.device_count() - 1}")
    return torch.device(spec)


def use_device(spec: str | None) -> torch.device:
    """Sets the process-wide device (validated) and returns it."""
    global _current, _requested
    _current = parse_device(spec)
    _requested = spec
    return _current


def placement() -> dict:
    """What a record says about where it ran: the device asked for ('auto' = cuda when available)
    and the GPUs the process was given (CUDA_VISIBLE_DEVICES, as a scheduler such as Ray sets it)."""
    import os

    return {"device_request": _requested or "auto", "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def device() -> torch.device:
    """The process-wide device (chosen on first use when nothing set it)."""
    global _current
    if _current is None:
        _current = parse_device(None)
    return _current


def tensor(array, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A numpy array (or anything np.asarray takes) as a tensor on the device."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.to(device=device(), dtype=dtype) if dtype is not None else t.to(device())


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The one exit of results from the device."""
    return t.detach().cpu().numpy()


def forked_rng():
    """torch.random.fork_rng over the CPU and the current CUDA device: a cached artefact trained
    inside leaves the caller's random streams as they were."""
    d = device()
    return torch.random.fork_rng(devices=[d.index or 0] if d.type == "cuda" else [])


def cpu_state(module: torch.nn.Module) -> dict:
    """A module's state dict on the CPU: checkpoints load on any machine."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}
