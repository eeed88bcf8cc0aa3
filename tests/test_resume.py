"""A fit killed between two validation points resumes at the first of them from its snapshot and
ends bit for bit as the fit that ran through: the same weights, curve and numbers. Shown on PFENet
(the only fit long enough to need it: an hour or more on 2 cores) through the runner, the path
`bench run` and `bench sweep` take; a snapshot whose random state is not the fit's gives another
fit, so the comparison would see a resume that restores less than the loop carries."""
import json
import pickle

import numpy as np
import pytest
import torch

from bench.core import curves
from bench.harness.runner import RunRequest, checkpoint_path, fit_info_path, run, snapshot_path
from bench.harness.annotations import annotation_source

TINY = {"backbone_max_images": 12, "backbone_steps": 3, "batch": 2, "reduce_dim": 16, "steps": 8}
STOP_AFTER = 6  # validation after every step of 8: the snapshot of step 5 is the last before it


def _request(cache_dir, tmp_path, name) -> RunRequest:
    return RunRequest(method="pfenet", mode="full", dataset="openmoji5i-mini", folds=(0,), preset="quick", seeds=(0,),
                      config=dict(TINY), cache_dir=cache_dir, results_dir=tmp_path / name)


def _finished(req, mini, cache_dir) -> tuple[dict, dict, dict]:
    """The fit's weights, its sidecar and the run's record; the checkpoint and sidecar are removed so
    that the next run fits again."""
    path = checkpoint_path(req, 0, annotation_source("full", mini, cache_dir))
    state, info = pickle.loads(path.read_bytes()), json.loads(fit_info_path(path).read_text())
    path.unlink()
    fit_info_path(path).unlink()
    record = json.loads(next(req.results_dir.rglob("*.json")).read_text())
    assert record["timings"]["fit_resumed_at"] == info["timing"]["resumed_at"]  # the record says how the fit ran
    assert record["timings"]["fit_loop_s"] == round(info["timing"]["loop_s"], 3)
    return state, info, record


def _killed(req, monkeypatch) -> None:
    step = curves.Tracker.step

    def dies(self, i, loss):
        if i == STOP_AFTER:
            raise KeyboardInterrupt
        step(self, i, loss)

    with monkeypatch.context() as m:
        m.setattr(curves.Tracker, "step", dies)
        with pytest.raises(KeyboardInterrupt):
            run(req)


def _same_weights(a: dict, b: dict) -> bool:
    a, b = a["fem"], b["fem"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_killed_fit_resumes_at_its_last_validation_point_and_ends_as_the_fit_that_ran_through(mini, cache_dir, tmp_path,
                                                                                                monkeypatch):
    monkeypatch.setattr(curves, "VALIDATION_EPISODES", 5)  # validation runs as in a real fit, on fewer episodes
    straight = _request(cache_dir, tmp_path, "straight")
    run(straight)
    snapshot = snapshot_path(checkpoint_path(straight, 0, annotation_source("full", mini, cache_dir)))
    assert not snapshot.exists()  # a finished fit leaves none behind
    want, want_info, want_record = _finished(straight, mini, cache_dir)
    assert want_info["timing"]["resumed_at"] == []

    resumed = _request(cache_dir, tmp_path, "resumed")
    _killed(resumed, monkeypatch)
    kept = snapshot.read_bytes()
    assert pickle.loads(kept)["step"] == 5
    run(resumed)
    got, got_info, got_record = _finished(resumed, mini, cache_dir)
    assert _same_weights(want, got)
    assert got_info["curve"] == want_info["curve"] and got_record["miou"] == want_record["miou"]
    assert got_info["timing"]["resumed_at"] == [5] and not snapshot.exists()
    # the loop time counts the killed stretch too, which this process's fit_s does not
    assert got_record["timings"]["fit_loop_s"] >= pickle.loads(kept)["seconds"] > 0

    state = pickle.loads(kept)
    state["loop"]["rng"] = np.random.default_rng(0).bit_generator.state  # the episodes a resume that forgot the rng draws
    snapshot.write_bytes(pickle.dumps(state))
    careless = _request(cache_dir, tmp_path, "careless")
    run(careless)
    other, _, _ = _finished(careless, mini, cache_dir)
    assert not _same_weights(want, other)


def test_a_snapshot_of_another_fit_is_not_resumed(tmp_path):
    """Another length (or CPU pins): the fit starts over, and says so."""
    snapshot = tmp_path / "fit.partial.pkl"
    rng = np.random.default_rng(5)
    first = curves.Tracker(8, object(), lambda predict: [[1, 2]], snapshot)
    assert first.resume(rng=rng) == 0
    first._write_snapshot(4)
    assert curves.Tracker(8, object(), lambda predict: [[1, 2]], snapshot).resume(rng=np.random.default_rng(6)) == 4
    assert curves.Tracker(16, object(), lambda predict: [[1, 2]], snapshot).resume(rng=rng) == 0
    state = pickle.loads(snapshot.read_bytes())
    state["pinning"] = {**state["pinning"], "threads": 99}
    snapshot.write_bytes(pickle.dumps(state))
    assert curves.Tracker(8, object(), lambda predict: [[1, 2]], snapshot).resume(rng=rng) == 0
    snapshot.write_bytes(b"not a pickle")
    assert curves.Tracker(8, object(), lambda predict: [[1, 2]], snapshot).resume(rng=rng) == 0
