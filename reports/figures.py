"""The report's figures (plotly, drawn offline): RTT, the information and action maps, and each
method's per-layer panels."""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.table import against

COLORS = {"original": "#2b6cb0", "never_learned": "#718096", "method": "#c53030", "control": "#d69e2e"}
KINDS_ORDER = ["attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o", "mlp_gate", "mlp_in", "mlp_out", "norm"]


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
    rtt = results.get("relearn")
    if not rtt:
        return None
    metrics, best = rtt["metrics"], rtt["best"]
    names = list(metrics)
    before = [sum(b["before"] for b in best[n].values()) / len(best[n]) for n in names]
    fig = go.Figure()
    fig.add_bar(name="V before RTT", x=names, y=before, marker_color="#a0aec0")
    fig.add_bar(
        name="V after RTT (best lr, epoch)",
        x=names,
        y=[metrics[n]["acc_v"]["mean"] for n in names],
        error_y={"type": "data", "array": [metrics[n]["acc_v"]["std"] for n in names]},
        marker_color=[COLORS.get(n, COLORS["method"]) for n in names],
    )
    fig.add_hline(y=rtt["chance"], line_dash="dot", annotation_text="chance")
    fig.update_yaxes(range=[0, 1.05], title="accuracy on V")
    return _layout(fig, "Retraining on T (RTT): accuracy on the held-out V, mean ± sd over rotations")


def attack_figure(results: dict) -> go.Figure | None:
    """Per model, V (solid) and T (dashed) accuracy after each epoch, one line per learning rate, mean
    over V splits and seeds: the whole grid the attack ran, so its saturation can be seen."""
    grid = (results.get("relearn") or {}).get("grid")
    if not grid:
        return None
    names = list(grid)
    lrs = sorted({r["lr"] for runs in grid.values() for r in runs})
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[esc(n) for n in names], shared_yaxes=True)
    palette = ["#9f7aea", "#3182ce", "#38a169", "#dd6b20", "#e53e3e", "#718096", "#d53f8c"]
    for col, name in enumerate(names, 1):
        for i, lr in enumerate(lrs):
            runs = [r for r in grid[name] if r["lr"] == lr]
            for key, dash in (("acc_v", "solid"), ("acc_t", "dash")):
                points: dict[int, list[float]] = {}
                for r in runs:
                    for e in r["epochs"]:
                        if e.get(key) is not None:
                            points.setdefault(e["epoch"], []).append(e[key])
                if not points:
                    continue
                xs = sorted(points)
                fig.add_scatter(
                    x=xs,
                    y=[sum(points[x]) / len(points[x]) for x in xs],
                    name=f"lr {lr:g}: {'V' if key == 'acc_v' else 'T'}",
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
    palette = ["#c53030", "#2b6cb0", "#2f855a", "#805ad5", "#dd6b20", "#319795", "#b83280"]
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
                line={"color": palette[i % len(palette)]},
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
    palette = ["#c53030", "#2b6cb0", "#2f855a", "#805ad5", "#dd6b20", "#319795", "#b83280"]
    for i, (name, row) in enumerate(rows.items()):
        color = COLORS["never_learned"] if name == "never_learned" else palette[i % len(palette)]
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


def _line(fig, x, y, name, color, row, col, dash=None, show=True):
    fig.add_scatter(
        x=x,
        y=y,
        name=name,
        mode="lines+markers",
        line={"color": color, "dash": dash},
        legendgroup=name,
        showlegend=show,
        row=row,
        col=col,
    )


def method_figure(results: dict, name: str) -> go.Figure:
    """Six per-layer panels for one method."""
    fig = make_subplots(
        rows=2,
        cols=3,
        subplot_titles=[
            "probe accuracy on V",
            "logit lens on forget",
            "‖ΔW‖/‖W‖ by module",
            "cosine to the original's residuals",
            "forget accuracy after revert / patch / layer-RTT",
            "RTT update vs −ΔW (cosine, per epoch)",
        ],
        vertical_spacing=0.16,
    )
    probes = results.get("probes")
    if probes and name in probes["models"]:
        layers = probes["layers"]
        series = [(name, "probe", COLORS["method"], None), ("original", "probe", COLORS["original"], None)]
        series += [("never_learned", "probe", COLORS["never_learned"], None)]
        series += [(name, "control", COLORS["control"], "dot")]
        for model, key, color, dash in series:
            if model in probes["models"]:
                label = f"{model} (control task)" if key == "control" else model
                _line(fig, layers, [p["acc"] for p in probes["models"][model][key]], label, color, 1, 1, dash)
        for model, color in (
            (name, COLORS["method"]),
            ("original", COLORS["original"]),
            ("never_learned", COLORS["never_learned"]),
        ):
            if model in probes["models"]:
                lens = [p["acc"] for p in probes["models"][model]["lens"]["forget"]]
                _line(fig, layers, lens, model, color, 1, 2, show=False)
    weights = results.get("weights", {}).get(name)
    if weights:
        blocks = sorted((k for k in weights["layers"] if k != "none"), key=int)
        kinds = [k for k in KINDS_ORDER if any(k in weights["layers"][b] for b in blocks)]
        for kind in kinds:
            fig.add_bar(
                x=blocks,
                y=[weights["layers"][b].get(kind, {}).get("rel", 0) for b in blocks],
                name=kind,
                row=1,
                col=3,
                legendgroup="kinds",
            )
    act = results.get("activations", {}).get(name)
    if act:
        layers = ["embed", *map(str, range(len(act["forget"]["cosine"]) - 1))]
        _line(fig, layers, act["forget"]["cosine"], "forget prompts", "#805ad5", 2, 1)
        _line(fig, layers, act["retain"]["cosine"], "retain prompts", "#38a169", 2, 1)
    loc = results.get("localize", {}).get(name)
    if loc:
        blocks = [str(i) for i in loc.get("layers", range(len(loc["revert"])))]
        _line(fig, blocks, [r["forget"] for r in loc["revert"]], "revert layer", "#dd6b20", 2, 2)
        _line(fig, blocks, [r["forget"] for r in loc["patch"]], "patch residual", "#319795", 2, 2)
        _line(
            fig, blocks, [r["acc_v"] for r in loc["layer_rtt"]], "RTT on this layer only (V)", "#b83280", 2, 2
        )
        _line(
            fig, blocks, [loc["before"]["forget"]] * len(blocks), "unlearned, as is", "#a0aec0", 2, 2, "dot"
        )
        for point in loc["dynamics"]["points"][1:]:  # every block, whichever blocks were localized
            every = [str(i) for i in range(len(point["cosine"]))]
            _line(fig, every, point["cosine"], f"after epoch {point['epoch']}", None, 2, 3, show=False)
    drawn = {(t.xaxis, t.yaxis) for t in fig.data}
    for r, c in ((r, c) for r in (1, 2) for c in (1, 2, 3)):
        axes = fig.get_subplot(r, c)
        if (
            axes.xaxis.plotly_name.replace("axis", ""),
            axes.yaxis.plotly_name.replace("axis", ""),
        ) not in drawn:
            # in paper coordinates: an axis-domain reference on a hidden axis lands on the first visible one
            x, y = sum(axes.xaxis.domain) / 2, sum(axes.yaxis.domain) / 2
            fig.add_annotation(text="not run", x=x, y=y, xref="paper", yref="paper", showarrow=False)
            fig.update_xaxes(visible=False, row=r, col=c)
            fig.update_yaxes(visible=False, row=r, col=c)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], row=2, col=2)
    fig.update_xaxes(title="layer")
    return _layout(fig, f"{name}: layer by layer", 720)
