"""Causal localization of the hiding, layer by layer, and how RTT undoes it.

Per layer ℓ of an unlearned model: (a) revert ℓ's parameters to the original's; (b) patch the
original's residual after ℓ into the unlearned forward pass; (c) RTT restricted to ℓ's parameters.
Each re-scores the forget facts (V under RTT). RTT dynamics: per layer, the cosine between the RTT
update and the reversed unlearning update, and probe accuracy on V along the attack.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from forensics.attacks.relearn import RelearnSettings, derived_seed, run_one
from forensics.errors import InputError
from forensics.facts.core import Sets
from forensics.measure.probing import features, labels
from forensics.measure.weights import diff as weights_diff
from forensics.models.arch import arch_of
from forensics.models.cache import RESID, forward_until
from forensics.models.checkpoint import boot_bridge, load_checkpoint
from forensics.models.digest import checkpoint_digest
from forensics.models.executor import Executor, Job
from forensics.models.runtime import Runtime, in_memory
from forensics.models.scoring import score
from probes.divergence import divergence
from probes.linear import RidgeProbe


def _scores(model, tok, sets: Sets, scorer: str) -> dict[str, float]:
    return {
        "forget": score(model, tok, sets.forget_facts(), scorer).accuracy,
        "retain": score(model, tok, sets.retain, scorer).accuracy,
    }


@torch.no_grad()
def revert(original, unlearned, tok, sets: Sets, scorer: str, layers: list[int] | None = None) -> list[dict]:
    """Per layer of `layers` (default every one): forget and retain accuracy of `unlearned` with that
    layer's parameters set back to `original`'s (HF models of one architecture; `unlearned` is
    restored afterwards)."""
    in_memory(unlearned, "reverting a layer")
    theirs = dict(original.named_parameters())
    arch = arch_of(original.config)
    out = []
    for layer in range(arch.n_layers) if layers is None else layers:
        mine = arch.block_params(unlearned, layer)
        saved = {n: p.detach().clone() for n, p in mine.items()}
        for n, p in mine.items():
            p.copy_(theirs[n])
        out.append(_scores(unlearned, tok, sets, scorer))
        for n, p in mine.items():
            p.copy_(saved[n])
    return out


class Patched(torch.nn.Module):
    """The unlearned bridge with the original's residual after `layer` patched in at every position."""

    def __init__(self, original_bridge, unlearned_bridge, layer: int):
        super().__init__()
        self.original, self.unlearned, self.hook = original_bridge, unlearned_bridge, RESID.format(layer)

    def forward(self, input_ids, attention_mask=None):
        captured = {}  # the original runs only up to the patched layer
        forward_until(self.original, input_ids, attention_mask, [self.hook], captured.__setitem__)
        theirs = captured[self.hook]
        with self.unlearned.hooks(fwd_hooks=[(self.hook, lambda act, hook=None: theirs)]):
            return self.unlearned(input_ids, attention_mask=attention_mask)


def patch(
    original_bridge, unlearned_bridge, sets: Sets, scorer: str, layers: list[int] | None = None
) -> list[dict]:
    """Per layer of `layers` (default every one): forget and retain accuracy with the original's
    residual after that layer patched in."""
    tok = unlearned_bridge.tokenizer
    layers = range(unlearned_bridge.cfg.n_layers) if layers is None else layers
    return [_scores(Patched(original_bridge, unlearned_bridge, i), tok, sets, scorer) for i in layers]


def layer_rtt(
    model,
    tok,
    sets: Sets,
    settings: RelearnSettings,
    progress: bool = False,
    weights: str = "",
    layers: list[int] | None = None,
) -> list[dict]:
    """Per layer: RTT updating only that layer's parameters; per seed and V the best (lr, epoch) on V
    (the same choice as full RTT; the first `settings.rotations` V), its per-fact outcomes (`correct`:
    one 0/1 string per seed over the V facts in rotation order) and the mean V accuracy.
    `weights` (the checkpoint's digest) derives each run's seed as full RTT does."""
    out = []
    rotations = list(sets.rotations())[: settings.rotations]
    before = {v: score(model, tok, v_facts, settings.scorer).accuracy for v, _, v_facts in rotations}
    for layer in range(arch_of(model.config).n_layers) if layers is None else layers:
        per_v: dict[str, list[float]] = {v: [] for v, _, _ in rotations}
        correct = []
        for seed in settings.seeds:
            outcome = ""
            for v, _, _ in rotations:
                epochs = [
                    e
                    for lr in settings.lrs
                    for e in run_one(
                        model,
                        tok,
                        sets,
                        v,
                        lr,
                        settings,
                        before[v],
                        progress,
                        layer,
                        only_v=True,
                        seed=derived_seed(seed, weights, v, lr),
                    )["epochs"]
                ]
                best = max(epochs, key=lambda e: e["acc_v"])
                per_v[v].append(best["acc_v"])
                outcome += best["v_correct"]
            correct.append(outcome)
        means = {v: float(np.mean(a)) for v, a in per_v.items()}
        out.append({"acc_v": float(np.mean(list(means.values()))), "per_v": means, "correct": correct})
    return out


