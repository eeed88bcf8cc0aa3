"""The `bench` command line: a thin layer over the harness, one module per command group
(run.py: run, sweep; results.py: table, figure, report, verify, claims; nets.py: backbone, trunk,
pseudo; data.py: data, list), flags shared by several commands declared once in flags.py.
User errors print one line and exit with code 2."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.cli import data, nets, results, run
from bench.cli.flags import default_cache
from bench.core.errors import BenchError
from bench.core.files import git_commit
from bench.core.termination import EXIT_CODE, Terminated, sigterm_raises

GROUPS = (run, results, data, nets)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command group; each command's handler is its `handler` default."""
    p = argparse.ArgumentParser(prog="bench", description="Weakly supervised few-shot segmentation benchmark")
    p.add_argument("--cache-dir", type=Path, default=None, help="datasets, episodes, checkpoints (default ./cache or $WSFSS_CACHE)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        for name, handler in group.add_parsers(sub).items():
            sub.choices[name].set_defaults(handler=handler)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cache = args.cache_dir or default_cache()
    git_commit()  # the commit whose code this run imports, before a long run lets the checkout move
    try:
        with sigterm_raises():  # `timeout` and schedulers stop a run with SIGTERM: clean up as for Ctrl-C
            if hasattr(args, "device"):
                from bench.core.device import use_device

                use_device(args.device)
            return args.handler(args, cache)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        print("interrupted; finished records are kept, re-run to continue", file=sys.stderr)
        return EXIT_CODE if isinstance(exc, Terminated) else 130
    except BrokenPipeError:
        # output piped into `head` and the like: the reader left, which is not our error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
