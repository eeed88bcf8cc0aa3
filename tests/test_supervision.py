"""Named supervision settings: weak-test (GT training masks, pseudo test supports, the IMR-HSNet
setting) runs for every method on the full mode's fit, records what it gave, and is tabled with its
own columns and Δ against full."""
import pytest

from bench.core.records import load_records
from bench.harness.registry import METHODS
from bench.harness.runner import RunRequest, run
from bench.report.tables import render_tables
from test_contract import TINY
from test_pseudo import TINY as PSEUDO_TINY


@pytest.mark.parametrize("name", sorted(METHODS))
def test_weak_test_mode_reuses_the_full_fit_and_takes_pseudo_supports(name, mini, cache_dir, tmp_path):
    results = tmp_path / "results"
    base = dict(method=name, dataset="openmoji5i-mini", folds=(0,), preset="quick", config=TINY[name],
                cache_dir=cache_dir, results_dir=results)
    run(RunRequest(mode="full", **base), log=lambda *_: None)
    fits = set((cache_dir / "checkpoints").rglob("*.pt"))
    run(RunRequest(mode="weak-test", pseudo=PSEUDO_TINY, **base), log=lambda *_: None)
    assert set((cache_dir / "checkpoints").rglob("*.pt")) == fits  # no second fit: weak-test trains as full does
    records = {r.mode: r for _, r in load_records(results)}
    full, weak_test = records["full"], records["weak-test"]
    assert full.supervision == {"train_masks": "gt", "support_masks": "gt", "query_class_given": False,
                                "train_annotation_fingerprint": full.annotation_fingerprint}
    assert weak_test.supervision == {**full.supervision, "support_masks": "pseudo"}
    assert weak_test.annotation_fingerprint.startswith("pseudo:openmoji5i-mini:")
    assert weak_test.episode_sha256 == full.episode_sha256 and weak_test.pseudo
    table = render_tables(results, "csv")
    header = next(l for l in table.splitlines() if l.startswith("method,"))
    assert header.endswith("weak-test 5^0,weak-test mean,Δ (full−weak-test)")
    assert "weak-test = training GT, supports pseudo" in table


def test_a_pseudo_setting_in_full_mode_is_refused(mini, cache_dir, tmp_path):
    with pytest.raises(Exception, match="only applies to modes that use pseudo masks"):
        run(RunRequest(method="background", mode="full", dataset="openmoji5i-mini", folds=(0,), preset="quick",
                       pseudo=PSEUDO_TINY, cache_dir=cache_dir, results_dir=tmp_path), log=lambda *_: None)
