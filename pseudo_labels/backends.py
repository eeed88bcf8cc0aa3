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
from bench.core.files import file_sha
from pseudo_labels.config import PseudoConfig
from pseudo_labels.nets import as_batch, normalised_cams


class PoolCam:
    def __init__(self, net, class_names: list[str], path: Path, cfg: PseudoConfig):
        self.net, self.class_names, self.path = net, class_names, path
        self.prob_scale, self.norm = cfg.cam_prob_scale, cfg.cam_norm

    @torch.no_grad()
    def maps(self, images: np.ndarray) -> torch.Tensor:
        cams = self.net.cams(as_batch(images))
        probs = torch.sigmoid(cams.mean(dim=(2, 3))) if self.prob_scale else None
        return normalised_cams(cams, probs, self.norm)

    def fingerprint(self) -> str:
        return f"pool-cam:{file_sha(self.path)}:prob={self.prob_scale}:{self.norm}"


class PoolSaliency:
    def __init__(self, net, path: Path):
        self.net, self.path = net, path

    @torch.no_grad()
    def maps(self, images: np.ndarray) -> np.ndarray:
        return to_numpy(torch.sigmoid(self.net(as_batch(images))))

    def fingerprint(self) -> str:
        return f"pool-saliency:{file_sha(self.path)}"


class OnnxSaliency:
    """A user's ONNX saliency model: input (N, 3, H, W) float, ImageNet-normalised; output
    (N, 1, H', W') or (N, H', W') foreground probability in [0, 1] (resized to the image here)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise BenchError(f"ONNX saliency model {self.path} not found; fix: pass an existing file with --pseudo-set saliency_path=FILE")
        try:
            import onnxruntime
        except ImportError:
            raise BenchError("the onnx saliency back-end needs onnxruntime; fix: pip install onnxruntime") from None
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise BenchError(f"ONNX saliency model {self.path} could not be loaded ({exc}); fix: export a model with one image input") from None
        self.input_name = self.session.get_inputs()[0].name

    def maps(self, images: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: to_numpy(as_batch(images))})[0]
        out = torch.from_numpy(np.asarray(out, np.float32))
        if out.ndim == 3:
            out = out[:, None]
        out = torch.nn.functional.interpolate(out, size=images.shape[1:3], mode="bilinear", align_corners=False)
        return out[:, 0].clamp(0, 1).numpy()

    def fingerprint(self) -> str:
        return f"onnx:{self.path.name}:{file_sha(self.path)}"


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

        net, _, path = pool_saliency(dataset, cfg, cache_dir, log)
        return PoolSaliency(net, path)
    if cfg.saliency == "onnx":
        if not cfg.saliency_path:
            raise BenchError("saliency=onnx needs a model file; fix: --pseudo-set saliency_path=/path/to/model.onnx")
        return OnnxSaliency(Path(cfg.saliency_path))
    if cfg.saliency == "none":
        return NoSaliency()
    raise BenchError(f"unknown saliency back-end '{cfg.saliency}'; use pool, onnx or none")
