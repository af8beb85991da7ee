"""Unlearning methods (DESIGN §1), one module each, and the registry the runner reads.

Each module defines `GRID` (its sweep), `STEPS`, `STREAMS` it trains on, and `loss(params, state)`;
RMU also restricts `trainable` parameters. All of them run through the one training loop.
"""

from forensics.unlearn import ga, gd, npo, ria, rmu

METHODS = {"ga": ga, "gd": gd, "ria": ria, "rmu": rmu, "npo": npo}
