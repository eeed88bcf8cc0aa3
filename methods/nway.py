"""N-way from a 1-way method (AMP, PFENet): one pass per way, then one decision rule."""
from __future__ import annotations

import numpy as np
import torch

from bench.core.device import to_numpy

IGNORE = 255


def combine_ways(fg_masks: list[torch.Tensor], probs: list[torch.Tensor]) -> np.ndarray:
    """N-way decision rule: way j where its pass says foreground; the most probable of several."""
    fg = torch.stack(fg_masks)  # (N, H, W) bool
    score = torch.where(fg, torch.stack(probs), torch.full_like(probs[0], -1.0)[None])
    best = score.argmax(0)
    return to_numpy(torch.where(fg.any(0), best + 1, 0)).astype(np.uint8)


def way_mask(mask: np.ndarray, way: int) -> np.ndarray:
    """Episode labels -> this way's 0/1 mask (255 kept): the other ways' pixels are background."""
    out = (mask == way).astype(np.uint8)
    out[mask == IGNORE] = IGNORE
    return out
