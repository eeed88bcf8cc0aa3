"""`bench pseudo train-cam --imagenet DIR`: the paper's CAM, a VGG trained on ImageNet without the
benchmark's classes. On a tiny ImageNet-layout fixture the benchmark's synsets (and hyponyms) are
skipped, the K-way head and its class list are written, `cam=vgg16` loads it, and it passes the
class check that torchvision's ImageNet file fails."""
import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.data.vocabulary import declared_classes, overlap

SYNSETS = {  # wnid: names (LOC_synset_mapping.txt); the first three are VOC classes or hyponyms
    "n02085620": "Chihuahua", "n01530575": "brambling, Fringilla montifringilla", "n02690373": "airliner",
    "n07747607": "orange", "n04254680": "soccer ball", "n03141823": "crutch",
}


@pytest.fixture
def imagenet(tmp_path):
    root = tmp_path / "imagenet"
    rng = np.random.default_rng(0)
    for k, wnid in enumerate(SYNSETS):
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        for n in range(3):
            image = np.full((40, 48, 3), 30 * k, np.uint8) + rng.integers(0, 20, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{wnid}_{n}.JPEG")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in SYNSETS.items()))
    return root


@pytest.mark.slow
def test_train_cam_skips_the_benchmarks_synsets_and_its_head_loads(imagenet, tmp_path, capsys):
    out = tmp_path / "cam.pth"
    assert main(["--cache-dir", str(tmp_path / "c"), "pseudo", "train-cam", "--imagenet", str(imagenet), "--out", str(out),
                 "--arch", "vgg11", "--epochs", "1", "--batch", "4", "--size", "32"]) == 0
    printed = capsys.readouterr().out
    assert "3 synsets, 3 left out as pascal classes (brambling, Chihuahua, airliner)" in printed
    assert (tmp_path / "cam.pth.classes.txt").read_text().splitlines() == ["crutch", "soccer ball", "orange"]
    from bench.data.classes import VOC_CLASSES

    classes = declared_classes(str(out), "cam")
    assert classes == ("crutch", "soccer ball", "orange") and overlap(classes, VOC_CLASSES) == []
    assert overlap("imagenet-1k", VOC_CLASSES)  # what torchvision's file fails
    from bench.data.datasets import get_dataset
    from bench.harness.presets import get_preset
    from bench.harness.runner import RunRequest, run_networks

    mini = get_dataset("openmoji5i-mini", tmp_path / "c")
    req = RunRequest(method="background", mode="weak", dataset="openmoji5i-mini",
                     pseudo={"cam": "vgg16", "cam_weights": str(out), "saliency": "none"}, cache_dir=tmp_path / "c")
    networks, leaks = run_networks(req, mini, get_preset("wacv22"))  # the run's own check
    assert leaks == {} and networks["cam"]["classes"] == ["crutch", "soccer ball", "orange"]

    from pseudo_labels.config import pseudo_config
    from pseudo_labels.vgg_cam import VggCam

    cam = VggCam(out, VOC_CLASSES, pseudo_config({"cam": "vgg16", "vgg_input": 224}))
    assert cam.class_names == ["crutch", "soccer ball", "orange"]
    maps = cam.maps(np.zeros((2, 40, 48, 3), np.uint8))
    assert tuple(maps.shape[:2]) == (2, 3)


def test_a_k_way_head_without_its_class_list_is_one_clear_error(tmp_path):
    import torch
    import torchvision

    from bench.data.classes import VOC_CLASSES
    from pseudo_labels.config import pseudo_config
    from pseudo_labels.vgg_cam import VggCam

    path = tmp_path / "k.pth"
    torch.save(torchvision.models.vgg11(weights=None, num_classes=4).state_dict(), path)
    (tmp_path / "k.json").write_text('{"arch": "vgg11"}')
    with pytest.raises(Exception, match="has a 4-way head but .*k.pth.classes.txt lists 0 classes"):
        VggCam(path, VOC_CLASSES, pseudo_config({"cam": "vgg16"}))


def test_a_folder_without_synset_names_says_where_they_come_from(imagenet, tmp_path, capsys):
    (imagenet / "LOC_synset_mapping.txt").unlink()
    assert main(["pseudo", "train-cam", "--imagenet", str(imagenet), "--out", str(tmp_path / "x.pth")]) == 2
    assert "pass --synsets LOC_synset_mapping.txt" in capsys.readouterr().err
