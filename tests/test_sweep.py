"""bench sweep (grid, resume, failures, Ray), table layouts with ± std and paper numbers, bench verify."""
import json
import os
from pathlib import Path

import pytest

from bench.cli import main
from bench.core.records import load_records
from bench.harness.sweep import Cell, Eta, Outcome, Paths, grid_cells, sweep
from oracle import ORACLE

MINI = {"dataset": "openmoji5i-mini", "preset": "quick"}


def bench(cache_dir, *args):
    return main(["--cache-dir", str(cache_dir), *args])


def record_times(results):
    return {p: p.stat().st_mtime_ns for p, _ in load_records(results)}


def test_grid_expands_methods_variants_and_rejects_bad_keys():
    cells = grid_cells({**MINI, "methods": [ORACLE], "modes": ["full", "weak"], "folds": [0, 1], "shots": [1, 5],
                        "variants": [{"method": "ours", "modes": ["weak"], "folds": [0], "pseudo": {"saliency": "none"}}]})
    assert len(cells) == 2 * 2 * 2 + 2  # the variant takes the grid's shots
    assert cells[-2:] == [Cell("ours", "weak", 0, 1, shot, **MINI, pseudo=(("saliency", "none"),)) for shot in (1, 5)]
    with pytest.raises(Exception, match="unknown key"):
        grid_cells({"variants": [{"method": "ours", "sets": {}}]})
    with pytest.raises(Exception, match="names no method"):
        grid_cells({"modes": ["full"]})
    with pytest.raises(Exception, match="variant names no method"):
        grid_cells({"variants": [{"shots": [5]}]})


def test_variant_lists_replace_the_grids_and_all_means_every_real_method():
    from bench.harness.registry import METHODS

    cells = grid_cells({**MINI, "methods": [ORACLE], "modes": ["full"], "folds": [0], "seeds": [1, 2],
                        "variants": [{"methods": ["all"], "shots": [5], "seeds": [7]}]})
    real = list(METHODS)  # no entry-point methods are installed here
    assert cells[0] == Cell(ORACLE, "full", 0, 1, 1, **MINI, seeds=(1, 2))
    assert cells[1:] == [Cell(m, "full", 0, 1, 5, **MINI, seeds=(7,)) for m in real]
    assert "oracle" not in real and {"ours", "panet", "amp", "pfenet"} <= set(real)


def test_command_line_lists_restrict_every_row_of_the_grid():
    """`--method panet` with a grid whose 5-shot variant says methods = ["all"] sweeps PANet's
    cells only (it used to add every method's 5-shot cells: a dry-run of Table 2b for four
    methods planned PFENet too); --shot 1 drops a 5-shot variant's cells."""
    grid = {**MINI, "methods": ["panet"], "modes": ["full"], "folds": [0, 1],
            "variants": [{"methods": ["all"], "shots": [5], "seeds": [7]}, {"method": "amp", "folds": [0]}]}
    cells = grid_cells(grid, only={"methods": ["panet"]})
    assert cells == [Cell("panet", "full", f, 1, s, **MINI, seeds=(7,) if s == 5 else None) for s in (1, 5) for f in (0, 1)]
    assert grid_cells(grid, only={"shots": [1], "folds": [0]}) == [Cell("panet", "full", 0, 1, 1, **MINI),
                                                                      Cell("amp", "full", 0, 1, 1, **MINI)]
    assert len(grid_cells(grid)) == 2 + 2 * len({c.method for c in grid_cells(grid) if c.shot == 5}) + 1


