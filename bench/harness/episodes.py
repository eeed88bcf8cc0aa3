"""Episode sampling. Test episodes are drawn once per (preset, dataset, fold, way, shot, seed),
written to a JSON file, and identified by that file's sha256 in every run record. Training
episodes are drawn on the fly from the base classes by the fit view (bench/harness/views.py)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from bench.data.datasets import class_pixel_counts
from bench.data.sizes import resized_image, resized_mask
from bench.core.errors import BenchError
from bench.harness.presets import Preset
from bench.core.files import atomic_write_text
from bench.core.types import EpisodeInput, EpisodeSpec, GroundTruthMasks, episode_labels


def eligible_images(counts: dict[str, dict[int, int]], classes, min_fg: int) -> dict[int, list[str]]:
    """Class -> sorted ids of images holding at least max(1, min_fg) pixels of it."""
    need = max(1, min_fg)
    return {c: sorted(i for i, cc in counts.items() if cc.get(c, 0) >= need) for c in classes}


def sample_test_episodes(counts, classes, preset: Preset, dataset: str, fold: int, way: int, shot: int, seed: int,
                         describe=str) -> list[EpisodeSpec]:
    """`describe(c)` names class c in errors (e.g. "7 (car)")."""
    if way > len(classes):
        raise BenchError(f"{way}-way needs {way} test classes but fold {fold} has {len(classes)}")
    pools = eligible_images(counts, classes, preset.min_fg_pixels)
    for c, ids in pools.items():
        if len(ids) < shot + 1:
            holding = sum(1 for cc in counts.values() if cc.get(c, 0) > 0)
            if preset.min_fg_pixels > 1 and holding >= shot + 1:
                fix = f"use a preset with a smaller filter ({holding} images hold the class at all)"
            else:
                fix = (f"the {preset.test_split} list of {dataset} holds {holding} image(s) of class {describe(c)}; "
                       f"add images of it to that list (or check the masks' labels), or leave fold {fold} out")
            raise BenchError(f"class {describe(c)} has {len(ids)} eligible {preset.test_split} images in {dataset} "
                             f"(need {shot + 1} for {shot}-shot with min_fg_pixels={preset.min_fg_pixels}); fix: {fix}")
    rng = np.random.default_rng(seed)
    cycle = [(i, c) for c in classes for i in pools[c]]
    cycle = [cycle[k] for k in rng.permutation(len(cycle))] if preset.query_choice == "cycle" else []
    episodes = []
    for e in range(preset.episodes):
        if cycle:
            first_query, first = cycle[e % len(cycle)]
            others = [c for c in classes if c != first]
            chosen = [first] + [others[k] for k in rng.choice(len(others), way - 1, replace=False)]
        else:
            chosen = [classes[k] for k in rng.choice(len(classes), way, replace=False)]
            first_query = None
        used: set[str] = set()
        supports, queries = [], []
        for j, c in enumerate(chosen):
            candidates = [i for i in pools[c] if i not in used]
            if j == 0 and first_query is not None:
                query = first_query
                candidates = [i for i in candidates if i != query]
                picks = [candidates[k] for k in rng.choice(len(candidates), shot, replace=False)]
            else:
                if len(candidates) < shot + 1:
                    raise BenchError(f"class {c} runs out of distinct images for a {way}-way {shot}-shot episode")
                picks = [candidates[k] for k in rng.choice(len(candidates), shot + 1, replace=False)]
                query, picks = picks[-1], picks[:-1]
            used.update(picks + [query])
            supports.append(tuple(picks))
            queries.append(query)
        episodes.append(EpisodeSpec(e, dataset, fold, way, shot, tuple(int(c) for c in chosen), tuple(supports), tuple(queries)))
    return episodes


PROTOCOLS = Path(__file__).resolve().parent.parent / "data" / "protocols"


def fixed_list_path(preset: Preset, fold: int, shot: int) -> Path:
    """The fixed episode list of a preset for (fold, shot): imgs_paths_{fold}_{shot}.txt in the
    preset's `episode_list` folder (a name under bench/data/protocols, or a path)."""
    root = Path(preset.episode_list)
    root = root if root.is_absolute() else PROTOCOLS / preset.episode_list
    path = root / f"imgs_paths_{fold}_{shot}.txt"
    if not path.is_file():
        have = sorted(p.name for p in root.glob("imgs_paths_*.txt")) if root.is_dir() else []
        raise BenchError(f"{preset.label()} has no fixed episode list {path} (it has {', '.join(have) or 'none'}); "
                         f"fix: use a fold and shot it lists")
    return path


