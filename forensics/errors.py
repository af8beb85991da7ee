"""Bad input, stopped runs and warnings.

The CLI turns an `InputError` into one line on stderr and exit status 2 (inputs are checked before
work starts, and a folder the command made and wrote nothing to is removed again); a `RunFailed`
into one line and exit status 1 (what finished is kept, a rerun resumes); a `Stopped` (SIGTERM,
SIGHUP) like Ctrl-C into one line and 128 + the signal's number.
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


_requested: list[int] = []  # signals asked to stop the process, in order (see `stop_requested`)


def request_stop(signum: int) -> None:
    """A signal handler's record that the process must stop, then `Stopped` raised: a raise that
    lands in a finalizer is swallowed by Python, the record is not (`check_stop` sees it)."""
    _requested.append(signum)
    raise Stopped(signum)


def clear_stop() -> None:
    """Forget the requests (a command that handled its stop; the next starts afresh)."""
    _requested.clear()


def check_stop() -> None:
    """Raise `Stopped` if a stop was requested (a wait loop's check between its waits)."""
    if _requested:
        raise Stopped(_requested[0])


def warn(message: str) -> None:
    """One line on stderr for something recovered from (e.g. a corrupt cache entry recomputed)."""
    print(f"forensics: warning: {message}", file=sys.stderr)
