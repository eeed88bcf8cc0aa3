"""PFENet's training augmentation (dvlab-research/PFENet@a505675 train.py:166-170, util/transform.py),
per image and its label, in PIL and numpy (the reference uses OpenCV):
1. RandScale [scale_min, scale_max] (transform.py:182): image bilinear, label nearest;
2. RandRotate [-rotate, rotate] with p 0.5 (:305): image padded with the ImageNet mean, label 255;
3. RandomGaussianBlur with p 0.5 (:355): OpenCV's 5x5 kernel (sigma 1.1 from its size) -> PIL radius 1.1;
4. RandomHorizontalFlip p 0.5 (:333);
5. Crop to size x size at a random place (:214), padding as in 2 where smaller; up to 30 more draws
   while the crop keeps under 85 % of the label's foreground (label 1).
Random numbers come from the caller's numpy Generator (the reference: Python's `random`)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

MEAN = (124, 116, 104)  # ImageNet mean x 255, rounded: the reference's padding value
IGNORE = 255


def pfenet_augment(rng: np.random.Generator, image: np.ndarray, label: np.ndarray, size: int,
                   scale: tuple[float, float], rotate: float) -> tuple[np.ndarray, np.ndarray]:
    img, lab = Image.fromarray(image), Image.fromarray(label)
    s = scale[0] + (scale[1] - scale[0]) * rng.random()
    w, h = img.size
    new = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    img, lab = img.resize(new, Image.BILINEAR), lab.resize(new, Image.NEAREST)
    if rng.random() < 0.5:
        angle = -rotate + 2 * rotate * rng.random()
        img = img.rotate(angle, Image.BILINEAR, fillcolor=MEAN)
        lab = lab.rotate(angle, Image.NEAREST, fillcolor=IGNORE)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(1.1))
    if rng.random() < 0.5:
        img, lab = img.transpose(Image.FLIP_LEFT_RIGHT), lab.transpose(Image.FLIP_LEFT_RIGHT)
    return _crop(rng, np.asarray(img), np.asarray(lab), size)


def _crop(rng, image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = label.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        image = np.stack([np.pad(image[..., c], pads, constant_values=MEAN[c]) for c in range(3)], -1)
        label = np.pad(label, pads, constant_values=IGNORE)
    h, w = label.shape
    total = int((label == 1).sum())
    for _ in range(31):  # the first draw and up to 30 more
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop_img, crop_lab = image[y : y + size, x : x + size], label[y : y + size, x : x + size]
        if (crop_lab == 1).sum() >= 0.85 * total:
            break
    return np.ascontiguousarray(crop_img), np.ascontiguousarray(crop_lab)
