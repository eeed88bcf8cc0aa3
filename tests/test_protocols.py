"""Episode protocols: the fixed OSLSM episodes (AMP's lists, shipped as data) parse as published and
run on the real-layout fixture from a synthetic list; each preset's small-object rule is stated and
the episodes it affects are counted in the record."""
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.core.records import load_records
from bench.harness.episodes import PROTOCOLS, fixed_episodes, load_or_sample_episodes, query_ground_truth
from bench.harness.presets import PRESETS, get_preset
from oracle import ORACLE
from real_layout import mixed_size_voc


@pytest.mark.parametrize("fold,shot", [(0, 1), (3, 5)])
def test_the_shipped_oslsm_lists_parse_into_1000_episodes_of_the_fold(fold, shot):
    path = PROTOCOLS / "amp_oslsm" / f"imgs_paths_{fold}_{shot}.txt"
    ids = {Path(line).stem for line in path.read_text().splitlines() if line.startswith("/")}
    classes = list(range(5 * fold + 1, 5 * fold + 6))
    episodes = fixed_episodes(path, SimpleNamespace(name="pascal5i"), classes, ids, fold, 1, shot)
    assert len(episodes) == 1000 and {e.class_ids[0] for e in episodes} == set(classes)
    assert all(len(e.support_ids[0]) == shot and e.query_ids[0] not in e.support_ids[0] for e in episodes)
    first = path.read_text().splitlines()
    assert episodes[0].support_ids[0] == tuple(Path(l).stem for l in first[:shot])
    assert episodes[0].query_ids[0] == Path(first[shot]).stem


def write_oslsm_list(folder: Path, dataset, fold: int, shot: int) -> list[tuple]:
    """A list in OSLSM's format over the fixture's val images: per fold class, supports then query."""
    folder.mkdir(parents=True, exist_ok=True)
    lines, made = [], []
    for c in dataset.fold_classes(fold):
        holding = [i for i in dataset.ids("val") if (dataset.mask(i) == c).any()][: shot + 1]
        if len(holding) < shot + 1:
            continue
        lines += [f"/JPEGImages/{i}.jpg" for i in holding] + [f"/SegmentationClassAug/{i}.png" for i in holding]
        lines.append(f"Iteration {len(made)} {c}")
        made.append((tuple(holding[:shot]), holding[shot], c))
    (folder / f"imgs_paths_{fold}_{shot}.txt").write_text("\n".join(lines) + "\n")
    return made


def test_the_oslsm_preset_runs_a_synthetic_list_on_the_real_layout(mini, cache_dir, tmp_path, monkeypatch):
    from bench.data.datasets import get_dataset
    from bench.harness.runner import RunRequest, run

    root = mixed_size_voc(mini, tmp_path / "VOC2012")
    dataset = get_dataset("pascal5i", cache_dir, root)
    made = write_oslsm_list(tmp_path / "lists", dataset, 0, 1)
    assert len(made) >= 3
    preset = dataclasses.replace(get_preset("oslsm"), episode_list=str(tmp_path / "lists"))
    monkeypatch.setitem(PRESETS, "oslsm", preset)
    monkeypatch.setenv("WSFSS_PASCAL_ROOT", str(root))
    run(RunRequest(method=ORACLE, mode="full", dataset="pascal5i", data_root=root, folds=(0,), preset="oslsm",
                   cache_dir=cache_dir, results_dir=tmp_path / "results"), log=lambda *_: None)
    [(_, record)] = load_records(tmp_path / "results")
    assert record.preset == "oslsm@v1" and record.n_episodes == len(made) and record.seed == 0
    assert record.miou == pytest.approx(100.0)  # the oracle, scored at 500x500 with 255 as background
    episodes, sha, path = load_or_sample_episodes(cache_dir, preset, dataset, 0, 1, 1, 0)
    assert [(e.support_ids[0], e.query_ids[0], e.class_ids[0]) for e in episodes] == made
    assert sha == record.episode_sha256 and '"list_sha256"' in path.read_text().splitlines()[0]
    assert "fixed lists' own rule" in record.small_objects["rule"]
    with pytest.raises(Exception, match="has no fixed episode list .*imgs_paths_0_5.txt"):
        load_or_sample_episodes(cache_dir, preset, dataset, 0, 1, 5, 0)
    with pytest.raises(Exception, match="are 1-way"):
        load_or_sample_episodes(cache_dir, preset, dataset, 0, 2, 1, 0)


def test_a_list_naming_an_image_the_dataset_lacks_is_one_clear_error(mini, cache_dir, tmp_path):
    from bench.data.datasets import get_dataset

    root = mixed_size_voc(mini, tmp_path / "VOC2012")
    dataset = get_dataset("pascal5i", cache_dir, root)
    write_oslsm_list(tmp_path / "lists", dataset, 0, 1)
    path = tmp_path / "lists" / "imgs_paths_0_1.txt"
    path.write_text(path.read_text().replace("/JPEGImages/", "/JPEGImages/x", 1))
    preset = dataclasses.replace(get_preset("oslsm"), episode_list=str(tmp_path / "lists"))
    with pytest.raises(Exception, match=r"imgs_paths_0_1.txt:\d+: image x.* is not in pascal5i's test images"):
        load_or_sample_episodes(tmp_path / "cache", preset, dataset, 0, 1, 1, 0)


def test_vanished_objects_are_counted_in_the_record(mini, cache_dir, tmp_path, monkeypatch):
    """Scored at 6x6 many objects vanish; the record's counts equal a count made here from the GT."""
    from bench.harness.runner import RunRequest, run

    tiny = dataclasses.replace(get_preset("quick"), name="quick-6px", eval_size=6)
    monkeypatch.setitem(PRESETS, tiny.name, tiny)
    run(RunRequest(method="background", mode="full", dataset="openmoji5i-mini", folds=(0,), preset=tiny.name,
                   cache_dir=cache_dir, results_dir=tmp_path), log=lambda *_: None)
    [(_, record)] = load_records(tmp_path)
    episodes, _, _ = load_or_sample_episodes(cache_dir, tiny, mini, 0, 1, 1, 0)
    queries = sum(not (query_ground_truth(e, mini, tiny)[0] == 1).any() for e in episodes)
    assert 0 < queries == record.small_objects["vanished_query"] and record.small_objects["episodes"] == 40
    assert record.small_objects["vanished_support"] == record.small_objects["empty_support_mask"] > 0  # full mode: the same masks
    assert "resized to 6x6" in record.small_objects["rule"]
