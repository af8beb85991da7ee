"""What the reports read from a results.json, checked before rendering: a file that lacks a key a
report reads, or holds a value of a kind the report cannot draw, is refused in one line naming the
key, instead of failing halfway with a traceback.

A key path is dotted: `*` is every entry of an object, `[]` every item of a list, and a leading `?`
marks a part that may be absent, null or empty (the report then leaves that section out and reads
nothing below it). A path may end in `:KIND`, what the value there must be (`TYPES`: `num` a number,
`num?` a number or null, `pair` a [lo, hi] pair of numbers, `layer` a layer's name or number, ...),
or in `:same(a,b,...)`: the lists under those keys of the object there have one length.

`read_results` is the one reader of a results.json: `forensics report` and `forensics.load_results`.
"""

from __future__ import annotations

import json
from pathlib import Path

from forensics.errors import InputError
from forensics.lenses import REGISTRY
from forensics.models.checkpoint import read_json
from forensics.study.run import SCHEMA_VERSION


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


TYPES = {
    "num": (_num, "a number"),
    "num?": (lambda v: v is None or _num(v), "a number or null"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "str?": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "layer": (lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)), "a layer"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "pair": (lambda v: isinstance(v, list) and len(v) == 2 and all(map(_num, v)), "a pair of numbers"),
}

MAP = "summary.*.?information_map.*"
STUDY_KEYS = (
    "summary.*.verdict:str",
    "summary.*.evidence:str",
    "summary.*.?deciding:str",
    "summary.*.?where:str?",
    "summary.*.?against:str",
    "summary.*.?lenses.*.diff:num",
    "summary.*.?lenses.*.ci95:pair",
    # what `forensics.Results.lens` reads of each reading beside them
    "summary.*.?lenses.*.ci90:pair",
    *(f"summary.*.?lenses.*.{k}:num" for k in ("p_hidden", "method", "control")),
    *(f"summary.*.?{k}:list" for k in ("blind", "confounded")),
    "summary.*.?recovery.?value:num",
    "summary.*.?recovery.?ci95:pair",
    "summary.*.?recovery.?max.?value:num",
    "summary.*.?recovery.?max.?ci95:pair",
    "summary.*.?recovery.?paper:str",
    f"{MAP}.layers.[]:layer",
    *(f"{MAP}.{k}.[]:num" for k in ("diff", "lo", "hi")),
    f"{MAP}.?blind:list",
    f"{MAP}:same(layers,diff,lo,hi,blind)",
    "summary.*.?action_map.layers.[]:layer",
    "summary.*.?action_map.*:list",
    "?control_action_map.layers.[]:layer",
    "?control_action_map.*:list",
    "?action_rows.*:str",
    "?sets.?forget.*",
    "?sets.?examples.*.[].question",
    "?sets.?examples.*.[].choices.[]:str",
    "?sets.?examples.*.[].answer:int",
    "?config.?verdict.*",
    "?versions.*",
    "?unlearned.[]:str",
    # the unlearning frontier: every sweep run's forget and retain accuracy, and the rule's corner
    *(f"?unlearning.*.?runs.[].{k}:num" for k in ("forget", "retain")),
    *(f"?unlearning.*.?corner.{k}:num" for k in ("forget_at_most", "retain_at_least")),
    "?reference.ok",
    "?reference.reasons.[]",
    *(f"?reference.?{k}.[]:str" for k in ("blind", "confounded")),
    "?reference.?against:str",
    # what the report reads of each lens's section, as the lens declares it (`Lens.schema`)
    *(f"?{name}.{key}" for name, lens in REGISTRY.items() for key in lens.schema),
    # the cures (`forensics cure`): what reports/cure.py draws
    *(f"?cure.cures.*.{k}:num" for k in ("alpha", "steps", "cap", "seconds", "forget", "retain")),
    "?cure.cures.*.blocks.[]:int",
    "?cure.cures.*.?rtt_acc_v:num?",
    "?cure.cures.*.?verdict:str?",
    "?cure.words:str",
    "?cure.rule:str",
    *(f"?cure.ranking.[].{k}:num" for k in ("block", "rise")),
)
# read with any section of a lens that has per-fact outcomes (`Lens.outcomes`): each forget fact's split
OUTCOME_KEYS = ("facts.splits.[]:str",)
PER_KIND = "comparison.methods.*.per_kind.*"
KINDS_KEYS = (
    "comparison.kinds.[]:str",
    *(
        f"{PER_KIND}.{k}"
        for k in ("lenses", "forget", "retain", "rtt_acc_v", "rtt_control", "recovery", "verdict")
    ),
    f"{PER_KIND}.lenses.*.diff:num",
    f"{PER_KIND}.lenses.*.ci95:pair",
    f"{PER_KIND}.?recovery.?value:num",
    f"{PER_KIND}.?recovery.?ci95:pair",
    f"{PER_KIND}.?recovery.?max.?value:num",
    f"{PER_KIND}.?recovery.?max.?ci95:pair",
    f"{PER_KIND}.?recovery.?paper:str",
    f"{PER_KIND}.?rtt_seed_spread",
    f"{PER_KIND}.?where:str?",
    "comparison.methods.*.?probe_layers.[]:layer",
    "comparison.methods.*.?difference.*.diff:num",
    "comparison.methods.*.?difference.*.ci95:pair",
    "comparison.?original.*.*.diff:num",
    "kinds.*.results:str",
)


