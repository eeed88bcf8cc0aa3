"""PANet and AMP pieces on hand-computed tensors, and the shared VGG-16 trunk."""
import numpy as np
import pytest
import torch

from backbones.trunks import FeatureMemo, TrunkConfig, Vgg16Trunk, _user_vgg16
from bench.errors import BenchError
from methods.amp import combine_ways, imprinted_weights
from methods.panet import cosine_logits, episode_prototypes
from methods.pooling import masked_average


def test_vgg16_trunk_loads_torchvision_weights_key_for_key(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.vgg16(weights=None).eval()
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    trunk = _user_vgg16(path, TrunkConfig(width=1.0, bn=False)).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(trunk.features[:17](x), reference.features[:17](x))  # through pool3
        out = trunk(x)
    assert out.shape == (1, 512, 5, 5)  # output stride 8: pool4 stride 1, conv5 dilated
    with pytest.raises(BenchError, match="does not fit VGG-16"):
        _user_vgg16(path, TrunkConfig(width=1.0, bn=True))
    with pytest.raises(BenchError, match="not found"):
        _user_vgg16(tmp_path / "missing.pth", TrunkConfig(width=1.0, bn=False))


def test_narrow_trunk_taps_share_stride_8():
    taps = Vgg16Trunk(width=0.25, bn=True).eval().taps(torch.zeros(2, 3, 65, 65))
    assert [t.shape for t in taps] == [(2, 64, 9, 9), (2, 128, 9, 9), (2, 128, 9, 9)]


def test_feature_memo_computes_each_image_once():
    calls = []
    memo = FeatureMemo(limit=10)

    def compute(images):
        calls.append(len(images))
        return [im.sum() for im in images]

    a, b = np.ones((2, 2, 3)), np.zeros((2, 2, 3))
    assert memo.get(["a", "b"], [a, b], compute) == [12.0, 0.0]
    assert memo.get(["b", "a", "a"], [b, a, a], compute) == [0.0, 12.0, 12.0]
    assert calls == [2]
    assert memo.get([], [a], compute) == [12.0] and calls == [2, 1]  # no ids: nothing memoised


def test_panet_prototypes_and_cosine_on_a_hand_computed_case():
    # 2 channels, 2x2 features; mask at the same size so no interpolation blur
    f = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]])
    mask = torch.tensor([[1, 0], [255, 0]])
    torch.testing.assert_close(masked_average(f, (mask == 1).float()), torch.tensor([1.0, 0.0]), atol=1e-4, rtol=0)
    protos = episode_prototypes([[f]], [[mask]])
    torch.testing.assert_close(protos, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), atol=1e-4, rtol=0)  # bg, way 1
    logits = cosine_logits(f, protos, 20.0)
    assert logits.shape == (2, 2, 2)
    assert logits[1, 0, 0].item() == pytest.approx(20.0, rel=1e-4) and logits[0, 0, 0].item() == pytest.approx(0.0, abs=1e-4)


def test_amp_imprinting_follows_the_alpha_rule():
    base = [torch.tensor([[1.0, 0.0], [0.0, 2.0]])]  # background, one base class
    emb = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (C=2, h=1, w=2): pixel 0 = (1, 0), pixel 1 = (0, 1)
    mask = torch.tensor([[1, 0]])  # pixel 0 foreground, pixel 1 background
    (w,) = imprinted_weights(base, [[emb]], [mask], alpha=0.5)
    torch.testing.assert_close(w[0], torch.tensor([0.5, 0.5]) / 0.5**0.5, atol=1e-4, rtol=0)  # normalise(.5 w + .5 p)
    torch.testing.assert_close(w[1], torch.tensor([0.0, 1.0]))  # base class kept (normalised)
    torch.testing.assert_close(w[2], torch.tensor([1.0, 0.0]), atol=1e-4, rtol=0)  # novel proxy appended
    (w0,) = imprinted_weights(base, [[emb]], [mask], alpha=0.0)
    torch.testing.assert_close(w0[0], torch.tensor([1.0, 0.0]))  # alpha 0: background untouched


def test_amp_n_way_rule_picks_the_foreground_way_with_the_highest_probability():
    fg = [torch.tensor([[True, True, False]]), torch.tensor([[False, True, False]])]
    probs = [torch.tensor([[0.9, 0.6, 0.4]]), torch.tensor([[0.95, 0.7, 0.45]])]
    # pixel 0: only way 1 says foreground (way 2's higher probability does not count); pixel 1: both,
    # way 2 more probable; pixel 2: neither -> background
    assert combine_ways(fg, probs).tolist() == [[1, 2, 0]]


def test_trunk_cli_pretrains_on_the_pool_once(mini, cache_dir, capsys):
    from backbones.trunks import trunk_path
    from bench.cli import main
    from bench.data.datasets import pool_dataset

    args = ["--cache-dir", str(cache_dir), "trunk", "pretrain", "--dataset", "openmoji5i-mini", "--set", "epochs=1"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "held-out top-1" in first
    path = trunk_path(cache_dir, pool_dataset(mini), TrunkConfig(epochs=1))
    stamp = path.stat().st_mtime_ns
    assert main(args) == 0 and capsys.readouterr().out.splitlines()[-1] == first.splitlines()[-1]
    assert path.stat().st_mtime_ns == stamp  # cached, not retrained
    assert main(args[:-1] + ["widht=1"]) == 2
    assert "unknown trunk setting 'widht'" in capsys.readouterr().err


def test_pulled_back_mask_equals_upsampling_the_features():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(7, 9, 11, generator=g)
    mask = (torch.rand(37, 45, generator=g) > 0.6).float()
    up = torch.nn.functional.interpolate(feats[None], size=mask.shape, mode="bilinear", align_corners=False)[0]
    want = (up * mask).sum(dim=(1, 2)) / (mask.sum() + 1e-5)
    torch.testing.assert_close(masked_average(feats, mask), want, atol=1e-5, rtol=1e-5)
