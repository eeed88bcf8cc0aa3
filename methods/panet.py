"""PANet (Wang et al., ICCV 2019): prototypes by masked average pooling, cosine-similarity
segmentation, prototype alignment regularisation (PAR). N-way natively.

Faithful to the paper and its reference code:
- encoder: VGG-16 conv1_1..conv5_3 without conv5_3's ReLU (the reference Encoder ends at the
  conv, so features and cosines can be negative), pool4 stride 1, conv5 dilated (output stride
  8), trained end to end in the episodes; masked average pooling of the features bilinearly
  upsampled to the mask size (computed without materialising the upsampled map:
  methods/pooling.py); one foreground prototype per way (mean over shots), one background
  prototype (mean over every support image of every way); background = every pixel of no episode
  class, void (255) included, as the reference's getMask;
- distance: cosine similarity x 20, softmax over [background, way 1..N], logits upsampled to the
  image; query loss: cross-entropy with 255 ignored;
- PAR: prototypes from the query's own prediction (argmax masks, a way predicted nowhere is
  skipped) segment each support image against its foreground (1) / background (0) mask, other
  ways' pixels ignored, weight 1, averaged over ways and shots;
- SGD, momentum 0.9, weight decay 5e-4, learning rate 1e-3, x0.1 at 1/3 and 2/3 of training
  (the paper: 30k iterations, steps at 10k and 20k); random horizontal flips. `--profile
  reference` (PROFILES below) trains 30k iterations of the full-width VGG-16 without BN, seed 1234.

Adapted for the embedded default on a CPU (all config values, `--set` restores the paper's):
- trunk width 1/4 with BatchNorm (torchvision's vgg16_bn layout) pretrained on the pool's object
  crops instead of ImageNet VGG-16 (no downloads; BN statistics frozen in the episodes since a
  batch is 2-10 images). `trunk_width=1 trunk_bn=false trunk_checkpoint=vgg16-397923af.pth` is
  the paper's trunk for real data;
- training episodes carry one query per way (the harness's FitView), PANet's one per episode;
  losses (and PAR, computed per query) are averaged over the queries;
- images at their native 129x129 instead of 417x417; 3,000 iterations instead of 30,000, set by
  the time budget (0.064 s per 1-way 1-shot episode on 2 cores: 141 s per fold; with 27 s of
  evaluation per fold, 4 folds take ~11 min); not yet tuned for accuracy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backbones.trunks import Vgg16Trunk, method_trunk, pretrained_vgg16, vgg16_need
from bench.core.device import cpu_state, device, tensor, to_numpy
from bench.core.memo import FeatureMemo
from bench.core.profiles import Cited
from bench.core.settings import settings_from
from methods.pooling import masked_average

IGNORE = 255


@dataclass(frozen=True)
class PanetConfig:
    iterations: int = 3000
    lr: float = 1e-3
    scaler: float = 20.0  # cosine similarity multiplier
    align_weight: float = 1.0  # PAR; 0 switches it off
    final_relu: bool = False  # the reference encoder ends before conv5_3's ReLU
    train_way: int = 1
    train_shot: int = 1
    trunk_width: float = 0.25
    trunk_bn: bool = True
    trunk_epochs: int = 6
    trunk_checkpoint: str = ""
    seed: int = 0


def episode_prototypes(support: list[list[torch.Tensor]], masks: list[list[torch.Tensor]]) -> torch.Tensor:
    """(1 + N, C): the background prototype, then one foreground prototype per way.
    support[w][s]: (C, h, w) features; masks[w][s]: (H, W) episode labels (w + 1 = this way)."""
    fg, bg = [], []
    for way, (feats, labels) in enumerate(zip(support, masks), start=1):
        fg.append(torch.stack([masked_average(f, (m == way).float()) for f, m in zip(feats, labels)]).mean(0))
        bg.extend(masked_average(f, background(m).float()) for f, m in zip(feats, labels))
    return torch.stack([torch.stack(bg).mean(0), *fg])


def background(labels: torch.Tensor) -> torch.Tensor:
    """PANet's support background: every pixel of no episode class; like the reference code, the
    void (255) pixels count as background."""
    return (labels == 0) | (labels == IGNORE)


def cosine_logits(features: torch.Tensor, protos: torch.Tensor, scaler: float) -> torch.Tensor:
    """(P, h, w) scaled cosine similarity of every feature vector to every prototype."""
    f = F.normalize(features, dim=0, eps=1e-8)
    return scaler * torch.einsum("chw,pc->phw", f, F.normalize(protos, dim=1, eps=1e-8))


def alignment_loss(q_feats: torch.Tensor, q_logits: torch.Tensor, support: list[list[torch.Tensor]],
                   masks: list[list[torch.Tensor]], scaler: float) -> torch.Tensor:
    """PAR: query prototypes from the query's predicted masks segment the support images.
    q_feats: (C, h, w), q_logits: (1 + N, h, w) for one query (PANet pools over all queries)."""
    pred = q_logits.argmax(0)
    n_ways = len(support)
    loss = q_feats.new_zeros(())
    for way in range(1, n_ways + 1):
        if not (pred == way).any():
            continue
        protos = torch.stack([(q_feats * (pred == c)).sum(dim=(1, 2)) / ((pred == c).sum() + 1e-5) for c in (0, way)])
        for feats, labels in zip(support[way - 1], masks[way - 1]):
            logits = F.interpolate(cosine_logits(feats, protos, scaler)[None], size=labels.shape, mode="bilinear", align_corners=False)
            target = torch.where(labels == way, 1, torch.where(background(labels), 0, IGNORE)).long()
            loss = loss + F.cross_entropy(logits, target[None], ignore_index=IGNORE) / (n_ways * len(support[0]))
    return loss


class Panet:
    name = "panet"
    # the reference code's schedule (bench/core/profiles.py); its lr milestones [10k, 20k, 30k]
    # (config.py:39) are this class's n/3 and 2n/3 at 30k iterations, the last one falls at the end
    PROFILES = {"reference": {"pascal": {
        "iterations": Cited(30000, "kaixin96/PANet@1695bf3 config.py:36"),
        "lr": Cited(1e-3, "kaixin96/PANet@1695bf3 config.py:56 (SGD, momentum 0.9 :57, weight decay 5e-4 :58, as here)"),
        "align_weight": Cited(1.0, "kaixin96/PANet@1695bf3 config.py:40"),
        "scaler": Cited(20.0, "kaixin96/PANet@1695bf3 models/fewshot.py:101"),
        "final_relu": Cited(False, "kaixin96/PANet@1695bf3 models/vgg.py:31 (lastRelu=False on conv5)"),
        "trunk_width": Cited(1.0, "kaixin96/PANet@1695bf3 models/vgg.py:8 (VGG-16 conv1_1-conv5_3, full width)"),
        "trunk_bn": Cited(False, "kaixin96/PANet@1695bf3 models/vgg.py:39 (_make_layer: no BatchNorm)"),
        "seed": Cited(1234, "kaixin96/PANet@1695bf3 config.py:28"),
    }}}

    def __init__(self, **config):
        self.cfg = settings_from(PanetConfig, config, "panet")
        self.trunk = None
        self._memo = FeatureMemo()

    # -- trunk --------------------------------------------------------------------------------
    def _features(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """Per image (C, h, w) trunk features; images of different sizes run as one batch per size."""
        from pseudo_labels.nets import as_batch, by_size

        return by_size(images, lambda batch: list(self.trunk(as_batch(batch), final_relu=self.cfg.final_relu)))

    # -- training -----------------------------------------------------------------------------
    def networks(self) -> list[tuple[str, str]]:
        """(role, weight file) of each pretrained network it stands on; "" = trained here on the pool
        (bench/harness/declared.py checks their classes against the benchmark's)."""
        return [("trunk", self.cfg.trunk_checkpoint)]

    def weights_needed(self) -> str | None:
        """The flags that give this method its pretrained trunk when the dataset has no disjoint pool
        to pretrain one on (real data), or None when it is given."""
        return None if self.cfg.trunk_checkpoint else "--set trunk_width=1 trunk_bn=false trunk_checkpoint=vgg16-397923af.pth"

    def plan(self, ctx):
        """What `fit` and `predict` would build and cost (`bench plan`; bench/core/plans.py): the
        pool VGG-16 trunk, then a fold's checkpoint (the fine-tuned trunk)."""
        from bench.core.plans import MethodPlan, square, training_unit

        need, trunk = vgg16_need(ctx.pool, method_trunk(self.cfg), ctx.cache_dir)
        images = self.cfg.train_way * (self.cfg.train_shot + 1)
        fit = (training_unit(lambda: trunk.to(device()), images, square(ctx.train_size)), self.cfg.iterations)
        probe = torch.zeros(1, 3, *square(ctx.eval_size), device=device())
        episode = (torch.no_grad()(lambda: trunk(probe)), ctx.way * ctx.shot + ctx.way)  # memoised images cost less
        return MethodPlan([need], {"config": asdict(self.cfg), "trunk": cpu_state(trunk)}, fit, episode)

    def fit(self, train, config: dict) -> None:
        torch.manual_seed(self.cfg.seed)
        rng = np.random.default_rng(self.cfg.seed)
        self.trunk, _ = pretrained_vgg16(train.pool, method_trunk(self.cfg), train.cache_dir)
        self._memo.clear()
        opt = torch.optim.SGD(self.trunk.parameters(), lr=self.cfg.lr, momentum=0.9, weight_decay=5e-4)
        n = self.cfg.iterations
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[n // 3, 2 * n // 3], gamma=0.1)
        from bench.core.progress import progress

        self.trunk.train()
        self.trunk.frozen_norm()
        bar = progress(range(n), desc="training PANet")
        curve = train.curve(n, self)
        for step in bar:
            episode, q_masks = train.sample_episode(rng, self.cfg.train_way, self.cfg.train_shot)
            loss = self._episode_loss(episode, q_masks, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            bar.note(loss=loss)
            opt.step()
            sched.step()
            curve.step(step + 1, loss)
        self.trunk.eval()

    def _episode_loss(self, episode, q_masks, rng) -> torch.Tensor:
        flip = [rng.random() < 0.5 for _ in range(episode.way * (episode.shot + 1))]
        images = [im for way in episode.support_images for im in way] + list(episode.query_images)
        masks = [m for way in episode.support_masks for m in way] + list(q_masks)
        images = [np.ascontiguousarray(im[:, ::-1]) if f else im for im, f in zip(images, flip)]
        masks = [tensor(m[:, ::-1] if f else m).long() for m, f in zip(masks, flip)]
        feats = self._features(images)
        support, s_masks = self._per_way(feats, masks, episode.way, episode.shot)
        protos = episode_prototypes(support, s_masks)
        loss = feats[0].new_zeros(())
        n_support = episode.way * episode.shot
        for j in range(episode.way):
            q_feat, q_mask = feats[n_support + j], masks[n_support + j]
            q_logits = cosine_logits(q_feat, protos, self.cfg.scaler)
            up = F.interpolate(q_logits[None], size=q_mask.shape, mode="bilinear", align_corners=False)
            loss = loss + F.cross_entropy(up, q_mask[None], ignore_index=IGNORE) / episode.way
            if self.cfg.align_weight:
                loss = loss + self.cfg.align_weight * alignment_loss(q_feat, q_logits, support, s_masks, self.cfg.scaler) / episode.way
        return loss

    @staticmethod
    def _per_way(feats, masks, way: int, shot: int):
        support = [[feats[w * shot + s] for s in range(shot)] for w in range(way)]
        s_masks = [[masks[w * shot + s] for s in range(shot)] for w in range(way)]
        return support, s_masks

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, episode) -> list[np.ndarray]:
        ids = [i for way in episode.support_ids for i in way] + list(episode.query_ids)
        images = [im for way in episode.support_images for im in way] + list(episode.query_images)
        feats = self._memo.get(ids, images, self._features)
        masks = [tensor(m).long() for way in episode.support_masks for m in way]
        support, s_masks = self._per_way(feats, masks, episode.way, episode.shot)
        protos = episode_prototypes(support, s_masks)
        preds = []
        for j, image in enumerate(episode.query_images):
            logits = cosine_logits(feats[episode.way * episode.shot + j], protos, self.cfg.scaler)
            up = F.interpolate(logits[None], size=image.shape[:2], mode="bilinear", align_corners=False)[0]
            preds.append(to_numpy(up.argmax(0)).astype(np.uint8))
        return preds

    # -- state --------------------------------------------------------------------------------
    def clear_caches(self) -> None:
        """Forgets the trunk features memoised so far: a mid-fit validation (bench/core/curves.py) made them
        with weights that are still changing."""
        self._memo.clear()

    def state_dict(self) -> dict:
        return {"config": asdict(self.cfg), "trunk": cpu_state(self.trunk)}

    def load_state_dict(self, state: dict) -> None:
        self.trunk = Vgg16Trunk.like(method_trunk(self.cfg))
        self.trunk.load_state_dict(state["trunk"])
        self.trunk.to(device()).eval()
        self._memo.clear()
