"""`bench plan`: the sizes it predicts are what the run then writes (within 20 %), a second plan
after the run reuses everything, and a plan that does not fit on the disk is refused (exit 2,
one line, nothing written)."""
from pathlib import Path

import pytest

from real_layout import mixed_size_voc
from test_contract import TINY
from test_pseudo import TINY as PSEUDO_TINY


@pytest.fixture(scope="module")
def voc_root(mini, tmp_path_factory):
    return mixed_size_voc(mini, tmp_path_factory.mktemp("plan") / "VOC2012")


def _request(name, mode, voc_root, cache, results):
    from bench.harness.runner import RunRequest

    return RunRequest(method=name, mode=mode, dataset="pascal5i", data_root=voc_root, folds=(0,), preset="quick",
                      config=TINY[name], pseudo=PSEUDO_TINY if mode != "full" else {}, cache_dir=cache,
                      results_dir=results, profile="embedded")


def _files(root: Path) -> dict:
    return {p: p.stat().st_size for p in Path(root).rglob("*") if p.is_file() and p.suffix != ".lock"}


def _size(path: Path) -> int:
    """Bytes of a planned artefact once written: a file and its side files, or a folder."""
    if path.is_dir():
        return sum(_files(path).values())
    return sum(p.stat().st_size for p in path.parent.glob(path.stem + "*") if p.is_file() and p.suffix != ".lock")


@pytest.mark.slow
@pytest.mark.parametrize("name,mode", [("ours", "weak"), ("pfenet", "full"), ("panet", "full"), ("amp", "full")])
def test_planned_sizes_are_what_the_run_writes(name, mode, voc_root, tmp_path):
    from bench.harness.plan import plan
    from bench.harness.runner import run

    cache, results = tmp_path / "cache", tmp_path / "results"
    req = _request(name, mode, voc_root, cache, results)
    made = plan(req)
    built = [r for r in made.rows if r.action == "build"]
    assert built and all(r.bytes > 0 for r in built)
    before = {**_files(cache), **_files(results)}
    run(req, log=lambda *_: None)
    after = {**_files(cache), **_files(results)}
    written = sum(size for p, size in after.items() if p not in before)
    assert abs(made.new_bytes() - written) <= 0.2 * written, (made.new_bytes(), written)
    by_path = {}  # every artefact on its own, where its path was known before the run (a store's two rows: one folder)
    for row in built:
        if Path(row.path).exists() and "evaluation" not in row.what:
            by_path[row.path] = by_path.get(row.path, 0) + row.bytes
    assert len(by_path) >= 2
    for path, planned in by_path.items():
        assert abs(planned - _size(Path(path))) <= 0.2 * _size(Path(path)) + 4096, (path, planned, _size(Path(path)))
    again = plan(req)
    assert again.new_bytes() == 0 and {r.action for r in again.rows} == {"reuse"}


def test_a_plan_that_does_not_fit_is_refused_with_one_line(mini, voc_root, tmp_path, monkeypatch, capsys):
    import bench.harness.plan as plan_module
    from bench.cli import main

    monkeypatch.setattr(plan_module, "free_bytes", lambda folder: 1000)
    cache = tmp_path / "cache"
    args = ["--cache-dir", str(cache), "plan", "--method", "panet", "--mode", "full", "--dataset", "pascal5i",
            "--data-root", str(voc_root), "--fold", "0", "--preset", "quick", "--profile", "embedded",
            "--set", "iterations=3", "trunk_epochs=1", "--results-dir", str(tmp_path / "results")]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert "build" in out and "VGG-16 trunk" in out
    assert err.count("\n") == 1 and "free" in err and "--cache-dir" in err
    assert not list(cache.glob("checkpoints/**/*.pt")) and not list(cache.glob("trunks/*.pt"))
    assert not (tmp_path / "results").exists()
    # `bench run --dry-run` prints the same plan and refuses the same way, running nothing
    assert main(args[:2] + ["run", "--dry-run"] + args[3:]) == 2
    assert not list(cache.glob("trunks/*.pt"))


def test_an_over_budget_store_is_planned_as_computed_per_batch(voc_root, tmp_path, monkeypatch):
    from bench.harness.plan import plan

    monkeypatch.setenv("WSFSS_STORE_GB", "0.000001")
    made = plan(_request("ours", "full", voc_root, tmp_path / "cache", tmp_path / "results"))
    stores = [r for r in made.rows if "decoder features" in r.what]
    assert len(stores) == 2 and {r.action for r in stores} == {"per batch"} and all(r.bytes == 0 for r in stores)
    assert all("store budget" in r.note for r in stores)