def test_sweep_flags_restrict_a_grid_files_variants(mini, cache_dir, tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text(f'dataset = "openmoji5i-mini"\npreset = "quick"\nmethods = ["panet"]\nmodes = ["full"]\n'
                    f'folds = [0]\n[[variants]]\nmethods = ["all"]\nshots = [5]\n')
    args = ["sweep", "--grid", str(grid), "--method", ORACLE, "--results-dir", str(tmp_path / "results"), "--dry-run"]
    assert bench(cache_dir, *args) == 0
    listed = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert listed == ["oracle full fold 0 1w1s", "oracle full fold 0 1w5s"], listed


@pytest.mark.parametrize("name", ["table2a", "table2b", "table3"])
def test_committed_grid_files_expand(name):
    from pathlib import Path

    from bench.harness.sweep import load_grid

    cells = grid_cells(load_grid(Path(__file__).parents[1] / "grids" / f"{name}.toml"))
    shots = {c.shot for c in cells}
    assert shots == {1, 5} and {c.mode for c in cells} == {"full", "weak"}
    assert {c.way for c in cells} == ({1, 2} if name == "table3" else {1})
    assert {c.dataset for c in cells} == {"openmoji20i" if name == "table2b" else "openmoji5i"}
    assert all(c.seeds == (1234,) for c in cells if c.shot == 5)


def test_sampling_grid_pairs_every_row_with_its_class_pixels_0_twin():
    from pathlib import Path

    from bench.harness.sweep import load_grid

    cells = grid_cells(load_grid(Path(__file__).parents[1] / "grids" / "ours_sampling.toml"))
    assert len(cells) == 40 and all(c.seeds is None and (c.way, c.shot) == (1, 1) for c in cells)
    before = [c for c in cells if c.config == (("class_pixels", 0),)]
    after = [c for c in cells if not c.config]
    strip = lambda c: (c.method, c.mode, c.fold, c.pseudo)  # noqa: E731
    assert sorted(map(strip, before)) == sorted(map(strip, after)) and len(after) == 20
    assert {c.pseudo for c in cells} == {(), (("saliency", "none"),)}


def test_artefact_builders_use_every_core_then_the_callers_count(tmp_path):
    import os

    import torch

    from bench.core.locks import one_builder

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # a sweep worker's share of the cores
        with one_builder(tmp_path / "net.pt"):
            inside = torch.get_num_threads()
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert (inside, after) == (os.cpu_count(), 1)


def test_sweep_resumes_without_recomputing_and_reports_failures(mini, cache_dir, tmp_path):
    results = tmp_path / "results"
    paths = Paths(cache_dir, results)
    grid = {**MINI, "methods": [ORACLE, "background"], "modes": ["full"], "folds": [0, 1, 2]}
    first = grid_cells({**grid, "folds": [0]})
    done = sweep(first, paths, jobs=1, log=lambda *_: None)  # the "killed" sweep: finished fold 0 only
    assert [o.cell for o in done] == first and not any(o.error for o in done)
    before = record_times(results)
    assert len(before) == 2

    log = []
    again = sweep(grid_cells(grid) + [Cell(ORACLE, "full", 9, 1, 1, **MINI)], paths, jobs=1, log=log.append)
    ran = {o.cell for o in again}
    assert ran == set(grid_cells(grid)) - set(first) | {Cell(ORACLE, "full", 9, 1, 1, **MINI)}
    assert {p: t for p, t in record_times(results).items() if p in before} == before  # finished cells untouched
    assert "2 already recorded (skipped)" in log[0]
    [failed] = [o for o in again if o.error]
    assert failed.cell.fold == 9 and "fold" in failed.error
    assert any("1 of 5 cells failed" in line for line in log)
    assert any("oracle full fold 9 1w1s: FAILED: " in line and "fold" in line.split("FAILED")[1] for line in log)
    oracle = [r.miou for _, r in load_records(results) if r.method == "oracle"]
    assert oracle == [100.0] * 3

    assert sweep(grid_cells(grid), paths, jobs=1, log=lambda *_: None) == []  # nothing left: nothing recomputed
    assert bench(cache_dir, "sweep", "--method", ORACLE, "--mode", "full", "--fold", "0,1,2", "--dataset",
                 "openmoji5i-mini", "--preset", "quick", "--results-dir", str(results), "--dry-run") == 0


def test_eta_expects_each_method_to_cost_its_own_mean():
    cells = [Cell(m, "full", f, 1, 1, **MINI) for m in ("cheap", "dear") for f in range(4)]
    eta = Eta(cells, workers=2)
    eta.add(Outcome(cells[0], seconds=10.0))
    assert eta.left() == (3 * 10 + 4 * 10) / 2  # "dear" not seen yet: the mean of all finished cells
    eta.add(Outcome(cells[4], seconds=100.0))
    assert eta.left() == (3 * 10 + 3 * 100) / 2
    for cell in cells[1:4] + cells[5:7]:
        eta.add(Outcome(cell, seconds=100.0 if cell.method == "dear" else 10.0))
    assert eta.left() == 100.0  # one cell left: one worker busy, not two
    assert eta.add(Outcome(cells[7], seconds=100.0)).startswith("[8/8]") and eta.left() == 0.0


def test_sweep_process_pool_matches_serial(mini, cache_dir, tmp_path):
    cells = grid_cells({**MINI, "methods": [ORACLE, "background"], "modes": ["full"], "folds": [0, 1]})
    serial, pooled = tmp_path / "serial", tmp_path / "pooled"
    sweep(cells, Paths(cache_dir, serial), jobs=1, log=lambda *_: None)
    outcomes = sweep(cells, Paths(cache_dir, pooled), jobs=2, log=lambda *_: None)
    assert len(outcomes) == 4 and not any(o.error for o in outcomes)
    assert _numbers(serial) == _numbers(pooled)


def _numbers(results):
    return sorted((r.method, r.fold, r.seed, r.episode_sha256, json.dumps(r.inter, sort_keys=True),
                   json.dumps(r.union, sort_keys=True), r.fb_inter, r.fb_union) for _, r in load_records(results))


def _with_tests_on_path() -> dict:
    """The environment for a sweep run in another process: the oracle is a module path in tests/."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}


@pytest.mark.slow
def test_ray_executor_on_a_local_two_node_cluster_gives_the_local_records(mini, cache_dir, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # Ray gives a starting worker 60 s to register; on a busy 2-core machine importing torch took longer
    monkeypatch.setenv("RAY_worker_register_timeout_seconds", "600")
    # the oracle is a module path in tests/: Ray's workers (started by the cluster) import it from there
    monkeypatch.setenv("PYTHONPATH", _with_tests_on_path()["PYTHONPATH"])

    cells = grid_cells({**MINI, "methods": [ORACLE, "background"], "modes": ["full"], "folds": [0, 1]})
    local, remote = tmp_path / "local", tmp_path / "ray"
    sweep(cells, Paths(cache_dir, local), jobs=1, log=lambda *_: None)
    # nodes that declare a GPU they do not have: Ray places each cell on one and sets its
    # CUDA_VISIBLE_DEVICES; torch finds no CUDA here, so the work itself runs on the CPU
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1, num_gpus=1)
    try:
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        outcomes = sweep(cells, Paths(cache_dir, remote), executor="ray", log=lambda *_: None, gpus_per_cell=1)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(outcomes) == 4 and not any(o.error for o in outcomes)
    assert _numbers(local) == _numbers(remote)
    placed = [r.placement for _, r in load_records(remote)]
    assert placed == [{"device_request": "auto", "cuda_visible_devices": "0"}] * 4
    assert all(r.placement["cuda_visible_devices"] is None and r.device == "cpu" for _, r in load_records(local))


def _set_miou(results, method, mode, fold, seed, value):
    [path] = [p for p, r in load_records(results) if (r.method, r.mode, r.fold, r.seed) == (method, mode, fold, seed)]
    raw = json.loads(path.read_text())
    raw["miou"] = value
    path.write_text(json.dumps(raw))


@pytest.fixture
def two_seed_results(mini, cache_dir, tmp_path):
    """oracle full, folds 0-1, seeds 0-1, each record copied as a weak one (tables read records
    only), mIoUs then set by hand: full f0 10/20, f1 30/50; weak f0 5/10, f1 20/30."""
    from dataclasses import replace

    results = tmp_path / "results"
    assert bench(cache_dir, "run", "--method", ORACLE, "--mode", "full", "--dataset", "openmoji5i-mini", "--preset",
                 "quick", "--fold", "0,1", "--seed", "0", "--seed", "1", "--results-dir", str(results)) == 0
    for _, r in load_records(results):
        replace(r, mode="weak", annotation_fingerprint="pseudo-for-the-test").write(results)
    values = {"full": {(0, 0): 10, (0, 1): 20, (1, 0): 30, (1, 1): 50},
              "weak": {(0, 0): 5, (0, 1): 10, (1, 0): 20, (1, 1): 30}}
    for mode, cells in values.items():
        for (fold, seed), v in cells.items():
            _set_miou(results, "oracle", mode, fold, seed, v)
    return results


def test_table_mean_std_and_paired_delta_hand_case(two_seed_results, cache_dir, capsys):
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results), "--format", "csv") == 0
    row = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("oracle,"))
    # folds: mean ± std over seeds; mean: per seed over folds (full 20, 35; weak 12.5, 20);
    # Δ per seed: 7.5, 15 -> 11.25 ± 3.75
    assert row.split(",")[1:] == ["15.0 ± 5.0", "40.0 ± 10.0", "27.5 ± 7.5", "7.5 ± 2.5", "25.0 ± 5.0",
                                  "16.2 ± 3.8", "11.2 ± 3.8"]


def _four_folds(results) -> None:
    """Folds 2 and 3 as copies of folds 0 and 1: the paper's layouts average all four folds, and
    with these copies the four-fold means per seed are the two-fold means of the hand case."""
    from dataclasses import replace

    for _, r in load_records(results):
        if r.fold < 2:
            replace(r, fold=r.fold + 2).write(results)


def test_table2a_layout_beside_paper_numbers_and_file_outputs(two_seed_results, cache_dir, tmp_path, capsys):
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results), "--layout", "table2a", "--format", "csv") == 0
    text = capsys.readouterr().out  # folds 0 and 1 of 4: no mean beside the paper's four-fold means
    row = next(l for l in text.splitlines() if l.startswith("oracle,")).split(",")
    assert row[1:] == ["15.0 ± 5.0", "40.0 ± 10.0", "", "7.5 ± 2.5", "25.0 ± 5.0", "", ""]
    assert "a mean is over all 4 folds: empty where the row lacks runs of one" in text
    _four_folds(two_seed_results)
    out = tmp_path / "t2a.tex"
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results), "--layout", "table2a", "--out", str(out)) == 0
    text = out.read_text()
    assert "\\toprule" in text and "Table 2a layout" in text and "27.5 ± 7.5" in text
    assert "published · Table 2a · pascal5i · 1-shot" in text and "published · Table 2a · pascal5i · 5-shot" in text
    assert "lee2022-table2a" in text and "45.1†" in text
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results), "--layout", "table2a", "--shot", "1") == 0
    text = capsys.readouterr().out  # one shot asked for: its published block, not the other's
    assert "pascal5i · 1-shot" in text and "pascal5i · 5-shot" not in text and "27.5 ± 7.5" in text
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results), "--layout", "table3") == 2
    assert "needs ours/ours-noE records" in capsys.readouterr().err


def test_layouts_print_every_published_cell(two_seed_results, cache_dir, capsys):
    """Each number of bench/data/paper_numbers.json appears in its layout's published blocks, in
    its row (way, method) and column (mode, split or mean, Δ)."""
    from bench.report.tables import paper_numbers

    paper = paper_numbers()
    for layout in ("table2a", "table2b"):
        if layout == "table2b":  # records of a COCO-like dataset: relabel the PASCAL-like ones
            for path, r in load_records(two_seed_results):
                raw = json.loads(path.read_text())
                path.write_text(json.dumps({**raw, "dataset": "openmoji20i-mini"}))
        capsys.readouterr()
        assert bench(cache_dir, "table", "--results-dir", str(two_seed_results), "--layout", layout, "--format", "csv") == 0
        text = capsys.readouterr().out
        blocks = {int(b.split(" · ")[3][0]): b for b in text.split("\n# ") if b.startswith("published")}
        entries = [e for e in paper["numbers"] if e["table"] == layout]
        assert {e["shot"] for e in entries} == set(blocks) == {1, 5}
        for e in entries:
            [row] = [l.split(",") for l in blocks[e["shot"]].splitlines() if l.startswith(f"{e['way']},{e['method']},")]
            header = blocks[e["shot"]].splitlines()[1].split(",")
            cell = dict(zip(header, row))
            for mode in ("full", "weak"):
                part = e.get(mode) or {}
                mark = "†" if part.get("copied") else ""
                for fold, v in (part.get("folds") or {}).items():
                    assert cell[next(h for h in header if h.startswith(mode) and h.endswith(f"^{fold}"))] == f"{v:.1f}{mark}"
                assert cell[f"{mode} mean"] == ("–" if part.get("mean") is None else f"{part['mean']:.1f}")
            assert cell["Δ (full−weak)"] == ("–" if e["delta"] is None else f"{e['delta']:.1f}")
    n_cells = sum(len((e.get(m) or {}).get("folds") or {}) + ((e.get(m) or {}).get("mean") is not None)
                  for e in paper["numbers"] if e["table"] != "table3" for m in ("full", "weak"))
    assert n_cells == 114  # Tables 2a (78 cells) and 2b (36) of shared/paper_tables.md: every split and mean


def test_claims_are_checked_on_records_beside_the_paper(two_seed_results, cache_dir, capsys):
    from dataclasses import replace

    # oracle records relabelled as methods (tables read records only); the fixture's full / weak
    # fold means per seed are full 20, 35 and weak 12.5, 20: mean full 27.5, weak 16.25, Δ 11.25
    shifts = {"ours": 0.0, "panet": 1.0, "amp": -4.0}
    for _, r in load_records(two_seed_results):
        for method, shift in shifts.items():
            miou = r.miou + (shift if r.mode == "full" else -shift * 2)
            replace(r, method=method, miou=miou).write(two_seed_results)
        if r.mode == "weak":
            replace(r, method="ours-noE", miou=r.miou - 3).write(two_seed_results)
            replace(r, method="ours", pseudo={"saliency": "none"}, miou=r.miou + 1).write(two_seed_results)
    capsys.readouterr()
    assert bench(cache_dir, "claims", "--results-dir", str(two_seed_results)) == 0
    rows = [[c.strip() for c in l.split("|")[1:-1]] for l in capsys.readouterr().out.splitlines() if l.startswith("| ") and "claim" not in l]
    verdict = {r[0]: r[2] for r in rows}
    numbers = {r[0]: r[3] for r in rows}
    # ours 27.5 → 16.2 (Δ 11.2); panet 28.5 → 14.2 (Δ 14.2); amp 23.5 → 24.2 (weak above full)
    # amp's weak is above its full; ours' and panet's falls are 7.5 and 15 per seed (Δ 11.2 and
    # 14.2, SE 3.75 paired by seed): shown. Unpaired, the seeds' 15-point gap, which every row shares
    # (a seed's episodes), would count twice over: SE 8.4 each, and neither fall would show
    assert verdict["1"] == "fails: amp"
    assert "amp 23.5 → 24.2" in numbers["1"]
    assert verdict["2"].startswith("fails") and "ours 11.2" in numbers["2"]  # 11.2 is not below half of amp's −0.8
    # ours leads panet's weak by 2.0 on both seeds: paired, no scatter at all (unpaired: SE 5.3, no lead shown)
    assert verdict["3"] == "fails: amp ≥ ours"
    assert "ours − panet 2.0 (SE 0.0 over paired seeds)" in numbers["3"]
    # E's drop is 3.0 on both seeds: shown (unpaired it was within 2 SE of two seeds 15 points apart)
    assert verdict["4"] == "fails: no drop without saliency"
    assert "without E 16.2 → 13.2, drop 3.0 (SE 0.0 over paired seeds; paper 12–18)" in numbers["4"]
    paper = {r[0]: r[4] for r in rows}
    assert paper["1"] == paper["2"] == paper["3"] == paper["4"] == "holds"  # the paper's own numbers carry its claims
    assert all(r[1] == "openmoji5i-mini · 1-way 1-shot · folds 0, 1 of 4" for r in rows)  # not a four-fold mean


def test_table3_columns_by_way_and_shot_with_their_own_runs(two_seed_results, cache_dir, capsys):
    from dataclasses import replace

    for _, r in load_records(two_seed_results):  # tables read records only: relabel the oracle's
        replace(r, method="ours").write(two_seed_results)
        if r.seed == 0:  # one run in the 2-way 5-shot column, mIoU + 1
            replace(r, method="ours", way=2, shot=5, miou=r.miou + 1).write(two_seed_results)
    _four_folds(two_seed_results)  # Table 3's means are over the four folds
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results), "--layout", "table3", "--format", "csv") == 0
    text = capsys.readouterr().out
    assert "1-way 1-shot runs: seeds 0, 1 (± std over runs); 2-way 5-shot runs: seed 0" in text
    ours_block, published = text.split("# published")
    assert "ours,Full version,weak,42.4,37.7,45.5,43.0,lee2022-table3" in published
    rows = [l.split(",") for l in ours_block.splitlines() if l.startswith("ours,")]
    # 1w1s: per-seed fold means full 20, 35; weak 12.5, 20. 2w5s (seed 0): full (11 + 31) / 2, weak (6 + 21) / 2
    assert rows == [["ours", "full", "27.5 ± 7.5", "21.0"], ["ours", "weak", "16.2 ± 3.8", "13.5"]]
    assert "a mean is over all 4 folds" not in text


def test_layout_refuses_two_presets_in_one_column(two_seed_results, cache_dir, capsys):
    [path] = [p for p, r in load_records(two_seed_results) if (r.mode, r.fold, r.seed) == ("weak", 1, 1)]
    raw = json.loads(path.read_text())
    raw["preset"] = "wacv22@v1"
    path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results), "--layout", "table2a") == 2
    err = capsys.readouterr().err
    assert "two presets in one column" in err and "quick@v1" in err and "wacv22@v1" in err and err.count("\n") == 1


def test_verify_passes_within_tolerance_and_fails_on_a_miss(two_seed_results, cache_dir, tmp_path, capsys):
    good = tmp_path / "expected.csv"
    good.write_text("dataset,preset,method,mode,way,shot,fold,miou,tolerance\n"
                    "openmoji5i-mini,quick@v1,oracle,full,1,1,0,15.0,\n"
                    "openmoji5i-mini,quick@v1,oracle,weak,1,1,mean,16.0,0.5\n")
    assert bench(cache_dir, "verify", str(good), "--results-dir", str(two_seed_results)) == 1
    assert "absent (folds 0, 1 of 4)" in capsys.readouterr().out  # a mean of two folds is not the four-fold mean
    _four_folds(two_seed_results)
    assert bench(cache_dir, "verify", str(good), "--results-dir", str(two_seed_results)) == 0
    assert "2 of 2 within tolerance" in capsys.readouterr().out
    bad = tmp_path / "expected.json"
    bad.write_text(json.dumps([{"dataset": "openmoji5i-mini", "preset": "quick@v1", "method": "oracle", "mode": "full",
                                "way": 1, "shot": 1, "fold": "mean", "miou": 30.0},
                               {"dataset": "openmoji5i-mini", "preset": "quick@v1", "method": "panet", "mode": "full",
                                "way": 1, "shot": 1, "fold": 0, "miou": 30.0}]))
    assert bench(cache_dir, "verify", str(bad), "--results-dir", str(two_seed_results), "--tolerance", "1") == 1
    out = capsys.readouterr().out
    assert "27.50" in out and "absent" in out and "2 missed" in out


def test_set_variant_is_its_own_record_and_row(mini, cache_dir, tmp_path, capsys):
    results = tmp_path / "results"
    common = ["run", "--mode", "full", "--dataset", "openmoji5i-mini", "--preset", "quick", "--fold", "0",
              "--results-dir", str(results)]
    tiny = ["steps=3", "batch=2", "reduce_dim=16", "backbone_steps=3", "backbone_max_images=12"]  # the contract suite's
    assert bench(cache_dir, *common, "--method", "pfenet", *[a for kv in tiny for a in ("--set", kv)]) == 0
    assert bench(cache_dir, *common, "--method", ORACLE) == 0
    assert bench(cache_dir, *common, "--method", ORACLE, "--set", "bogus=1") == 2
    assert "does not take the setting(s) bogus" in capsys.readouterr().err
    paths = sorted(str(p.relative_to(results)) for p, _ in load_records(results))
    assert any("pfenet+backbone_max_images=12+backbone_steps=3+batch=2+reduce_dim=16+steps=3/full" in p for p in paths)
    assert bench(cache_dir, "table", "--results-dir", str(results)) == 0
    assert "| pfenet [backbone_max_images=12, backbone_steps=3, batch=2, reduce_dim=16, steps=3]" in capsys.readouterr().out


def test_a_changed_default_is_a_new_fit_and_setting_the_old_value_finds_the_old_fit(mini, cache_dir, monkeypatch):
    """PFENet's embedded default went from 32,000 to 64,000 steps: a default run must not load a fit
    made at the old default, `--set steps=<old>` must find that fit (no retraining: an evaluation),
    and its records must not share a folder with the new default's. The old default's records sit
    where the new default's go, which is why they are moved aside (or re-run) before a table reads
    them (the table's refusal: test_table_refuses_one_row_with_two_settings)."""
    from dataclasses import dataclass

    from bench.harness.presets import get_preset
    from bench.harness.annotations import annotation_source
    from bench.harness.runner import RunRequest, checkpoint_path, record_path
    from methods import pfenet

    annotations = annotation_source("full", mini, cache_dir)
    old_steps = pfenet.PfenetConfig.steps

    def fit_and_records(config):
        req = RunRequest(method="pfenet", mode="full", dataset=mini.name, preset="quick", cache_dir=cache_dir,
                         profile="embedded", config=config)
        return checkpoint_path(req, 0, annotations), record_path(req, get_preset("quick"), mini, 0, 1234)

    old_fit, old_records = fit_and_records({})

    @dataclass(frozen=True)
    class Longer(pfenet.PfenetConfig):
        steps: int = 2 * old_steps

    monkeypatch.setattr(pfenet, "PfenetConfig", Longer)
    new_fit, new_records = fit_and_records({})
    set_fit, set_records = fit_and_records({"steps": old_steps})
    assert new_fit != old_fit and set_fit == old_fit
    assert set_records != old_records and f"pfenet+steps={old_steps}" in str(set_records)
    assert new_records == old_records


def test_a_set_value_equal_to_the_default_names_the_defaults_records(mini, cache_dir):
    """`--set steps=<default>` is the default setting: one setting, one row (it used to file a
    `pfenet+steps=...` folder of its own, a second row with the default's numbers). A value that
    differs keeps its variant, coerced as the method reads it (`steps=32000.0` is `steps=32000`)."""
    from bench.harness.presets import get_preset
    from bench.harness.runner import RunRequest, record_path, resolved_request
    from methods import pfenet

    default = pfenet.PfenetConfig.steps

    def records(config):
        req = resolved_request(RunRequest(method="pfenet", mode="full", dataset=mini.name, preset="quick",
                                          cache_dir=cache_dir, config=config))
        return req.config, record_path(req, get_preset("quick"), mini, 0, 1234)

    assert records({"steps": default}) == records({})
    assert records({"steps": default, "batch": 8})[0] == {"batch": 8}
    other, other_path = records({"steps": float(default // 2)})
    assert other == {"steps": default // 2} and type(other["steps"]) is int
    assert f"pfenet+steps={default // 2}{os.sep}" in str(other_path)


def test_table_refuses_one_row_with_two_settings(two_seed_results, cache_dir, capsys):
    [path] = [p for p, r in load_records(two_seed_results) if (r.mode, r.fold, r.seed) == ("full", 1, 0)]
    raw = json.loads(path.read_text())
    raw["method_config"] = {"steps": 1000}
    path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results)) == 2
    err = capsys.readouterr().err
    assert "both row 'oracle' but ran with different settings (steps: None vs 1000)" in err and err.count("\n") == 1


def test_table_refuses_fits_of_two_optimizer_recipes_side_by_side(two_seed_results, cache_dir, capsys):
    from bench.core.optim import RECIPE, recipe_label
    from bench.harness.runner import trained_networks_recipes

    assert {r.pinning["fit"]["optimizer"] for _, r in load_records(two_seed_results)} == {RECIPE}
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results)) == 0
    [path] = [p for p, r in load_records(two_seed_results) if (r.mode, r.fold, r.seed) == ("weak", 1, 1)]
    raw = json.loads(path.read_text())
    del raw["pinning"]["fit"]["optimizer"], raw["recipes"]  # as a record made before records named their recipe
    path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results)) == 2
    err = capsys.readouterr().err
    now = recipe_label(trained_networks_recipes())
    assert now.startswith(f"{RECIPE}, backbone ") and ", trunk " in now
    assert f"({now}) and {path} (unfused-adam) are openmoji5i-mini records of fits of two recipes" in err
    assert err.count("\n") == 1
    raw["pinning"], raw["recipes"] = {}, {}  # no pinned fit at all: nothing to tell, left out of the check
    path.write_text(json.dumps(raw))
    assert bench(cache_dir, "table", "--results-dir", str(two_seed_results)) == 0


