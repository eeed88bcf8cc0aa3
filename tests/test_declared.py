"""Every pretrained network declares the classes it saw; a run checks them against the benchmark
before fitting: disjoint (runs, stated in the record), refused (one line naming the network, its
file and the overlap), or --allow-leak (runs, the record keeps the leak, tables mark the row ‡)."""
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.core.records import load_records
from bench.data.vocabulary import IMAGENET, declared_classes, overlap
from bench.harness.presets import get_preset
from bench.harness.runner import RunRequest, run_networks


class Leaky:
    """Predicts background; stands on a 'backbone' whose sidecar declares dog and sofa."""

    name = "leaky"
    weights = ""

    def networks(self):
        return [("backbone", Leaky.weights)]

    def fit(self, view, config):
        pass

    def predict(self, episode):
        return [np.zeros(q.shape[:2], np.uint8) for q in episode.query_images]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _run(cache_dir, results, method, mode="full", *extra, preset="quick"):
    return main(["--cache-dir", str(cache_dir), "run", "--method", method, "--mode", mode, "--dataset", "openmoji5i-mini",
                 "--preset", preset, "--fold", "0", "--results-dir", str(results), *extra])


def test_pool_trained_networks_are_disjoint_and_stated(mini, cache_dir, tmp_path):
    from test_pseudo import TINY as PSEUDO

    req = RunRequest(method="ours", mode="weak", dataset="openmoji5i-mini", preset="wacv22", pseudo=PSEUDO, cache_dir=cache_dir)
    networks, leaks = run_networks(req, mini, get_preset("wacv22"))
    assert leaks == {} and set(networks) == {"backbone", "cam", "saliency"}
    assert all(n["file"] == "trained here on openmoji5i-mini-pool" and n["must_be_disjoint"] for n in networks.values())
    assert networks["cam"]["classes"] == "30 classes"  # the mini pool's


def test_the_embedded_pools_share_no_class_with_their_benchmarks():
    from bench.data.classes import COCO_CLASSES, VOC_CLASSES
    from bench.data.embedded.sprites import pool_classes

    import bench.data.embedded as embedded

    names = tuple(n for _, n in pool_classes())
    lines = (Path(embedded.__file__).parent / "coco_pool_exclusions.txt").read_text().splitlines()
    excluded = {l.strip() for l in lines if l.strip() and not l.startswith("#")}
    assert overlap(names, VOC_CLASSES) == []
    assert overlap(tuple(n for n in names if n not in excluded), COCO_CLASSES) == []
    assert "elephant (elephant)" in overlap(names, COCO_CLASSES)  # what the exclusion list removes


def test_torchvision_vgg16_as_cam_is_refused_naming_the_overlap(mini, cache_dir, tmp_path, capsys):
    weights = tmp_path / "vgg16-397923af.pth"
    weights.write_bytes(b"not loaded: the check comes first")
    code = _run(cache_dir, tmp_path / "r", "background", "weak", "--pseudo-set", "cam=vgg16", f"cam_weights={weights}",
                "saliency=none", preset="wacv22")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"the cam network ({weights}) saw 255 class(es) of openmoji5i-mini's classes: airliner (aeroplane)" in err
    assert not (tmp_path / "r").exists()


def test_an_imagenet_trunk_is_allowed_and_stated(mini, cache_dir, tmp_path):
    req = RunRequest(method="panet", mode="full", dataset="openmoji5i-mini", config={"trunk_checkpoint": str(tmp_path / "vgg16-397923af.pth")},
                     cache_dir=cache_dir)
    networks, leaks = run_networks(req, mini, get_preset("wacv22"))
    assert leaks == {} and networks["trunk"] == {"file": "vgg16-397923af.pth", "classes": IMAGENET, "must_be_disjoint": False}


def test_a_leaky_backbone_is_refused_then_run_marked_with_allow_leak(mini, cache_dir, tmp_path, capsys, monkeypatch):
    weights = tmp_path / "deeplab.pth"
    weights.write_bytes(b"")
    (tmp_path / "deeplab.pth.classes.txt").write_text("# trained on\ngrass\ndog\nsofa\n")
    monkeypatch.setattr(Leaky, "weights", str(weights))
    results = tmp_path / "results"
    assert _run(cache_dir, results, f"{__name__}:Leaky") == 2
    assert "the backbone network" in capsys.readouterr().err and not results.exists()
    assert _run(cache_dir, results, f"{__name__}:Leaky", "full", "--allow-leak") == 0
    [(_, record)] = load_records(results)
    assert record.leaks == {"backbone": ["dog (dog)", "sofa (sofa)"]}
    assert record.networks["backbone"]["classes"] == ["grass", "dog", "sofa"]
    capsys.readouterr()
    assert main(["table", "--results-dir", str(results), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "\nleaky ‡," in out and "‡ = run with --allow-leak, a pretrained network saw benchmark classes (backbone: dog (dog), sofa (sofa))" in out


def test_an_undeclared_weight_file_asks_for_its_class_list(tmp_path):
    with pytest.raises(Exception, match=r"do not say which classes .* write .*mine.pth.classes.txt"):
        declared_classes(str(tmp_path / "mine.pth"), "backbone")
    (tmp_path / "mine.pth.classes.txt").write_text("imagenet-1k\n")
    assert declared_classes(str(tmp_path / "mine.pth"), "backbone") == IMAGENET


def test_an_undeclared_trunk_is_stated_and_an_undeclared_backbone_refused(mini, cache_dir, tmp_path):
    mine = str(tmp_path / "my_trunk.pth")
    req = RunRequest(method="panet", mode="full", dataset="openmoji5i-mini", config={"trunk_checkpoint": mine}, cache_dir=cache_dir)
    networks, leaks = run_networks(req, mini, get_preset("wacv22"))
    assert networks["trunk"]["classes"] == "undeclared" and leaks == {}
    req = RunRequest(method="ours", mode="full", dataset="openmoji5i-mini", config={"backbone_checkpoint": mine}, cache_dir=cache_dir)
    with pytest.raises(Exception, match="my_trunk.pth do not say which classes"):
        run_networks(req, mini, get_preset("wacv22"))
