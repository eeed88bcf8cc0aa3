"""Loading weight files with one clear error for a missing, truncated or corrupt file.

torch.load on a cut-off download raises anything from EOFError to zipfile.BadZipFile or a
RuntimeError deep in the unpickler; a user should see which file and what to do instead.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from bench.core.errors import BenchError

LOAD_ERRORS = (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, KeyError, AttributeError)


def load_weights(path: Path, what: str, fix: str, weights_only: bool = True):
    """torch.load(path) on the CPU (models move to the device afterwards)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{what} {path} not found; fix: {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except LOAD_ERRORS as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise BenchError(f"{what} {path} is truncated or not a PyTorch weight file ({type(exc).__name__}: {first}); "
                         f"fix: {fix}") from None
