"""What a method is given cannot reach ground truth it is not allowed: the leak hunter
(bench/harness/leaks.py) walks every attribute reachable from the fit view and the episode inputs,
in weak mode, for the VOC-layout reader (embedded mini set) and the COCO reader (a tiny COCO tree),
and finds nothing; the same hunter finds each kind of door when one is planted."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.core.types import EpisodeSpec, GroundTruthMasks
from bench.data.datasets import VocLayoutDataset, coco_dataset
from bench.harness.episodes import build_episode_input, load_or_sample_episodes
from bench.harness.leaks import hunt
from bench.harness.presets import get_preset
from bench.harness.views import FitView
from test_pseudo import TINY as PSEUDO_TINY


def _is_pool(obj) -> bool:
    """The disjoint pool's reader is given on purpose (its GT is the method's to use)."""
    return isinstance(obj, VocLayoutDataset) and obj.family == "pool"


def _weak_inputs(mini, cache_dir):
    from pseudo_labels.source import pseudo_masks_for

    preset = get_preset("quick")
    annotations = pseudo_masks_for(mini, cache_dir, PSEUDO_TINY, log=lambda *_: None)
    view = FitView(mini, annotations, preset, 0, cache_dir)
    specs, _, _ = load_or_sample_episodes(cache_dir, preset, mini, 0, 2, 1, 0)
    episodes = [build_episode_input(s, mini, annotations, preset) for s in specs[:2]]
    return view, episodes, specs[:2]


def test_weak_mode_view_and_episodes_reach_no_ground_truth_voc(mini, cache_dir):
    view, episodes, specs = _weak_inputs(mini, cache_dir)
    probes = [i for s in specs for i in s.query_ids + tuple(x for ids in s.support_ids for x in ids)] + view.ids[:6]
    findings = hunt({"view": view, "episodes": episodes}, mini.mask, probes, allowed=_is_pool)
    assert findings == []
    assert view.pool is not None and view.mask(view.ids[0]).shape == view.image(view.ids[0]).shape[:2]
    with pytest.raises(Exception, match="no mask for image"):
        view.mask(specs[0].query_ids[0])  # a test image: not in the training store


def test_full_mode_view_reaches_no_query_ground_truth(mini, cache_dir):
    preset = get_preset("quick")
    view = FitView(mini, GroundTruthMasks(mini), preset, 0, cache_dir)
    specs, _, _ = load_or_sample_episodes(cache_dir, preset, mini, 0, 1, 1, 0)
    queries = [s.query_ids[0] for s in specs[:5]]
    assert hunt({"view": view}, mini.mask, queries, allowed=_is_pool) == []


def make_coco_splits(root: Path) -> Path:
    """A COCO 2014 tree with train and val: 4 images each, categories 1 and 3 (classes 1 and 2)."""
    (root / "annotations").mkdir(parents=True)
    cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    for split, base in (("train", 100), ("val", 200)):
        (root / f"{split}2014").mkdir()
        images, anns = [], []
        for n in range(4):
            img_id, name = base + n, f"COCO_{split}2014_{base + n:012d}.jpg"
            Image.fromarray(np.full((24, 32, 3), 40 * n, np.uint8)).save(root / f"{split}2014" / name)
            images.append({"id": img_id, "file_name": name, "height": 24, "width": 32})
            x = 2 + 3 * n
            anns.append({"id": img_id * 10, "image_id": img_id, "category_id": (1, 3)[n % 2], "iscrowd": 0, "area": 60.0,
                         "bbox": [x, 3, 10, 6], "segmentation": [[x, 3, x + 10, 3, x + 10, 9, x, 9]]})
        (root / "annotations" / f"instances_{split}2014.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def fake_pseudo_masks(dataset, root: Path):
    """A finished pseudo-mask folder (PseudoMasks' layout) whose masks are a fixed box per image:
    what the hunter needs is weak mode's plumbing, not good masks."""
    from pseudo_labels.source import PseudoMasks

    (root / "SegmentationClass").mkdir(parents=True)
    for split in ("train", "val"):
        for image_id in dataset.ids(split):
            h, w = dataset.image(image_id).shape[:2]
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4: h // 2, w // 4: w // 2] = 1
            Image.fromarray(mask).save(root / "SegmentationClass" / f"{image_id}.png")
    (root / "manifest.json").write_text(json.dumps({"fingerprint": "fake", "n_images": 8}))
    (root / "COMPLETE").write_text("")
    return PseudoMasks(dataset, root)


def test_weak_mode_view_and_episodes_reach_no_ground_truth_coco(tmp_path):
    dataset = coco_dataset(make_coco_splits(tmp_path / "coco"))
    annotations = fake_pseudo_masks(dataset, tmp_path / "pseudo")
    preset = get_preset("quick")
    fold = next(f for f in range(4) if 2 not in dataset.fold_classes(f, preset.coco_split))  # class 2 (car) is base
    view = FitView(dataset, annotations, preset, fold, tmp_path / "cache")
    assert view.ids and view.test_ids() == dataset.ids("val")
    spec = EpisodeSpec(0, "coco20i", fold, 1, 1, (1,), (("val_200",),), ("val_202",))
    episode = build_episode_input(spec, dataset, annotations, preset)
    probes = dataset.ids("train") + dataset.ids("val")
    assert hunt({"view": view, "episode": episode}, dataset.mask, probes) == []


class _Door:
    def __init__(self, inner):
        self._inner = inner


def test_the_hunter_finds_each_kind_of_door(mini, cache_dir):
    """Doors planted in otherwise clean inputs: an attribute chain to the reader (yesterday's
    `TrainSource.dataset`), an annotation source, a closure over the reader's mask method, a bound
    method in a dict, a private slot, and the query's GT as episode labels in an array."""
    view, episodes, specs = _weak_inputs(mini, cache_dir)
    query = specs[0].query_ids[0]
    gt_labels = (mini.mask(query) == specs[0].class_ids[0]).astype(np.uint8)
    doors = {
        "reader": _Door(mini),
        "source": _Door(_Door(GroundTruthMasks(mini))),
        "closure": _Door(lambda i: mini.mask(i)),
        "bound": {"fn": mini.mask},
        "array": [gt_labels],
    }
    for name, door in doors.items():
        findings = hunt({"view": view, "planted": door}, mini.mask, [query], allowed=_is_pool)
        assert findings and all(f.startswith("planted") for f in findings), (name, findings)
    assert any("VocLayoutDataset" in f for f in hunt({"x": _Door(mini)}, mini.mask, [query]))


def test_the_view_has_no_attribute_naming_a_reader(mini, cache_dir):
    view, _, _ = _weak_inputs(mini, cache_dir)
    assert not hasattr(view, "__dict__")  # slots only: nothing can be hung on it later by accident
    assert {type(getattr(view, s)).__name__ for s in view.__slots__} <= {
        "str", "list", "tuple", "dict", "int", "NoneType", "PosixPath", "VocLayoutDataset", "ImageFiles", "MaskFiles",
        "ndarray"}


class Hunter:
    """A method that hunts from inside the runner: whatever `run` hands fit() and predict() is
    walked, with the withheld GT read through the oracle's explicit handle."""

    name = "hunter"
    findings: list[str] = []
    calls: list[str] = []

    def fit(self, view, config: dict) -> None:
        from oracle import gt_handle

        self._gt = gt_handle(view.dataset_name, view.cache_dir)
        Hunter.calls.append("fit")
        Hunter.findings += hunt({"fit": view}, self._gt.mask, view.ids[:4] + view.test_ids()[:4], allowed=_is_pool)

    def predict(self, episode) -> list[np.ndarray]:
        Hunter.calls.append("predict")
        ids = list(episode.query_ids) + [i for ids in episode.support_ids for i in ids]
        Hunter.findings += hunt({"predict": episode}, self._gt.mask, ids, allowed=_is_pool)
        return [np.zeros(q.shape[:2], np.uint8) for q in episode.query_images]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_the_runner_hands_a_weak_method_nothing_that_reaches_ground_truth(mini, cache_dir, tmp_path):
    from bench.harness.runner import RunRequest, run

    Hunter.findings.clear(), Hunter.calls.clear()
    req = RunRequest(method=f"{__name__}:Hunter", mode="weak", dataset="openmoji5i-mini", folds=(0,), preset="quick",
                     pseudo=PSEUDO_TINY, cache_dir=cache_dir, results_dir=tmp_path / "results")
    run(req, log=lambda *_: None)
    assert Hunter.calls.count("fit") == 1 and Hunter.calls.count("predict") == 40
    assert Hunter.findings == []
