"""`bench run`: for each fold, fit the method (or load its checkpoint), evaluate it on the preset's
episode files, one run per seed, and write one RunRecord per (fold, seed)."""
from __future__ import annotations

import collections
import csv
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.harness.annotations import SUPERVISION, annotation_sources, check_mode, training_mode
from bench.data.classes import N_FOLDS
from bench.data.datasets import REAL_DATASETS, dataset_family, find_pool, get_dataset
from bench.data.palette import palette_png_bytes
from bench.core.device import device as current_device
from bench.core.device import placement
from bench.harness.episodes import build_episode_input, load_or_sample_episodes, query_ground_truth, small_object_flags
from bench.harness.views import FitView
from bench.core.errors import BenchError
from bench.harness.metrics import IoUAccumulator
from bench.harness.presets import Preset, get_preset
from bench.core.progress import progress
from bench.core.records import RunRecord, mode_label, record_relpath, writable_results
from bench.core.files import environment_versions, git_commit, staged_folder
from bench.core.pinning import fixed_threads, pinning
from bench.core.profiles import as_record
from bench.harness.registry import create_method, method_label, method_source


@dataclass
class RunRequest:
    method: str
    mode: str = "weak"
    dataset: str = "openmoji5i"
    folds: tuple[int, ...] = tuple(range(N_FOLDS))
    way: int = 1
    shot: int = 1
    preset: str = "wacv22"
    seeds: tuple[int, ...] | None = None  # None: every run of the preset
    config: dict = field(default_factory=dict)
    pseudo: dict = field(default_factory=dict)  # weak mode: pseudo-label setting overrides
    data_root: Path | None = None
    cache_dir: Path = Path("cache")
    results_dir: Path = Path("results")
    save_predictions: Path | None = None
    retrain: bool = False
    force: bool = False  # re-evaluate cells whose record already exists and matches
    allow_leak: bool = False  # run even when a network that must be disjoint saw benchmark classes (row marked)
    profile: str | None = None  # embedded | reference (bench/core/profiles.py); None: by dataset (default_profile)


@dataclass
class Ran:
    """The record files of one run, in fold and seed order, and which of them it kept (a record of the
    same episodes and config was there) rather than wrote: the runner knows, a directory listing
    taken around the run would also count what another job wrote meanwhile."""
    paths: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    @property
    def written(self) -> list[Path]:
        return [p for p in self.paths if p not in self.kept]


def run(req: RunRequest, log=print) -> Ran:
    """Fits (or loads) and evaluates every fold and seed of the request; the record files. Fits and
    evaluations run with the pinned thread count (bench/core/pinning.py), whatever the caller set:
    CPU numbers depend on it."""
    with fixed_threads():
        return _run(req, log)


def _run(req: RunRequest, log=print) -> Ran:
    check_mode(req.mode)
    writable_results(req.results_dir)
    preset = get_preset(req.preset)
    req = resolved_request(req)
    dataset = get_dataset(req.dataset, req.cache_dir, req.data_root)
    probe = create_method(req.method, method_config(req))  # what the method declares, read before anything is built
    check_weights_given(req, dataset, probe)
    networks, leaks = run_networks(req, dataset, preset, probe)
    train_annotations, annotations = annotation_sources(req.mode, dataset, req.cache_dir, req.pseudo)
    seeds = request_seeds(req, preset)
    ran = Ran()
    for fold in req.folds:
        todo = seeds if reruns_all(req) else pending_seeds(req, preset, dataset, annotations, fold, seeds)
        for seed in sorted(set(seeds) - set(todo)):
            log(f"{req.method:>10} {req.mode:<4} {dataset.name} {preset.label()} fold {fold} seed {seed}: "
                f"record exists for the same episodes and config, kept (--force to re-run)")
            ran.kept.append(record_path(req, preset, dataset, fold, seed))
            ran.paths.append(ran.kept[-1])
        if not todo:
            continue
        t0 = time.perf_counter()
        train = FitView(dataset, train_annotations, preset, fold, req.cache_dir)
        method = fitted_method(req, train, fold, train_annotations)
        fit_s = time.perf_counter() - t0
        fitted = fit_info(req, fold, train_annotations, train, method)
        threads = {"fit": fitted["torch_threads"], "eval": torch_threads()}
        for seed in todo:
            record, sample = evaluate_run(req, preset, dataset, annotations, method, fold, seed, fit_s, threads,
                                          train_annotations, fitted)
            record.networks, record.leaks = networks, leaks
            ran.paths.append(record.write(req.results_dir))
            sample.close_into(sample_dir(ran.paths[-1]))
            log(f"{req.method:>10} {req.mode:<4} {dataset.name} {preset.label()} fold {fold} "
                f"{req.way}-way {req.shot}-shot seed {seed}: mIoU {record.miou:6.2f}  FB-IoU {record.fbiou:6.2f}")
    return ran


