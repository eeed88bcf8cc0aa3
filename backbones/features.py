"""Per-image outputs of a frozen network (the DeepLabV3+ decoder for `ours`, the ResNet trunk for
PFENet), computed once and stored as float16.

Keyed by (weights, image, size): the same image is a different entry at 129x129 (`wacv22`) and at
its own 500x375 (`pfenet2020`), because a method must see the features of the image it was given.
The weights are named by the network's file (a pool-pretrained file's stem names its settings, a
user file's its sha256), so each opening of a store recomputes one stored image and refuses the
store if the network now computes something else (`_check_stored`).
Sizes come from the preset (bench/data/sizes.py): training images at `train_size`, test images at
`eval_size`. Stored at the network's own resolution (stride 4: 128 x 33 x 33 for a 129x129 image,
279 kB); methods upsample when they need pixel features. One .npy file per (image, size).

A store has a budget, `$WSFSS_STORE_GB` (default 20 GB): when the images a method asks for would
take more (PFENet's 3,584-channel stride-8 maps of real VOC at 473 px: ~270 GB; `ours`' r101 decoder
at 417 px: ~137 GB), nothing is written and each image's outputs are computed when used (on the
device), rounded through float16 as stored ones are; they equal the stored values up to one float16
step where a differently batched convolution changed the last bits (tests/test_backbones.py). The
RAM memo still keeps what fits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backbones.deeplab import decoder_features
from bench.data.sizes import resized_image, target_shape
from bench.core.device import device, to_numpy
from bench.core.errors import BenchError
from bench.core.locks import one_builder
from bench.core.memo import BytesLRU, store_budget
from bench.core.progress import progress
from bench.core.files import atomic_write_bytes

BATCH = 32


class FeatureCache:
    """Files on disk, plus a RAM memo of the float16 arrays bounded in bytes (bench/core/memo.py:
    $WSFSS_RAM_MB, default 2 GB; the embedded set's 2,800 images take 780 MB), so that an
    evaluation of thousands of episodes reads each file once."""

    def __init__(self, images, model: torch.nn.Module, weights_id: str, cache_dir: Path, outputs=decoder_features,
                 tag: str = "", ram_bytes: int | None = None):
        """`weights_id` names the network's weights by content (a pool-pretrained file's stem, or a
        user file's stem + sha); `outputs(model, batch)` -> (B, C, h, w) features to store
        (default: the DeepLabV3+ decoder's); `tag` names another choice of outputs. `images` is an
        image store (bench/data/stores.py): the dataset's name and content fingerprint key the folder."""
        self.images, self.model, self._outputs, self.weights_id = images, model, outputs, weights_id
        name = f"{images.name}-{images.fingerprint}-{weights_id}{'-' + tag if tag else ''}"
        self.root = Path(cache_dir) / "features" / name
        self._ram = BytesLRU(ram_bytes)
        self.stored = True  # False once a request would exceed the store budget: computed when used
        self._checked: tuple = ()  # (id, size) of the stored file checked against the network, once

    def planned_bytes(self, wanted: dict, per_pixel: float | None = None) -> int:
        """Disk bytes of the float16 outputs of {id: (H, W)}: one probe image, scaled by pixel count
        (outputs are a fixed stride of the input; real VOC has hundreds of distinct sizes)."""
        per_pixel = self.bytes_per_pixel(wanted) if per_pixel is None else per_pixel
        return int(sum(per_pixel * h * w + 128 for h, w in wanted.values()))  # float16 + the .npy header

    def bytes_per_pixel(self, wanted: dict) -> float:
        image_id, shape = next(iter(wanted.items()))
        return self.compute([self.image_at(image_id, shape)])[0].numel() * 2 / (shape[0] * shape[1])

    def need(self, ids, size, what: str):
        """What `ensure(ids, size)` would do, as a plan entry (bench/core/plans.py): the bytes of the
        files it would add, or nothing stored when the request is over the budget (then each image
        is computed when used, and its time belongs to the fit and the evaluation)."""
        from bench.core.plans import Need, human_bytes

        wanted = self.wanted(ids, size)
        missing = {i: s for i, s in wanted.items() if not self.path(i, s).is_file()}
        if not missing:
            return Need(what, self.root, 0, exists=True)
        per_pixel = self.bytes_per_pixel(wanted)
        total = self.planned_bytes(wanted, per_pixel)
        image_id, shape = next(iter(missing.items()))
        unit = lambda: self.compute([self.image_at(image_id, shape)])  # noqa: E731
        if total > store_budget():
            return Need(what, None, 0, exists=False, note=f"{human_bytes(total)} > the {human_bytes(store_budget())} store budget "
                                                          f"($WSFSS_STORE_GB): computed per batch, nothing stored")
        return Need(what, self.root, self.planned_bytes(missing, per_pixel), unit, len(missing), exists=False,
                    note=f"{len(missing)} images")

    def path(self, image_id: str, shape: tuple[int, int]) -> Path:
        return self.root / f"{shape[0]}x{shape[1]}" / f"{image_id}.npy"

    def image_at(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        return resized_image(self.images.image(image_id), tuple(shape))

    def wanted(self, ids, size) -> dict:
        """{id: (H, W)} of the images `ids` at a preset size, each once."""
        return {i: self.shape_of(i, size) for i in dict.fromkeys(ids)}

    def shape_of(self, image_id: str, size) -> tuple[int, int]:
        """(H, W) of an image under a preset size (square side or None = its own size)."""
        if size is None:
            return self.images.shape(image_id)
        return target_shape((0, 0), size)

    def ensure(self, ids, size=None, desc: str = "backbone features") -> None:
        """Compute and store the features of every image in `ids` at `size` (a preset's square
        side, or None for each image's own size) that has none yet; batches group equal sizes."""
        wanted = self.wanted(ids, size)
        if self.stored:
            self._check_stored(wanted)
        if not self.stored or all(self.path(i, s).is_file() for i, s in wanted.items()):
            return
        need = self.planned_bytes(wanted)
        if need > store_budget():
            import sys

            self.stored = False
            print(f"{desc}: {len(wanted)} images would store {need / 1e9:.1f} GB, over the {store_budget() / 1e9:.0f} GB "
                  f"budget ($WSFSS_STORE_GB): computed per batch instead, nothing stored", file=sys.stderr)
            return
        with one_builder(self.root):  # parallel sweep cells share one store: one process fills it
            by_shape: dict[tuple, list[str]] = {}
            for i, s in wanted.items():
                if not self.path(i, s).is_file():
                    by_shape.setdefault(s, []).append(i)
            batches = [(s, g[k : k + BATCH]) for s, g in by_shape.items() for k in range(0, len(g), BATCH)]
            n = sum(len(g) for g in by_shape.values())
            for shape, batch in progress(batches, desc=f"{desc} ({n} images)"):
                self._store(batch, shape, self.compute([self.image_at(i, shape) for i in batch]))

    def _check_stored(self, wanted: dict) -> None:
        """Refuses a store whose files the network no longer computes. The folder is keyed by the
        weights' name (a pool-pretrained file's stem names its settings, not its bytes), so a net
        retrained under the same name (a cache from before a code or pin change, another machine's
        file copied in) would otherwise be served stale outputs. One stored image is recomputed, the
        first this store object is asked for (not one per size: real VOC at its own sizes has hundreds
        of them, and other weights change every image): milliseconds against a fit's minutes."""
        if self._checked:
            return
        for image_id, shape in wanted.items():
            path = self.path(image_id, shape)
            if not path.is_file():
                continue
            self._checked = (image_id, shape)
            stored = np.load(path).astype(np.float32)
            fresh = to_numpy(self.compute([self.image_at(image_id, shape)])[0]).astype(np.float32)
            # float16 storage and another batch size move a value by about one float16 step (1e-3 of
            # it; near zero, of the largest value's 1e-5); other weights move it by its own size
            tol = 4e-3 * np.abs(fresh) + 4e-5 * float(np.abs(fresh).max())
            if stored.shape != fresh.shape or not bool((np.abs(stored - fresh) <= tol).all()):
                worst = float(np.abs(stored - fresh).max()) if stored.shape == fresh.shape else float("nan")
                raise BenchError(f"{path}: stored outputs differ from what the network named {self.weights_id} computes now "
                                 f"(largest difference {worst:.3g}, shape {stored.shape} vs {fresh.shape}): this store was made by "
                                 f"other weights or other code; fix: delete {self.root} (the next run rebuilds it)")
            return

    def _store(self, ids: list[str], shape, feats: torch.Tensor) -> None:
        for image_id, f in zip(ids, feats):
            atomic_write_bytes(self.path(image_id, shape), _npy_bytes(to_numpy(f).astype(np.float16)))

    @torch.no_grad()
    def compute(self, images: list[np.ndarray]) -> torch.Tensor:
        """Outputs for a batch of same-size images (on the device)."""
        from pseudo_labels.nets import as_batch

        return self._outputs(self.model, as_batch(images))

    def _array(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        key = (image_id, tuple(shape))
        arr = self._ram.get(key)
        if arr is None and not self.stored:  # over budget: the values a stored file would hold, not written
            arr = to_numpy(self.compute([self.image_at(image_id, shape)])[0]).astype(np.float16)
            self._ram.put(key, arr)
        if arr is None:
            path = self.path(image_id, shape)
            if not path.is_file():
                self._store([image_id], shape, self.compute([self.image_at(image_id, shape)]))
            arr = np.load(path)
            self._ram.put(key, arr)
        return arr

    def features(self, image_id: str, shape: tuple[int, int]) -> torch.Tensor:
        """(C, h, w) float32 on the device, of the image resized to `shape` (H, W): the size the
        method was given the image at."""
        # torch widens float16 with vector instructions, numpy element by element (about 2x slower a
        # read); the widening is exact either way, so the values are the same.
        # copy=True: never a view of the RAM cache's array, which a caller could change in place.
        return torch.from_numpy(self._array(image_id, shape)).to(device(), dtype=torch.float32, copy=True)

    def grid_size(self, image_id: str, shape: tuple[int, int]) -> tuple[int, int]:
        return tuple(self._array(image_id, shape).shape[1:])

    def pixel_features(self, image_id: str, shape: tuple[int, int]) -> torch.Tensor:
        """(C, H, W) bilinearly upsampled to `shape`."""
        f = self.features(image_id, shape)[None]
        return F.interpolate(f, size=tuple(shape), mode="bilinear", align_corners=False)[0]


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()
