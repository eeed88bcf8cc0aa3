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


def test_the_rate_and_eta_are_those_of_the_last_lines_and_the_end_line_gives_the_whole_steps(monkeypatch, capsys):
    """A fit slowed at its start (another job, its first validations) gets the ETA of how it runs
    now, not of its mean since the start; a clock that the loop advances makes the times exact."""
    from bench.core import progress as p

    clock = [0.0]
    monkeypatch.setattr(p.time, "monotonic", lambda: clock[0])

    def steps():
        for k in range(2005):
            clock[0] += 1.0 if k < 5 else 1 / 64  # 5 steps of 1 s, then 64 steps a second
            yield k

    for _ in p._LogLines(steps(), 2005, "training X", every=1.0):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "training X: 1/2005 (0%) · 1/s · ETA 33m24s · elapsed 1s"
    assert len(lines) == 5 + 31 + 1  # a line a second, one at the end
    # 23 s into the fast steps the window (the last WINDOW lines) holds fast steps only: 528 left at 64/s
    assert lines[5 + 22] == "training X: 1477/2005 (74%) · 64/s · ETA 8s · elapsed 28s"  # the mean, 52.75/s, says 10s
    assert lines[-1] == "training X: 2005/2005 (100%) · 55.3/s · elapsed 36s · done"
