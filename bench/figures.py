"""`bench figure`: episode panels like the paper's Fig. 5 and a bar chart of Δ = full − weak.

Episode panels, one row per episode (way 1 shown): the support with its mask as the method saw
it (pseudo in weak mode, GT in full mode) in yellow; the query with its GT in green; the query's
pseudo mask in yellow (what weak supervision would have said about the query); the method's
prediction in red, titled with the episode's foreground IoU."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.errors import BenchError

GREEN, YELLOW, RED = (0, 200, 0), (255, 215, 0), (230, 20, 20)


def tint(image: np.ndarray, mask: np.ndarray, colour, alpha: float = 0.5) -> np.ndarray:
    """`image` with the pixels of `mask` (bool) blended towards `colour` and outlined in it."""
    out = image.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(colour, np.float32)
    edge = mask & ~_eroded(mask)
    out[edge] = colour
    return out.astype(np.uint8)


def _eroded(mask: np.ndarray) -> np.ndarray:
    m = np.pad(mask, 1)
    return m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]


def foreground_iou(pred: np.ndarray, gt: np.ndarray, label: int = 1) -> float:
    valid = gt != 255
    inter = ((pred == label) & (gt == label) & valid).sum()
    union = (((pred == label) | (gt == label)) & valid).sum()
    return 100.0 * inter / union if union else float("nan")


def episode_panels(req, episode_indices: list[int] | None, n_random: int, seed: int, out: Path,
                   log=print) -> tuple[Path, list[float]]:
    """Trains (or loads) the fold's model of `req`, draws the chosen or random episodes; returns
    the PNG and each drawn episode's foreground IoU (the number in its prediction title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.annotations import annotation_source
    from bench.data.datasets import get_dataset
    from bench.episodes import (TrainSource, annotation_labels, build_episode_input, load_or_sample_episodes,
                                query_ground_truth)
    from bench.presets import get_preset
    from bench.runner import fitted_method, request_seeds

    preset = get_preset(req.preset)
    dataset = get_dataset(req.dataset, req.cache_dir, req.data_root)
    fold = req.folds[0]
    # full mode: --pseudo-set picks the pseudo masks of the yellow query panel only
    pseudo = annotation_source("weak", dataset, req.cache_dir, req.pseudo)
    annotations = pseudo if req.mode == "weak" else annotation_source("full", dataset, req.cache_dir)
    run_seed = request_seeds(req, preset)[0]
    episodes, sha, _ = load_or_sample_episodes(req.cache_dir, preset, dataset, fold, req.way, req.shot, run_seed)
    if episode_indices:
        bad = [i for i in episode_indices if not 0 <= i < len(episodes)]
        if bad:
            raise BenchError(f"episode {bad[0]} is not in fold {fold}'s {len(episodes)} episodes; fix: pick 0..{len(episodes) - 1}")
        chosen = episode_indices
    else:
        chosen = sorted(np.random.default_rng(seed).choice(len(episodes), min(n_random, len(episodes)), replace=False).tolist())
    log(f"fitting or loading {req.method} ({req.mode}) for fold {fold}")
    fit_req = req if req.mode == "weak" else replace(req, pseudo={})  # the full run's own checkpoint
    method = fitted_method(fit_req, TrainSource(dataset, annotations, preset, fold, req.cache_dir), fold)
    fig, axes = plt.subplots(len(chosen), 4, figsize=(10, 2.7 * len(chosen)), squeeze=False)
    support_word = "pseudo mask" if req.mode == "weak" else "GT mask"
    ious = []
    for row, index in zip(axes, chosen):
        spec = episodes[index]
        episode = build_episode_input(spec, dataset, annotations, preset)
        pred = np.asarray(method.predict(episode)[0])
        gt = query_ground_truth(spec, dataset, preset)[0]
        query_pseudo = annotation_labels(spec.query_ids[0], spec.class_ids, dataset, pseudo, preset)
        name = dataset.class_names[spec.class_ids[0] - 1]
        ious.append(foreground_iou(pred, gt))
        panels = [(tint(episode.support_images[0][0], episode.support_masks[0][0] == 1, YELLOW), f"support · {support_word}"),
                  (tint(episode.query_images[0], gt == 1, GREEN), f"query · GT ({name})"),
                  (tint(episode.query_images[0], query_pseudo == 1, YELLOW), "query · pseudo mask"),
                  (tint(episode.query_images[0], pred == 1, RED), f"prediction · IoU {ious[-1]:.0f}")]
        for ax, (img, title) in zip(row, panels):
            ax.imshow(img)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        row[0].text(-8, img.shape[0] / 2, f"ep {index}", rotation=90, va="center", ha="right", fontsize=9)
    fig.suptitle(f"{req.method} · {req.mode} · {dataset.name} fold {fold} · {preset.label()} seed {run_seed} "
                 f"(episodes {sha[:8]})", fontsize=10)
    fig.tight_layout()
    return _save(fig, out), ious


