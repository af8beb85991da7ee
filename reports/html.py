"""results.json → one self-contained HTML report (plotly.js embedded, no network, nothing to run).

Every string that comes from a dataset or a config is escaped: text through `html.escape`, figure
data through JSON with `<`, `>` and `&` written as unicode escapes, so no `</script>` can break out.
"""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder

from forensics.attacks.adequacy import compute_words, rounds_words, words
from forensics.errors import InputError
from forensics.lenses.relearn import view as attack_view
from forensics.outcomes import Reading
from forensics.outdir import write_atomic
from reports.cure import INTRO, cure_rows, ranking_text
from reports.figures import (
    action_figure,
    attack_figure,
    esc,
    information_figure,
    method_figure,
    rtt_figure,
    unlearning_figure,
)
from reports.table import SummaryTable, summary_table


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def figure_json(fig: go.Figure) -> str:
    """The figure as JSON safe to place inside a <script> element."""
    text = json.dumps(fig.to_plotly_json(), cls=PlotlyJSONEncoder)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def summary_html(table: SummaryTable) -> str:
    """The summary table: the verdict last, in bold, with its evidence beneath it."""
    head = "".join(f"<th>{esc(c)}</th>" for c in (*table.columns, "verdict"))
    rows = []
    for row in table.rows:
        cells = [f"<td>{_fmt(row.cells.get(c))}</td>" for c in table.columns]
        damaged = " <span class='damaged'>damaged</span>" if row.damaged else ""
        evidence = f"<br><small>{esc(row.evidence)}</small>"
        cells.append(f"<td class='verdict'><b>{esc(row.verdict)}</b>{damaged}{evidence}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table id='summary'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def where_html(table: SummaryTable) -> str:
    """The information map in words, one line per method (none without a layered lens)."""
    items = "".join(
        f"<li><b>{esc(row.cells['method'])}</b>: {esc(row.where)}</li>" for row in table.rows if row.where
    )
    return f"<ul id='where'>{items}</ul>" if items else ""


def attack_section(results: dict) -> str:
    """The attack's strength per model (docs/design.md §13): T fitted, saturated, its compute and rounds."""
    rtt = attack_view(results)
    if rtt is None or not rtt.adequacy:
        return ""
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{esc(words(a))}</td><td>{_fmt(a.get('t_accuracy'))}</td>"
        f"<td>{esc(compute_words(a))}</td><td>{a.get('compute', {}).get('examples', '–')}</td></tr>"
        for name, a in rtt.adequacy.items()
    )
    rounds = rounds_words(rtt.rounds)
    return (
        "<h3>Did the attack try hard enough?</h3>"
        "<table id='attack'><thead><tr><th>model</th><th>attack</th><th>best T accuracy</th>"
        f"<th>compute</th><th>examples seen</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<p class='small'>{esc(rtt.rule)}. Rounds (the same grid on every model): "
        f"{esc(rounds)}. No method is called erased from an attack that is not adequate; no verdict at all "
        "when it cannot fit T on the original or the control.</p>"
    )


def facts_section(results: dict) -> str:
    sets = results.get("sets", {})
    parts = ["<h2>Facts and settings</h2>"]
    forget = ", ".join(f"{esc(k)}: {v}" for k, v in sets.get("forget", {}).items())
    parts.append(
        f"<p>Forget splits (the RTT rotation): {forget}; near-retain {sets.get('near_retain', 0)} facts; "
        f"retain {sets.get('retain', 0)} facts.</p>"
    )
    for kind, facts in sets.get("examples", {}).items():
        items = "".join(
            f"<li>{esc(f['question'])} — choices: {esc(' | '.join(f['choices']))}; answer: "
            f"{esc(f['choices'][f['answer']])}</li>"
            for f in facts
        )
        parts.append(f"<p>Examples of {esc(kind)} facts:</p><ul class='facts'>{items}</ul>")
    rtt = attack_view(results)
    if rtt is not None and rtt.lrs:
        parts.append(
            f"<p>RTT grid (its last round): learning rates {esc(rtt.lrs)}, up to {esc(rtt.epochs)} epochs, "
            f"batch {_fmt(rtt.batch_size)}; the best (lr, epoch) per V is chosen on V — the attacker's "
            "best case.</p>"
        )
    cfg = results.get("config", {})
    parts.append(f"<p>Grid: <b>{esc(cfg.get('grid', 'full'))}</b>.</p>")
    parts.append(
        f"<details><summary>Full configuration</summary><pre>{esc(json.dumps(cfg, indent=2))}</pre></details>"
    )
    versions = ", ".join(f"{esc(k)} {esc(v)}" for k, v in results.get("versions", {}).items())
    parts.append(f"<p class='small'>Versions: {versions}.</p>")
    return "".join(parts)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1300px;color:#1a202c}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{border:1px solid #e2e8f0;padding:6px;text-align:left;vertical-align:top}th{background:#f7fafc}