def fixed_episodes(path: Path, dataset, classes, test_ids: set[str], fold: int, way: int, shot: int) -> list[EpisodeSpec]:
    """The episodes of an OSLSM-format list (AMP's parse_file): per episode `shot` support image
    paths, the query image path, their shot+1 label paths, then `Iteration N C` (C = 1-based class
    id); image ids are the file stems. Every id must be a test image and C a class of the fold."""
    if way != 1:
        raise BenchError(f"the fixed episodes of {path.name} are 1-way; fix: --way 1")
    episodes, paths = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if not line.startswith("Iteration"):
            paths.append(Path(line.strip()).stem)
            continue
        class_id = int(line.split()[2])
        if len(paths) != 2 * (shot + 1):
            raise BenchError(f"{path}:{n}: an episode has {len(paths)} paths, a {shot}-shot one {2 * (shot + 1)}; "
                             f"fix: use the list of this shot")
        images = paths[: shot + 1]
        missing = [i for i in images if i not in test_ids]
        if missing:
            raise BenchError(f"{path}:{n}: image {missing[0]} is not in {dataset.name}'s test images; fix: point "
                             f"--data-root at the dataset the list was made for")
        if class_id not in classes:
            raise BenchError(f"{path}:{n}: class {class_id} is not a class of fold {fold} ({classes})")
        episodes.append(EpisodeSpec(len(episodes), dataset.name, fold, 1, shot, (class_id,), (tuple(images[:shot]),),
                                    (images[shot],)))
        paths = []
    return episodes


def episode_file_path(cache_dir: Path, preset: Preset, dataset, fold: int, way: int, shot: int, seed: int) -> Path:
    return (Path(cache_dir) / "episodes" / f"{dataset.name}-{dataset.fingerprint()}" / preset.label()
            / f"fold{fold}_{way}way_{shot}shot_seed{seed}.json")


