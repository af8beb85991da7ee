"""Unlearning methods (docs/design.md §1), one module each with its own settings (`GRID`, `DEMO`,
`REAL`, `STEPS`, `STREAMS`, `RETAIN_KEY`, `loss`; `trainable`, `resolve`, `FIXABLE`, `prepare` where it
has them), read into its registry entry (forensics.unlearn.method.Method) for the runner. All of them
run through the one training loop; adding a method is one module and one name here.
"""

from forensics.unlearn import ga, gd, npo, ria, rmu, undo
from forensics.unlearn.method import Method, method_of

METHODS: dict[str, Method] = {m.name: m for m in map(method_of, (ga, gd, ria, rmu, npo))}
# cures: started from an unlearned checkpoint, their teacher (`forensics cure`); the runner runs both
CURES: dict[str, Method] = {m.name: m for m in map(method_of, (undo,))}
RUNNABLE: dict[str, Method] = {**METHODS, **CURES}
