import hashlib
import json
import re
from collections import Counter

import numpy as np

from bench.data.classes import VOC_CLASSES
from bench.data.embedded.generate import EmbeddedSpec, generate
from bench.data.embedded.sprites import WEAK_CLASSES, class_sources, pool_classes, render_sprite, source_counts

TINY = EmbeddedSpec(train_per_class=2, val_per_class=1, pool_train_per_class=1, pool_val_per_class=1, n_pool_classes=10)


def tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_identical_files(tmp_path):
    a = generate(tmp_path / "a", TINY, workers=2)
    b = generate(tmp_path / "b", TINY, workers=1)
    assert tree_digest(a) == tree_digest(b)
    c = generate(tmp_path / "c", EmbeddedSpec(**{**TINY.__dict__, "seed": 1}), workers=1)
    assert tree_digest(c) != tree_digest(a)


def test_layout_and_labels_agree_with_masks(mini):
    root = mini.root
    labels = json.loads((root / "image_labels.json").read_text())
    for split in ("train", "val"):
        for image_id in mini.ids(split)[:40]:
            mask = mini.mask(image_id)
            assert mini.image(image_id).shape == (129, 129, 3)
            present = sorted(int(v) for v in np.unique(mask) if v not in (0, 255))
            assert present == labels[image_id]
            assert set(np.unique(mask)) <= set(range(21)) | {255}
    assert (root / "ATTRIBUTION.md").read_text().count("CC BY-SA 4.0") >= 1
    assert (root / "pool" / "classes.txt").is_file()


def test_every_class_is_balanced_in_the_mini_set(mini):
    labels = json.loads((mini.root / "image_labels.json").read_text())
    for split, minimum in (("train", 10), ("val", 6)):
        counts = Counter(c for i in mini.ids(split) for c in labels[i])
        assert set(counts) == set(range(1, 21))
        assert min(counts.values()) >= minimum


def test_every_source_renders_with_alpha():
    for name, sources in class_sources().items():
        assert name in VOC_CLASSES
        for src in sources:
            rgba = render_sprite(src)
            alpha = rgba[..., 3]
            assert rgba.ndim == 3 and (alpha == 255).mean() > 0.1, src


def test_weak_classes_are_exactly_those_with_few_sources():
    few = {n for n, c in source_counts().items() if sum(c.values()) < 3}
    assert few == set(WEAK_CLASSES)


VOC_WORDS = r"\b(aeroplane|airplane|plane|bicycle|bike|bird|boat|ship|bottle|bus|car|automobile|taxi|cat|kitten|chair|seat|cow|ox|cattle|table|dog|puppy|poodle|horse|pony|motorbike|motorcycle|scooter|person|man|woman|people|potted plant|sheep|ram|lamb|sofa|couch|train|locomotive|tram|television|tv|monitor|computer)\b"


def test_pool_has_no_benchmark_class_or_synonym():
    pool = pool_classes()
    assert 100 <= len(pool) <= 254
    offenders = [name for _, name in pool if re.search(VOC_WORDS, name)]
    assert offenders == []
    voc_codepoints = {s.codepoints for srcs in class_sources().values() for s in srcs}
    assert not voc_codepoints & {cp for cp, _ in pool}


def test_a_killed_builders_staging_folder_is_cleared_by_the_next_build(tmp_path):
    # SIGTERM or SIGKILL runs no `finally`: the staging folder stays; the next builder owns the
    # lock, so it clears that folder instead of building beside it or leaving it for good
    from bench.core.files import staging_folder

    stale = staging_folder(tmp_path / TINY.folder_name())
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "half.png").write_bytes(b"\x89PNG half")
    root = generate(tmp_path, TINY, workers=1)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([root.name, root.name + ".lock"])
    assert not list(root.rglob("half.png"))
