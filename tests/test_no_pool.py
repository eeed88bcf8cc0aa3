"""A real tree has no emoji pool: every method and mode either runs or stops with one line naming
the exact flags that method needs (its pretrained trunk or backbone, and in weak modes the CAM and
saliency weights), before anything is built."""

import pytest

from bench.cli import main
from bench.harness.registry import METHODS
from real_layout import mixed_size_voc

NEEDS = {
    "panet": ["--set trunk_width=1 trunk_bn=false trunk_checkpoint=vgg16-397923af.pth"],
    "amp": ["--set trunk_width=1 fc=4096 embed=256 trunk_bn=false trunk_checkpoint=vgg16-397923af.pth"],
    "pfenet": ["--set trunk_depth=50 trunk_checkpoint=resnet50_v2.pth"],
    "ours": ["--set backbone_arch=r50-os8 backbone_checkpoint=FILE"],
    "ours-noE": ["--set backbone_arch=r50-os8 backbone_checkpoint=FILE"],
    "background": [],
}
PSEUDO = ("--pseudo-set cam=vgg16 cam_weights=FILE (a VGG-16 whose FILE.classes.txt shows no benchmark class; "
          "torchvision's vgg16-397923af.pth saw them and runs only with --allow-leak) saliency=onnx saliency_path=FILE "
          "(or saliency=none)")


@pytest.fixture(scope="module")
def no_pool_root(mini, tmp_path_factory):
    root = mixed_size_voc(mini, tmp_path_factory.mktemp("nopool") / "VOC2012")
    (root / "pool").unlink()  # the fixture links the mini set's pool in; a real tree has none
    return root


def _run(root, tmp_path, method, mode, *extra):
    return main(["--cache-dir", str(tmp_path / "cache"), "run", "--method", method, "--mode", mode, "--dataset",
                 "pascal5i", "--data-root", str(root), "--preset", "quick", "--fold", "0", "--results-dir",
                 str(tmp_path / "results"), *extra])


def test_the_table_covers_every_method():
    assert set(NEEDS) == set(METHODS)


@pytest.mark.parametrize("mode", ["full", "weak", "weak-test"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_and_mode_names_the_flags_it_needs(name, mode, no_pool_root, tmp_path, capsys):
    code = _run(no_pool_root, tmp_path, name, mode)
    err = capsys.readouterr().err
    wanted = NEEDS[name] + ([PSEUDO] if mode != "full" else [])
    if not wanted:
        assert code == 0, err  # nothing pretrained: it runs
        return
    assert code == 2 and err.count("\n") == 1, err
    assert f"pascal5i has no disjoint pool to pretrain networks on, so {name} in {mode} mode" in err
    assert all(flag in err for flag in wanted), err
    assert not (tmp_path / "cache" / "pseudo").exists() and not (tmp_path / "results").exists()  # nothing built


def test_with_the_weights_named_the_check_passes(no_pool_root, tmp_path, capsys):
    """Given what it asks for, the check is satisfied (the run then fails only on the missing file)."""
    code = _run(no_pool_root, tmp_path, "panet", "full", "--set", "trunk_checkpoint=" + str(tmp_path / "vgg16.pth"))
    err = capsys.readouterr().err
    assert code == 2 and "no disjoint pool" not in err and "vgg16.pth" in err
