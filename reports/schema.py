"""What the reports read from a results.json, checked before rendering: a file that lacks a key a
report reads is refused in one line naming the key, instead of failing halfway with a traceback.

A key path is dotted: `*` is every entry of an object, `[]` every item of a list, and a leading `?`
marks a part that may be absent, null or empty (the report then leaves that section out and reads
nothing below it).
"""

from __future__ import annotations

from forensics.errors import InputError

STUDY_KEYS = (
    "summary.*.verdict",
    "summary.*.evidence",
    "summary.*.?lenses.*.diff",
    "summary.*.?lenses.*.ci95",
    *(f"summary.*.?information_map.*.{k}" for k in ("layers", "diff", "lo", "hi")),
    "?relearn.metrics.*.acc_v.mean",
    "?relearn.metrics.*.acc_v.std",
    "?relearn.best.*.*.before",
    "?relearn.chance",
    *(f"?relearn.?settings.{k}" for k in ("lrs", "epochs", "batch_size")),
    *(f"?sets.?examples.*.[].{k}" for k in ("question", "choices", "answer")),
    "?probes.layers",
    *(f"?probes.models.*.{k}.[].acc" for k in ("probe", "control", "lens.forget")),
    "?weights.*.layers",
    *(f"?activations.*.{k}.cosine" for k in ("forget", "retain")),
    *(f"?localize.*.{k}.[].forget" for k in ("revert", "patch")),
    "?localize.*.layer_rtt.[].acc_v",
    "?localize.*.before.forget",
    *(f"?localize.*.dynamics.points.[].{k}" for k in ("epoch", "cosine")),
)
KINDS_KEYS = (
    "comparison.kinds",
    *(
        f"comparison.methods.*.per_kind.*.{k}"
        for k in ("lenses", "forget", "retain", "rtt_acc_v", "rtt_control", "recovery", "verdict")
    ),
    "kinds.*.results",
)


def _missing(node, parts: list[str], at: str) -> str | None:
    """What `node` (found at `at`) lacks of the key path `parts`, in words, or None."""
    if not parts:
        return None
    head, rest = parts[0], parts[1:]
    if head in ("*", "[]"):
        kind = dict if head == "*" else list
        if not isinstance(node, kind):
            return f"'{at}' must be {'an object' if kind is dict else 'a list'}"
        items = node.items() if kind is dict else enumerate(node)
        inner = (_missing(v, rest, f"{at}.{k}" if kind is dict else f"{at}[{k}]") for k, v in items)
        return next((m for m in inner if m), None)
    key = head.removeprefix("?")
    if not isinstance(node, dict):
        return f"'{at}' must be an object"
    if head.startswith("?") and not node.get(key):
        return None
    here = f"{at}.{key}" if at else key
    if key not in node:
        return f"missing '{here}', which the report reads"
    return _missing(node[key], rest, here)


def check_results(results: dict, where: str) -> None:
    """Refuse results (read from `where`) that lack a key the report for them reads: one line
    naming the file and the key."""
    paths = KINDS_KEYS if "comparison" in results else STUDY_KEYS
    for path in paths:
        problem = _missing(results, path.split("."), "")
        if problem:
            raise InputError(f"{where}: {problem}")