def run_networks(req: RunRequest, dataset, preset: Preset, method=None) -> tuple[dict, dict]:
    """Every pretrained network the run stands on (the method's, and the CAM and saliency nets of
    a pseudo-mask mode) with the classes it saw, checked against the benchmark's: ({role: ...},
    leaks). Stops on an overlap where the preset wants none, unless req.allow_leak."""
    from bench.harness.declared import checked_networks

    method = method or create_method(req.method, method_config(req))
    nets = list(getattr(method, "networks", lambda: [])())
    if "pseudo" in SUPERVISION[req.mode].values():
        from pseudo_labels.config import pseudo_config

        cfg = pseudo_config(req.pseudo)
        nets.append(("cam", cfg.cam_weights if cfg.cam == "vgg16" else ""))
        if cfg.saliency != "none":
            nets.append(("saliency", cfg.saliency_path if cfg.saliency == "onnx" else ""))
    return checked_networks(nets, find_pool(dataset), dataset.class_names, preset.disjoint, req.allow_leak,
                            f"{dataset.name}'s classes")


def check_weights_given(req: RunRequest, dataset, method) -> None:
    """On a dataset without a disjoint pool (real data), every network the run would pretrain on the
    pool must come from the user: one line naming each flag this method and mode need, before
    anything is built."""
    if find_pool(dataset) is not None:
        return
    needs = []
    method_flags = getattr(method, "weights_needed", lambda: None)()
    if method_flags:
        needs.append(method_flags)
    if "pseudo" in SUPERVISION[req.mode].values():
        from pseudo_labels.config import pseudo_config

        cfg = pseudo_config(req.pseudo)
        pseudo = (["cam=vgg16 cam_weights=FILE (a VGG-16 whose FILE.classes.txt shows no benchmark class; "
                   "torchvision's vgg16-397923af.pth saw them and runs only with --allow-leak)"] if cfg.cam == "pool" else []) + (
            ["saliency=onnx saliency_path=FILE (or saliency=none)"] if cfg.saliency == "pool" else [])
        if pseudo:
            needs.append("--pseudo-set " + " ".join(pseudo))
    if needs:
        raise BenchError(f"{dataset.name} has no disjoint pool to pretrain networks on, so {method_label(req.method)} in "
                         f"{req.mode} mode needs pretrained weights from you; fix: {'; and '.join(needs)}")


def resolved_request(req: RunRequest) -> RunRequest:
    """`req` with its profile decided (by dataset when not given) and its method and pseudo-label
    overrides reduced to those that differ from the defaults (so `--set steps=64000`, PFENet's
    default, and `--pseudo-set saliency=gate` name the same records as no override: one setting,
    one row)."""
    from dataclasses import replace

    from bench.core.profiles import check_profile

    req = replace(req, profile=check_profile(req.profile or default_profile(req.dataset)))
    req = replace(req, config=changed_method_settings(req))
    if not req.pseudo:
        return req
    from pseudo_labels.config import changed_settings

    return replace(req, pseudo=changed_settings(req.pseudo))


