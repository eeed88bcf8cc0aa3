"""PANet, AMP and PFENet pieces on hand-computed tensors, and the shared trunks."""
import numpy as np
import pytest
import torch

from backbones.trunks import TrunkConfig, Vgg16Trunk, _user_vgg16
from bench.core.memo import BytesLRU, FeatureMemo, nbytes
from bench.core.errors import BenchError
from methods.amp import imprinted_weights
from methods.nway import combine_ways
from methods.panet import cosine_logits, episode_prototypes
from methods.pfenet import Fem, prior_mask, pyramid_sizes, weighted_gap
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
    (tmp_path / "cut.pth").write_bytes(path.read_bytes()[:100_000])  # an interrupted download
    with pytest.raises(BenchError, match="cut.pth is truncated or not a PyTorch weight file.*vgg16-397923af.pth"):
        _user_vgg16(tmp_path / "cut.pth", TrunkConfig(width=1.0, bn=False))


def test_narrow_trunk_taps_share_stride_8():
    taps = Vgg16Trunk(width=0.25, bn=True).eval().taps(torch.zeros(2, 3, 65, 65))
    assert [t.shape for t in taps] == [(2, 64, 9, 9), (2, 128, 9, 9), (2, 128, 9, 9)]


def test_feature_memo_computes_each_image_once():
    calls = []
    memo = FeatureMemo(limit=1 << 20)

    def compute(images):
        calls.append(len(images))
        return [torch.tensor(float(im.sum())) for im in images]

    a, b = np.ones((2, 2, 3)), np.zeros((2, 2, 3))
    assert [float(v) for v in memo.get(["a", "b"], [a, b], compute)] == [12.0, 0.0]
    assert [float(v) for v in memo.get(["b", "a", "a"], [b, a, a], compute)] == [0.0, 12.0, 12.0]
    assert calls == [2]
    assert float(memo.get([], [a], compute)[0]) == 12.0 and calls == [2, 1]  # no ids: nothing memoised


def test_feature_memo_is_bounded_in_bytes_keeps_a_full_batch_and_evicts_the_least_recently_used():
    one = torch.zeros(256)  # 1,024 bytes per entry
    assert nbytes(one) == 1024 and nbytes([one, {"x": one.numpy()}]) == 2048
    memo, computed = FeatureMemo(limit=2 * 1024), []

    def at_keys(keys):
        def compute_at(positions):
            computed.extend(keys[n] for n in positions)
            return [one + ord(keys[n]) for n in positions]
        return lambda: [chr(int(v[0])) for v in memo.by_key(keys, compute_at)]

    assert at_keys(["a"])() == ["a"] and at_keys(["b"])() == ["b"]
    assert at_keys(["a", "c"])() == ["a", "c"]  # full memo: adding c must not drop this batch's hit a
    assert computed == ["a", "b", "c"]
    assert at_keys(["a"])() == ["a"] and computed == ["a", "b", "c"]  # a stayed: b was least recently used
    assert at_keys(["b", "b"])() == ["b", "b"] and computed == ["a", "b", "c", "b"]
    assert len(memo) == 2 and memo._memo.held == 2048
    assert at_keys(["x", "y", "z"])() == ["x", "y", "z"] and len(memo) == 2  # a batch over the limit


def test_bytes_lru_drops_an_entry_larger_than_the_budget_and_counts_what_it_holds():
    lru = BytesLRU(limit=1000)
    lru.put("small", np.zeros(100, np.uint8))
    lru.put("big", np.zeros(2000, np.uint8))  # never kept: it would evict everything and still not fit
    assert "big" not in lru and lru.held == 100
    lru.put("small", np.zeros(300, np.uint8))  # replaced, not counted twice
    assert lru.held == 300 and len(lru) == 1
    lru.put("other", np.zeros(800, np.uint8))
    assert "small" not in lru and lru.held == 800


