"""A study's results → per method: the headline numbers, the verdict, and the two maps (docs/design.md §9).

Information lenses (RTT, quantization, probes, logit lens, direction ablation, layer-restricted RTT)
give per-fact outcomes on the forget facts; each is compared with the same lens on the never-learned
control (or chance, without one) by `forensics.study.verdict`. Action lenses (ΔW, divergence, revert,
patch) only say where the method acted: they are drawn in the action map and never decide.
Reads the results dict only; loads no model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from forensics.attacks.adequacy import compute_words, why_unfit
from forensics.attacks.adequacy import words as adequacy_words
from forensics.lenses import REGISTRY
from forensics.lenses.accuracy import view as accuracy_view
from forensics.lenses.relearn import LABEL as RTT_LABEL
from forensics.outcomes import Reading, ci, unbits, with_ci
from forensics.study.readings import on, outcomes
from forensics.study.rtt_figures import precision, recovery
from forensics.study.verdict import VerdictSettings, decide, describe, evidence

REFERENCE, CONTROL = "original", "never_learned"
RTT = Reading(RTT_LABEL)  # the relearning attack's reading
MIN_RETAIN = 0.9  # the unlearning rule: retain at or above this × the original's


MODEL_CONTROL, FACT_CONTROL, CHANCE = (
    "the never-learned control",
    "facts the original does not know (the same runs)",
    "chance",
)


def control_fact_outcomes(results: dict, name: str) -> dict[Reading, np.ndarray]:
    """Per information lens: model `name`'s outcomes [seeds, control facts] on the control facts the
    same lens runs scored beside the forget facts (a study with control splits)."""
    out: dict[Reading, np.ndarray] = {}
    for lens in REGISTRY.values():
        if lens.control_outcomes is not None:
            out.update(lens.control_outcomes(results, name))
    return out


def paired_outcomes(results: dict, name: str) -> tuple[dict[Reading, tuple], str]:
    """Per information lens: (model outcomes, control outcomes, strata, control strata) and what the
    control is. With a never-learned model: the same lens on it, paired on the same facts and seeds
    (control strata None). With control splits instead: the same model's outcomes on facts the
    original does not know, from the same runs — other facts, so independent draws (lenses that
    scored no control facts are left out). Otherwise chance."""
    facts_of = results["facts"]
    splits, chance = np.array(facts_of["splits"]), np.array(facts_of["chance"])
    mine = outcomes(results, name)
    out = {}
    if CONTROL in results["models"]:
        theirs = outcomes(results, CONTROL)
        for lens, (values, facts) in mine.items():
            control = on(theirs[lens], facts) if lens in theirs else None
            if control is None:
                continue
            seeds = min(values.shape[0], control.shape[0])
            out[lens] = (values[:seeds], control[:seeds], splits[facts], None)
        return out, MODEL_CONTROL
    if facts_of.get("control_splits"):
        theirs = control_fact_outcomes(results, name)
        for lens, (values, facts) in mine.items():
            strata = beside(facts_of, splits[facts])
            if lens in theirs and theirs[lens].shape[1] == len(strata):
                seeds = min(values.shape[0], theirs[lens].shape[0])
                out[lens] = (values[:seeds], theirs[lens][:seeds], splits[facts], strata)
        return out, FACT_CONTROL
    for lens, (values, facts) in mine.items():
        out[lens] = (values, chance[facts][None], splits[facts], None)
    return out, CHANCE


def beside(facts_of: dict, used: Sequence[str]) -> np.ndarray:
    """The control facts' strata beside the forget splits `used` (a lens that read only some splits,
    as RTT over fewer rotations): a control split pairs with the forget split at its position."""
    forget = list(dict.fromkeys(facts_of["splits"]))
    control = list(dict.fromkeys(facts_of["control_splits"]))
    paired = {control[forget.index(s)] for s in set(used)}
    return np.array([c for c in facts_of["control_splits"] if c in paired])


def attack_adequacy(results: dict, name: str) -> dict[str, dict]:
    """Per attack lens (RTT, LoRA RTT): its strength on model `name` — T fitted, saturated, compute."""
    out: dict[str, dict] = {}
    for lens in REGISTRY.values():
        if lens.adequacy is not None:
            out.update(lens.adequacy(results, name))
    return out


def blind(e: dict) -> bool:
    """A lens reads nothing beyond the control on the original when its 95% interval of
    (original − control) reaches 0: it cannot show hiding, and cannot vouch for erasure."""
    return e["ci95"][0] <= 0


def confounded(lenses: dict[Reading, dict], against: str) -> list[str]:
    """Under a fact control, every layer of a lens that reads the forget facts beyond the control
    facts on the original at the embedding, before any block has run: the two sets of questions then
    differ in what they give away by themselves, not in what the model knows, and that difference is
    in every method's reading too, so no layer of the lens can show hiding."""
    if against != FACT_CONTROL:
        return []
    reads = {r.label for r, e in lenses.items() if r.layer == "embed" and not blind(e)}
    return [str(r) for r in lenses if r.layer is not None and r.label in reads]


