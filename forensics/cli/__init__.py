"""The `forensics` command. Bad input ends with one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from forensics.cli import (
    attack,
    cache,
    cure,
    demo,
    diff,
    import_gguf,
    localize,
    probe,
    real,
    relearn,
    report,
    score,
    study,
    unlearn,
    validate,
    world,
)
from forensics.errors import InputError, RunFailed, Stopped, clear_stop, request_stop


class _Parser(argparse.ArgumentParser):
    """argparse with bad arguments reported in one line (exit status 2), like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"forensics: error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="forensics",
        description=("Did an unlearning method erase facts from a model's weights, or only hide them?"),
    )
    sub = p.add_subparsers(dest="command", required=True)
    # in the order `forensics --help` lists them
    for command in (
        world,
        score,
        unlearn,
        relearn,
        attack,
        probe,
        diff,
        localize,
        study,
        report,
        demo,
        real,
        validate,
        cure,
        import_gguf,
        cache,
    ):
        command.add(sub)
    return p


def _stop_on(signum: int, frame) -> None:
    request_stop(signum)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or bad arguments (already reported in one line)
        return int(e.code or 0)
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, _stop_on) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        return args.func(args) or 0
    except InputError as e:
        print(f"forensics: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"forensics: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a read-only folder, a full disk, a file that vanished
        where = f"{e.filename}: " if e.filename else ""
        print(f"forensics: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped) as e:
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"forensics: stopped ({name}); finished stages and runs are kept, rerun to resume",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        clear_stop()
        for s, handler in handlers.items():
            signal.signal(s, handler)
