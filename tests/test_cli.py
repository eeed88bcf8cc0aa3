import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import build_parser, main
from bench.harness.episodes import load_or_sample_episodes, query_ground_truth
from bench.harness.presets import PRESETS
from bench.core.records import load_records
from bench.core.files import atomic_write_text
from oracle import ORACLE


def bench(cache_dir, *args):
    return main(["--cache-dir", str(cache_dir), *args])


def run_args(results, method, *extra):
    return ["run", "--method", method, "--mode", "full", "--dataset", "openmoji5i-mini", "--preset", "quick",
            "--results-dir", str(results), *extra]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_repeated_fold_flags_add_up(command):
    def parse(*flags):
        return build_parser().parse_args([command, "--method", ORACLE, *flags])

    assert parse("--fold", "2", "--fold", "0,3", "--fold", "2").fold == (2, 0, 3)
    assert parse("--fold", "all").fold == (0, 1, 2, 3)
    assert parse().fold is None  # run reads None as every fold, sweep as "the grid's folds"


def test_oracle_scores_100_and_table_shows_it(mini, cache_dir, tmp_path, capsys):
    results = tmp_path / "results"
    assert bench(cache_dir, *run_args(results, ORACLE, "--way", "2", "--shot", "1")) == 0
    records = [r for _, r in load_records(results)]
    assert len(records) == 4
    for r in records:
        assert r.miou == 100.0 and r.fbiou == 100.0 and len(r.episode_sha256) == 64
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(results)) == 0
    table = capsys.readouterr().out
    assert table.count("100.0") == 5  # four folds and the mean
    assert "2-way 1-shot" in table and "quick@v1" in table


def test_background_scores_the_hand_computed_value(mini, cache_dir, tmp_path):
    results = tmp_path / "results"
    assert bench(cache_dir, *run_args(results, "background", "--fold", "1")) == 0
    [(_, record)] = load_records(results)
    episodes, sha, _ = load_or_sample_episodes(cache_dir, PRESETS["quick"], mini, 1, 1, 1, 0)
    assert sha == record.episode_sha256
    bg_inter = bg_union = 0
    for spec in episodes:
        for gt in query_ground_truth(spec, mini, PRESETS["quick"]):
            valid = gt != 255
            bg_inter += int(((gt == 0) & valid).sum())
            bg_union += int(valid.sum())
    assert record.miou == 0.0
    assert record.fbiou == pytest.approx(100 * bg_inter / bg_union / 2)


def test_saved_predictions_rescore_to_the_record(mini, cache_dir, tmp_path):
    results, preds = tmp_path / "results", tmp_path / "preds"
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "3", "--save-predictions", str(preds))) == 0
    [(_, record)] = load_records(results)
    folder = preds / "openmoji5i-mini_fold3_seed0"
    rows = list(csv.DictReader(open(folder / "index.csv")))
    assert len(rows) == record.n_episodes
    inter = union = 0
    for row in rows:
        pred = np.array(Image.open(folder / row["file"]))
        c = int(row["class_ids"])
        gt = mini.mask(row["query_id"])
        valid = gt != 255
        inter += int(((pred == 1) & (gt == c) & valid).sum())
        union += int((((pred == 1) | (gt == c)) & valid).sum())
    assert inter == union > 0


def test_unknown_method_suggests_and_exits_2(cache_dir, tmp_path, capsys):
    assert bench(cache_dir, *run_args(tmp_path / "r", "backgrond")) == 2
    err = capsys.readouterr().err
    assert "did you mean 'background'" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_bad_pseudo_label_settings_are_clear_errors(cache_dir, tmp_path, capsys):
    weak = run_args(tmp_path / "r", "background")
    weak[weak.index("full")] = "weak"
    assert bench(cache_dir, *weak, "--pseudo-set", "saliency=onnx") == 2
    assert "saliency=onnx needs a model file" in capsys.readouterr().err
    assert bench(cache_dir, *weak, "--pseudo-set", "words=fasttext", "--pseudo-set", "words_path=/no/cc.en.300.bin") == 2
    assert "/no/cc.en.300.bin not found" in capsys.readouterr().err
    assert bench(cache_dir, *run_args(tmp_path / "r", "background"), "--pseudo-set", "saliency=none") == 2
    assert "only applies to modes that use pseudo masks" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "rec" / "fold0.json"
    atomic_write_text(target, "old")

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new contents")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["fold0.json"]


def test_a_staged_folder_replaces_its_target_only_when_complete(tmp_path):
    from bench.core.files import staged_folder, staging_folder

    final = tmp_path / "masks"
    final.mkdir()
    (final / "old.png").write_text("old")
    staging_folder(final).mkdir()
    (staging_folder(final) / "stale.png").write_text("a killed builder's")
    with pytest.raises(RuntimeError):
        with staged_folder(final) as tmp:
            assert list(tmp.iterdir()) == []  # the killed builder's file is gone
            (tmp / "half.png").write_text("half")
            raise RuntimeError("crash while building")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"] and [p.name for p in final.iterdir()] == ["old.png"]
    with staged_folder(final) as tmp:
        (tmp / "new.png").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"] and [p.name for p in final.iterdir()] == ["new.png"]


