"""Class lists and the fold conventions of PASCAL-5i and COCO-20i (class ids are 1-based)."""
from __future__ import annotations

from bench.core.errors import BenchError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

# COCO 2014 category names in ascending category-id order (position + 1 = our class id).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)

N_FOLDS = 4


def check_fold(fold: int) -> int:
    if fold not in range(N_FOLDS):
        raise BenchError(f"fold {fold} does not exist; folds are 0, 1, 2, 3")
    return fold


def pascal_fold_classes(fold: int) -> list[int]:
    """PASCAL-5i: fold i holds VOC classes 5i+1 .. 5i+5."""
    check_fold(fold)
    return list(range(5 * fold + 1, 5 * fold + 6))


def coco_fold_classes(fold: int, split: str) -> list[int]:
    """COCO-20i. 'contiguous' (PANet): 20i+1 .. 20i+20; 'interleaved' (PFENet/HSNet): i+1, i+5, ..., i+77."""
    check_fold(fold)
    if split == "contiguous":
        return list(range(20 * fold + 1, 20 * fold + 21))
    if split == "interleaved":
        return [fold + 4 * v + 1 for v in range(20)]
    raise BenchError(f"unknown COCO split convention '{split}'; use 'contiguous' or 'interleaved'")
