"""Bad input and warnings: the CLI turns an `InputError` into one line on stderr and exit status 2."""

import sys


class InputError(ValueError):
    """Bad user input (file, line, setting); the message names where and what is wrong."""


def warn(message: str) -> None:
    """One line on stderr for something recovered from (e.g. a corrupt cache entry recomputed)."""
    print(f"forensics: warning: {message}", file=sys.stderr)
