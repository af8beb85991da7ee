"""Unlearning Depth Score (UDS, the unlearning-depth-score project), for comparison with the field:
per forget fact and layer, how much the answer's log-probability in the original falls when a
source model's residual after that layer is patched in at the answer positions — the never-learned
control as the retain source (S1), each method as S2 — scored by `probes.uds` (1: the method lacks
the fact wherever the control does; 0: it still holds it there), with a 95% interval over facts.
An action lens: it says how deep the change goes, never decides the verdict. Opt-in (one patched
forward pass per fact, layer and model).
"""

from __future__ import annotations

import numpy as np

from forensics.lenses.base import ACTION, Context, Lens

CONTROL = "never_learned"


def answer_logprob(bridge, ids: list[int], start: int, patch: tuple[str, object] | None = None) -> float:
    """Mean log-probability of ids[start:] given what precedes each, with `patch` = (hook, source
    residual [1, T, d]) written in at the positions that predict them."""
    import torch

    x = torch.tensor([ids])
    hooks = []
    if patch is not None:
        hook, source = patch
        where = slice(start - 1, len(ids) - 1)

        def put(act, hook=None):
            act = act.clone()
            act[:, where] = source[:, where].to(act.dtype)
            return act

        hooks = [(hook, put)]
    with torch.no_grad(), bridge.hooks(fwd_hooks=hooks):
        logits = bridge(x)
    logp = torch.log_softmax(logits[0, start - 1 : len(ids) - 1].float(), -1)
    return float(logp.gather(1, x[0, start:, None]).mean())


def deltas(full, source, items: list[tuple[list[int], int]], base: list[float]) -> np.ndarray:
    """[facts, layers] log-prob drop in `full` (whose unpatched log-probs are `base`) when `source`'s
    residual after each layer is patched in."""
    import torch

    from forensics.models.cache import RESID, forward_until

    n = full.cfg.n_layers
    hooks = [RESID.format(i) for i in range(n)]
    out = np.zeros((len(items), n))
    for f, (ids, start) in enumerate(items):
        acts: dict = {}
        forward_until(
            source, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), hooks, acts.__setitem__
        )
        for layer, hook in enumerate(hooks):
            out[f, layer] = base[f] - answer_logprob(full, ids, start, (hook, acts[hook]))
    return out


def run(ctx: Context) -> dict:
    from forensics.facts.formats import default_format, examples
    from forensics.models.checkpoint import boot_bridge
    from forensics.models.tokens import encode
    from forensics.outcomes import bootstrap_means
    from probes.uds import TAU, uds

    if CONTROL not in ctx.models:
        return {"note": "UDS needs the never-learned control as its retain model", "models": {}}
    full = boot_bridge(ctx.cfg.original, runtime=ctx.runtime)
    texts = examples(ctx.sets.forget_facts(), default_format(ctx.scorer))
    items = [encode(full.tokenizer, e.prompt, e.target) for e in texts]
    base = [answer_logprob(full, ids, start) for ids, start in items]  # the original, once
    d1 = deltas(full, boot_bridge(ctx.models[CONTROL], runtime=ctx.runtime), items, base)
    splits = np.array([f.split for f in ctx.sets.forget_facts()])
    out: dict = {"tau": TAU, "scored": int((d1 > TAU).any(1).sum()), "facts": len(items), "models": {}}
    for name, path in ctx.models.items():
        if name in ("original", CONTROL):
            continue
        d2 = deltas(full, boot_bridge(path, runtime=ctx.runtime), items, base)
        per_fact = uds(d1, d2)
        ok = ~np.isnan(per_fact)
        entry = {
            "per_fact": [None if np.isnan(x) else float(x) for x in per_fact],
            "delta": d2.mean(0).tolist(),
        }
        if ok.any():
            (draws,) = bootstrap_means([per_fact[ok][None]], splits[ok], 2000, 0)
            entry["uds"] = float(per_fact[ok].mean())
            entry["ci95"] = [float(x) for x in np.quantile(draws, [0.025, 0.975])]
        out["models"][name] = entry
    out["delta_retain"] = d1.mean(0).tolist()
    return out


LENS = Lens(name="uds", kind=ACTION, run=run, default=False)
