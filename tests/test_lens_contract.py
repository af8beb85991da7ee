"""One contract over every registered lens (as scikit-learn's `parametrize_with_checks`): what it
declares is consistent, its readers give nothing on results where it did not run, and on a real
study's section (the micro world, every default lens) they give outcomes, rows, panels and cells
aligned with what they read."""

import json
from dataclasses import asdict, fields, is_dataclass

import numpy as np
import pytest

from forensics.lenses import NAMES, REGISTRY
from forensics.lenses.base import ACTION, INFORMATION, MEASURE, Series
from forensics.models.checkpoint import read_json
from forensics.outcomes import Reading
from forensics.study.grids import GRIDS
from tests.test_report_input import real_results  # noqa: F401 (fixture: a study of every default lens)

READERS = ("outcomes", "control_outcomes", "action", "draw", "cells", "adequacy")


@pytest.mark.parametrize("name", NAMES)
def test_a_lens_declares_what_it_is_consistently(name):
    lens = REGISTRY[name]
    assert lens.name == name and lens.kind in (INFORMATION, ACTION, MEASURE)
    assert (lens.outcomes is not None) == (lens.kind == INFORMATION)
    assert (lens.action is not None) == bool(lens.rows)  # an action lens names the rows it gives
    assert (lens.draw is not None) == bool(lens.panels)  # a lens that draws declares its panels
    assert all(need in REGISTRY and need != name for need in lens.needs)
    assert not (lens.presets or lens.shares) or lens.settings is not None
    for grid in GRIDS:  # every grid's settings are its settings, and serialisable (they key its stage)
        if lens.settings is not None:
            settings = lens.preset(grid)
            assert isinstance(settings, lens.settings) and is_dataclass(settings)
            json.dumps(asdict(settings))
    assert set(lens.presets) <= set(GRIDS)
    names = {f.name for f in fields(lens.settings)} if lens.settings else set()
    assert set(lens.shares.values()) <= names  # what it shares with the study is a field of its settings


def test_what_lenses_declare_does_not_collide():
    """Panels are found by title, action rows and summary cells by name: no two lenses share one."""
    for attr in ("rows", "columns"):
        every = [key for lens in REGISTRY.values() for key in getattr(lens, attr)]
        assert len(every) == len(set(every)), attr
    titles = [p.title for lens in REGISTRY.values() for p in lens.panels]
    assert len(titles) == len(set(titles))


EMPTY = {"facts": {"splits": ["s0", "s1"], "chance": [0.25, 0.25]}, "models": {"original": "o", "m": "m"}}


@pytest.mark.parametrize("name", NAMES)
def test_a_lens_reads_nothing_where_it_did_not_run(name):
    lens = REGISTRY[name]
    for reader in READERS:
        fn = getattr(lens, reader)
        if fn is not None:
            assert not fn(EMPTY, "m"), reader  # {} or None: nothing, not an error


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].default])
def test_a_lens_reads_its_own_section_aligned(name, real_results):  # noqa: F811
    results = read_json(real_results)
    lens = REGISTRY[name]
    assert name in results, "every default lens ran in the fixture's study"
    n_facts = len(results["facts"]["splits"])
    # what it declares, it gives for some model of the study it ran in (control outcomes need control
    # facts, which this study, with a never-learned model, has none of)
    for reader in (r for r in READERS if r != "control_outcomes"):
        fn = getattr(lens, reader)
        assert fn is None or any(fn(results, m) for m in results["models"]), reader
    for model in results["models"]:
        for reading, (values, facts) in (lens.outcomes(results, model) if lens.outcomes else {}).items():
            assert isinstance(reading, Reading) and str(Reading.parse(str(reading))) == str(reading)
            assert values.ndim == 2 and values.shape[1] == len(facts) and set(np.unique(values)) <= {0, 1}
            assert all(0 <= i < n_facts for i in facts)
        rows = lens.action(results, model) if lens.action else None
        if rows:
            layers = rows.pop("layers")
            assert set(rows) <= set(lens.rows) and all(len(v) == len(layers) for v in rows.values())
        for title, series in (lens.draw(results, model) if lens.draw else {}).items():
            assert title in {p.title for p in lens.panels}
            assert all(isinstance(s, Series) and len(s.x) == len(s.y) for s in series)
        cells = lens.cells(results, model) if lens.cells else {}
        assert set(cells) <= set(lens.columns.values())  # every entry it gives is shown
