"""Named, versioned protocol presets. Published FSS numbers differ partly because protocols do;
a preset fixes every choice that changes a number, and its name+version is printed in every table.
Sources of each setting: ../shared/BASELINES.md.

Image sizes (bench/data/sizes.py): `train_size` / `eval_size` square-resize every training / test
image (image bilinear, mask nearest); None keeps each image's own size, and then a batch may mix
sizes (real VOC: 500x375, 375x500, 500x333 ...): every method groups such batches by size. Scores
are taken at `eval_size` against the GT resized the same way (nearest).

Scoring conventions (bench/harness/metrics.py): `wacv22` (v2) and `panet2019` (v2) score as PANet's
util/metric.py does, because the WACV'22 paper evaluates "as PANet [46]": a way is scored only on
the queries whose GT holds its class (`absent_ways="skip"`) and FB-IoU adds the per-class sums
(`fbiou="per_class"`). v1 of both scored every way on every query with a merged foreground; their
records stay tabled as v1. `pfenet2020` and `hsnet2021` are 1-way protocols whose FB-IoU merges
the foreground; `quick` keeps v1's rules."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.core.errors import BenchError
from bench.harness.metrics import Conventions


SCORING_FIELDS = ("absent_ways", "fbiou", "disjoint")  # fields that do not change which episodes are drawn


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
    query_choice: str  # "random" classes and images, "cycle" through eligible queries (PFENet), "fixed" (episode_list)
    note: str = ""
    train_size: int | None = None  # square resize of training images (image bilinear, mask nearest); None = own size
    episode_list: str = ""  # fixed episodes: a folder under bench/data/protocols (or a path) of imgs_paths_{fold}_{shot}.txt
    absent_ways: str = "score"  # N-way scoring of a way absent from a query: "score" it or "skip" it (PANet)
    fbiou: str = "merged"  # FB-IoU foreground: "merged" over ways, or "per_class" sums (PANet's binary mIoU)
    # roles of pretrained networks that must not have seen a benchmark class (bench/harness/declared.py);
    # ImageNet trunks ("trunk") are the FSS convention and allowed, their classes stated in the record
    disjoint: tuple[str, ...] = ("cam", "saliency", "backbone")

    def conventions(self) -> Conventions:
        """The scoring conventions of this preset (bench/harness/metrics.py), pooled IoU."""
        return Conventions(self.absent_ways, self.fbiou)

    def small_object_rule(self) -> str:
        """What this preset does with small objects, in words (records carry the counts)."""
        sized = f"resized to {self.eval_size}x{self.eval_size}" if self.eval_size else "at their own size"
        if self.episode_list:
            rule = "the fixed lists' own rule (OSLSM: objects over 2 px after /32, applied when the lists were made)"
        elif self.min_fg_pixels:
            rule = f"support and query images need >= {self.min_fg_pixels} px of the class at original size"
        else:
            rule = "any image holding >= 1 px of the class at original size"
        return (f"{rule}; scored {sized}: a support or query whose object vanishes there is kept (a vanished query "
                f"can only score false positives under absent_ways=score and is skipped under skip); the record "
                f"counts such episodes")

    def seeds(self) -> list[int]:
        return [self.seed_base + r for r in range(self.runs)]

    def label(self) -> str:
        return f"{self.name}@v{self.version}"

    def as_dict(self) -> dict:
        return asdict(self)

    def episode_key(self) -> dict:
        """The fields an episode file's header holds: all but the scoring conventions, which do not
        change which episodes are drawn, and a fixed episode list only when there is one (so adding
        those fields left every earlier episode file's sha256 as it was)."""
        return {k: v for k, v in asdict(self).items()
                if k not in SCORING_FIELDS and not (k == "episode_list" and not v)}

    def training_key(self) -> dict:
        """The settings of this preset a fit depends on (with the fold's novel classes, which
        `coco_split` decides on COCO): presets that agree share one checkpoint."""
        return {k: getattr(self, k) for k in ("train_split", "novel_in_train", "train_size")}


PRESETS = {
    p.name: p
    for p in (
        Preset("wacv22", 2, "val", "train", 5, 1000, 1234, 0, "background", True, 129, "contiguous", "random",
               "seed paper: 129x129, 5 runs x 1000 episodes (PANet-style seeds 1234+r), test on val, scored as PANet",
               train_size=129, absent_ways="skip", fbiou="per_class"),
        Preset("wacv22-interleaved", 2, "val", "train", 5, 1000, 1234, 0, "background", True, 129, "interleaved", "random",
               "wacv22 with COCO-20i's interleaved folds (PFENet/HSNet: class i+1, i+5, ..., i+77 in fold i)",
               train_size=129, absent_ways="skip", fbiou="per_class"),
        Preset("panet2019", 2, "train", "train", 5, 1000, 1234, 0, "background", True, 417, "contiguous", "random",
               "PANet: test episodes drawn from the training image pool (trainaug), 417x417, PANet's scoring",
               train_size=417, absent_ways="skip", fbiou="per_class"),
        Preset("pfenet2020", 1, "val", "train", 1, 5000, 321, 2048, "background", True, None, "interleaved", "cycle",
               "PFENet: queries cycle over val images with >=2048 px of a novel class, original size; trains at 473x473",
               train_size=473),
        Preset("hsnet2021", 1, "val", "train", 1, 1000, 0, 0, "background", True, 400, "interleaved", "cycle",
               "HSNet: 1000 episodes, seed 0, 400x400", train_size=400),
        Preset("oslsm", 1, "val", "train", 1, 1000, 0, 0, "background", False, 500, "contiguous", "fixed",
               "the fixed OSLSM episodes as AMP evaluates them: 1000 per fold, 1-way 1/5-shot, VOC val, 500x500, "
               "255 as background", episode_list="amp_oslsm"),
        Preset("quick", 1, "val", "train", 1, 40, 0, 0, "background", True, None, "contiguous", "random",
               "smoke/CI: 1 run x 40 episodes, every image at its own size"),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        from bench.core.settings import did_you_mean

        raise BenchError(f"unknown preset '{name}'{did_you_mean(name, PRESETS)}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
