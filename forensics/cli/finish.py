"""Tables the commands print, the `study --fail-on` gate, and the endings of a study."""

from __future__ import annotations

import time
from pathlib import Path

from forensics.attacks.adequacy import compute_words, words
from forensics.lenses.relearn import LABEL as RTT


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table; floats with two decimals, "–" for a value not measured (None, as in the
    HTML report), blank for a column a row does not have."""

    def cell(row: dict, column: str) -> str:
        value = row.get(column, "")
        if value is None:
            return "–"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    cells = [[cell(r, c) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def world_table(world: dict) -> str:
    """The world's accuracy table: one row per model, one column per forget split and set (per kind,
    forget / near-retain / retain, in a two-kind world)."""
    rows = []
    for name, m in world["models"].items():
        acc = m["accuracy"]
        if "kinds" in world:
            sets = ("forget", "near_retain", "retain")
            acc = {f"{kind} {s}": acc[kind][s] for kind in world["kinds"] for s in sets if s in acc[kind]}
        rows.append({"model": name, **acc, "epochs": m["epochs"], "seconds": m["seconds"]})
    return format_table(rows, list(dict.fromkeys(k for r in rows for k in r)))


# exit statuses of `study --fail-on` (documented in the README)
FAIL_HIDDEN, FAIL_INCONCLUSIVE = 3, 4


def gate(results: dict, fail_on: str | None) -> int:
    """The exit status `--fail-on` asks for: 3 when a method is hidden (or not unlearned at all),
    4 when, with `--fail-on inconclusive`, a method is inconclusive or the study cannot decide (its
    reference failed); else 0."""
    if fail_on is None:
        return 0
    verdicts = [r["verdict"] for r in results["summary"].values()]
    if any(v.startswith(("hidden", "not unlearned", "unlearning did not succeed")) for v in verdicts):
        return FAIL_HIDDEN
    if fail_on == "inconclusive" and any(v.startswith(("inconclusive", "cannot decide")) for v in verdicts):
        return FAIL_INCONCLUSIVE
    return 0


def worst(codes: list[int]) -> int:
    """The gate over several studies (a kinds study's kinds): hidden (3) wins over inconclusive (4)."""
    for code in (FAIL_HIDDEN, FAIL_INCONCLUSIVE):
        if code in codes:
            return code
    return 0


def finish_study(results: dict, out: Path, started: float | None) -> None:
    """Write the report, print the summary table and the report's path (and the time since
    `started`, unless None: one kind of several)."""
    from reports.html import write_report
    from reports.markdown import write_summary
    from reports.table import plain_rows, summary_table, text

    report = write_report(results, out / "report" / "index.html")
    summary = write_summary(results, out / "summary.md", report)
    table = summary_table(results)
    rows = plain_rows(table)
    print(
        f"{results['name']}: {results['config']['scorer']} scorer, chance {text(table.chance)}; {table.note}"
    )
    print(format_table(rows, list(rows[0])) if rows else "(no unlearned models)")
    for name, per_lens in (results.get("reference") or {}).get("attack", {}).items():
        if RTT in per_lens:
            print(f"RTT attack on the {name}: {words(per_lens[RTT])}; {compute_words(per_lens[RTT])}")
    print(f"results: {out / 'results.json'}")
    print(f"report: {report}")
    print(f"summary: {summary}")
    if started is not None:
        print(f"done in {time.perf_counter() - started:.1f} s")


def finish_kinds(results: dict, by_kind: dict[str, dict], ks, started: float) -> None:
    """Each kind's report and table, then the comparison's report, summary.md and its sentences."""
    from reports.kinds import write_kinds_report
    from reports.markdown import write_summary

    for kind, cfg in ks.studies.items():
        finish_study(by_kind[kind], Path(cfg.out), None)  # the total once, at the end
    report = write_kinds_report(results, Path(ks.out) / "report" / "index.html")
    summary = write_summary(results, Path(ks.out) / "summary.md", report)
    print("kinds compared:")
    for entry in results["comparison"]["methods"].values():
        if "words" in entry:
            print(f"- {entry['words']}")
    print(f"results: {Path(ks.out) / 'results.json'}")
    print(f"report: {report}")
    print(f"summary: {summary}")
    print(f"done in {time.perf_counter() - started:.1f} s")
