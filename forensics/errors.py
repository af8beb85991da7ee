"""Bad input, stopped runs and warnings.

The CLI turns an `InputError` into one line on stderr and exit status 2 (nothing partial is left of a
folder the command made); a `RunFailed` into one line and exit status 1 (what finished is kept, a rerun
resumes); a `Stopped` (SIGTERM, SIGHUP) like Ctrl-C into one line and 128 + the signal's number.
"""

import sys


class InputError(ValueError):
    """Bad user input (file, line, setting); the message names where and what is wrong."""


class RunFailed(RuntimeError):
    """A run stopped for a reason that is not bad input (a worker process died, a cluster went away):
    the work that finished is kept and a rerun resumes from it."""


class Stopped(BaseException):
    """The process was asked to stop by a signal (SIGTERM, SIGHUP); `signum` is the signal's number.
    A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def warn(message: str) -> None:
    """One line on stderr for something recovered from (e.g. a corrupt cache entry recomputed)."""
    print(f"forensics: warning: {message}", file=sys.stderr)
