"""SIGTERM as an exception. Python's default for SIGTERM (sent by `timeout`, a scheduler's walltime,
`kill`) ends the process on the spot: no `finally` runs, so atomic writes leave their `.tmp` files,
locks and staging folders wait for the next builder, and a parallel sweep's worker processes keep
training, orphaned, for up to an hour. Raised as an exception instead, it unwinds like Ctrl-C."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class Terminated(SystemExit):
    """SIGTERM arrived. A SystemExit, not an Exception: `except Exception` handlers (a sweep cell's
    error report) let it through, and a process that does not catch it exits with EXIT_CODE."""

    def __init__(self):
        super().__init__(EXIT_CODE)


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends a stuck cleanup at once
    raise Terminated()


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises Terminated in this process (main thread only: Python runs signal
    handlers there). A sweep's pool workers use unwind_on_first_stop_signal instead."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def _unwind_once(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def unwind_on_first_stop_signal() -> None:
    """A sweep's pool worker: its first SIGTERM or SIGINT unwinds the cell, later ones are ignored.
    When one worker exits, the pool terminates its siblings (a broken pool): that second signal must
    not cut short a sibling's cleanup; the sweep kills a worker whose cleanup is stuck."""
    signal.signal(signal.SIGTERM, _unwind_once)
    signal.signal(signal.SIGINT, _unwind_once)


@contextmanager
def sigterm_raises():
    """raise_on_sigterm for the block, then the previous handler again (the CLI's `main` is also
    called in-process, by tests and scripts, whose own handling must come back afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    raise_on_sigterm()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
