"""`forensics report`: the HTML report of a results.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.errors import InputError


def cmd_report(a: argparse.Namespace) -> None:
    from reports.html import check_out, write_report
    from reports.schema import read_results

    results = read_results(a.results)
    out = Path(a.out) if a.out else Path(a.results).parent / "report" / "index.html"
    if out.exists() and out.samefile(a.results):  # the same file by any path, links included
        raise InputError(f"{out}: is the results file itself; name another file for the report")
    check_out(out)  # a report forensics wrote is replaced, any other file refused, before rendering
    if "comparison" in results:
        from reports.kinds import write_kinds_report

        print(f"report: {write_kinds_report(results, out)}")
    else:
        print(f"report: {write_report(results, out)}")


def add(subparsers) -> None:
    rp = subparsers.add_parser("report", help="render the HTML report of a results.json")
    rp.add_argument("results", help="a results.json written by a study or the demo")
    rp.add_argument("--out", help="the HTML file (default: report/index.html beside the results)")
    rp.set_defaults(func=cmd_report)
