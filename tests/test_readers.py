"""Real-layout readers on tiny fixtures written in the on-disk layouts of VOC2012+SBD and COCO 2014."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bench.data.datasets import coco_dataset, get_dataset, pascal_dataset
from bench.core.errors import BenchError


def make_voc(root, ids=("2007_000032", "2007_000039"), size=(40, 30)):
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClassAug").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for k, i in enumerate(ids):
        Image.fromarray(np.full((size[1], size[0], 3), 90 + k, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        m = np.zeros((size[1], size[0]), np.uint8)
        m[5:15, 5:20] = 1 + 5 * k  # aeroplane, then bus
        m[4, :] = 255
        Image.fromarray(m, mode="L").save(root / "SegmentationClassAug" / f"{i}.png")
    (root / "ImageSets/Segmentation/trainaug.txt").write_text(ids[0] + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text(ids[1] + "\n")
    return root


def test_pascal_reader(tmp_path):
    ds = pascal_dataset(make_voc(tmp_path / "VOC2012"))
    assert ds.ids("train") == ["2007_000032"] and ds.ids("val") == ["2007_000039"]
    mask = ds.mask("2007_000039")
    assert mask.shape == (30, 40) and set(np.unique(mask)) == {0, 6, 255}
    assert ds.image("2007_000039").shape == (30, 40, 3)
    assert ds.fold_classes(1) == [6, 7, 8, 9, 10]


def test_pascal_pfenet_style_list(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    (root / "ImageSets/Segmentation/val.txt").write_text("JPEGImages/2007_000039.jpg SegmentationClassAug/2007_000039.png\n")
    assert pascal_dataset(root).ids("val") == ["2007_000039"]


def test_pascal_bad_inputs(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        pascal_dataset(tmp_path / "nowhere")
    root = make_voc(tmp_path / "VOC2012")
    (root / "JPEGImages" / "2007_000032.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BenchError, match="corrupt image .*2007_000032.jpg"):
        pascal_dataset(root).image("2007_000032")
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(root / "SegmentationClassAug" / "2007_000039.png")
    with pytest.raises(BenchError, match="mask/image size mismatch: .*2007_000039.png is 10x10"):
        pascal_dataset(root).mask("2007_000039")
    (root / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(BenchError, match="no val list"):
        pascal_dataset(root)


def make_coco(root):
    (root / "annotations").mkdir(parents=True)
    (root / "val2014").mkdir()
    images, anns = [], []
    cats = [{"id": cid, "name": f"c{cid}"} for cid in (1, 2, 3, 90)]  # COCO ids have gaps; 90 = 4th
    for n, (img_id, cat) in enumerate([(42, 3), (77, 90)]):
        name = f"COCO_val2014_{img_id:012d}.jpg"
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "val2014" / name)
        images.append({"id": img_id, "file_name": name, "height": 20, "width": 30})
        anns.append({"id": 10 + n, "image_id": img_id, "category_id": cat, "iscrowd": 0, "area": 50.0,
                     "bbox": [2, 2, 10, 5], "segmentation": [[2, 2, 12, 2, 12, 7, 2, 7]]})
    anns.append({"id": 99, "image_id": 42, "category_id": 1, "iscrowd": 1, "area": 4.0, "bbox": [20, 10, 2, 2],
                 "segmentation": {"counts": [400, 20, 180], "size": [20, 30]}})
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def test_coco_reader_and_splits(tmp_path):
    ds = coco_dataset(make_coco(tmp_path / "coco"))
    assert ds.ids("val") == ["val_42", "val_77"]
    m42 = ds.mask("val_42")
    assert m42.shape == (20, 30)
    assert (m42 == 3).sum() > 0 and 255 in m42  # category 3 -> class 3; crowd -> ignore
    assert 4 in ds.mask("val_77")  # category 90 is the 4th category -> class 4
    assert ds.fold_classes(0, "contiguous")[:3] == [1, 2, 3]
    assert ds.fold_classes(1, "interleaved")[:3] == [2, 6, 10]
    with pytest.raises(BenchError, match="instances_train2014.json"):
        ds.ids("train")


def test_cli_missing_dataset_folder_is_one_line_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench.cli", "--cache-dir", str(tmp_path / "c"), "run", "--method",
                          "background", "--mode", "full", "--dataset", "pascal5i", "--data-root", str(tmp_path / "none")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "does not exist" in out.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.json"))


def test_unknown_dataset(tmp_path):
    with pytest.raises(BenchError, match="did you mean 'pascal5i'"):
        get_dataset("pascal5", tmp_path)


def test_a_mask_label_outside_the_classes_is_one_line_naming_the_file(tmp_path, capsys):
    """A wrongly converted SBD mask (colour values, e.g. 77) is refused, not scored."""
    root = make_voc(tmp_path / "VOC2012")
    bad = root / "SegmentationClassAug" / "2007_000039.png"
    m = np.array(Image.open(bad))
    m[20, 20] = 77
    Image.fromarray(m, mode="L").save(bad)
    ds = pascal_dataset(root)
    with pytest.raises(BenchError, match=r"mask .*2007_000039.png holds label 77, outside 0-20 and 255; fix: convert"):
        ds.mask("2007_000039")
    with pytest.raises(BenchError, match="holds label 77"):
        ds.mask_store(["2007_000039"]).mask("2007_000039")  # what a fit view reads in full mode
    from bench.cli import main

    code = main(["--cache-dir", str(tmp_path / "c"), "run", "--method", "background", "--mode", "full", "--dataset",
                 "pascal5i", "--data-root", str(root), "--preset", "quick", "--fold", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "holds label 77" in err and err.count("\n") == 1


def test_a_fold_class_without_images_names_the_class_and_the_list(tmp_path, capsys):
    """With no size filter, "use a smaller filter" would be the wrong fix: the list lacks the class."""
    from bench.cli import main

    root = make_voc(tmp_path / "VOC2012")  # val holds one bus image: fold 1's other classes have none
    code = main(["--cache-dir", str(tmp_path / "c"), "run", "--method", "background", "--mode", "full", "--dataset",
                 "pascal5i", "--data-root", str(root), "--preset", "quick", "--fold", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "class 6 (bus) has 1 eligible val images" in err or "class 7 (car) has 0 eligible val images" in err
    assert "smaller filter" not in err and "the val list of pascal5i holds" in err


def test_coco_masks_are_rasterised_once_per_image_and_again_when_annotations_change(tmp_path, monkeypatch):
    """The reader and the fit's mask store rasterise an image's annotations once into the cache;
    later reads take the PNG (shown by breaking the rasteriser); an edited annotation file is a
    new folder."""
    import bench.data.reading as reading

    root = make_coco(tmp_path / "coco")
    ds = coco_dataset(root, tmp_path / "cache" / "index")
    first = ds.mask("val_42")
    folder = ds.mask_folder("val")
    assert (folder / "val_42.png").is_file() and folder.parent == tmp_path / "cache" / "coco-masks"
    store = ds.mask_store(["val_77"])
    via_store = store.mask("val_77")
    monkeypatch.setattr(reading, "coco_mask", lambda *a: pytest.fail("rasterised again"))
    assert np.array_equal(coco_dataset(root, tmp_path / "cache" / "index").mask("val_42"), first)
    assert np.array_equal(store.mask("val_77"), via_store) and 4 in via_store
    monkeypatch.undo()
    path = root / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segmentation"] = [[2, 2, 20, 2, 20, 15, 2, 15]]  # a larger object in val_42
    path.write_text(json.dumps(data))
    edited = coco_dataset(root, tmp_path / "cache" / "index")
    assert edited.mask_folder("val") != folder and (edited.mask("val_42") == 3).sum() > (first == 3).sum()