CANNOT_DECIDE = "cannot decide"  # the study's reference failed: no hidden/erased verdict at all


def reference_check(results: dict, settings: VerdictSettings) -> dict:
    """Whether the study has a working reference (docs/design.md §9: no verdict without one), and which lenses
    are blind. The original must answer its forget facts above chance, and the original + RTT must
    recover V beyond the control (or chance, uncontrolled) — else nothing the attack brings back (or
    fails to) says anything about the methods. A lens whose (original − control) interval reaches 0
    is blind: it is left out of every method's verdict. Lenses the study ran without the original
    (ablation, layer RTT) cannot be checked and are kept."""
    reasons: list[str] = []
    chance = np.array(results["facts"]["chance"])
    acc = accuracy_view(results).get(REFERENCE)
    if acc is not None:
        known = acc.forget_correct
        if known is not None:
            e = evidence(unbits(known)[None], chance[None], results["facts"]["splits"], None, settings)
            lo, hi = (bound + e["control"] for bound in e["ci95"])
            fails, interval = blind(e), " " + ci(lo, hi, signed=False, label="95% CI ")
        else:  # a study written before per-fact accuracy was kept
            fails, interval = acc.forget <= chance.mean(), ""
        if fails:
            reasons.append(
                f"the original answers {acc.forget:.2f} of its forget facts{interval}, not above "
                f"chance ({chance.mean():.2f}): it does not know what the methods were to forget"
            )
    lenses, reference = lens_evidence(results, REFERENCE, settings)
    if reference == FACT_CONTROL and acc is not None and acc.control_correct is not None:
        reasons += control_facts_known(results, acc.control_correct, settings)
    attack = {m: attack_adequacy(results, m) for m in (REFERENCE, CONTROL) if m in results["models"]}
    unfit = [label for m in attack.values() for label, a in m.items() if a.get("fitted") is False]
    for model, per_lens in attack.items():
        a = per_lens.get(RTT.label)
        if a is not None and a.get("fitted") is False:
            reasons.append(
                f"RTT cannot fit T on the {model}: {why_unfit(a)} ({compute_words(a, seconds=False)}), "
                "so what it fails to bring back on V says nothing"
            )
    rtt = lenses.get(RTT)
    if rtt is not None and blind(rtt):
        reasons.append(
            f"the original + RTT recovers V at {rtt['method']:.2f}, not above {reference} "
            f"({rtt['control']:.2f}; difference {with_ci(rtt['diff'], *rtt['ci95'], label='95% CI ')}): "
            "the attack does not work in this study (a dtype that cannot "
            "train, such as float16 on CPU, or a grid too small), so no method's RTT means anything"
        )
    return {
        "ok": not reasons,
        "reasons": reasons,
        "blind": [str(r) for r, e in lenses.items() if blind(e) or (r.layer is None and r.label in unfit)],
        "attack": attack,
        "confounded": confounded(lenses, reference),
        "original": {str(r): {"diff": e["diff"], "ci95": e["ci95"]} for r, e in lenses.items()},
        "against": reference,
    }


def control_facts_known(results: dict, control_correct: str, settings: VerdictSettings) -> list[str]:
    """Under a fact control, the control facts must be facts the original does not know: its
    accuracy on them must not be above chance by its 95% interval (the same rule as the forget
    facts' check, the other way round). A reason when it is, else none."""
    facts_of = results["facts"]
    splits = facts_of["control_splits"]
    chance = np.array(facts_of.get("control_chance") or [float(np.mean(facts_of["chance"]))] * len(splits))
    right = unbits(control_correct)
    e = evidence(right[None], chance[None], splits, None, settings)
    if blind(e):  # the interval of (accuracy − chance) reaches 0: not known beyond chance
        return []
    lo, hi = e["ci95"][0] + e["control"], e["ci95"][1] + e["control"]
    return [
        f"the original answers {right.mean():.2f} of the control facts "
        f"{ci(lo, hi, signed=False, label='95% CI ')}, "
        f"above chance ({chance.mean():.2f}): they are not facts it does not know, so they cannot "
        "stand for what a lens finds where nothing was known (choose control facts the original "
        "gets wrong, or give a never-learned model)"
    ]


