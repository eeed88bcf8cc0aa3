"""`bench plan`, and `--dry-run` on `bench run` / `bench sweep`: before anything runs, every
artefact the request builds or reuses (pool nets, pseudo masks, feature stores, fits, records),
with its disk size and a time estimate on the chosen device, the free space where the cache lives,
and a refusal (one line, exit 2) when the new bytes do not fit.

Each layer declares its own artefacts (pseudo_labels/plan.py, backbones' `*_need`, each method's
`plan` hook), so the plan reads the same cache keys and budgets the run does. Sizes are computed
(bench/core/plans.py: random-initialised architectures, one forward pass for a store's bytes per
pixel); times are probes of one unit of work times the count of units, so they are estimates
(heads, data loading and bookkeeping are not probed). A fit or an evaluation that this machine has
already done with the same settings (on the same device, at the same thread count) is timed by
that instead: a fit by its training loop's seconds per step (the checkpoint's sidecar,
runner.fit_timing), an evaluation by its record's episodes per second; the row says "measured".
A probe of one step missed most of a real one: PFENet's 32,000 steps probed at 24 min took 58.
Building nothing itself, the plan still generates an embedded dataset it is asked about (it needs
the images to count and size them)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.plans import Need, PlanContext, free_bytes, human_bytes, human_seconds, pickled_bytes, probe_seconds
from bench.data.datasets import find_pool, get_dataset
from bench.harness.annotations import SUPERVISION, annotation_sources, training_mode
from bench.harness.presets import get_preset
from bench.harness.registry import create_method, method_label
from bench.harness.views import training_labels

LENGTH_SETTINGS = ("steps", "iterations", "episodes", "epochs")  # a fit's length: a measured rate per step carries over
RECORD_BYTES = 30_000  # a record's JSON (per-class sums, curve with per-episode validation counts, settings)
SAMPLE_EPISODES = 8  # predictions saved beside every record (runner.sample_dir)


@dataclass
class Row:
    what: str
    path: str
    action: str  # build | reuse | per batch
    bytes: int
    seconds: float | None
    note: str = ""


@dataclass
class Plan:
    rows: list
    cache_dir: Path
    results_dir: Path
    device: str

    def new_bytes(self) -> int:
        return sum(r.bytes for r in self.rows if r.action == "build")

    def seconds(self) -> float:
        return sum(r.seconds or 0.0 for r in self.rows if r.action != "reuse")

    def lines(self) -> list[str]:
        out = [f"{'action':<9} {'disk':>9} {'time':>7}  what"]
        for r in self.rows:
            size = human_bytes(r.bytes) if r.action == "build" else "-"
            note = f" ({r.note})" if r.note else ""
            out.append(f"{r.action:<9} {size:>9} {human_seconds(r.seconds if r.action != 'reuse' else None):>7}  {r.what}{note}"
                       + (f"\n{'':>29}{r.path}" if r.path else ""))
        free = free_bytes(self.cache_dir)
        how = ("measured where noted, else probes of one unit of work" if any(r.note.startswith("measured") for r in self.rows)
               else "probes of one unit of work each")
        out.append(f"total: {human_bytes(self.new_bytes())} new on disk, ≈ {human_seconds(self.seconds())} on {self.device} "
                   f"({how}: an estimate); {human_bytes(free)} free where {self.cache_dir} lives")
        return out

    def check_fits(self) -> None:
        free = free_bytes(self.cache_dir)
        if self.new_bytes() > free:
            raise BenchError(f"the plan writes {human_bytes(self.new_bytes())} but {self.cache_dir} has {human_bytes(free)} "
                             f"free; fix: free space, point --cache-dir at a larger disk, or lower $WSFSS_STORE_GB "
                             f"(stores over it are computed per batch instead)")


def plan(req) -> Plan:
    """The plan of one `bench run` request (bench/harness/runner.py:RunRequest)."""
    return plan_all([req])


def plan_all(requests) -> Plan:
    """One plan for several requests (a sweep's cells): an artefact several share is listed once."""
    from bench.core.device import device

    rows, seen, records, probes = [], set(), {}, {}
    for req in requests:
        for row in request_rows(req, records, probes):
            key = (row.what, row.path)
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return Plan(rows, Path(requests[0].cache_dir), Path(requests[0].results_dir), str(device()))


def request_rows(req, records: dict, probes: dict) -> list[Row]:
    """Rows of one request: pseudo-mask artefacts (modes that use them), the method's own (its
    `plan` hook), then per fold its fit and its evaluation. `records`: results folder -> its
    records, read once for all the requests of a plan (measured_episode); `probes`: probe key ->
    seconds, shared by the requests of a plan, so a sweep of 40 cells times each distinct unit of
    work once (a probe of a VGG-16 batch or a PFENet step takes seconds; per cell, a dry-run of
    Table 2b's grid took over 10 minutes)."""
    from bench.harness.runner import check_weights_given, method_config, resolved_request

    preset = get_preset(req.preset)
    req = resolved_request(req)
    dataset = get_dataset(req.dataset, req.cache_dir, req.data_root)
    config = method_config(req)
    method = create_method(req.method, config)
    check_weights_given(req, dataset, method)  # the run's own refusal, before anything is sized
    needs: list[Need] = []
    if "pseudo" in SUPERVISION[req.mode].values():
        from pseudo_labels.plan import pseudo_needs

        needs += pseudo_needs(dataset, req.pseudo, req.cache_dir)
    hook = getattr(method, "plan", None)
    if hook is None:
        label = method_label(req.method)
        return [as_row(n, probes) for n in needs] + [Row(f"{label}: no plan hook (sizes and times unknown)", "", "build", 0, None)]
    mp = hook(context(req, dataset, preset))
    needs += mp.needs
    masks_missing = any(not n.built() for n in needs if n.kind == "pseudo masks")
    fit, episode = measured_fit(req, mp.fit[1]), measured_episode(req, preset, dataset.name, records)
    unit_key = (req.method, _without_length(config), dataset.name, req.way, req.shot)
    work = FoldWork(req, preset, dataset, mp, *sources(req, dataset, masks_missing),
                    fit or Timed(_seconds(*mp.fit, probes, ("fit",) + unit_key)),
                    episode or Timed(_seconds(*mp.episode, probes, ("episode",) + unit_key)),
                    mask_png_bytes(dataset))
    rows = [as_row(n, probes) for n in needs]
    for fold in req.folds:
        rows += work.rows(fold)
    return rows


def sources(req, dataset, masks_missing: bool) -> tuple:
    """The run's (training, test-support) annotation sources, as the runner takes them; None where
    they are pseudo masks not made yet (reading them would make them: then the fits trained on them
    and every record are new, whatever the cache holds)."""
    return annotation_sources(req.mode, dataset, req.cache_dir, req.pseudo, build=not masks_missing)


@dataclass
class FoldWork:
    """What one request costs per fold: its fit (reused when its checkpoint exists, by the runner's
    `checkpoint_path`) and its evaluation (the seeds the runner's `pending_seeds` would run)."""

    req: object
    preset: object
    dataset: object
    mp: object  # the method's MethodPlan
    train_annotations: object | None
    test_annotations: object | None
    fit: "Timed"  # one fit
    episode: "Timed"  # one evaluation episode
    mask_bytes: float  # one palette PNG mask of the dataset

    def rows(self, fold: int) -> list[Row]:
        from bench.harness.runner import checkpoint_path, pending_seeds, record_path, request_seeds, reruns_all

        req, preset, label, rows = self.req, self.preset, method_label(self.req.method), []
        if self.mp.state is not None:
            path = None if self.train_annotations is None else checkpoint_path(req, fold, self.train_annotations)
            built = path is not None and path.exists() and not req.retrain
            rows.append(Row(f"{label} {training_mode(req.mode)} fit, fold {fold}", str(path or "(keyed by the new pseudo masks)"),
                            "reuse" if built else "build", pickled_bytes(self.mp.state) + 400, self.fit.seconds, self.fit.note))
        seeds = request_seeds(req, preset)
        redo = reruns_all(req) or self.test_annotations is None
        todo = seeds if redo else pending_seeds(req, preset, self.dataset, self.test_annotations, fold, seeds)
        if todo:
            episodes = preset.episodes * len(todo)
            sample = SAMPLE_EPISODES * req.way * (req.shot + 1) * self.mask_bytes
            rows.append(Row(f"{label} {req.mode} evaluation, fold {fold}: {len(todo)} run(s) × {preset.episodes} episodes",
                            str(record_path(req, preset, self.dataset, fold, todo[0]).parent), "build",
                            int(len(todo) * (RECORD_BYTES + sample)),
                            None if self.episode.seconds is None else self.episode.seconds * episodes, self.episode.note))
        return rows


@dataclass
class Timed:
    seconds: float | None  # of one fit, or of one episode
    note: str = ""  # "measured: ..." when it comes from this machine's own earlier run


def _without_length(config: dict) -> str:
    import json

    return json.dumps({k: v for k, v in config.items() if k not in LENGTH_SETTINGS}, sort_keys=True, default=str)


def _plan_threads() -> int:
    """The torch thread count a run of this process would fit and evaluate with (the pinned one)."""
    import torch

    from bench.core.pinning import fixed_threads

    with fixed_threads():
        return torch.get_num_threads()


def measured_fit(req, steps: int) -> Timed | None:
    """One fit's seconds from the earlier fits of the same method, settings (but their length)
    and dataset on this device and thread count: the median of their training loops' seconds per
    step (steps and validations, from the checkpoints' sidecars) times `steps`. The median, not the
    newest: a loop's wall time counts whatever shared the cores meanwhile (a fit paused for a CI
    run read 4,528 s where its like took 2,554). None when there is none."""
    import json

    from bench.core.device import device
    from bench.harness.runner import fit_config

    want, threads = _without_length(fit_config(req)), _plan_threads()
    found = []
    for path in (Path(req.cache_dir) / "checkpoints" / req.dataset).glob(f"*/{method_label(req.method)}/*/*.json"):
        info = json.loads(path.read_text())
        timing, total = info.get("timing") or {}, (info.get("curve") or {}).get("total")
        if (timing.get("loop_s") and total and timing.get("device") == str(device())
                and info.get("torch_threads") == threads and _without_length(timing.get("config", {})) == want):
            found.append((timing["loop_s"] / total, f"{path.parent.name} {path.stem.split('-')[0]}"))
    if not found:
        return None
    per_step, which = sorted(found)[(len(found) - 1) // 2]  # the lower median: one of the fits, named
    return Timed(per_step * steps, f"measured: {per_step:.3g} s/step, median of {len(found)} fit(s) here ({which})")


def measured_episode(req, preset, dataset_name: str, records: dict) -> Timed | None:
    """One evaluation episode's seconds from the newest record of the same method, settings (but
    the fit's length: a longer fit predicts no slower), dataset and preset on this device and
    thread count: of the same ways and shots, else of the nearest other ones scaled by the images
    an episode holds, way x (shot + 1) (the probe it replaces planned 11 min for `ours`' 5-shot
    runs that took 45 s; the scaling is within a factor 2: 1-way 5-shot episodes hold 3 times
    1-shot's images and ran 1.5-2.3 times slower, 2-way 1-shot twice and ran 2.6 times slower).
    None when there is none."""
    from bench.core.device import device
    from bench.core.records import load_records
    from bench.harness.runner import requested_config

    folder = Path(req.results_dir)
    if not folder.is_dir():
        return None
    if folder not in records:
        records[folder] = load_records(folder)
    want, threads = _without_length(requested_config(req)), _plan_threads()
    found = [(path, r) for path, r in records[folder]
             if r.method == req.method and r.dataset == dataset_name and r.preset == preset.label()
             and r.device == str(device()) and (r.torch_threads or {}).get("eval") == threads
             and r.timings.get("episodes_per_s") and _without_length(r.method_config) == want]
    if not found:
        return None
    images = lambda way, shot: way * (shot + 1)  # noqa: E731
    wanted = images(req.way, req.shot)
    path, r = min(found, key=lambda pr: ((pr[1].way, pr[1].shot) != (req.way, req.shot),
                                         abs(images(pr[1].way, pr[1].shot) - wanted), -pr[0].stat().st_mtime))
    rate = r.timings["episodes_per_s"]
    if (r.way, r.shot) == (req.way, req.shot):
        return Timed(1.0 / rate, f"measured: {rate:g} episodes/s, {r.mode} fold {r.fold} here")
    return Timed(wanted / images(r.way, r.shot) / rate,
                 f"scaled from {rate:g} episodes/s of {r.way}-way {r.shot}-shot ({r.mode} fold {r.fold} here) by images per episode")


def context(req, dataset, preset) -> PlanContext:
    folds = {f: training_labels(dataset, preset, f, req.cache_dir) for f in req.folds}
    train_ids = sorted({i for labels in folds.values() for i in labels})
    test_ids = dataset.ids(preset.test_split)
    n_base = len(dataset.class_names) - len(dataset.fold_classes(req.folds[0], preset.coco_split))
    return PlanContext(find_pool(dataset), Path(req.cache_dir), dataset.image_store(dict.fromkeys(train_ids + test_ids)),
                       train_ids, test_ids, preset.train_size, preset.eval_size, max(len(v) for v in folds.values()),
                       n_base, req.way, req.shot)


def as_row(need: Need, probes: dict) -> Row:
    if need.built():
        return Row(need.what, str(need.path or ""), "reuse", 0, None, need.note)
    if need.path is None:
        return Row(need.what, "", "per batch", 0, None, need.note)
    return Row(need.what, str(need.path), "build", need.bytes,
               _seconds(need.unit, need.count, probes, ("need", need.what, str(need.path))), need.note)


def _seconds(unit, count, probes: dict, key: tuple) -> float | None:
    """Probe x count; None (shown "-") when the work has no probe. `key` names the unit's work
    (an artefact's path; a method's settings, dataset, ways and shots), not the unit object: every
    request makes its own unit objects for the same work."""
    if unit is None:
        return None
    if key not in probes:
        probes[key] = probe_seconds(unit)
    return probes[key] * count


def mask_png_bytes(dataset) -> float:
    """Bytes of one palette PNG mask of the dataset (its test masks encoded as records save them)."""
    from pseudo_labels.plan import mean_mask_png_bytes

    return mean_mask_png_bytes(dataset, dataset.ids("val"))