def changed_method_settings(req: RunRequest) -> dict:
    """The request's --set values that change what its method runs with (compared with the method's
    defaults under the request's profile), coerced as the method reads them: what names a variant.
    A method that keeps no dataclass `cfg` cannot be compared, so its values are kept as given."""
    from dataclasses import replace

    if not req.config:
        return {}
    given = requested_config(req)
    if not given:
        return dict(req.config)
    default = requested_config(replace(req, config={}))
    return {k: given.get(k, v) for k, v in sorted(req.config.items()) if k not in given or given[k] != default.get(k)}


def default_profile(dataset: str) -> str:
    """`reference` on the real benchmarks (pascal5i, coco20i), `embedded` on the generated sets."""
    return "reference" if dataset in REAL_DATASETS else "embedded"


def profile_settings(req: RunRequest) -> dict:
    """The profile's cited values for this method and dataset family ({} under `embedded`)."""
    from bench.core.profiles import profile_values
    from bench.harness.registry import method_class

    return profile_values(method_class(req.method), req.profile or default_profile(req.dataset), dataset_family(req.dataset))


def method_config(req: RunRequest) -> dict:
    """What the method is built with: its profile's values, then the user's --set on top."""
    return {**{k: c.value for k, c in profile_settings(req).items()}, **req.config}


def reruns_all(req: RunRequest) -> bool:
    """Whether the request re-evaluates cells whose matching record exists: asked to (--force,
    --retrain), or predictions are to be saved (a record keeps none to save)."""
    return req.force or req.retrain or req.save_predictions is not None


def request_seeds(req: RunRequest, preset: Preset) -> list[int]:
    """The runs a request evaluates: its --seed values, else every run of the preset."""
    return list(req.seeds) if req.seeds is not None else preset.seeds()


def record_path(req: RunRequest, preset: Preset, dataset, fold: int, seed: int) -> Path:
    return Path(req.results_dir) / record_relpath(dataset.name, preset.label(), method_label(req.method), req.config, req.profile,
                                                  req.mode, req.pseudo, fold, req.way, req.shot, seed)


def pending_seeds(req: RunRequest, preset: Preset, dataset, annotations, fold: int, seeds: list[int]) -> list[int]:
    """The seeds of this fold without a finished record (`bench sweep` skips a cell when none is left)."""
    return [s for s in seeds if not finished_record(req, preset, dataset, annotations, fold, s)]


def finished_record(req: RunRequest, preset: Preset, dataset, annotations, fold: int, seed: int) -> bool:
    """True when this cell's record exists and was made on the same episodes, data and config, by
    a fit of these recipes (optimizer, pool backbone, trunk: `trained_networks_recipes`): an
    interrupted `bench run` resumes without recomputing finished cells, and a record of an older
    recipe (a full-mode one keeps its config and annotations) is re-run, not kept beside the new
    recipe's records."""
    from bench.core.optim import recipes_of

    path = record_path(req, preset, dataset, fold, seed)
    if not path.exists():
        return False
    old = json.loads(path.read_text())
    if recipes_of(old.get("recipes"), old.get("pinning")) != trained_networks_recipes():
        return False
    _, sha, _ = load_or_sample_episodes(req.cache_dir, preset, dataset, fold, req.way, req.shot, seed)
    config = requested_config(req)
    return (old.get("episode_sha256") == sha and old.get("config") == dict(req.config)
            and old.get("profile", "embedded") == req.profile
            and old.get("method_config") == config and old.get("input_files", {}) == input_files(config)
            and old.get("annotation_fingerprint") == annotations.fingerprint()
            and old.get("dataset_fingerprint") == dataset.fingerprint())


def input_files(config: dict) -> dict:
    """sha256 (16 hex digits) of every setting that names an existing file (user weights): a fit
    or a record is keyed by what the file holds, not by its path."""
    from bench.core.files import file_sha

    return {k: file_sha(Path(v)) for k, v in sorted(config.items()) if isinstance(v, str) and v and Path(v).is_file()}


