"""Training the pool CAM classifier and the pool saliency net, cached by fingerprint.

Both see only the disjoint pool: the CAM net its image-level labels (multi-label), the saliency net
its masks with every class merged into one foreground (no categorical supervision).
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.datasets import IGNORE, pool_dataset
from bench.core.device import device, tensor, to_numpy
from bench.core.optim import RECIPE, adam
from bench.core.progress import progress
from bench.core.locks import one_builder
from bench.core.files import atomic_write_bytes
from bench.core.weights import load_weights
from pseudo_labels.config import CAM_FIELDS, SALIENCY_FIELDS, PseudoConfig
from pseudo_labels.nets import ARCH_VERSION, CamNet, SaliencyNet, as_batch

TRAIN_SIZES = (97, 113, 129)  # multi-scale training: cheaper steps and scale robustness
CROP_SIZE = 64


@dataclass
class PoolArrays:
    images: np.ndarray  # N,H,W,3 uint8
    masks: np.ndarray  # N,H,W uint8
    labels: np.ndarray  # N,K float32 multi-hot (image-level labels)


def pool_arrays(pool, split: str) -> PoolArrays:
    ids = pool.ids(split)
    label_file = json.loads((pool.root / "image_labels.json").read_text())
    n_classes = len(pool.class_names)
    images, masks = [], []
    labels = np.zeros((len(ids), n_classes), np.float32)
    for i, image_id in enumerate(progress(ids, desc=f"loading pool {split}")):
        images.append(pool.image(image_id))
        masks.append(pool.mask(image_id))
        labels[i, [c - 1 for c in label_file[image_id]]] = 1.0
    return PoolArrays(np.stack(images), np.stack(masks), labels)


def model_path(cache_dir: Path, kind: str, pool, cfg: PseudoConfig) -> Path:
    fields = CAM_FIELDS if kind == "cam" else SALIENCY_FIELDS
    name = f"{kind}{ARCH_VERSION[kind]}-{RECIPE}-{pool.name}-{pool.fingerprint()}-{cfg.key(fields)}.pt"
    return Path(cache_dir) / "pseudo" / "models" / name


def save_model(path: Path, net: torch.nn.Module, meta: dict, classes=()) -> None:
    """Weights, their meta as JSON, and the classes they saw (`<weights>.classes.txt`)."""
    from bench.data.vocabulary import write_class_list

    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "meta": meta}, buf)
    atomic_write_bytes(path, buf.getvalue())
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    write_class_list(path, classes)


def _batches(rng: np.random.Generator, n: int, batch: int):
    order = rng.permutation(n)
    return [order[i : i + batch] for i in range(0, n, batch)]


def _augmented(x: torch.Tensor, rng: np.random.Generator, size: int, y: torch.Tensor | None = None,
               colours: bool = False):
    if colours and rng.random() < 0.5:
        x = x[:, rng.permutation(3)]  # shuffled colour channels: objecthood must not hinge on the pool's palette
    if rng.random() < 0.5:
        x = x.flip(-1)
        y = None if y is None else y.flip(-1)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        y = None if y is None else F.interpolate(y[:, None], size=(size, size), mode="nearest")[:, 0]
    return x.contiguous(memory_format=torch.channels_last), y


def _schedule(opt, total_steps: int):
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"], total_steps=max(total_steps, 1), pct_start=0.15)


def object_crops(arrays: PoolArrays, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One square crop per labelled object (its mask's box, 1.3x, resized), class index 0..K-1."""
    from PIL import Image

    images, classes = [], []
    for image, mask, labels in zip(arrays.images, arrays.masks, arrays.labels):
        for k in np.flatnonzero(labels):
            ys, xs = np.nonzero(mask == k + 1)
            if len(ys) < 20:
                continue
            cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
            half = max(ys.max() - ys.min(), xs.max() - xs.min()) * 0.65 + 4
            box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
            images.append(np.asarray(Image.fromarray(image).crop(box).resize((size, size), Image.BILINEAR)))
            classes.append(k)
    return np.stack(images), np.asarray(classes, np.int64)


