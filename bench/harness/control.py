"""`bench control`: how much a method relies on its support at all (AMP issue 8: a bird support
yields a mask on a car). Each method runs on the same episodes three times:
- real: the episodes as the protocol gives them;
- wrong class: every way's supports replaced by images of another fold class (the next one in the
  fold's order), with that class's masks from the mode's annotation source marked as the way;
- empty masks: the real support images with all-background masks.
Scored against the real query GT under the preset's conventions. A method that reads its supports
loses most of its score in both controls; what survives is what it segments without them (salient
objects, the base classes it was trained on). One record per fold ("record_type": "support_control"),
beside the run records; `bench report` tables them."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.core.files import atomic_write_text
from bench.core.records import record_files, record_relpath, writable_results
from bench.core.types import EpisodeInput, episode_labels
from bench.data.datasets import get_dataset
from bench.data.sizes import resized_image, resized_mask
from bench.harness.annotations import annotation_sources
from bench.harness.episodes import build_episode_input, eligible_images, load_or_sample_episodes, query_ground_truth
from bench.harness.metrics import IoUAccumulator
from bench.harness.presets import get_preset
from bench.harness.registry import method_label
from bench.harness.runner import RunRequest, fitted_method, request_seeds, resolved_request, trained_networks_recipes
from bench.harness.views import FitView

CONTROL_RECORD = "support_control"
VARIANTS = ("real", "wrong_class", "empty_masks")


@dataclass
class ControlRecord:
    method: str
    mode: str
    dataset: str
    preset: str
    fold: int
    way: int
    shot: int
    seed: int
    episode_sha256: str
    miou: dict  # variant -> mIoU (%)
    config: dict
    pseudo: dict
    annotation_fingerprint: str = ""  # the support masks' source (which pseudo masks, in weak mode)
    profile: str = "embedded"  # the training schedule's profile, as a run record's (records before it: embedded)
    recipes: dict = field(default_factory=dict)  # the fit's recipes, as a run record's (records before it: none)
    record_type: str = CONTROL_RECORD

    def path(self, results_dir: Path) -> Path:
        # beside the run record of the same cell, by the same naming (profile included: a `reference`
        # control on real data never overwrites an `embedded` one)
        run = record_relpath(self.dataset, self.preset, self.method, self.config, self.profile,
                             self.mode, self.pseudo, self.fold, self.way, self.shot, self.seed)
        return Path(results_dir) / run.with_name("control_" + run.name)


def control(req: RunRequest, log=print) -> list[ControlRecord]:
    """The three variants of each fold of `req` (its first seed), written beside the run records."""
    writable_results(req.results_dir)
    req = resolved_request(req)
    preset = get_preset(req.preset)
    dataset = get_dataset(req.dataset, req.cache_dir, req.data_root)
    train_annotations, annotations = annotation_sources(req.mode, dataset, req.cache_dir, req.pseudo)
    seed = request_seeds(req, preset)[0]
    out = []
    for fold in req.folds:
        view = FitView(dataset, train_annotations, preset, fold, req.cache_dir)
        method = fitted_method(req, view, fold, train_annotations)
        episodes, sha, _ = load_or_sample_episodes(req.cache_dir, preset, dataset, fold, req.way, req.shot, seed)
        classes = dataset.fold_classes(fold, preset.coco_split)
        donors = _donor_images(dataset, preset, classes, req.cache_dir)
        rng = np.random.default_rng(seed)
        accs = {v: IoUAccumulator(tuple(classes)) for v in VARIANTS}
        for spec in episodes:
            real = build_episode_input(spec, dataset, annotations, preset)
            gts = query_ground_truth(spec, dataset, preset)
            inputs = {"real": real, "wrong_class": _wrong_class(spec, real, classes, donors, dataset, annotations, preset, rng),
                      "empty_masks": _empty_masks(real)}
            for variant, episode in inputs.items():
                preds = [np.asarray(p, np.uint8) for p in method.predict(episode)]
                accs[variant].update_episode(preds, gts, spec.class_ids)
        conv = preset.conventions()
        record = ControlRecord(method_label(req.method), req.mode, dataset.name, preset.label(), fold, req.way, req.shot,
                               seed, sha, {v: accs[v].compute(conv)["miou"] for v in VARIANTS}, dict(req.config),
                               dict(req.pseudo), annotations.fingerprint(), req.profile, trained_networks_recipes())
        atomic_write_text(record.path(req.results_dir), json.dumps(asdict(record), indent=1, sort_keys=True) + "\n")
        log(f"{record.method} {req.mode} fold {fold}: real {record.miou['real']:.1f}, wrong class "
            f"{record.miou['wrong_class']:.1f}, empty masks {record.miou['empty_masks']:.1f}")
        out.append(record)
    return out


def _donor_images(dataset, preset, classes, cache_dir) -> dict[int, list[str]]:
    """Test images holding each fold class: where another class's supports come from."""
    from bench.data.datasets import class_pixel_counts

    if len(classes) < 2:
        raise BenchError(f"the wrong-class control needs two fold classes; fold has {classes}")
    return eligible_images(class_pixel_counts(dataset, preset.test_split, cache_dir), classes, 0)


def _wrong_class(spec, real: EpisodeInput, classes, donors, dataset, annotations, preset, rng) -> EpisodeInput:
    """`real` with each way's supports taken from the next fold class, marked as that way."""
    images, masks, support_ids = [], [], []
    used = set(spec.query_ids)
    for j, c in enumerate(spec.class_ids):
        other = classes[(classes.index(c) + 1) % len(classes)]
        pool = [i for i in donors[other] if i not in used]
        picks = [pool[k] for k in rng.choice(len(pool), len(spec.support_ids[j]), replace=False)]
        used.update(picks)
        support_ids.append(tuple(picks))
        images.append([resized_image(dataset.image(i), preset.eval_size) for i in picks])
        masks.append([_as_way(episode_labels(resized_mask(annotations.mask(i), preset.eval_size), (other,), preset.ignore_255), j + 1)
                      for i in picks])
    return EpisodeInput(real.class_ids, images, masks, real.query_images, tuple(support_ids), real.query_ids)


def _as_way(labels: np.ndarray, way: int) -> np.ndarray:
    """A 1-class label map (0, 1, 255) with its class marked as `way`."""
    return np.where(labels == 1, way, labels).astype(np.uint8)


def _empty_masks(real: EpisodeInput) -> EpisodeInput:
    masks = [[np.zeros_like(m) for m in way] for way in real.support_masks]
    return EpisodeInput(real.class_ids, real.support_images, masks, real.query_images, real.support_ids, real.query_ids)


def load_controls(results_dir: Path) -> list[dict]:
    out = []
    for path in record_files(results_dir, "control_*.json"):
        raw = json.loads(path.read_text())
        if raw.get("record_type") == CONTROL_RECORD:
            out.append(raw)
    return out