td.verdict small{color:#4a5568}.figure{margin:18px 0}
.damaged{background:#fed7d7;color:#9b2c2c;border-radius:3px;padding:0 4px;font-size:12px}
.small{color:#718096;font-size:12px}h1{margin-bottom:0}
.noverdict{background:#fffaf0;border:1px solid #dd6b20;padding:8px 12px;margin:12px 0}
"""


def render(results: dict) -> str:
    """The whole report as one HTML string."""
    figures: list[tuple[str, go.Figure]] = []
    maps = (("information", information_figure(results)), ("action", action_figure(results)))
    shown = (("unlearning", unlearning_figure(results)), ("rtt", rtt_figure(results)))
    for key, fig in (*shown, ("attack", attack_figure(results)), *maps):
        if fig is not None:
            figures.append((key, fig))
    for i, name in enumerate(results.get("unlearned", [])):
        figures.append((f"method-{i}", method_figure(results, name)))
    divs = {key: f"<div class='figure plot' id='fig-{key}'></div>" for key, _ in figures}
    scripts = plot_scripts(figures)
    methods = "".join(divs[k] for k, _ in figures if k.startswith("method-"))
    table = summary_table(results)
    intro = (
        "<p>Did unlearning <b>erase</b> the forget facts from the weights, or only <b>hide</b> them? Each "
        f"method is compared with the original and with {esc(table.against)}. Chance is "
        f"{_fmt(table.chance)}. A verdict is never a bare label: the evidence is beside it.</p>"
    )
    verdict = results.get("config", {}).get("verdict", {})
    maps_note = (
        "<p class='small'>Information lenses use only the unlearned model and what an attacker could have; "
        f"each point is (method − the same lens on {esc(table.against)}), with a 95% "
        f"bootstrap interval ({esc(table.resampled)}, seeds resampled). A method is "
        f"<b>hidden</b> when some lens's one-sided lower bound exceeds {_fmt(verdict.get('min_effect'))} "
        "after Holm correction across lenses and layers; "
        f"<b>erased within ±{_fmt(verdict.get('margin'))}</b> "
        "when every lens's 90% interval lies inside that margin; otherwise <b>inconclusive</b>. Action "
        "lenses put the original's weights or activations back, so a never-learned model lights them "
        "up too: they say where a method acted, never whether it hid. The patch after the last block is "
        "the original's output by construction and is left out.</p>"
    )
    return page(
        results.get("name", ""),
        f"{intro}{reference_note(results)}<h2>Summary</h2>"
        f"<p class='small'>In the table, {esc(table.note)}.</p>{summary_html(table)}"
        f"{unlearning_section(divs)}"
        f"<h2>Relearning attack</h2>{divs.get('rtt', '<p>not run</p>')}{attack_section(results)}"
        f"{divs.get('attack', '')}"
        f"<h2>Where the answers still are</h2>{divs.get('information', '<p>not run</p>')}{where_html(table)}"
        f"<h2>Where the methods acted</h2>{divs.get('action', '<p>not run</p>')}{maps_note}"
        f"<h2>Per method, layer by layer</h2>{methods}"
        f"{cure_section(results)}{facts_section(results)}{scripts}",
    )


def cure_section(results: dict) -> str:
    """The cures side by side (`forensics cure`), or nothing when the study holds none."""
    cure = results.get("cure")
    if not cure:
        return ""
    rows = cure_rows(cure)
    head = "".join(f"<th>{esc(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r.values()) + "</tr>" for r in rows)
    return (
        f"<h2 id='cures'>Cures</h2><p class='small'>{esc(INTRO)}</p><table><tr>{head}</tr>{body}</table>"
        f"<p id='cure-words'>{esc(cure['words'])}.</p><p class='small'>The map's ranking (block, rise of "
        f"its score): {esc(ranking_text(cure))}; rule: {esc(cure['rule'])}.</p>"
    )


def unlearning_section(divs: dict[str, str]) -> str:
    """The unlearning frontier with what it shows: only a run in the rule's corner gets a verdict."""
    if "unlearning" not in divs:
        return ""
    return (
        "<h2>Unlearning</h2>" + divs["unlearning"] + "<p class='small'>Each point is one run of a method's "
        "sweep (circle: met the rule; x: did not), from the original. A method studied without a run in "
        "the shaded corner gets no verdict: it did not unlearn by the rule.</p>"
    )


def compact(lenses: list[str]) -> str:
    """Lens names with their layers grouped: "probe @embed, 0, 1; RTT"."""
    groups: dict[str, list[str | None]] = {}
    for r in map(Reading.parse, lenses):
        groups.setdefault(r.label, []).append(r.layer)
    return "; ".join(f"{k} @{', '.join(ls)}" if all(ls) else k for k, ls in groups.items())


def reference_note(results: dict) -> str:
    """Whether the study has a working reference (no verdict without one), and which lenses read
    nothing beyond the control even on the original (blind: left out of every verdict)."""
    ref = results.get("reference")
    if not ref:
        return ""
    parts = []
    if not ref["ok"]:
        reasons = "".join(f"<li>{esc(r)}</li>" for r in ref["reasons"])
        parts.append(
            "<div class='noverdict'><b>No verdict: this study cannot decide.</b> Its reference failed, so "
            f"nothing the lenses show about the methods can be trusted:<ul>{reasons}</ul></div>"
        )
    blind = ref.get("blind") or []
    if blind:
        parts.append(
            f"<p class='small'><b>Blind on the original</b> (reads nothing beyond {esc(ref['against'])} even "
            f"where the facts are known, so it can neither show hiding nor vouch for erasure; left out of "
            f"every verdict, drawn with open markers): {esc(compact(blind))}.</p>"
        )
    mixed = ref.get("confounded") or []
    if mixed:
        parts.append(
            "<p class='small'><b>Confounded by the control facts</b> (on the original this lens already "
            "reads the forget facts beyond the control facts at the embedding, before any block: the two "
            "sets of questions differ in what they give away by themselves, and every method inherits "
            "that difference; left out of every verdict at every layer, drawn with open markers): "
            f"{esc(compact(mixed))}.</p>"
        )
    return "".join(parts)


def plot_scripts(figures: list[tuple[str, go.Figure]]) -> str:
    """One script per figure, drawing it into its `fig-<key>` div."""
    return "".join(
        f"<script>(function(){{var f={figure_json(fig)};"
        f"Plotly.newPlot('fig-{key}',f.data,f.layout,{{responsive:true,displaylogo:false}});}})();</script>"
        for key, fig in figures
    )


# how every report page begins: `write_html` replaces only a file that begins so (one forensics wrote)
HEAD = "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
MARK = "<meta name='generator' content='unlearning-forensics report'>"
LEGACY = "<title>unlearning forensics: "  # what followed HEAD in reports written before MARK


def page(name: str, body: str) -> str:
    """A whole report page: its title, the CSS and plotly.js embedded (nothing loads from the network)."""
    return (
        f"{HEAD}{MARK}"
        f"<title>unlearning forensics: {esc(name)}</title><style>{CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>Unlearning forensics: {esc(name)}</h1>{body}</body></html>"
    )


def write_report(results: dict, path: Path) -> Path:
    return write_html(render(results), path)


def is_report(path: Path) -> bool:
    """Whether the file at `path` is a report forensics wrote (it begins as `page` begins a page)."""
    try:
        with open(path, "rb") as f:
            start = f.read(len(HEAD) + max(len(MARK), len(LEGACY))).decode("utf-8", errors="replace")
    except OSError:
        return False
    return start.startswith((HEAD + MARK, HEAD + LEGACY))


def check_out(path: Path) -> None:
    """Refuse to write a report over a file forensics did not write (a report it wrote is replaced)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"{path}: is a directory (the report is one HTML file: name it, e.g. {path / 'index.html'})"
        )
    if path.exists() and not is_report(path):
        raise InputError(f"{path}: exists and is not a report forensics wrote; not overwriting it")


def write_html(text: str, path: Path) -> Path:
    """Write a report atomically (a reader never sees half of it); on failure no temporary file is
    left behind. A file already at `path` is replaced only when it is a report forensics wrote."""
    path = Path(path)
    check_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, text)