def _fit(net, batches, lr: float, rng, desc: str, step_loss) -> None:
    opt = adam(net.parameters(), decoupled=True, lr=lr, weight_decay=1e-4)
    sched = _schedule(opt, len(batches))
    net.train()
    for idx in progress(batches, desc=desc):
        loss = step_loss(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def train_cam(pool, cfg: PseudoConfig) -> tuple[CamNet, dict]:
    """Two stages, both on the pool only. Stage 1 classifies object crops (single label): from
    scratch, whole multi-object images teach 250 classes too slowly (3% held-out top-1 after 3 epochs).
    Stage 2 fine-tunes on whole images with their image-level labels, which teaches the GAP
    classifier, and so its CAMs, to ignore background."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train, val = pool_arrays(pool, "train"), pool_arrays(pool, "val")
    crops, crop_classes = object_crops(train)
    net = CamNet(len(pool.class_names), cfg.cam_width).to(device(), memory_format=torch.channels_last)
    t0 = time.perf_counter()

    def crop_loss(idx):
        x, _ = _augmented(as_batch(crops[idx]), rng, CROP_SIZE)
        return F.cross_entropy(net(x), tensor(crop_classes[idx]), label_smoothing=0.1)

    def image_loss(idx):
        x, _ = _augmented(as_batch(train.images[idx]), rng, int(rng.choice(TRAIN_SIZES)))
        return F.multilabel_soft_margin_loss(net(x), tensor(train.labels[idx]))

    stage1 = [b for _ in range(cfg.cam_crop_epochs) for b in _batches(rng, len(crops), cfg.cam_batch)]
    _fit(net, stage1, 3 * cfg.cam_lr, rng, "CAM classifier, stage 1: object crops", crop_loss)
    stage2 = [b for _ in range(cfg.cam_epochs) for b in _batches(rng, len(train.images), cfg.cam_batch)]
    _fit(net, stage2, cfg.cam_lr, rng, "CAM classifier, stage 2: whole images", image_loss)
    meta = {"classes": list(pool.class_names), "train_s": round(time.perf_counter() - t0, 1),
            "n_train": len(train.images), "n_crops": len(crops), "n_val": len(val.images), **cam_accuracy(net, val)}
    return net.eval(), meta


@torch.no_grad()
def cam_accuracy(net: CamNet, val: PoolArrays) -> dict:
    """Held-out pool: top-1 hit rate (the top class is one of the image's labels) and label recall
    at |labels| (share of labels found among the image's |labels| top classes)."""
    net.eval()
    scores = to_numpy(torch.cat([net(as_batch(val.images[i : i + 128])) for i in range(0, len(val.images), 128)]))
    top = np.argsort(-scores, axis=1)
    hits = val.labels[np.arange(len(top)), top[:, 0]].mean()
    n_lab = val.labels.sum(1).astype(int)
    found = [val.labels[i, top[i, : n_lab[i]]].sum() / n_lab[i] for i in range(len(top))]
    return {"val_top1": round(float(hits) * 100, 2), "val_label_recall": round(float(np.mean(found)) * 100, 2)}


def train_saliency(pool, cfg: PseudoConfig) -> tuple[SaliencyNet, dict]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)
    train, val = pool_arrays(pool, "train"), pool_arrays(pool, "val")
    net = SaliencyNet(cfg.saliency_width).to(device(), memory_format=torch.channels_last)
    t0 = time.perf_counter()

    def loss(idx):
        target = tensor(train.masks[idx]).float()
        x, target = _augmented(as_batch(train.images[idx]), rng, int(rng.choice(TRAIN_SIZES)), target, colours=True)
        valid = (target != IGNORE).float()
        return F.binary_cross_entropy_with_logits(net(x), (target > 0).float() * valid, weight=valid)

    batches = [b for _ in range(cfg.saliency_epochs) for b in _batches(rng, len(train.images), 32)]
    _fit(net, batches, 3e-3, rng, "saliency net", loss)
    meta = {"train_s": round(time.perf_counter() - t0, 1), "n_train": len(train.images), **saliency_accuracy(net, val, cfg)}
    return net.eval(), meta


@torch.no_grad()
def saliency_accuracy(net: SaliencyNet, val: PoolArrays, cfg: PseudoConfig) -> dict:
    net.eval()
    inter = union = 0
    for i in range(0, len(val.images), 64):
        pred = to_numpy(torch.sigmoid(net(as_batch(val.images[i : i + 64])))) >= cfg.saliency_threshold
        gt = val.masks[i : i + 64]
        valid = gt != IGNORE
        fg = (gt > 0) & valid
        inter += int((pred & fg).sum())
        union += int(((pred & valid) | fg).sum())
    return {"val_fg_iou": round(100.0 * inter / max(union, 1), 2)}


def pool_cam(dataset, cfg: PseudoConfig, cache_dir: Path, log=print) -> tuple[CamNet, dict, Path]:
    """The pool CAM classifier for this dataset: loaded from the cache, trained on first use."""
    pool = pool_dataset(dataset)
    path = model_path(cache_dir, "cam", pool, cfg)
    with one_builder(path):
        if not path.is_file():
            log(f"training the CAM classifier on {pool.name} ({len(pool.class_names)} classes, "
                f"{cfg.cam_crop_epochs} epochs on object crops + {cfg.cam_epochs} on whole images)")
            net, meta = train_cam(pool, cfg)
            save_model(path, net, meta, pool.class_names)
            log(f"CAM classifier: held-out top-1 {meta['val_top1']:.1f}%, label recall {meta['val_label_recall']:.1f}% -> {path}")
    blob = load_weights(path, "CAM classifier", "delete it; the next run retrains it")
    net = CamNet(len(blob["meta"]["classes"]), cfg.cam_width)
    net.load_state_dict(blob["state_dict"])
    return net.to(device()).eval(), blob["meta"], path


def pool_saliency(dataset, cfg: PseudoConfig, cache_dir: Path, log=print) -> tuple[SaliencyNet, dict, Path]:
    pool = pool_dataset(dataset)
    path = model_path(cache_dir, "saliency", pool, cfg)
    with one_builder(path):
        if not path.is_file():
            log(f"training the saliency net on {pool.name} masks, classes merged ({cfg.saliency_epochs} epochs)")
            net, meta = train_saliency(pool, cfg)
            save_model(path, net, meta, pool.class_names)  # trained fg/bg on these classes' objects
            log(f"saliency net: held-out foreground IoU {meta['val_fg_iou']:.1f}% -> {path}")
    blob = load_weights(path, "saliency net", "delete it; the next run retrains it")
    net = SaliencyNet(cfg.saliency_width)
    net.load_state_dict(blob["state_dict"])
    return net.to(device()).eval(), blob["meta"], path
