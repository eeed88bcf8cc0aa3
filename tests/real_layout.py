"""A PASCAL VOC-layout tree (JPEGImages/, SegmentationClassAug/, ImageSets/Segmentation/
trainaug.txt and val.txt) whose images have three different sizes, as real VOC does (500x375,
375x500, 500x333 ...), made from the embedded mini set: landscape, portrait and wide images
side by side in every batch. The mini set's disjoint pool is linked in as pool/, so weak mode can
train its CAM and saliency nets as on the embedded set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZES = ((150, 113), (113, 150), (150, 100))  # (width, height): landscape, portrait, wide


def mixed_size_voc(mini, root: Path, n_train: int = 60, val_per_class: int = 3) -> Path:
    """Every train image up to n_train, and val images holding fold-0 or fold-1 classes (a few per
    class); image k gets SIZES[k % 3], its mask resized nearest."""
    root = Path(root)
    if (root / "ImageSets/Segmentation/val.txt").is_file():
        return root
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    train = mini.ids("train")[:n_train]
    val, per_class = [], {}
    for image_id in mini.ids("val"):
        classes = [c for c in np.unique(mini.mask(image_id)) if 1 <= c <= 10]
        if any(per_class.get(c, 0) < val_per_class for c in classes):
            val.append(image_id)
            for c in classes:
                per_class[c] = per_class.get(c, 0) + 1
    for k, image_id in enumerate(train + val):
        w, h = SIZES[k % len(SIZES)]
        Image.fromarray(mini.image(image_id)).resize((w, h), Image.BILINEAR).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        Image.fromarray(mini.mask(image_id)).resize((w, h), Image.NEAREST).save(root / "SegmentationClassAug" / f"{image_id}.png")
    (root / "pool").symlink_to(Path(mini.root) / "pool", target_is_directory=True)
    (root / "ImageSets/Segmentation/trainaug.txt").write_text("\n".join(train) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(val) + "\n")
    return root