def test_panet_prototypes_and_cosine_on_a_hand_computed_case():
    # 2 channels, 2x2 features; mask at the same size so no interpolation blur
    f = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]])
    mask = torch.tensor([[1, 0], [255, 0]])
    torch.testing.assert_close(masked_average(f, (mask == 1).float()), torch.tensor([1.0, 0.0]), atol=1e-4, rtol=0)
    protos = episode_prototypes([[f]], [[mask]])
    torch.testing.assert_close(protos, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), atol=1e-4, rtol=0)  # bg, way 1
    logits = cosine_logits(f, protos, 20.0)
    assert logits.shape == (2, 2, 2)
    # 2-way: way 2's pixel in way 1's support is not background (PANet's getMask); void is
    two_way = torch.tensor([[1, 2], [255, 0]])
    f2 = torch.tensor([[[1.0, 5.0], [3.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    protos = episode_prototypes([[f2], [f2]], [[two_way], [two_way]])
    torch.testing.assert_close(protos[0], torch.tensor([(3.0 + 1.0) / 2, 0.0]), atol=1e-4, rtol=0)  # not 5, with 3
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


def test_pfenet_prior_is_the_min_max_normalised_best_cosine_over_support_foreground():
    query = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).view(1, 2, 1, 3)  # pixels (1,0), (0,1), (1,1)
    support = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)  # pixels (1,0), (0,1)
    only_first = prior_mask(query, support, torch.tensor([[[[1.0, 0.0]]]]))
    torch.testing.assert_close(only_first.flatten(), torch.tensor([1.0, 0.0, 2**-0.5]), atol=1e-5, rtol=0)
    both = prior_mask(query, support, torch.ones(1, 1, 1, 2))
    torch.testing.assert_close(both.flatten(), torch.tensor([1.0, 1.0, 0.0]), atol=1e-5, rtol=0)


def test_pfenet_prototype_and_pyramid_scales():
    feat = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    torch.testing.assert_close(weighted_gap(feat, mask).flatten(), torch.tensor([4.0 / 2.0005]))
    assert pyramid_sizes(60) == [60, 30, 15, 8]  # the paper's bins on its 473 px grid
    assert pyramid_sizes(17) == [17, 8, 4, 2]  # the embedded default's 129 px grid
    fem = Fem(mid_dim=12, dim=8).eval()
    main, aux = fem.logits(torch.randn(3, 12, 17, 17), torch.randn(3, 5, 17, 17), [torch.randn(3, 12, 17, 17)],
                           [torch.randn(3, 5, 17, 17)], [torch.ones(3, 1, 17, 17)])
    assert main.shape == (3, 2, 17, 17)
    assert [a.shape[-1] for a in aux] == [17, 8, 4, 2]


def test_pfenet_support_memo_budget_changes_which_supports_are_recomputed_not_their_bits():
    """PFENet memoises layer4 of each masked support; a memo over its budget ($WSFSS_RAM_MB) evicts,
    and an evicted support is recomputed later in a batch of another size. On the pinned CPU path
    a ResNet's layer4 gives an image the same bits in any batch, so the budget moves a fit's speed,
    not its numbers (on openmoji20i the 2 GB default holds ~3,600 of a fold's ~5,700 masked supports:
    a fit's first 16,000 steps there took 32.5 min against 18.5 with all held, to the same weights;
    README). Shown at the embedded default's shapes (ResNet-18, a 17x17 grid) with the memo off
    against one that holds all."""
    from backbones.trunks import resnet_os8
    from methods.pfenet import Pfenet

    torch.manual_seed(0)
    trunk = resnet_os8(18)
    g = torch.Generator().manual_seed(1)
    layer3 = [torch.randn(256, 17, 17, generator=g) for _ in range(6)]
    masks = [(torch.rand(1, 17, 17, generator=g) > 0.5).float() for _ in range(6)]
    batches = [[0, 1, 2], [1, 3], [0, 4, 5, 2], [3, 1]]  # supports recur across steps

    def layer4_of(limit):
        method, sizes = Pfenet(), []
        method.trunk, method._support_memo = trunk, FeatureMemo(limit=limit)
        hook = getattr(trunk, trunk.res_layers[-1]).register_forward_hook(lambda m, x, y: sizes.append(len(x[0])))
        try:
            out = [method._support_high([("image", n) for n in b], [layer3[n] for n in b], [masks[n] for n in b])
                   for b in batches]
        finally:
            hook.remove()
        return out, sizes

    held, held_sizes = layer4_of(1 << 30)
    recomputed, recomputed_sizes = layer4_of(0)
    assert held_sizes == [3, 1, 2] and recomputed_sizes == [3, 2, 4, 2]  # hits skip work; nothing kept: all of it
    assert all(torch.equal(a, b) for x, y in zip(held, recomputed) for a, b in zip(x, y))


def test_pfenet_trunk_loads_pspnet_and_refuses_torchvision_resnets(tmp_path):
    from backbones.trunks import PSPNET_STEM, _user_resnet, resnet_os8

    torch.manual_seed(0)
    reference = resnet_os8(18, stem_channels=128)  # PFENet's resnet_v2 stem: 64, 64, 128 wide
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    renamed = {v: k for k, v in PSPNET_STEM.items()}
    state = {}
    for key, value in reference.state_dict().items():
        head = ".".join(key.split(".")[:2])
        state["module." + (key.replace(head, renamed[head], 1) if head in renamed else key)] = value
    state["module.fc.weight"] = torch.zeros(1000, 512)
    path = tmp_path / "resnet18_v2.pth"
    torch.save({"state_dict": state}, path)
    loaded = _user_resnet(path, 18)
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        for a, b in zip(loaded(x), reference(x)):
            torch.testing.assert_close(a, b)
    assert [o.shape[-1] for o in loaded(x)] == [5, 5, 5]  # layer2..4 at output stride 8

    torchvision = pytest.importorskip("torchvision")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "tv.pth")
    with pytest.raises(BenchError, match="deep-stem"):
        _user_resnet(tmp_path / "tv.pth", 18)
    with pytest.raises(BenchError, match="does not fit ResNet-50"):
        _user_resnet(path, 50)
    with pytest.raises(BenchError, match="not found"):
        _user_resnet(tmp_path / "missing.pth", 18)
    (tmp_path / "cut.pth").write_bytes(path.read_bytes()[:50_000])
    with pytest.raises(BenchError, match="cut.pth is truncated or not a PyTorch weight file.*resnet50_v2.pth"):
        _user_resnet(tmp_path / "cut.pth", 18)


def test_panet_encoder_ends_before_conv5_3_relu():
    trunk = Vgg16Trunk(width=0.25, bn=True).eval()
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        pre = trunk(x, final_relu=False)
        torch.testing.assert_close(torch.relu(pre), trunk(x))
    assert (pre < 0).any()


def test_pfenet_fem_learns_to_follow_an_informative_prior():
    """The FEM, trained as in Pfenet.fit (main + auxiliary losses), learns to segment where the
    prior says foreground: a check that gradients reach every scale and the classifier."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    fem = Fem(mid_dim=4, dim=8)
    opt = torch.optim.AdamW(fem.parameters(), lr=1e-2)

    def batch(n):
        masks = torch.zeros(n, 17, 17, dtype=torch.long)
        for m in masks:
            y, x, h, w = torch.randint(0, 9, (4,)).tolist()
            m[y : y + h + 3, x : x + w + 3] = 1
        return torch.randn(n, 8, 17, 17), torch.randn(n, 8, 1, 1), masks[:, None].float(), masks

    for _ in range(150):
        query, proto, prior, y = batch(8)
        main, aux = fem(query, proto, prior)
        loss = F.cross_entropy(main, y) + torch.stack([F.cross_entropy(F.interpolate(a, size=(17, 17)), y) for a in aux]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    fem.eval()
    query, proto, prior, y = batch(16)
    with torch.no_grad():
        pred = fem(query, proto, prior)[0].argmax(1)
    iou = ((pred == 1) & (y == 1)).sum() / ((pred == 1) | (y == 1)).sum()
    assert iou > 0.9, float(iou)


def test_pretraining_a_trunk_leaves_the_callers_random_stream_as_loading_it_does(mini, tmp_path):
    """Same seed, same numbers: a method seeded before it asks for its trunk must draw the same
    head initialisation whether the trunk was pretrained in this call or read from the cache."""
    from backbones.trunks import pretrained_vgg16
    from bench.data.datasets import pool_dataset

    cfg = TrunkConfig(epochs=1)
    torch.manual_seed(0)
    pretrained_vgg16(pool_dataset(mini), cfg, tmp_path, log=lambda *_: None)
    trained = torch.rand(4)
    torch.manual_seed(0)
    pretrained_vgg16(pool_dataset(mini), cfg, tmp_path, log=lambda *_: None)
    assert torch.equal(trained, torch.rand(4))
