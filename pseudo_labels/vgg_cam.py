"""The paper's real-data CAM: torchvision VGG-16 with ImageNet weights from a user's file
(e.g. torchvision's vgg16-397923af.pth), run fully convolutionally (fc6 -> 7x7 conv, fc7/fc8 -> 1x1),
so every kept ImageNet class gets a score map. Classes of the benchmark and their hyponyms are
removed from its outputs (bench/data/imagenet_exclusions.json); its features still saw them, which
the class check of bench/harness/declared.py reports.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.device import device
from bench.core.errors import BenchError
from bench.core.files import file_sha
from bench.core.weights import load_weights
from bench.data.vocabulary import EXCLUSIONS_FILE, exclusions
from pseudo_labels.nets import as_batch, normalised_cams



def imagenet_categories() -> list[str]:
    from torchvision.models import VGG16_Weights

    return list(VGG16_Weights.IMAGENET1K_V1.meta["categories"])


def kept_imagenet_classes(benchmark_classes) -> list[tuple[int, str]]:
    """ImageNet (index, name) pairs left after removing every benchmark class and its hyponyms."""
    table = next((t for t in exclusions().values() if set(benchmark_classes) <= set(t)), None)
    if table is None:
        raise BenchError(
            f"no ImageNet exclusion list covers the classes {', '.join(list(benchmark_classes)[:4])}...; "
            f"fix: add them to {EXCLUSIONS_FILE}"
        )
    dropped = {i for c in benchmark_classes for i, _ in table[c]}
    return [(i, n) for i, n in enumerate(imagenet_categories()) if i not in dropped]


def _class_list(path: Path, k: int) -> list[str]:
    sidecar = path.with_name(path.name + ".classes.txt")
    names = [l.strip() for l in sidecar.read_text().splitlines() if l.strip()] if sidecar.is_file() else []
    if len(names) != k:
        raise BenchError(f"{path} has a {k}-way head but {sidecar} lists {len(names)} classes; fix: write its {k} class "
                         f"names there, one per line (bench pseudo train-cam --imagenet writes it)")
    return names


def fully_convolutional(classifier: nn.Sequential, kernel: int) -> nn.Sequential:
    """Linear layers -> convolutions with the same weights (the first with `kernel`, the rest 1x1);
    dropout removed, activations kept. On a kernel x kernel input it reproduces the classifier."""
    layers = []
    first = True
    for layer in classifier:
        if isinstance(layer, nn.Linear):
            k = kernel if first else 1
            conv = nn.Conv2d(layer.in_features // (k * k), layer.out_features, k)
            conv.weight.data.copy_(layer.weight.data.view(layer.out_features, -1, k, k))
            conv.bias.data.copy_(layer.bias.data)
            layers.append(conv)
            first = False
        elif not isinstance(layer, nn.Dropout):
            layers.append(layer)
    return nn.Sequential(*layers)


def load_vgg16(path: Path | None) -> nn.Module:
    """A torchvision VGG state dict: ImageNet's 1000 classes, or a K-way head trained here
    (`bench pseudo train-cam --imagenet`, whose `<weights>.json` names the VGG variant)."""
    if path is None or not Path(path).is_file():
        raise BenchError(
            f"VGG-16 weight file {path or '(none given)'} not found; fix: download torchvision's "
            "vgg16-397923af.pth elsewhere and pass --pseudo-set cam_weights=/path/to/vgg16-397923af.pth"
        )
    import torchvision

    fix = "pass torchvision's vgg16-397923af.pth as --pseudo-set cam_weights=FILE"
    state = load_weights(Path(path), "VGG-16 weight file", fix)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    meta = Path(path).with_suffix(".json")
    arch = json.loads(meta.read_text()).get("arch", "vgg16") if meta.is_file() else "vgg16"
    head = state.get("classifier.6.weight") if isinstance(state, dict) else None
    net = getattr(torchvision.models, arch)(weights=None, num_classes=head.shape[0] if head is not None else 1000)
    try:
        net.load_state_dict(state)
    except (RuntimeError, KeyError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise BenchError(f"{path} is not a torchvision VGG-16 state dict ({first}); fix: pass vgg16-397923af.pth") from None
    return net.to(device()).eval()


class VggCam:
    def __init__(self, path: Path | None, benchmark_classes, cfg):
        net = load_vgg16(path)
        k = net.classifier[-1].out_features
        if k == 1000:  # ImageNet's head: its benchmark rows dropped (its features still saw them: declared.py)
            kept = kept_imagenet_classes(benchmark_classes)
        else:  # a K-way head trained without the benchmark's classes: every row, named by its class list
            kept = list(enumerate(_class_list(Path(path), k)))
        self.keep = torch.tensor([i for i, _ in kept], device=device())
        self.class_names = [n for _, n in kept]
        self.features = net.features
        self.head = fully_convolutional(net.classifier, kernel=7).to(device())  # new conv layers: on the device too
        self.path, self.size, self.prob_scale, self.norm = Path(path), cfg.vgg_input, cfg.cam_prob_scale, cfg.cam_norm

    @torch.no_grad()
    def maps(self, images: np.ndarray) -> torch.Tensor:
        x = F.interpolate(as_batch(images), size=(self.size, self.size), mode="bilinear", align_corners=False)
        scores = self.head(self.features(x))
        probs = torch.softmax(scores.mean(dim=(2, 3)), dim=1)[:, self.keep] if self.prob_scale else None
        cams = scores[:, self.keep]
        return normalised_cams(cams, probs, self.norm)

    def fingerprint(self) -> str:
        return f"vgg16:{file_sha(self.path)}:{self.size}:prob={self.prob_scale}:{self.norm}"