def checkpoint_path(req: RunRequest, fold: int, annotations) -> Path:
    """Keyed by the method's resolved config (defaults included, so a changed default is a new fit;
    minus the settings a method declares test-time only, `test_settings`), the content of any weight
    file it names, the training masks, the recipes of the networks it trains on here
    (`trained_networks_recipes`) and the preset's training settings (so presets that train alike
    share one fit); changing any of them never loads a stale fit."""
    config = fit_config(req)
    preset = get_preset(req.preset)
    training = {**preset.training_key(), "novel": annotations.dataset.fold_classes(fold, preset.coco_split)}
    key = json.dumps({"config": config, "annotations": annotations.fingerprint(), "recipes": trained_networks_recipes()},
                     sort_keys=True, default=str)
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    train_tag = hashlib.sha256(json.dumps(training, sort_keys=True).encode()).hexdigest()[:8]
    trained_as = training_mode(req.mode)  # weak-test trains on GT: full's fit
    return (Path(req.cache_dir) / "checkpoints" / req.dataset / f"train-{train_tag}" / method_label(req.method)
            / mode_label(trained_as, req.pseudo if trained_as == "weak" else {}) / f"fold{fold}-{tag}.pt")


def trained_networks_recipes() -> dict:
    """The recipes of what a fit trains or builds on here besides its config (its optimizer, the
    pool-pretrained DeepLabV3+ and VGG-16 under it): a changed recipe is a new fit, never a stale one."""
    from backbones.pretrain import BACKBONE_VERSION
    from backbones.trunks import TRUNK_VERSION
    from bench.core.optim import RECIPE

    return {"optimizer": RECIPE, "backbone": BACKBONE_VERSION, "trunk": TRUNK_VERSION}


def fit_config(req: RunRequest) -> dict:
    """The settings a fit depends on: the resolved config minus the settings the method reads at
    prediction only (`test_settings`: one fit serves all), with any weight file named by its content."""
    from bench.harness.registry import method_class

    test_only = getattr(method_class(req.method), "test_settings", ())
    config = {k: v for k, v in requested_config(req).items() if k not in test_only}
    return {**config, **{k: f"sha256:{sha}" for k, sha in input_files(config).items()}}


def fit_timing(req: RunRequest, train: FitView) -> dict:
    """How long the fit's training loop took, where, and on which settings: `bench plan` estimates
    a new fit of the same settings from it (bench/harness/plan.py:measured_fit), which a probe of
    one step cannot (data loading, memo misses, validation). Its steps and thread count are the
    sidecar's own (`curve.total`, `torch_threads`: fit_summary)."""
    from bench.core.device import device

    return {"loop_s": train.loop_seconds(), "device": str(device()), "config": fit_config(req),
            "resumed_at": train.resumed_at()}


def fitted_method(req: RunRequest, train: FitView, fold: int, annotations):
    """Load the fold's checkpoint if present, else fit and save one. Methods without learned
    state (empty state_dict) are simply fitted each time."""
    import pickle

    method = create_method(req.method, method_config(req))
    path = checkpoint_path(req, fold, annotations)
    if path.exists() and not req.retrain:
        with open(path, "rb") as f:
            method.load_state_dict(pickle.load(f))
        if hasattr(method, "attach"):  # methods that need their data bound again (feature caches)
            method.attach(train)
        return method
    train.snapshot = snapshot_path(path)
    if req.retrain:  # a fit of this key killed earlier is not what --retrain asks for
        train.snapshot.unlink(missing_ok=True)
    method.fit(train, method_config(req))
    state = method.state_dict()
    if state:
        from bench.core.files import atomic_write_bytes

        atomic_write_bytes(path, pickle.dumps(state))
        info = {**fit_summary(train, method), "timing": fit_timing(req, train)}
        atomic_write_bytes(fit_info_path(path), json.dumps(info, sort_keys=True, default=str).encode())
    train.snapshot.unlink(missing_ok=True)
    return method