def lens_evidence(results: dict, name: str, settings: VerdictSettings) -> tuple[dict[Reading, dict], str]:
    """Per information lens: `verdict.evidence` of (model − control) and what the control is
    (`paired_outcomes`)."""
    pairs, against = paired_outcomes(results, name)
    # enough draws that the smallest p-value can pass Holm's strictest step (alpha / lenses)
    draws = max(settings.n_boot, math.ceil(4 * len(outcomes(results, name)) / settings.alpha))
    settings = replace(settings, n_boot=draws)
    return {lens: evidence(*pair, settings) for lens, pair in pairs.items()}, against


UNLEARNING_FAILED = "unlearning did not succeed"  # no hidden/erased verdict on such a checkpoint


def inadequate(weak: dict[str, dict]) -> str:
    """The verdict where the lenses would say erased but an attack did not demonstrably try."""
    if any(a.get("fitted") is False for a in weak.values()):
        return "inconclusive — attack did not fit T"
    if any(a.get("fitted") is None for a in weak.values()):
        return "inconclusive — attack adequacy not measured (T was not scored)"
    return "inconclusive — attack not saturated"


def summarize(results: dict, unlearned: Sequence[str], settings: VerdictSettings) -> dict:
    """Per method: accuracy, RTT recovery, the verdict with its deciding lens and interval, the
    evidence sentence, the damaged mark, and the information and action maps."""
    acc = accuracy_view(results)
    chance = float(np.mean(results["facts"]["chance"]))
    reference = results.get("reference") or reference_check(results, settings)
    out = {}
    for name in unlearned:
        row: dict = {"chance": chance}
        for lens in REGISTRY.values():  # each lens's entries (accuracy's, RTT's), in registry order
            if lens.cells is not None:
                row.update(lens.cells(results, name))
        if name in acc and REFERENCE in acc:
            row["original_retain"] = acc[REFERENCE].retain
            row["damaged"] = acc[name].retain < MIN_RETAIN * acc[REFERENCE].retain
        if name in results.get("unlearning", {}):
            row["unlearning"] = results["unlearning"][name]
        row["recovery"] = recovery(results, name, settings)
        lenses, against = lens_evidence(results, name, settings)
        controlled = against != CHANCE
        row["controlled"], row["against"] = controlled, against
        row["lenses"] = {str(r): e for r, e in lenses.items()}
        if "rtt_control" not in row and RTT in lenses:  # control facts: RTT's accuracy on them, same runs
            row["rtt_control"] = lenses[RTT]["control"]
        row["attack"] = attack_adequacy(results, name)
        row["blind"] = [lens for lens in row["lenses"] if lens in reference["blind"]]
        row["confounded"] = [lens for lens in row["lenses"] if lens in reference.get("confounded", ())]
        left_out = {*row["blind"], *row["confounded"]}
        family = {r: e for r, e in lenses.items() if str(r) not in left_out}
        row.update(judge(row, family, controlled, settings, reference))
        if RTT in lenses:  # how many facts RTT's intervals would need to reach the precision asked
            row["precision"] = precision(lenses[RTT], row.get("recovery"), settings)
            if row["precision"]["words"] and row["verdict"].startswith(("hidden", "erased", "inconclusive")):
                row["evidence"] += "; " + row["precision"]["words"]
        row["information_map"] = information_map(lenses, left_out)
        row["where"] = map_words(row["information_map"], against, row["blind"], row["confounded"])
        row["action_map"] = action_map(results, name)
        out[name] = row
    return out


