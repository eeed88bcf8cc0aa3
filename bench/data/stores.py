"""Image and mask stores restricted to a list of ids, holding file paths (and, for COCO, the
polygons of those images only), never a dataset reader. What a method is given is built from these
(bench/harness/views.py): a store answers for its own ids and nothing else, so no attribute chain
from a method's inputs leads to the ground truth of an image the protocol does not give it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.core.errors import BenchError


class ImageFiles:
    """Images of some ids: `image(id)` (HxWx3 uint8, decoded once per process). `name` and
    `fingerprint` are the dataset's, for cache keys (features are stored per dataset content)."""

    __slots__ = ("name", "fingerprint", "_paths")

    def __init__(self, name: str, fingerprint: str, paths: dict[str, Path]):
        self.name, self.fingerprint, self._paths = name, fingerprint, dict(paths)

    def ids(self) -> list[str]:
        return list(self._paths)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._paths

    def image(self, image_id: str) -> np.ndarray:
        from bench.data.reading import cached_image

        return cached_image(_lookup(self._paths, image_id, "image"))

    def shape(self, image_id: str) -> tuple[int, int]:
        """(H, W) from the file's header, without decoding it (a plan sizes 12,000 images)."""
        from PIL import Image

        with Image.open(_lookup(self._paths, image_id, "image")) as im:
            return im.height, im.width


class MaskFiles:
    """Masks of some ids, read from PNG files (GT of a VOC-layout set, or pseudo masks), each
    checked against its image's size."""

    __slots__ = ("_paths", "_n_classes")

    def __init__(self, paths: dict[str, tuple[Path, Path]], n_classes: int | None = None):
        self._paths = dict(paths)  # id -> (mask file, image file)
        self._n_classes = n_classes  # GT masks: labels checked against the dataset's classes

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._paths

    def mask(self, image_id: str) -> np.ndarray:
        from bench.data.reading import cached_image, cached_mask, check_labels, check_same_size

        mask_path, image_path = _lookup(self._paths, image_id, "mask")
        mask = cached_mask(mask_path)
        check_same_size(cached_image(image_path), mask, image_path, mask_path)
        if self._n_classes is not None:
            check_labels(mask, self._n_classes, mask_path)
        return mask


class CocoMasks:
    """COCO masks of some ids, rasterised from those images' annotations alone (crowd -> 255)."""

    __slots__ = ("_entries", "_folders")

    def __init__(self, entries: dict[str, tuple], folders: dict | None = None):
        self._entries = dict(entries)  # id -> (height, width, annotations, image file, category id -> class id)
        self._folders = dict(folders or {})  # split -> folder of rasterised masks (bench/data/reading.py)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._entries

    def mask(self, image_id: str) -> np.ndarray:
        from bench.data.reading import cached_image, check_same_size, rasterised_coco_mask

        height, width, anns, image_path, cat_index = _lookup(self._entries, image_id, "mask")
        folder = self._folders.get(image_id.split("_", 1)[0])
        mask = rasterised_coco_mask(folder, image_id, height, width, anns, cat_index)
        check_same_size(cached_image(image_path), mask, image_path, f"annotations of {image_id}")
        return mask


def _lookup(table: dict, image_id: str, what: str):
    try:
        return table[image_id]
    except KeyError:
        raise BenchError(f"no {what} for image '{image_id}' here: this store holds only the images the protocol "
                         f"gives at this stage ({len(table)} of them)") from None
