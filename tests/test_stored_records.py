"""Records written by the harness at b698898 (before the layering of issue 21: every method ×
full/weak on openmoji5i-mini, `quick`, fold 0) are tabled byte for byte as that version tabled them
(its `bench table` output is stored beside them)."""
from pathlib import Path

import pytest

from bench.report.tables import render_tables

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("fmt,suffix", [("markdown", "md"), ("csv", "csv")])
def test_stored_records_table_as_the_version_that_wrote_them(fmt, suffix):
    want = (DATA / f"records_b698898.table.{suffix}").read_text()
    assert render_tables(DATA / "records_b698898", fmt) == want
