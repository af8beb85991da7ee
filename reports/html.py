"""results.json → one self-contained HTML report (plotly.js embedded, no network, nothing to run).

Every string that comes from a dataset or a config is escaped: text through `html.escape`, figure
data through JSON with `<`, `>` and `&` written as unicode escapes, so no `</script>` can break out.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots
from plotly.utils import PlotlyJSONEncoder

COLORS = {"original": "#2b6cb0", "never_learned": "#718096", "method": "#c53030", "control": "#d69e2e"}
KINDS_ORDER = ["attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o", "mlp_gate", "mlp_in", "mlp_out", "norm"]


def esc(value) -> str:
    return html.escape(str(value), quote=True)


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


def information_figure(results: dict) -> go.Figure | None:
    """Per information lens with layers: (method − never-learned control) per layer with 95% intervals;
    the control is the zero line of every panel."""
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
        name="never-learned control" if controlled else "chance (no control)",
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
    "divergence": "1 − cos to the original (forget prompts)",
    "revert": "forget gained by reverting the block",
    "patch": "forget gained by patching the original's residual",
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
            fig.add_annotation(
                text="not run", x=0.5, y=0.5, xref="x domain", yref="y domain", showarrow=False, row=r, col=c
            )
            fig.update_xaxes(visible=False, row=r, col=c)
            fig.update_yaxes(visible=False, row=r, col=c)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], row=2, col=2)
    fig.update_xaxes(title="layer")
    return _layout(fig, f"{name}: layer by layer", 720)


def summary_table(results: dict) -> str:
    cols = [
        ("method", None),
        ("forget", "forget"),
        ("near-retain", "near_retain"),
        ("retain", "retain"),
        ("RTT acc V", "rtt_acc_v"),
        ("RTT control", "rtt_control"),
        ("RTT recovery", "rtt_recovery"),
        ("deciding lens: method − control [95% CI]", "deciding"),
        ("verdict", "verdict"),
    ]
    head = "".join(f"<th>{esc(c)}</th>" for c, _ in cols)
    rows = []
    for name, row in results.get("summary", {}).items():
        cells = []
        for _, key in cols:
            if key is None:
                cells.append(f"<td>{esc(name)}</td>")
            elif key == "deciding":
                lens = row.get("deciding")
                e = row.get("lenses", {}).get(lens) if lens else None
                text = (
                    f"{esc(lens)}: {e['diff']:+.2f} [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}]" if e else "–"
                )
                cells.append(f"<td>{text}</td>")
            elif key == "verdict":
                verdict, evidence = esc(row["verdict"]), esc(row["evidence"])
                damaged = " <span class='damaged'>damaged</span>" if row.get("damaged") else ""
                cells.append(
                    f"<td class='verdict'><b>{verdict}</b>{damaged}<br><small>{evidence}</small></td>"
                )
            else:
                cells.append(f"<td>{_fmt(row.get(key))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table id='summary'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


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
    rtt = results.get("relearn", {}).get("settings")
    if rtt:
        parts.append(
            f"<p>RTT grid: learning rates {esc(rtt['lrs'])}, up to {esc(rtt['epochs'])} epochs, "
            f"batch {esc(rtt['batch_size'])}; the best (lr, epoch) per V is chosen on V — the attacker's "
            f"best case.</p>"
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
    for key, fig in (("rtt", rtt_figure(results)), *maps):
        if fig is not None:
            figures.append((key, fig))
    for i, name in enumerate(results.get("unlearned", [])):
        figures.append((f"method-{i}", method_figure(results, name)))
    divs = {key: f"<div class='figure plot' id='fig-{key}'></div>" for key, _ in figures}
    scripts = plot_scripts(figures)
    methods = "".join(divs[k] for k, _ in figures if k.startswith("method-"))
    chance = next(iter(results.get("summary", {}).values()), {}).get("chance")
    intro = (
        "<p>Did unlearning <b>erase</b> the forget facts from the weights, or only <b>hide</b> them? Each "
        "method is compared with the original and, where there is one, a model that never learned the facts "
        f"(exact unlearning). Chance is {_fmt(chance)}. A verdict is never a bare label: the evidence is "
        "beside it.</p>"
    )
    verdict = results.get("config", {}).get("verdict", {})
    maps_note = (
        "<p class='small'>Information lenses use only the unlearned model and what an attacker could have; "
        "each point is (method − the same lens on the never-learned control) on the same facts, with a 95% "
        "paired bootstrap interval (facts resampled within their V split, seeds resampled). A method is "
        f"<b>hidden</b> when some lens's one-sided lower bound exceeds {_fmt(verdict.get('min_effect'))} "
        "after Holm correction across lenses and layers; "
        f"<b>erased within ±{_fmt(verdict.get('margin'))}</b> "
        "when every lens's 90% interval lies inside that margin; otherwise <b>inconclusive</b>. Action "
        "lenses put the original's weights or activations back, so the never-learned control lights them "
        "up too: they say where a method acted, never whether it hid. The patch after the last block is "
        "the original's output by construction and is left out.</p>"
    )
    return page(
        results.get("name", ""),
        f"{intro}{reference_note(results)}<h2>Summary</h2>{summary_table(results)}"
        f"<h2>Relearning attack</h2>{divs.get('rtt', '<p>not run</p>')}"
        f"<h2>Where the answers still are</h2>{divs.get('information', '<p>not run</p>')}"
        f"<h2>Where the methods acted</h2>{divs.get('action', '<p>not run</p>')}{maps_note}"
        f"<h2>Per method, layer by layer</h2>{methods}"
        f"{facts_section(results)}{scripts}",
    )


def compact(lenses: list[str]) -> str:
    """Lens names with their layers grouped: "probe @embed, 0, 1; RTT"."""
    groups: dict[str, list[str]] = {}
    for lens in lenses:
        kind, _, layer = lens.partition(" @")
        groups.setdefault(kind, []).append(layer)
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
    return "".join(parts)


def plot_scripts(figures: list[tuple[str, go.Figure]]) -> str:
    """One script per figure, drawing it into its `fig-<key>` div."""
    return "".join(
        f"<script>(function(){{var f={figure_json(fig)};"
        f"Plotly.newPlot('fig-{key}',f.data,f.layout,{{responsive:true,displaylogo:false}});}})();</script>"
        for key, fig in figures
    )


def page(name: str, body: str) -> str:
    """A whole report page: its title, the CSS and plotly.js embedded (nothing loads from the network)."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>unlearning forensics: {esc(name)}</title><style>{CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>Unlearning forensics: {esc(name)}</h1>{body}</body></html>"
    )


def write_report(results: dict, path: Path) -> Path:
    return write_html(render(results), path)


def write_html(text: str, path: Path) -> Path:
    """Write a report atomically (a reader never sees half of it); on failure no temporary file is
    left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
