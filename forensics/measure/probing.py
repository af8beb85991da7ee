"""The probe and logit-lens lenses: residuals from the cache, probes and lens from `probes/`.

Probes read every layer (and the embedding) and pick among the question's own choices. Under
`letter`, a multinomial probe on the prompt's final-position residual names the letter; under
`choice`, a choice-scoring probe (`probes.choice`) scores each choice from the residual at the last
token of question + choice, so it can pick an answer no training fact had (V's years are mostly not
T's: a probe over answer strings as classes is blind to them). Trained on retain + near-retain + T,
tested on V, rotated over V as in RTT, so every forget fact is tested once per model. Beside each:
a control task (answers shuffled across facts), selectivity (accuracy − control), a closed-form
ridge probe (a fast screen), and transfer (the original's probe on this model's V).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from forensics.errors import InputError
from forensics.facts.core import Fact, Sets
from forensics.facts.formats import choice_context, letter_prompt
from forensics.measure.probe_fits import ProbeSettings, fit_rotations, predict, ridge_screen
from forensics.models.arch import arch_of
from forensics.models.cache import default_hooks, extract, lookup, model_dtype, store, stream_ids
from forensics.models.checkpoint import boot_bridge
from forensics.models.digest import checkpoint_digest, weights_digest
from forensics.models.executor import Executor, Job
from forensics.models.runtime import Runtime, input_device
from forensics.models.scoring import choice_plan, letter_token_ids, long_logliks, plan_table
from forensics.outcomes import bits
from probes.lens import choice_lens, letter_lens
from probes.selectivity import accuracy_with_ci, control_answers


def layer_names(n_layers: int) -> list[str]:
    return ["embed", *map(str, range(n_layers))]


def labels(facts: Sequence[Fact], scorer: str, answers: np.ndarray | None = None):
    """(y [n], allowed [n, K], classes): the class of each fact's answer (or of `answers`, positions
    into its choices) and the classes its choices allow."""
    answers = np.array([f.answer for f in facts]) if answers is None else answers
    if scorer.startswith("letter"):
        k = max(len(f.choices) for f in facts)
        allowed = np.array([[j < len(f.choices) for j in range(k)] for f in facts])
        return answers.astype(int), allowed, [chr(ord("A") + j) for j in range(k)]
    classes = sorted({c for f in facts for c in f.choices})
    index = {c: i for i, c in enumerate(classes)}
    allowed = np.zeros((len(facts), len(classes)), dtype=bool)
    for i, f in enumerate(facts):
        allowed[i, [index[c] for c in f.choices]] = True
    y = np.array([index[f.choices[a]] for f, a in zip(facts, answers, strict=True)])
    return y, allowed, classes


def positions(facts: Sequence[Fact], answers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(y [n], allowed [n, most choices]): each fact's answer (or `answers`) as a position among its
    own choices, and which positions it has: the probes' labels under either scorer."""
    y = np.array([f.answer for f in facts]) if answers is None else np.asarray(answers)
    width = max(len(f.choices) for f in facts)
    return y.astype(int), np.array([[j < len(f.choices) for j in range(width)] for f in facts])


def features(
    bridge, facts: Sequence[Fact], scorer: str, cache_dir: Path | None, weights: str
) -> torch.Tensor:
    """[layers + 1, n, d]: embedding and every block's residual at the final prompt position."""
    acts = extract(bridge, feature_prompts(facts, scorer), cache_dir=cache_dir, weights=weights)
    return acts.stack()


def feature_prompts(facts: Sequence[Fact], scorer: str) -> list[str]:
    """The prompts whose final-position residuals are the probes' features (the scorer's prompt)."""
    prompt = letter_prompt if scorer.startswith("letter") else choice_context
    return [prompt(f) for f in facts]


def lens_correct(
    bridge, facts: Sequence[Fact], scorer: str, cache_dir: Path | None, weights: str, translate=None
):
    """[layers + 1, n] bool: is the logit lens at each layer right on each fact (the scorer's rule);
    with `translate` (per-layer residuals [layers + 1, ..., d] → the same shape: a tuned lens's
    translators), the residuals are translated before the model's own readout."""
    return residuals_and_lens(bridge, facts, scorer, cache_dir, weights, translate)[1]