def test_sigterm_unwinds_the_command_and_leaves_no_temp_file(tmp_path):
    """`timeout` and schedulers stop a run with SIGTERM, whose default ends Python with no cleanup:
    an atomic write then left its hidden `.tmp` beside the target. The CLI raises it as an interrupt
    instead: the write is undone, the exit code is the shell's 143, the interrupt line is printed."""
    import signal
    import subprocess
    import sys

    source = Path(__file__).parent / "data" / "records_b698898"
    target = tmp_path / "published"
    # publish's first write (its manifest) stops in fsync until the signal comes
    script = ("import os, sys, time\n"
              "def slow(fd):\n    print('writing', flush=True); time.sleep(120)\n"
              "os.fsync = slow\n"
              "from bench.cli import main\n"
              f"sys.exit(main(['publish', '--results-dir', {str(source)!r}, '--to', {str(target)!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted; finished records are kept" in err
    assert target.is_dir() and not list(target.rglob("*"))


def test_table_refuses_records_from_different_episodes(mini, cache_dir, tmp_path, capsys):
    results = tmp_path / "results"
    assert bench(cache_dir, *run_args(results, "background", "--fold", "0")) == 0
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "0")) == 0
    path = next(results.rglob("oracle/full/*.json"))
    raw = json.loads(path.read_text())
    raw["episode_sha256"] = "0" * 64
    path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(results)) == 2
    err = capsys.readouterr().err
    assert "incompatible records" in err and "background" in err and "oracle" in err


def test_table_formats(mini, cache_dir, tmp_path, capsys):
    results = tmp_path / "results"
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "0")) == 0
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(results), "--format", "csv") == 0
    csv_out = capsys.readouterr().out
    assert "method,full 5^0,full mean" in csv_out and "oracle,100.0," in csv_out
    assert bench(cache_dir, "table", "--results-dir", str(results), "--format", "latex") == 0
    assert "\\toprule" in capsys.readouterr().out


def test_data_show_writes_a_contact_sheet(mini, cache_dir, tmp_path):
    out = tmp_path / "sheet.png"
    assert bench(cache_dir, "data", "show", "--dataset", "openmoji5i-mini", "--n", "8", "--out", str(out)) == 0
    assert Image.open(out).size == (8 * 129, 129 + 14)


@pytest.mark.slow
def test_readme_oracle_run_on_the_default_dataset(tmp_path, capsys):
    """The issue's acceptance run: default embedded dataset generated from scratch, quick preset."""
    cache, results = tmp_path / "cache", tmp_path / "results"
    assert bench(cache, "run", "--method", ORACLE, "--mode", "full", "--preset", "quick", "--results-dir", str(results)) == 0
    capsys.readouterr()
    assert bench(cache, "table", "--results-dir", str(results)) == 0
    row = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("| oracle"))
    assert [c.strip() for c in row.strip("|").split("|")][1:] == ["100.0"] * 5
    # the size guarantees for the default set: >=150 train / >=50 val images per class,
    # a pool of >=100 classes with >=30 train images each
    from collections import Counter

    [root] = list((cache / "datasets").glob("openmoji5i-v1-seed0"))
    for sub, split, n_classes, minimum in (("", "train", 20, 150), ("", "val", 20, 50), ("pool", "train", 100, 30)):
        labels = json.loads((root / sub / "image_labels.json").read_text())
        ids = (root / sub / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()
        counts = Counter(c for i in ids for c in labels[i])
        assert len(counts) >= n_classes and min(counts.values()) >= minimum, (sub, split)


def test_rerun_keeps_matching_records_and_force_recomputes(mini, cache_dir, tmp_path, capsys):
    results = tmp_path / "results"
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "0")) == 0
    n = len(list(results.rglob("*.json")))
    assert f"wrote {n} record(s) under" in capsys.readouterr().out
    path = next(results.rglob("*.json"))
    before = path.stat().st_mtime_ns
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "0")) == 0
    out = capsys.readouterr().out
    assert "kept" in out and path.stat().st_mtime_ns == before
    assert f"wrote 0 record(s), kept {n} existing under" in out  # the summary says what the run did
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "0", "--force")) == 0
    assert path.stat().st_mtime_ns != before and f"wrote {n} record(s) under" in capsys.readouterr().out
    # a different config is a different cell content: recomputed, not kept
    raw = json.loads(path.read_text())
    raw["config"] = {"k": 1}
    path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "0")) == 0
    assert "kept" not in capsys.readouterr().out


