import math

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from methods.ours import Ours, OursNoE, knn_votes, prototypes, prototypical_loss

# A backbone pretrained for two steps: plumbing, not quality.
TINY = {"episodes": 6, "backbone_steps": 3, "backbone_max_images": 12, "support_pixels": 300, "query_pixels": 300}


def test_prototypes_on_a_hand_computed_case():
    emb = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    protos, present = prototypes(emb, torch.tensor([1, 1, 0]), 3)
    torch.testing.assert_close(protos[:2], torch.tensor([[0.0, 2.0], [2.0, 0.0]]))
    assert present.tolist() == [True, True, False]


def test_losses_on_a_hand_computed_case():
    protos = torch.tensor([[0.0, 2.0], [2.0, 0.0], [0.0, 0.0]])
    present = torch.tensor([True, True, False])
    q = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([1, 0])
    # pixel 1: d = (8, 0), pixel 2: d = (2, 2); the absent class is never a candidate
    want = (math.log(1 + math.exp(-8)) + math.log(2)) / 2
    assert prototypical_loss(q, labels, protos, present, "ce").item() == pytest.approx(want, rel=1e-6)
    assert prototypical_loss(q, labels, protos, present, "eq5").item() == pytest.approx(-(1 + math.exp(-2)) / 2, rel=1e-6)
    with pytest.raises(BenchError, match="unknown loss"):
        prototypical_loss(q, labels, protos, present, "hinge")



def test_a_query_class_without_a_prototype_leaves_the_loss_instead_of_making_it_infinite():
    """Weak mode: the query's pseudo mask holds class 2, the support's holds none of it. Kept, the
    pixel's term is -log 0 (the pre-fix loss: infinite on ~8 % of the embedded weak episodes);
    dropped, the loss is the hand-computed value of the matched pixels alone, with a finite
    gradient equal to theirs."""
    protos = torch.tensor([[0.0, 2.0], [2.0, 0.0], [0.0, 0.0]])
    present = torch.tensor([True, True, False])
    q = torch.tensor([[2.0, 0.0], [1.0, 1.0], [5.0, 5.0]], requires_grad=True)
    labels = torch.tensor([1, 0, 2])
    assert math.isinf(prototypical_loss(q, labels, protos, present, "ce", "keep").item())  # the leak it guards against
    loss = prototypical_loss(q, labels, protos, present, "ce")
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-8)) + math.log(2)) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(q.grad).all() and q.grad[2].abs().sum().item() == 0.0
    # every pixel matched: both settings give the same number (full-mode fits do not change)
    both = [prototypical_loss(q[:2], labels[:2], protos, present, "ce", u).item() for u in ("drop", "keep")]
    assert both[0] == both[1]
    # no pixel matched: a zero loss that still backpropagates (the step changes nothing)
    none = prototypical_loss(q[2:], labels[2:], protos, present, "ce")
    assert none.item() == 0.0 and none.requires_grad
    with pytest.raises(BenchError, match="unknown unmatched"):
        prototypical_loss(q, labels, protos, present, "ce", "ignore")

def test_chunked_knn_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    query, support = torch.randn(500, 16, generator=g), torch.randn(300, 16, generator=g)
    labels = torch.randint(0, 3, (300,), generator=g)
    idx = torch.cdist(query, support).topk(5, largest=False).indices
    want = torch.nn.functional.one_hot(labels[idx], 3).float().mean(1)
    for chunk in (7, 128, 4096):
        got = knn_votes(query, support, labels, 3, 5, chunk)
        torch.testing.assert_close(got, want)
    assert knn_votes(query[:4], support[:2], labels[:2], 3, 5).sum(1).tolist() == [1.0] * 4  # k > support pixels


def test_class_balanced_sampling_takes_a_fixed_number_per_label():
    from methods.ours import class_balanced

    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 5)
    keep = class_balanced(np.random.default_rng(0), labels, 4)
    assert keep.tolist() == sorted(keep.tolist()) and len(set(keep.tolist())) == len(keep)
    assert torch.bincount(labels[keep], minlength=3).tolist() == [4, 3, 4]  # label 1 has only 3: all of them
    again = class_balanced(np.random.default_rng(0), labels, 4)
    assert torch.equal(keep, again)
    assert class_balanced(np.random.default_rng(0), labels, 100).tolist() == list(range(18))


