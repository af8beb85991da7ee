"""The report's figures (plotly, drawn offline): RTT, the information and action maps, and each
method's per-layer panels."""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from forensics.lenses import REGISTRY
from forensics.lenses.base import Series
from forensics.lenses.relearn import view as attack_view
from reports.table import against

COLORS = {"original": "#2b6cb0", "never_learned": "#718096", "method": "#c53030", "control": "#d69e2e"}
# one colour per method, in its order, in every figure that draws the methods side by side
METHOD_COLORS = ["#c53030", "#2b6cb0", "#2f855a", "#805ad5", "#dd6b20", "#319795", "#b83280"]


def esc(value) -> str:
    """Text safe inside HTML (the page and plotly's titles, which are HTML)."""
    return html.escape(str(value), quote=True)


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        title={"text": esc(title), "x": 0.01},
        height=height,
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def rtt_figure(results: dict) -> go.Figure | None:
    """Per model, V before and after RTT (mean ± sd over rotations), with chance."""
    rtt = attack_view(results)
    if rtt is None:
        return None
    names = list(rtt.acc_v)
    fig = go.Figure()
    fig.add_bar(name="V before RTT", x=names, y=[rtt.before.get(n) for n in names], marker_color="#a0aec0")
    fig.add_bar(
        name="V after RTT (best lr, epoch)",
        x=names,
        y=[rtt.acc_v[n][0] for n in names],
        error_y={"type": "data", "array": [rtt.acc_v[n][1] for n in names]},
        marker_color=[COLORS.get(n, COLORS["method"]) for n in names],
    )
    fig.add_hline(y=rtt.chance, line_dash="dot", annotation_text="chance")
    fig.update_yaxes(range=[0, 1.05], title="accuracy on V")
    return _layout(fig, "Retraining on T (RTT): accuracy on the held-out V, mean ± sd over rotations")


def unlearning_figure(results: dict) -> go.Figure | None:
    """The unlearning frontier: every run of each method's sweep as (forget, retain) accuracy, the
    rule's corner shaded, so a method that never reached it shows how far it got and which way."""
    swept = {n: u for n, u in (results.get("unlearning") or {}).items() if u.get("runs")}
    if not swept:
        return None
    fig = go.Figure()
    corners = [u["corner"] for u in swept.values() if u.get("corner")]
    for corner in {(c["forget_at_most"], c["retain_at_least"]) for c in corners}:
        fig.add_shape(
            type="rect",
            x0=0,
            x1=corner[0],
            y0=corner[1],
            y1=1.05,
            fillcolor="#c6f6d5",
            opacity=0.5,
            line={"width": 0},
            layer="below",
        )
    for i, (name, u) in enumerate(swept.items()):
        runs = u["runs"]
        fig.add_scatter(
            x=[r["forget"] for r in runs],
            y=[r["retain"] for r in runs],
            name=esc(f"{name}: {len(runs)} runs, {'failed' if u.get('failed') else 'met'}"),
            mode="markers+text",
            text=[str(n + 1) for n in range(len(runs))],
            textposition="top center",
            marker={
                "color": METHOD_COLORS[i % len(METHOD_COLORS)],
                "size": 9,
                "symbol": ["circle" if r.get("met") else "x" for r in runs],
            },
        )
    fig.update_xaxes(range=[0, 1.05], title="forget accuracy (lower: more unlearned)")
    fig.update_yaxes(range=[0, 1.05], title="retain accuracy")
    return _layout(fig, "Unlearning: every sweep run (numbered in order); the rule's corner shaded", 380)


def attack_figure(results: dict) -> go.Figure | None:
    """Per model, V (solid) and T (dashed) accuracy after each epoch, one line per learning rate, mean
    over V splits and seeds: the whole grid the attack ran, so its saturation can be seen."""
    rtt = attack_view(results)
    if rtt is None or not rtt.curves:
        return None
    names = list(rtt.curves)
    lrs = sorted({lr for per_lr in rtt.curves.values() for lr in per_lr})
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[esc(n) for n in names], shared_yaxes=True)
    palette = ["#9f7aea", "#3182ce", "#38a169", "#dd6b20", "#e53e3e", "#718096", "#d53f8c"]
    for col, name in enumerate(names, 1):
        for i, lr in enumerate(lrs):
            for key, dash in (("V", "solid"), ("T", "dash")):
                points = rtt.curves[name].get(lr, {}).get(key)
                if not points:
                    continue
                xs = sorted(points)
                fig.add_scatter(
                    x=xs,
                    y=[points[x] for x in xs],
                    name=f"lr {lr:g}: {key}",
                    legendgroup=f"{lr:g}{key}",
                    showlegend=col == 1,
                    mode="lines+markers",
                    line={"color": palette[i % len(palette)], "dash": dash},
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(range=[0, 1.05])
    return _layout(fig, "RTT's grid: V (solid) and T (dashed) accuracy per learning rate and epoch", 380)


def information_figure(results: dict) -> go.Figure | None:
    """Per information lens with layers: (method − control) per layer with 95% intervals; the control
    (a never-learned model, or facts the original does not know) is the zero line of every panel."""
    summary = results.get("summary", {})
    kinds = list(dict.fromkeys(k for row in summary.values() for k in row.get("information_map") or {}))
    if not kinds:
        return None
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=[f"{k}: method − control" for k in kinds])
    for i, (name, row) in enumerate(summary.items()):
        for col, kind in enumerate(kinds, 1):
            m = (row.get("information_map") or {}).get(kind)
            if not m:
                continue
            fig.add_scatter(
                x=m["layers"],
                y=m["diff"],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [h - d for h, d in zip(m["hi"], m["diff"], strict=True)],
                    "arrayminus": [d - lo for d, lo in zip(m["diff"], m["lo"], strict=True)],
                },
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                mode="lines+markers",
                line={"color": METHOD_COLORS[i % len(METHOD_COLORS)]},
                marker={"symbol": ["circle-open" if b else "circle" for b in m.get("blind") or []]},
                row=1,
                col=col,
            )
    controlled = all(r.get("controlled") for r in summary.values())
    if any(
        any(m.get("blind") or []) for r in summary.values() for m in (r.get("information_map") or {}).values()
    ):
        fig.add_scatter(
            x=[None],
            y=[None],
            name="open marker: blind on the original (left out of the verdict)",
            mode="markers",
            marker={"symbol": "circle-open", "color": "#4a5568"},
            row=1,
            col=1,
        )
    for col in range(1, len(kinds) + 1):
        fig.add_hline(y=0, line_color=COLORS["never_learned"], row=1, col=col)
    fig.add_scatter(
        x=[None],
        y=[None],
        name=f"0: {against(summary)}" if controlled else "chance (no control)",
        mode="lines",
        line={"color": COLORS["never_learned"]},
        row=1,
        col=1,
    )
    fig.update_xaxes(title="layer")
    fig.update_yaxes(range=[-1.05, 1.05])
    return _layout(fig, "Information map: is the answer still in the model, layer by layer? (95% CI)", 400)