def test_sweep_re_runs_a_record_of_an_older_recipe(mini, cache_dir, tmp_path):
    """A full-mode record keeps its config, episodes and annotations across a recipe change (the
    optimizer's, or a pool network's version): only its recipes tell the sweep it is stale. A record
    made before records named their networks' recipes is read as what it stood on."""
    from bench.core.optim import RECIPE
    from bench.harness.runner import trained_networks_recipes

    results = tmp_path / "results"
    cells = grid_cells({**MINI, "methods": [ORACLE], "modes": ["full"], "folds": [0, 1]})
    sweep(cells, Paths(cache_dir, results), jobs=1, log=lambda *_: None)
    paths = {r.fold: p for p, r in load_records(results)}
    assert json.loads(paths[0].read_text())["recipes"] == trained_networks_recipes()

    def edit(path, change):
        raw = json.loads(path.read_text())
        change(raw)
        path.write_text(json.dumps(raw))

    def unfused_before_recipes(raw):  # an old record: no recipes field, the unfused optimizer
        del raw["recipes"]
        raw["pinning"]["fit"]["optimizer"] = "unfused-adam"

    edit(paths[0], unfused_before_recipes)
    edit(paths[1], lambda raw: raw["recipes"].update(backbone=raw["recipes"]["backbone"] - 1))  # an older pool backbone
    before = record_times(results)
    again = sweep(cells, Paths(cache_dir, results), jobs=1, log=lambda *_: None)
    assert sorted(o.cell.fold for o in again) == [0, 1] and not any(o.error for o in again)
    assert all(record_times(results)[p] != before[p] for p in paths.values())
    assert json.loads(paths[0].read_text())["pinning"]["fit"]["optimizer"] == RECIPE
    edit(paths[0], lambda raw: raw.pop("recipes"))  # a fused record made before the field: what it stood on is known
    assert sweep(cells, Paths(cache_dir, results), jobs=1, log=lambda *_: None) == []


