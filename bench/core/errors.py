"""User-facing errors: one line that names the file and the fix; the CLI exits with code 2."""


class BenchError(Exception):
    """Bad input or missing prerequisite. The message is printed as-is, without a traceback."""
