"""Pseudo masks from image-level labels (paper §3.2, eq. 2-3), written once per fingerprint.

For an image labelled with classes {c}: T-bar_c = sum_k w_ck T_k (eq. 3) over the CAM classes k,
upsampled to the image and min-max normalised; gated by saliency; each pixel takes the labelled
class with the largest gated map if that value reaches `threshold`, else background.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.datasets import image_labels
from bench.data.palette import save_palette_png
from bench.core.device import to_numpy
from bench.core.errors import BenchError
from bench.core.locks import one_builder
from bench.core.progress import progress
from bench.core.files import atomic_write_text, staged_folder
from pseudo_labels.backends import cam_backend, saliency_backend
from pseudo_labels.config import PseudoConfig
from pseudo_labels.words import Weighting, similarities, word_vectors

GENERATOR_VERSION = 1
SPLITS = ("train", "val")
BATCH = 64


@dataclass
class Pipeline:
    """Everything eq. 2-3 needs, resolved for one dataset: CAM and saliency back-ends and the
    (n_dataset_classes, n_cam_classes) weight matrix, row c-1 for class id c."""

    cfg: PseudoConfig
    cam: object
    saliency: object
    similarities: np.ndarray  # word-vector cosines, same shape as weights
    weights: np.ndarray
    words_fingerprint: str

    def fingerprint(self, dataset) -> str:
        parts = {
            "version": GENERATOR_VERSION, "dataset": f"{dataset.name}:{dataset.fingerprint()}",
            "cam": self.cam.fingerprint(), "saliency": self.saliency.fingerprint(), "words": self.words_fingerprint,
            "weights": hashlib.sha256(np.ascontiguousarray(self.weights.round(6)).tobytes()).hexdigest()[:16],
            **{k: v for k, v in asdict(self.cfg).items() if k in ("cam_norm", "cam_prob_scale", "vgg_input", "weighting", "topk",
                                                                   "temperature", "gate", "saliency_threshold", "threshold")},
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def build_pipeline(dataset, cfg: PseudoConfig, cache_dir: Path, log=print) -> Pipeline:
    cam = cam_backend(dataset, cfg, cache_dir, log)
    vectors = word_vectors(cfg.words, cfg.words_path)
    sim = similarities(vectors, list(dataset.class_names), list(cam.class_names))
    weights = Weighting(cfg.weighting, cfg.topk, cfg.temperature).weights(sim)
    return Pipeline(cfg, cam, saliency_backend(dataset, cfg, cache_dir, log), sim, weights, vectors.fingerprint())


def class_maps(t_low: torch.Tensor, weights: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Eq. 3 for every dataset class: (N, K, h, w) CAMs -> (N, C, H, W) maps in [0, 1].
    The weighted sum is taken on the CAM grid (it commutes with bilinear upsampling), then upsampled
    and min-max normalised per image and class; a map with no weight or no activation stays 0."""
    return upsampled_maps(low_class_maps(t_low, weights), size)


