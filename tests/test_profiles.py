"""Profiles (bench/core/profiles.py): the reference codes' schedules, every value cited. The table
below is transcribed from the reference repositories (PANet kaixin96/PANet@1695bf3, AMP
MSiam/AdaptiveMaskedProxies@cc0d3d1, PFENet dvlab-research/PFENet@a505675) independently of the
methods' PROFILES; a method whose reference value or citation drifts fails here. Then every method
trains 2 steps under `reference` on the real-layout fixture (pascal5i's default profile), with only
the network sizes shrunk by --set, and its record carries the profile and each value's source."""
import pytest

from bench.core.errors import BenchError
from bench.core.profiles import profile_values
from bench.harness.registry import method_class

P, A, F = "kaixin96/PANet@1695bf3", "MSiam/AdaptiveMaskedProxies@cc0d3d1", "dvlab-research/PFENet@a505675"
PF_VOC, PF_COCO = "config/pascal/pascal_split0_resnet50.yaml", "config/coco/coco_split0_resnet101.yaml"

# method, family, setting, value, where the reference defines it
CITED = [
    ("panet", "pascal", "iterations", 30000, f"{P} config.py:36"),
    ("panet", "pascal", "lr", 1e-3, f"{P} config.py:56"),
    ("panet", "pascal", "align_weight", 1.0, f"{P} config.py:40"),
    ("panet", "pascal", "scaler", 20.0, f"{P} models/fewshot.py:101"),
    ("panet", "pascal", "final_relu", False, f"{P} models/vgg.py:31"),
    ("panet", "pascal", "trunk_width", 1.0, f"{P} models/vgg.py:8"),
    ("panet", "pascal", "trunk_bn", False, f"{P} models/vgg.py:39"),
    ("panet", "pascal", "seed", 1234, f"{P} config.py:28"),
    ("amp", "pascal", "steps", 300000, f"{A} configs/fcn8s_pascal.yml:18"),
    ("amp", "pascal", "batch", 1, f"{A} configs/fcn8s_pascal.yml:19"),
    ("amp", "pascal", "optimizer", "rmsprop", f"{A} configs/fcn8s_pascal.yml:24"),
    ("amp", "pascal", "lr", 1e-6, f"{A} configs/fcn8s_pascal.yml:25"),
    ("amp", "pascal", "weight_decay", 5e-4, f"{A} configs/fcn8s_pascal.yml:26"),
    ("amp", "pascal", "loss_reduction", "mean", f"{A} ptsemseg/loss/loss.py:28"),
    ("amp", "pascal", "fconv", "reduced", f"{A} ptsemseg/models/reduced_fcn.py:13"),
    ("amp", "pascal", "embed", 256, f"{A} ptsemseg/models/reduced_fcn.py:13"),
    ("amp", "pascal", "flip", False, f"{A} configs/fcn8s_pascal.yml:17-33"),
    ("amp", "pascal", "alpha", 0.25821, f"{A} fewshot_imprinted.py:118"),
    ("amp", "pascal", "trunk_width", 1.0, f"{A} ptsemseg/models/fcn.py:358"),
    ("amp", "pascal", "trunk_bn", False, f"{A} ptsemseg/models/fcn.py:368"),
    ("amp", "pascal", "seed", 1337, f"{A} train.py:34"),
    ("pfenet", "pascal", "epochs", 200, f"{F} {PF_VOC}:27"),
    ("pfenet", "pascal", "batch", 4, f"{F} {PF_VOC}:24"),
    ("pfenet", "pascal", "optimizer", "sgd", f"{F} train.py:125"),
    ("pfenet", "pascal", "lr", 0.025, f"{F} {PF_VOC}:26"),
    ("pfenet", "pascal", "power", 0.9, f"{F} {PF_VOC}:29"),
    ("pfenet", "pascal", "reduce_dim", 256, f"{F} model/PFENet.py:95"),
    ("pfenet", "pascal", "trunk_depth", 50, f"{F} {PF_VOC}:9"),
    ("pfenet", "pascal", "augment", "reference", f"{F} train.py:166-170"),
    ("pfenet", "pascal", "scale_min", 0.9, f"{F} {PF_VOC}:14"),
    ("pfenet", "pascal", "scale_max", 1.1, f"{F} {PF_VOC}:15"),
    ("pfenet", "pascal", "rotate", 10.0, f"{F} {PF_VOC}:16-17"),
    ("pfenet", "pascal", "seed", 321, f"{F} {PF_VOC}:32"),
    ("pfenet", "coco", "epochs", 50, f"{F} {PF_COCO}:26"),
    ("pfenet", "coco", "batch", 32, f"{F} {PF_COCO}:23"),
    ("pfenet", "coco", "optimizer", "sgd", f"{F} train.py:125"),
    ("pfenet", "coco", "lr", 0.2, f"{F} {PF_COCO}:25"),
    ("pfenet", "coco", "power", 0.9, f"{F} {PF_COCO}:28"),
    ("pfenet", "coco", "reduce_dim", 256, f"{F} model/PFENet.py:95"),
    ("pfenet", "coco", "trunk_depth", 101, f"{F} {PF_COCO}:8"),
    ("pfenet", "coco", "augment", "reference", f"{F} train.py:166-170"),
    ("pfenet", "coco", "scale_min", 0.8, f"{F} {PF_COCO}:13"),
    ("pfenet", "coco", "scale_max", 1.25, f"{F} {PF_COCO}:14"),
    ("pfenet", "coco", "rotate", 10.0, f"{F} {PF_COCO}:15-16"),
    ("pfenet", "coco", "seed", 321, f"{F} {PF_COCO}:31"),
    ("ours", "pascal", "dim", 64, "paper §4"),
    ("ours", "pascal", "hidden", 256, "choice:"),
    ("ours", "pascal", "episodes", 1500, "choice:"),
    ("ours", "pascal", "backbone_arch", "r101-os8", "choice:"),
]


