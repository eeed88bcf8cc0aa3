"""Published sets (`bench publish`): records committed to git beside a manifest of their sha256.
They re-table as the records they were copied from; `bench table` on results/ leaves them out;
an edited, added or missing file is refused by name; a re-made record with other numbers is not
published over the old one unless asked; a run never writes into one."""
import json
import re
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.core.errors import BenchError
from bench.core.records import MANIFEST, load_records
from bench.report.tables import render_tables
from oracle import ORACLE

STORED = Path(__file__).parent / "data" / "records_b698898"


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder as runs leave it: the stored records, with a predictions folder beside one."""
    out = tmp_path / "results"
    shutil.copytree(STORED, out)
    first = next(out.rglob("*.json"))
    (first.parent / (first.stem + ".predictions")).mkdir()
    (first.parent / (first.stem + ".predictions") / "index.csv").write_text("episode,query\n")
    return out


def bench(*args) -> int:
    return main(list(args))


def test_a_published_set_tables_as_its_source_and_results_leaves_it_out(results, capsys):
    target = results / "published" / "demo"
    assert bench("publish", "--results-dir", str(results), "--to", str(target)) == 0
    assert "published 8 file(s)" in capsys.readouterr().out
    manifest = json.loads((target / MANIFEST).read_text())["files"]
    assert len(manifest) == 8 and not list(target.rglob("*.predictions"))  # records only, no sample PNGs
    assert render_tables(target, "csv") == render_tables(STORED, "csv")
    assert len(load_records(results)) == 8  # the copies nested under results/ are not counted twice


def test_publish_filters_by_method_and_mode(results, capsys):
    target = results.parent / "pub"
    assert bench("publish", "--results-dir", str(results), "--to", str(target), "--method", "panet", "--method", "amp",
                 "--mode", "full") == 0
    assert sorted((r.method, r.mode) for _, r in load_records(target)) == [("amp", "full"), ("panet", "full")]


@pytest.mark.parametrize("damage", ["edit", "add", "remove"])
def test_a_published_file_the_manifest_does_not_vouch_for_is_refused_by_name(results, damage):
    target = results.parent / "pub"
    assert bench("publish", "--results-dir", str(results), "--to", str(target)) == 0
    path = next(p for p in target.rglob("*.json") if p.name != MANIFEST and "panet" in str(p))
    if damage == "edit":  # a hand-tuned number
        raw = json.loads(path.read_text())
        raw["miou"] += 1.0
        path.write_text(json.dumps(raw))
        want = "differs from the sha256"
    elif damage == "add":
        path = path.with_name("fold0_1way_1shot_seed9.json")
        shutil.copy(next(results.rglob("*.json")), path)
        want = "not in its manifest"
    else:
        path.unlink()
        want = "which is missing"
    with pytest.raises(BenchError, match=want) as info:
        load_records(target)
    assert path.name in str(info.value)
    assert len(load_records(results)) == 8  # the source is not a published set: nothing checked there


def test_other_numbers_are_not_published_over_the_old_ones_unless_asked(results, capsys):
    target = results.parent / "pub"
    assert bench("publish", "--results-dir", str(results), "--to", str(target)) == 0
    path = next(p for p in results.rglob("*.json") if "amp" in str(p) and "/full/" in str(p))
    raw = json.loads(path.read_text())
    raw["timings"] = {"fit_s": 1.0}  # made again elsewhere, same numbers: kept
    path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert bench("publish", "--results-dir", str(results), "--to", str(target)) == 0
    assert "published 0 file(s)" in capsys.readouterr().out
    before = (target / MANIFEST).read_text()
    raw["miou"] -= 2.0
    path.write_text(json.dumps(raw))
    assert bench("publish", "--results-dir", str(results), "--to", str(target)) == 2
    err = capsys.readouterr().err
    assert "differs from the published" in err and "miou" in err and "nothing was published" in err
    assert (target / MANIFEST).read_text() == before
    assert bench("publish", "--results-dir", str(results), "--to", str(target), "--replace") == 0
    published = next(r for p, r in load_records(target) if r.method == "amp" and r.mode == "full")
    assert published.miou == pytest.approx(raw["miou"])


def test_a_datasets_pseudo_quality_records_publish_without_its_runs(results, capsys):
    """`bench pseudo report` re-made under a new recipe while the runs were not: its records are
    published by naming their dataset (the runs of others left out with --pseudo-only)."""
    quality = Path(__file__).parents[1] / "results" / "published" / "readme" / "openmoji20i" / "pseudo-labels"
    shutil.copytree(quality, results / "openmoji20i" / "pseudo-labels")
    target = results.parent / "pub"
    assert bench("publish", "--results-dir", str(results), "--to", str(target), "--pseudo-only") == 0
    names = sorted(json.loads((target / MANIFEST).read_text())["files"])
    assert names == [f"openmoji20i/pseudo-labels/{p.name}" for p in sorted(quality.glob("*.json"))] and names
    assert bench("publish", "--results-dir", str(results), "--to", str(target), "--dataset", "openmoji20i") == 0
    assert "published 0 file(s)" in capsys.readouterr().out  # no run of openmoji20i, its quality records there already
    assert bench("publish", "--results-dir", str(results), "--to", str(target), "--pseudo-only",
                 "--dataset", "openmoji5i-mini") == 2
    assert "no pseudo-mask quality records of openmoji5i-mini" in capsys.readouterr().err
    assert bench("publish", "--results-dir", str(results), "--to", str(target)) == 0
    assert len(load_records(target)) == 8  # the runs of openmoji5i-mini join; the quality record stays one file
    assert len(json.loads((target / MANIFEST).read_text())["files"]) == 9


def test_a_publish_killed_while_copying_leaves_a_set_that_says_so(results, monkeypatch):
    import bench.report.publish as publishing

    copied, write = [], publishing.atomic_write_bytes

    def dies(path, data):
        if len(copied) == 3:
            raise KeyboardInterrupt
        copied.append(path)
        write(path, data)

    monkeypatch.setattr(publishing, "atomic_write_bytes", dies)
    target = results / "published" / "half"
    assert main(["publish", "--results-dir", str(results), "--to", str(target)]) == 130  # the CLI's code for an interrupt
    assert len(copied) == 3 and len(load_records(results)) == 8  # the three copies are not read as runs of results/
    with pytest.raises(BenchError, match="not in its manifest"):
        load_records(target)


def test_a_run_does_not_write_into_a_published_set(results, cache_dir, capsys):
    target = results.parent / "pub"
    assert bench("publish", "--results-dir", str(results), "--to", str(target)) == 0
    code = bench("--cache-dir", str(cache_dir), "run", "--method", ORACLE, "--mode", "full", "--dataset", "openmoji5i-mini",
                 "--preset", "quick", "--fold", "0", "--results-dir", str(target))
    assert code == 2 and "is in the published set" in capsys.readouterr().err
    assert len(load_records(target)) == 8


README_SET = Path(__file__).parents[1] / "results" / "published" / "unfused-adam-intel"
FUSED_SET = Path(__file__).parents[1] / "results" / "published" / "readme"  # under the fused Adam: being re-made


def _squeezed(line: str) -> str:  # tabulate pads cells to the widest row: compare the cells, not the padding
    return re.sub(r" +", " ", line.strip())


def _readme_lines() -> set[str]:
    return {_squeezed(line) for line in (Path(__file__).parents[1] / "README.md").read_text().splitlines()}


def _table_rows(published: Path, layout: str, filters: dict | None) -> list[str]:
    blocks = re.split(r"\n(?=### )", render_tables(published, "markdown", filters, layout=layout))
    ours = [b for b in blocks if not b.startswith("### published")]  # one per dataset; not the paper's
    return [_squeezed(line) for b in ours for line in b.splitlines() if line.startswith("| ") and not line.startswith("| method")]


def _rows_missing_from_readme(published: Path, layouts: tuple) -> tuple[list[str], list[str]]:
    """Every row `bench table` prints of `published` in each (layout, filters) and of its control
    table, and those the README lacks."""
    from bench.harness.control import load_controls
    from bench.report.page import control_table

    rows = [row for layout, filters in layouts for row in _table_rows(published, layout, filters)]
    rows += [_squeezed(line) for line in control_table(load_controls(published)).splitlines()[2:]]
    return rows, [row for row in rows if row not in _readme_lines()]


def test_the_fused_recipes_published_set_is_intact_and_its_table_rows_are_the_readmes():
    """The records re-made under the fused Adam so far (the README's main job and what joined it):
    the manifest vouches for every file, each fit and control names the recipe, and every row of
    `bench table --layout table2a --way 1 --shot 1|5`, `--layout table2b --way 1 --shot 1`,
    `--layout table3` and the control table of them stands in the README as printed."""
    from bench.harness.control import load_controls

    records, controls = load_records(FUSED_SET), load_controls(FUSED_SET)
    assert records and all(r.pinning["fit"].get("optimizer") == "adam-fused" for _, r in records)
    assert controls and all(c["recipes"]["optimizer"] == "adam-fused" for c in controls)
    rows, missing = _rows_missing_from_readme(FUSED_SET, (
        ("table2a", {"way": 1, "shot": 1}), ("table2a", {"way": 1, "shot": 5}), ("table3", None),
        ("table2b", {"way": 1, "shot": 1})))
    # Table 2a 1-shot (the ablations' and PFENet's rows in it), 5-shot, Table 3 of both sets, Table 2b 1-shot, control
    assert len(rows) >= 6 + 5 + 5 + 5 + 5 + 8
    assert not missing, "README lacks these rows of the fused set's tables:\n" + "\n".join(missing)


def test_the_readmes_published_set_is_intact_and_its_table_rows_are_the_readmes():
    """The committed records behind the README's unfused tables: the manifest vouches for every
    file, and every row `bench table --layout table2a|table2b --way 1 --shot 1|5` and `--layout table3` print
    of them (weak-test columns included) and the control table of `bench report` stand in the README
    as printed (a re-made or re-tabled record that moves a number fails here until the
    README says so)."""
    rows, missing = _rows_missing_from_readme(README_SET, (
        ("table2a", {"way": 1, "shot": 1}), ("table2a", {"way": 1, "shot": 5}), ("table3", None),
        ("table2b", {"way": 1, "shot": 1}), ("table2b", {"way": 1, "shot": 5})))
    assert len(rows) >= 6 + 6 + 5 + 5 + 5 + 5 + 10  # Table 2a 1-shot (weak-test columns in it), 5-shot, Table 3 of both sets, Table 2b 1-shot, 5-shot, control
    assert not missing, "README lacks these rows of the published set's tables:\n" + "\n".join(missing)


def test_a_run_says_whether_it_reproduces_a_published_set_and_on_which_cpus(tmp_path, cache_dir, capsys):
    """After `bench run`, a published set under the results folder holding the same cells is
    compared record for record: equal, or how many differ and why (another CPU model than the
    published records' names both; the same model means the run computed something else)."""
    results = tmp_path / "results"
    run = ["--cache-dir", str(cache_dir), "run", "--method", ORACLE, "--mode", "full", "--dataset", "openmoji5i-mini",
           "--preset", "quick", "--fold", "0", "--results-dir", str(results)]
    assert bench(*run) == 0
    assert bench("publish", "--results-dir", str(results), "--to", str(results / "published" / "ref")) == 0
    capsys.readouterr()
    assert bench(*run, "--force") == 0
    out = capsys.readouterr().out
    count = len(load_records(results))
    assert f"equal to the published set {results.resolve() / 'published' / 'ref'}: {count} of these records" in out

    def republish(edit) -> str:
        for path in (results / "openmoji5i-mini").rglob("*.json"):
            raw = json.loads(path.read_text())
            edit(raw)
            path.write_text(json.dumps(raw))
        assert bench("publish", "--results-dir", str(results), "--to", str(results / "published" / "ref"), "--replace") == 0
        capsys.readouterr()
        assert bench(*run, "--force") == 0
        return capsys.readouterr().out

    def elsewhere(raw):  # published from another CPU model, with other numbers
        raw["miou"] -= 1.0
        for side in raw["pinning"].values():
            if isinstance(side, dict) and "cpu" in side:
                side["cpu"] = {**side["cpu"], "family": "6", "model": "207", "name": "Intel(R) Xeon(R) Processor"}

    out = republish(elsewhere)
    assert f"{count} of {count} records differ from the published set" in out and "(in miou;" in out
    assert "published from family 6 model 207 (Intel(R) Xeon(R) Processor), run here on family" in out
    # this CPU's, other numbers (other than the set's too: a publish keeps a record that differs only in where it ran)
    out = republish(lambda raw: raw.update(miou=raw["miou"] - 2.0))
    assert f"{count} of {count} records differ" in out and "this run computed something else" in out


def _comparison_line(tmp_path: Path, rel: Path, here: dict, published: dict) -> str:
    """What `bench run` says of a record `here` against a published set holding `published` at the
    same path `rel` (each call in a fresh results folder under tmp_path)."""
    from bench.report.publish import against_published_sets

    results = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
    for root, rec in ((results, here), (results / "published" / "set", published)):
        (root / rel).parent.mkdir(parents=True)
        (root / rel).write_text(json.dumps(rec))
    (results / "published" / "set" / MANIFEST).write_text("{}")
    [out] = against_published_sets(results, [results / rel])
    return out


def test_a_set_published_under_another_optimizer_recipe_is_named_as_such_not_blamed_on_the_cpus(tmp_path):
    """Records name their fit's optimizer recipe (`pinning.fit.optimizer`; none before the fused
    Adam): a published set of the other recipe differs by design and the line says so; under one
    recipe a difference between two CPU models is reported as a finding, on one model as a change."""
    def record(miou: float, model: str, recipe: str | None) -> dict:
        cpu = {"family": "6" if model == "207" else "25", "model": model, "name": "cpu"}
        fit = {"cpu": cpu, **({"optimizer": recipe} if recipe else {})}
        return {"miou": miou, "pinning": {"fit": fit, "eval": {"cpu": cpu}}}

    def line(here: dict, published: dict) -> str:
        return _comparison_line(tmp_path, Path("d/p/m/full/fold0_1way_1shot_seed1234.json"), here, published)

    old_recipe = line(record(23.0, "17", "adam-fused"), record(21.4, "207", None))
    assert "published under the unfused-adam recipe, run here under adam-fused" in old_recipe
    assert "mIoU 21.40 published, 23.00 here" in old_recipe
    cpus = line(record(23.0, "17", "adam-fused"), record(21.4, "207", "adam-fused"))
    assert "published from family 6 model 207 (cpu), run here on family 25 model 17 (cpu)" in cpus and "a finding" in cpus
    same = line(record(23.0, "17", "adam-fused"), record(21.4, "17", "adam-fused"))
    assert "this run computed something else" in same
    assert "equal to the published set" in line(record(23.0, "17", "adam-fused"), record(23.0, "207", None))


def test_a_verdict_stored_under_an_older_rule_is_not_a_difference_from_the_published_set(tmp_path):
    """Tables judge every record's stored curve by the current rule (load_records); the comparison
    with a published set did not, so an Intel Xeon that re-made the README's `ours` full fits to the
    bit was told that 5 records 'differ in fit' between the CPUs (fold 1: the published verdict,
    from before the rule measured the gain from every point of the last quarter, says -1.9 from step
    1125, the rule now -1.0 from step 1312). A record of that cell with the published curve and its
    re-derived verdict is equal; one whose curve moved still differs in fit."""
    from bench.core.curves import judged

    rel = Path("openmoji5i/wacv22@v2/ours/full/fold1_1way_1shot_seed1234.json")
    published = json.loads((FUSED_SET / rel).read_text())
    assert published["fit"]["verdict"]["from_step"] == 1125  # stored under the older rule
    rerun = {**published, "fit": judged(published["fit"])}
    assert rerun["fit"]["verdict"]["from_step"] == 1312 and rerun["fit"] != published["fit"]

    def line(here: dict) -> str:
        return _comparison_line(tmp_path, rel, here, published)

    assert line(rerun).startswith("equal to the published set")
    moved = {**rerun, "fit": {**rerun["fit"], "validation": [[s, v + 0.1] for s, v in rerun["fit"]["validation"]]}}
    assert "1 of 1 records differ" in line(moved) and "(in fit; " in line(moved)


def test_a_paper_layouts_mean_is_over_all_four_folds_or_empty(tmp_path):
    """Beside the paper's four-fold means, a mean of the folds that happen to be there would pass for
    one of them: the paper's layouts leave it empty (and say why), `settings` keeps the mean of the
    folds its header shows. Hand check on the README's 20i `ours` and `ours-noE` records."""
    source = FUSED_SET / "openmoji20i" / "wacv22@v2"
    for method in ("ours", "ours-noE"):
        for path in (source / method).rglob("*_1way_1shot_*.json"):
            target = tmp_path / "all" / path.relative_to(FUSED_SET)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    by_seed: dict = {}
    for path in (tmp_path / "all").rglob("*.json"):
        raw = json.loads(path.read_text())
        if raw["method"] == "ours" and raw["mode"] == "weak":
            by_seed.setdefault(raw["seed"], {})[raw["fold"]] = raw["miou"]
    import numpy as np

    seed_means = [np.mean([folds[f] for f in range(4)]) for folds in by_seed.values()]
    four = f"{np.mean(seed_means):.1f} ± {np.std(seed_means):.1f}"
    assert len(seed_means) == 5 and _mean_cell(tmp_path / "all", "table2b", "ours", "weak") == four
    assert "a mean is over all 4 folds" not in render_tables(tmp_path / "all", "csv", {"shot": 1}, layout="table2b")

    shutil.copytree(tmp_path / "all", tmp_path / "three")
    for path in (tmp_path / "three").rglob("fold3_*.json"):
        path.unlink()
    assert _mean_cell(tmp_path / "three", "table2b", "ours", "weak") == ""
    assert "; a mean is over all 4 folds: empty where the row lacks runs of one" in render_tables(
        tmp_path / "three", "csv", {"shot": 1}, layout="table2b")
    three = [np.mean([folds[f] for f in range(3)]) for folds in by_seed.values()]
    assert _mean_cell(tmp_path / "three", "settings", "ours", "weak") == f"{np.mean(three):.1f} ± {np.std(three):.1f}"
    table3 = render_tables(tmp_path / "three", "csv", layout="table3").split("# published")[0]
    assert "ours,weak" not in table3 and "a mean is over all 4 folds" in table3  # no row has a four-fold mean


def _mean_cell(results: Path, layout: str, label: str, mode: str) -> str:
    """The `{mode} mean` cell of row `label` in the first 1-way 1-shot table of the layout (csv)."""
    import csv

    text = render_tables(results, "csv", {"shot": 1, "way": 1}, layout=layout)
    lines = [line for line in text.split("\n# ")[0].splitlines() if not line.startswith("#")]
    rows = list(csv.reader(lines))
    return next(row for row in rows if row[0] == label)[rows[0].index(f"{mode} mean")]
