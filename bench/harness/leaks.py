"""The leak hunter: walks every object reachable from what a method is given and reports each one
that yields a ground-truth mask the protocol withholds.

Reached through: public and private attributes (`__dict__`, `__slots__` along the class's MRO),
properties of objects, items of lists, tuples, sets and dicts (keys and values), bound methods'
`__self__` and `__func__`, functions' closures, defaults and `__wrapped__`, and partials' arguments,
to `depth` steps. Not walked: modules, classes and functions' globals (a method may import any
module; what is checked is what the harness hands it). An object is a finding when
- it is a reader or annotation source of the benchmark (by class name; `forbidden`), or
- it has a `mask`-like method (mask, gt, ground_truth, target, annotation) that returns, for a
  withheld image id, that image's ground truth, or
- it is a 2-D array whose foreground is exactly one class's region in a withheld image's ground
  truth (as class ids or as episode labels, at any size).
Pure Python and numpy, duck-typed, so the same function runs against older code (the note of
issue 21 shows it finding the `TrainSource.dataset` door)."""
from __future__ import annotations

import functools
import types
from pathlib import PurePath
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

MASK_NAMES = ("mask", "gt", "ground_truth", "target", "annotation")
FORBIDDEN = ("VocLayoutDataset", "CocoDataset", "GroundTruthMasks", "PseudoMasks", "COCO")
_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), PurePath, range, slice)
_SKIP = (types.ModuleType, type, types.BuiltinFunctionType, types.BuiltinMethodType)


def hunt(roots: dict[str, object], withheld: Callable[[str], np.ndarray], probe_ids: Iterable[str], depth: int = 6,
         forbidden: tuple[str, ...] = FORBIDDEN, allowed: Callable[[object], bool] = lambda obj: False) -> list[str]:
    """Findings as 'path: what'. `withheld(id)` is the GT mask of an image whose GT the method may
    not see; `probe_ids` are such images; `allowed(obj)` exempts an object (e.g. the disjoint pool's
    reader, whose GT is the method's to use)."""
    probes = {i: np.asarray(withheld(i)) for i in probe_ids}
    findings = []
    for path, obj in reachable(roots, depth, allowed):
        findings += [f"{path}: {what}" for what in _verdicts(obj, probes, forbidden)]
    return findings


def reachable(roots: dict[str, object], depth: int, allowed=lambda obj: False) -> Iterator[tuple[str, object]]:
    """(path, object) breadth first, each object once."""
    seen: set[int] = set()
    frontier = [(name, obj) for name, obj in roots.items()]
    for _ in range(depth + 1):
        nxt = []
        for path, obj in frontier:
            if id(obj) in seen or isinstance(obj, _SKIP) or allowed(obj):
                continue
            seen.add(id(obj))
            yield path, obj
            if not isinstance(obj, _LEAVES + (np.ndarray,)):
                nxt += [(f"{path}{step}", child) for step, child in _children(obj)]
        frontier = nxt


def _children(obj) -> Iterator[tuple[str, object]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"[{k!r}]", v
            yield f".keys()[{k!r}]", k
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for k, v in enumerate(obj):
            yield f"[{k}]", v
        return
    if isinstance(obj, types.MethodType):
        yield ".__self__", obj.__self__
        yield ".__func__", obj.__func__
        return
    if isinstance(obj, types.FunctionType):
        for k, cell in enumerate(obj.__closure__ or ()):
            try:
                yield f".__closure__[{k}]", cell.cell_contents
            except ValueError:  # empty cell
                pass
        yield ".__defaults__", obj.__defaults__
        yield ".__kwdefaults__", obj.__kwdefaults__
        if hasattr(obj, "__wrapped__"):
            yield ".__wrapped__", obj.__wrapped__
        return
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        yield ".args", obj.args
        yield ".keywords", obj.keywords
        return
    for name, value in getattr(obj, "__dict__", {}).items():
        yield f".{name}", value
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                yield f".{name}", getattr(obj, name)
        for name, attr in vars(cls).items():
            if isinstance(attr, property):
                try:
                    yield f".{name}", getattr(obj, name)
                except Exception:  # a property that refuses is no door
                    pass
    for name in MASK_NAMES:  # bound methods: their __self__ is obj, their closures may not be
        method = getattr(obj, name, None)
        if isinstance(method, types.MethodType) and method.__self__ is not obj:
            yield f".{name}", method


def _verdicts(obj, probes: dict[str, np.ndarray], forbidden: tuple[str, ...]) -> list[str]:
    out = []
    if type(obj).__name__ in forbidden:
        out.append(f"a {type(obj).__name__} (a reader or annotation source of the benchmark)")
    if isinstance(obj, np.ndarray):
        hit = next((i for i, gt in probes.items() if _is_ground_truth(obj, gt)), None)
        if hit is not None:
            out.append(f"an array equal to the ground truth of {hit}")
        return out
    if isinstance(obj, _LEAVES) or isinstance(obj, _SKIP):
        return out
    for name in MASK_NAMES:
        fn = getattr(obj, name, None)
        if not callable(fn) or isinstance(fn, type):
            continue
        for image_id, gt in probes.items():
            try:
                got = fn(image_id)
            except Exception:  # refusing an id is what a view should do
                continue
            if isinstance(got, np.ndarray) and _is_ground_truth(got, gt):
                out.append(f".{name}('{image_id}') returns that image's ground truth")
                break
    return out


def _is_ground_truth(arr: np.ndarray, gt: np.ndarray) -> bool:
    """True when `arr` (2-D) has foreground and that foreground is exactly one GT class's region
    (or all GT foreground), after resizing the GT to `arr`'s size (nearest)."""
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        return False
    if arr.shape != gt.shape:  # Pillow's nearest, the harness's one resize rule for masks
        gt = np.asarray(Image.fromarray(gt.astype(np.uint8)).resize(arr.shape[::-1], Image.NEAREST))
    fg = (arr != 0) & (arr != 255)
    if not fg.any():
        return False
    classes = [c for c in np.unique(gt) if c not in (0, 255)]
    regions = [gt == c for c in classes] + ([(gt != 0) & (gt != 255)] if len(classes) > 1 else [])
    return any(np.array_equal(fg, r) for r in regions)
