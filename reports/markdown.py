"""results.json → summary.md: the verdict table with intervals, for a CI log or a pull request."""

from __future__ import annotations

from pathlib import Path


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(results: dict, report: Path | None = None) -> str:
    """The summary as Markdown: one row per method, the deciding lens's difference and interval."""
    lines = [f"# Unlearning forensics: {_cell(results.get('name', ''))}", ""]
    summary = results.get("summary", {})
    chance = next(iter(summary.values()), {}).get("chance")
    lines.append(
        f"Scorer {_cell(results.get('config', {}).get('scorer'))}, chance {_cell(chance)}, "
        f"grid {_cell(results.get('config', {}).get('grid'))}; every difference is method − never-learned "
        "control (or chance, uncontrolled) on the same facts, with a 95% paired bootstrap interval."
    )
    lines += ["", "| method | forget | retain | RTT acc V | deciding lens | difference [95% CI] | verdict |"]
    lines.append("|---|---|---|---|---|---|---|")
    for name, row in summary.items():
        lens = row.get("deciding")
        e = row.get("lenses", {}).get(lens) if lens else None
        diff = f"{e['diff']:+.2f} [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}]" if e else "–"
        verdict = row["verdict"] + (" (damaged)" if row.get("damaged") else "")
        cells = [name, row.get("forget"), row.get("retain"), row.get("rtt_acc_v"), lens, diff, verdict]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    for name, row in summary.items():
        lines.append(f"- **{_cell(name)}**: {_cell(row.get('evidence'))}")
    if report is not None:
        lines += ["", f"Report: {report}"]
    return "\n".join(lines) + "\n"


def write_summary(results: dict, path: Path, report: Path | None = None) -> Path:
    """Write summary.md atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(results, report), encoding="utf-8")
    tmp.replace(path)
    return path
