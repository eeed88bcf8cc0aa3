"""`bench control`: the same episodes with real supports, supports of another class and empty
support masks. The oracle ignores its supports (no drop); a method that copies its support's mask
position drops to the hand-checkable floor; the report tables the control."""

import numpy as np

from bench.cli import main
from bench.harness.control import load_controls
from oracle import ORACLE


class SupportCopy:
    """Predicts, for each way, the union of its support masks (the query's size at wacv22's 129x129):
    all it knows comes from its supports, so empty masks leave it nothing."""

    name = "support-copy"

    def fit(self, view, config):
        pass

    def predict(self, episode):
        out = []
        for query in episode.query_images:
            pred = np.zeros(query.shape[:2], np.uint8)
            for j, masks in enumerate(episode.support_masks, 1):
                for m in masks:
                    if m.shape == pred.shape:
                        pred[(m == j) & (pred == 0)] = j
            out.append(pred)
        return out

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _control(cache_dir, results, method, *extra):
    return main(["--cache-dir", str(cache_dir), "control", "--method", method, "--mode", "full", "--dataset",
                 "openmoji5i-mini", "--preset", "wacv22", "--fold", "0", "--seed", "1234", "--results-dir", str(results), *extra])


def test_the_oracle_survives_every_control_and_support_copy_does_not(mini, cache_dir, tmp_path, capsys):
    results = tmp_path / "results"
    assert _control(cache_dir, results, ORACLE) == 0
    assert _control(cache_dir, results, f"{__name__}:SupportCopy") == 0
    controls = {c["method"]: c for c in load_controls(results)}
    assert controls["oracle"]["miou"] == {"real": 100.0, "wrong_class": 100.0, "empty_masks": 100.0}
    copy = controls["support-copy"]["miou"]
    assert copy["empty_masks"] == 0.0  # nothing to copy: background everywhere
    assert copy["real"] > 0 and copy["wrong_class"] > 0  # a mask position copied from any support overlaps a bit
    assert controls["oracle"]["episode_sha256"] == controls["support-copy"]["episode_sha256"]
    assert controls["oracle"]["annotation_fingerprint"] == f"gt:{mini.name}:{mini.fingerprint()}"  # the supports' masks
    capsys.readouterr()
    assert main(["report", "--results-dir", str(results)]) == 2  # no run records: the report says so
    run = main(["--cache-dir", str(cache_dir), "run", "--method", ORACLE, "--mode", "full", "--dataset", "openmoji5i-mini",
                "--preset", "wacv22", "--fold", "0", "--seed", "1234", "--results-dir", str(results)])
    assert run == 0 and main(["report", "--results-dir", str(results)]) == 0
    page = (results / "report.md").read_text()
    row = next(l for l in page.splitlines() if "| support-copy" in l)
    assert f"| {copy['real']:.1f} " in row and f"| {copy['real'] - copy['empty_masks']:.1f} " in row


def test_wrong_class_supports_hold_the_next_fold_class_marked_as_the_way(mini, cache_dir):
    from bench.core.types import GroundTruthMasks
    from bench.harness.control import _donor_images, _wrong_class
    from bench.harness.episodes import build_episode_input, load_or_sample_episodes
    from bench.harness.presets import get_preset

    preset = get_preset("quick")
    gt = GroundTruthMasks(mini)
    specs, _, _ = load_or_sample_episodes(cache_dir, preset, mini, 0, 2, 1, 0)
    classes = mini.fold_classes(0)
    donors = _donor_images(mini, preset, classes, cache_dir)
    for spec in specs[:5]:
        wrong = _wrong_class(spec, build_episode_input(spec, mini, gt, preset), classes, donors, mini, gt, preset,
                             np.random.default_rng(0))
        for j, (c, ids, masks) in enumerate(zip(spec.class_ids, wrong.support_ids, wrong.support_masks), 1):
            other = classes[(classes.index(c) + 1) % len(classes)]
            for image_id, mask in zip(ids, masks):
                assert image_id not in spec.query_ids and (mini.mask(image_id) == other).any()
                assert np.array_equal(mask == j, mini.mask(image_id) == other)  # the other class, as this way
                assert set(np.unique(mask)) <= {0, j, 255}


def test_a_control_under_another_profile_is_its_own_record_and_row(mini, cache_dir, tmp_path):
    """Run records of two profiles never share a folder (the profile names the variant); nor may the
    control records of one fit: they used to, so a `reference` control overwrote an `embedded` one.
    Nor are controls of two fit recipes one row."""
    from bench.report.page import control_table

    results = tmp_path / "results"
    assert _control(cache_dir, results, ORACLE, "--profile", "embedded") == 0
    assert _control(cache_dir, results, ORACLE, "--profile", "reference") == 0
    paths = sorted(p.relative_to(results).parts[2] for p in results.rglob("control_*.json"))
    assert paths == ["oracle", "oracle+profile=reference"]
    controls = load_controls(results)
    rows = [l for l in control_table(controls).splitlines() if "| oracle" in l]
    assert len(rows) == 2 and sum("profile=reference" in l for l in rows) == 1
    assert "recipe" not in control_table(controls).splitlines()[0]  # one recipe: no column for it
    # a control names its fit's recipes, as a run record does: one made under an older pool backbone
    # is its own row, never averaged with this recipe's (it was, and the records said nothing)
    from bench.harness.runner import trained_networks_recipes

    [c] = [c for c in controls if c["profile"] == "embedded"]
    assert c["recipes"] == trained_networks_recipes()
    older = dict(c, recipes={**c["recipes"], "backbone": c["recipes"]["backbone"] - 1})
    table = control_table([c, older, dict(c, recipes={})]).splitlines()
    rows = table[2:]
    assert "| recipe " in table[0] and len(rows) == 3
    assert [sum(f"backbone {b}," in l for l in rows) for b in (c["recipes"]["backbone"], older["recipes"]["backbone"])] == [1, 1]
    assert sum("| not recorded " in l for l in rows) == 1
