"""The pixel-level meta-learner (Lee et al., WACV 2022, §3.3): frozen DeepLabV3+ decoder features,
an MLP encoder E (two hidden layers -> 64-d) meta-trained with a pixel prototypical loss, and
k-NN of query pixels against support pixel embeddings at test time. N-way natively.

Resolution: k-NN runs on the decoder's stride-4 grid (33x33 for 129x129 images) with support labels
taken at the grid points; per-class vote shares are upsampled bilinearly to the image. Running it
on every image pixel costs ~200x the products (16,641^2 instead of 1,089^2 pairs per 1-shot episode);
`knn_at="image"` does that, for measuring what the shortcut costs.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.device import cpu_state, device, tensor, to_numpy
from bench.core.errors import BenchError
from bench.core.memo import BytesLRU
from bench.core.optim import adam
from bench.core.profiles import Cited
from bench.core.settings import settings_from

IGNORE = 255
LOSSES = ("ce", "eq5")
UNMATCHED = ("drop", "keep")
CLASSIFIERS = ("knn", "prototype")


@dataclass(frozen=True)
class OursConfig:
    encoder: bool = True  # False: the ours-noE ablation (k-NN on raw backbone features, no meta-training)
    hidden: int = 256
    dim: int = 64
    loss: str = "ce"  # ce: softmax cross-entropy over -d; eq5: the paper's eq. 5 as printed, mean of -exp(-d)
    episodes: int = 1500
    # query pixels whose class has no support prototype: drop them from the loss (weak mode, ~8 % of
    # the embedded default's episodes) or keep them (the pre-fix behaviour: an infinite loss)
    unmatched: str = "drop"
    train_way: int = 1
    train_shot: int = 1
    support_pixels: int = 2000  # sampled per episode for the prototypes (all if fewer), when class_pixels = 0
    query_pixels: int = 2000  # sampled per episode for the loss
    # §3.3 "a fixed number of pixels from each background/foreground category": per label and episode,
    # for the prototypes in training and for the k-NN support set at test (all of a label with fewer);
    # 0 = off. 50 chosen on base-class episodes of fold 0's training images, never a test class
    # (benchmarks/ours_sampling.py, full mode, 1000 episodes x seeds 777 and 778, foreground IoU for
    # 0 / 5 / 10 / 25 / 50 / 100 / 200: ours 21.6 / 24.2 / 24.9 / 22.8 / 24.0 / 23.9 / 23.9, ours-noE
    # 20.8 / 19.4 / 21.0 / 21.6 / 21.9 / 21.9 / 22.0): a plateau from 50 up for both, where 10 helps
    # ours and hurts ours-noE; 50 is the smallest value on both plateaus (cheapest k-NN)
    class_pixels: int = 50
    classifier: str = "knn"  # knn: k nearest support pixels (the paper); prototype: nearest class mean (a diagnostic)
    lr: float = 1e-3
    k: int = 5
    knn_at: str = "feature"  # feature: stride-4 grid, votes upsampled; image: every pixel
    chunk: int = 4096  # query rows per distance block: memory stays O(chunk x support pixels)
    # backbone (backbones/pretrain.py:BackboneConfig fields, prefixed)
    backbone_arch: str = "r18-os16"
    backbone_checkpoint: str = ""
    backbone_crop_epochs: int = 2
    backbone_steps: int = 600
    backbone_max_images: int = 0
    seed: int = 0


def encoder(in_dim: int, hidden: int, dim: int) -> nn.Module:
    """E: two hidden layers (1x1 convs = a per-pixel MLP)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, dim))