def residuals_and_lens(
    bridge,
    facts: Sequence[Fact],
    scorer: str,
    cache_dir: Path | None,
    weights: str | None,
    translate=None,
    statements: bool = False,
    basis=None,
    readout=None,
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor | None]:
    """(`features`, `lens_correct`, statements) from one pass over each prompt.

    With `statements` (under `choice`), every choice runs in a row of its own and the third item is
    [layers + 1, n, most choices, 2 d], the choice-scoring probes' features (zeros where a fact has
    fewer choices), per layer: the residual at the last token of question + choice (the statement),
    beside the logit lens's per-dimension products (`Readout.products`) summed over the positions
    where the lens reads the choice, read through `basis` (a `Readout`: the reference model's, so a
    method that changed its own output layer does not change what the probe reads; this model's when
    None); None otherwise. `readout`: this model's own (`Arch.readout`, which checks it with a forward
    pass), built here when None.

    Under `choice`, one-token choices are read from the final-position residuals (the scorer's own
    plan); longer choices' rows are streamed through the lens batch by batch, read only where a
    fact's choices differ (`lens_terms`: the choices' log-likelihoods less one amount per fact, so
    the same choice wins). A row holds its fact's prompt, and causal attention leaves the prompt's
    last position as the prompt alone gives it: the residuals of facts with rows are read there, only
    the other facts' prompts run on their own, and the whole is cached under the prompts' key, as
    `features` would cache it (when it is cached already, it is read from the cache)."""
    if readout is None:
        readout = arch_of(bridge.original_model.config).readout(bridge.original_model)
    translate = translate or (lambda resid: resid)
    answers = torch.tensor([f.answer for f in facts])
    if scorer.startswith("letter"):
        X = features(bridge, facts, scorer, cache_dir, weights)
        letters = letter_token_ids(bridge.tokenizer, max(len(f.choices) for f in facts))
        correct = letter_lens(translate(X), readout, letters, [len(f.choices) for f in facts]) == answers
        return X, correct.numpy(), None
    plan = choice_plan(bridge.tokenizer, facts, own_rows=statements)
    hooks = default_hooks(bridge.cfg.n_layers)
    prompts = feature_prompts(facts, scorer)
    dtype, found = model_dtype(bridge), None
    if cache_dir:
        weights = weights or weights_digest(bridge)
        found = lookup(cache_dir, weights, bridge.tokenizer, prompts, hooks, dtype)
    own: dict[int, int] = {}  # row -> the fact whose prompt residuals it gives (one row per fact)
    if found is not None:
        X = found.stack()
    elif not plan.rows:
        X = features(bridge, facts, scorer, cache_dir, weights)
    else:
        X = torch.zeros(len(hooks), len(facts), bridge.cfg.d_model, dtype=dtype)
        one_row = {plan.long[c][0]: row for c, row, _, _ in plan.terms}  # any row holds the prompt
        own = {row: fact for fact, row in one_row.items()}
    S, statement_of, d = None, {}, bridge.cfg.d_model
    if statements:
        S = torch.zeros(len(hooks), len(facts), plan.width, 2 * d, dtype=dtype)
        statement_of = {row: plan.long[c] for c, row, _, _ in plan.terms}  # own rows: one choice each
        layer_index = torch.arange(len(hooks))[:, None]
    terms = torch.zeros(len(hooks), len(plan.terms))
    if plan.rows:
        by_row: dict[int, list[int]] = {}
        kept, shared = lens_terms(plan)
        for n in kept:
            by_row.setdefault(plan.terms[n][1], []).append(n)
        on_device = readout.to(input_device(bridge))
        products_of = (basis or readout).to(input_device(bridge))
        width = max(map(len, by_row.values()))

        def reduce(acts, attention, rows):
            """[layers + 1, width, b]: each row's terms' log-probs, in its `by_row` order."""
            raw = torch.stack([acts[h] for h in hooks])  # [layers + 1, b, T, d]
            for b, r in enumerate(rows):
                if r in own:
                    X[:, own[r]] = raw[:, b, plan.rows[r][1] - 1].to("cpu", dtype)
                if r in statement_of:  # the row's last position: its whole statement
                    fact, choice = statement_of[r]
                    S[:, fact, choice, :d] = raw[:, b, len(plan.rows[r][0]) - 1].to("cpu", dtype)
            stacked = translate(raw)
            picks = [(b, k, n) for b, r in enumerate(rows) for k, n in enumerate(by_row.get(r, []))]
            seqs, cols, toks = (
                torch.tensor(x, device=stacked.device)
                for x in zip(*((b, plan.terms[n][2], plan.terms[n][3]) for b, _, n in picks), strict=True)
            )
            at_shared = torch.tensor([n in shared for _, _, n in picks])
            out = torch.zeros(stacked.shape[0], width, len(rows))
            b, k = (torch.tensor(x) for x in zip(*((b, k) for b, k, _ in picks), strict=True))
            out[:, k, b] = choice_lens(stacked, seqs, cols, toks, on_device, at_shared).cpu()
            if statements:  # each choice's lens products, summed over the terms it is read at
                fact, choice = (
                    torch.tensor(x)
                    for x in zip(*(plan.long[plan.terms[n][0]] for _, _, n in picks), strict=True)
                )
                products = products_of.products(stacked[:, seqs, cols], toks).to("cpu", dtype)
                S[..., d:].index_put_((layer_index, fact[None], choice[None]), products, accumulate=True)
            return out

        per_row = stream_ids(bridge, [ids for ids, _ in plan.rows], reduce, hooks)
        for r, ns in by_row.items():
            terms[:, ns] = per_row[:, : len(ns), r]
    alone = plan.prompt_facts
    if own and alone:  # the facts whose choices are all one token: their prompts run on their own
        X[:, alone] = extract(bridge, [prompts[i] for i in alone]).stack().to(dtype)
    if own and cache_dir:
        store(cache_dir, weights, bridge.tokenizer, prompts, dict(zip(hooks, X, strict=True)))
    long = long_logliks(plan, terms)
    resid = translate(X[:, alone]) if alone else None
    needed = max((t for _, _, t in plan.first), default=0) + 1
    table = []
    for layer, ll in enumerate(long):
        first = torch.zeros(len(facts), needed)
        if alone:  # read out only where a one-token choice is read
            first[alone] = torch.log_softmax(readout(resid[layer]), -1)[:, :needed]
        table.append(plan_table(plan, first, ll))
    return X, (torch.stack(table).argmax(-1) == answers).numpy(), S


