import numpy as np
import pytest

from bench.data.datasets import pool_dataset
import torch

from backbones.mmseg_compat import install, point_sample
from bench.core.errors import BenchError

TINY = {"steps": 3, "max_images": 12, "batch": 4, "train_size": 65}


def test_point_sample_stand_in_on_a_hand_computed_case():
    grid = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    points = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]])  # (x, y) in [0, 1]
    np.testing.assert_allclose(point_sample(grid, points)[0, 0].numpy(), [0.0, 1.0, 2.0, 1.5])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_mmseg_imports_on_mmcv_lite_and_missing_ops_fail_only_when_used():
    install()
    import mmcv.ops

    import mmseg.models

    assert mmseg.models.EncoderDecoder  # the import above raises on mmcv._ext without the stand-in

    if getattr(mmcv.ops, "__wsfss_standin__", False):
        with pytest.raises(BenchError, match="CrissCrossAttention needs mmcv's compiled ops"):
            mmcv.ops.CrissCrossAttention(64)


def test_decoder_features_are_the_layer_before_the_classifier():
    from backbones.deeplab import build_deeplab, decoder_features, logits

    torch.manual_seed(0)
    model = build_deeplab("r18-os16", 7).eval()
    x = torch.randn(2, 3, 65, 65)
    with torch.no_grad():
        feats = decoder_features(model, x)
        assert feats.shape == (2, 128, 17, 17)  # stride 4, head width 128
        torch.testing.assert_close(logits(model, x), model.decode_head(model.backbone(x)))
        torch.testing.assert_close(logits(model, x), model.decode_head.conv_seg(feats))
    with pytest.raises(BenchError, match="unknown backbone 'r34'"):
        build_deeplab("r34", 7)


@pytest.fixture(scope="module")
def tiny_backbone(mini, cache_dir):
    from backbones.pretrain import backbone_config, pretrained_backbone

    return pretrained_backbone(pool_dataset(mini), backbone_config(TINY), cache_dir, log=lambda *_: None)


def test_pool_pretraining_is_cached_frozen_and_reports_held_out_miou(mini, cache_dir, tiny_backbone):
    from backbones.pretrain import backbone_config, pretrained_backbone
    from bench.data.datasets import pool_dataset

    model, meta, path = tiny_backbone
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert 0.0 <= meta["val_miou"] <= 100.0 and meta["n_train"] == 12
    assert meta["classes"][1:] == list(pool_dataset(mini).class_names)  # pool classes only
    from bench.data.vocabulary import declared_classes

    assert declared_classes(str(path), "backbone") == pool_dataset(mini).class_names  # the list written beside it
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    stamp = path.stat().st_mtime_ns
    again, _, same = pretrained_backbone(pool_dataset(mini), backbone_config(TINY), cache_dir, log=lambda *_: None)
    assert same == path and path.stat().st_mtime_ns == stamp
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(BenchError, match="unknown backbone setting 'epoch'"):
        backbone_config({"epoch": 2})


def test_feature_cache_stores_float16_once_per_size_and_upsamples(mini, cache_dir, tiny_backbone):
    from backbones.features import FeatureCache
    from bench.data.sizes import resized_image

    model, meta, _ = tiny_backbone
    fc = FeatureCache(mini.image_store(mini.ids("train") + mini.ids("val")), model, meta["weights_id"], cache_dir)
    ids = mini.ids("val")[:5]
    native = (129, 129)
    fc.ensure(ids)
    stamps = [fc.path(i, native).stat().st_mtime_ns for i in ids]
    fc.ensure(ids)
    assert stamps == [fc.path(i, native).stat().st_mtime_ns for i in ids]
    assert np.load(fc.path(ids[0], native)).dtype == np.float16
    # read back as the stored float16 widened, exactly; a fresh tensor each time (not a view of the
    # RAM cache, which an in-place change by a caller would otherwise alter for every later read)
    stored = torch.from_numpy(np.load(fc.path(ids[0], native)).astype(np.float32))
    got = fc.features(ids[0], native)
    assert got.dtype == torch.float32 and torch.equal(got, stored)
    got.add_(1.0)
    assert torch.equal(fc.features(ids[0], native), stored)
    direct = fc.compute([mini.image(ids[0])])[0]
    torch.testing.assert_close(fc.features(ids[0], native), direct, atol=2e-2, rtol=1e-2)
    assert fc.pixel_features(ids[0], native).shape == (128, 129, 129)
    # another size is another entry: the features of the image as resized, not of the original
    fc.ensure(ids[:2], 65)
    assert fc.path(ids[0], (65, 65)).is_file() and fc.path(ids[0], native).is_file()
    small = fc.features(ids[0], (65, 65))
    assert small.shape == (128, 17, 17) and fc.grid_size(ids[0], (65, 65)) == (17, 17)
    torch.testing.assert_close(small, fc.compute([resized_image(mini.image(ids[0]), 65)])[0], atol=2e-2, rtol=1e-2)
    # a size never ensured is computed on first use and stored
    assert fc.features(ids[3], (49, 81)).shape[1:] == (13, 21) and fc.path(ids[3], (49, 81)).is_file()