def judge(
    row: dict, lenses: dict[Reading, dict], controlled: bool, settings: VerdictSettings, reference: dict
) -> dict:
    """The verdict label, the deciding lens and the evidence sentence (never a bare label), over the
    lenses that are not blind on the original; none at all when the study's reference failed."""
    if not reference["ok"]:
        return {"verdict": CANNOT_DECIDE, "deciding": None, "evidence": "; ".join(reference["reasons"])}
    if "forget" not in row:
        return {"verdict": "unknown", "deciding": None, "evidence": "accuracy was not measured"}
    words = [f"forget accuracy {row['forget']:.2f} (chance {row['chance']:.2f}), retain {row['retain']:.2f}"]
    if row.get("damaged"):
        words.append(
            f"damaged: retain fell below {MIN_RETAIN:g} × the original's {row['original_retain']:.2f}"
        )
    if row.get("unlearning", {}).get("failed"):
        words.append(f"its unlearning sweep met no run of the rule ({row['unlearning']['rule']})")
        return {"verdict": UNLEARNING_FAILED, "deciding": None, "evidence": "; ".join(words)}
    if row["forget"] > row["chance"] + 0.25:
        return {"verdict": "not unlearned", "deciding": None, "evidence": "; ".join(words)}
    if not lenses:
        words.append(
            f"no information lens reads the forget facts beyond {reference['against']} even on the "
            "original (every one is blind)"
        )
        return {"verdict": CANNOT_DECIDE, "deciding": None, "evidence": "; ".join(words)}
    decision = decide(lenses, settings, controlled)
    label, deciding = decision["verdict"], decision["deciding"]
    attack = row.get("attack", {}).items()
    weak = {n: a for n, a in attack if Reading(n) in lenses and not a.get("adequate", True)}
    if label.startswith("erased") and weak:
        label, deciding = inadequate(weak), Reading(next(iter(weak)))
        decision = {"verdict": label, "deciding": deciding, "suffix": decision.get("suffix", "")}
        for n, a in weak.items():
            words.append(
                f"{n}'s attack is not adequate: {adequacy_words(a)} ({compute_words(a, seconds=False)})"
            )
    against = reference["against"]
    if deciding:
        words.append(describe(str(deciding), lenses[deciding]) + f" (against {against})")
    if label == "hidden":
        others = [str(n) for n in decision["lenses"] if n != deciding]
        if others:
            words.append(f"also above {against} after Holm correction: {', '.join(others)}")
    elif label.startswith("inconclusive") and not weak:
        need = decision.get("facts_needed")
        words.append(
            f"about {need} facts would settle it" if need else "no number of facts settles it at this effect"
        )
    return {
        "verdict": label + decision.get("suffix", ""),
        "deciding": None if deciding is None else str(deciding),
        "facts_needed": decision.get("facts_needed"),
        "evidence": "; ".join(words),
    }


def information_map(lenses: dict[Reading, dict], blind_lenses: Sequence[str] = ()) -> dict:
    """Per layered lens (probe, logit lens, ablation, layer RTT): per layer (method − control) with its
    95% interval, and whether the lens is left out of the verdict there (`blind`: it reads nothing
    beyond the control even on the original, or a fact control is confounded for it)."""
    out: dict[str, dict] = {}
    for r, e in lenses.items():
        if r.layer is None:
            continue
        entry = out.setdefault(r.label, {"layers": [], "diff": [], "lo": [], "hi": [], "blind": []})
        entry["layers"].append(r.layer)
        entry["diff"].append(e["diff"])
        entry["lo"].append(e["ci95"][0])
        entry["hi"].append(e["ci95"][1])
        entry["blind"].append(str(r) in blind_lenses)
    return out


def map_words(
    info: dict, against: str, blind: Sequence[str] = (), confounded: Sequence[str] = ()
) -> str | None:
    """The information map in words: per layered lens, the layer where it reads the most above the
    control (the highest lower end of the 95% interval: the surest, not the luckiest, layer) with its
    difference and interval, or that it reads nothing beyond the control at any layer; then the
    layers left out as blind on the original or confounded. None without a layered lens."""
    parts, left = [], []
    for label, e in info.items():
        for why, names in (("blind on the original", blind), ("confounded", confounded)):
            at = [str(layer) for layer in e["layers"] if f"{label} @{layer}" in names]
            if at:
                left.append(f"{label} {why} at layer{'s' if len(at) > 1 else ''} {', '.join(at)}")
        kept = [i for i, out in enumerate(e["blind"]) if not out]
        if not kept:
            continue
        i = max(kept, key=lambda i: (e["lo"][i], e["diff"][i]))
        figure = f"layer {e['layers'][i]}, {with_ci(e['diff'][i], e['lo'][i], e['hi'][i])}"
        if e["lo"][i] > 0:
            parts.append(f"{label} reads the most above {against} at {figure}")
        else:
            parts.append(f"{label} reads nothing beyond {against} at any layer (the most: {figure})")
    if not info:
        return None
    if not parts:
        return f"every layered lens is left out ({'; '.join(left)})"
    return "; ".join(parts) + (f"; left out: {'; '.join(left)}" if left else "")


def action_map(results: dict, name: str) -> dict | None:
    """Where the method acted, per block, one row per action lens's measure (‖ΔW‖/‖W‖, 1 − cosine to
    the original's residual on forget prompts, forget accuracy gained by reverting or patching the
    block, …), aligned on the blocks the first of them names (None where a lens did not measure a
    block). These never decide the verdict."""
    out: dict[str, list] = {}
    for lens in REGISTRY.values():
        rows = lens.action(results, name) if lens.action is not None else None
        if not rows:
            continue
        layers = rows.pop("layers")
        frame = out.setdefault("layers", layers)
        at = {layer: i for i, layer in enumerate(layers)}
        for row, values in rows.items():
            out[row] = [values[at[layer]] if layer in at else None for layer in frame]
    return out or None
