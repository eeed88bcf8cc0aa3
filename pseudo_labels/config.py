"""One flat config for the pseudo-label pipeline; `--pseudo-set key=value` overrides any field."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from bench.core.settings import settings_from


@dataclass(frozen=True)
class PseudoConfig:
    # CAM back-end: `pool` = CamNet trained on the dataset's disjoint pool; `vgg16` = torchvision
    # VGG-16 with ImageNet weights from `cam_weights`, ImageNet classes minus the benchmark's.
    cam: str = "pool"
    cam_weights: str = ""
    cam_width: int = 32
    cam_crop_epochs: int = 3  # stage 1: single-label object crops of the pool (object-centric, as ImageNet)
    cam_epochs: int = 5  # stage 2: whole pool images, multi-label, image-level labels only
    cam_batch: int = 64
    cam_lr: float = 1e-3  # stage 2; stage 1 uses 3x
    cam_norm: str = "minmax"  # T_k: min-max of the raw map, or relu_max (ReLU / max, the original CAM)
    cam_prob_scale: bool = True  # scale each T_k by the classifier's probability of class k
    vgg_input: int = 448  # VGG-16 runs fully convolutionally at this size (stride 32 -> 8x8 maps)
    # word vectors and eq. 2
    words: str = "glove"
    words_path: str = ""
    weighting: str = "cosine"
    topk: int = 5
    temperature: float = 0.05
    # saliency back-end: `pool` = SaliencyNet trained fg/bg on the pool; `onnx` = a user model; `none`
    saliency: str = "pool"
    saliency_path: str = ""
    # how the onnx model wants its input and gives its output (pseudo_labels/onnx_saliency.py); "" = the convention's
    saliency_convention: str = "imagenet-rgb"
    saliency_channels: str = ""
    saliency_mean: str = ""
    saliency_std: str = ""
    saliency_size: str = ""
    saliency_outputs: str = ""
    saliency_sigmoid: str = ""
    saliency_minmax: str = ""
    saliency_width: int = 16
    saliency_epochs: int = 3
    saliency_threshold: float = 0.5
    gate: str = "hard"  # hard: T-bar zeroed where saliency < saliency_threshold; soft: T-bar x saliency
    # eq. 3 -> mask: a labelled class wins a pixel if its normalised, gated map is the largest and >= threshold
    threshold: float = 0.05
    seed: int = 0

    def key(self, fields: tuple[str, ...]) -> str:
        d = dataclasses.asdict(self)
        return _hash(json.dumps({f: d[f] for f in fields}, sort_keys=True))


CAM_FIELDS = ("cam", "cam_weights", "cam_width", "cam_crop_epochs", "cam_epochs", "cam_batch", "cam_lr", "seed")
SALIENCY_FIELDS = ("saliency", "saliency_path", "saliency_width", "saliency_epochs", "seed")  # what the pool net's training reads
CHOICES = {"cam": ("pool", "vgg16"), "cam_norm": ("minmax", "relu_max"), "words": ("glove", "fasttext"), "weighting": ("cosine", "topk", "softmax"),
           "saliency": ("pool", "onnx", "none"), "gate": ("hard", "soft")}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pseudo_config(overrides: dict | None = None) -> PseudoConfig:
    return settings_from(PseudoConfig, overrides, "pseudo-label", CHOICES)


def changed_settings(overrides: dict | None) -> dict:
    """The overrides that differ from the defaults, coerced: what names a weak-mode variant."""
    cfg, default = dataclasses.asdict(pseudo_config(overrides)), dataclasses.asdict(PseudoConfig())
    return {k: cfg[k] for k in sorted(overrides or {}) if cfg[k] != default[k]}