def test_every_reference_value_is_its_cited_value():
    declared = {(m, fam): profile_values(method_class(m), "reference", fam) for m, fam, *_ in CITED}
    for method, family, key, value, source in CITED:
        cited = declared[(method, family)][key]
        assert cited.value == value and cited.source.startswith(source), (method, family, key, cited)
    listed = {(m, fam, k) for m, fam, k, *_ in CITED}
    extra = {(m, fam, k) for (m, fam), values in declared.items() for k in values} - listed
    assert not extra, f"reference values without a row in this table: {sorted(extra)}"
    # each value is a setting the method takes
    for (method, _), values in declared.items():
        method_class(method)(**{k: c.value for k, c in values.items()})


def test_embedded_profile_is_the_defaults_and_unknown_profiles_are_refused():
    assert profile_values(method_class("amp"), "embedded", "pascal") == {}
    with pytest.raises(BenchError, match="unknown profile 'paper'"):
        profile_values(method_class("amp"), "paper", "pascal")


def test_pfenet_epochs_and_augmentation():
    """An epoch is one pass over the fold's training images; the augmentation keeps the label's
    values (0, 1, 255 padding) and the crop size, and keeps >= 85 % of the foreground when it can."""
    import numpy as np

    from methods.augment import pfenet_augment
    from methods.pfenet import PfenetConfig, training_steps

    assert training_steps(PfenetConfig(epochs=200, batch=4), 5953) == 200 * 1489
    assert training_steps(PfenetConfig(steps=7), 5953) == 7
    rng = np.random.default_rng(0)
    image = np.full((100, 150, 3), 200, np.uint8)
    label = np.zeros((100, 150), np.uint8)
    label[40:60, 60:90] = 1
    kept = []
    for _ in range(20):
        img, lab = pfenet_augment(rng, image, label, 129, (0.9, 1.1), 10.0)
        assert img.shape == (129, 129, 3) and lab.shape == (129, 129)
        assert set(np.unique(lab)) <= {0, 1, 255} and (lab == 255).any()  # padded to 129 rows: 255 there
        kept.append((lab == 1).sum())
    assert min(kept) > 0.85 * 600 * 0.81  # scaled by >= 0.9 in each side, then >= 85 % kept


# the reference profile with the networks shrunk (what a CPU test can train): every other value is the reference's
SMALL = {
    "panet": {"iterations": 2, "trunk_width": 0.25, "trunk_epochs": 1},
    "amp": {"steps": 2, "trunk_width": 0.25, "trunk_epochs": 1, "embed": 32},
    "pfenet": {"epochs": 1, "batch": 32, "trunk_depth": 18, "reduce_dim": 16, "backbone_steps": 3, "backbone_max_images": 12},
    "ours": {"episodes": 2, "backbone_arch": "r18-os16", "backbone_steps": 3, "backbone_max_images": 12,
             "support_pixels": 300, "query_pixels": 300},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_method_trains_two_steps_under_the_reference_profile(name, mini, cache_dir, tmp_path_factory, tmp_path):
    from bench.core.records import load_records
    from bench.harness.runner import RunRequest, run
    from real_layout import mixed_size_voc

    root = mixed_size_voc(mini, tmp_path_factory.getbasetemp() / "real-profiles" / "VOC2012")
    req = RunRequest(method=name, mode="full", dataset="pascal5i", data_root=root, folds=(0,), preset="quick",
                     config=SMALL[name], cache_dir=cache_dir, results_dir=tmp_path)  # no --profile: pascal5i's default
    run(req, log=lambda *_: None)
    ((path, record),) = load_records(tmp_path)
    assert record.profile == "reference" and "+profile=reference" in str(path)
    reference = profile_values(method_class(name), "reference", "pascal")
    for key, cited in reference.items():
        assert record.profile_settings[key] == {"value": cited.value, "source": cited.source}
        if key not in SMALL[name]:
            assert record.method_config[key] == cited.value, key
    assert record.fit["loss"][-1][0] == 2  # two steps (PFENet: 1 epoch of 60 images in batches of 32)


@pytest.mark.parametrize("grid,dataset,n_cells", [("paper_pascal5i", "pascal5i", 4 * (2 * 2 * 2 + 2 * 2 + 2 * 2 + 2 * 2 * 2 * 2 + 4)),
                                                  ("paper_coco20i", "coco20i", 4 * 2 * 2 * 4)])
def test_real_data_grids_run_the_reference_profile_with_valid_settings(grid, dataset, n_cells):
    """The paper's grids: every cell under `reference` on the real dataset, with settings each
    method and the pseudo-label generator accept (a typo would fail the sweep at its first cell)."""
    from pathlib import Path

    from bench.harness.registry import create_method
    from bench.harness.sweep import grid_cells, load_grid
    from pseudo_labels.config import pseudo_config

    cells = grid_cells(load_grid(Path(__file__).parents[1] / "grids" / f"{grid}.toml"))
    assert len(cells) == n_cells and {(c.dataset, c.profile, c.preset) for c in cells} == {(dataset, "reference", "wacv22")}
    for cell in cells:
        create_method(cell.method, dict(cell.config))
        pseudo_config(dict(cell.pseudo))
        assert cell.mode == "full" or dict(cell.pseudo)["cam_weights"].startswith("weights/")
