"""Classification trunks for the baselines (PANet and AMP stand on VGG-16), pretrained on the
disjoint pool's object crops - the embedded stand-in for ImageNet, never a benchmark class - and
cached by fingerprint; or torchvision ImageNet weights from a user's file for real data.

Layout: the module list is torchvision's `vgg16(_bn).features`, so an ImageNet state dict loads
key for key. As in PANet's encoder, pool4 has stride 1 and conv5 is dilated by 2 (output stride 8)
and pool5 is dropped. `width` scales every layer's channels (1.0 = the paper's trunk); `bn` adds
BatchNorm after every conv (torchvision's vgg16_bn), which lets a narrow trunk learn from scratch
on the pool in minutes; the baselines keep those statistics frozen during episodic training.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.core.device import device, forked_rng
from bench.core.errors import BenchError
from bench.core.locks import one_builder
from bench.core.optim import RECIPE
from backbones.crops import classify_crops, crop_accuracy
from bench.core.weights import load_weights

TRUNK_VERSION = 1  # bump when the recipe changes: cached trunks of an older recipe are not reused
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


@dataclass(frozen=True)
class TrunkConfig:
    width: float = 0.25  # 1.0 = VGG-16 as published
    bn: bool = True  # False with a user's torchvision vgg16 (no BN) checkpoint
    epochs: int = 6  # pool crop classification
    lr: float = 3e-3
    checkpoint: str = ""  # torchvision vgg16 / vgg16_bn ImageNet state dict (real data)
    seed: int = 0

    def key(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "version": TRUNK_VERSION, "optimizer": RECIPE}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def method_trunk(cfg) -> TrunkConfig:
    """The trunk settings of a baseline's config (its `trunk_*` fields)."""
    return TrunkConfig(width=cfg.trunk_width, bn=cfg.trunk_bn, epochs=cfg.trunk_epochs, checkpoint=cfg.trunk_checkpoint)


class Vgg16Trunk(nn.Module):
    """VGG-16 conv1_1 .. conv5_3 with PANet's output stride 8. `taps` returns the outputs of
    block 3 (after pool3, stride 8), block 4 and block 5 (AMP's multi-resolution imprinting)."""

    def __init__(self, width: float = 1.0, bn: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        self.tap_index: list[int] = []
        cin = 3
        for b, (n_convs, channels) in enumerate(VGG16_BLOCKS):
            cout = max(8, int(round(channels * width)))
            for _ in range(n_convs):
                dilation = 2 if b == 4 else 1
                layers.append(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation))
                if bn:
                    layers.append(nn.BatchNorm2d(cout))
                layers.append(nn.ReLU(inplace=True))
                cin = cout
            if b < 3:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            elif b == 3:
                layers.append(nn.MaxPool2d(3, 1, padding=1))
            else:
                layers.append(nn.Identity())  # pool5 dropped; keeps torchvision's indices
            if b >= 2:
                self.tap_index.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)
        self.out_channels = cin
        self._last_relu = max(i for i, m in enumerate(layers) if isinstance(m, nn.ReLU))

    @classmethod
    def like(cls, cfg: TrunkConfig) -> "Vgg16Trunk":
        """An untrained trunk of `cfg`'s shape (for loading saved weights)."""
        return cls(cfg.width, cfg.bn)

    def forward(self, x: torch.Tensor, final_relu: bool = True) -> torch.Tensor:
        """conv5_3's output; PANet's encoder stops before its ReLU (final_relu=False), so its
        features can be negative and cosines with prototypes span [-1, 1]."""
        return self.features(x) if final_relu else self.features[: self._last_relu](x)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.tap_index:
                out.append(x)
        return out

    def frozen_norm(self) -> "Vgg16Trunk":
        """BatchNorm keeps its pool statistics: an episode is a batch of 2-10 images."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


def trunk_path(cache_dir: Path, pool, cfg: TrunkConfig) -> Path:
    return Path(cache_dir) / "trunks" / f"vgg16-w{cfg.width:g}{'-bn' if cfg.bn else ''}-{pool.name}-{pool.fingerprint()}-{cfg.key()}.pt"


def pretrained_vgg16(pool, cfg: TrunkConfig, cache_dir: Path, log=print) -> tuple[Vgg16Trunk, dict]:
    """The VGG-16 trunk for this dataset: a user's ImageNet file, or pool-pretrained (on first use)."""
    if cfg.checkpoint:
        return _user_vgg16(Path(cfg.checkpoint), cfg), {"checkpoint": cfg.checkpoint}
    from bench.data.datasets import require_pool

    pool = require_pool(pool, "the VGG-16 trunk (no checkpoint= given)")
    path = trunk_path(cache_dir, pool, cfg)
    with one_builder(path):
        if not path.is_file():
            from pseudo_labels.train import save_model

            log(f"pretraining a VGG-16 trunk (width {cfg.width:g}) on {pool.name} object crops, {cfg.epochs} epochs")
            with forked_rng():  # a method seeded before calling us draws the same numbers, trained here or cached
                trunk, meta = _train_vgg16(pool, cfg)
            save_model(path, trunk, meta, pool.class_names)
            log(f"VGG-16 trunk on the pool: held-out crop top-1 {meta['val_top1']:.1f}% -> {path}")
    blob = load_weights(path, "pool-pretrained VGG-16 trunk", "delete it; the next run pretrains it again")
    trunk = Vgg16Trunk.like(cfg)
    trunk.load_state_dict(blob["state_dict"])
    return trunk.to(device()), blob["meta"]


