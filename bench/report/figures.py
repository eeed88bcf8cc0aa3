"""`bench figure`: episode panels like the paper's Fig. 5, a bar chart of Δ = full − weak, and a
per-class scatter of Δ against pseudo-mask quality.

Episode panels, one row per episode (way 1 shown): the support with its mask as the method saw
it (pseudo in weak mode, GT in full mode) in yellow; the query with its GT in green; the query's
pseudo mask in yellow (what weak supervision would have said about the query; its class's
pseudo-mask IoU from the quality record of `bench pseudo report` when there is one); the method's
prediction in red, titled with the episode's foreground IoU. Drawn from records: the prediction is
the one saved beside the record, the masks are read from the dataset and the pseudo-mask cache;
no model is fitted and no mask generated."""
from __future__ import annotations

import csv
import io
import textwrap
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError

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
                   log=print, predictions: Path | None = None) -> tuple[Path, list[float]]:
    """Draws the chosen or random episodes of `req`'s record from the predictions saved beside it
    (its first SAMPLE_EPISODES episodes; every episode from a `--save-predictions` folder given as
    `predictions`); never fits a method or generates masks. Returns the PNG and each drawn
    episode's foreground IoU (the number in its prediction title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.core.types import GroundTruthMasks
    from bench.data.datasets import get_dataset
    from bench.harness.annotations import SUPERVISION
    from bench.harness.episodes import annotation_labels, build_episode_input, load_or_sample_episodes, query_ground_truth
    from bench.harness.presets import get_preset
    from bench.harness.runner import record_path, request_seeds, resolved_request, sample_dir
    from pseudo_labels.source import cached_pseudo_masks, recorded_pseudo_masks

    req = resolved_request(req)
    preset = get_preset(req.preset)
    dataset = get_dataset(req.dataset, req.cache_dir, req.data_root)
    fold = req.folds[0]
    run_seed = request_seeds(req, preset)[0]
    run_req = req if req.mode != "full" else replace(req, pseudo={})  # a full run's record has no pseudo settings
    record = _record_at(record_path(run_req, preset, dataset, fold, run_seed))
    episodes, sha, _ = load_or_sample_episodes(req.cache_dir, preset, dataset, fold, req.way, req.shot, run_seed)
    if sha != record.episode_sha256:
        raise BenchError(f"the episode file of fold {fold} seed {run_seed} is not the one the record was made on; "
                         f"fix: re-run the cell")
    folder = Path(predictions) / f"{dataset.name}_fold{fold}_seed{run_seed}" if predictions else sample_dir(record_path(run_req, preset, dataset, fold, run_seed))
    saved = _saved_predictions(folder)
    chosen = _chosen_episodes(episode_indices, n_random, seed, sorted(saved), len(episodes), fold)
    if SUPERVISION[req.mode]["support_masks"] == "pseudo":  # weak, weak-test
        annotations = pseudo = recorded_pseudo_masks(dataset, req.cache_dir, record.annotation_fingerprint)
    else:  # full mode: --pseudo-set picks the cached pseudo masks of the yellow query panel only
        annotations, pseudo = GroundTruthMasks(dataset), cached_pseudo_masks(dataset, req.cache_dir, req.pseudo)
    quality = _pseudo_class_iou(req.results_dir, dataset.name, pseudo)
    fig, axes = plt.subplots(len(chosen), 4, figsize=(10, 2.7 * len(chosen)), squeeze=False)
    support_word = "pseudo mask" if SUPERVISION[req.mode]["support_masks"] == "pseudo" else "GT mask"
    ious = []
    for row, index in zip(axes, chosen):
        spec = episodes[index]
        episode = build_episode_input(spec, dataset, annotations, preset)
        pred = saved[index]
        gt = query_ground_truth(spec, dataset, preset)[0]
        name = dataset.class_names[spec.class_ids[0] - 1]
        ious.append(foreground_iou(pred, gt))
        query = episode.query_images[0]
        if pseudo is not None:
            query_pseudo = annotation_labels(spec.query_ids[0], spec.class_ids, dataset, pseudo, preset)
            iou = quality.get(str(spec.class_ids[0]))
            pseudo_panel = (tint(query, query_pseudo == 1, YELLOW),
                            "query · pseudo mask" + (f" (class IoU {iou:.0f})" if iou is not None else ""))
        else:
            pseudo_panel = (query, "query · no pseudo masks cached")
        panels = [(tint(episode.support_images[0][0], episode.support_masks[0][0] == 1, YELLOW), f"support · {support_word}"),
                  (tint(query, gt == 1, GREEN), f"query · GT ({name})"), pseudo_panel,
                  (tint(query, pred == 1, RED), f"prediction · IoU {ious[-1]:.0f}")]
        for ax, (img, title) in zip(row, panels):
            ax.imshow(img)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        row[0].text(-8, img.shape[0] / 2, f"ep {index}", rotation=90, va="center", ha="right", fontsize=9)
    fig.suptitle(f"{record.method} · {req.mode} · {dataset.name} fold {fold} · {preset.label()} seed {run_seed} "
                 f"(episodes {sha[:8]}, mIoU {record.miou:.1f})", fontsize=10)
    fig.tight_layout()
    return _save(fig, out), ious


def _record_at(path: Path):
    import json

    from bench.core.records import RunRecord

    if not path.is_file():
        raise BenchError(f"no record at {path}; fix: run the cell first (`bench run ...` with the same settings), "
                         f"or pass --results-dir")
    return RunRecord(**json.loads(path.read_text()))


def _saved_predictions(folder: Path) -> dict[int, np.ndarray]:
    """Episode index -> the saved prediction of its first query."""
    from PIL import Image

    index = folder / "index.csv"
    if not index.is_file():
        raise BenchError(f"no saved predictions at {folder}; fix: re-run the cell (runs save a sample beside their "
                         f"record since this version) or pass the folder of `bench run --save-predictions`")
    with open(index, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["file"].endswith("_q0.png")]
    return {int(r["episode"]): np.array(Image.open(folder / r["file"])) for r in rows}


def _chosen_episodes(wanted: list[int] | None, n_random: int, seed: int, saved: list[int], n_episodes: int,
                     fold: int) -> list[int]:
    if wanted:
        bad = [i for i in wanted if not 0 <= i < n_episodes]
        if bad:
            raise BenchError(f"episode {bad[0]} is not in fold {fold}'s {n_episodes} episodes; fix: pick 0..{n_episodes - 1}")
        missing = [i for i in wanted if i not in saved]
        if missing:
            raise BenchError(f"episode {missing[0]}'s prediction was not saved (the record keeps episodes "
                             f"{saved[0]}..{saved[-1]}); fix: pick one of those, or run with --save-predictions DIR "
                             f"and pass --predictions DIR")
        return wanted
    return sorted(np.random.default_rng(seed).choice(saved, min(n_random, len(saved)), replace=False).tolist())


def _pseudo_class_iou(results_dir: Path, dataset: str, pseudo) -> dict[str, float]:
    """Class id -> pseudo-mask IoU (gated) from the pseudo-mask quality record, if one was written."""
    import json

    if pseudo is None:
        return {}
    path = Path(results_dir) / dataset / "pseudo-labels" / f"{pseudo.manifest['fingerprint']}.json"
    if not path.is_file():
        return {}
    class_iou = json.loads(path.read_text()).get("class_iou", {})
    return class_iou.get("gated", next(iter(class_iou.values()), {}))


def folds_phrase(folds: list[int]) -> str:
    """'all 4 folds', or the folds a mean covers when it is fewer ('folds 0, 1 of 4'), so a chart's
    axis never passes a mean of the folds that happen to be there for the paper's four-fold one."""
    from bench.data.classes import N_FOLDS
    from bench.report.tables import fold_list

    if len(folds) >= N_FOLDS:
        return f"all {N_FOLDS} folds"
    return f"fold{'s' if len(folds) > 1 else ''} {fold_list(folds)}"


