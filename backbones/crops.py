"""Pretraining on the disjoint pool's object crops (the embedded stand-in for ImageNet): a trunk and
a linear head on its pooled output learn to classify them. Shared by the VGG-16 trunk
(backbones/trunks.py) and the DeepLabV3+ backbone's first stage (backbones/pretrain.py)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.device import device, tensor, to_numpy
from bench.core.optim import adam
from bench.core.progress import progress
from pseudo_labels.nets import as_batch


def classify_crops(trunk: nn.Module, width: int, crops: np.ndarray, classes: np.ndarray, epochs: int, lr: float,
                   rng: np.random.Generator, desc: str) -> nn.Linear:
    """Trains `trunk` (and a returned linear head on its global-average-pooled output) to classify
    the pool's object crops: the pool plays ImageNet's role, object-centric."""
    head = nn.Linear(width, int(classes.max()) + 1).to(device())
    opt = adam(list(trunk.parameters()) + list(head.parameters()), decoupled=True, lr=lr, weight_decay=1e-4)
    batches = [rng.permutation(len(crops))[i : i + 64] for _ in range(epochs) for i in range(0, len(crops), 64)]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(len(batches), 1), pct_start=0.15)
    trunk.train()
    for idx in progress(batches, desc=desc):
        x = as_batch(crops[idx])
        if rng.random() < 0.5:
            x = x.flip(-1)
        out = head(trunk(x.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3)))
        loss = F.cross_entropy(out, tensor(classes[idx]), label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return head


@torch.no_grad()
def crop_accuracy(trunk: nn.Module, head: nn.Linear, crops: np.ndarray, classes: np.ndarray) -> float:
    trunk.eval()
    hits = 0
    for i in range(0, len(crops), 256):
        out = head(trunk(as_batch(crops[i : i + 256])).mean(dim=(2, 3)))
        hits += int((to_numpy(out.argmax(1)) == classes[i : i + 256]).sum())
    return round(100.0 * hits / max(len(crops), 1), 2)