def _train_vgg16(pool, cfg: TrunkConfig) -> tuple[Vgg16Trunk, dict]:
    from pseudo_labels.train import object_crops, pool_arrays

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    crops, classes = object_crops(pool_arrays(pool, "train"))
    val_crops, val_classes = object_crops(pool_arrays(pool, "val"))
    trunk = Vgg16Trunk.like(cfg).to(device(), memory_format=torch.channels_last)
    t0 = time.perf_counter()
    head = classify_crops(trunk, trunk.out_channels, crops, classes, cfg.epochs, cfg.lr, rng,
                          f"pretraining VGG-16 (width {cfg.width:g}) on pool crops")
    meta = {"arch": "vgg16", "width": cfg.width, "bn": cfg.bn, "epochs": cfg.epochs, "n_crops": len(crops),
            "train_s": round(time.perf_counter() - t0, 1), "val_top1": crop_accuracy(trunk, head, val_crops, val_classes)}
    return trunk, meta


def _user_vgg16(path: Path, cfg: TrunkConfig) -> Vgg16Trunk:
    state = load_weights(path, "trunk checkpoint", "pass torchvision's vgg16 ImageNet weights (vgg16-397923af.pth) as trunk_checkpoint=FILE")
    if not isinstance(state, dict):
        raise BenchError(f"{path} holds a {type(state).__name__}, not a state dict; fix: pass torchvision's vgg16-397923af.pth")
    state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    trunk = Vgg16Trunk.like(cfg)
    try:
        trunk.features.load_state_dict(state)
    except RuntimeError as exc:
        raise BenchError(f"{path} does not fit VGG-16 (width {cfg.width:g}, bn={cfg.bn}): "
                         f"{str(exc).strip().splitlines()[-1].strip()}; fix: width=1 and bn=false for vgg16, bn=true for vgg16_bn") from None
    return trunk.to(device())


# -- ResNet (PFENet) ---------------------------------------------------------------------------
# PSPNet/PFENet's ResNet: deep 3-conv stem (ResNetV1c), layer3 and layer4 dilated by 2 and 4 (output
# stride 8). PFENet's own resnet50_v2.pth has a 128-wide stem; mmcv's resnet50_v1c and our pool
# pretraining (the DeepLabV3+ ResNet) a 64-wide one. The width is read from the file.
PSPNET_STEM = {"conv1": "stem.0", "bn1": "stem.1", "conv2": "stem.3", "bn2": "stem.4", "conv3": "stem.6", "bn3": "stem.7"}
RESNET_DEPTHS = {18: "r18-os16", 50: "r50-os8", 101: "r101-os8"}  # depth -> the pool-pretrained DeepLabV3+ arch


def resnet_os8(depth: int, stem_channels: int = 64) -> nn.Module:
    """A frozen-BatchNorm ResNetV1c returning (layer2, layer3, layer4) at output stride 8."""
    from backbones.mmseg_compat import install

    install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mmcv-lite warns about ops a ResNet never uses
        from mmseg.models.backbones import ResNetV1c

    net = ResNetV1c(depth=depth, stem_channels=stem_channels, num_stages=4, out_indices=(1, 2, 3),
                    strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True,
                    norm_cfg=dict(type="BN", requires_grad=False), norm_eval=True, style="pytorch")
    net.train(False)  # mmseg's ResNet.train returns None, so no chaining
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device())