def low_class_maps(t_low: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
    """Eq. 3 on the CAM grid: (N, K, h, w) CAMs -> (N, C, h, w), every dataset class (small)."""
    w = torch.from_numpy(weights).to(device=t_low.device, dtype=t_low.dtype)
    return torch.einsum("ck,nkhw->nchw", w, t_low)


def labelled_maps(tbar_low: torch.Tensor, class_ids: list[int], size: tuple[int, int]) -> torch.Tensor:
    """One image's maps of its labelled classes, at image size: (C, h, w) -> (m, H, W). Upsampled one
    image at a time, so memory is C x H x W (COCO at 640 x 480: 98 MB) instead of a batch's
    N x C x H x W (6.3 GB for 32 images). All C maps are upsampled before the labelled ones are
    kept: torch's bilinear kernel gives other last bits for another channel count, and these values
    must be bit for bit those of `class_maps` (cached masks are named by the settings, not the code)."""
    if not class_ids:
        return tbar_low.new_zeros((0, *size))
    return upsampled_maps(tbar_low[None], size)[0][[c - 1 for c in class_ids]]


def upsampled_maps(tbar: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    tbar = F.interpolate(tbar, size=size, mode="bilinear", align_corners=False)
    lo = tbar.amin(dim=(2, 3), keepdim=True)
    span = tbar.amax(dim=(2, 3), keepdim=True) - lo
    return torch.where(span > 1e-8, (tbar - lo) / span.clamp(min=1e-8), torch.zeros_like(tbar))


def gated(tbar: np.ndarray, saliency: np.ndarray | None, cfg: PseudoConfig) -> np.ndarray:
    """(m, H, W) class maps x (H, W) saliency -> gated maps."""
    if saliency is None:
        return tbar
    if cfg.gate == "hard":
        return tbar * (saliency >= cfg.saliency_threshold)
    return tbar * saliency


def pseudo_mask(maps: np.ndarray, class_ids: list[int], threshold: float) -> np.ndarray:
    """(m, H, W) gated maps of the image's m labelled classes -> HxW uint8 mask: argmax over the
    labelled classes where the winner reaches `threshold`, background elsewhere."""
    if not class_ids:
        return np.zeros(maps.shape[1:], np.uint8)
    best = maps.argmax(axis=0)
    ids = np.asarray(class_ids, np.uint8)
    return np.where(maps.max(axis=0) >= threshold, ids[best], 0).astype(np.uint8)


@dataclass
class ImageMaps:
    """Per image: the maps of its labelled classes before gating, and its saliency (or None)."""

    image_id: str
    class_ids: list[int]
    tbar: np.ndarray
    saliency: np.ndarray | None


@torch.no_grad()
def image_maps(pipe: Pipeline, dataset, ids: list[str], labels: dict[str, frozenset[int]]) -> list[ImageMaps]:
    images = [dataset.image(i) for i in ids]
    out = []
    for shape in sorted({im.shape[:2] for im in images}):
        group = [k for k, im in enumerate(images) if im.shape[:2] == shape]
        batch = np.stack([images[k] for k in group])
        low = low_class_maps(pipe.cam.maps(batch), pipe.weights)  # every class, on the CAM grid
        sal = pipe.saliency.maps(batch)
        for j, k in enumerate(group):
            cls = sorted(labels[ids[k]])
            out.append(ImageMaps(ids[k], cls, to_numpy(labelled_maps(low[j], cls, shape)), None if sal is None else sal[j]))
    return sorted(out, key=lambda m: ids.index(m.image_id))


def all_image_maps(pipe: Pipeline, dataset, splits, cache_dir: Path, desc: str):
    """ImageMaps of every image of `splits`, computed in batches (a generator: nothing is kept)."""
    for split in splits:
        ids = dataset.ids(split)
        labels = image_labels(dataset, split, cache_dir)
        for start in progress(range(0, len(ids), BATCH), desc=f"{desc} {dataset.name} {split}"):
            yield from image_maps(pipe, dataset, ids[start : start + BATCH], labels)


def pseudo_root(cache_dir: Path, dataset, fingerprint: str) -> Path:
    return Path(cache_dir) / "pseudo" / "masks" / f"{dataset.name}-{fingerprint}"


def generate_pseudo_masks(dataset, cfg: PseudoConfig, cache_dir: Path, log=print, pipe: Pipeline | None = None) -> Path:
    """Writes a pseudo mask for every train and test image (once per fingerprint); returns the folder.
    Built in a staged folder (bench.core.files.staged_folder), so an interrupted run leaves nothing
    half-done."""
    pipe = pipe or build_pipeline(dataset, cfg, cache_dir, log)
    fp = pipe.fingerprint(dataset)
    root = pseudo_root(cache_dir, dataset, fp)
    if (root / "COMPLETE").is_file():
        return root
    with one_builder(root):  # parallel sweep cells: one process builds, the others wait and reuse
        if (root / "COMPLETE").is_file():
            return root
        with staged_folder(root) as tmp:
            (tmp / "SegmentationClass").mkdir()
            t0 = time.perf_counter()
            n = 0
            for m in all_image_maps(pipe, dataset, SPLITS, cache_dir, "pseudo masks"):
                mask = pseudo_mask(gated(m.tbar, m.saliency, cfg), m.class_ids, cfg.threshold)
                save_palette_png(mask, tmp / "SegmentationClass" / f"{m.image_id}.png")
                n += 1
            rate = n / max(time.perf_counter() - t0, 1e-9)
            manifest = {"fingerprint": fp, "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
                        "config": asdict(cfg), "cam": pipe.cam.fingerprint(), "saliency": pipe.saliency.fingerprint(),
                        "words": pipe.words_fingerprint, "n_images": n, "images_per_s": round(rate, 1)}
            atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1) + "\n")
            (tmp / "COMPLETE").write_text("")
        log(f"wrote {n} pseudo masks ({rate:.0f} images/s) to {root}")
        return root


def check_complete(root: Path) -> Path:
    if not (root / "COMPLETE").is_file():
        raise BenchError(f"pseudo masks at {root} are incomplete; fix: delete that folder and run `bench pseudo generate`")
    return root
