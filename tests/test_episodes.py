from dataclasses import replace

import numpy as np
import pytest

from bench.data.datasets import class_pixel_counts
from bench.harness.episodes import build_episode_input, load_or_sample_episodes, sample_test_episodes
from bench.harness.views import FitView
from bench.core.errors import BenchError
from bench.harness.presets import PRESETS, get_preset
from bench.core.types import GroundTruthMasks

QUICK = PRESETS["quick"]


@pytest.mark.parametrize("way,shot", [(1, 1), (1, 5), (2, 1), (2, 5)])
def test_test_episode_invariants(mini, cache_dir, way, shot):
    counts = class_pixel_counts(mini, "val", cache_dir)
    fold_classes = mini.fold_classes(2)
    eps = sample_test_episodes(counts, fold_classes, QUICK, mini.name, 2, way, shot, seed=7)
    assert len(eps) == QUICK.episodes
    for e in eps:
        assert len(set(e.class_ids)) == way and set(e.class_ids) <= set(fold_classes)
        ids = [i for s in e.support_ids for i in s] + list(e.query_ids)
        assert len(ids) == len(set(ids)) == way * (shot + 1)  # all distinct
        for c, supports, query in zip(e.class_ids, e.support_ids, e.query_ids):
            assert len(supports) == shot
            assert all(counts[i].get(c, 0) > 0 for i in supports + (query,))  # class present
        ep = build_episode_input(e, mini, GroundTruthMasks(mini), QUICK)
        for j, masks in enumerate(ep.support_masks, start=1):
            for m in masks:
                assert set(np.unique(m)) <= set(range(way + 1)) | {255}
                assert (m == j).any()
        assert not hasattr(ep, "query_masks")


def test_episode_file_is_deterministic_and_hashed(mini, tmp_path):
    a, sha_a, path_a = load_or_sample_episodes(tmp_path / "x", QUICK, mini, 0, 1, 1, 3)
    b, sha_b, path_b = load_or_sample_episodes(tmp_path / "y", QUICK, mini, 0, 1, 1, 3)
    assert a == b and sha_a == sha_b and path_a.read_bytes() == path_b.read_bytes()
    c, sha_c, _ = load_or_sample_episodes(tmp_path / "y", QUICK, mini, 0, 1, 1, 4)
    assert sha_c != sha_a


def test_pixel_filter_and_cycle(mini, cache_dir):
    counts = class_pixel_counts(mini, "val", cache_dir)
    strict = replace(QUICK, min_fg_pixels=1500, query_choice="cycle")
    eps = sample_test_episodes(counts, mini.fold_classes(0), strict, mini.name, 0, 1, 1, seed=0)
    for e in eps:
        for c, s, q in zip(e.class_ids, e.support_ids, e.query_ids):
            assert all(counts[i][c] >= 1500 for i in s + (q,))
    with pytest.raises(BenchError, match="eligible"):
        sample_test_episodes(counts, mini.fold_classes(0), replace(QUICK, min_fg_pixels=10**6), mini.name, 0, 1, 1, 0)


@pytest.mark.parametrize("policy", ["background", "drop"])
def test_training_never_shows_a_test_class(mini, cache_dir, policy):
    preset = replace(QUICK, novel_in_train=policy)
    for fold in range(4):
        src = FitView(mini, GroundTruthMasks(mini), preset, fold, cache_dir)
        novel = set(mini.fold_classes(fold))
        assert set(src.base_classes).isdisjoint(novel) and len(src.base_classes) == 15
        for image_id in src.ids[:60]:
            assert novel.isdisjoint(np.unique(src.mask(image_id)))
        if policy == "drop":
            gt_classes = {i: set(np.unique(mini.mask(i))) for i in src.ids}
            assert all(novel.isdisjoint(c) for c in gt_classes.values())
        rng = np.random.default_rng(0)
        for _ in range(10):
            ep, q_masks = src.sample_episode(rng, way=2, shot=1)
            assert novel.isdisjoint(ep.class_ids)
            for m in q_masks + [m for ms in ep.support_masks for m in ms]:
                assert set(np.unique(m)) <= {0, 1, 2, 255}
    drop = FitView(mini, GroundTruthMasks(mini), replace(QUICK, novel_in_train="drop"), 0, cache_dir)
    keep = FitView(mini, GroundTruthMasks(mini), QUICK, 0, cache_dir)
    assert len(drop.ids) < len(keep.ids)


def test_unknown_preset():
    with pytest.raises(BenchError, match="did you mean 'wacv22'"):
        get_preset("wacv2")
