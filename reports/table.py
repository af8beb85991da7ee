"""The summary table as one model — its columns, one row of cells per method, the control it was
measured against — rendered to HTML (the report), Markdown (summary.md) and plain text (the terminal),
so the three show the same table."""

from __future__ import annotations

from dataclasses import dataclass

from forensics.attacks.adequacy import words
from forensics.attacks.selection import PAPER_RECOVERY
from forensics.lenses import REGISTRY
from forensics.lenses.relearn import LABEL as RTT
from forensics.outcomes import with_ci

Value = float | str | None  # None: not measured ("–")

# (column, the summary row's entry) of every lens that shows cells (`Lens.columns`), in registry order
ROW_CELLS = tuple((c, key) for lens in REGISTRY.values() for c, key in lens.columns.items())
DIFFERENCE = "method − control [95% CI]"
RECOVERY = f"RTT recovery [95% CI] (best cell against the paper's {PAPER_RECOVERY:g})"
NEVER_LEARNED = "the never-learned control"


@dataclass(frozen=True)
class Row:
    """One method: its cells by column, its verdict, whether retain was damaged, the verdict's evidence
    and the information map in words (`where`, None without a layered lens)."""

    cells: dict[str, Value]
    verdict: str
    damaged: bool
    evidence: str
    where: str | None = None


@dataclass(frozen=True)
class SummaryTable:
    """The columns shown (a column no method has a value in is left out), the rows, and what every
    difference was measured against and how its interval was drawn."""

    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    against: str
    resampled: str
    chance: float | None

    @property
    def note(self) -> str:
        """The sentence that says what the difference column is."""
        return (
            f"every difference is method − the same lens on {self.against}, with a 95% bootstrap interval "
            f"({self.resampled}, seeds resampled)"
        )


def against(summary: dict) -> str:
    """What the methods were compared with, in the summary's words (a never-learned model, or facts)."""
    return next(iter(summary.values()), {}).get("against", NEVER_LEARNED)


def resampled(results: dict) -> str:
    """How the 95% intervals were drawn, in words: control facts are other facts than the forget
    facts, so the two are resampled independently; a never-learned model is scored on the same facts."""
    if results.get("config", {}).get("control"):
        return "the forget and control facts resampled independently"
    return "paired: facts resampled within their V split"


def summary_table(results: dict) -> SummaryTable:
    """The study's summary as the table model."""
    summary = results.get("summary", {})
    rows = []
    for name, r in summary.items():
        lens = r.get("deciding")
        e = r.get("lenses", {}).get(lens) if lens else None
        cells: dict[str, Value] = {"method": name, **{column: r.get(key) for column, key in ROW_CELLS}}
        attack = r.get("attack", {}).get(RTT)
        cells["RTT attack"] = words(attack) if attack else None
        cells[RECOVERY] = recovery_text(r.get("recovery"))
        cells["deciding lens"] = lens
        cells[DIFFERENCE] = with_ci(e["diff"], *e["ci95"]) if e else None
        rows.append(Row(cells, r["verdict"], bool(r.get("damaged")), r.get("evidence", ""), r.get("where")))
    every = ("method", *(c for c, _ in ROW_CELLS), RECOVERY, "RTT attack", "deciding lens", DIFFERENCE)
    shown = tuple(c for c in every if c == "method" or any(row.cells.get(c) is not None for row in rows))
    chance = next(iter(summary.values()), {}).get("chance")
    return SummaryTable(shown, tuple(rows), against(summary), resampled(results), chance)


def recovery_text(rec: dict | None) -> str | None:
    """A recovery with its 95% interval and, like for like, the best cell's against the paper's ~0.88
    (read at its best cell too): "0.62 [0.48, 0.75] (best cell 0.80 [0.70, 0.90], within the
    paper's 0.88)"."""
    if not rec or rec.get("value") is None or not rec.get("ci95"):
        return None
    text = with_ci(rec["value"], *rec["ci95"], signed=False)
    top = rec.get("max") or {}
    if top.get("value") is not None and top.get("ci95") and rec.get("paper"):
        best = with_ci(top["value"], *top["ci95"], signed=False)
        text += f" (best cell {best}, {rec['paper']} the paper's {PAPER_RECOVERY:g})"
    return text


def text(value: Value) -> str:
    """A cell as text: two decimals for a float, "–" for a value not measured."""
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def plain_rows(table: SummaryTable) -> list[dict[str, str]]:
    """The table for the terminal: one dict per method, the verdict last (with "(damaged)")."""
    return [
        {**{c: text(row.cells.get(c)) for c in table.columns}, "verdict": verdict_text(row)}
        for row in table.rows
    ]


def verdict_text(row: Row) -> str:
    return row.verdict + (" (damaged)" if row.damaged else "")