def test_delta_chart_and_report(two_seed_results, cache_dir, tmp_path):
    from PIL import Image

    from bench.report.figures import delta_chart
    from bench.report.page import write_report

    [png] = delta_chart(two_seed_results, tmp_path / "delta.png")
    assert Image.open(png).size[0] > 400
    report = write_report(two_seed_results, tmp_path / "report.md")
    text = report.read_text()
    assert "## Environment" in text and "27.5 ± 7.5" in text and "![delta](figures/delta.png)" in text
    assert "## table3" in text and "_not shown: --layout table3 needs" in text
    assert (tmp_path / "figures" / "delta.png").is_file()
    assert "## Fits: loss and base-class validation curves" in text  # drawn, or why not


def test_delta_chart_names_the_folds_its_means_cover_and_the_methods_it_leaves_out(two_seed_results, tmp_path,
                                                                                     monkeypatch):
    """The chart's means are over the folds the setting's records hold (here 0 and 1 of 4), which
    its axis names (it said 'mean mIoU over folds', as if the paper's four); a method with runs
    of fold 0 only is left out of the bars and named in the title, not averaged over what it has."""
    from dataclasses import replace

    import bench.report.figures as figures

    half = [replace(r, method="half") for _, r in load_records(two_seed_results) if r.fold == 0]
    for r in half:
        r.write(two_seed_results)
    rows, folds, left_out = figures.delta_rows([r for _, r in load_records(two_seed_results)])
    assert folds == [0, 1] and left_out == ["half"]
    [(label, full, weak, delta)] = rows  # the hand case: full 20, 35; weak 12.5, 20 per seed
    assert (label, full, weak, delta) == ("oracle", {0: 20.0, 1: 35.0}, {0: 12.5, 1: 20.0}, {0: 7.5, 1: 15.0})
    assert figures.folds_phrase([0]) == "fold 0 of 4" and figures.folds_phrase([0, 1, 2, 3]) == "all 4 folds"
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: drawn.append(
        (fig.axes[0].get_ylabel(), fig._suptitle.get_text())) or out)
    figures.delta_chart(two_seed_results, tmp_path / "delta.png")
    [(ylabel, title)] = drawn
    assert ylabel == "mean mIoU over folds 0, 1 of 4 (%)"
    assert title.endswith("\nleft out, a fold or a mode missing: half")


