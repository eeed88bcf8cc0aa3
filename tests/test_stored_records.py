"""Records written by the harness at b698898 (before the layering of issue 21: every method ×
full/weak on openmoji5i-mini, `quick`, fold 0) are tabled byte for byte as that version tabled them
(its `bench table` output is stored beside them), but for the legend under each table that tables
carry since issue 22 (v1 presets: every way scored, merged FB-IoU, pooled IoU; what each mode gave)
and, in markdown, the "?" that marks every cell since fits have curves (these fits have none).
CSV cells stay plain numbers: the marks are in the legend only."""
import re
from pathlib import Path

import pytest

from bench.report.tables import render_tables

DATA = Path(__file__).parent / "data"
V1 = ("absent ways scored; FB-IoU with merged foreground; IoU pooled over episodes; supervision: full = training GT, "
      "supports GT, weak = training pseudo, supports pseudo; query class never given")


NO_CURVE = "? = a fit of the cell has no curve (fitted before curves were recorded; --retrain gives one)"


@pytest.mark.parametrize("fmt,suffix,legend", [("markdown", "md", f"\n\nscoring: {V1}; {NO_CURVE}"),
                                               ("csv", "csv", f"\n# scoring: {V1}; {NO_CURVE}")])
def test_stored_records_table_as_the_version_that_wrote_them(fmt, suffix, legend):
    want = (DATA / f"records_b698898.table.{suffix}").read_text()
    got = render_tables(DATA / "records_b698898", fmt)
    assert got.count(legend) == 1  # one table (one setting), one legend under it
    got = got.replace(legend, "").replace(" · profile embedded", "")  # titles name the profile since issue 23
    if fmt == "csv":
        assert got == want
        return
    assert _cells(got, strip_marks=True) == _cells(want, strip_marks=False)
    header, _, *rows = _cells(got, strip_marks=False)
    numbers = [c for row in rows for h, c in zip(header, row) if c and h != "method" and not h.startswith("Δ")]
    assert numbers and all(c.endswith(" ?") for c in numbers)  # every score cell; a Δ cell carries no mark


def _cells(markdown: str, strip_marks: bool) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("|")]
    return [[re.sub(r" \?$", "", c) if strip_marks else c for c in row] for row in rows]


def test_stored_records_have_no_sums_for_panets_rule_and_say_so():
    with pytest.raises(Exception, match=re.escape("has no sums for") + ".*re-run that cell"):
        render_tables(DATA / "records_b698898", "markdown", scoring={"absent_ways": "skip"})
    fb = render_tables(DATA / "records_b698898", "csv", scoring={"fbiou": "per_class"})  # from the class sums: fine
    assert "FB-IoU from per-class sums (PANet)" in fb


def test_episode_files_keep_the_sha256_the_stored_records_name(mini, cache_dir):
    """Presets gained scoring fields; the episodes they draw did not change, and neither did the
    episode files' bytes: a fresh file for the stored records' setting has their sha256."""
    from bench.core.records import load_records
    from bench.harness.episodes import load_or_sample_episodes
    from bench.harness.presets import get_preset

    record = next(r for _, r in load_records(DATA / "records_b698898") if r.method == "panet" and r.mode == "full")
    assert mini.fingerprint() == record.dataset_fingerprint  # the embedded generator is deterministic
    _, sha, _ = load_or_sample_episodes(cache_dir, get_preset("quick"), mini, 0, 1, 1, 0)
    assert sha == record.episode_sha256


def test_claims_read_rows_with_settings_and_profiles_and_say_how_they_ran(tmp_path):
    """Real data needs --set for weight files: a method whose only row carries settings (and the
    reference profile) still enters the claims, and the setting says what it ran with; two such
    rows and no plain one are ambiguous and left out, named."""
    import dataclasses
    import shutil

    from bench.core.records import load_records
    from bench.report.claims import claim_rows

    for path, r in load_records(DATA / "records_b698898"):
        if r.method == "panet":
            dataclasses.replace(r, config={"trunk_checkpoint": "vgg16.pth"}, profile="reference").write(tmp_path)
        elif r.method == "amp":
            for width in (0.5, 1.0):
                dataclasses.replace(r, config={"trunk_width": width}).write(tmp_path)
        else:
            dataclasses.replace(r).write(tmp_path)
    rows = claim_rows(tmp_path)
    claim1 = next(row for row in rows if row[0] == "1")
    assert "panet" in claim1[3] and "amp " not in claim1[3].split(" · ")[0]
    assert "panet full: profile reference, trunk_checkpoint=vgg16.pth" in claim1[3]
    assert "amp full: 2 --set variants, none plain (left out)" in claim1[3]
    shutil.rmtree(tmp_path)


