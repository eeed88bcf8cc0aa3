"""Per-image decoder features of the frozen backbone, computed once and stored as float16.

Stored at the decoder's own resolution (stride 4: 128 x 33 x 33 for a 129x129 image, 279 kB);
methods upsample to the image size when they need pixel features, which is cheaper than
storing 16x more data. One .npy file per image so that images of any size share one cache.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backbones.deeplab import decoder_features
from bench.locks import one_builder
from bench.progress import progress
from bench.records import atomic_write_bytes

BATCH = 32


class FeatureCache:
    """Files on disk, plus the float16 arrays of up to `in_memory` images kept in RAM (the default
    set's 2,800 images take 780 MB), so that an evaluation of thousands of episodes reads each
    file once."""

    def __init__(self, dataset, model: torch.nn.Module, backbone_path: Path, cache_dir: Path, in_memory: int = 4096,
                 outputs=decoder_features, tag: str = ""):
        """`outputs(model, batch)` -> (B, C, h, w) features to store (default: the DeepLabV3+
        decoder's); `tag` names another choice of outputs of the same weights."""
        self.dataset, self.model, self._outputs = dataset, model, outputs
        name = f"{dataset.name}-{dataset.fingerprint()}-{Path(backbone_path).stem}{'-' + tag if tag else ''}"
        self.root = Path(cache_dir) / "features" / name
        self._ram: dict[str, np.ndarray] = {}
        self._in_memory = in_memory

    def path(self, image_id: str) -> Path:
        return self.root / f"{image_id}.npy"

    def ensure(self, ids, desc: str = "backbone features") -> None:
        """Compute and store the features of every image in `ids` that has none yet."""
        if all(self.path(i).is_file() for i in ids):
            return
        with one_builder(self.root):  # parallel sweep cells share one store: one process fills it
            todo = [i for i in dict.fromkeys(ids) if not self.path(i).is_file()]
            by_shape: dict[tuple, list[str]] = {}
            for i in todo:
                by_shape.setdefault(self.dataset.image(i).shape[:2], []).append(i)
            batches = [g[k : k + BATCH] for g in by_shape.values() for k in range(0, len(g), BATCH)]
            for batch in progress(batches, desc=f"{desc} ({len(todo)} images)"):
                feats = self.compute([self.dataset.image(i) for i in batch])
                for image_id, f in zip(batch, feats):
                    buf = _npy_bytes(f.numpy().astype(np.float16))
                    atomic_write_bytes(self.path(image_id), buf)

    @torch.no_grad()
    def compute(self, images: list[np.ndarray]) -> torch.Tensor:
        from pseudo_labels.nets import as_batch

        return self._outputs(self.model, as_batch(images))

    def features(self, image_id: str) -> torch.Tensor:
        """(C, h, w) float32 at the decoder's resolution."""
        arr = self._ram.get(image_id)
        if arr is None:
            if not self.path(image_id).is_file():
                self.ensure([image_id])
            arr = np.load(self.path(image_id))
            if len(self._ram) < self._in_memory:
                self._ram[image_id] = arr
        return torch.from_numpy(arr.astype(np.float32))

    @property
    def in_memory(self) -> int:
        return self._in_memory

    def grid_size(self, image_id: str) -> tuple[int, int]:
        arr = self._ram.get(image_id)
        return tuple(arr.shape[1:]) if arr is not None else tuple(self.features(image_id).shape[1:])

    def pixel_features(self, image_id: str, size: tuple[int, int]) -> torch.Tensor:
        """(C, H, W) bilinearly upsampled to `size` (the image or the evaluation size)."""
        f = self.features(image_id)[None]
        return F.interpolate(f, size=size, mode="bilinear", align_corners=False)[0]


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()