def test_class_mask_quality_hand_case():
    import numpy as np

    from pseudo_labels.report import class_mask_quality

    class Data:
        class_names = ["a", "b"]

        def mask(self, image_id):
            return np.array([[1, 1, 0, 255]], np.uint8)

    class Pseudo:
        def mask(self, image_id):
            return np.array([[1, 0, 1, 1]], np.uint8)

    q = class_mask_quality(Data(), Pseudo(), {"x": frozenset({1, 2}), "y": frozenset()})
    # class 1: the 255 pixel is left out: 1 pixel in both, 2 predicted, 2 true
    assert q[1] == pytest.approx({"iou": 100 / 3, "precision": 50.0, "recall": 50.0, "empty_share": 0.0, "images": 1})
    assert q[2] == {"iou": 0.0, "precision": 0.0, "recall": 0.0, "empty_share": 100.0, "images": 1}


def test_class_delta_chart_numbers_and_refusals(two_seed_results, mini, cache_dir, tmp_path):
    """Weak class IoUs set to 100 − 10·fold − 5·seed (full: the oracle's 100): each class's Δ is the
    mean over seeds 0 and 1, 10·fold + 2.5; GT as the 'pseudo' masks gives quality 100."""
    import csv
    from dataclasses import replace

    from PIL import Image

    from bench.report.figures import class_delta_chart
    from bench.core.types import GroundTruthMasks

    for _, r in load_records(two_seed_results):
        if r.mode == "weak":
            replace(r, class_iou={c: 100.0 - 10 * r.fold - 5 * r.seed for c in r.class_iou}).write(two_seed_results)
    png, table = class_delta_chart(two_seed_results, cache_dir, tmp_path / "classes.png", source=GroundTruthMasks(mini))
    assert Image.open(png).size[0] > 300
    rows = list(csv.DictReader(table.open()))
    folds = {r.fold: r.class_ids for _, r in load_records(two_seed_results)}
    assert len(rows) == sum(len(ids) for ids in folds.values())
    for row in rows:
        assert float(row["oracle delta"]) == 10 * int(row["fold"]) + 2.5 and float(row["oracle full"]) == 100
        assert (row["pseudo_iou"], row["pseudo_precision"], row["pseudo_empty_share"]) == ("100.0", "100.0", "0.0")

    [(path, weak)] = [(p, r) for p, r in load_records(two_seed_results) if (r.mode, r.fold, r.seed) == ("weak", 1, 1)]
    replace(weak, shot=5).write(two_seed_results)
    with pytest.raises(Exception, match="draws one setting; the records .* hold 2; fix: pass --dataset"):
        class_delta_chart(two_seed_results, cache_dir, tmp_path / "c2.png", source=GroundTruthMasks(mini))
    replace(weak, annotation_fingerprint="pseudo:other").write(two_seed_results)
    with pytest.raises(Exception, match="2 different pseudo-mask sets"):
        class_delta_chart(two_seed_results, cache_dir, tmp_path / "c3.png", {"shot": 1})


