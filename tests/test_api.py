"""The Python API (bench/api.py): the same records and numbers as the command line."""
import csv
import io

import numpy as np
import pytest

from bench import api
from bench.cli import main


def test_api_run_and_table_agree_with_the_cli_table(mini, cache_dir, tmp_path, capsys):
    records = api.run("background", mode="full", dataset="openmoji5i-mini", preset="quick", folds=[0, 1],
                      cache_dir=cache_dir, results_dir=tmp_path, log=lambda *_: None)
    assert sorted(r.fold for r in records) == [0, 1] and all(r.method == "background" for r in records)
    assert [r.fold for r in api.records(tmp_path, fold=1)] == [1]
    frame = api.table(tmp_path)
    full = frame[(frame["mode"] == "full")].set_index("split")["miou"]
    assert full["mean"] == pytest.approx(np.mean([r.miou for r in records]))
    assert full["0"] == pytest.approx(next(r.miou for r in records if r.fold == 0))
    capsys.readouterr()
    assert main(["table", "--results-dir", str(tmp_path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO("\n".join(l for l in capsys.readouterr().out.splitlines() if not l.startswith("#")))))
    assert rows[0]["full mean"] == f"{full['mean']:.1f}" and rows[0]["full 5^1"] == f"{full['1']:.1f}"