def test_sweep_dry_run_lists_the_pending_cells_then_their_plan(mini, cache_dir, tmp_path, capsys):
    """A method without a `plan` hook (the test oracle) is listed as such, nothing is run."""
    from bench.cli import main
    from oracle import ORACLE

    args = ["--cache-dir", str(cache_dir), "sweep", "--method", ORACLE, "--mode", "full", "--fold", "0", "--dataset",
            "openmoji5i-mini", "--preset", "quick", "--results-dir", str(tmp_path / "results"), "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 to run" in out and "plan of the cells to run" in out and "no plan hook (sizes and times unknown)" in out
    assert not (tmp_path / "results").exists()


def test_sweep_dry_run_makes_no_pseudo_masks(mini, cache_dir, tmp_path, capsys):
    """`--dry-run` runs nothing: a weak cell whose pseudo masks are not made yet is listed as to
    run and its pool nets planned, not trained (it used to train the CAM classifier and saliency
    net and write every pseudo mask just to find out which records exist)."""
    from bench.cli import main
    from oracle import ORACLE

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "datasets").symlink_to(Path(cache_dir) / "datasets")  # the shared mini dataset, without its pseudo masks
    args = ["--cache-dir", str(cache), "sweep", "--method", ORACLE, "--mode", "weak", "--fold", "0", "--dataset",
            "openmoji5i-mini", "--preset", "quick", "--results-dir", str(tmp_path / "results"), "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 to run" in out
    assert any(line.startswith("build") and "CAM classifier" in line for line in out.splitlines())
    assert not [p for p in (cache / "pseudo").rglob("*") if p.is_file() and p.suffix != ".lock"]
    assert not (tmp_path / "results").exists()


def test_a_fit_and_an_evaluation_done_here_time_the_plan(mini, cache_dir, tmp_path):
    """After a run, a plan of the same settings at another length is timed by what this machine
    measured: the fit by its training loop's seconds per step (the checkpoint's sidecar) times the
    new length, the evaluation by the record's episodes per second; other settings fall back to
    the probe (a probe of one step missed most of a real PFENet step: 24 min planned, 58 taken)."""
    import json
    from dataclasses import replace

    from bench.harness.plan import plan
    from bench.harness.runner import RunRequest, run

    results = tmp_path / "results"

    def request(**config):
        return RunRequest(method="panet", mode="full", dataset="openmoji5i-mini", folds=(0,), preset="quick",
                          config={"trunk_epochs": 1, "seed": 9173, **config}, cache_dir=cache_dir, results_dir=results,
                          profile="embedded")  # a seed of this test alone: no other test's fit is "like" it

    run(request(iterations=5), log=lambda *_: None)
    paths = Path(cache_dir).glob("checkpoints/openmoji5i-mini/*/panet/full/*.json")
    path, sidecar = next((p, s) for p, s in ((p, json.loads(p.read_text())) for p in paths)
                         if {"iterations": 5, "seed": 9173}.items() <= s.get("timing", {}).get("config", {}).items())
    timing = sidecar["timing"]
    assert sidecar["curve"]["total"] == 5 and timing["loop_s"] > 0 and timing["device"] == "cpu"

    longer = {r.what: r for r in plan(request(iterations=10)).rows}
    fit = longer["panet full fit, fold 0"]
    assert fit.action == "build" and fit.note.startswith("measured") and "median of 1 fit" in fit.note
    assert fit.seconds == pytest.approx(timing["loop_s"] / 5 * 10)
    paused = path.with_name("fold9-paused.json")  # a like fit whose loop shared the cores: 10 times slower
    paused.write_text(json.dumps({**sidecar, "timing": {**timing, "loop_s": timing["loop_s"] * 10}}))
    try:
        fit = {r.what: r for r in plan(request(iterations=10)).rows}["panet full fit, fold 0"]
    finally:
        paused.unlink()
    assert "median of 2 fit" in fit.note and fit.seconds == pytest.approx(timing["loop_s"] / 5 * 10)
    evaluation = next(r for w, r in longer.items() if "evaluation" in w)
    rate = next(json.loads(p.read_text())["timings"]["episodes_per_s"] for p in results.rglob("fold0_*.json"))
    assert evaluation.note.startswith("measured") and f"{rate:g} episodes/s" in evaluation.note
    five = {r.what: r for r in plan(replace(request(iterations=10), shot=5)).rows}  # no 5-shot record: 1-shot's, scaled
    evaluation5 = next(r for w, r in five.items() if "evaluation" in w)
    assert evaluation5.note.startswith(f"scaled from {rate:g} episodes/s of 1-way 1-shot")
    assert evaluation5.seconds == pytest.approx(evaluation.seconds * 6 / 2)  # 1 + 5 images an episode, not 1 + 1

    other = {r.what: r for r in plan(request(iterations=10, seed=1)).rows}  # another fit: nothing measured for it
    assert other["panet full fit, fold 0"].note == "" and other["panet full fit, fold 0"].seconds > 0


def test_a_sweep_plan_probes_each_kind_of_work_once(mini, cache_dir, tmp_path, monkeypatch):
    """The cells of a sweep make their own unit objects for the same work; the plan times each
    kind once (per cell, a dry-run of Table 2b's grid probed a VGG-16 batch and a PFENet step
    40 times over, for more than 10 minutes)."""
    import bench.harness.plan as plan_module
    from bench.harness.runner import RunRequest

    timed = []
    monkeypatch.setattr(plan_module, "probe_seconds", lambda unit: timed.append(unit) or 0.5)

    def request(fold, seed):  # a seed no test fits: its fit and evaluation are probed, not measured
        return RunRequest(method="panet", mode="full", dataset="openmoji5i-mini", folds=(fold,), preset="quick",
                          config={"trunk_epochs": 1, "seed": seed}, cache_dir=cache_dir, results_dir=tmp_path / "r",
                          profile="embedded")

    one = plan_module.plan_all([request(0, 77)])
    assert len(timed) >= 2  # the fit's step and the episode at least
    per_cell = len(timed)
    timed.clear()
    both = plan_module.plan_all([request(0, 77), request(1, 77)])
    assert len(timed) == per_cell  # fold 1's cell reuses fold 0's probes
    fits = [r for r in both.rows if "fit, fold" in r.what]
    assert len(fits) == 2 and fits[0].seconds == fits[1].seconds == next(r for r in one.rows if "fit, fold" in r.what).seconds
    timed.clear()
    plan_module.plan_all([request(0, 77), request(0, 78)])
    assert len(timed) > per_cell  # other settings are other work: probed again