def delta_rows(recs: list) -> tuple[list[tuple], list[int], list[str]]:
    """One setting's records -> (rows, folds, left_out): a row (label, full, weak, Δ), each {seed:
    mean over `folds`} (every fold the setting's records hold) for a method with full and weak runs
    of the same seeds on each of them; `left_out` names the methods that lack one, so a chart says
    why a method it does not draw is missing."""
    from bench.report.tables import fold_mean_per_seed, paired_delta, row_label, runs_by_cell

    cells, folds = runs_by_cell(recs), sorted({r.fold for r in recs})
    rows, left_out = [], []
    for label in sorted({row_label(r) for r in recs}):
        full, weak = (fold_mean_per_seed(cells, label, m, folds) for m in ("full", "weak"))
        delta = paired_delta(full, weak)
        if delta:
            rows.append((label, full, weak, delta))
        else:
            left_out.append(label)
    return rows, folds, left_out


def delta_chart(results_dir: Path, out: Path, filters: dict | None = None) -> list[Path]:
    """Per setting (dataset, preset, way, shot): full and weak mean mIoU per method, and Δ, with
    error bars = std over runs (seeds; Δ paired by seed). One PNG per setting. The means are over
    every fold the setting's records hold, named on the axis; a method lacking runs of one of
    them, or of a mode, is left out and named in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.report.tables import check_tableable, selected_records, setting_header, stat

    records = selected_records(results_dir, filters)
    if not records:
        raise BenchError(f"no run records under {results_dir} match; fix: run `bench sweep` or `bench run` first")
    check_tableable(records)
    groups = defaultdict(list)
    for _, r in records:
        groups[(r.dataset, r.preset, r.way, r.shot)].append(r)
    written = []
    for (dataset, preset, way, shot), recs in sorted(groups.items()):
        rows, folds, left_out = delta_rows(recs)
        if not rows:
            continue
        fig, (left, right) = plt.subplots(1, 2, figsize=(4 + 1.3 * len(rows), 3.8))
        x = np.arange(len(rows))
        for offset, k, name, colour in ((-0.2, 1, "full", "#4c72b0"), (0.2, 2, "weak", "#dd8452")):
            stats = [stat(r[k]) for r in rows]
            left.bar(x + offset, [s[0] for s in stats], 0.4, yerr=[s[1] for s in stats], label=name, color=colour, capsize=3)
        left.set_xticks(x, [r[0] for r in rows], rotation=30, ha="right", fontsize=8)
        left.set_ylabel(f"mean mIoU over {folds_phrase(folds)} (%)")
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
        missing = f"\nleft out, a fold or a mode missing: {', '.join(left_out)}" if left_out else ""
        fig.suptitle(f"{dataset} · {preset} · {setting_header(way, shot)} · error bars: std over {n_runs} run(s)"
                     f"{missing}", fontsize=10)
        fig.tight_layout()
        target = out if len(groups) == 1 else out.with_name(f"{out.stem}_{dataset}_{preset}_{way}w{shot}s{out.suffix}")
        written.append(_save(fig, target))
    if not written:
        raise BenchError(f"no method under {results_dir} has both full and weak records of the same runs; fix: run both modes")
    return written


def fit_curves(recs: list) -> dict[tuple, dict]:
    """(dataset, preset, row label, mode, fold) -> the fit's curve, once per fit (a fit's runs
    share it; weak-test runs share full's fit and are left out)."""
    from bench.report.tables import row_label

    out = {}
    for r in recs:
        if r.mode != "weak-test" and (r.fit or {}).get("loss"):
            out.setdefault((r.dataset, r.preset, row_label(r), r.mode, r.fold), r.fit)
    return out


