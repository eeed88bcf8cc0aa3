"""The paper's CAM network on real data: a VGG-16 trained on ILSVRC-2012 *with the benchmark's
classes and their hyponyms removed* (`bench pseudo train-cam --imagenet DIR`), so no feature it
learnt came from a benchmark class. Reads an ImageNet-layout folder (`train/<wnid>/*.JPEG`), keeps
the synsets it is told to keep, trains a K-way torchvision VGG (vgg16 by default; vgg11/13/19 and
their _bn variants by flag) from scratch, and writes a torchvision state dict with its class list
beside it (`<weights>.classes.txt`, one name per line, and `<weights>.json` with the synsets), which
`cam=vgg16 cam_weights=FILE` loads as a K-way head."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.device import device, tensor
from bench.core.errors import BenchError
from bench.core.files import atomic_write_bytes, atomic_write_text
from bench.core.progress import progress
from bench.data.reading import read_image

ARCHS = ("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def synset_names(root: Path, synsets: Path | None) -> dict[str, list[str]]:
    """wnid -> its names, from LOC_synset_mapping.txt ("n01440764 tench, Tinca tinca"), given or in `root`."""
    path = Path(synsets) if synsets else Path(root) / "LOC_synset_mapping.txt"
    if not path.is_file():
        raise BenchError(f"no synset names at {path}; fix: pass --synsets LOC_synset_mapping.txt (it comes with ImageNet)")
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            wnid, _, names = line.strip().partition(" ")
            out[wnid] = [n.strip() for n in names.split(",") if n.strip()]
    return out


def folder_synsets(root: Path) -> list[str]:
    train = Path(root) / "train"
    if not train.is_dir():
        raise BenchError(f"{root} has no train/ folder; fix: point --imagenet at an ImageNet-layout folder (train/<wnid>/*.JPEG)")
    return sorted(p.name for p in train.iterdir() if p.is_dir())


def training_list(root: Path, wnids: list[str], max_per_class: int) -> list[tuple[Path, int]]:
    items = []
    for label, wnid in enumerate(wnids):
        files = sorted(p for p in (Path(root) / "train" / wnid).iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        items += [(p, label) for p in (files[:max_per_class] if max_per_class else files)]
    if not items:
        raise BenchError(f"no training images under {root}/train for the kept synsets; fix: check the folder")
    return items


def batch_of(items, rng, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random resized crops (8-100 % of the area) with flips, ImageNet-normalised."""
    from PIL import Image

    images, labels = [], []
    for path, label in items:
        im = read_image(path)
        h, w = im.shape[:2]
        scale = rng.uniform(0.08, 1.0) ** 0.5
        ch, cw = max(1, int(h * scale)), max(1, int(w * scale))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = np.asarray(Image.fromarray(im[y:y + ch, x:x + cw]).resize((size, size), Image.BILINEAR), np.float32) / 255
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        images.append((crop - MEAN) / STD)
        labels.append(label)
    x = tensor(np.stack(images).transpose(0, 3, 1, 2).copy())
    return x, tensor(np.array(labels)).long()


def train_imagenet_cam(root: Path, kept: list[tuple[str, str]], excluded: list[str], out: Path, arch: str = "vgg16",
                       epochs: int = 90, batch: int = 64, lr: float = 0.01, size: int = 224, max_per_class: int = 0,
                       seed: int = 0, log=print) -> Path:
    """Trains the K-way classifier on the kept (wnid, name) synsets and writes it with its class list."""
    import torchvision

    if arch not in ARCHS:
        raise BenchError(f"unknown --arch {arch}; use one of {', '.join(ARCHS)} (the CAM back-end runs VGGs)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    items = training_list(root, [w for w, _ in kept], max_per_class)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=len(kept)).to(device())
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)  # VGG's recipe
    steps = max(1, epochs * len(items) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    log(f"training {arch} from scratch on {len(kept)} ImageNet synsets ({len(excluded)} excluded as benchmark classes), "
        f"{len(items)} images, {steps} steps of {batch}")
    t0 = time.perf_counter()
    model.train()
    bar = progress(range(steps), desc=f"training the {arch} CAM classifier")
    for _ in bar:
        x, y = batch_of([items[k] for k in rng.integers(0, len(items), batch)], rng, size)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        bar.note(loss=loss)
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(out, buf.getvalue())
    atomic_write_text(Path(str(out) + ".classes.txt"), "\n".join(n for _, n in kept) + "\n")
    meta = {"arch": arch, "synsets": [w for w, _ in kept], "excluded": excluded, "epochs": epochs, "steps": steps,
            "images": len(items), "size": size, "train_s": round(time.perf_counter() - t0, 1)}
    atomic_write_text(out.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")
    return out