def test_balanced_support_changes_the_vote_and_prototype_classifier_on_a_hand_case():
    """Support: 8 background pixels in [0, 0.35], 2 foreground pixels at 0.9 and 1.0; query 0.6.
    All pixels, k=5: 2 fg and 3 bg neighbours (bg wins). Two pixels per label (here bg 0.0 and
    0.05), k=3: 2 fg, 1 bg (fg wins). Nearest prototype: means 0.175 and 0.95, fg is nearer."""
    support = torch.tensor([[0.0], [0.05], [0.1], [0.15], [0.2], [0.25], [0.3], [0.35], [0.9], [1.0]])
    labels = torch.tensor([0] * 8 + [1] * 2)
    query = torch.tensor([[0.6]])
    torch.testing.assert_close(knn_votes(query, support, labels, 2, 5), torch.tensor([[0.6, 0.4]]))
    balanced = torch.tensor([0, 1, 8, 9])
    torch.testing.assert_close(knn_votes(query, support[balanced], labels[balanced], 2, 3), torch.tensor([[1 / 3, 2 / 3]]))
    scores = Ours(classifier="prototype")._scores(query, support, labels, 2)
    d = torch.tensor([(0.6 - 0.175) ** 2, (0.6 - 0.95) ** 2])
    torch.testing.assert_close(scores, (-d).softmax(0)[None])


def test_bad_settings_are_clear_errors():
    with pytest.raises(BenchError, match="unknown ours setting 'episodez'"):
        Ours(episodez=3)
    with pytest.raises(BenchError, match="loss=mse is not one of ce, eq5"):
        Ours(loss="mse")


@pytest.fixture(scope="module")
def fitted(mini, cache_dir):
    from bench.harness.annotations import annotation_source
    from bench.harness.views import FitView
    from bench.harness.presets import get_preset

    train = FitView(mini, annotation_source("full", mini, cache_dir), get_preset("quick"), 0, cache_dir)
    method = Ours(**TINY, train_way=2)
    method.fit(train, {})
    return method, train


def _episode(mini, cache_dir, way, shot):
    from bench.harness.annotations import annotation_source
    from bench.harness.episodes import build_episode_input, load_or_sample_episodes
    from bench.harness.presets import get_preset

    preset = get_preset("quick")
    specs, _, _ = load_or_sample_episodes(cache_dir, preset, mini, 0, way, shot, 0)
    return build_episode_input(specs[0], mini, annotation_source("full", mini, cache_dir), preset)


@pytest.mark.parametrize("way,shot", [(1, 1), (2, 1), (1, 5)])
def test_predictions_are_n_way_label_maps(fitted, mini, cache_dir, way, shot):
    method, _ = fitted
    episode = _episode(mini, cache_dir, way, shot)
    preds = method.predict(episode)
    assert len(preds) == way
    for pred, image in zip(preds, episode.query_images):
        assert pred.shape == image.shape[:2] and pred.dtype == np.uint8 and pred.max() <= way
    assert len(method.history) == TINY["episodes"] and all(np.isfinite(method.history))


def test_deterministic_and_resumes_from_state_dict(fitted, mini, cache_dir):
    method, train = fitted
    episode = _episode(mini, cache_dir, 2, 1)
    again = Ours(**TINY, train_way=2)
    again.fit(train, {})
    for a, b in zip(method.predict(episode), again.predict(episode)):
        np.testing.assert_array_equal(a, b)
    loaded = Ours(**TINY, train_way=2)
    loaded.load_state_dict(method.state_dict())
    loaded.attach(train)
    for a, b in zip(method.predict(episode), loaded.predict(episode)):
        np.testing.assert_array_equal(a, b)
    stale = Ours(**TINY, train_way=2)
    stale.load_state_dict({**method.state_dict(), "backbone": "deeplabv3plus-older-weights"})
    with pytest.raises(BenchError, match="meta-trained on the features of backbone deeplabv3plus-older-weights"):
        stale.attach(train)