def snapshot_path(checkpoint: Path) -> Path:
    """Where a fit of the checkpoint's key keeps its resumable state until it ends (methods whose
    loop registers with the curve: bench/core/curves.py Tracker.resume)."""
    return checkpoint.with_name(checkpoint.stem + ".partial.pkl")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def fit_info_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def fit_summary(train: FitView, method=None) -> dict:
    """What a fit done in this process depends on and how it went: torch threads, the pinned CPU
    code paths, its curve and convergence verdict (bench/core/curves.py)."""
    from bench.core import curves
    from bench.core.pinning import pinning

    curve = train.fit_curve()
    if curve is None:  # a method with nothing learned has nothing to converge; one that trains silently is unjudged
        learned = method is not None and bool(method.state_dict())
        curve = curves.no_curve("the method reports no training steps (FitView.curve)" if learned else "no training")
    return {"torch_threads": torch_threads(), "pinning": pinning(), "curve": curve}


def fit_info(req: RunRequest, fold: int, annotations, train: FitView, method=None) -> dict:
    """The fold's fit summary: from the checkpoint's sidecar, or of the fit just done in this
    process (methods without learned state). Training on the CPU is deterministic only at a fixed
    thread count and code path (PANet's fold 0 gave 13.8 with 2 threads and 14.2 with 1, seed 1234),
    so records say both. A checkpoint older than curves has none ("no curve": --retrain)."""
    from bench.core import curves

    path = checkpoint_path(req, fold, annotations)
    if not path.exists():
        return fit_summary(train, method)
    info = fit_info_path(path)
    old = json.loads(info.read_text()) if info.exists() else {}
    return {"torch_threads": old.get("torch_threads"), "pinning": old.get("pinning", {}),
            "curve": old.get("curve") or curves.no_curve("fitted before curves were recorded: --retrain gives one"),
            "timing": old.get("timing", {})}


def whole_fit_timings(fitted: dict | None) -> dict:
    """The whole fit's loop time and the steps it was resumed from, from its sidecar (`fit_timing`):
    a run's own `fit_s` is only what this process spent (a load, or a resumed fit's last stretch)."""
    timing = (fitted or {}).get("timing") or {}
    if timing.get("loop_s") is None:
        return {}
    return {"fit_loop_s": round(timing["loop_s"], 3), "fit_resumed_at": list(timing.get("resumed_at", []))}