def load_or_sample_episodes(cache_dir: Path, preset: Preset, dataset, fold: int, way: int, shot: int, seed: int) -> tuple[list[EpisodeSpec], str, Path]:
    """(episodes, sha256 of the episode file, its path). Sampled and written on first use."""
    path = episode_file_path(cache_dir, preset, dataset, fold, way, shot, seed)
    if path.exists() and preset.episode_list and _stale_list(path, fixed_list_path(preset, fold, shot)):
        path.unlink()  # the fixed list changed since its episode file was written
    if not path.exists():
        classes = dataset.fold_classes(fold, preset.coco_split)
        header = {"preset": preset.episode_key(), "dataset": dataset.name, "fold": fold, "way": way, "shot": shot, "seed": seed}
        if preset.episode_list:
            source = fixed_list_path(preset, fold, shot)
            episodes = fixed_episodes(source, dataset, classes, set(dataset.ids(preset.test_split)), fold, way, shot)
            header["list_sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
        else:
            counts = class_pixel_counts(dataset, preset.test_split, cache_dir)
            episodes = sample_test_episodes(counts, classes, preset, dataset.name, fold, way, shot, seed,
                                            lambda c: f"{c} ({dataset.class_names[c - 1]})")
        lines = [json.dumps(header, sort_keys=True)] + [json.dumps(e.to_json(), sort_keys=True) for e in episodes]
        atomic_write_text(path, "\n".join(lines) + "\n")
    data = path.read_bytes()
    lines = data.decode().splitlines()
    return [EpisodeSpec.from_json(json.loads(l)) for l in lines[1:]], hashlib.sha256(data).hexdigest(), path


def _stale_list(episode_file: Path, source: Path) -> bool:
    header = json.loads(episode_file.read_text().split("\n", 1)[0])
    return header.get("list_sha256") != hashlib.sha256(source.read_bytes()).hexdigest()


def small_object_flags(spec: EpisodeSpec, episode: EpisodeInput, gts: list[np.ndarray], dataset, annotations,
                       preset: Preset) -> set[str]:
    """Which small-object events an episode has at the evaluation size: a query whose GT lost its
    class ('vanished_query'), a support whose GT lost it ('vanished_support'), a support mask given
    to the method without the class ('empty_support_mask': a vanished object, or a pseudo mask that
    missed it)."""
    flags = set()
    if any(not (g == j).any() for j, g in enumerate(gts, 1)):
        flags.add("vanished_query")
    if any(not (m == j).any() for j, masks in enumerate(episode.support_masks, 1) for m in masks):
        flags.add("empty_support_mask")
    gt_masks = episode.support_masks if getattr(annotations, "kind", "") == "full" else [
        [annotation_labels(i, spec.class_ids, dataset, GroundTruthMasks(dataset), preset) for i in ids] for ids in spec.support_ids]
    if any(not (m == j).any() for j, masks in enumerate(gt_masks, 1) for m in masks):
        flags.add("vanished_support")
    return flags


def build_episode_input(spec: EpisodeSpec, dataset, annotations, preset: Preset) -> EpisodeInput:
    """Supports with masks from `annotations` (GT or pseudo), queries as images only."""
    size = preset.eval_size
    s_imgs = [[resized_image(dataset.image(i), size) for i in ids] for ids in spec.support_ids]
    s_masks = [[annotation_labels(i, spec.class_ids, dataset, annotations, preset) for i in ids] for ids in spec.support_ids]
    q_imgs = [resized_image(dataset.image(i), size) for i in spec.query_ids]
    return EpisodeInput(spec.class_ids, s_imgs, s_masks, q_imgs, spec.support_ids, spec.query_ids)


def annotation_labels(image_id: str, class_ids, dataset, annotations, preset: Preset) -> np.ndarray:
    """An image's mask from `annotations` at evaluation size, as episode labels."""
    return episode_labels(resized_mask(annotations.mask(image_id), preset.eval_size), class_ids, preset.ignore_255)


def query_ground_truth(spec: EpisodeSpec, dataset, preset: Preset) -> list[np.ndarray]:
    """Episode-label GT of each query at evaluation size: the only GT read in weak mode."""
    return [episode_labels(resized_mask(dataset.mask(i), preset.eval_size), spec.class_ids, preset.ignore_255)
            for i in spec.query_ids]


def base_class_iou(method, train, episodes: int, seed: int) -> tuple[float, float]:
    """Pooled (foreground IoU, FB-IoU) in % of a fitted method over 1-way 1-shot episodes of the
    fold's *training* images and classes, scored on the fit view's masks: what a default may
    be chosen on without looking at a test class or image (benchmarks/*_schedule.py)."""
    rng = np.random.default_rng(seed)
    inter, union = np.zeros(2), np.zeros(2)
    for _ in range(episodes):
        episode, query_masks = train.sample_episode(rng, 1, 1)
        pred, gt = method.predict(episode)[0], query_masks[0]
        known = gt != 255
        for c in (0, 1):
            inter[c] += ((pred == c) & (gt == c) & known).sum()
            union[c] += (((pred == c) | (gt == c)) & known).sum()
    iou = inter / np.maximum(union, 1)
    return 100 * iou[1], 50 * iou.sum()