def test_class_pixels_and_prototype_classifier_predict_deterministically(fitted, mini, cache_dir):
    method, train = fitted
    episode = _episode(mini, cache_dir, 2, 1)
    for settings in ({"class_pixels": 20}, {"classifier": "prototype"}):
        variant = Ours(**TINY, train_way=2, **settings)
        variant.load_state_dict(method.state_dict())
        variant.attach(train)
        first, second = variant.predict(episode), variant.predict(episode)
        assert all(np.array_equal(a, b) for a, b in zip(first, second))
        assert [p.shape for p in first] == [q.shape[:2] for q in episode.query_images]
    trained = Ours(**{**TINY, "class_pixels": 20})
    trained.fit(train, {})
    assert len(trained.history) == TINY["episodes"] and all(np.isfinite(trained.history))


def test_knn_at_image_resolution_and_no_encoder(fitted, mini, cache_dir):
    method, train = fitted
    episode = _episode(mini, cache_dir, 1, 1)
    full = Ours(**TINY, knn_at="image")
    full.load_state_dict(method.state_dict())
    full.attach(train)
    (pred,) = full.predict(episode)
    assert pred.shape == episode.query_images[0].shape[:2]
    no_e = OursNoE(**TINY)
    no_e.fit(train, {})
    assert no_e.enc is None and no_e.state_dict()["encoder"] is None
    assert no_e.predict(episode)[0].shape == pred.shape


def test_bench_run_ours_records_its_config_and_reevaluates_from_the_checkpoint(mini, cache_dir, tmp_path, monkeypatch):
    from bench.cli import main
    from bench.core.records import load_records

    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    args = ["--cache-dir", str(cache_dir), "run", "--method", "ours", "--mode", "full", "--dataset", "openmoji5i-mini",
            "--preset", "quick", "--fold", "0", "--results-dir", str(tmp_path), *sets]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the caller's count: the pin (bench/core/pinning.py) overrides it
        assert main(args) == 0
        (first,) = [r for _, r in load_records(tmp_path)]
        assert first.method_config["loss"] == "ce" and first.method_config["k"] == 5 and 0 <= first.miou <= 100
        monkeypatch.setattr(Ours, "fit", lambda *a: pytest.fail("refitted although a checkpoint exists"))
        assert main(args + ["--force"]) == 0  # the fold's checkpoint is loaded and the backbone re-attached
        (second,) = [r for _, r in load_records(tmp_path)]
        assert second.miou == first.miou and second.episode_sha256 == first.episode_sha256
        monkeypatch.setenv("WSFSS_PIN", "0")  # unpinned: evaluated with the caller's count
        assert main(args + ["--force"]) == 0
        (third,) = [r for _, r in load_records(tmp_path)]
        monkeypatch.delenv("WSFSS_PIN")
        assert main(args + ["--set", "k=3", "classifier=prototype"]) == 0  # test-time settings: the same fit
        (other,) = [r for p, r in load_records(tmp_path) if r.config.get("k") == 3]
        assert other.method_config["classifier"] == "prototype" and other.torch_threads["fit"] == 2
        assert torch.get_num_threads() == 1  # the caller's count is given back
    finally:
        torch.set_num_threads(threads)
    # the fit's thread count and code paths travel with its checkpoint (CPU training is reproducible only with them)
    assert first.torch_threads == second.torch_threads == {"fit": 2, "eval": 2}
    assert third.torch_threads == {"fit": 2, "eval": 1} and third.pinning["eval"]["pinned"] is False
    assert first.pinning["fit"]["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE" and first.pinning["fit"]["threads"] == 2
    # every fit has a curve and a verdict by the one rule (bench/core/curves.py)
    curve = first.fit
    assert [s for s, _ in curve["validation"]] == [int(round(TINY["episodes"] * (i + 1) / min(8, TINY["episodes"])))
                                                   for i in range(min(8, TINY["episodes"]))]
    assert curve["loss"][-1][0] == TINY["episodes"] and curve["verdict"]["converged"] in (True, False)
