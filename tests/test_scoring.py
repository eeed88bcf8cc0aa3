"""The record's numbers of a 2-way run agree, under each scoring convention, with an independent
re-scoring of its saved predictions: PANet's Metric (util/metric.py) re-implemented here with
coordinate sets and NaN-skipped classes, as that file does, and the score-every-way rule."""
from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from bench.core.records import load_records
from bench.harness.episodes import load_or_sample_episodes
from bench.harness.presets import get_preset
from bench.report.tables import rescored


class Stripes:
    """Vertical bands labelled 0, 1, ..., N in turn: every query gets pixels of every way."""

    name = "stripes"

    def fit(self, view, config):
        pass

    def predict(self, episode):
        return [((np.arange(q.shape[1]) // 7) % (episode.way + 1)).astype(np.uint8)[None, :].repeat(q.shape[0], 0)
                for q in episode.query_images]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def panet_metric(items, fold_classes):
    """items: (pred, gt, class_ids) per query. PANet's record(): labels [0] + class ids; a label is
    counted on a query only if the GT holds it; prediction ignored where GT is 255."""
    tp, fp, fn = (defaultdict(float) for _ in range(3))
    for pred, gt, class_ids in items:
        for j, label in enumerate([0] + list(class_ids)):
            pred_j = set(zip(*np.where((pred == j) & (gt != 255))))
            gt_j = set(zip(*np.where(gt == j)))
            if gt_j:
                tp[label] += len(pred_j & gt_j)
                fp[label] += len(pred_j - gt_j)
                fn[label] += len(gt_j - pred_j)
    ious = [tp[c] / (tp[c] + fp[c] + fn[c]) for c in fold_classes if tp[c] + fp[c] + fn[c]]
    fg = [sum(d[c] for c in fold_classes) for d in (tp, fp, fn)]
    binary = [tp[0] / (tp[0] + fp[0] + fn[0]), fg[0] / sum(fg)]
    return 100 * np.mean(ious), 100 * np.mean(binary)


def score_every_way(items, fold_classes):
    inter, union = defaultdict(int), defaultdict(int)
    fb = np.zeros((2, 2))
    for pred, gt, class_ids in items:
        valid = gt != 255
        for j, c in enumerate(class_ids, 1):
            inter[c] += int(((pred == j) & (gt == j) & valid).sum())
            union[c] += int((((pred == j) | (gt == j)) & valid).sum())
        for k, (p, g) in enumerate(((pred == 0, gt == 0), (pred > 0, (gt > 0) & (gt != 255)))):
            fb[k] += ((p & g & valid).sum(), ((p | g) & valid).sum())
    return 100 * np.mean([inter[c] / union[c] for c in fold_classes if union[c]]), 100 * np.mean(fb[:, 0] / fb[:, 1])


def episode_labels_by_hand(mask, class_ids):
    out = np.zeros_like(mask)
    for j, c in enumerate(class_ids, 1):
        out[mask == c] = j
    out[mask == 255] = 255
    return out


@pytest.fixture(scope="module")
def saved_run(mini, cache_dir, tmp_path_factory):
    from bench.harness.runner import RunRequest, run

    root = tmp_path_factory.mktemp("scoring")
    run(RunRequest(method=f"{__name__}:Stripes", mode="full", dataset="openmoji5i-mini", folds=(0,), way=2,
                   preset="quick", cache_dir=cache_dir, results_dir=root / "results", save_predictions=root / "preds"),
        log=lambda *_: None)
    [(path, record)] = load_records(root / "results")
    specs, _, _ = load_or_sample_episodes(cache_dir, get_preset("quick"), mini, 0, 2, 1, 0)
    items = []
    with open(root / "preds" / "openmoji5i-mini_fold0_seed0" / "index.csv", newline="") as f:
        for row in csv.DictReader(f):
            spec = specs[int(row["episode"])]
            class_ids = [int(c) for c in row["class_ids"].split()]
            assert tuple(class_ids) == spec.class_ids
            gt = episode_labels_by_hand(np.array(Image.open(mini.mask_path(row["query_id"]))), class_ids)
            pred = np.array(Image.open(root / "preds" / "openmoji5i-mini_fold0_seed0" / row["file"]))
            items.append((int(row["episode"]), pred, gt, class_ids))
    assert len(items) == 80  # 40 episodes x 2 queries
    return path, record, items


def test_the_record_scores_every_way_as_an_independent_count(saved_run):
    path, record, items = saved_run
    miou, fbiou = score_every_way([i[1:] for i in items], record.class_ids)
    assert record.preset == "quick@v1" and record.miou == pytest.approx(miou) and record.fbiou == pytest.approx(fbiou)


def test_panets_rule_re_tabulated_from_the_record_equals_panets_metric(saved_run):
    path, record, items = saved_run
    miou, fbiou = panet_metric([i[1:] for i in items], record.class_ids)
    [(_, panet)] = rescored([(path, record)], {"absent_ways": "skip", "fbiou": "per_class"})
    assert panet.miou == pytest.approx(miou) and panet.fbiou == pytest.approx(fbiou)
    assert abs(panet.miou - record.miou) > 1  # the rules really differ on this run


def test_per_episode_iou_equals_an_independent_average(saved_run):
    path, record, items = saved_run
    by_episode = defaultdict(list)
    for episode, pred, gt, class_ids in items:
        by_episode[episode].append((pred, gt, class_ids))
    per_class = defaultdict(list)
    for queries in by_episode.values():
        for j, c in enumerate(queries[0][2], 1):
            i = sum(int(((p == j) & (g == j) & (g != 255)).sum()) for p, g, _ in queries)
            u = sum(int((((p == j) | (g == j)) & (g != 255)).sum()) for p, g, _ in queries)
            if u:
                per_class[c].append(i / u)
    want = 100 * np.mean([np.mean(per_class[c]) for c in record.class_ids if per_class[c]])
    [(_, per_episode)] = rescored([(path, record)], {"iou": "per-episode"})
    assert per_episode.miou == pytest.approx(want)
