"""Every pretrained network declares the classes it saw, and a run checks them against the
benchmark's classes before anything is fitted.

Where a network's class list comes from:
- trained here on the disjoint pool (CAM, saliency, DeepLabV3+, the VGG-16 and ResNet trunks): the
  pool's class names;
- a user's weight file: a sidecar `<weights>.classes.txt` (one class name per line; a single line
  `imagenet-1k` for an ImageNet-1k classifier, `class-agnostic` for a saliency net trained with no
  class labels); torchvision's ImageNet files (vgg16-397923af.pth, resnet50-0676ba61.pth, ...) are
  known as `imagenet-1k`; any other file must be declared where the preset wants its role disjoint,
  and is stated as "undeclared" elsewhere.
A class overlaps the benchmark when it is a benchmark class, a synonym, or a hyponym or part that
shows one (for ImageNet: the exclusion table pseudo_labels/data/imagenet_exclusions.json, e.g. the
121 dog breeds and 59 birds for PASCAL). The preset names the roles that must be disjoint (`wacv22`:
cam, saliency, backbone, as the paper pretrains them on "irrelevant categories"); an ImageNet trunk
(role "trunk") is the FSS convention, allowed and stated in the record. A violation stops the run
with one line naming the network, its file and the overlapping classes; `--allow-leak` runs it,
the record keeps `leaks`, and tables mark its row with ‡ and a footnote."""
from __future__ import annotations

import re
from pathlib import Path

from bench.core.errors import BenchError

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


def _imagenet_table(benchmark_classes) -> dict:
    from pseudo_labels.vgg_cam import exclusions

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


def network_classes(role: str, weights: str, pool) -> tuple[str, ...] | str:
    """A network's classes: the pool's when it is trained here (`weights` empty), else the file's."""
    if weights:
        return declared_classes(weights, role)
    if pool is None:
        return ()
    return tuple(pool.class_names)


def describe(classes) -> str | list[str]:
    """How a record states a network's classes (a long list is summarised by its size)."""
    if isinstance(classes, str):
        return classes
    return list(classes) if len(classes) <= 20 else f"{len(classes)} classes"


def checked_networks(networks: list[tuple[str, str]], pool, benchmark_classes, disjoint_roles, allow_leak: bool,
                     where: str) -> tuple[dict, dict]:
    """({role: {"file", "classes"}}, {role: [overlapping classes]}) of a run's networks; raises
    on an overlap in a role that must be disjoint unless `allow_leak`."""
    stated, leaks = {}, {}
    for role, weights in networks:
        try:
            classes = network_classes(role, weights, pool)
        except BenchError:
            if role in disjoint_roles:
                raise
            classes = UNDECLARED  # allowed either way: stated as such in the record
        stated[role] = {"file": Path(weights).name if weights else f"trained here on {getattr(pool, 'name', 'the pool')}",
                        "classes": describe(classes), "must_be_disjoint": role in disjoint_roles}
        found = overlap(classes, benchmark_classes) if role in disjoint_roles else []
        if found and not allow_leak:
            shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
            raise BenchError(f"the {role} network ({weights or 'pool-trained'}) saw {len(found)} class(es) of {where}: "
                             f"{shown}; fix: use weights trained without them (README: pretrained files), or "
                             f"--allow-leak to run anyway with the row marked")
        if found:
            leaks[role] = found
    return stated, leaks
