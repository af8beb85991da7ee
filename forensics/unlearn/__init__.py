"""Unlearning methods (DESIGN §1), one module each, and the registry the runner reads.

Each module defines `GRID` (its sweep's first round), `DEMO` (the demo's one point), `REAL` (its
first point on a pretrained ~100M model), `STEPS`, `STREAMS` it trains on, `RETAIN_KEY`
(its retain weight, which the adaptive sweep raises; None for none) and `loss(params, state)`;
RMU also restricts `trainable` parameters. All of them run through the one training loop.
"""

from forensics.unlearn import ga, gd, npo, ria, rmu

METHODS = {"ga": ga, "gd": gd, "ria": ria, "rmu": rmu, "npo": npo}
