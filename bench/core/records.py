"""Run records: one JSON file per (method, mode, dataset, preset, fold, way, shot, seed).
Tables are built from these files alone. Writes are atomic: a temp file in the same folder,
fsync, then rename, so an interrupted write never leaves a partial record."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.core.curves import judged
from bench.core.errors import BenchError
from bench.core.files import atomic_write_text

RECORD_VERSION = 1


@dataclass
class RunRecord:
    method: str
    mode: str
    dataset: str
    preset: str  # name@version
    fold: int
    way: int
    shot: int
    seed: int
    class_ids: list[int]
    inter: dict[str, int]  # per class id, every way scored on every query (absent_ways=score)
    union: dict[str, int]
    fb_inter: list[int]
    fb_union: list[int]
    miou: float
    fbiou: float
    class_iou: dict[str, float]
    n_episodes: int
    episode_sha256: str
    annotation_fingerprint: str
    dataset_fingerprint: str
    config: dict
    preset_config: dict
    versions: dict = field(default_factory=dict)
    git_commit: str = ""
    timings: dict = field(default_factory=dict)
    method_config: dict = field(default_factory=dict)  # every setting the method ran with, defaults included
    pseudo: dict = field(default_factory=dict)  # weak mode: pseudo-label settings that differ from the defaults
    input_files: dict = field(default_factory=dict)  # setting -> sha256 of the weight file it names
    device: str = ""  # where the method ran (cpu, cuda:0)
    torch_threads: dict = field(default_factory=dict)  # {"fit": n, "eval": m}: CPU results depend on them
    method_source: str = ""  # "module:Class" the method came from (built-in, entry point or module path)
    inter_skip: dict = field(default_factory=dict)  # per class id, a way scored only where the query holds it (PANet)
    union_skip: dict = field(default_factory=dict)
    episode_iou: dict = field(default_factory=dict)  # {"score"|"skip": {class id: [sum of per-episode IoU, episodes]}}
    supervision: dict = field(default_factory=dict)  # the mode's train_masks, support_masks (gt|pseudo), query_class_given
    small_objects: dict = field(default_factory=dict)  # the preset's rule in words and counts of affected episodes
    placement: dict = field(default_factory=dict)  # device asked for, CUDA_VISIBLE_DEVICES (bench/core/device.py)
    networks: dict = field(default_factory=dict)  # role -> weight file and the classes it saw (bench/harness/declared.py)
    leaks: dict = field(default_factory=dict)  # role -> benchmark classes it saw (--allow-leak); tables mark the row ‡
    pinning: dict = field(default_factory=dict)  # {"fit": ..., "eval": ...}: CPU code paths and threads (bench/core/pinning.py)
    fit: dict = field(default_factory=dict)  # the fit's curve and convergence verdict (bench/core/curves.py)
    recipes: dict = field(default_factory=dict)  # the fit's optimizer and the recipes of the networks under it (bench/core/optim.py recipes_of)
    profile: str = "embedded"  # the training schedule's profile (bench/core/profiles.py)
    profile_settings: dict = field(default_factory=dict)  # setting -> {"value", "source"} the profile gave
    record_version: int = RECORD_VERSION

    def write(self, results_dir: Path) -> Path:
        path = Path(results_dir) / record_relpath(self.dataset, self.preset, self.method, self.config, self.profile,
                                                  self.mode, self.pseudo, self.fold, self.way, self.shot, self.seed)
        atomic_write_text(path, json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")
        return path


def _override_suffix(overrides: dict | None) -> str:
    # '/' would open a sub-folder (a path-valued override)
    return "".join(f"+{k}={str(v).replace('/', '_')}" for k, v in sorted((overrides or {}).items()))


def named_config(config: dict, profile: str | None) -> dict:
    """The settings a record's folder is named by: the --set values, and the profile when it is not
    `embedded` (so two profiles' records never overwrite each other)."""
    return {**config, **({"profile": profile} if profile not in (None, "embedded") else {})}


def variant_label(method: str, config: dict | None = None) -> str:
    """'ours', or 'ours+k=5' for a run with --set overrides: a variant has its own records (and
    its own row in tables), so running one never replaces the default's numbers."""
    return method + _override_suffix(config)


def mode_label(mode: str, pseudo: dict | None = None) -> str:
    """'weak', or 'weak+saliency=none' for weak runs on non-default pseudo masks (an ablation)."""
    return mode + _override_suffix(pseudo)


def record_relpath(dataset: str, preset: str, method: str, config: dict, profile: str | None, mode: str, pseudo: dict | None,
                   fold: int, way: int, shot: int, seed: int) -> Path:
    """Where a cell's record lives under a results folder: its row (the method with its --set
    values and a non-embedded profile) and its mode (with its --pseudo-set values) name folders, so
    run records, their controls and the runner's finished-cell check agree on one path."""
    row = variant_label(method, named_config(config, profile))
    return Path(dataset) / preset / row / mode_label(mode, pseudo) / f"fold{fold}_{way}way_{shot}shot_seed{seed}.json"


MANIFEST = "published.json"  # marks a published set: records committed to git, each file's sha256


def record_files(results_dir: Path, pattern: str = "*.json") -> list[Path]:
    """The files matching `pattern` under `results_dir`, but none of a published set nested in it
    (results/published/...: `bench table` on results/ tables this machine's runs, not the committed
    ones beside them). Read from inside a published set, every file is first checked against the
    set's manifest: a published number was made by a run, never edited by hand."""
    results_dir = Path(results_dir)
    root = published_root(results_dir)
    if root is not None:
        check_published(root, results_dir)
    nested = {m.parent for m in results_dir.rglob(MANIFEST)} - {results_dir}
    return sorted(p for p in results_dir.rglob(pattern)
                  if p.name != MANIFEST and not nested.intersection(p.parents))


def published_root(folder: Path) -> Path | None:
    """The published set `folder` is in (itself or a parent holding a manifest), or None."""
    folder = Path(folder).resolve()
    return next((f for f in (folder, *folder.parents) if (f / MANIFEST).is_file()), None)


def writable_results(results_dir: Path) -> Path:
    """`results_dir`, unless it is in a published set: a run writes there only through `bench publish`."""
    root = published_root(results_dir)
    if root is not None:
        raise BenchError(f"results folder {results_dir} is in the published set {root} ({MANIFEST}); fix: run into "
                         f"another folder (default results/) and copy the records with `bench publish --to {root}`")
    return Path(results_dir)


def published_files(root: Path) -> dict[str, str]:
    """A published set's manifest: relative path -> sha256 of the file."""
    try:
        return dict(json.loads((Path(root) / MANIFEST).read_text())["files"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BenchError(f"unreadable manifest {Path(root) / MANIFEST} ({exc}); fix: `git checkout -- {root}` "
                         f"or publish the set again") from None


def check_published(root: Path, under: Path) -> None:
    """Stops on a file under `under` that its set's manifest does not vouch for: edited, added by
    hand, or listed and gone (a table would lose that cell without a word)."""
    root, under = Path(root).resolve(), Path(under).resolve()
    listed = {rel: sha for rel, sha in published_files(root).items() if (root / rel).resolve().is_relative_to(under)}
    present = {p.relative_to(root).as_posix(): p for p in under.rglob("*.json") if p.name != MANIFEST}
    for rel, path in sorted(present.items()):
        if rel not in listed:
            raise BenchError(f"{path} is in the published set {root} but not in its manifest; fix: publish it with "
                             f"`bench publish --to {root}` or remove it")
        if file_sha256(path) != listed[rel]:
            raise BenchError(f"published record {path} differs from the sha256 its manifest {root / MANIFEST} gives; "
                             f"fix: `git checkout -- {path}`, or re-run that cell and `bench publish --replace` it")
    for rel in sorted(set(listed) - set(present)):
        raise BenchError(f"{root / MANIFEST} lists {rel}, which is missing; fix: `git checkout -- {root}` or publish the set again")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_records(results_dir: Path) -> list[tuple[Path, RunRecord]]:
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(f"results folder {results_dir} does not exist; fix: run `bench run ...` first or pass --results-dir")
    out = []
    for path in record_files(results_dir):
        try:
            raw = json.loads(path.read_text())
            if raw.get("record_type") is not None:  # e.g. pseudo-mask quality records, tabled separately
                continue
            record = RunRecord(**raw)
            record.fit = judged(record.fit)  # the current rule on the stored curve
            out.append((path, record))
        except (json.JSONDecodeError, TypeError) as exc:
            raise BenchError(f"unreadable run record {path} ({exc}); fix: delete it and re-run that cell") from None
    return out
