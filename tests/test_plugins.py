"""Methods from outside the repository: the README's example method, written into a temporary
package, runs through its module path and through an entry point (an installed distribution's
`wsfss_bench.methods` group), shows up in `bench table`, and passes `bench check-method`; a broken
method fails the check that names its fault."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.core.records import load_records

README = Path(__file__).resolve().parent.parent / "README.md"
MODULE = "mypkg.mean_colour:MeanColour"


def readme_method() -> str:
    """The code block of the README's "Adding a method" section."""
    section = README.read_text().split("## Adding a method", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def package(tmp_path, monkeypatch):
    """mypkg/mean_colour.py from the README, importable, and installed as a distribution that
    declares it in the entry-point group."""
    from bench.harness import registry

    root = tmp_path / "site"
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "mean_colour.py").write_text(readme_method())
    info = root / "mypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[wsfss_bench.methods]\nmean-colour = {MODULE}\n")
    monkeypatch.syspath_prepend(str(root))
    registry.entry_point_methods.cache_clear()
    yield root
    registry.entry_point_methods.cache_clear()


def _run(cache_dir, results, method):
    return main(["--cache-dir", str(cache_dir), "run", "--method", method, "--mode", "full", "--dataset",
                 "openmoji5i-mini", "--preset", "quick", "--fold", "0", "--results-dir", str(results)])


def test_the_readme_method_is_about_40_lines():
    assert 30 <= len(readme_method().splitlines()) <= 50


def test_a_method_runs_by_module_path_and_by_entry_point_and_is_tabled(package, mini, cache_dir, tmp_path, capsys):
    by_path, by_entry = tmp_path / "by_path", tmp_path / "by_entry"
    assert _run(cache_dir, by_path, MODULE) == 0
    assert _run(cache_dir, by_entry, "mean-colour") == 0
    [(_, a)], [(_, b)] = load_records(by_path), load_records(by_entry)
    assert a.method == b.method == "mean-colour" and a.method_source == b.method_source == MODULE
    assert a.miou == b.miou and 0 < a.miou < 100 and a.inter == b.inter
    capsys.readouterr()
    assert main(["table", "--results-dir", str(by_path), "--format", "csv"]) == 0
    assert f"mean-colour,{a.miou:.1f}," in capsys.readouterr().out
    assert main(["--cache-dir", str(cache_dir), "list"]) == 0
    assert f"mean-colour  (entry point {MODULE})" in capsys.readouterr().out


def test_a_sweep_runs_a_method_by_module_path(package, mini, cache_dir, tmp_path):
    from bench.harness.sweep import Paths, grid_cells, sweep

    cells = grid_cells({"dataset": "openmoji5i-mini", "preset": "quick", "methods": [MODULE], "modes": ["full"],
                        "folds": [0, 1]})
    outcomes = sweep(cells, Paths(cache_dir, tmp_path / "results"), jobs=1, log=lambda *_: None)
    assert not any(o.error for o in outcomes)
    assert sorted(r.fold for _, r in load_records(tmp_path / "results") if r.method == "mean-colour") == [0, 1]


def test_check_method_passes_the_readme_method(package, mini, cache_dir, capsys):
    for name in (MODULE, "mean-colour"):
        assert main(["--cache-dir", str(cache_dir), "check-method", name]) == 0
        out = capsys.readouterr().out
        assert out.count("\nok  ") + out.startswith("ok  ") == 8 and "every check passed" in out


class WrongShape:
    """Predicts at half the query's size."""

    name = "wrong-shape"

    def fit(self, view, config):
        pass

    def predict(self, episode):
        return [np.zeros((q.shape[0] // 2, q.shape[1]), np.uint8) for q in episode.query_images]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Forgetful(WrongShape):
    """Learns a colour threshold in fit() that differs from the previous fit's, and does not save
    it: a second fit and a restored copy both predict differently. (The threshold was an unseeded
    random draw: two draws close together, or both above every query's red channel, predicted the
    same, and the determinism check this class exists to trip passed now and then.)"""

    name = "forgetful"
    fits = 0  # fits so far, over every instance: consecutive fits alternate between two far-apart levels

    def fit(self, view, config):
        Forgetful.fits += 1
        self.level = 60 if Forgetful.fits % 2 else 180

    def predict(self, episode):
        return [(q[..., 0] > self.level).astype(np.uint8) for q in episode.query_images]

    def load_state_dict(self, state):
        self.level = 0


@pytest.mark.parametrize("cls,failed", [("WrongShape", "predictions"), ("Forgetful", "determinism")])
def test_check_method_names_the_broken_check(cls, failed, mini, cache_dir, capsys):
    assert main(["--cache-dir", str(cache_dir), "check-method", f"{__name__}:{cls}"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {failed}:" in out and "check(s) failed" in out


def test_unknown_module_and_a_name_taken_by_a_built_in_are_one_line_errors(cache_dir, tmp_path, capsys):
    assert _run(cache_dir, tmp_path / "r", "nopkg.nomodule:X") == 2
    assert "cannot import module 'nopkg.nomodule'" in capsys.readouterr().err

    class Impostor(WrongShape):
        name = "ours"

    globals()["Impostor"] = Impostor
    try:
        assert _run(cache_dir, tmp_path / "r", f"{__name__}:Impostor") == 2
        assert "calls itself 'ours'" in capsys.readouterr().err
    finally:
        del globals()["Impostor"]
