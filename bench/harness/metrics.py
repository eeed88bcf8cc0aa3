"""Scores of a run, from sums kept per class over all its episodes, under named conventions that
published FSS papers disagree on (a preset fixes them; records keep every sum, so any record can be
re-tabulated under another convention: `bench table --absent-ways/--fbiou/--iou`).

- Class IoU, pooled (the PANet/PFENet/HSNet convention): intersections and unions summed over
  every query of the run, IoU per class, averaged over the fold's classes.
- `absent_ways`: in an N-way episode every query is scored for every way. `score` adds a way's
  union even on a query whose GT does not hold that way's class (so pixels labelled as the absent
  way count only against it); `skip` adds a way's sums only on queries whose GT holds its class
  (PANet util/metric.py:Metric.record: "if ground-truth contains this class"). In a 1-way episode
  the two differ only when the query's object vanished (e.g. after resizing).
- FB-IoU: mean of the background IoU and the foreground IoU. `merged`: foreground = any way, so a
  pixel of way A predicted as way B is a hit (AMP, PFENet, HSNet, all 1-way); `per_class`: the
  foreground sums are the per-class sums added over classes (PANet Metric.get_mIoU_binary), so that
  pixel is a miss (an FP of B and an FN of A).
- Per-episode IoU (`--iou per-episode`): a class's IoU within each episode (its sums over that
  episode's queries, under the absent-ways rule; episodes where its union is empty are left out),
  averaged over the episodes holding the class, then over classes.
Pixels labelled 255 in the ground truth are excluded from every sum."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE = 255
ABSENT_WAYS = ("score", "skip")
FBIOU = ("merged", "per_class")
IOU_MEAN = ("pooled", "per-episode")


@dataclass(frozen=True)
class Conventions:
    absent_ways: str = "score"
    fbiou: str = "merged"
    iou: str = "pooled"

    def legend(self) -> str:
        ways = {"score": "absent ways scored", "skip": "a way scored only on queries holding its class (PANet)"}
        fb = {"merged": "FB-IoU with merged foreground", "per_class": "FB-IoU from per-class sums (PANet)"}
        iou = {"pooled": "IoU pooled over episodes", "per-episode": "IoU per episode, then averaged"}
        return f"{ways[self.absent_ways]}; {fb[self.fbiou]}; {iou[self.iou]}"


@dataclass
class IoUAccumulator:
    class_ids: tuple[int, ...]  # the fold's classes: mIoU averages over these
    inter: dict[int, int] = field(default_factory=dict)  # absent_ways=score
    union: dict[int, int] = field(default_factory=dict)
    inter_skip: dict[int, int] = field(default_factory=dict)  # absent_ways=skip
    union_skip: dict[int, int] = field(default_factory=dict)
    fb_inter: list[int] = field(default_factory=lambda: [0, 0])  # [background, merged foreground]
    fb_union: list[int] = field(default_factory=lambda: [0, 0])
    episode_iou: dict = field(default_factory=lambda: {"score": {}, "skip": {}})  # rule -> class -> [sum, n]
    n_queries: int = 0

    def __post_init__(self):
        self.class_ids = tuple(int(c) for c in self.class_ids)
        for sums in (self.inter, self.union, self.inter_skip, self.union_skip):
            for c in self.class_ids:
                sums.setdefault(c, 0)

    def update_episode(self, preds: list[np.ndarray], gts: list[np.ndarray], class_ids) -> None:
        """All queries of one episode (episode labels: 0 bg, j = class_ids[j-1]; GT may hold 255)."""
        episode = {rule: np.zeros((2, len(class_ids)), np.int64) for rule in ABSENT_WAYS}
        for pred, gt in zip(preds, gts):
            for rule, sums in self.update(pred, gt, class_ids).items():
                episode[rule] += sums
        for rule, (inter, union) in episode.items():
            for j, c in enumerate(class_ids):
                if union[j]:
                    acc = self.episode_iou[rule].setdefault(int(c), [0.0, 0])
                    acc[0] += inter[j] / union[j]
                    acc[1] += 1

    def update(self, pred: np.ndarray, gt: np.ndarray, class_ids) -> dict[str, np.ndarray]:
        """One query; returns its (2, ways) intersection/union counts under each absent-ways rule."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
        valid = gt != IGNORE
        p, g = pred[valid], gt[valid]
        out = {rule: np.zeros((2, len(class_ids)), np.int64) for rule in ABSENT_WAYS}
        for j, c in enumerate(class_ids, start=1):
            pj, gj = p == j, g == j
            inter, union = int(np.count_nonzero(pj & gj)), int(np.count_nonzero(pj | gj))
            self.inter[int(c)] = self.inter.get(int(c), 0) + inter
            self.union[int(c)] = self.union.get(int(c), 0) + union
            out["score"][:, j - 1] = inter, union
            if gj.any():  # PANet: a class is scored on a query only where its GT holds it
                self.inter_skip[int(c)] = self.inter_skip.get(int(c), 0) + inter
                self.union_skip[int(c)] = self.union_skip.get(int(c), 0) + union
                out["skip"][:, j - 1] = inter, union
        pf, gf = p > 0, g > 0
        self.fb_inter[0] += int(np.count_nonzero(~pf & ~gf))
        self.fb_union[0] += int(np.count_nonzero(~pf | ~gf))
        self.fb_inter[1] += int(np.count_nonzero(pf & gf))
        self.fb_union[1] += int(np.count_nonzero(pf | gf))
        self.n_queries += 1
        return out

    def sums(self) -> dict:
        """Everything a record keeps (JSON keys as strings)."""
        def keyed(d):
            return {str(c): v for c, v in d.items()}

        return {"inter": keyed(self.inter), "union": keyed(self.union), "inter_skip": keyed(self.inter_skip),
                "union_skip": keyed(self.union_skip), "fb_inter": list(self.fb_inter), "fb_union": list(self.fb_union),
                "episode_iou": {rule: keyed(v) for rule, v in self.episode_iou.items()}}

    def compute(self, conv: Conventions = Conventions()) -> dict:
        return scores(self.sums(), self.class_ids, conv)


def scores(sums: dict, class_ids, conv: Conventions) -> dict:
    """miou, fbiou (%) and class_iou of a run's sums (`IoUAccumulator.sums()`, or a record's) under
    `conv`. A class with nothing to average (never in GT nor predicted) is NaN and left out."""
    skip = conv.absent_ways == "skip"
    inter, union = (sums["inter_skip"], sums["union_skip"]) if skip else (sums["inter"], sums["union"])
    if conv.iou == "per-episode":
        per = sums["episode_iou"][conv.absent_ways]
        class_iou = {c: (per[str(c)][0] / per[str(c)][1] if str(c) in per and per[str(c)][1] else float("nan"))
                     for c in class_ids}
    else:
        class_iou = {c: (inter[str(c)] / union[str(c)] if union[str(c)] else float("nan")) for c in class_ids}
    ious = np.array(list(class_iou.values()), dtype=float)
    if conv.fbiou == "per_class":
        fg = (sum(inter[str(c)] for c in class_ids), sum(union[str(c)] for c in class_ids))
    else:
        fg = (sums["fb_inter"][1], sums["fb_union"][1])
    fb = [i / u if u else float("nan") for i, u in ((sums["fb_inter"][0], sums["fb_union"][0]), fg)]
    return {
        "miou": float(np.nanmean(ious)) * 100 if np.isfinite(ious).any() else float("nan"),
        "fbiou": float(np.nanmean(fb)) * 100 if any(np.isfinite(fb)) else float("nan"),
        "class_iou": {str(c): v * 100 for c, v in class_iou.items()},
    }