def curves_chart(results_dir: Path, out: Path, filters: dict | None = None) -> list[Path]:
    """Per dataset and preset: one row per method, the training loss (left) and the base-class
    validation score (right) against the step, one line per fold, solid full, dashed weak; the
    convergence verdict of each fit in the legend (bench/core/curves.py). One PNG per (dataset, preset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.core.curves import RULE
    from bench.report.tables import selected_records

    curves = fit_curves([r for _, r in selected_records(results_dir, filters)])
    if not curves:
        raise BenchError(f"no record under {results_dir} holds a fit curve; fix: run (or --retrain) a method that trains")
    groups = defaultdict(dict)
    for (dataset, preset, label, mode, fold), fit in curves.items():
        groups[(dataset, preset)][(label, mode, fold)] = fit
    written = []
    for (dataset, preset), fits in sorted(groups.items()):
        labels = sorted({k[0] for k in fits})
        fig, axes = plt.subplots(len(labels), 2, figsize=(15, 2.8 * len(labels)), squeeze=False)
        for row, label in zip(axes, labels):
            for (lab, mode, fold), fit in sorted(fits.items()):
                if lab != label:
                    continue
                style = dict(color=f"C{fold}", ls="-" if mode == "full" else "--")
                verdict = fit.get("verdict", {})
                mark = ("converged within noise" if verdict.get("within_noise") else
                        {True: "converged", False: "not converged"}.get(verdict.get("converged"), "no verdict"))
                finite = [(e[0], e[1]) for e in fit["loss"] if e[1] is not None and np.isfinite(e[1])]
                bad = sum(e[2] for e in fit["loss"] if len(e) > 2)  # older records: [step, mean] (may be inf)
                if finite:
                    row[0].plot(*zip(*finite), lw=1, **style,
                                label=f"{mode} fold {fold}" + (f" ({bad} steps with an infinite loss left out)" if bad else ""))
                if fit.get("validation"):
                    row[1].plot(*zip(*fit["validation"]), marker="o", ms=3, lw=1, **style,
                                label=f"{mode} fold {fold}: {mark} ({verdict.get('gain', 0):+.1f})")
            row[0].set_title(f"{label}: training loss", fontsize=9)
            row[1].set_title(f"{label}: base-class validation fg IoU (%)", fontsize=9)
            for ax in row:
                ax.set_xlabel("step", fontsize=8)
                ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)  # beside: inside, it hid lines
        rule = "\n".join(textwrap.wrap(RULE, 150))  # one line of it ran past the figure's edges
        fig.suptitle(f"{dataset} · {preset}\n{rule}", fontsize=7)
        fig.tight_layout()
        target = out if len(groups) == 1 else out.with_name(f"{out.stem}_{dataset}_{preset}{out.suffix}")
        written.append(_save(fig, target))
    return written


def class_deltas(recs: list) -> dict[str, dict[int, tuple[float, float]]]:
    """row label -> class id -> (full, weak) class IoU, each the mean over the runs (seeds) both
    modes have for the class's fold. Rows lacking either mode are left out."""
    from bench.report.tables import row_label

    ious: dict = defaultdict(dict)  # (label, mode, class) -> {seed: IoU}
    for r in recs:
        for c, v in r.class_iou.items():
            ious[(row_label(r), r.mode, int(c))][r.seed] = v
    out: dict = defaultdict(dict)
    for (label, mode, c), full in ious.items():
        weak = ious.get((label, "weak", c), {})
        seeds = sorted(set(full) & set(weak)) if mode == "full" else []
        if seeds:
            out[label][c] = (float(np.mean([full[s] for s in seeds])), float(np.mean([weak[s] for s in seeds])))
    return dict(out)


