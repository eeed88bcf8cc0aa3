"""The two small nets trained on the disjoint pool: a CAM classifier and a class-agnostic saliency net.

Both are sized so that training fits in minutes on 2 CPU cores at 129x129 (the embedded default);
the paper's real-data CAM is VGG-16 (pseudo_labels/vgg_cam.py).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.data.sizes import size_groups
from bench.core.device import tensor

# Part of the cache key of trained weights: bump when a net or its training recipe changes, so that
# weights cached by an older version are never loaded into a different net.
ARCH_VERSION = {"cam": 2, "saliency": 2}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def as_batch(images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 images of one size -> normalised float NCHW on the device (bench/core/device.py).
    Images of different sizes are one clear error: callers group them by size (by_size)."""
    if isinstance(images, list):
        shapes = sorted({im.shape for im in images})
        if len(shapes) > 1:
            raise ValueError(f"as_batch got images of {len(shapes)} sizes {shapes[:3]}; group them with by_size first")
        images = np.stack(images)
    x = tensor(images).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - MEAN.to(x.device)) / STD.to(x.device)


def by_size(images: list[np.ndarray], compute) -> list:
    """compute(batch of same-size images) -> per-image outputs, for a list of images of any sizes:
    one call per size, outputs back in the input order (real datasets mix 500x375 and 375x500)."""
    out: list = [None] * len(images)
    for positions in size_groups([im.shape for im in images]):
        for n, o in zip(positions, compute([images[k] for k in positions])):
            out[n] = o
    return out


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1, padding_mode: str = "zeros") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False, padding_mode=padding_mode),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CamNet(nn.Module):
    """Stride-8 conv net, global average pooling, linear classifier: CAM_k = W_k . F (Zhou et al. 2016).
    Reflect padding: with zero padding the maps of unseen classes peaked along the image border."""

    def __init__(self, n_classes: int, width: int = 32):
        super().__init__()
        w = width
        r = "reflect"
        self.features = nn.Sequential(
            _conv(3, w, 2, padding_mode=r), _conv(w, w, padding_mode=r),
            _conv(w, 2 * w, 2, padding_mode=r), _conv(2 * w, 2 * w, padding_mode=r),
            _conv(2 * w, 4 * w, 2, padding_mode=r), _conv(4 * w, 4 * w, padding_mode=r),
            _conv(4 * w, 4 * w, dilation=2, padding_mode=r), _conv(4 * w, 4 * w, dilation=2, padding_mode=r),
        )
        self.classifier = nn.Conv2d(4 * w, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K): the mean of the CAMs, which equals GAP followed by the classifier."""
        return self.cams(x).mean(dim=(2, 3))

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps (N, K, h, w) at stride 8."""
        return self.classifier(self.features(x))


class SaliencyNet(nn.Module):
    """Foreground probability logits at full resolution; trained on pool masks with classes erased."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            _conv(3, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w),
            _conv(2 * w, 2 * w, dilation=2), _conv(2 * w, 2 * w, dilation=4), _conv(2 * w, 2 * w, dilation=8),
        )
        self.skip = _conv(3, w)
        self.head = nn.Sequential(_conv(3 * w, w), nn.Conv2d(w, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(self.encoder(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([deep, self.skip(x)], dim=1))[:, 0]


def normalised_cams(cams: torch.Tensor, probs: torch.Tensor | None = None, mode: str = "minmax") -> torch.Tensor:
    """T_k in [0, 1] on the CAM grid. `minmax` rescales each raw map to [0, 1]; `relu_max` is the
    original CAM recipe (ReLU, divide by the maximum). On classes the classifier never saw, the
    ReLU'd maps are mostly empty or a single spike (their best score is negative), while the
    min-max map keeps where the class is relatively most likely: +11 pseudo-mask mIoU on
    openmoji5i (README, "Pseudo labels"). With `probs` (the class probabilities) each map is
    also scaled by how present the classifier thinks its class is."""
    if mode == "relu_max":
        t = cams.clamp(min=0)
        t = t / t.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
    elif mode == "minmax":
        lo = cams.amin(dim=(2, 3), keepdim=True)
        t = (cams - lo) / (cams.amax(dim=(2, 3), keepdim=True) - lo).clamp(min=1e-6)
    else:
        raise ValueError(f"unknown CAM normalisation {mode}")
    if probs is not None:
        t = t * probs[:, :, None, None]
    return t