def test_episode_figure_is_drawn_from_the_record_with_no_checkpoint(mini, cache_dir, tmp_path, monkeypatch):
    """The panels come from the predictions saved beside the record: with every checkpoint
    deleted and the method unable to fit or predict, the oracle's drawn episodes score 100."""
    import shutil
    from dataclasses import replace

    from PIL import Image
    from test_pseudo import TINY as PSEUDO_TINY

    import oracle
    from bench.harness.runner import RunRequest, run
    from bench.report.figures import episode_panels
    from pseudo_labels.source import pseudo_masks_for

    pseudo_masks_for(mini, cache_dir, PSEUDO_TINY, log=lambda *_: None)  # the yellow query panel's masks, cached
    req = RunRequest(method=ORACLE, mode="full", dataset="openmoji5i-mini", folds=(1,), preset="quick",
                     pseudo={}, cache_dir=cache_dir, results_dir=tmp_path / "results")
    run(req, log=lambda *_: None)
    shutil.rmtree(cache_dir / "checkpoints", ignore_errors=True)

    def refuse(*_):
        raise AssertionError("the figure fitted or ran the method")

    monkeypatch.setattr(oracle.Oracle, "fit", refuse)
    monkeypatch.setattr(oracle.Oracle, "predict", refuse)
    with pytest.raises(Exception, match="no record at"):
        episode_panels(replace(req, folds=(2,)), [0], 0, 0, tmp_path / "none.png", log=lambda *_: None)
    drawn = replace(req, pseudo=PSEUDO_TINY)
    out, ious = episode_panels(drawn, [0, 3], 0, 0, tmp_path / "ep.png", log=lambda *_: None)
    assert Image.open(out).size[1] > 400 and ious == [100.0, 100.0]
    assert not (cache_dir / "checkpoints").exists()
    _, random_ious = episode_panels(drawn, None, 3, 0, tmp_path / "random.png", log=lambda *_: None)
    assert random_ious == [100.0] * 3
    with pytest.raises(Exception, match="episode 99 is not in fold 1's 40 episodes"):
        episode_panels(drawn, [99], 0, 0, tmp_path / "bad.png", log=lambda *_: None)
    with pytest.raises(Exception, match="episode 20's prediction was not saved"):
        episode_panels(drawn, [20], 0, 0, tmp_path / "bad.png", log=lambda *_: None)
    assert not (tmp_path / "bad.png").exists()