def lens_terms(plan) -> tuple[list[int], set[int]]:
    """(the plan's terms the lens reads, those of them read where every choice of the fact passes).

    A term every choice of its fact reads (the same token after the same tokens: " 19" of " 1913" …
    " 1916") adds the same to each and is left out, so the lens reads each fact only where its
    choices differ; every row keeps its choice's last token. A kept term at a position every choice
    passes through (the last digit after " 191") needs no normaliser there: each choice has one term
    at that position, so the normaliser adds the same to each (`choice_lens`'s `shared`)."""
    fact_of = [plan.long[c][0] for c, _, _, _ in plan.terms]
    choices: dict[int, int] = {}
    for i, _ in plan.long:
        choices[i] = choices.get(i, 0) + 1
    readers: dict[tuple, set[int]] = {}
    passing: dict[tuple, set[int]] = {}
    keys = []
    for n, (c, row, pos, tok) in enumerate(plan.terms):
        at = (fact_of[n], tuple(plan.rows[row][0][: pos + 1]))
        readers.setdefault((*at, tok), set()).add(c)
        passing.setdefault(at, set()).add(c)
        keys.append(at)
    kept = [n for n, at in enumerate(keys) if len(readers[(*at, plan.terms[n][3])]) < choices[at[0]]]
    return kept, {n for n in kept if len(passing[keys[n]]) == choices[keys[n][0]]}


def _per_layer(correct: np.ndarray) -> list[dict]:
    return [accuracy_with_ci(row) for row in correct]


def probe_models(
    models: Mapping[str, Path],
    sets: Sets,
    scorer: str,
    cache_dir: Path | None = None,
    settings: ProbeSettings = ProbeSettings(),
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
) -> dict:
    """Probe, control, selectivity, transfer and logit lens per layer for every model; the first
    model is the reference (the original) whose probes are transferred. On a Ray executor each model
    is a task (the reference first: the others take its probes); locally they run in this process,
    since the fits are matrix products that use every core (worker processes would only split the
    cores between them). The models run where `runtime` puts them; the cache keeps residuals on the
    CPU in their dtype."""
    forget = sets.forget_facts()
    facts = [*forget, *sets.near_retain, *sets.retain]
    splits = np.array([f.split for f in forget])
    rotations = [v for v, _, _ in sets.rotations()]
    if len(facts) - max((splits == v).sum() for v in rotations) < 2 * settings.folds:
        raise InputError(f"too few training facts for {settings.folds} probe folds")
    names = list(models)
    executor = executor if executor.kind == "ray" else Executor()
    common = {"sets": sets, "scorer": scorer, "cache_dir": cache_dir}
    common |= {"settings": settings, "runtime": runtime}

    def job(name: str, reference: dict | None) -> Job:
        kwargs = {"path": models[name], "reference": reference, **common}
        return Job(fn=probe_model, kwargs=kwargs, num_gpus=runtime.gpus())

    first = executor.run([job(names[0], None)])[0]
    reference = first.pop("reference")
    rest = executor.run([job(n, reference) for n in names[1:]])
    results = [first, *rest]
    return {
        "scorer": scorer,
        "layers": first.pop("layers"),
        "classes": first.pop("classes"),
        "chance": float(np.mean([1 / len(f.choices) for f in forget])),
        "settings": asdict(settings),
        "train": "retain + near-retain + T, tested on V, rotated over V",
        "models": {
            n: {k: v for k, v in r.items() if k not in ("reference", "layers", "classes")}
            for n, r in zip(names, results, strict=True)
        },
    }