def evaluate_run(req: RunRequest, preset: Preset, dataset, annotations, method, fold: int, seed: int, fit_s: float,
                 threads: dict | None = None, train_annotations=None, fitted: dict | None = None) -> tuple[RunRecord, "PredictionSaver"]:
    """The run's record, and the predictions of its first SAMPLE_EPISODES episodes (saved beside
    the record by the caller: what `bench figure episodes` draws, with no model)."""
    episodes, sha, _ = load_or_sample_episodes(req.cache_dir, preset, dataset, fold, req.way, req.shot, seed)
    acc = IoUAccumulator(tuple(dataset.fold_classes(fold, preset.coco_split)))
    saver = PredictionSaver(Path(req.save_predictions) / f"{dataset.name}_fold{fold}_seed{seed}") if req.save_predictions else None
    sample = PredictionSaver(None)
    small = collections.Counter()
    t0 = time.perf_counter()
    for spec in progress(episodes, desc=f"fold {fold} seed {seed}"):
        episode = build_episode_input(spec, dataset, annotations, preset)
        preds = method.predict(episode)
        gts = query_ground_truth(spec, dataset, preset)
        if len(preds) != len(gts):
            raise BenchError(f"method {req.method} returned {len(preds)} predictions for {len(gts)} queries")
        preds = [np.asarray(pred, dtype=np.uint8) for pred in preds]
        for pred, gt in zip(preds, gts):
            if pred.shape != gt.shape:
                raise BenchError(f"method {req.method} predicted {pred.shape} for a {gt.shape} query (episode {spec.index})")
        acc.update_episode(preds, gts, spec.class_ids)
        small.update(small_object_flags(spec, episode, gts, dataset, annotations, preset))
        for j, pred in enumerate(preds):
            if saver:
                saver.add(spec, j, pred)
            if spec.index < SAMPLE_EPISODES:
                sample.add(spec, j, pred)
    eval_s = time.perf_counter() - t0
    if saver:
        saver.close_into(saver.folder)
    scores = acc.compute(preset.conventions())
    config = _resolved_config(method)
    return RunRecord(
        method=method_label(req.method), method_source=method_source(req.method), mode=req.mode, dataset=dataset.name, preset=preset.label(), fold=fold, way=req.way,
        shot=req.shot, seed=seed, class_ids=list(acc.class_ids),
        **acc.sums(), miou=scores["miou"], fbiou=scores["fbiou"],
        class_iou=scores["class_iou"], n_episodes=len(episodes), episode_sha256=sha,
        annotation_fingerprint=annotations.fingerprint(), dataset_fingerprint=dataset.fingerprint(),
        config=dict(req.config), preset_config=preset.as_dict(), versions=environment_versions(),
        profile=req.profile or "embedded", profile_settings=as_record(profile_settings(req)),
        git_commit=git_commit(), pseudo=dict(req.pseudo), method_config=config, input_files=input_files(config),
        device=str(current_device()), placement=placement(), torch_threads=threads or {},
        pinning={"fit": (fitted or {}).get("pinning", {}), "eval": pinning()}, fit=(fitted or {}).get("curve", {}),
        recipes=trained_networks_recipes(),  # the checkpoint it ran is keyed by them (checkpoint_path)
        small_objects={"rule": preset.small_object_rule(), "episodes": len(episodes),
                       **{k: small[k] for k in ("vanished_query", "vanished_support", "empty_support_mask")}},
        supervision={**SUPERVISION[req.mode],
                     "train_annotation_fingerprint": (train_annotations or annotations).fingerprint()},
        timings={"fit_s": round(fit_s, 3), **whole_fit_timings(fitted), "eval_s": round(eval_s, 3),
                 "episodes_per_s": round(len(episodes) / max(eval_s, 1e-9), 2)},
    ), sample


def requested_config(req: RunRequest) -> dict:
    """The resolved config the request's method will run with (defaults included)."""
    return _resolved_config(create_method(req.method, method_config(req)))


def _resolved_config(method) -> dict:
    """A method's full settings when it keeps them in a dataclass `cfg` (so a record says, e.g.,
    which loss ran even when it was the default); {} otherwise."""
    from dataclasses import asdict, is_dataclass

    cfg = getattr(method, "cfg", None)
    return asdict(cfg) if is_dataclass(cfg) else {}


SAMPLE_EPISODES = 8  # episodes 0..7 of every run keep their predictions beside the record


def sample_dir(record_path: Path) -> Path:
    """Where a record's sample of predictions lies: beside it, named after it."""
    return record_path.with_name(record_path.stem + ".predictions")


class PredictionSaver:
    """Query predictions as palette PNGs plus index.csv (episode, query id, class ids, support
    ids), so any third-party metric can re-score a run and figures can be drawn from records.
    Kept in memory as PNG bytes and written at close, into a staged folder renamed into place:
    an interrupted run leaves no half sample."""

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.rows, self.files = [], {}

    def add(self, spec, j: int, pred: np.ndarray) -> None:
        name = f"ep{spec.index:05d}_q{j}.png"
        self.files[name] = palette_png_bytes(pred)
        self.rows.append({"file": name, "episode": spec.index, "query_id": spec.query_ids[j],
                          "class_ids": " ".join(str(c) for c in spec.class_ids),
                          "support_ids": " | ".join(" ".join(s) for s in spec.support_ids)})

    def close_into(self, folder: Path) -> None:
        with staged_folder(folder) as tmp:
            for name, data in self.files.items():
                (tmp / name).write_bytes(data)
            with open(tmp / "index.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.rows[0]) if self.rows else ["file"])
                writer.writeheader()
                writer.writerows(self.rows)
