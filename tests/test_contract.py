"""The method contract, run on every registered method with a tiny config: output shapes and
dtypes, 1/2-way and 1/5-shot, determinism, save/load, and weak mode never reading support GT."""
import pickle

import numpy as np
import pytest

from bench.harness.registry import METHODS, create_method
from test_ours import TINY as OURS_TINY
from test_pseudo import TINY as PSEUDO_TINY

TINY = {
    "background": {},
    "ours": OURS_TINY,
    "ours-noE": {k: v for k, v in OURS_TINY.items() if k != "episodes"},
    "panet": {"iterations": 3, "trunk_epochs": 1},
    "amp": {"steps": 3, "batch": 2, "trunk_epochs": 1},
    "pfenet": {"steps": 3, "batch": 2, "reduce_dim": 16, "backbone_steps": 3, "backbone_max_images": 12},
}
METHOD_NAMES = sorted(METHODS)


def test_every_registered_method_has_a_tiny_config():
    assert set(METHOD_NAMES) <= set(TINY), set(METHOD_NAMES) - set(TINY)


@pytest.fixture(scope="module")
def sources(mini, cache_dir):
    from bench.harness.annotations import annotation_source
    from bench.harness.views import FitView
    from bench.harness.presets import get_preset

    preset = get_preset("quick")
    annotations = annotation_source("full", mini, cache_dir)
    return preset, annotations, FitView(mini, annotations, preset, 0, cache_dir)


def _episodes(mini, cache_dir, preset, annotations, way, shot):
    from bench.harness.episodes import build_episode_input, load_or_sample_episodes

    specs, _, _ = load_or_sample_episodes(cache_dir, preset, mini, 0, way, shot, 0)
    return [build_episode_input(s, mini, annotations, preset) for s in specs[:3]]


def _fitted(name, train, seed=0):
    method = create_method(name, {**TINY[name], **({"seed": seed} if name != "background" else {})})
    method.fit(train, {})
    return method


@pytest.fixture(scope="module")
def fitted_methods(sources):
    return {name: _fitted(name, sources[2]) for name in METHOD_NAMES}


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("way,shot", [(1, 1), (2, 1), (1, 5)])
def test_predictions_are_label_maps_of_the_query_size(name, way, shot, fitted_methods, sources, mini, cache_dir):
    preset, annotations, _ = sources
    for episode in _episodes(mini, cache_dir, preset, annotations, way, shot):
        preds = fitted_methods[name].predict(episode)
        assert len(preds) == way
        for pred, image in zip(preds, episode.query_images):
            assert pred.dtype == np.uint8 and pred.shape == image.shape[:2]
            assert pred.max() <= way


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_same_seed_same_predictions_and_save_load_round_trip(name, fitted_methods, sources, mini, cache_dir):
    preset, annotations, train = sources
    episodes = _episodes(mini, cache_dir, preset, annotations, 2, 1)
    first = fitted_methods[name]
    want = [p for e in episodes for p in first.predict(e)]
    again = _fitted(name, train)
    assert all(np.array_equal(a, b) for a, b in zip(want, [p for e in episodes for p in again.predict(e)]))

    restored = create_method(name, TINY[name])
    restored.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    if hasattr(restored, "attach"):
        restored.attach(train)
    assert all(np.array_equal(a, b) for a, b in zip(want, [p for e in episodes for p in restored.predict(e)]))


@pytest.mark.parametrize("name", [n for n in METHOD_NAMES if n != "background"])
def test_weak_mode_reads_ground_truth_of_test_episodes_only(name, mini, cache_dir, tmp_path, monkeypatch):
    """The harness reads GT in weak mode only to score queries and to count supports whose object
    vanished at the evaluation size, never a training image's; what the method itself is given
    reaches no GT at all (tests/test_views.py)."""
    from bench.data.datasets import VocLayoutDataset
    from bench.harness.episodes import load_or_sample_episodes
    from bench.harness.views import FitView
    from bench.harness.presets import get_preset
    from bench.core.records import load_records
    from bench.harness.runner import RunRequest, run
    from pseudo_labels.source import pseudo_masks_for

    preset = get_preset("quick")
    episodes, _, _ = load_or_sample_episodes(cache_dir, preset, mini, 0, 1, 1, 0)
    FitView(mini, pseudo_masks_for(mini, cache_dir, PSEUDO_TINY), preset, 0, cache_dir)  # GT-free from here on
    gt_reads = []
    gt_mask = VocLayoutDataset.mask
    # the benchmark's reads only: the pool's GT (pretraining) is the method's to use
    monkeypatch.setattr(VocLayoutDataset, "mask", lambda self, i: (self.family != "pool" and gt_reads.append(i), gt_mask(self, i))[1])
    req = RunRequest(method=name, mode="weak", dataset="openmoji5i-mini", folds=(0,), preset="quick", config=TINY[name],
                     pseudo=PSEUDO_TINY, cache_dir=cache_dir, results_dir=tmp_path / "results")
    run(req, log=lambda *_: None)
    queries = {q for e in episodes for q in e.query_ids}
    supports = {s for e in episodes for way in e.support_ids for s in way}
    assert queries <= set(gt_reads) <= queries | supports
    assert not set(gt_reads) & set(mini.ids("train"))
    (record,) = [r for _, r in load_records(tmp_path / "results")]
    assert record.mode == "weak" and record.method == name
