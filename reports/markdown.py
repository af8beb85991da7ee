"""results.json → summary.md: the verdict table with intervals, for a CI log or a pull request."""

from __future__ import annotations

import re
from pathlib import Path

from forensics.attacks.adequacy import compute_words, rounds_words, words
from forensics.lenses.relearn import LABEL as RTT
from forensics.lenses.relearn import view as attack_view
from forensics.outcomes import with_ci
from forensics.outdir import write_atomic
from reports.cure import INTRO, cure_rows, ranking_text
from reports.table import RECOVERY, recovery_text, summary_table, verdict_text

# what starts Markdown or HTML markup (GitHub renders raw HTML), a table's pipe and the escape itself;
# `_` only where it can open or close emphasis (not between two letters or digits: `never_learned`)
MARKUP = re.compile(r"[\\`*\[\]<>|&~#]|(?<![^\W_])_|_(?![^\W_])")
# a leading `-` or `+`, or an ordered list's `1.` / `1)`: the text would start a list in a list item
LIST_START = re.compile(r"^(\d{1,9}(?=[.)](?:\s|$))|(?=[-+]))(.)")


def _cell(value) -> str:
    """A value from results as Markdown text that reads as itself when rendered: markup characters
    backslash-escaped (a dataset's string cannot inject markup or HTML), on one line."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    text = MARKUP.sub(lambda m: "\\" + m[0], " ".join(str(value).splitlines()).strip())
    return LIST_START.sub(lambda m: f"{m[1]}\\{m[2]}", text)


def render(results: dict, report: Path | None = None) -> str:
    """The summary as Markdown: one row per method, the deciding lens's difference and interval."""
    lines = [f"# Unlearning forensics: {_cell(results.get('name', ''))}", ""]
    table = summary_table(results)
    config = results.get("config", {})
    lines.append(
        f"Scorer {_cell(config.get('scorer'))}, chance {_cell(table.chance)}, "
        f"grid {_cell(config.get('grid'))}; {_cell(table.note)}."
    )
    columns = (*table.columns, "verdict")
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table.rows:
        cells = [*(row.cells.get(c) for c in table.columns), verdict_text(row)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    for row in table.rows:
        lines.append(f"- **{_cell(row.cells['method'])}**: {_cell(row.evidence)}")
    where = [f"- **{_cell(row.cells['method'])}**: {_cell(row.where)}" for row in table.rows if row.where]
    if where:
        lines += ["", "Where the answers still are (the information map, layer by layer):", "", *where]
    lines += attack_lines(results)
    lines += cure_lines(results)
    if report is not None:
        lines += ["", f"Report: {report}"]
    return "\n".join(lines) + "\n"


def cure_lines(results: dict) -> list[str]:
    """The cures' table and sentence (`forensics cure`), or nothing."""
    cure = results.get("cure")
    if not cure:
        return []
    rows = cure_rows(cure)
    lines = [
        "",
        "## Cures",
        "",
        _cell(INTRO),
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
    ]
    lines += ["| " + " | ".join(_cell(v) for v in r.values()) + " |" for r in rows]
    return [*lines, "", _cell(cure["words"]) + ".", "", f"The map's ranking: {_cell(ranking_text(cure))}."]


def attack_lines(results: dict) -> list[str]:
    """RTT's strength per model (docs/design.md §13): adequate or what it lacks, its compute and rounds."""
    rtt = attack_view(results)
    if rtt is None or not rtt.adequacy:
        return []
    lines = ["", f"RTT's attack per model ({_cell(rtt.rule)}):", ""]
    for name, a in rtt.adequacy.items():
        lines.append(f"- {_cell(name)}: {_cell(words(a))}; {_cell(compute_words(a))}")
    lines.append(f"- rounds: {_cell(rounds_words(rtt.rounds))}")
    return lines


def _interval(e: dict | None) -> str:
    return with_ci(e["diff"], *e["ci95"]) if e else "–"


def render_kinds(results: dict, report: Path | None = None) -> str:
    """A kinds study's summary: per method and kind the verdict, RTT recovery and RTT method − control
    with intervals, the difference between the kinds and the sentence saying which kind it hides
    more; each kind's own summary.md beside its results."""
    cmp = results["comparison"]
    kinds = cmp["kinds"]
    lines = [f"# Unlearning forensics: {_cell(results.get('name', ''))} (kinds compared)", ""]
    head = ["method", "kind", "forget", "RTT acc V", "control", RECOVERY, "RTT − control [95% CI]"]
    head.append("RTT seed spread")
    lines.append("| " + " | ".join([*head, "verdict"]) + " |")
    lines.append("|" + "---|" * (len(head) + 1))
    for name, entry in cmp["methods"].items():
        for kind in kinds:
            k = entry["per_kind"][kind]
            recovery = recovery_text(k.get("recovery"))
            rtt = _interval(k.get("lenses", {}).get(RTT))
            cells = [name, kind, k.get("forget"), k.get("rtt_acc_v"), k.get("rtt_control"), recovery, rtt]
            cells.append(k.get("rtt_seed_spread"))
            lines.append("| " + " | ".join(_cell(c) for c in [*cells, k.get("verdict")]) + " |")
    lines.append("")
    for entry in cmp["methods"].values():
        if "words" in entry:
            lines.append(f"- {_cell(entry['words'])}")
    where = [
        f"- **{_cell(name)}**, {_cell(kind)}: {_cell(entry['per_kind'][kind]['where'])}"
        for name, entry in cmp["methods"].items()
        for kind in kinds
        if entry["per_kind"][kind].get("where")
    ]
    if where:
        lines += [
            "",
            "Where the answers still are (each kind's information map, layer by layer):",
            "",
            *where,
        ]
    lines.append("")
    for kind, info in results.get("kinds", {}).items():
        lines.append(f"- {_cell(kind)}: {_cell(info.get('results'))} (its summary.md beside it)")
    if report is not None:
        lines += ["", f"Report: {report}"]
    return "\n".join(lines) + "\n"


def write_summary(results: dict, path: Path, report: Path | None = None) -> Path:
    """Write summary.md atomically (a kinds study's comparison, or one study's table)."""
    text = render_kinds(results, report) if "comparison" in results else render(results, report)
    return write_atomic(Path(path), text)
