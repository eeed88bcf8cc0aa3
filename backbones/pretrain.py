"""Pretraining DeepLabV3+ for semantic segmentation on the disjoint pool (never the benchmark's
classes), cached by fingerprint; or loading a user's checkpoint for real data.

The pool has 250 classes + background (the COCO-like set's: 201). Recipe (embedded preset, 2 cores):
1. the ResNet classifies the pool's single-object crops (2 epochs, ~190 s; held-out nearest-class-
   mean accuracy of its pooled features 82 % over 250 classes);
2. DeepLabV3+ segmentation of whole pool images at 97x97 (random scale crops of the 129x129
   images), AdamW with a 10x higher rate for the new head than for the ResNet, one-cycle, 600 steps
   of 16 (~590 s). SGD (lr 0.01, poly) for 1-2 epochs left the net predicting background
   everywhere (held-out mIoU 0.3 %); this recipe reaches 3.7 % mIoU over 250 classes and an
   object-vs-background IoU of 52.7 % (printed beside it). The class-wise number is
   low because 250 classes x 20 images is little data for pixel-level classification; the
   decoder features are what the few-shot methods use.
The held-out mIoU on the pool's val images is printed and stored. The COCO-like pool (201 classes,
4,020 images): 4.4 % mIoU, object-vs-background IoU 59.0 %, 1,827 s on one thread shared with other jobs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backbones.deeplab import ARCHS, build_deeplab, logits
from bench.data.datasets import IGNORE, require_pool
from bench.core.errors import BenchError
from bench.core.optim import RECIPE, adam
from bench.core.progress import progress
from bench.core.locks import one_builder
from bench.core.device import device, forked_rng, tensor, to_numpy
from bench.core.files import atomic_write_bytes
from bench.core.weights import load_weights
from bench.data.vocabulary import write_class_list
from bench.core.settings import settings_from

BACKBONE_VERSION = 3  # bump when the recipe changes: cached weights of an older recipe are then not reused


@dataclass(frozen=True)
class BackboneConfig:
    arch: str = "r18-os16"
    checkpoint: str = ""  # a user's mmseg/our state dict: skips pool pretraining (real data)
    crop_epochs: int = 2  # stage 1: classify object crops of the pool (backbone only, 64 px)
    steps: int = 600  # stage 2: segmentation of whole pool images, batches of `batch`
    batch: int = 16
    lr: float = 2e-3  # decoder head; the ResNet gets lr / 10
    train_size: int = 97
    max_images: int = 0  # 0 = every pool training image
    seed: int = 0

    def key(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "version": BACKBONE_VERSION, "optimizer": RECIPE}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def backbone_config(overrides: dict | None = None) -> BackboneConfig:
    return settings_from(BackboneConfig, overrides, "backbone", {"arch": tuple(ARCHS)})


def weights_path(cache_dir: Path, pool, cfg: BackboneConfig) -> Path:
    return Path(cache_dir) / "backbones" / f"deeplabv3plus-{cfg.arch}-{pool.name}-{pool.fingerprint()}-{cfg.key()}.pt"


def _random_crop(rng, image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random scale in [0.75, 1.25] of the image side, random crop (or pad) to size x size, flip."""
    from PIL import Image

    h, w = mask.shape
    s = rng.uniform(0.75, 1.25)
    nh, nw = max(size, int(h * s)), max(size, int(w * s))
    image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    mask = np.asarray(Image.fromarray(mask).resize((nw, nh), Image.NEAREST))
    y, x = rng.integers(0, nh - size + 1), rng.integers(0, nw - size + 1)
    image, mask = image[y : y + size, x : x + size], mask[y : y + size, x : x + size]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return image, mask


