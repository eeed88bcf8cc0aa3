"""The vocabulary of the benchmarks' classes: which names denote a benchmark class (the class, its
synonyms, and the ImageNet-1k classes that are its hyponyms or show it: imagenet_exclusions.json
beside this file), and how a weight file declares the classes it was trained on. Used to keep every
pretrained network disjoint from the benchmark (bench/harness/declared.py), to leave the benchmark's
synsets out of a CAM trained here (pseudo_labels/imagenet_cam.py) and its classes out of a backbone's
pretraining set (backbones/external.py)."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from bench.core.errors import BenchError

EXCLUSIONS_FILE = Path(__file__).parent / "imagenet_exclusions.json"
IMAGENET = "imagenet-1k"
AGNOSTIC = "class-agnostic"
UNDECLARED = "undeclared"  # a user file in a role the preset allows to overlap, without a class list
TORCHVISION_IMAGENET = re.compile(r"(vgg\d+(_bn)?|resnet\d+|resnext\d+_\w+|wide_resnet\d+_\d+)-[0-9a-f]{8}\.pth")
SYNONYMS = {  # benchmark class -> other names of it (VOC's joined names split, common synonyms)
    "aeroplane": ("airplane", "aircraft", "plane", "airliner", "jet"), "bicycle": ("bike",), "boat": ("ship",),
    "car": ("automobile",), "diningtable": ("dining table", "table"), "motorbike": ("motorcycle", "moped"),
    "person": ("people", "human", "man", "woman", "child", "pedestrian"), "pottedplant": ("potted plant", "houseplant"),
    "sofa": ("couch",), "tvmonitor": ("tv", "television", "monitor", "tv monitor"), "airplane": ("aeroplane", "plane"),
    "motorcycle": ("motorbike",), "couch": ("sofa",), "tv": ("television", "tvmonitor"), "dining table": ("diningtable",),
    "potted plant": ("pottedplant",),
}


def write_class_list(weights: Path, names) -> None:
    """`<weights>.classes.txt`: the classes a network trained here saw (its pool's), one per line."""
    from bench.core.files import atomic_write_text

    atomic_write_text(Path(weights).with_name(Path(weights).name + ".classes.txt"), "\n".join(names) + "\n")


def declared_classes(weights: str, role: str) -> tuple[str, ...] | str:
    """The classes a user's weight file saw: IMAGENET, AGNOSTIC or a tuple of names."""
    path = Path(weights)
    sidecar = path.with_name(path.name + ".classes.txt")
    if sidecar.is_file():
        names = tuple(l.strip() for l in sidecar.read_text().splitlines() if l.strip() and not l.startswith("#"))
        if names in ((IMAGENET,), (AGNOSTIC,)):
            return names[0]
        return names
    if TORCHVISION_IMAGENET.fullmatch(path.name):
        return IMAGENET
    raise BenchError(f"the {role} weights {path} do not say which classes they were trained on; fix: write "
                     f"{sidecar} (one class name per line, or the single line {IMAGENET} or {AGNOSTIC})")


def overlap(classes: tuple[str, ...] | str, benchmark_classes) -> list[str]:
    """The declared classes that are, or show, a benchmark class, as 'name (benchmark class)'."""
    if classes in (AGNOSTIC, UNDECLARED):
        return []
    table = _imagenet_table(benchmark_classes)
    if classes == IMAGENET:
        return [f"{name} ({c})" for c in benchmark_classes for _, name in table.get(c, [])]
    terms = _terms(benchmark_classes, table)
    return [f"{name} ({terms[_norm(name)]})" for name in classes if _norm(name) in terms]


@lru_cache(maxsize=1)
def exclusions() -> dict[str, dict[str, list]]:
    """benchmark ("pascal", "coco") -> class -> [[torchvision ImageNet index, name], ...]: the ImageNet-1k
    classes that are the class, its WordNet hyponyms (all dog breeds for dog) or show it (wing for aeroplane)."""
    raw = json.loads(EXCLUSIONS_FILE.read_text())
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def _imagenet_table(benchmark_classes) -> dict:
    return next((t for t in exclusions().values() if set(benchmark_classes) <= set(t)), {})


def _terms(benchmark_classes, table) -> dict[str, str]:
    """Every name that denotes a benchmark class (normalised) -> that class."""
    terms = {}
    for c in benchmark_classes:
        for name in (c, *SYNONYMS.get(c, ()), *(n for _, n in table.get(c, []))):
            terms[_norm(name)] = c
    return terms


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()
