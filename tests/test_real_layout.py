"""Real-data layout with mixed image sizes: every registered method trains and evaluates in
both modes without a traceback, and caches follow the preset's sizes and the files' content."""
import dataclasses

import numpy as np
import pytest

from bench.harness.presets import PRESETS, get_preset
from bench.harness.registry import METHODS
from oracle import ORACLE
from real_layout import SIZES, mixed_size_voc
from test_contract import TINY as METHOD_TINY
from test_pseudo import TINY as PSEUDO_TINY

TINY = {**METHOD_TINY, ORACLE: {}}


@pytest.fixture(scope="module")
def voc_root(mini, tmp_path_factory):
    return mixed_size_voc(mini, tmp_path_factory.mktemp("real") / "VOC2012")


def _request(name, mode, voc_root, cache_dir, results, **kw):
    """The embedded profile's tiny schedules (the reference profile, pascal5i's default, is run by
    tests/test_profiles.py)."""
    from bench.harness.runner import RunRequest

    return RunRequest(method=name, mode=mode, dataset="pascal5i", data_root=voc_root, folds=(0,), preset="quick",
                      config=TINY[name], pseudo=PSEUDO_TINY if mode == "weak" else {}, cache_dir=cache_dir,
                      results_dir=results, **{"profile": "embedded", **kw})


def test_fixture_mixes_three_image_sizes(voc_root, cache_dir):
    from bench.data.datasets import pascal_dataset

    ds = pascal_dataset(voc_root)
    shapes = {ds.image(i).shape[:2] for split in ("train", "val") for i in ds.ids(split)}
    assert shapes == {(h, w) for w, h in SIZES}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "weak"])
@pytest.mark.parametrize("name", sorted(METHODS) + [ORACLE])
def test_every_method_runs_on_mixed_image_sizes(name, mode, voc_root, cache_dir, tmp_path, monkeypatch):
    """`quick` keeps every image at its own size: training batches and episodes mix 150x113,
    113x150 and 150x100 images. The run must finish, predict at each query's size (the runner
    checks) and, for 2-way episodes too, return label maps of the right shape."""
    from bench.data.datasets import get_dataset
    from bench.harness.episodes import build_episode_input, load_or_sample_episodes
    from bench.harness.views import FitView
    from bench.harness.annotations import annotation_source
    from bench.core.records import load_records
    from bench.harness.runner import fitted_method, run

    monkeypatch.setenv("WSFSS_PASCAL_ROOT", str(voc_root))  # the oracle's own GT handle opens it from there
    req = _request(name, mode, voc_root, cache_dir, tmp_path / "results")
    run(req, log=lambda *_: None)
    (record,) = [r for _, r in load_records(tmp_path / "results")]
    assert record.n_episodes == 40 and record.dataset == "pascal5i" and record.mode == mode
    if name == ORACLE:
        assert record.miou == pytest.approx(100.0)
    preset = get_preset("quick")
    dataset = get_dataset("pascal5i", cache_dir, voc_root)
    annotations = annotation_source(mode, dataset, cache_dir, req.pseudo)
    method = fitted_method(req, FitView(dataset, annotations, preset, 0, cache_dir), 0, annotations)  # the saved fit
    specs, _, _ = load_or_sample_episodes(cache_dir, preset, dataset, 0, 2, 1, 0)
    sizes = set()
    for spec in specs[:3]:
        episode = build_episode_input(spec, dataset, annotations, preset)
        sizes |= {im.shape for way in episode.support_images for im in way} | {im.shape for im in episode.query_images}
        preds = method.predict(episode)
        assert [p.shape for p in preds] == [q.shape[:2] for q in episode.query_images]
        assert all(p.dtype == np.uint8 and p.max() <= 2 for p in preds)
    assert len(sizes) >= 2  # the episodes really mixed sizes


@pytest.mark.parametrize("name", ["ours", "pfenet"])
def test_cached_features_follow_the_presets_sizes(name, voc_root, cache_dir, monkeypatch):
    """Under a resizing preset the feature cache holds test images at eval_size and training
    images at train_size, never at the files' own sizes; episodes read those entries."""
    from bench.harness.annotations import annotation_source
    from bench.data.datasets import get_dataset
    from bench.harness.episodes import build_episode_input, load_or_sample_episodes
    from bench.harness.views import FitView
    from bench.harness.registry import create_method

    preset = dataclasses.replace(get_preset("quick"), name="quick-resized", train_size=97, eval_size=81, episodes=4)
    monkeypatch.setitem(PRESETS, preset.name, preset)
    dataset = get_dataset("pascal5i", cache_dir, voc_root)
    annotations = annotation_source("full", dataset, cache_dir)
    train = FitView(dataset, annotations, preset, 0, cache_dir)
    method = create_method(name, TINY[name])
    stores = cache_dir / "features"
    before_fit = set(stores.rglob("*.npy")) if stores.is_dir() else set()
    method.fit(train, {})
    root = method.features.root
    made = {p.parent.name for p in set(root.rglob("*.npy")) - before_fit}
    assert made <= {"97x97", "81x81"}  # other presets' sizes may be there from earlier runs; none made now
    assert {p.stem for p in (root / "81x81").glob("*.npy")} == set(dataset.ids("val"))
    assert {p.stem for p in (root / "97x97").glob("*.npy")} >= set(train.ids)
    specs, _, _ = load_or_sample_episodes(cache_dir, preset, dataset, 0, 1, 1, 0)
    episode = build_episode_input(specs[0], dataset, annotations, preset)
    assert episode.query_images[0].shape == (81, 81, 3)
    before = sorted(p.name for p in root.rglob("*.npy"))
    assert method.predict(episode)[0].shape == (81, 81)
    assert sorted(p.name for p in root.rglob("*.npy")) == before  # nothing computed at another size