def _layer_vectors(model) -> dict[int, torch.Tensor]:
    """Each block's parameters, by their HF names, as one float64 vector."""
    arch = arch_of(model.config)
    return {
        layer: torch.cat([p.detach().flatten() for p in arch.block_params(model, layer).values()]).double()
        for layer in range(arch.n_layers)
    }


def rtt_dynamics(
    original,
    unlearned,
    bridge_of,
    tok,
    sets: Sets,
    settings: RelearnSettings,
    v: str,
    progress: bool = False,
) -> dict:
    """RTT on T (V = `v`, the first learning rate of `settings`); after each epoch, per layer, the
    cosine between the update so far and the reversed unlearning update (original − unlearned), and
    ridge-probe accuracy on V per layer (the fast screen, refitted on the attacked model's activations).
    `bridge_of(model)` wraps an HF model in a TransformerBridge."""
    forget = sets.forget_facts()
    facts = [*forget, *sets.near_retain, *sets.retain]
    splits = np.array([f.split for f in forget] + [""] * (len(facts) - len(forget)))
    test, train = np.flatnonzero(splits == v), np.flatnonzero(splits != v)
    y, allowed, _ = labels(facts, settings.scorer)
    start, target = _layer_vectors(unlearned), _layer_vectors(original)
    reverse = {i: target[i] - start[i] for i in start}
    points: list[dict] = []

    def measure(epoch: int, model) -> dict:
        now = _layer_vectors(model)
        cos = [float(torch.cosine_similarity(now[i] - start[i], reverse[i], dim=0)) for i in now]
        X = features(bridge_of(model), facts, settings.scorer, None, "")
        probe = RidgeProbe().fit(X[:, train], y[train], allowed[train])
        acc = probe.score(X[:, test], y[test], allowed[test]).tolist()
        point = {"epoch": epoch, "cosine": cos, "ridge_probe_v": acc}
        points.append(point)
        return {}

    measure(0, unlearned)
    one = replace(settings, lrs=settings.lrs[:1])
    run = run_one(unlearned, tok, sets, v, one.lrs[0], one, float("nan"), progress, None, measure, True)
    return {"v": v, "lr": one.lrs[0], "points": points, "acc_v": [e["acc_v"] for e in run["epochs"]]}


def weights_section(original: Path, models: Mapping[str, Path]) -> dict:
    """The streaming weight diff of each model against the original."""
    return {name: weights_diff(original, path) for name, path in models.items()}


def activations_section(
    original: Path,
    models: Mapping[str, Path],
    sets: Sets,
    scorer: str,
    cache_dir: Path | None = None,
    runtime: Runtime = Runtime(),
) -> dict:
    """Per model, layer-wise divergence from the original's residuals, on forget and on retain prompts."""
    kinds = (("forget", sets.forget_facts()), ("retain", list(sets.retain)))
    bridge, digest = boot_bridge(original, runtime=runtime), checkpoint_digest(original)
    base = {k: features(bridge, f, scorer, cache_dir, digest) for k, f in kinds}
    out = {}
    for name, path in models.items():
        bridge, digest = boot_bridge(path, runtime=runtime), checkpoint_digest(path)
        out[name] = {k: divergence(base[k], features(bridge, f, scorer, cache_dir, digest)) for k, f in kinds}
    return out


def localize_section(
    original: Path,
    models: Mapping[str, Path],
    sets: Sets,
    settings: RelearnSettings,
    progress: bool = False,
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
) -> dict:
    """Per model (a job of `executor` each): revert, patch and layer-restricted RTT per layer, and
    the RTT dynamics on the first V."""
    common = {"original": original, "sets": sets, "settings": settings}
    common |= {"progress": progress, "runtime": runtime}
    jobs = [
        Job(fn=localize_model, kwargs={"path": path, **common}, num_gpus=runtime.gpus())
        for path in models.values()
    ]
    return dict(zip(models, executor.run(jobs), strict=True))


def localize_model(
    path: Path, original: Path, sets: Sets, settings: RelearnSettings, progress: bool, runtime: Runtime
) -> dict:
    """Revert, patch, layer-restricted RTT and RTT dynamics of one model against the original."""
    start = time.perf_counter()
    scorer = settings.scorer
    # the bridges get copies of their own: booting one rewires the model it wraps, and revert and
    # RTT copy and change the plain models
    orig_model, tok = load_checkpoint(original, runtime)
    orig_bridge = boot_bridge(original, runtime=runtime)
    model, _ = load_checkpoint(path, runtime)
    bridge = boot_bridge(path, runtime=runtime)
    first_v = next(iter(sets.forget))
    n_layers = arch_of(model.config).n_layers
    layers = list(range(n_layers)) if settings.layers is None else list(settings.layers)
    if any(not 0 <= x < n_layers for x in layers):
        raise InputError(f"localize 'layers' {layers}: the model has blocks 0..{n_layers - 1}")
    return {
        "layers": layers,
        "before": _scores(model, tok, sets, scorer),
        "revert": revert(orig_model, model, tok, sets, scorer, layers),
        "patch": patch(orig_bridge, bridge, sets, scorer, layers),
        "layer_rtt": layer_rtt(model, tok, sets, settings, progress, checkpoint_digest(path), layers),
        "dynamics": rtt_dynamics(
            orig_model, model, lambda m: boot_bridge(path, m, tok), tok, sets, settings, first_v
        ),
        "seconds": round(time.perf_counter() - start, 1),
    }