def train_on_pool(pool, cfg: BackboneConfig) -> tuple[torch.nn.Module, dict]:
    from pseudo_labels.nets import as_batch
    from pseudo_labels.train import pool_arrays

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train, val = pool_arrays(pool, "train"), pool_arrays(pool, "val")
    n = len(train.images) if not cfg.max_images else min(cfg.max_images, len(train.images))
    n_classes = len(pool.class_names) + 1
    model = build_deeplab(cfg.arch, n_classes).to(device(), memory_format=torch.channels_last)
    t0 = time.perf_counter()
    if cfg.crop_epochs:
        _classify_crops(model, train, cfg, rng)
    rates = [cfg.lr / 10, cfg.lr]
    opt = adam([{"params": model.backbone.parameters(), "lr": rates[0]},
                {"params": model.decode_head.parameters(), "lr": rates[1]}], decoupled=True, weight_decay=1e-4)
    batches = [rng.integers(0, n, cfg.batch) for _ in range(cfg.steps)]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=rates, total_steps=max(len(batches), 1), pct_start=0.1)
    model.train()
    for idx in progress(batches, desc=f"pretraining DeepLabV3+ {cfg.arch} on {pool.name}"):
        pairs = [_random_crop(rng, train.images[i], train.masks[i], cfg.train_size) for i in idx]
        x = as_batch(np.stack([p[0] for p in pairs])).contiguous(memory_format=torch.channels_last)
        y = tensor(np.stack([p[1] for p in pairs]).astype(np.int64))
        out = F.interpolate(logits(model, x), size=y.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(out, y, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    meta = {"arch": cfg.arch, "classes": ["background", *pool.class_names], "train_s": round(time.perf_counter() - t0, 1),
            "n_train": n, "crop_epochs": cfg.crop_epochs, "steps": cfg.steps, "train_size": cfg.train_size, **pool_miou(model.eval(), val)}
    return model, meta


class _LastStage(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(x)[-1]


def _classify_crops(model, train, cfg: BackboneConfig, rng) -> None:
    """Stage 1: the ResNet learns the pool's 250 classes on single-object crops (global average
    pooling + a temporary linear layer): objects first, then segmentation."""
    from backbones.crops import classify_crops
    from pseudo_labels.train import object_crops

    crops, classes = object_crops(train)
    width = model.backbone(torch.zeros(1, 3, 64, 64, device=device()))[-1].shape[1]
    classify_crops(_LastStage(model.backbone), width, crops, classes, cfg.crop_epochs, 3e-3, rng,
                   "pretraining the ResNet on pool object crops")


@torch.no_grad()
def pool_miou(model, val) -> dict:
    """Held-out mIoU over the classes present in the pool's val masks (background included)."""
    from pseudo_labels.nets import as_batch

    n_classes = model.decode_head.num_classes
    conf = np.zeros((n_classes, n_classes), np.int64)
    for i in range(0, len(val.images), 32):
        x = as_batch(val.images[i : i + 32])
        pred = to_numpy(F.interpolate(logits(model, x), size=x.shape[-2:], mode="bilinear", align_corners=False).argmax(1))
        gt = val.masks[i : i + 32]
        keep = gt != IGNORE
        conf += np.bincount(gt[keep].astype(np.int64) * n_classes + pred[keep], minlength=n_classes**2).reshape(n_classes, n_classes)
    return confusion_scores(conf)


def confusion_scores(conf: np.ndarray) -> dict:
    """mIoU over the classes present in the ground truth (rows), pixel accuracy, and the
    class-agnostic object-vs-background IoU (any object class predicted on any object pixel)."""
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    objects = conf[1:, 1:].sum()
    return {"val_miou": round(float(np.mean(inter[present] / union[present])) * 100, 2),
            "val_pixel_acc": round(float(inter.sum() / conf.sum()) * 100, 2),
            "val_object_iou": round(float(objects / max(conf[1:].sum() + conf[:, 1:].sum() - objects, 1)) * 100, 2)}


def pretrained_backbone(pool, cfg: BackboneConfig, cache_dir: Path, log=print) -> tuple[torch.nn.Module, dict, Path]:
    """The frozen DeepLabV3+: a user checkpoint, or pretrained on `pool` (the dataset's disjoint pool
    reader, None for a real dataset; trained on first use)."""
    if cfg.checkpoint:
        return _user_checkpoint(Path(cfg.checkpoint), cfg)
    pool = require_pool(pool, "the DeepLabV3+ backbone (no checkpoint= given)")
    path = weights_path(cache_dir, pool, cfg)
    with one_builder(path):
        if not path.is_file():
            log(f"pretraining DeepLabV3+ {cfg.arch} on {pool.name} ({len(pool.class_names)} classes + background, "
                f"{cfg.crop_epochs} epochs on object crops, then {cfg.steps} steps of segmentation at {cfg.train_size}px)")
            with forked_rng():  # a method seeded before calling us draws the same numbers, trained here or cached
                model, meta = train_on_pool(pool, cfg)
            buf = io.BytesIO()
            torch.save({"state_dict": model.state_dict(), "meta": meta}, buf)
            atomic_write_bytes(path, buf.getvalue())
            write_class_list(path, pool.class_names)
            path.with_suffix(".json").write_text(json.dumps({k: v for k, v in meta.items() if k != "classes"}, indent=1) + "\n")
            log(f"DeepLabV3+ on the pool: held-out mIoU {meta['val_miou']:.1f}% ({len(pool.class_names)} classes), object-vs-background IoU "
                f"{meta['val_object_iou']:.1f}%, pixel accuracy {meta['val_pixel_acc']:.1f}% -> {path}")
    blob = load_weights(path, "pool-pretrained DeepLabV3+", "delete it; the next run pretrains it again")
    model = build_deeplab(cfg.arch, len(blob["meta"]["classes"]))
    model.load_state_dict(blob["state_dict"])
    return _frozen(model), {**blob["meta"], "weights_id": path.stem}, path


def _user_checkpoint(path: Path, cfg: BackboneConfig):
    from bench.core.files import file_sha

    fix = f"pass an mmsegmentation DeepLabV3+ {cfg.arch} checkpoint as the backbone setting checkpoint=FILE"
    blob = load_weights(path, "backbone checkpoint", fix, weights_only=False)
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    head = state.get("decode_head.conv_seg.weight") if isinstance(state, dict) else None
    if head is None:
        raise BenchError(f"{path} has no decode_head.conv_seg.weight; fix: pass a DeepLabV3+ checkpoint from mmsegmentation")
    model = build_deeplab(cfg.arch, head.shape[0])
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        missing = [str(exc).strip().splitlines()[-1].strip()]
    if missing:
        raise BenchError(f"{path} does not fit DeepLabV3+ {cfg.arch} ({missing[0]}); fix: choose the matching arch, "
                         f"one of {', '.join(ARCHS)}")
    return _frozen(model), {"arch": cfg.arch, "checkpoint": str(path), "weights_id": f"{path.stem}-{file_sha(path)[:12]}"}, path


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    """On the device, in eval mode, without gradients."""
    model.to(device()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def backbone_need(pool, cfg: BackboneConfig, cache_dir: Path):
    """The pool pretraining `pretrained_backbone` would run, as a plan entry (bench/core/plans.py),
    with the weights' id the feature stores are keyed by and a randomly initialised model of the
    architecture (the stores' bytes per pixel come from its outputs). A user checkpoint: nothing
    to build, keyed by its content."""
    from bench.core.files import file_sha
    from bench.core.plans import Need, state_bytes, training_unit
    from pseudo_labels.plan import SIDE_FILES, pool_counts

    if cfg.checkpoint:
        path = Path(cfg.checkpoint)
        model = _frozen(build_deeplab(cfg.arch, 21))
        return Need(f"DeepLabV3+ {cfg.arch}: your file", path, 0, exists=True), f"{path.stem}-{file_sha(path)[:12]}", model
    pool = require_pool(pool, "the DeepLabV3+ backbone (no checkpoint= given)")
    path = weights_path(cache_dir, pool, cfg)
    model = build_deeplab(cfg.arch, len(pool.class_names) + 1)
    n_train, n_objects = pool_counts(pool)
    # stage 1: every object crop (64 px) per epoch, batches of 64; stage 2: `steps` batches at train_size
    count = cfg.steps + cfg.crop_epochs * n_objects / cfg.batch * (64 / cfg.train_size) ** 2
    unit = training_unit(lambda: model, cfg.batch, cfg.train_size, outputs=logits)
    need = Need(f"DeepLabV3+ {cfg.arch} pretrained on {pool.name}", path,
                state_bytes({"state_dict": model.state_dict(), "meta": {}}) + SIDE_FILES, unit, count)
    # a second instance for the stores' probe: `_frozen` takes the gradients the training probe needs
    return need, path.stem, _frozen(build_deeplab(cfg.arch, len(pool.class_names) + 1))