def pretrained_resnet(pool, depth: int, checkpoint: str, backbone: dict, cache_dir: Path, log=print) -> tuple[nn.Module, str]:
    """PFENet's frozen trunk and a name for its weights: a user's ImageNet ResNet file, or the
    ResNet of the pool-pretrained DeepLabV3+ that `ours` stands on (`backbone`: BackboneConfig
    overrides), re-dilated to stride 8."""
    if depth not in RESNET_DEPTHS:
        raise BenchError(f"trunk_depth={depth} is not one of {', '.join(map(str, RESNET_DEPTHS))}")
    if checkpoint:
        from bench.core.files import file_sha

        path = Path(checkpoint)
        net = _user_resnet(path, depth)
        return net, f"{path.stem}-{file_sha(path)[:12]}"
    from backbones.pretrain import backbone_config, pretrained_backbone

    model, meta, path = pretrained_backbone(pool, backbone_config({**backbone, "arch": RESNET_DEPTHS[depth]}), cache_dir, log)
    net = resnet_os8(depth)
    net.load_state_dict({k[len("backbone."):]: v for k, v in model.state_dict().items() if k.startswith("backbone.")})
    return net, path.stem


def resnet_state(state: dict) -> dict:
    """A ResNet state dict in mmseg's ResNetV1c names: 'module.'/'backbone.' prefixes dropped,
    PSPNet's conv1/bn1..conv3/bn3 stem renamed, the ImageNet classifier dropped."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            key = key[len(prefix):] if key.startswith(prefix) else key
        head, _, rest = key.partition(".")
        key = f"{PSPNET_STEM[head]}.{rest}" if head in PSPNET_STEM else key
        if not key.startswith("fc."):
            out[key] = value
    return out


def _user_resnet(path: Path, depth: int) -> nn.Module:
    fix = ("pass PFENet's resnet50_v2.pth or mmcv's resnet50_v1c ImageNet weights (deep stem) as trunk_checkpoint=FILE "
           "with the matching trunk_depth; torchvision's resnet (7x7 stem) is not PFENet's architecture")
    blob = load_weights(path, "trunk checkpoint", fix)
    if not isinstance(blob, dict):
        raise BenchError(f"{path} holds a {type(blob).__name__}, not a state dict; fix: {fix}")
    state = resnet_state(blob.get("state_dict", blob))
    stem = state.get("stem.6.weight")
    if stem is None:
        raise BenchError(f"{path} has no deep-stem ResNet weights (no conv3/stem.6); fix: {fix}")
    net = resnet_os8(depth, stem_channels=int(stem.shape[0]))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise BenchError(f"{path} does not fit ResNet-{depth}: {str(exc).strip().splitlines()[-1].strip()}; fix: {fix}") from None
    return net


def vgg16_need(pool, cfg: TrunkConfig, cache_dir: Path):
    """The pool pretraining `pretrained_vgg16` would run, as a plan entry (bench/core/plans.py),
    and a randomly initialised trunk of the same shape (its state sizes the methods' checkpoints)."""
    from bench.core.plans import Need, state_bytes, training_unit
    from pseudo_labels.plan import SIDE_FILES, pool_counts

    trunk = Vgg16Trunk.like(cfg)
    if cfg.checkpoint:
        return Need("VGG-16 trunk: your file", Path(cfg.checkpoint), 0, exists=True), trunk
    from bench.data.datasets import require_pool

    pool = require_pool(pool, "the VGG-16 trunk (no checkpoint= given)")
    _, n_objects = pool_counts(pool)
    unit = training_unit(lambda: Vgg16Trunk.like(cfg), 64, 64)  # crops of 64 px, batches of 64 (backbones/crops.py)
    need = Need(f"VGG-16 trunk (width {cfg.width:g}) pretrained on {pool.name}", trunk_path(cache_dir, pool, cfg),
                state_bytes({"state_dict": trunk.state_dict(), "meta": {}}) + SIDE_FILES, unit, cfg.epochs * n_objects / 64)
    return need, trunk


def resnet_need(pool, depth: int, checkpoint: str, backbone: dict, cache_dir: Path):
    """`pretrained_resnet` as a plan entry: (need, the weights' name the stores are keyed by, a
    randomly initialised ResNet of that depth)."""
    if depth not in RESNET_DEPTHS:
        raise BenchError(f"trunk_depth={depth} is not one of {', '.join(map(str, RESNET_DEPTHS))}")
    net = resnet_os8(depth)
    if checkpoint:
        from bench.core.files import file_sha
        from bench.core.plans import Need

        path = Path(checkpoint)
        return Need(f"ResNet-{depth}: your file", path, 0, exists=True), f"{path.stem}-{file_sha(path)[:12]}", net
    from backbones.pretrain import backbone_config, backbone_need

    need, name, _ = backbone_need(pool, backbone_config({**backbone, "arch": RESNET_DEPTHS[depth]}), cache_dir)
    return need, name, net