def test_killed_sweep_resumes_with_the_remaining_cells(mini, cache_dir, tmp_path):
    """SIGKILL a `bench sweep` process once its first record exists, then sweep again: only the
    cells without a record run, the killed run's records are untouched, no temp file is left."""
    import signal
    import subprocess
    import sys
    import time

    results = tmp_path / "results"
    args = ["--method", ORACLE, "--method", "background", "--mode", "full", "--fold", "all", "--dataset",
            "openmoji5i-mini", "--preset", "quick", "--results-dir", str(results), "--jobs", "1"]
    log = tmp_path / "sweep.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "--cache-dir", str(cache_dir), "sweep", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=_with_tests_on_path())
        deadline = time.time() + 600  # generous: a loaded 2-core machine once needed more than 120 s
        while not list(results.rglob("*.json")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert results.is_dir(), f"the sweep wrote no record before it was killed; its output:\n{log.read_text()}"
    before = record_times(results)
    assert 1 <= len(before) <= 8
    again = sweep(grid_cells({**MINI, "methods": [ORACLE, "background"], "modes": ["full"]}), Paths(cache_dir, results),
                  jobs=1, log=lambda *_: None)
    assert len(again) == 8 - len(before) and not any(o.error for o in again)
    after = record_times(results)
    assert len(after) == 8 and {p: after[p] for p in before} == before
    assert not [p for p in results.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("how", ["SIGTERM to the sweep", "Ctrl-C in its terminal"])
def test_a_stopped_parallel_sweep_stops_its_workers_and_their_cleanup_runs(tmp_path, how):
    """SIGTERM (from `timeout`, a scheduler) reaches the sweep process only, not its pool workers:
    the sweep passes it on. Ctrl-C reaches every process of the terminal's group. Either way each
    running cell unwinds through its `finally` and its worker exits, instead of training on,
    orphaned, or taking the next queued cell."""
    import signal
    import subprocess
    import sys
    import time

    # SIGINT handled as in a terminal's command: a test run in the background (`cmd &` without job
    # control, as CI may start it) has SIGINT ignored, which every child would inherit
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from bench.core.termination import sigterm_raises\n"
              "from bench.harness.sweep import local_outcomes\n"
              "from sleeper import sleeping_cell\n"
              "with sigterm_raises():\n"
              f"    for _ in local_outcomes([1, 2, 3, 4], {str(tmp_path)!r}, jobs=2, cell_fn=sleeping_cell):\n"
              "        pass\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=_with_tests_on_path(), stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal gives a command
    try:
        deadline = time.time() + 120
        while len(list(tmp_path.glob("started-*"))) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        started = sorted(p.name for p in tmp_path.glob("started-*"))
        assert len(started) == 2, proc.stderr.read() if proc.poll() is not None else "workers did not start"
        if how == "SIGTERM to the sweep":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        alive = [name for name in started if _alive(int(name.split("-")[2]))]
    finally:  # a failing run must not leave its sleepers behind
        for path in tmp_path.glob("started-*"):
            try:
                os.kill(int(path.name.split("-")[2]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
    assert proc.returncode == (143 if how == "SIGTERM to the sweep" else -signal.SIGINT), err
    cells = sorted(name.split("-")[1] for name in started)
    assert sorted(p.name for p in tmp_path.glob("cleaned-*")) == [f"cleaned-{c}" for c in cells]
    assert sorted(p.name for p in tmp_path.glob("started-*")) == started  # no queued cell began
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_gpus_per_cell_needs_the_ray_executor(mini, cache_dir, tmp_path):
    cells = grid_cells({**MINI, "methods": ["background"], "modes": ["full"], "folds": [0]})
    with pytest.raises(Exception, match="--gpus-per-cell reserves GPUs through Ray; fix: add --executor ray"):
        sweep(cells, Paths(cache_dir, tmp_path), gpus_per_cell=1, log=lambda *_: None)


def test_a_cell_whose_seeds_another_cell_runs_is_dropped():
    """`--shot 5` on grids/table2a.toml replaces the grid's shots (every run at 5 shots) and keeps
    the 5-shot variant (seed 1234): that cell evaluated seed 1234 a second time (here the quick
    preset, whose every run is seed 0). A cell of other
    seeds stays; of two with the same seeds the first does."""
    grid = {**MINI, "methods": [ORACLE], "modes": ["full"], "folds": [0], "shots": [5],
            "variants": [{"methods": [ORACLE], "shots": [5], "seeds": [0]},
                         {"methods": [ORACLE], "shots": [5], "seeds": [7]}]}
    from bench.harness.presets import get_preset

    assert get_preset("quick").seeds() == [0]  # the variant's seed 0 is the preset's every run
    assert grid_cells(grid) == [Cell(ORACLE, "full", 0, 1, 5, **MINI), Cell(ORACLE, "full", 0, 1, 5, **MINI, seeds=(7,))]
    twice = {**grid, "seeds": [7], "variants": grid["variants"][1:]}
    assert grid_cells(twice) == [Cell(ORACLE, "full", 0, 1, 5, **MINI, seeds=(7,))]
    assert len(grid_cells({**grid, "variants": []}, only={"shots": [5]})) == 1
