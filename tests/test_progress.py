"""Progress in a log file: with stderr not a terminal, a long step prints a line every
$WSFSS_LOG_EVERY seconds with step/total, the loop's loss, rate and ETA, and one when it ends; a
step shorter than the interval prints nothing."""
import subprocess
import sys

SCRIPT = """
import time
from bench.core.progress import progress
bar = progress(range(6), desc="training X")
for k in bar:
    time.sleep(0.25)
    bar.note(loss=1.0 / (k + 1))
"""


def test_a_step_run_with_stderr_in_a_file_prints_progress_lines(tmp_path):
    log = tmp_path / "log.txt"
    with open(log, "w") as err:
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=err, check=True,
                       env={"WSFSS_LOG_EVERY": "0.5", "PATH": "/usr/bin:/bin"})
    lines = log.read_text().splitlines()
    middle = lines[:-1]
    assert 1 <= len(middle) <= 4  # about every 0.5 s of a 1.5 s loop, never one per step
    assert all(" · loss " in l and "/s · ETA " in l and l.startswith("training X: ") for l in middle)
    assert lines[-1].startswith("training X: 6/6 (100%) · loss 0.1667 · ") and lines[-1].endswith(" · done")


def test_the_default_interval_is_30_seconds(tmp_path):
    log = tmp_path / "log.txt"
    with open(log, "w") as err:
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=err, check=True, env={"PATH": "/usr/bin:/bin"})
    assert log.read_text() == ""  # 1.5 s is under 30 s