def weak_source_of(recs: list, dataset, cache_dir: Path):
    """The pseudo masks the weak records were evaluated with (refuses when they differ, or when
    today's default pseudo settings give other masks than the records used)."""
    from pseudo_labels.source import pseudo_masks_for

    prints = sorted({r.annotation_fingerprint for r in recs if r.mode == "weak"})
    if len(prints) != 1:
        raise BenchError(f"the weak records ran on {len(prints)} different pseudo-mask sets ({', '.join(prints)}); "
                         f"fix: pass --results-dir with one set, or re-run the stale weak cells (`bench sweep`)")
    source = pseudo_masks_for(dataset, cache_dir)
    if source.fingerprint() != prints[0]:
        raise BenchError(f"the weak records ran on pseudo masks {prints[0]}, the default settings now give "
                         f"{source.fingerprint()}; fix: re-run the weak cells (`bench sweep` re-runs them)")
    return source


def class_delta_chart(results_dir: Path, cache_dir: Path, out: Path, filters: dict | None = None,
                      data_root: Path | None = None, source=None) -> tuple[Path, Path]:
    """Per class: each method's Δ (full − weak class IoU) against how good the class's pseudo masks
    are on the test images (IoU vs GT), one panel per method with Pearson's r; and a CSV beside the
    PNG with every number (class, fold, pseudo-mask IoU, share of images with an empty mask, each
    method's full / weak / Δ). Tests whether a method's loss under weak supervision follows
    pseudo-mask quality. `source`: the weak masks (default: the ones the weak records used)."""
    from bench.data.datasets import get_dataset, image_labels
    from bench.core.files import atomic_write_text
    from bench.report.tables import check_tableable, selected_records, setting_header
    from pseudo_labels.report import class_mask_quality

    records = selected_records(results_dir, filters)
    check_tableable(records)
    recs = [r for _, r in records if not r.pseudo]  # pseudo-setting variants ran on other masks
    settings = sorted({(r.dataset, r.preset, r.way, r.shot) for r in recs})
    if len(settings) != 1:
        raise BenchError(f"`bench figure classes` draws one setting; the records under {results_dir} hold "
                         f"{len(settings)}; fix: pass --dataset, --preset, --way and --shot (e.g. --way 1 --shot 1)")
    deltas = class_deltas(recs)
    if not deltas:
        raise BenchError(f"no method under {results_dir} has full and weak records of the same runs; fix: run both modes")
    dataset_name, preset_name, way, shot = settings[0]
    dataset = get_dataset(dataset_name, cache_dir, data_root)
    source = source or weak_source_of(recs, dataset, cache_dir)
    split = recs[0].preset_config["test_split"]
    quality = class_mask_quality(dataset, source, image_labels(dataset, split, cache_dir))
    fold_of = {int(c): r.fold for r in recs for c in r.class_iou}
    classes = [c for c in sorted(fold_of) if c in quality]
    names = {c: dataset.class_names[c - 1] for c in classes}

    table = class_delta_csv(classes, names, fold_of, quality, deltas)
    fig = class_delta_panels(classes, names, quality, deltas, f"pseudo-mask IoU on {split} images (%)",
                             f"{dataset_name} · {preset_name} · {setting_header(way, shot)}")
    png = _save(fig, out)
    atomic_write_text(out.with_suffix(".csv"), table)
    return png, out.with_suffix(".csv")