# the action map's rows in results written before the study listed them (`action_rows`)
ACTION_ROWS = {
    "dW_rel": "‖ΔW‖/‖W‖",
    "divergence": "1 − cos to the original",
    "revert": "forget gained: block reverted",
    "patch": "forget gained: residual patched",
}


def action_figure(results: dict) -> go.Figure | None:
    """Where each method acted, per block; the control (which never learned the facts) beside them."""
    summary = results.get("summary", {})
    rows = {n: r["action_map"] for n, r in summary.items() if r.get("action_map")}
    control = results.get("control_action_map")
    if control:
        rows = {**rows, "never_learned": control}
    panels = list(results.get("action_rows", ACTION_ROWS).items())  # one per action lens's row
    panels = [(k, t) for k, t in panels if any(k in r for r in rows.values())]
    if not panels:
        return None
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for _, t in panels])
    for i, (name, row) in enumerate(rows.items()):
        color = COLORS["never_learned"] if name == "never_learned" else METHOD_COLORS[i % len(METHOD_COLORS)]
        for col, (key, _) in enumerate(panels, 1):
            if key in row:
                fig.add_scatter(
                    x=row["layers"],
                    y=row[key],
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    mode="lines+markers",
                    line={"color": color, "dash": "dot" if name == "never_learned" else None},
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title="block")
    return _layout(fig, "Action map: where each method changed the model (never decides the verdict)", 400)


def method_figure(results: dict, name: str) -> go.Figure:
    """One method's panels, layer by layer: every panel a lens declares (`Lens.panels`), in registry
    order, three to a row; a lens that did not run says so in its panels."""
    panels = [p for lens in REGISTRY.values() for p in lens.panels]
    drawn: dict = {}
    for lens in REGISTRY.values():
        if lens.draw is not None:
            drawn.update(lens.draw(results, name))
    rows = max(1, -(-len(panels) // 3))
    fig = make_subplots(rows=rows, cols=3, subplot_titles=[p.title for p in panels], vertical_spacing=0.16)
    for i, panel in enumerate(panels):
        row, col = divmod(i, 3)
        for series in drawn.get(panel.title, []):
            _series(fig, series, row + 1, col + 1)
        if not drawn.get(panel.title):
            _not_run(fig, row + 1, col + 1)
        elif panel.unit:
            fig.update_yaxes(range=[0, 1.05], row=row + 1, col=col + 1)
    fig.update_xaxes(title="layer")
    return _layout(fig, f"{name}: layer by layer", 360 * rows)


def _series(fig: go.Figure, s: Series, row: int, col: int) -> None:
    """A lens's series in its panel: bars, or a line (coloured by the model's role when it names one)."""
    if s.bars:
        fig.add_bar(x=s.x, y=s.y, name=s.name, row=row, col=col, legendgroup="bars")
        return
    color = COLORS.get(s.color, s.color) if s.color else None
    fig.add_scatter(
        x=s.x,
        y=s.y,
        name=s.name,
        mode="lines+markers",
        line={"color": color, "dash": s.dash},
        legendgroup=s.name,
        showlegend=s.legend,
        row=row,
        col=col,
    )


def _not_run(fig: go.Figure, row: int, col: int) -> None:
    """ "not run" in an empty panel, its axes hidden (in paper coordinates: an axis-domain reference on a
    hidden axis lands on the first visible one)."""
    axes = fig.get_subplot(row, col)
    x, y = sum(axes.xaxis.domain) / 2, sum(axes.yaxis.domain) / 2
    fig.add_annotation(text="not run", x=x, y=y, xref="paper", yref="paper", showarrow=False)
    fig.update_xaxes(visible=False, row=row, col=col)
    fig.update_yaxes(visible=False, row=row, col=col)
