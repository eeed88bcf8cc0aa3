"""Lets mmsegmentation import on mmcv-lite (pure Python, no compiled ops).

`import mmseg.models` imports `mmcv.ops` (for point_sample and a few heads we never build), and
mmcv-lite's `mmcv.ops` fails on its missing `mmcv._ext`. DeepLabV3+ needs no compiled op, so a
small stand-in module is registered first: `point_sample` in plain PyTorch (the same maths as
mmcv's grid_sample path), and any other op a clear error when it is used, not when imported.
"""
from __future__ import annotations

import sys
import types
import warnings

import torch.nn.functional as F

from bench.core.errors import BenchError


def point_sample(input, points, align_corners: bool = False, **kwargs):
    """Sample `input` (N, C, H, W) at `points` (N, P, 2) or (N, Hp, Wp, 2) given in [0, 1] x [0, 1]."""
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    out = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if add_dim else out


class _MissingOp:
    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise BenchError(
            f"mmcv.ops.{self.name} needs mmcv's compiled ops, which mmcv-lite lacks; fix: use a model "
            "without it (DeepLabV3+ needs none) or install a full mmcv build"
        )


def _ops_module() -> types.ModuleType:
    mod = types.ModuleType("mmcv.ops")
    mod.point_sample = point_sample
    mod.__getattr__ = lambda name: _MissingOp(name) if not name.startswith("__") else None
    mod.__wsfss_standin__ = True
    return mod


def install() -> None:
    """Idempotent; call before the first `import mmseg...`."""
    existing = sys.modules.get("mmcv.ops")
    if existing is not None and getattr(existing, "__wsfss_standin__", False):
        return
    try:
        import mmcv
    except ImportError:
        raise BenchError("the DeepLabV3+ backbone needs mmcv-lite, mmengine and mmsegmentation; "
                         "fix: pip install -e . (they are project dependencies)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mmcv-lite warns about every compiled op it lacks
            import mmcv.ops  # noqa: F401  a full mmcv build has real ops: keep them
        return
    except ImportError:
        pass
    sys.modules["mmcv.ops"] = _ops_module()
    mmcv.ops = sys.modules["mmcv.ops"]