def test_run_counts_the_records_it_wrote_not_those_another_job_writes_meanwhile(mini, cache_dir, tmp_path, capsys,
                                                                                   monkeypatch):
    from bench.harness import runner

    results = tmp_path / "results"
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "0")) == 0
    n = len(list(results.rglob("*.json")))
    other = next(results.rglob("*.json"))  # stands for a record a sweep into the same folder rewrites
    evaluate = runner.evaluate_run

    def evaluate_while_another_job_writes(*args, **kwargs):
        time.sleep(0.01)
        other.write_text(other.read_text())
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate_run", evaluate_while_another_job_writes)
    before = other.stat().st_mtime_ns
    capsys.readouterr()
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "1")) == 0
    assert other.stat().st_mtime_ns != before  # the other job did write meanwhile
    # a listing of the folder around the run would say "wrote n+1"
    assert f"wrote {n} record(s) under" in capsys.readouterr().out
    assert bench(cache_dir, *run_args(results, ORACLE, "--fold", "0", "--fold", "1")) == 0
    assert f"wrote 0 record(s), kept {2 * n} existing under" in capsys.readouterr().out


def test_a_dry_run_plans_what_the_run_then_does_with_saved_predictions(mini, cache_dir, tmp_path, capsys):
    results, tiny = tmp_path / "results", ["--fold", "0", "--set", "iterations=2 trunk_epochs=1"]
    assert bench(cache_dir, *run_args(results, "panet", *tiny)) == 0
    capsys.readouterr()
    assert bench(cache_dir, *run_args(results, "panet", *tiny, "--dry-run")) == 0
    assert "evaluation, fold 0" not in capsys.readouterr().out  # every record kept
    # saving predictions re-evaluates kept cells (a record holds none): the plan says so
    saved = ["--save-predictions", str(tmp_path / "preds")]
    assert bench(cache_dir, *run_args(results, "panet", *tiny, "--dry-run", *saved)) == 0
    assert "evaluation, fold 0" in capsys.readouterr().out
    assert bench(cache_dir, *run_args(results, "panet", *tiny, *saved)) == 0
    assert "wrote 1 record(s) under" in capsys.readouterr().out and any((tmp_path / "preds").rglob("*.png"))


def test_several_overrides_after_one_set_flag():
    from bench.core.settings import parse_overrides

    args = build_parser().parse_args(["run", "--method", "ours", "--set", "k=3", "loss=eq5", "--set", "lr=0.01",
                                      "--pseudo-set", "saliency=none threshold=0.1"])
    assert parse_overrides(args.overrides) == {"k": 3, "loss": "eq5", "lr": 0.01}
    assert parse_overrides(args.pseudo) == {"saliency": "none", "threshold": 0.1}


def test_device_flag_runs_on_the_cpu_and_refuses_what_is_not_here(mini, cache_dir, tmp_path, capsys):
    import torch

    from bench.core import device as dev

    results = tmp_path / "results"
    try:
        assert bench(cache_dir, *run_args(results, "panet", "--fold", "0", "--device", "cpu", "--set",
                                          "iterations=2 trunk_epochs=1")) == 0
        assert dev.device() == torch.device("cpu")
        [(_, record)] = load_records(results)
        assert record.device == "cpu"
        assert bench(cache_dir, *run_args(results, ORACLE, "--device", "tpu")) == 2
        assert "unknown device 'tpu'; use cpu, cuda or cuda:N" in capsys.readouterr().err
        if not torch.cuda.is_available():
            assert bench(cache_dir, *run_args(results, ORACLE, "--device", "cuda:0")) == 2
            assert "no CUDA device is available here" in capsys.readouterr().err
    finally:
        dev.use_device(None)


def test_a_truncated_weight_file_is_one_line_and_exit_2(mini, cache_dir, tmp_path, capsys):
    import torch

    from backbones.trunks import Vgg16Trunk

    path = tmp_path / "vgg16.pth"
    torch.save(Vgg16Trunk(width=0.25, bn=True).state_dict(), path)
    path.write_bytes(path.read_bytes()[:20_000])
    capsys.readouterr()
    assert bench(cache_dir, *run_args(tmp_path / "results", "amp", "--fold", "0", "--set", f"trunk_checkpoint={path}")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "vgg16.pth is truncated or not a PyTorch weight file" in err
    assert not (tmp_path / "results").exists()


def test_a_record_names_the_commit_its_run_started_at_and_says_when_the_checkout_moved(monkeypatch):
    """A run of an hour imports modules lazily: if the checkout moves during it (a merge), the record
    must not claim the new commit alone (it did: the commit was read when the record was written)."""
    import subprocess

    from bench.core import files

    files._start_commit.cache_clear()
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=os.path.dirname(__file__)).stdout.strip()
    assert files.git_commit().removesuffix("-dirty") == head  # the real repository, asked for real
    heads = iter(["aaa", "aaa", "bbb"])
    monkeypatch.setattr(files, "_head_commit", lambda: next(heads))
    files._start_commit.cache_clear()
    try:
        assert files.git_commit() == "aaa"  # at the run's start
        assert files.git_commit() == "aaa (checkout moved to bbb during the run)"  # when its record is written
    finally:
        files._start_commit.cache_clear()
