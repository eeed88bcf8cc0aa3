"""The method contract, one check at a time (`bench check-method NAME`): any method, built-in or
from outside this repository, is fitted on the embedded mini set (fold 0, `quick`, full mode) and
must
- load and fit (`fit(view, config)`), with a label for records and tables;
- predict one HxW uint8 label map per query, at the query's size, labels 0..N, for 1-way 1-shot,
  2-way 1-shot and 1-way 5-shot episodes;
- predict the same after a second fit with the same settings (determinism);
- predict the same after `state_dict()` -> pickle -> `load_state_dict()` (and `attach(view)` if it
  has one) on a fresh instance;
- have been given nothing from which a query's ground truth is reachable (the leak hunter on the
  fit view and on every episode input it received);
and its seconds per episode are reported."""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.core.types import GroundTruthMasks
from bench.data.datasets import get_dataset
from bench.harness.episodes import build_episode_input, load_or_sample_episodes
from bench.harness.leaks import hunt
from bench.harness.presets import get_preset
from bench.harness.registry import create_method, method_label, method_source
from bench.harness.views import FitView

SETTINGS = ((1, 1), (2, 1), (1, 5))  # (way, shot) of the checked episodes
EPISODES = 3  # per setting


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def check_method(name: str, config: dict | None, cache_dir: Path, dataset_name: str = "openmoji5i-mini",
                 log=print) -> list[Check]:
    """Every check of the contract, in order; a check that cannot run (an earlier one failed) is
    reported as failed with the reason."""
    config = dict(config or {})
    checks = []
    try:
        label = method_label(name)
        create_method(name, config)
    except BenchError as exc:
        return [Check("loads", False, str(exc))]
    checks.append(Check("loads", True, f"{method_source(name)}, label '{label}'"))
    dataset = get_dataset(dataset_name, cache_dir)
    preset = get_preset("quick")
    annotations = GroundTruthMasks(dataset)
    view = FitView(dataset, annotations, preset, 0, cache_dir)
    episodes = {s: _episodes(dataset, annotations, preset, cache_dir, *s) for s in SETTINGS}
    first, fit_s, error = _fitted(name, config, view)
    if error:
        return checks + [Check("fits", False, error)]
    checks.append(Check("fits", True, f"fold 0 of {dataset_name} in {fit_s:.1f} s"))
    preds, per_episode, error = _predictions(first, episodes)
    checks.append(Check("predictions", not error, error or "label maps of each query's size, 0..N, for "
                        + ", ".join(f"{w}-way {s}-shot" for w, s in SETTINGS)))
    checks.append(_n_way(preds) if not error else Check("N-way", False, "no predictions to check"))
    again, _, error2 = _fitted(name, config, view)
    same = not error2 and _same(preds, _predictions(again, episodes)[0])
    checks.append(Check("determinism", same, error2 or ("a second fit predicts the same" if same else
                                                        "a second fit with the same settings predicts differently")))
    checks.append(_round_trip(name, config, first, view, episodes, preds))
    findings = _reachable_query_gt(view, episodes, dataset)
    checks.append(Check("no ground truth reachable", not findings,
                        "the view and episodes it was given reach no query's ground truth" if not findings
                        else "; ".join(findings[:3])))
    checks.append(Check("speed", True, f"{per_episode * 1000:.1f} ms per episode (mean over {len(SETTINGS) * EPISODES})"))
    return checks


def _reachable_query_gt(view, episodes: dict, dataset) -> list[str]:
    """Leak-hunter findings: the view against every query's GT, each episode against its own
    queries' (in full mode a support's GT is given, and an image may be a support in one episode
    and the query of another)."""
    pool = lambda obj: getattr(obj, "family", None) == "pool"  # the disjoint pool's GT is the method's
    queries = [q for eps in episodes.values() for e in eps for q in e.query_ids]
    findings = hunt({"view": view}, dataset.mask, queries, allowed=pool)
    for (way, shot), eps in episodes.items():
        for k, e in enumerate(eps):
            findings += hunt({f"episode[{way}w{shot}s #{k}]": e}, dataset.mask, e.query_ids, allowed=pool)
    return findings


def _episodes(dataset, annotations, preset, cache_dir, way: int, shot: int):
    specs, _, _ = load_or_sample_episodes(cache_dir, preset, dataset, 0, way, shot, 0)
    return [build_episode_input(s, dataset, annotations, preset) for s in specs[:EPISODES]]


def _fitted(name: str, config: dict, view):
    method = create_method(name, config)
    t0 = time.perf_counter()
    try:
        method.fit(view, dict(config))
    except Exception as exc:  # the method's own error: reported, not raised
        return None, 0.0, f"{type(exc).__name__}: {exc}"
    return method, time.perf_counter() - t0, ""


def _predictions(method, episodes: dict) -> tuple[dict, float, str]:
    out, t0, n = {}, time.perf_counter(), 0
    for (way, shot), eps in episodes.items():
        for k, episode in enumerate(eps):
            try:
                preds = method.predict(episode)
            except Exception as exc:
                return out, 0.0, f"{way}-way {shot}-shot episode {k}: {type(exc).__name__}: {exc}"
            n += 1
            problem = _bad_prediction(preds, episode)
            if problem:
                return out, 0.0, f"{way}-way {shot}-shot episode {k}: {problem}"
            out[(way, shot, k)] = [np.asarray(p) for p in preds]
    return out, (time.perf_counter() - t0) / max(n, 1), ""


def _bad_prediction(preds, episode) -> str:
    if not isinstance(preds, (list, tuple)) or len(preds) != episode.way:
        return f"{len(preds) if hasattr(preds, '__len__') else preds!r} predictions for {episode.way} queries"
    for j, (pred, query) in enumerate(zip(preds, episode.query_images)):
        pred = np.asarray(pred)
        if pred.dtype != np.uint8:
            return f"query {j}: dtype {pred.dtype}, expected uint8"
        if pred.shape != query.shape[:2]:
            return f"query {j}: shape {pred.shape} for a {query.shape[:2]} query"
        if pred.max() > episode.way:
            return f"query {j}: label {pred.max()} in a {episode.way}-way episode"
    return ""


def _n_way(preds: dict) -> Check:
    """2-way episodes must use both ways: a method that labels way 1 but never way 2 treats an
    N-way episode as 1-way. One that predicts no foreground at all (a baseline) passes, said so."""
    two_way = [p for (way, _, _), ps in preds.items() if way == 2 for p in ps]
    used = [j for j in (1, 2) if any((p == j).any() for p in two_way)]
    if not used:
        return Check("N-way", True, "2-way episodes: no foreground predicted for either way")
    return Check("N-way", used == [1, 2], "2-way episodes label both ways" if used == [1, 2] else
                 f"2-way episodes only ever get label {used[0]}: the other way is never predicted")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(len(a[k]) == len(b[k]) and all(np.array_equal(x, y) for x, y in zip(a[k], b[k]))
                                        for k in a)


def _round_trip(name: str, config: dict, method, view, episodes: dict, preds: dict) -> Check:
    try:
        restored = create_method(name, config)
        restored.load_state_dict(pickle.loads(pickle.dumps(method.state_dict())))
        if hasattr(restored, "attach"):
            restored.attach(view)
    except Exception as exc:
        return Check("state_dict round trip", False, f"{type(exc).__name__}: {exc}")
    same = _same(preds, _predictions(restored, episodes)[0])
    return Check("state_dict round trip", same, "a restored copy predicts the same" if same else
                 "a copy restored from state_dict() predicts differently")