def probe_model(
    path: Path,
    sets: Sets,
    scorer: str,
    cache_dir: Path | None,
    settings: ProbeSettings,
    runtime: Runtime,
    reference: dict | None,
) -> dict:
    """`probe_bridge` on a checkpoint dir, its residuals cached under its content hash."""
    bridge = boot_bridge(path, runtime=runtime)
    return probe_bridge(
        bridge,
        sets,
        scorer,
        settings=settings,
        reference=reference,
        cache_dir=cache_dir,
        weights=checkpoint_digest(path),
    )


def probe_bridge(
    bridge,
    sets: Sets,
    scorer: str,
    *,
    settings: ProbeSettings,
    reference: dict | None,
    cache_dir: Path | None = None,
    weights: str | None = None,
) -> dict:
    """One model's probes, control task, ridge screen, transfer of the reference's probes and logit
    lens. `reference` is what the reference model's run returned under `reference` (its probes and
    the readout its choice-scoring probes read through); None when this model is the reference. With
    `cache_dir`, residuals are cached under `weights` (the checkpoint's hash; from memory if None)."""
    forget = sets.forget_facts()
    known = [*forget, *sets.near_retain, *sets.retain]
    facts = [*known, *sets.control_facts()]  # control facts are read, never trained on
    n_forget, n_retain = len(forget), len(sets.retain)
    splits = np.array([f.split for f in forget])
    y, allowed = positions(facts)
    y_control, _ = positions(facts, control_answers(y, allowed.sum(1), settings.seed))
    rotations = [v for v, _, _ in sets.rotations()]
    tests = [np.flatnonzero(splits == v) for v in rotations]
    trains = [
        np.concatenate([np.flatnonzero(splits != v), np.arange(n_forget, len(known))]) for v in rotations
    ]
    c_splits = np.array([f.split for f in sets.control_facts()])
    c_tests = [len(known) + np.flatnonzero(c_splits == c) for c in sets.control]
    choice = not scorer.startswith("letter")  # score each choice's own statement; else the letters
    readout = arch_of(bridge.original_model.config).readout(bridge.original_model)
    basis = reference["basis"] if reference else readout  # the products go through the reference's
    X, lens, S = residuals_and_lens(
        bridge, facts, scorer, cache_dir, weights, statements=choice, basis=basis, readout=readout
    )
    F = S if choice else X
    probes, controls, chosen_C = fit_rotations(F, y, y_control, allowed, trains, settings)
    transferred = reference["probes"] if reference else probes
    kinds = ("probe", "control", "transfer", "ridge")
    hits = {k: np.zeros((X.shape[0], n_forget), dtype=bool) for k in kinds}
    for test, train, probe, control, ref in zip(tests, trains, probes, controls, transferred, strict=True):
        hits["ridge"][:, test] = ridge_screen(F, y, allowed, train, test) == y[test]
        hits["probe"][:, test] = predict(probe, F[:, test], allowed[test]) == y[test]
        hits["control"][:, test] = predict(control, F[:, test], allowed[test]) == y_control[test]
        hits["transfer"][:, test] = predict(ref, F[:, test], allowed[test]) == y[test]
    on_control = np.zeros((X.shape[0], len(facts) - len(known)), dtype=bool)
    for test, probe in zip(c_tests, probes, strict=False):  # beside V: the same rotation's probe
        on_control[:, test - len(known)] = predict(probe, F[:, test], allowed[test]) == y[test]
    probe_acc, control_acc = _per_layer(hits["probe"]), _per_layer(hits["control"])
    extra = {}
    if sets.control:
        extra = {
            "probe_on_control_facts": [bits(row) for row in on_control],
            "lens_on_control_facts": [bits(row) for row in lens[:, len(known) :]],
        }
    return {
        "layers": layer_names(X.shape[0] - 1),
        "classes": allowed.shape[1],
        "reference": {"probes": probes, "basis": basis},
        "probe": probe_acc,
        "probe_correct": [bits(row) for row in hits["probe"]],  # per layer, forget facts in order
        "control": control_acc,
        "selectivity": [p["acc"] - c["acc"] for p, c in zip(probe_acc, control_acc, strict=True)],
        "transfer": _per_layer(hits["transfer"]),
        "ridge": _per_layer(hits["ridge"]),
        "C": dict(zip(rotations, chosen_C, strict=True)),
        "lens": {
            "forget": _per_layer(lens[:, :n_forget]),
            "retain": _per_layer(lens[:, len(known) - n_retain : len(known)]),
        },
        "lens_correct": [bits(row) for row in lens[:, :n_forget]],
        **extra,
    }