def delta_chart(results_dir: Path, out: Path, filters: dict | None = None) -> list[Path]:
    """Per setting (dataset, preset, way, shot): full and weak mean mIoU per method, and Δ, with
    error bars = std over runs (seeds; Δ paired by seed). One PNG per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.tables import check_tableable, fold_mean_per_seed, paired_delta, row_label, runs_by_cell, selected_records, stat

    records = selected_records(results_dir, filters)
    if not records:
        raise BenchError(f"no run records under {results_dir} match; fix: run `bench sweep` or `bench run` first")
    check_tableable(records)
    groups = defaultdict(list)
    for _, r in records:
        groups[(r.dataset, r.preset, r.way, r.shot)].append(r)
    written = []
    for (dataset, preset, way, shot), recs in sorted(groups.items()):
        cells, folds = runs_by_cell(recs), sorted({r.fold for r in recs})
        rows = []
        for label in sorted({row_label(r) for r in recs}):
            full, weak = (fold_mean_per_seed(cells, label, m, folds) for m in ("full", "weak"))
            delta = paired_delta(full, weak)
            if delta:
                rows.append((label, full, weak, delta))
        if not rows:
            continue
        fig, (left, right) = plt.subplots(1, 2, figsize=(4 + 1.3 * len(rows), 3.8))
        x = np.arange(len(rows))
        for offset, k, name, colour in ((-0.2, 1, "full", "#4c72b0"), (0.2, 2, "weak", "#dd8452")):
            stats = [stat(r[k]) for r in rows]
            left.bar(x + offset, [s[0] for s in stats], 0.4, yerr=[s[1] for s in stats], label=name, color=colour, capsize=3)
        left.set_xticks(x, [r[0] for r in rows], rotation=30, ha="right", fontsize=8)
        left.set_ylabel("mean mIoU over folds (%)")
        left.legend(fontsize=8)
        delta_stats = [stat(r[3]) for r in rows]
        deltas = [s[0] for s in delta_stats]
        right.bar(x, deltas, 0.6, yerr=[s[1] for s in delta_stats], color="#55a868", capsize=3)
        for xi, d in zip(x, deltas):
            right.text(xi, d, f"{d:.1f}", ha="center", va="bottom", fontsize=8)
        right.axhline(0, color="black", lw=0.8)
        right.set_xticks(x, [r[0] for r in rows], rotation=30, ha="right", fontsize=8)
        right.set_ylabel("Δ = full − weak (mIoU points)")
        n_runs = len({r.seed for r in recs})
        fig.suptitle(f"{dataset} · {preset} · {way}-way {shot}-shot · error bars: std over {n_runs} run(s)", fontsize=10)
        fig.tight_layout()
        target = out if len(groups) == 1 else out.with_name(f"{out.stem}_{dataset}_{preset}_{way}w{shot}s{out.suffix}")
        written.append(_save(fig, target))
    if not written:
        raise BenchError(f"no method under {results_dir} has both full and weak records of the same runs; fix: run both modes")
    return written


def _save(fig, out: Path) -> Path:
    import matplotlib.pyplot as plt

    import io

    from bench.records import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(out), buf.getvalue())
    return Path(out)
