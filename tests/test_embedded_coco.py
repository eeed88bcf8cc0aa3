"""The COCO-like embedded set openmoji20i: COCO ids, folds in both COCO-20i conventions minus the
classes without a glyph, a pool disjoint from all 80 COCO classes."""
import json
import re

import numpy as np
import pytest

from bench.data.classes import COCO_CLASSES
from bench.data.datasets import get_dataset
from bench.data.embedded.sprites import class_sources, coco_class_sources, pool_classes, render_sprite

MISSING = {"fire hydrant", "parking meter", "bench", "snowboard", "baseball bat", "baseball glove", "surfboard",
           "tennis racket", "remote", "microwave", "oven", "toaster", "sink", "refrigerator", "hair drier"}
COCO_WORDS = r"\b(" + "|".join(re.escape(w) for n in COCO_CLASSES for w in n.split()) + \
    r"|umbrellas?|apples?|tangerine|pizza|doughnut|cake|racquet|ski|football|softball|volleyball|necktie|purse|pouch|" \
    r"luggage|briefcase|phone|books?|ledger|lorry|bear|panda|trophy|glass|bat)\b"
# words of COCO names that are fine inside an unrelated pool name ("hot springs" would hit "hot";
# rice ball, crystal ball and ball of yarn are not sports balls)
HARMLESS = {"ball", "hot", "light", "sign", "stop", "meter", "dining", "potted", "cell", "drier", "hair", "wine", "teddy",
            "sports", "traffic", "fire", "parking", "baseball", "tennis", "glove"}


@pytest.fixture(scope="module")
def coco_mini(cache_dir):
    return get_dataset("openmoji20i-mini", cache_dir)


def test_classes_without_a_glyph_are_documented_and_in_no_fold(coco_mini):
    assert set(COCO_CLASSES) - set(coco_class_sources()) == MISSING
    missing_ids = {COCO_CLASSES.index(n) + 1 for n in MISSING}
    sizes = {split: [len(coco_mini.fold_classes(f, split)) for f in range(4)] for split in ("contiguous", "interleaved")}
    assert sizes == {"contiguous": [17, 15, 20, 13], "interleaved": [17, 16, 15, 17]}
    for split in ("contiguous", "interleaved"):
        folds = [set(coco_mini.fold_classes(f, split)) for f in range(4)]
        assert set().union(*folds) == set(range(1, 81)) - missing_ids and sum(map(len, folds)) == 65
    assert coco_mini.fold_classes(0, "interleaved")[:3] == [1, 5, 9]  # person, airplane, boat
    attribution = (coco_mini.root / "ATTRIBUTION.md").read_text()
    assert all(n in attribution for n in MISSING)


def test_masks_hold_coco_ids_of_classes_with_glyphs(coco_mini):
    labels = json.loads((coco_mini.root / "image_labels.json").read_text())
    present = set(coco_mini.present)
    seen = set()
    for image_id in coco_mini.ids("train") + coco_mini.ids("val"):
        mask = coco_mini.mask(image_id)
        ids = sorted(int(v) for v in np.unique(mask) if v not in (0, 255))
        assert ids == labels[image_id] and set(ids) <= present
        seen |= set(ids)
    assert seen == present  # every class with a glyph has images


def test_coco_pool_is_disjoint_from_every_coco_class():
    pool = pool_classes("coco")
    assert len(pool) == 201 and len(pool_classes()) == 250
    offenders = [name for _, name in pool
                 if any(w not in HARMLESS for w in re.findall(COCO_WORDS, name))]
    assert offenders == []
    coco_codepoints = {s.codepoints for srcs in coco_class_sources().values() for s in srcs}
    assert not coco_codepoints & {cp for cp, _ in pool}


def test_every_coco_sprite_renders_an_object():
    voc_keys = {s.key for srcs in class_sources().values() for s in srcs}
    for name, sources in coco_class_sources().items():
        for src in sources:
            if src.key in voc_keys:
                continue  # checked by test_embedded
            alpha = render_sprite(src)[..., 3]
            assert (alpha == 255).mean() > 0.1, (name, src)


def test_dataset_family_by_name_is_the_readers_family(coco_mini, mini):
    """Profiles pick their per-family values by dataset name, before a reader is opened."""
    from bench.data.datasets import dataset_family

    assert dataset_family(coco_mini.name) == coco_mini.family == "coco"
    assert dataset_family(mini.name) == mini.family == "pascal"
    assert dataset_family("coco20i") == "coco" and dataset_family("pascal5i") == "pascal"
