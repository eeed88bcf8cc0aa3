"""`bench plan`, and `--dry-run` on `bench run` / `bench sweep`: before anything runs, every
artefact the request builds or reuses (pool nets, pseudo masks, feature stores, fits, records),
with its disk size and a time estimate on the chosen device, the free space where the cache lives,
and a refusal (one line, exit 2) when the new bytes do not fit.

Each layer declares its own artefacts (pseudo_labels/plan.py, backbones' `*_need`, each method's
`plan` hook), so the plan reads the same cache keys and budgets the run does. Sizes are computed
(bench/core/plans.py: random-initialised architectures, one forward pass for a store's bytes per
pixel); times are probes of one unit of work times the count of units, so they are estimates
(heads, data loading and bookkeeping are not probed). Building nothing itself, the plan still
generates an embedded dataset it is asked about (it needs the images to count and size them)."""
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
        out.append(f"total: {human_bytes(self.new_bytes())} new on disk, ≈ {human_seconds(self.seconds())} on {self.device} "
                   f"(probes of one unit of work each: an estimate); {human_bytes(free)} free where {self.cache_dir} lives")
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

    rows, seen = [], set()
    for req in requests:
        for row in request_rows(req):
            key = (row.what, row.path)
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return Plan(rows, Path(requests[0].cache_dir), Path(requests[0].results_dir), str(device()))


def request_rows(req) -> list[Row]:
    """Rows of one request: pseudo-mask artefacts (modes that use them), the method's own (its
    `plan` hook), then per fold its fit and its evaluation."""
    from bench.harness.runner import check_weights_given, method_config, resolved_request

    preset = get_preset(req.preset)
    req = resolved_request(req)
    dataset = get_dataset(req.dataset, req.cache_dir, req.data_root)
    method = create_method(req.method, method_config(req))
    check_weights_given(req, dataset, method)  # the run's own refusal, before anything is sized
    needs: list[Need] = []
    if "pseudo" in SUPERVISION[req.mode].values():
        from pseudo_labels.plan import pseudo_needs

        needs += pseudo_needs(dataset, req.pseudo, req.cache_dir)
    probes: dict = {}  # one probe per unit of this request (units stay alive meanwhile: ids are not reused)
    hook = getattr(method, "plan", None)
    if hook is None:
        label = method_label(req.method)
        return [as_row(n, probes) for n in needs] + [Row(f"{label}: no plan hook (sizes and times unknown)", "", "build", 0, None)]
    mp = hook(context(req, dataset, preset))
    needs += mp.needs
    masks_missing = any(not n.built() for n in needs if n.kind == "pseudo masks")
    work = FoldWork(req, preset, dataset, mp, *sources(req, dataset, masks_missing), _seconds(*mp.fit, probes),
                    _seconds(*mp.episode, probes), mask_png_bytes(dataset))
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
    fit_s: float | None  # one fit
    episode_s: float | None  # one evaluation episode
    mask_bytes: float  # one palette PNG mask of the dataset

    def rows(self, fold: int) -> list[Row]:
        from bench.harness.runner import checkpoint_path, pending_seeds, record_path, request_seeds

        req, preset, label, rows = self.req, self.preset, method_label(self.req.method), []
        if self.mp.state is not None:
            path = None if self.train_annotations is None else checkpoint_path(req, fold, self.train_annotations)
            built = path is not None and path.exists() and not req.retrain
            rows.append(Row(f"{label} {training_mode(req.mode)} fit, fold {fold}", str(path or "(keyed by the new pseudo masks)"),
                            "reuse" if built else "build", pickled_bytes(self.mp.state) + 400, self.fit_s))
        seeds = request_seeds(req, preset)
        redo = req.force or req.retrain or self.test_annotations is None
        todo = seeds if redo else pending_seeds(req, preset, self.dataset, self.test_annotations, fold, seeds)
        if todo:
            episodes = preset.episodes * len(todo)
            sample = SAMPLE_EPISODES * req.way * (req.shot + 1) * self.mask_bytes
            rows.append(Row(f"{label} {req.mode} evaluation, fold {fold}: {len(todo)} run(s) × {preset.episodes} episodes",
                            str(record_path(req, preset, self.dataset, fold, todo[0]).parent), "build",
                            int(len(todo) * (RECORD_BYTES + sample)), None if self.episode_s is None else self.episode_s * episodes))
        return rows


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
    return Row(need.what, str(need.path), "build", need.bytes, _seconds(need.unit, need.count, probes), need.note)


def _seconds(unit, count, probes: dict) -> float | None:
    """Probe x count; None (shown "-") when the work has no probe."""
    if unit is None:
        return None
    if id(unit) not in probes:
        probes[id(unit)] = probe_seconds(unit)
    return probes[id(unit)] * count


def mask_png_bytes(dataset) -> float:
    """Bytes of one palette PNG mask of the dataset (its test masks encoded as records save them)."""
    from pseudo_labels.plan import mean_mask_png_bytes

    return mean_mask_png_bytes(dataset, dataset.ids("val"))
