"""A kinds study's results.json → its HTML report: per method, the kinds side by side (RTT recovery,
method − control per lens and per probe layer, the difference between kinds, all with 95% intervals)
and the sentence that says which kind the method hides more. Links to each kind's own report."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from forensics.lenses.relearn import LABEL as RTT
from forensics.outcomes import Reading, with_ci
from reports.figures import _layout, esc
from reports.html import _fmt, page, plot_scripts, write_html
from reports.table import RECOVERY, recovery_text

PALETTE = ["#c53030", "#2b6cb0", "#2f855a"]
NOTE = (
    "<p class='small'>Dotted: the same probe on the original, against the same control — what the probe "
    "can read of each kind at all. Where it sits on zero, the probe is blind to that kind at that layer, "
    "and a method's probe − control of zero there says nothing about erasure; the sentences above leave "
    "such layers out.</p>"
)


def _ci(e: dict | None) -> str:
    if not e or e.get("ci95") is None:
        return "–"
    value = e.get("diff", e.get("value"))
    return with_ci(value, *e["ci95"]) if value is not None else "–"


def rtt_figure(comparison: dict) -> go.Figure | None:
    """Per method and kind: RTT method − control with its 95% interval."""
    methods = [
        m for m, e in comparison["methods"].items() if all(RTT in p["lenses"] for p in e["per_kind"].values())
    ]
    if not methods:
        return None
    fig = go.Figure()
    for i, kind in enumerate(comparison["kinds"]):
        rows = [comparison["methods"][m]["per_kind"][kind]["lenses"][RTT] for m in methods]
        fig.add_bar(
            name=f"{kind} facts",
            x=methods,
            y=[r["diff"] for r in rows],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [r["ci95"][1] - r["diff"] for r in rows],
                "arrayminus": [r["diff"] - r["ci95"][0] for r in rows],
            },
            marker_color=PALETTE[i % len(PALETTE)],
        )
    fig.update_layout(barmode="group")
    fig.add_hline(y=0, line_dash="dot", annotation_text="each kind's own control")
    fig.update_yaxes(title="acc_V after RTT: method − control")
    return _layout(fig, "RTT by kind: method − control, 95% intervals")


def probe_figure(comparison: dict, name: str) -> go.Figure | None:
    """Per probe layer: method − control for each kind, with 95% bands, and their difference."""
    entry = comparison["methods"][name]
    layers = entry.get("probe_layers") or []
    if not layers:
        return None
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["probe: method − control", "difference between kinds"]
    )
    shown = [str(Reading("probe", layer)) for layer in layers]  # as results.json names the readings
    for i, kind in enumerate(comparison["kinds"]):
        rows = [entry["per_kind"][kind]["lenses"][lens] for lens in shown]
        _band(fig, layers, rows, f"{kind} facts", PALETTE[i % len(PALETTE)], 1)
        # what the probe reads on the original: where it reads nothing, the lens is blind to the kind
        ceiling = [comparison.get("original", {}).get(kind, {}).get(lens) for lens in shown]
        if all(ceiling):
            fig.add_scatter(
                x=list(layers),
                y=[c["diff"] for c in ceiling],
                name=f"original, {kind} facts (what the probe can read)",
                line={"color": PALETTE[i % len(PALETTE)], "dash": "dot"},
                row=1,
                col=1,
            )
    a, b = comparison["kinds"][:2]
    _band(
        fig,
        layers,
        [entry["difference"][lens] for lens in shown],
        f"{a} − {b}",
        "#4a5568",
        2,
    )
    for col in (1, 2):
        fig.add_hline(y=0, line_dash="dot", row=1, col=col)
    fig.update_xaxes(title="layer")
    return _layout(fig, f"{name}: where the answers stay, by kind", height=340)


def _band(fig: go.Figure, layers: list[str], rows: list[dict], label: str, color: str, col: int) -> None:
    x = list(layers)
    fig.add_scatter(
        x=x + x[::-1],
        y=[r["ci95"][1] for r in rows] + [r["ci95"][0] for r in rows][::-1],
        fill="toself",
        fillcolor=color,
        opacity=0.15,
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        row=1,
        col=col,
    )
    fig.add_scatter(x=x, y=[r["diff"] for r in rows], name=label, line={"color": color}, row=1, col=col)


def table(results: dict) -> str:
    comparison = results["comparison"]
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "method",
            "kind",
            "forget",
            "retain",
            "RTT acc V (control)",
            RECOVERY,
            "RTT method − control [95% CI]",
            "verdict",
        )
    )
    rows = []
    for name, entry in comparison["methods"].items():
        kinds = comparison["kinds"]
        for i, kind in enumerate(kinds):
            p = entry["per_kind"][kind]
            recovery = esc(recovery_text(p["recovery"]) or "–")
            if p.get("rtt_seed_spread"):  # the attack's randomness beside the interval
                recovery += f"<br><small>RTT seed spread: {esc(p['rtt_seed_spread'])}</small>"
            first = f"<td rowspan='{len(kinds) + 1}'>{esc(name)}</td>" if i == 0 else ""
            rows.append(
                f"<tr>{first}<td>{esc(kind)}</td><td>{_fmt(p['forget'])}</td><td>{_fmt(p['retain'])}</td>"
                f"<td>{_fmt(p['rtt_acc_v'])} ({_fmt(p['rtt_control'])})</td><td>{recovery}</td>"
                f"<td>{_ci(p['lenses'].get(RTT))}</td>"
                f"<td class='verdict'><b>{esc(p['verdict'])}</b></td></tr>"
            )
        diff = entry.get("difference", {}).get(RTT)
        rows.append(
            f"<tr class='kind-diff'><td colspan='5'><small>{esc(entry.get('words', ''))}</small></td>"
            f"<td><b>{_ci(diff)}</b><br><small>difference between the kinds</small></td><td></td></tr>"
        )
    return f"<table id='kinds'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render(results: dict) -> str:
    """The kinds report as one HTML string."""
    comparison = results["comparison"]
    figures = [("kinds-rtt", rtt_figure(comparison))]
    figures += [
        (f"kinds-probe-{i}", probe_figure(comparison, m)) for i, m in enumerate(comparison["methods"])
    ]
    figures = [(key, fig) for key, fig in figures if fig is not None]
    probed = any(key.startswith("kinds-probe") for key, _ in figures)  # the note reads the probe figures
    divs = "".join(f"<div class='figure plot' id='fig-{key}'></div>" for key, _ in figures)
    scripts = plot_scripts(figures)
    links = "".join(
        f"<li><a href='../{esc(k['results'].rsplit('/', 1)[0])}/report/index.html'>{esc(kind)}</a>: "
        f"every lens, layer by layer, on the {esc(kind)} facts</li>"
        for kind, k in results["kinds"].items()
    )
    intro = (
        "<p>Facts a model learned in pretraining and facts implanted by fine-tuning can behave differently "
        "under unlearning and relearning (Deeb &amp; Roger, 2024). Each kind was studied on its own forget "
        "set against its own control (an exact-unlearning model, or facts the original does not know "
        "where no such model can exist); below, each method's figures on both kinds and the difference "
        "between them, with 95% bootstrap intervals (facts resampled within their V split, paired with a "
        "never-learned model's outcomes on them and independently of control facts; seeds resampled; the "
        "kinds share no fact, so their draws are independent).</p>"
    )
    where = "".join(
        f"<li><b>{esc(name)}</b>, {esc(kind)}: {esc(entry['per_kind'][kind]['where'])}</li>"
        for name, entry in comparison["methods"].items()
        for kind in comparison["kinds"]
        if entry["per_kind"][kind].get("where")
    )
    where = f"<h3>Where the answers still are</h3><ul id='where'>{where}</ul>" if where else ""
    return page(
        results.get("name", ""),
        f"{intro}<h2>The kinds compared</h2>{table(results)}{divs}{NOTE if probed else ''}{where}"
        f"<h2>Each kind's report</h2><ul>{links}</ul>{scripts}",
    )


def write_kinds_report(results: dict, path: Path) -> Path:
    return write_html(render(results), path)
