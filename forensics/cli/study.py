"""`forensics study`: every lens on the checkpoints a study config names."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from forensics.cli.args import FORCE, _runtime_args
from forensics.cli.finish import finish_kinds, finish_study, gate, worst


def cmd_study(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from forensics.study.config import KindStudy
    from forensics.study.config_file import load_config
    from forensics.study.kinds import run_kind_study
    from forensics.study.run import run_study

    start = time.perf_counter()
    cfg = load_config(Path(a.config))
    if isinstance(cfg, KindStudy):
        studies = {kind: with_flags(c, a) for kind, c in cfg.studies.items()}
        results, by_kind = run_kind_study(replace(cfg, studies=studies), not a.quiet, a.force)
        finish_kinds(results, by_kind, cfg, start)
        code = worst([gate(r, a.fail_on) for r in by_kind.values()])
    else:
        cfg = with_flags(cfg, a)
        results = run_study(cfg, progress=not a.quiet, force=a.force)
        finish_study(results, Path(cfg.out), start)
        code = gate(results, a.fail_on)
    if code:
        print(f"forensics: --fail-on {a.fail_on}: exit status {code}", file=sys.stderr)
    return code


def with_flags(cfg, a: argparse.Namespace):
    """The study config with what --device/--dtype/--device-map/--max-memory/--executor/--ray-address
    gave in place of its own values."""
    from dataclasses import replace

    from forensics.models.runtime import Runtime

    given = {
        k: getattr(a, k) for k in ("device", "dtype", "device_map", "max_memory") if getattr(a, k) is not None
    }
    runtime = Runtime(**{**vars(cfg.runtime), **given}) if given else cfg.runtime
    jobs = {
        k: getattr(a, k)
        for k in ("executor", "ray_address", "workers", "ray_timeout")
        if getattr(a, k) is not None
    }
    return replace(cfg, runtime=runtime, **jobs)


def add(subparsers) -> None:
    st = subparsers.add_parser(
        "study", help="every lens on checkpoints named in a TOML config; results + report"
    )
    st.add_argument("config", help="a study TOML (see README)")
    st.add_argument("--quiet", action="store_true", help="no progress bars")
    st.add_argument("--force", **FORCE)
    st.add_argument(
        "--fail-on",
        choices=("hidden", "inconclusive"),
        help="exit 3 when a method is hidden or not unlearned; with 'inconclusive', also 4 when one is",
    )
    _runtime_args(st, grid=True, defaults=False)
    st.set_defaults(func=cmd_study)
