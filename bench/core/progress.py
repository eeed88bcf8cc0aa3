"""Progress of long steps. On a terminal: a tqdm bar on stderr. Elsewhere (nohup, CI, a cluster
scheduler's log file): a line on stderr every $WSFSS_LOG_EVERY seconds (default 30) of a step, and
one when a step that printed any ends: step/total, the values noted by the loop (e.g. the training
loss), rate and ETA. A step shorter than the interval prints nothing (a one-line error stays one
line). A loop notes values with `bar.note(loss=loss)`; tensors are
turned into numbers only when a line is printed (no device sync per step). `say(line)` prints a
line between them (a fit's validation points and verdict, bench/core/curves.py)."""
from __future__ import annotations

import os
import sys
import time


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
        n, printed = 0, False
        for item in self.iterable:
            yield item
            n += 1
            now = time.monotonic()
            if now - last >= self.every and n != self.total:
                print(self._line(n, now - start), file=sys.stderr, flush=True)
                last, printed = now, True
        if printed:
            print(f"{self._line(n, time.monotonic() - start)} · done", file=sys.stderr, flush=True)

    def _line(self, n: int, elapsed: float) -> str:
        parts = [f"{self.desc}: {n}/{self.total} ({100 * n / self.total:.0f}%)" if self.total else f"{self.desc}: {n}"]
        parts += [f"{k} {_number(v):.4g}" for k, v in self.values.items()]
        rate = n / elapsed if elapsed > 0 else 0.0
        parts.append(f"{rate:.3g}/s")
        if self.total and rate > 0 and n < self.total:
            parts.append(f"ETA {_duration((self.total - n) / rate)}")
        parts.append(f"elapsed {_duration(elapsed)}")
        return " · ".join(parts)


def _number(value) -> float:
    return float(value.detach()) if hasattr(value, "detach") else float(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
