"""`bench backbone pretrain --dataset DIR --layout voc|ade20k|coco`: DeepLabV3+ pretrained on a
user's segmentation set with the benchmark's classes set to ignore and the images they dominate
dropped; its class list is written and passes the class check of a `wacv22` run."""
import json

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.data.vocabulary import declared_classes, overlap
from bench.data.classes import VOC_CLASSES

TINY = ["--set", "arch=r18-os16", "steps=2", "crop_epochs=0", "batch=2", "train_size=33"]


def _image(path, k):
    Image.fromarray(np.full((40, 48, 3), 20 * k, np.uint8)).save(path)


def voc_set(root):
    """Classes road, dog, tree, sky; image 3 is mostly dog (dropped)."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "classes.txt").write_text("road\ndog\ntree\nsky\n")
    for k in range(5):
        _image(root / "JPEGImages" / f"im{k}.jpg", k)
        m = np.full((40, 48), 1, np.uint8)
        m[:10] = 4
        m[20:30, 5:15] = 3
        if k == 3:
            m[5:, :] = 2  # dog almost everywhere
        else:
            m[30:, 30:] = 2
        Image.fromarray(m, mode="L").save(root / "SegmentationClass" / f"im{k}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(f"im{k}" for k in range(5)) + "\n")
    return root


def ade_set(root):
    """ADE20K layout: objectInfo150.csv names; 0 = unlabelled; person and car are VOC classes."""
    (root / "images/training").mkdir(parents=True)
    (root / "annotations/training").mkdir(parents=True)
    rows = ["Idx,Ratio,Train,Val,Name", "1,0.1,1,1,wall", "2,0.1,1,1,person;individual;someone",
            "3,0.1,1,1,tree", "4,0.1,1,1,car;auto;automobile;machine;motorcar"]
    (root / "objectInfo150.csv").write_text("\n".join(rows) + "\n")
    for k in range(4):
        _image(root / "images/training" / f"ADE_train_{k}.jpg", k)
        m = np.zeros((40, 48), np.uint8)
        m[:20] = 1
        m[20:, :24] = 3
        m[20:, 24:30] = 2 if k else 4
        Image.fromarray(m, mode="L").save(root / "annotations/training" / f"ADE_train_{k}.png")
    return root


def coco_set(root):
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    images, anns = [], []
    for k in range(4):
        name = f"{k:012d}.jpg"
        _image(root / "train2017" / name, k)
        images.append({"id": k + 1, "file_name": name, "height": 40, "width": 48})
        anns.append({"id": 10 + k, "image_id": k + 1, "category_id": 10, "iscrowd": 0, "area": 100.0, "bbox": [2, 2, 20, 10],
                     "segmentation": [[2, 2, 22, 2, 22, 12, 2, 12]]})
        anns.append({"id": 20 + k, "image_id": k + 1, "category_id": 1, "iscrowd": 0, "area": 30.0, "bbox": [30, 20, 6, 5],
                     "segmentation": [[30, 20, 36, 20, 36, 25, 30, 25]]})
    cats = [{"id": 1, "name": "person"}, {"id": 10, "name": "traffic light"}, {"id": 15, "name": "bench"}]
    (root / "annotations/instances_train2017.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("layout,make,kept,ignored,dropped", [
    ("voc", voc_set, ["road", "tree", "sky"], ["dog"], 1),
    ("ade20k", ade_set, ["wall", "tree"], ["person", "car"], 0),
    ("coco", coco_set, ["traffic light", "bench"], ["person"], 0),
])
def test_backbone_pretrain_on_a_user_set_leaves_the_benchmark_out(layout, make, kept, ignored, dropped, tmp_path, capsys):
    root = make(tmp_path / layout)
    out = tmp_path / f"{layout}.pth"
    assert main(["--cache-dir", str(tmp_path / "cache"), "backbone", "pretrain", "--dataset", str(root), "--layout", layout,
                 "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert f"{len(kept)} classes kept, {len(ignored)} set to ignore as pascal classes ({', '.join(ignored)})" in printed
    assert f"{dropped} dropped as dominated by them" in printed
    classes = declared_classes(str(out), "backbone")
    assert list(classes) == kept and overlap(classes, VOC_CLASSES) == []
    converted = next((tmp_path / "cache" / "pretraining").iterdir())
    masks = [np.array(Image.open(p)) for p in (converted / "SegmentationClass").glob("*.png")]
    assert all(m.max() <= len(kept) or m.max() == 255 for m in masks)  # classes renumbered, the benchmark's ignored
    assert all(set(np.unique(m)) <= set(range(len(kept) + 1)) | {255} for m in masks)

    from backbones.pretrain import backbone_config, pretrained_backbone

    model, meta, _ = pretrained_backbone(None, backbone_config({"arch": "r18-os16", "checkpoint": str(out)}), tmp_path)
    assert meta["checkpoint"] == str(out)  # loads as ours' backbone_checkpoint=FILE
    assert model.decode_head.conv_seg.out_channels == len(kept) + 1  # background and the kept classes


def test_a_set_of_benchmark_classes_only_is_refused(tmp_path, capsys):
    root = voc_set(tmp_path / "voc")
    (root / "classes.txt").write_text("aeroplane\ndog\ncat\nsofa\n")
    assert main(["--cache-dir", str(tmp_path / "c"), "backbone", "pretrain", "--dataset", str(root), "--layout", "voc"]) == 2
    assert "every class of" in capsys.readouterr().err
