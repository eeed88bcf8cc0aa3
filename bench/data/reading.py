"""Reading one image or mask file, with one clear error naming a missing or corrupt file, and a
RAM memo of decoded files bounded in bytes. Used by the dataset readers and by the restricted stores
(bench/data/stores.py) alike."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bench.core.errors import BenchError

IGNORE = 255


def read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise BenchError(f"missing image {path}; fix: restore the file or remove its id from the split list") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise BenchError(f"corrupt image {path} ({exc}); fix: replace the file or remove its id from the split list") from None


def read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise BenchError(f"mask {path} has mode {im.mode}; expected a palette or greyscale PNG of class indices")
            return np.array(im)
    except FileNotFoundError:
        raise BenchError(f"missing mask {path}; fix: restore the file or remove its id from the split list") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise BenchError(f"corrupt mask {path} ({exc}); fix: replace the file or remove its id from the split list") from None


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path, mask_path) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise BenchError(
            f"mask/image size mismatch: {mask_path} is {mask.shape[1]}x{mask.shape[0]} but {image_path} is "
            f"{image.shape[1]}x{image.shape[0]}; fix: regenerate the mask at the image's size"
        )


def check_labels(mask: np.ndarray, n_classes: int, path) -> None:
    """A class mask holds 0..n_classes and 255 only (a wrongly converted SBD mask holds e.g. 77)."""
    bad = (mask > n_classes) & (mask != IGNORE)
    if bad.any():
        raise BenchError(f"mask {path} holds label {int(mask[bad][0])}, outside 0-{n_classes} and 255; fix: convert it to "
                         f"class indices (VOC palette index = class id; SBD's .mat files through their GTcls.Segmentation "
                         f"field) or remove the image from the split list")


def cached_image(path: Path) -> np.ndarray:
    return _cached(path, read_image)


def cached_mask(path: Path) -> np.ndarray:
    return _cached(path, read_mask)


_FILES = None  # (reader, path, size, mtime) -> read-only array; bounded in bytes (bench/core/memo.py)


def _cached(path: Path, reader) -> np.ndarray:
    """Decoded files kept in RAM, keyed by (size, mtime) too so an edited file is read again; a
    missing file reaches the reader, which names it."""
    global _FILES
    if _FILES is None:
        from bench.core.memo import BytesLRU

        _FILES = BytesLRU()
    try:
        st = os.stat(path)
        key = (reader.__name__, str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return reader(path)
    arr = _FILES.get(key)
    if arr is None:
        arr = reader(path)
        arr.setflags(write=False)
        _FILES.put(key, arr)
    return arr


def rasterised_coco_mask(folder: Path | None, image_id: str, height: int, width: int, anns: list[dict],
                         cat_index: dict[int, int]) -> np.ndarray:
    """A COCO image's class mask, rasterised from its annotations once: the PNG under `folder`
    (named by the annotation file's content, so an edited file is rasterised again) is read on
    every later access. Without a folder (no cache dir) it is rasterised each time."""
    if folder is None:
        return coco_mask(height, width, anns, cat_index)
    path = Path(folder) / f"{image_id}.png"
    if path.is_file():
        return cached_mask(path)
    mask = coco_mask(height, width, anns, cat_index)
    import io

    from bench.core.files import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return mask


def coco_mask(height: int, width: int, anns: list[dict], cat_index: dict[int, int]) -> np.ndarray:
    """One image's class mask from its COCO annotations (polygons or RLE, as pycocotools' annToMask);
    crowd regions drawn last, as ignore."""
    from pycocotools import mask as mask_utils

    mask = np.zeros((height, width), np.uint8)
    for ann in sorted(anns, key=lambda a: a["iscrowd"]):
        segm = ann["segmentation"]
        if isinstance(segm, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
        elif isinstance(segm["counts"], list):
            rle = mask_utils.frPyObjects(segm, height, width)
        else:
            rle = segm
        mask[mask_utils.decode(rle).astype(bool)] = IGNORE if ann["iscrowd"] else cat_index[ann["category_id"]]
    return mask
