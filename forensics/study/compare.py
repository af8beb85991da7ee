"""Two kinds of knowledge side by side (docs/design.md §3, §9): per method, what each kind's study found and
the difference between the kinds, with intervals. Reads the kinds' results only; loads no model.

Per kind and method: RTT recovery (acc_V after RTT ÷ the original's, paired on the same facts and
seeds) and, per information lens, method − never-learned control (the verdict's figure). Between
kinds, (first − second) of method − control: the kinds' studies share no fact and no model, so their
bootstrap draws are independent and the difference's interval is that of the difference of draws.
"""

from __future__ import annotations

import numpy as np

from forensics.outcomes import Reading, with_ci
from forensics.study import summary
from forensics.study.rtt_figures import interval95, recovery
from forensics.study.summary import blind as reads_nothing
from forensics.study.summary import paired_outcomes, reference_check
from forensics.study.verdict import VerdictSettings, comparison_draws

RTT, PROBE = str(summary.RTT), "probe"  # as results.json writes their readings


def lens_draws(results: dict, name: str, settings: VerdictSettings, seed: int) -> dict[str, np.ndarray]:
    """Per information lens (its reading as results.json names it): bootstrap draws of (method − control)."""
    pairs, _ = paired_outcomes(results, name)
    return {str(r): comparison_draws(*pair, settings.n_boot, seed) for r, pair in pairs.items()}


def compare_kinds(by_kind: dict[str, dict], settings: VerdictSettings) -> dict:
    """Per method named in every kind's study: per kind the headline numbers, RTT recovery and every
    lens's method − control with its interval; between the first two kinds, the difference per lens
    with its interval, and a sentence saying which kind the method hides more (or that the intervals
    cannot tell)."""
    kinds = list(by_kind)
    methods = [
        m for m in by_kind[kinds[0]]["unlearned"] if all(m in r["unlearned"] for r in by_kind.values())
    ]
    # what each lens reads on the original beyond the control: where it reads nothing even there, the
    # lens is blind to that kind and its method − control says nothing about hiding
    sees = {kind: _reads(r.get("reference") or reference_check(r, settings)) for kind, r in by_kind.items()}
    out: dict = {"kinds": kinds, "original": sees, "methods": {}}
    for name in methods:
        per: dict = {}
        draws = {}
        for i, (kind, results) in enumerate(by_kind.items()):
            row = results["summary"][name]
            draws[kind] = lens_draws(results, name, settings, settings.seed + i)
            lenses = row.get("lenses", {})
            per[kind] = {
                "forget": row.get("forget"),
                "retain": row.get("retain"),
                "chance": row.get("chance"),
                "verdict": row.get("verdict"),
                "deciding": row.get("deciding"),
                "controlled": row.get("controlled"),
                "rtt_acc_v": row.get("rtt_acc_v"),
                "rtt_control": row.get("rtt_control"),
                "rtt_seed_spread": row.get("rtt_seed_spread"),
                "where": row.get("where"),
                "recovery": row.get("recovery") or recovery(results, name, settings),
                "lenses": {
                    lens: {"diff": lenses[lens]["diff"], "ci95": lenses[lens]["ci95"]}
                    for lens in draws[kind]
                    if lens in lenses
                },
            }
        entry: dict = {"per_kind": per}
        if len(kinds) >= 2:
            a, b = kinds[:2]
            shared = [lens for lens in draws[a] if lens in draws[b]]
            entry["difference"] = {
                lens: {
                    "diff": per[a]["lenses"][lens]["diff"] - per[b]["lenses"][lens]["diff"],
                    "ci95": interval95(draws[a][lens] - draws[b][lens]),
                }
                for lens in shared
            }
            entry["probe_layers"] = _layers(entry["difference"], PROBE)
            entry["words"] = words(name, a, b, per, entry["difference"], sees)
        out["methods"][name] = entry
    return out


def _layers(lenses: dict, kind: str) -> list[str]:
    """The layers `kind` was read at, in the order of `lenses` (labels as results.json writes them)."""
    readings = [Reading.parse(lens) for lens in lenses]
    return [r.layer for r in readings if r.label == kind and r.layer is not None]


def _probe(layer: str) -> str:
    return str(Reading(PROBE, layer))


def _reads(reference: dict) -> dict:
    """What each lens reads on the original beyond the control, marked `confounded` where a fact
    control is confounded for it (it reads the questions at the embedding, not the facts)."""
    mixed = set(reference.get("confounded", ()))
    return {lens: {**e, "confounded": lens in mixed} for lens, e in reference["original"].items()}


def blind(sees: dict, kind: str, lens: str) -> bool:
    """True when `lens` reads nothing beyond the control even on the original's `kind` facts, or its
    fact control is confounded for it."""
    e = sees.get(kind, {}).get(lens)
    return e is None or reads_nothing(e) or e.get("confounded", False)


def words(name: str, a: str, b: str, per: dict, difference: dict, sees: dict) -> str:
    """Which kind the method hides more, by RTT (method − control), with the numbers; then where the
    probes differ, at the layers where the probe reads both kinds on the original (the others named
    as blind)."""
    if RTT not in difference:
        return f"{name}: RTT did not run on both kinds, so the kinds are not compared"
    d = difference[RTT]
    lo, hi = d["ci95"]
    ra, rb = per[a]["lenses"][RTT], per[b]["lenses"][RTT]
    figures = (
        f"RTT method − control {with_ci(ra['diff'], *ra['ci95'])} on {a} facts, "
        f"{with_ci(rb['diff'], *rb['ci95'])} on {b} facts; difference {with_ci(d['diff'], lo, hi)}"
    )
    if lo > 0:
        head = f"{name} hides {a} facts more than {b} ones"
    elif hi < 0:
        head = f"{name} hides {b} facts more than {a} ones"
    else:
        head = f"{name}: the intervals cannot tell the kinds apart"
    layers = _layers(difference, PROBE)
    if not layers:
        return f"{head}: {figures}"
    seen = [x for x in layers if not any(blind(sees, k, _probe(x)) for k in (a, b))]
    unseen = {k: [x for x in layers if blind(sees, k, _probe(x))] for k in (a, b)}
    differ = [x for x in seen if not _covers_zero(difference[_probe(x)]["ci95"])]
    if not seen:
        where = "; the probes are not compared: no layer's probe reads both kinds even on the original"
    elif differ:
        where = f"; the probes differ between the kinds at layer {', '.join(differ)}"
    else:
        where = f"; the probes do not differ between the kinds at layer {', '.join(seen)}"
    for k, xs in unseen.items():
        mixed = [x for x in xs if sees.get(k, {}).get(_probe(x), {}).get("confounded")]
        plain = [x for x in xs if x not in mixed]
        if plain:
            where += f" (at layer {', '.join(plain)} the probe reads no {k} fact beyond the control"
            where += " even on the original)"
        if mixed:
            where += f" (at layer {', '.join(mixed)} the probe is confounded by the {k} control facts)"
    return f"{head}: {figures}{where}"


def _covers_zero(ci: list[float]) -> bool:
    return ci[0] <= 0 <= ci[1]
