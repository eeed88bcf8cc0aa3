"""Progress of long steps. On a terminal: a tqdm bar on stderr. Elsewhere (nohup, CI, a cluster
scheduler's log file): a line on stderr every $WSFSS_LOG_EVERY seconds (default 30) of a step, and
one when a step that printed any ends: step/total, the values noted by the loop (e.g. the training
loss), rate and ETA (the rate over the last few lines, `WINDOW`: a fit slowed at its start by
another job, or sped up after its first validations, gets the ETA of how it runs now; the line
at the end gives the whole step's rate). A step shorter than the interval prints nothing (a one-line error stays one
line). A loop notes values with `bar.note(loss=loss)`; tensors are
turned into numbers only when a line is printed (no device sync per step). `say(line)` prints a
line between them (a fit's validation points and verdict, bench/core/curves.py)."""
from __future__ import annotations

import os
import sys
import time
from collections import deque

WINDOW = 10  # lines (5 min at the default interval) the rate and the ETA are measured over


def say(line: str) -> None:
    """One line on stderr between progress lines (a fit's validation points, its verdict); on a
    terminal through tqdm, so an open bar is redrawn below it instead of being broken."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def progress(iterable, total=None, desc=None):
    total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    if sys.stderr.isatty():
        return _Bar(iterable, total, desc)
    return _LogLines(iterable, total, desc, float(os.environ.get("WSFSS_LOG_EVERY", "30")))


class _Bar:
    def __init__(self, iterable, total, desc):
        from tqdm import tqdm

        self._bar = tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
        self._n = 0

    def __iter__(self):
        return iter(self._bar)

    def note(self, **values) -> None:
        self._n += 1
        if self._n % 10 == 1:  # a float() of a device tensor syncs: not every step
            self._bar.set_postfix({k: _number(v) for k, v in values.items()}, refresh=False)


class _LogLines:
    def __init__(self, iterable, total, desc, every: float):
        self.iterable, self.total, self.desc, self.every = iterable, total, desc or "working", every
        self.values: dict = {}

    def note(self, **values) -> None:
        self.values = values

    def __iter__(self):
        start = last = time.monotonic()
        marks = deque([(start, 0)], maxlen=WINDOW + 1)  # (time, steps) at the start and at each line
        n, printed = 0, False
        for item in self.iterable:
            yield item
            n += 1
            now = time.monotonic()
            if now - last >= self.every and n != self.total:
                print(self._line(n, now - start, recent_rate(marks[0], (now, n))), file=sys.stderr, flush=True)
                marks.append((now, n))
                last, printed = now, True
        if printed:
            now = time.monotonic()
            print(f"{self._line(n, now - start, recent_rate((start, 0), (now, n)))} · done", file=sys.stderr, flush=True)

    def _line(self, n: int, elapsed: float, rate: float) -> str:
        parts = [f"{self.desc}: {n}/{self.total} ({100 * n / self.total:.0f}%)" if self.total else f"{self.desc}: {n}"]
        parts += [f"{k} {_number(v):.4g}" for k, v in self.values.items()]
        parts.append(f"{rate:.3g}/s")
        if self.total and rate > 0 and n < self.total:
            parts.append(f"ETA {_duration((self.total - n) / rate)}")
        parts.append(f"elapsed {_duration(elapsed)}")
        return " · ".join(parts)


def recent_rate(then: tuple[float, int], now: tuple[float, int]) -> float:
    """Steps per second between two (time, steps) marks."""
    seconds = now[0] - then[0]
    return (now[1] - then[1]) / seconds if seconds > 0 else 0.0


def _number(value) -> float:
    return float(value.detach()) if hasattr(value, "detach") else float(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