def prototypes(emb: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Eq. 4: p_c = mean embedding of the support pixels labelled c, c = 0 (background) .. N.
    A class with no pixel gets a prototype of +inf distance (NaN-free: a row of zeros is masked later)."""
    onehot = F.one_hot(labels, n_classes).to(emb.dtype)  # (P, N+1)
    counts = onehot.sum(0)
    return (onehot.T @ emb) / counts.clamp(min=1)[:, None], counts > 0


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.pow(2).sum(1, keepdim=True) - 2 * a @ b.T + b.pow(2).sum(1)[None]).clamp(min=0)


def prototypical_loss(q_emb, q_labels, protos, present, kind: str = "ce", unmatched: str = "drop") -> torch.Tensor:
    """Eq. 5 over the query pixels. A query pixel whose class has no support prototype (weak mode:
    the support's pseudo mask missed a class the query's pseudo mask holds) has no distance to be
    pulled towards: its term is -log 0 = inf. `unmatched="drop"` leaves such pixels out of the loss
    (no episode of the support shows their class); "keep" is the old behaviour, an infinite loss
    whose finite gradient only pushes the pixel away from every present prototype. The filter runs
    only when a pixel is unmatched, so full-mode fits (every query class has a prototype) are
    bit-identical under both. No pixel left: a zero loss that keeps the graph (no update)."""
    if unmatched == "drop":
        matched = present[q_labels]
        if not bool(matched.all()):
            q_emb, q_labels = q_emb[matched], q_labels[matched]
            if q_labels.numel() == 0:
                return q_emb.sum() * 0.0
    elif unmatched != "keep":
        raise BenchError(f"unknown unmatched='{unmatched}'; use one of {', '.join(UNMATCHED)}")
    d = squared_distances(q_emb, protos)
    d = torch.where(present[None], d, torch.full_like(d, float("inf")))
    if kind == "ce":
        return F.cross_entropy(-d, q_labels)
    if kind == "eq5":
        return -torch.exp(-d.gather(1, q_labels[:, None])).mean()
    raise BenchError(f"unknown loss '{kind}'; use one of {', '.join(LOSSES)}")


def knn_votes(query: torch.Tensor, support: torch.Tensor, labels: torch.Tensor, n_classes: int, k: int,
              chunk: int = 4096) -> torch.Tensor:
    """(Q, n_classes) share of each class among the k nearest support pixels of every query pixel.
    Distances are formed one block of `chunk` query rows at a time: |q|^2 - 2 q.s + |s|^2, so the
    full Q x S matrix never exists."""
    k = min(k, support.shape[0])
    s_norm = support.pow(2).sum(1)
    out = torch.empty(query.shape[0], n_classes, device=query.device)
    for start in range(0, query.shape[0], chunk):
        q = query[start : start + chunk]
        d = torch.addmm(s_norm[None], q, support.T, alpha=-2.0)  # |q|^2 is constant per row: no effect on the ranking
        idx = d.topk(k, dim=1, largest=False).indices
        out[start : start + chunk] = F.one_hot(labels[idx], n_classes).float().mean(1)
    return out


class Ours:
    # no reference code exists: what the paper states (§4), and a documented choice where it is silent
    PROFILES = {"reference": {"pascal": {
        "dim": Cited(64, "paper §4: E, an MLP with two hidden layers (methods/ours.py:encoder), outputs 64-d"),
        "hidden": Cited(256, "choice: the paper does not give E's hidden width; the embedded value"),
        "episodes": Cited(1500, "choice: the paper gives no schedule; the embedded value until the convergence "
                                "rule (bench/core/curves.py) is run on real data"),
        "backbone_arch": Cited("r101-os8", "choice: the paper says DeepLabv3+ without its trunk; mmseg's "
                                           "deeplabv3plus_r101-d8, the common released one"),
    }}}
    name = "ours"
    test_settings = ("classifier", "k", "knn_at", "chunk")  # settings fitting never reads (checkpoints ignore them)

    def __init__(self, **config):
        self.cfg = settings_from(OursConfig, config, "ours", {"loss": LOSSES, "knn_at": ("feature", "image"),
                                                              "classifier": CLASSIFIERS, "unmatched": UNMATCHED})
        self.features = None
        self._trained_on: str | None = None  # backbone weights (by content) E was meta-trained on
        self.enc: nn.Module | None = None
        self.history: list[float] = []
        self._grid = BytesLRU()  # (image id, size) -> (h*w, dim) embeddings on the feature grid

    # -- features ------------------------------------------------------------------------------
    def networks(self) -> list[tuple[str, str]]:
        """(role, weight file) of each pretrained network it stands on; "" = trained here on the pool
        (bench/harness/declared.py checks their classes against the benchmark's)."""
        return [("backbone", self.cfg.backbone_checkpoint)]

    def weights_needed(self) -> str | None:
        """The flags that give ours its frozen DeepLabV3+ on a dataset without a disjoint pool."""
        return None if self.cfg.backbone_checkpoint else ("--set backbone_arch=r50-os8 backbone_checkpoint=FILE "
                                                           "(an mmsegmentation DeepLabV3+ trained on classes disjoint from the benchmark's)")

    def attach(self, train) -> None:
        """Binds the frozen backbone and the feature cache of the fit view's images (called by
        `fit`, and by the runner after `load_state_dict`, so a saved fold evaluates without refitting).
        Features are stored at the sizes the method will see: training images at the preset's
        train_size, test images at its eval_size."""
        from backbones.features import FeatureCache
        from backbones.pretrain import backbone_config, pretrained_backbone

        bcfg = backbone_config({"arch": self.cfg.backbone_arch, "checkpoint": self.cfg.backbone_checkpoint,
                                "crop_epochs": self.cfg.backbone_crop_epochs, "steps": self.cfg.backbone_steps, "max_images": self.cfg.backbone_max_images})
        model, meta, _ = pretrained_backbone(train.pool, bcfg, train.cache_dir)
        weights = meta["weights_id"]
        if self._trained_on not in (None, weights):
            raise BenchError(f"this checkpoint of ours was meta-trained on the features of backbone {self._trained_on}, "
                             f"not {weights}; fix: bench run ... --retrain")
        self._trained_on = weights
        self._grid.clear()
        self.features = FeatureCache(train.images, model, weights, train.cache_dir)
        self.features.ensure(train.ids, train.train_size, "backbone features, training images")
        self.features.ensure(train.test_ids(), train.eval_size, "backbone features, test images")

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x) if self.enc is not None else x

    def _grid_embedding(self, image_id: str, shape) -> torch.Tensor:
        """(h*w, dim) embeddings of an image's feature grid. E is frozen at test time and the runs of
        a protocol reuse the same test images, so each is embedded once (memo bounded in bytes)."""
        key = (image_id, tuple(shape))
        emb = self._grid.get(key)
        if emb is None:
            emb = self._embed(self.features.features(image_id, shape).flatten(1).T)
            self._grid.put(key, emb)
        return emb

    # -- training ------------------------------------------------------------------------------
    def fit(self, train, config: dict) -> None:
        self.attach(train)
        if not self.cfg.encoder:
            train.curve(0, self)  # nothing is trained: the record says "no training"
            return
        torch.manual_seed(self.cfg.seed)
        rng = np.random.default_rng(self.cfg.seed)
        in_dim = self.features.features(train.ids[0], train.image(train.ids[0]).shape[:2]).shape[0]
        self.enc = encoder(in_dim, self.cfg.hidden, self.cfg.dim).to(device())
        opt = adam(self.enc.parameters(), lr=self.cfg.lr)
        from bench.core.progress import progress

        self.enc.train()
        bar = progress(range(self.cfg.episodes), desc="meta-training E")
        curve = train.curve(self.cfg.episodes, self)
        for step in bar:
            episode, q_masks = train.sample_episode(rng, self.cfg.train_way, self.cfg.train_shot)
            loss = self._episode_loss(episode, q_masks, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            bar.note(loss=loss)
            opt.step()
            self.history.append(float(loss.detach()))
            curve.step(step + 1, loss)
        self.enc.eval()

    def _episode_loss(self, episode, q_masks, rng) -> torch.Tensor:
        n = episode.way + 1
        s_feat, s_lab = self._labelled_pixels(episode.support_ids, episode.support_masks, self._feature_rows)
        if self.cfg.class_pixels:
            keep = class_balanced(rng, s_lab, self.cfg.class_pixels)
        else:
            keep = _sample(rng, len(s_lab), self.cfg.support_pixels)
        protos, present = prototypes(self.enc(s_feat[keep]), s_lab[keep], n)
        q_feat, q_lab = self._labelled_pixels([[i] for i in episode.query_ids], [[m] for m in q_masks], self._feature_rows)
        keep = _sample(rng, len(q_lab), self.cfg.query_pixels)
        return prototypical_loss(self.enc(q_feat[keep]), q_lab[keep], protos, present, self.cfg.loss,
                                  self.cfg.unmatched)

    def _labelled_pixels(self, ids_per_way, masks_per_way, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Support (or training-query) pixel rows with their episode labels, 255 dropped. `rows(id,
        size)` gives an image's (P, D) rows and the (h, w) grid they lie on; labels are read at the
        grid points (nearest; the identity when the grid is the mask itself)."""
        feats, labels = [], []
        for ids, masks in zip(ids_per_way, masks_per_way):
            for image_id, mask in zip(ids, masks):
                f, grid = rows(image_id, mask.shape)
                lab = _grid_labels(tensor(mask).long(), grid).flatten()
                valid = lab != IGNORE
                feats.append(f[valid])
                labels.append(lab[valid])
        return torch.cat(feats), torch.cat(labels)

    def _feature_rows(self, image_id: str, size) -> tuple[torch.Tensor, tuple[int, int]]:
        """Raw backbone features on the feature grid (meta-training: E is still changing)."""
        f = self.features.features(image_id, size)
        return f.flatten(1).T, tuple(f.shape[1:])

    def _test_rows(self, image_id: str, size) -> tuple[torch.Tensor, tuple[int, int]]:
        """Test-time embeddings: on the feature grid, each image embedded once per fold
        (`knn_at=feature`), or at every pixel of `size` (`knn_at=image`)."""
        if self.cfg.knn_at == "image":
            return self._embed(self.features.pixel_features(image_id, size).flatten(1).T), tuple(size)
        return self._grid_embedding(image_id, size), self.features.grid_size(image_id, size)

    # -- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, episode) -> list[np.ndarray]:
        n = episode.way + 1
        s_emb, s_lab = self._labelled_pixels(episode.support_ids, episode.support_masks, self._test_rows)
        if self.cfg.class_pixels:
            # the same support pixels whenever this support set comes again (any order of episodes)
            rng = np.random.default_rng([self.cfg.seed, zlib.crc32("|".join(i for ids in episode.support_ids for i in ids).encode())])
            keep = class_balanced(rng, s_lab, self.cfg.class_pixels)
            s_emb, s_lab = s_emb[keep], s_lab[keep]
        preds = []
        for image_id, image in zip(episode.query_ids, episode.query_images):
            size = image.shape[:2]
            q, grid = self._test_rows(image_id, size)
            votes = self._scores(q, s_emb, s_lab, n).T.reshape(1, n, *grid)
            if grid != tuple(size):
                votes = F.interpolate(votes, size=size, mode="bilinear", align_corners=False)
            preds.append(to_numpy(votes[0].argmax(0)).astype(np.uint8))
        return preds

    def _scores(self, query: torch.Tensor, support: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
        """(Q, n) class scores of query pixels: k-NN vote shares, or for `classifier=prototype` the
        softmax over -squared distance to each class's mean support embedding."""
        if self.cfg.classifier == "knn":
            return knn_votes(query, support, labels, n, self.cfg.k, self.cfg.chunk)
        protos, present = prototypes(support, labels, n)
        d = squared_distances(query, protos)
        return torch.where(present[None], -d, torch.full_like(d, -float("inf"))).softmax(1)

    # -- plan ----------------------------------------------------------------------------------
    def plan(self, ctx):
        """What `fit` and `predict` would build and cost (`bench plan`; bench/core/plans.py): the
        pool DeepLabV3+, its decoder features of the training and test images, E's checkpoint."""
        from backbones.deeplab import decoder_features
        from backbones.features import FeatureCache
        from backbones.pretrain import backbone_config, backbone_need
        from bench.core.plans import MethodPlan, square

        bcfg = backbone_config({"arch": self.cfg.backbone_arch, "checkpoint": self.cfg.backbone_checkpoint,
                                "crop_epochs": self.cfg.backbone_crop_epochs, "steps": self.cfg.backbone_steps,
                                "max_images": self.cfg.backbone_max_images})
        net, weights, model = backbone_need(ctx.pool, bcfg, ctx.cache_dir)
        store = FeatureCache(ctx.images, model, weights, ctx.cache_dir)
        needs = [net, store.need(ctx.train_ids, ctx.train_size, "decoder features, training images"),
                 store.need(ctx.test_ids, ctx.eval_size, "decoder features, test images")]
        h, w = square(ctx.eval_size)
        with torch.no_grad():
            grid = decoder_features(model, torch.zeros(1, 3, h, w, device=device()))
        in_dim, cells = grid.shape[1], grid.shape[2] * grid.shape[3]
        enc = encoder(in_dim, self.cfg.hidden, self.cfg.dim).to(device()) if self.cfg.encoder else None
        state = {"config": asdict(self.cfg), "encoder": None if enc is None else cpu_state(enc), "backbone": weights,
                 "loss_history": [1.0] * (self.cfg.episodes if enc is not None else 0)}
        rows = torch.randn(self.cfg.query_pixels + (self.cfg.train_way + 1) * self.cfg.class_pixels, in_dim, device=device())

        def step():
            enc(rows).pow(2).mean().backward()
            enc.zero_grad(set_to_none=True)

        support = torch.randn(ctx.way * ctx.shot * cells, in_dim, device=device())
        labels = torch.randint(0, ctx.way + 1, (len(support),), device=device())

        @torch.no_grad()
        def episode():  # embed the query grid, k-NN against the support (the memo embeds each image once)
            q = support[:cells] if enc is None else enc(support[:cells])
            s = support if enc is None else enc(support)
            knn_votes(q, s, labels, ctx.way + 1, self.cfg.k, self.cfg.chunk)

        fit = (step, self.cfg.episodes) if enc is not None else (None, 0)
        return MethodPlan(needs, state, fit, (episode, ctx.way))

    # -- state ---------------------------------------------------------------------------------
    def clear_caches(self) -> None:
        """Forgets the embeddings made by E memoised so far: a mid-fit validation (bench/core/curves.py) made them
        with weights that are still changing."""
        self._grid.clear()

    def state_dict(self) -> dict:
        return {"config": asdict(self.cfg), "encoder": None if self.enc is None else cpu_state(self.enc),
                "backbone": self._trained_on, "loss_history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("loss_history", []))
        self._grid.clear()
        self._trained_on = state.get("backbone")
        if state.get("encoder") is None:
            self.enc = None
            return
        weights = state["encoder"]
        self.enc = encoder(weights["0.weight"].shape[1], self.cfg.hidden, self.cfg.dim)
        self.enc.load_state_dict(weights)
        self.enc.to(device())
        self.enc.eval()


class OursNoE(Ours):
    """Ablation: k-NN on the raw backbone features, no encoder, no meta-training."""

    name = "ours-noE"

    def __init__(self, **config):
        super().__init__(**{"encoder": False, **config})


def _sample(rng, n: int, m: int) -> np.ndarray:
    return np.arange(n) if n <= m else np.sort(rng.choice(n, m, replace=False))


def class_balanced(rng, labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Sorted indices of up to `per_class` pixels of every label present (all of a label with
    fewer): background and each way weigh alike in the prototypes and in the k-NN vote."""
    lab = to_numpy(labels)
    keep = []
    for c in np.unique(lab):
        where = np.flatnonzero(lab == c)
        keep.append(where[_sample(rng, len(where), per_class)])
    return tensor(np.sort(np.concatenate(keep)))


def _grid_labels(mask: torch.Tensor, size) -> torch.Tensor:
    """Episode labels at the centres of an h x w grid laid over the mask (nearest pixel)."""
    H, W = mask.shape
    ys = ((torch.arange(size[0], device=mask.device) + 0.5) * H / size[0]).long().clamp(max=H - 1)
    xs = ((torch.arange(size[1], device=mask.device) + 0.5) * W / size[1]).long().clamp(max=W - 1)
    return mask[ys][:, xs]