def test_claims_leave_out_a_row_that_lacks_folds_and_say_which(tmp_path):
    """A row made over several sessions (PFENet's 32,000-step row, one fold at a time) has no mean
    yet: the claims leave it out by name, with the folds it has and lacks, and their caveat names
    no row they did not read (it used to list the partial row's unconverged fits as if it were in)."""
    import dataclasses

    from bench.core.records import load_records
    from bench.report.claims import claim_rows

    for _, r in load_records(DATA / "records_b698898"):
        r.write(tmp_path)
        if r.method != "pfenet":
            dataclasses.replace(r, fold=1).write(tmp_path)
    claim1 = next(row for row in claim_rows(tmp_path) if row[0] == "1")
    numbers, *notes = claim1[3].split(" · ")
    assert "panet" in numbers and "amp" in numbers and "pfenet" not in numbers
    caveat = next(n for n in notes if n.startswith("no curve"))
    assert "panet full" in caveat and "pfenet" not in caveat
    assert "left out, folds missing: pfenet full (has fold 0; lacks 1); pfenet weak (has fold 0; lacks 1)" in notes
    assert claim1[1].endswith(" · folds 0, 1 of 4")  # the setting's means are over the folds it has
    claim4 = next(row for row in claim_rows(tmp_path) if row[0] == "4")  # reads no baseline: names none left out
    assert claim4[2] == "not checkable" and "left out" not in claim4[3]


def test_claims_on_a_delta_leave_out_a_row_whose_other_mode_is_missing_and_say_which(tmp_path):
    """PFENet's four full folds made before any weak fold: claims 1 and 2 (on Δ = full − weak)
    cannot read the row, so their caveat does not name its fits (it did: "no curve: … pfenet full"
    beside numbers without PFENet) and a note names it; claim 3 (weak rows only) is silent on it."""
    import dataclasses

    from bench.core.records import load_records
    from bench.report.claims import claim_rows

    for _, r in load_records(DATA / "records_b698898"):
        if r.method != "pfenet" or r.mode == "full":
            r.write(tmp_path)
            dataclasses.replace(r, fold=1).write(tmp_path)
    rows = claim_rows(tmp_path)
    for claim in ("1", "2"):
        row = next(row for row in rows if row[0] == claim)
        numbers, *notes = row[3].split(" · ")
        assert "pfenet" not in numbers and "panet" in numbers
        caveat = next(n for n in notes if n.startswith("no curve"))
        assert "panet full" in caveat and "pfenet" not in caveat
        assert notes[-1] == "left out, other mode missing: pfenet full"
    claim3 = next(row for row in rows if row[0] == "3")  # its "ran with" lists the setting's every record
    assert "pfenet" not in claim3[3].split(" · ran with")[0] and "left out" not in claim3[3]


def test_a_claim_not_checkable_names_the_rows_left_out_for_missing_folds(tmp_path):
    """When the rows a claim could read all lack folds (PFENet's new default made one fold at a time
    beside `ours`' weak row only), "not checkable" says which rows were left out and why, instead of
    only that no method has both modes."""
    import dataclasses

    from bench.core.records import load_records
    from bench.report.claims import claim_rows

    for _, r in load_records(DATA / "records_b698898"):
        if r.method == "pfenet":
            r.write(tmp_path)
        elif (r.method, r.mode) == ("ours", "weak"):
            r.write(tmp_path)
            dataclasses.replace(r, fold=1).write(tmp_path)
    claim1 = next(row for row in claim_rows(tmp_path) if row[0] == "1")
    assert claim1[2] == "not checkable"
    assert claim1[3] == ("no method with both modes · left out, folds missing: openmoji5i-mini · 1-way 1-shot: "
                         "pfenet full (has fold 0; lacks 1); pfenet weak (has fold 0; lacks 1)")
