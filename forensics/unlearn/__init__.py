"""Unlearning methods (docs/design.md §1), one module each defining its registry entry `METHOD`
(forensics.unlearn.method.Method: its sweep, its points, its steps and streams, its retain weight, its
loss), and the registry the runner reads. All of them run through the one training loop; adding a
method is one module and one line here.
"""

from forensics.unlearn import ga, gd, npo, ria, rmu
from forensics.unlearn.method import Method

METHODS: dict[str, Method] = {m.METHOD.name: m.METHOD for m in (ga, gd, ria, rmu, npo)}
