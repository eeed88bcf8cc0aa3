"""Named, versioned protocol presets. Published FSS numbers differ partly because protocols do;
a preset fixes every choice that changes a number, and its name+version is printed in every table.
Sources of each setting: ../shared/BASELINES.md.

Image sizes (bench/data/sizes.py): `train_size` / `eval_size` square-resize every training / test
image (image bilinear, mask nearest); None keeps each image's own size, and then a batch may mix
sizes (real VOC: 500x375, 375x500, 500x333 ...): every method groups such batches by size. Scores
are taken at `eval_size` against the GT resized the same way (nearest)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.core.errors import BenchError


@dataclass(frozen=True)
class Preset:
    name: str
    version: int
    test_split: str  # images of test episodes: "val", or "train" (PANet samples from trainaug)
    train_split: str
    runs: int
    episodes: int  # per run
    seed_base: int  # run r uses seed_base + r
    min_fg_pixels: int  # a support/query image needs at least this many pixels of its class
    novel_in_train: str  # "background": novel pixels -> 0 in training masks; "drop": such images removed
    ignore_255: bool  # False: 255 counts as background in scoring (AMP)
    eval_size: int | None  # square resize for evaluation (image bilinear, mask nearest); None = original
    coco_split: str  # "contiguous" (PANet) or "interleaved" (PFENet/HSNet)
    query_choice: str  # "random" classes and images, or "cycle" through eligible queries (PFENet)
    note: str = ""
    train_size: int | None = None  # square resize of training images (image bilinear, mask nearest); None = own size

    def seeds(self) -> list[int]:
        return [self.seed_base + r for r in range(self.runs)]

    def label(self) -> str:
        return f"{self.name}@v{self.version}"

    def as_dict(self) -> dict:
        return asdict(self)

    def training_key(self) -> dict:
        """The settings of this preset a fit depends on (with the fold's novel classes, which
        `coco_split` decides on COCO): presets that agree share one checkpoint."""
        return {k: getattr(self, k) for k in ("train_split", "novel_in_train", "train_size")}


PRESETS = {
    p.name: p
    for p in (
        Preset("wacv22", 1, "val", "train", 5, 1000, 1234, 0, "background", True, 129, "contiguous", "random",
               "seed paper: 129x129, 5 runs x 1000 episodes (PANet-style seeds 1234+r), test on val", train_size=129),
        Preset("wacv22-interleaved", 1, "val", "train", 5, 1000, 1234, 0, "background", True, 129, "interleaved", "random",
               "wacv22 with COCO-20i's interleaved folds (PFENet/HSNet: class i+1, i+5, ..., i+77 in fold i)", train_size=129),
        Preset("panet2019", 1, "train", "train", 5, 1000, 1234, 0, "background", True, 417, "contiguous", "random",
               "PANet: test episodes drawn from the training image pool (trainaug), 417x417", train_size=417),
        Preset("pfenet2020", 1, "val", "train", 1, 5000, 321, 2048, "background", True, None, "interleaved", "cycle",
               "PFENet: queries cycle over val images with >=2048 px of a novel class, original size; trains at 473x473",
               train_size=473),
        Preset("hsnet2021", 1, "val", "train", 1, 1000, 0, 0, "background", True, 400, "interleaved", "cycle",
               "HSNet: 1000 episodes, seed 0, 400x400", train_size=400),
        Preset("quick", 1, "val", "train", 1, 40, 0, 0, "background", True, None, "contiguous", "random",
               "smoke/CI: 1 run x 40 episodes, every image at its own size"),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        from bench.core.settings import did_you_mean

        raise BenchError(f"unknown preset '{name}'{did_you_mean(name, PRESETS)}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
