"""Class-wise IoU from intersections and unions summed over all episodes of a run, averaged over
the fold's classes (PANet/PFENet/HSNet convention), and FB-IoU (background vs all foreground).
Pixels labelled 255 in the ground truth are excluded from every sum."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE = 255


@dataclass
class IoUAccumulator:
    class_ids: tuple[int, ...]  # the fold's classes: mIoU averages over these
    inter: dict[int, int] = field(default_factory=dict)
    union: dict[int, int] = field(default_factory=dict)
    fb_inter: list[int] = field(default_factory=lambda: [0, 0])  # [background, foreground]
    fb_union: list[int] = field(default_factory=lambda: [0, 0])
    n_queries: int = 0

    def __post_init__(self):
        self.class_ids = tuple(int(c) for c in self.class_ids)
        for c in self.class_ids:
            self.inter.setdefault(c, 0)
            self.union.setdefault(c, 0)

    def update(self, pred: np.ndarray, gt: np.ndarray, class_ids) -> None:
        """pred, gt: episode labels (0 bg, j = class_ids[j-1]; gt may hold 255)."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
        valid = gt != IGNORE
        p, g = pred[valid], gt[valid]
        for j, c in enumerate(class_ids, start=1):
            pj, gj = p == j, g == j
            self.inter[int(c)] = self.inter.get(int(c), 0) + int(np.count_nonzero(pj & gj))
            self.union[int(c)] = self.union.get(int(c), 0) + int(np.count_nonzero(pj | gj))
        pf, gf = p > 0, g > 0
        self.fb_inter[0] += int(np.count_nonzero(~pf & ~gf))
        self.fb_union[0] += int(np.count_nonzero(~pf | ~gf))
        self.fb_inter[1] += int(np.count_nonzero(pf & gf))
        self.fb_union[1] += int(np.count_nonzero(pf | gf))
        self.n_queries += 1

    def class_iou(self) -> dict[int, float]:
        """IoU of each fold class; NaN for a class with an empty union (never in the GT nor predicted)."""
        return {c: (self.inter[c] / self.union[c] if self.union[c] else float("nan")) for c in self.class_ids}

    def compute(self) -> dict:
        ious = np.array(list(self.class_iou().values()), dtype=float)
        fb = [i / u if u else float("nan") for i, u in zip(self.fb_inter, self.fb_union)]
        return {
            "miou": float(np.nanmean(ious)) * 100 if np.isfinite(ious).any() else float("nan"),
            "fbiou": float(np.nanmean(fb)) * 100 if any(np.isfinite(fb)) else float("nan"),
            "class_iou": {str(c): v * 100 for c, v in self.class_iou().items()},
        }

    def merge(self, other: "IoUAccumulator") -> None:
        for c in other.inter:
            self.inter[c] = self.inter.get(c, 0) + other.inter[c]
            self.union[c] = self.union.get(c, 0) + other.union[c]
        for k in (0, 1):
            self.fb_inter[k] += other.fb_inter[k]
            self.fb_union[k] += other.fb_union[k]
        self.n_queries += other.n_queries
