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
shows one (bench/data/vocabulary.py; for ImageNet the exclusion table bench/data/imagenet_exclusions.json,
e.g. the 121 dog breeds and 59 birds for PASCAL). The preset names the roles that must be disjoint (`wacv22`:
cam, saliency, backbone, as the paper pretrains them on "irrelevant categories"); an ImageNet trunk
(role "trunk") is the FSS convention, allowed and stated in the record. A violation stops the run
with one line naming the network, its file and the overlapping classes; `--allow-leak` runs it,
the record keeps `leaks`, and tables mark its row with ‡ and a footnote."""
from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError
from bench.data.vocabulary import UNDECLARED, declared_classes, overlap

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
