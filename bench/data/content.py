"""Content fingerprints of dataset files: what keys every cache built from a dataset (pixel
counts, episode files, pseudo masks, features, fits), so an edited mask or image is a new
fingerprint and never reuses an artefact of the old content.

Hashing every file of a real dataset takes a while (VOC: ~2 GB), so each file's digest is
remembered in a memo file under the cache folder, keyed by (size, mtime): a later run hashes
only the files that changed since.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.progress import progress


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def files_fingerprint(root: Path, paths: list[Path], memo_dir: Path | None, head: list[str], desc: str) -> str:
    """sha256 over `head` (names, list texts) and the content digest of every file in `paths`
    (relative to `root` in the memo). A missing file is one clear error naming it."""
    root = Path(root)
    memo_path = None if memo_dir is None else Path(memo_dir) / f"content-{_text_digest(str(root.resolve()))}.json"
    memo = _read_memo(memo_path)
    changed = False
    h = hashlib.sha256()
    for part in head:
        h.update(part.encode())
        h.update(b"\0")
    stale = []
    stats = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise BenchError(f"missing file {path}; fix: restore it or remove its id from the split list") from None
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        stats.append((rel, st.st_size, st.st_mtime_ns))
        known = memo.get(rel)
        if known is None or known[0] != st.st_size or known[1] != st.st_mtime_ns:
            stale.append((rel, path, st))
    for rel, path, st in progress(stale, desc=desc) if len(stale) > 200 else stale:
        memo[rel] = [st.st_size, st.st_mtime_ns, file_digest(path)]
        changed = True
    for rel, _, _ in stats:
        h.update(f"{rel}:{memo[rel][2]}\0".encode())
    if changed and memo_path is not None:
        from bench.core.files import atomic_write_text

        atomic_write_text(memo_path, json.dumps(memo))
    return h.hexdigest()[:16]


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_memo(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:  # a memo is only a speed-up: rebuild it
        return {}
