"""CAM and saliency back-ends behind two small interfaces.

CAM: `class_names`, `maps(images) -> (N, K, h, w)` T_k in [0, 1] on the net's own grid, `fingerprint()`.
Saliency: `maps(images) -> (N, H, W)` foreground probability or None, `fingerprint()`.
Images are (N, H, W, 3) uint8 arrays of one size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.core.device import to_numpy
from bench.core.errors import BenchError
from bench.core.files import state_sha
from pseudo_labels.config import PseudoConfig
from pseudo_labels.nets import as_batch, normalised_cams


class PoolCam:
    def __init__(self, net, class_names: list[str], path: Path, cfg: PseudoConfig):
        self.net, self.class_names, self.path = net, class_names, path
        self.prob_scale, self.norm = cfg.cam_prob_scale, cfg.cam_norm
        self.weights = state_sha(net.state_dict())  # the weights, not the file: it also holds the training time

    @torch.no_grad()
    def maps(self, images: np.ndarray) -> torch.Tensor:
        cams = self.net.cams(as_batch(images))
        probs = torch.sigmoid(cams.mean(dim=(2, 3))) if self.prob_scale else None
        return normalised_cams(cams, probs, self.norm)

    def fingerprint(self) -> str:
        return f"pool-cam:{self.weights}:prob={self.prob_scale}:{self.norm}"


class PoolSaliency:
    def __init__(self, net):
        self.net = net
        self.weights = state_sha(net.state_dict())  # as PoolCam: equal weights, equal pseudo masks' key

    @torch.no_grad()
    def maps(self, images: np.ndarray) -> np.ndarray:
        return to_numpy(torch.sigmoid(self.net(as_batch(images))))

    def fingerprint(self) -> str:
        return f"pool-saliency:{self.weights}"


class NoSaliency:
    def maps(self, images: np.ndarray) -> None:
        return None

    def fingerprint(self) -> str:
        return "none"


def cam_backend(dataset, cfg: PseudoConfig, cache_dir: Path, log=print):
    if cfg.cam == "pool":
        from pseudo_labels.train import pool_cam

        net, meta, path = pool_cam(dataset, cfg, cache_dir, log)
        return PoolCam(net, meta["classes"], path, cfg)
    if cfg.cam == "vgg16":
        from pseudo_labels.vgg_cam import VggCam

        return VggCam(Path(cfg.cam_weights) if cfg.cam_weights else None, dataset.class_names, cfg)
    raise BenchError(f"unknown CAM back-end '{cfg.cam}'; use pool or vgg16")


def saliency_backend(dataset, cfg: PseudoConfig, cache_dir: Path, log=print):
    if cfg.saliency == "pool":
        from pseudo_labels.train import pool_saliency

        net, _, _ = pool_saliency(dataset, cfg, cache_dir, log)
        return PoolSaliency(net)
    if cfg.saliency == "onnx":
        if not cfg.saliency_path:
            raise BenchError("saliency=onnx needs a model file; fix: --pseudo-set saliency_path=/path/to/model.onnx")
        from pseudo_labels.onnx_saliency import OnnxSaliency, convention_of

        return OnnxSaliency(Path(cfg.saliency_path), convention_of(cfg))
    if cfg.saliency == "none":
        return NoSaliency()
    raise BenchError(f"unknown saliency back-end '{cfg.saliency}'; use pool, onnx or none")
