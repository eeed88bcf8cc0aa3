"""Test-only sweep cell for the termination test: marks that it started, sleeps far longer than
the test waits, and marks in a `finally` that its cleanup ran. Imported by name by a spawned pool
worker, so it lives in a module of its own."""
from __future__ import annotations

import os
import time
from pathlib import Path


def sleeping_cell(cell, folder, threads):
    folder = Path(folder)
    (folder / f"started-{cell}-{os.getpid()}").write_text("")
    try:
        time.sleep(300)
    finally:
        (folder / f"cleaned-{cell}").write_text("")