def _show(value) -> str:
    """A value as the JSON it was, cut short: on one line, whatever it holds."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _wrong(node, kind: str, at: str) -> str | None:
    """What is wrong with `node` (found at `at`) for `kind` (a `TYPES` name or `same(...)`), or None."""
    if kind.startswith("same("):
        keys = [k for k in kind.removeprefix("same(").removesuffix(")").split(",") if k in node]
        lengths = [len(node[k]) for k in keys if isinstance(node[k], list)]
        if len(set(lengths)) > 1:
            got = ", ".join(f"{k} {n}" for k, n in zip(keys, lengths, strict=True))
            return f"'{at}': {', '.join(keys)} must be lists of one length (got {got})"
        return None
    ok, words = TYPES[kind]
    return None if ok(node) else f"'{at}' must be {words} (got {_show(node)})"


def _missing(node, parts: list[str], at: str, kind: str = "") -> str | None:
    """What `node` (found at `at`) lacks of the key path `parts`, or holds of another kind than
    `kind` at its end, in words, or None."""
    if not parts:
        return _wrong(node, kind, at) if kind else None
    head, rest = parts[0], parts[1:]
    if head in ("*", "[]"):
        kind_ = dict if head == "*" else list
        if not isinstance(node, kind_):
            return f"'{at}' must be {'an object' if kind_ is dict else 'a list'} (got {_show(node)})"
        items = node.items() if kind_ is dict else enumerate(node)
        inner = (_missing(v, rest, f"{at}.{k}" if kind_ is dict else f"{at}[{k}]", kind) for k, v in items)
        return next((m for m in inner if m), None)
    key = head.removeprefix("?")
    if not isinstance(node, dict):
        return f"'{at}' must be an object (got {_show(node)})"
    if head.startswith("?") and not node.get(key):
        return None
    here = f"{at}.{key}" if at else key
    if key not in node:
        return f"missing '{here}', which the report reads"
    return _missing(node[key], rest, here, kind)


def check_results(results: dict, where: str) -> None:
    """Refuse results (read from `where`) that lack a key the report for them reads, or hold a value
    there the report cannot use: one line naming the file and the key."""
    paths = KINDS_KEYS if "comparison" in results else STUDY_KEYS
    if "comparison" not in results and any(n in results for n, lens in REGISTRY.items() if lens.outcomes):
        paths = (*paths, *OUTCOME_KEYS)
    for spec in paths:
        path, _, kind = spec.partition(":")
        problem = _missing(results, path.split("."), "", kind)
        if problem:
            raise InputError(f"{where}: {problem}")


def read_results(path: str | Path) -> dict:
    """The results.json at `path` (`forensics report`, `forensics.load_results`): refused in one line
    naming the file when it is not a study's, its schema_version is missing, not an integer or newer
    than this version writes, or it lacks a key its readers read."""
    results = read_json(Path(path))
    if "schema_version" not in results or not ("summary" in results or "comparison" in results):
        raise InputError(f"{path}: not a forensics results.json (no schema_version or summary)")
    version = results["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"{path}: schema_version must be an integer (got {_show(version)})")
    if not 1 <= version <= SCHEMA_VERSION:
        fix = "upgrade unlearning-forensics" if version > SCHEMA_VERSION else "no forensics wrote it"
        raise InputError(
            f"{path}: schema_version {_show(version)} is not one this version reads "
            f"(1..{SCHEMA_VERSION}); {fix}"
        )
    check_results(results, str(path))
    return results