def test_user_checkpoints_load_or_fail_clearly(tmp_path, mini, cache_dir, tiny_backbone):
    from backbones.pretrain import backbone_config, pretrained_backbone

    model, _, _ = tiny_backbone
    with pytest.raises(BenchError, match="nope.pth not found"):
        pretrained_backbone(pool_dataset(mini), backbone_config({"checkpoint": str(tmp_path / "nope.pth")}), cache_dir)
    torch.save({"state_dict": {"x": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(BenchError, match="no decode_head.conv_seg.weight"):
        pretrained_backbone(pool_dataset(mini), backbone_config({"checkpoint": str(tmp_path / "bad.pth")}), cache_dir)
    torch.save({"meta": {}, "state_dict": model.state_dict()}, tmp_path / "mine.pth")
    loaded, meta, _ = pretrained_backbone(pool_dataset(mini), backbone_config({"checkpoint": str(tmp_path / "mine.pth")}), cache_dir)
    torch.testing.assert_close(loaded.decode_head.conv_seg.weight, model.decode_head.conv_seg.weight)
    with pytest.raises(BenchError, match="does not fit DeepLabV3\\+ r50-os8"):
        pretrained_backbone(pool_dataset(mini), backbone_config({"checkpoint": str(tmp_path / "mine.pth"), "arch": "r50-os8"}), cache_dir)
    # named by content: the same bytes under another name are the same weights, edited bytes are not
    (tmp_path / "copy.pth").write_bytes((tmp_path / "mine.pth").read_bytes())
    _, copy_meta, _ = pretrained_backbone(pool_dataset(mini), backbone_config({"checkpoint": str(tmp_path / "copy.pth")}), cache_dir)
    assert meta["weights_id"].split("-")[-1] == copy_meta["weights_id"].split("-")[-1]
    data = (tmp_path / "mine.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])  # an interrupted download
    with pytest.raises(BenchError, match="cut.pth is truncated or not a PyTorch weight file.*fix: pass an mmsegmentation"):
        pretrained_backbone(pool_dataset(mini), backbone_config({"checkpoint": str(tmp_path / "cut.pth")}), cache_dir)


def test_backbone_cli_prints_held_out_miou_and_stores_features(mini, cache_dir, tiny_backbone, capsys):
    from bench.cli import main

    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    base = ["--cache-dir", str(cache_dir), "backbone"]
    assert main(base + ["pretrain", "--dataset", "openmoji5i-mini", *sets]) == 0
    out = capsys.readouterr().out
    assert f"held-out mIoU {tiny_backbone[1]['val_miou']:.1f}%" in out and str(tiny_backbone[2]) in out
    assert main(base + ["features", "--dataset", "openmoji5i-mini", *sets]) == 0
    n = len(mini.ids("train")) + len(mini.ids("val"))
    printed = capsys.readouterr().out
    assert f"features of {n} images" in printed
    # the store `ours` reads (keyed by the weights' id; it was keyed by their path, a folder ours never read)
    assert printed.rstrip().endswith(f"features/{mini.name}-{mini.fingerprint()}-{tiny_backbone[1]['weights_id']}")
    assert main(base + ["pretrain", "--dataset", "openmoji5i-mini", "--set", "arch=r34"]) == 2
    assert "arch=r34 is not one of r18-os16" in capsys.readouterr().err


def test_confusion_scores_on_a_hand_computed_case():
    from backbones.pretrain import confusion_scores

    # rows = ground truth (background, class 1, class 2), columns = prediction
    conf = np.array([[6, 1, 1], [2, 2, 0], [0, 3, 1]])
    got = confusion_scores(conf)
    # IoU: bg 6/(8+8-6)=0.6, c1 2/(4+6-2)=0.25, c2 1/(4+2-1)=0.2 -> mean 35 %
    assert got["val_miou"] == pytest.approx(35.0)
    assert got["val_pixel_acc"] == pytest.approx(100 * 9 / 16, abs=0.01)
    # objects: gt-object & pred-object = 2+0+3+1 = 6; gt objects 8, predicted objects 8 -> 6/10
    assert got["val_object_iou"] == pytest.approx(60.0)


def test_a_feature_store_over_its_budget_computes_the_same_values_and_writes_nothing(mini, cache_dir, tmp_path, monkeypatch):
    """$WSFSS_STORE_GB bounds every per-image store: over it, outputs are computed when used,
    rounded through float16 as stored ones are (equal up to one float16 step: the stored ones were
    computed in a batch of 5, these one by one), and no file is written."""
    import numpy as np
    import torch

    from backbones.features import FeatureCache

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU())
    ids = mini.ids("val")[:5]
    store = mini.image_store(ids)
    outputs = lambda model, x: model(x)  # noqa: E731
    kept = FeatureCache(store, net, "tiny", tmp_path / "a", outputs=outputs)
    kept.ensure(ids, 65)
    assert len(list((tmp_path / "a").rglob("*.npy"))) == 5
    planned = kept.planned_bytes({i: (65, 65) for i in ids})
    on_disk = sum(p.stat().st_size for p in (tmp_path / "a").rglob("*.npy"))
    assert abs(planned - on_disk) <= 0.02 * on_disk  # the estimate the budget is compared with
    monkeypatch.setenv("WSFSS_STORE_GB", str(on_disk / 2 / 1e9))
    computed = FeatureCache(store, net, "tiny", tmp_path / "b", outputs=outputs)
    computed.ensure(ids, 65)
    assert not computed.stored and not list((tmp_path / "b").rglob("*.npy"))
    for i in ids:
        a, b = kept.features(i, (65, 65)), computed.features(i, (65, 65))
        step = torch.finfo(torch.float16).eps * a.abs().clamp(min=2 ** -14)  # one float16 step at each value
        assert a.shape == b.shape and bool(((a - b).abs() <= step + 1e-12).all())
    assert not list((tmp_path / "b").rglob("*.npy"))


def test_a_feature_store_made_by_other_weights_under_the_same_name_is_refused(mini, tmp_path):
    """A store is keyed by the weights' name, not their bytes: a net retrained under the same name
    must not be served the old net's outputs. Reopened by the same net (another batch size, float16
    storage) the store passes; by a net with other weights it is refused with the folder to delete."""
    import torch

    from backbones.features import FeatureCache

    ids = mini.ids("val")[:5]
    store = mini.image_store(ids)
    outputs = lambda model, x: model(x)  # noqa: E731

    def net(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU()).eval()

    same = net(0)
    FeatureCache(store, same, "tiny", tmp_path, outputs=outputs).ensure(ids, 65)
    reopened = FeatureCache(store, same, "tiny", tmp_path, outputs=outputs)
    reopened.ensure(ids, 65)  # stored in a batch of 5, checked one by one: within float16 rounding
    assert reopened._checked == (ids[0], (65, 65))
    with pytest.raises(BenchError, match=r"other weights or other code; fix: delete .*tiny"):
        FeatureCache(store, net(1), "tiny", tmp_path, outputs=outputs).ensure(ids, 65)
    with pytest.raises(BenchError, match="differ from what the network named tiny computes"):
        FeatureCache(store, same, "tiny", tmp_path, outputs=lambda model, x: model(x) * 1.01).ensure(ids[:1], 65)


def test_torch_widens_every_float16_value_exactly_as_numpy_does():
    # FeatureCache.features widens its stored float16 with torch (vectorised) where it used numpy:
    # the same float32 bits for every finite, infinite and subnormal float16, so no record moves
    halves = np.arange(2 ** 16, dtype=np.uint16).view(np.float16)
    halves = halves[~np.isnan(halves)]
    by_numpy = halves.astype(np.float32).view(np.uint32)
    by_torch = torch.from_numpy(halves).to(dtype=torch.float32).numpy().view(np.uint32)
    assert halves.size == 2 ** 16 - 2046 and np.array_equal(by_numpy, by_torch)