def test_a_fit_is_shared_by_presets_that_train_alike(voc_root, cache_dir):
    from bench.harness.annotations import annotation_source
    from bench.data.datasets import get_dataset
    from bench.harness.runner import RunRequest, checkpoint_path

    annotations = annotation_source("full", get_dataset("pascal5i", cache_dir, voc_root), cache_dir)

    def path(preset):
        req = RunRequest(method="panet", mode="full", dataset="pascal5i", data_root=voc_root, preset=preset, cache_dir=cache_dir)
        return checkpoint_path(req, 0, annotations)

    assert path("wacv22") == path("wacv22-interleaved")  # PASCAL: same novel classes, same 129 px training images
    assert len({path("wacv22"), path("quick"), path("panet2019")}) == 3  # 129 px, own size, 417 px


def test_fingerprints_follow_file_content_not_paths_or_times(mini, tmp_path, monkeypatch):
    """An edited mask is a new dataset fingerprint, so new pixel counts and new episodes (the old
    ones still drew the image for a class it no longer holds); a touched or moved tree is not, and
    only changed files are hashed again."""
    import os
    import shutil

    from bench.data import content
    from bench.data.datasets import class_pixel_counts, pascal_dataset
    from bench.harness.episodes import episode_file_path, load_or_sample_episodes

    root = mixed_size_voc(mini, tmp_path / "VOC2012")
    memo = tmp_path / "cache" / "index"
    fp = pascal_dataset(root, memo).fingerprint()
    hashed = []
    real_digest = content.file_digest
    monkeypatch.setattr(content, "file_digest", lambda p: (hashed.append(p.name), real_digest(p))[1])
    counts = class_pixel_counts(pascal_dataset(root, memo), "val", tmp_path / "cache")
    image_id, cls = next((i, c) for i, cc in counts.items() for c in cc if c <= 5)
    mask_file = root / "SegmentationClassAug" / f"{image_id}.png"
    os.utime(mask_file, ns=(1, 1))  # same bytes, new time: hashed again, same fingerprint
    assert pascal_dataset(root, memo).fingerprint() == fp and hashed == [mask_file.name]

    moved = tmp_path / "elsewhere" / "VOC2012"
    shutil.copytree(root, moved, symlinks=True)
    assert pascal_dataset(moved, memo).fingerprint() == fp

    ds = pascal_dataset(root, memo)
    preset = get_preset("quick")
    old_episodes = episode_file_path(tmp_path / "cache", preset, ds, 0, 1, 1, 0)
    from PIL import Image

    mask = np.array(Image.open(mask_file))
    mask[mask == cls] = 0
    Image.fromarray(mask, mode="L").save(mask_file)
    edited = pascal_dataset(root, memo)
    assert edited.fingerprint() != fp
    assert episode_file_path(tmp_path / "cache", preset, edited, 0, 1, 1, 0) != old_episodes
    assert cls not in class_pixel_counts(edited, "val", tmp_path / "cache")[image_id]
    episodes, _, _ = load_or_sample_episodes(tmp_path / "cache", preset, edited, 0, 1, 1, 0)
    for e in episodes:
        if e.class_ids[0] == cls:
            assert image_id not in e.query_ids and image_id not in e.support_ids[0]
    (root / "JPEGImages" / f"{image_id}.jpg").write_bytes((root / "JPEGImages" / f"{ds.ids('train')[0]}.jpg").read_bytes())
    assert pascal_dataset(root, memo).fingerprint() not in (fp, edited.fingerprint())  # images count too


def test_checkpoints_are_keyed_by_the_weight_files_content(voc_root, cache_dir, tmp_path):
    import torch

    from bench.harness.annotations import annotation_source
    from bench.data.datasets import get_dataset
    from bench.harness.runner import RunRequest, checkpoint_path

    annotations = annotation_source("full", get_dataset("pascal5i", cache_dir, voc_root), cache_dir)
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save({"w": torch.zeros(3)}, a)
    b.write_bytes(a.read_bytes())

    def path(weights):
        req = RunRequest(method="panet", mode="full", dataset="pascal5i", preset="wacv22", cache_dir=cache_dir,
                         config={"trunk_checkpoint": str(weights)})
        return checkpoint_path(req, 0, annotations)

    assert path(a) == path(b)  # the same bytes under two names: one fit
    before = path(a)
    torch.save({"w": torch.ones(3)}, a)  # new weights at the same path: a new fit
    assert path(a) != before