QUALITY_KEYS = ("iou", "precision", "recall", "empty_share")


def class_delta_csv(classes: list[int], names: dict, fold_of: dict, quality: dict, deltas: dict) -> str:
    """One row per class: fold, pseudo-mask quality, then each method's full / weak / Δ."""
    labels = sorted(deltas)
    missing = (np.nan, np.nan)
    header = (["class", "fold"] + [f"pseudo_{k}" for k in QUALITY_KEYS]
              + [f"{lab} {k}" for lab in labels for k in ("full", "weak", "delta")])
    rows = [[names[c], fold_of[c]] + [f"{quality[c][k]:.1f}" for k in QUALITY_KEYS]
            + [f"{v:.1f}" for lab in labels
               for v in (*deltas[lab].get(c, missing), np.subtract(*deltas[lab].get(c, missing)))]
            for c in classes]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header] + rows)
    return buf.getvalue()


def class_delta_panels(classes: list[int], names: dict, quality: dict, deltas: dict, xlabel: str, title: str):
    """One scatter per method (Δ against pseudo-mask IoU, fitted line, Pearson's r); methods that
    never predict foreground in full mode are named in the title instead of drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    silent = [lab for lab in sorted(deltas) if not any(full for full, _ in deltas[lab].values())]
    labels = [lab for lab in sorted(deltas) if lab not in silent]
    if not labels:
        raise BenchError("every method scores IoU 0 on every class in full mode; nothing to draw; "
                         "fix: pass --results-dir with records of a method that predicts foreground")
    cols = min(3, len(labels))
    n_rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(max(6.0, 4.2 * cols), 0.5 + 3.6 * n_rows), squeeze=False)
    x_all = np.array([quality[c]["iou"] for c in classes])
    for ax, lab in zip(axes.flat, labels):
        pts = [(quality[c]["iou"], np.subtract(*deltas[lab][c]), names[c]) for c in classes if c in deltas[lab]]
        x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        ax.scatter(x, y, s=18, color="#4c72b0")
        for xi, yi, name in pts:
            ax.annotate(name, (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
        r = pearson(x, y)
        if not np.isnan(r):
            slope, icept = np.polyfit(x, y, 1)
            xs = np.array([x.min(), x.max()])
            ax.plot(xs, slope * xs + icept, "--", color="#c44e52", lw=1)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(f"{lab}: r = {'–' if np.isnan(r) else f'{r:.2f}'}", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("Δ class IoU (full − weak)", fontsize=8)
        ax.set_xlim(x_all.min() - 3, x_all.max() + 3)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    skipped = f" · not drawn (IoU 0 in full mode): {', '.join(silent)}" if silent else ""
    fig.suptitle(f"{title}\none point per class, Δ averaged over runs{skipped}", fontsize=9)
    fig.tight_layout()
    return fig


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; nan with fewer than 3 points or a constant variable."""
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _save(fig, out: Path) -> Path:
    import matplotlib.pyplot as plt

    from bench.core.files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(out), buf.getvalue())
    return Path(out)
