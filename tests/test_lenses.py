"""The lens registry and the lenses added through it: in-context relearning, other formats, tuned
lens, edit geometry, UDS — each against a case worked by hand, then all together in a micro study."""

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import forensics.lenses
from forensics.errors import InputError
from forensics.facts.core import Fact
from forensics.lenses import ACTION, INFORMATION, REGISTRY
from forensics.lenses.geometry import geometry, low_rank
from forensics.lenses.incontext import InContextSettings, demonstrations, fitting_shots, primed
from forensics.measure.weights import diff
from forensics.models.checkpoint import read_json
from forensics.study.config import DEFAULT_LENSES
from forensics.study.from_world import world_study
from forensics.study.run import run_study
from probes.tuned import Translators, fit, least_squares
from probes.uds import uds
from tests import chromium
from tests.chromium import needs_chromium


def fact(q: str, answer: int, split: str = "s") -> Fact:
    return Fact(q, ("red", "green", "blue"), answer, split)


def test_every_lens_is_one_registry_entry():
    folder = Path(forensics.lenses.__file__).parent
    modules = {f.stem for f in folder.glob("*.py")} - {"__init__", "base"}
    assert modules == set(REGISTRY)  # every lens module is registered, every entry is a module
    for name, lens in REGISTRY.items():
        assert lens.name == name and lens.kind in (INFORMATION, ACTION, "measure")
        assert (lens.outcomes is not None) == (lens.kind == INFORMATION), name
    assert {"incontext", "formats", "tuned", "geometry", "uds"} <= set(REGISTRY)
    assert "uds" not in DEFAULT_LENSES and "relearn_lora" not in DEFAULT_LENSES


def test_in_context_prompt_by_hand():
    t = [fact("Q1?", 0), fact("Q2?", 1), fact("Q3?", 2)]
    order = np.random.default_rng(7).permutation(3)[:2]
    expected = "".join(f"{t[i].question}\nAnswer: {t[i].answer_text}\n\n" for i in order)
    assert demonstrations(t, "choice", 2, 7) == expected
    letters = demonstrations(t, "letter", 1, 0)
    first = t[np.random.default_rng(0).permutation(3)[0]]
    assert letters.startswith(first.question + "\nA. red\nB. green\nC. blue\nAnswer: ")
    assert letters.endswith(f" {'ABC'[first.answer]}. {first.answer_text}\n\n")  # the qla format
    (v,) = primed([fact("V?", 1)], expected)
    assert v.question == expected + "V?" and v.answer == 1 and v.choices == t[0].choices
    with pytest.raises(InputError, match="shots"):
        InContextSettings(shots=0)


def test_in_context_shots_fit_the_context(micro_world):
    from forensics.models.checkpoint import load_checkpoint
    from forensics.worlds.world import load_world

    _, sets = load_world(micro_world)
    _, tok = load_checkpoint(micro_world / "checkpoints/original")
    settings = InContextSettings(shots=8)
    roomy = fitting_shots(tok, 10**6, sets, "choice", settings)
    tight = fitting_shots(tok, 60, sets, "choice", settings)
    assert roomy == 8 and 0 < tight < 8
    for _, t, v_facts in sets.rotations():  # every primed prompt of the tight setting fits
        for seed in settings.seeds:
            for f in primed(v_facts, demonstrations(t, "choice", tight, seed)):
                assert len(tok(f.question + " " + max(f.choices, key=len))["input_ids"]) + 8 <= 60


def test_tuned_lens_recovers_a_known_affine_map():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 6, generator=g)
    A, b = torch.randn(6, 6, generator=g), torch.randn(6, generator=g)
    A_hat, b_hat = least_squares(X, X @ A.T + b, ridge=1e-9)
    assert torch.allclose(A_hat, A, atol=1e-4) and torch.allclose(b_hat, b, atol=1e-4)
    # a layer that is the final residual already gets the identity; a constant layer too (no data)
    resid = torch.stack([X, torch.ones_like(X)])
    t = fit(resid, X, readout=None, ridge=1e-3)
    assert torch.allclose(t.A[0], torch.eye(6), atol=1e-3) and torch.allclose(t.A[1], torch.eye(6))
    shifted = Translators(
        torch.stack([torch.eye(6), 2 * torch.eye(6)]), torch.stack([torch.zeros(6), torch.ones(6)])
    )
    out = shifted(torch.ones(2, 3, 4, 6))  # [layers, batch, positions, d]
    assert torch.equal(out[0], torch.ones(3, 4, 6)) and torch.equal(out[1], 3 * torch.ones(3, 4, 6))


def _edited(original: Path, root: Path, name: str, tensor: str, update: torch.Tensor) -> Path:
    out = root / name
    shutil.copytree(original, out)
    weights = load_file(out / "model.safetensors")
    weights[tensor] = weights[tensor] + update.to(weights[tensor].dtype)
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def test_stable_rank_of_known_updates(micro_world, tmp_path):
    original = micro_world / "checkpoints/original"
    name = "model.layers.1.mlp.down_proj.weight"
    shape = load_file(original / "model.safetensors")[name].shape
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(shape[0], 1, generator=g), torch.randn(1, shape[1], generator=g)
    one = _edited(original, tmp_path, "rank1", name, 0.1 * u @ v)
    k = 3  # orthonormal columns, equal singular values: stable rank exactly k
    Q1, _ = torch.linalg.qr(torch.randn(shape[0], k, generator=g))
    Q2, _ = torch.linalg.qr(torch.randn(shape[1], k, generator=g))
    three = _edited(original, tmp_path, "rank3", name, 0.05 * Q1 @ Q2.T)
    g1, g3 = geometry(diff(original, one)), geometry(diff(original, three))
    assert g1["layers"] == ["1"] and g1["matrices_changed"] == 1
    assert g1["stable_rank"][0] == pytest.approx(1.0, rel=1e-3)
    assert g3["stable_rank"][0] == pytest.approx(3.0, rel=1e-3)
    assert g3["spectral"][0] == pytest.approx(0.05, rel=1e-3)
    assert low_rank({"never_learned": g3, "m": g1}) == {"m": True}
    assert low_rank({"never_learned": g1, "m": g3}) == {"m": False}


def test_uds_by_hand():
    d1 = np.array([[1.0, 2.0, 0.01], [0.0, 0.02, 0.0], [1.0, 1.0, 1.0]])
    d2 = np.array([[0.5, 2.0, 5.0], [1.0, 1.0, 1.0], [-1.0, 3.0, 0.0]])
    # fact 0: FT = {0, 1}: (1·0.5 + 2·1) / 3; fact 1: no layer above τ; fact 2: (0 + 1 + 0) / 3
    got = uds(d1, d2)
    assert got[0] == pytest.approx(2.5 / 3) and np.isnan(got[1]) and got[2] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def lens_study(micro_world, tmp_path_factory):
    """The micro world's control named as a method ('exact', which must read like the control) and
    the original named as one ('same', which must read like the original), through the new lenses."""
    world = read_json(micro_world / "world.json")
    ck = micro_world / "checkpoints"
    out = tmp_path_factory.mktemp("lenses")
    lenses = ("accuracy", "relearn", "weights", "incontext", "formats", "tuned", "geometry", "uds")
    cfg = world_study(
        "lenses", micro_world, world, {"exact": ck / "never_learned", "same": ck / "original"}, out, lenses
    )
    return run_study(cfg, progress=False), out


def test_new_lenses_on_the_micro_world(lens_study):
    results, _ = lens_study
    lenses = {name: row["lenses"] for name, row in results["summary"].items()}
    for label in ("in-context", "format cloze", "tuned lens @1"):
        assert lenses["exact"][label]["diff"] == 0.0 and lenses["exact"][label]["ci95"] == [0.0, 0.0]
    # the original knows its facts: its cloze and last-layer tuned lens read them beyond the control
    assert lenses["same"]["format cloze"]["ci95"][0] > 0 and lenses["same"]["tuned lens @1"]["ci95"][0] > 0
    tuned = results["tuned"]["models"]["original"]["acc"][-1]
    assert tuned == pytest.approx(results["accuracy"]["original"]["forget"])  # the model's own readout
    incontext = results["incontext"]
    assert 1 <= incontext["shots"] <= 8 and len(incontext["models"]["original"]["correct"]) == 3
    uds_ = results["uds"]["models"]
    assert uds_["exact"]["uds"] == 1.0 and uds_["same"]["uds"] == 0.0  # the control itself; no change
    geo = results["geometry"]
    assert (
        geo["models"]["exact"] == geo["models"]["never_learned"]
        and geo["models"]["same"]["matrices_changed"] == 0
    )
    assert results["summary"]["exact"]["action_map"]["stable_rank"] == geo["models"]["exact"]["stable_rank"]


@needs_chromium
def test_report_draws_the_new_panels(lens_study):
    from reports.html import write_report

    results, out = lens_study
    dom, console, figures = chromium.render(write_report(results, out / "report/index.html"))
    assert not console, console
    chromium.assert_drawn(dom, figures)
    assert "stable rank of ΔW" in dom and "tuned lens" in dom and "in-context" in dom


def test_a_lens_settings_table_is_typed(tmp_path, micro_world):
    from forensics.study.config_file import load_config
    from tests.conftest import accuracy_study

    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, tmp_path / name)
    shutil.copy(micro_world / "facts.jsonl", tmp_path / "facts.jsonl")
    config = accuracy_study(tmp_path)
    text = config.read_text()
    config.write_text("seeds = [4]\n" + text + "\n[lenses.incontext]\nshots = 2\n")
    cfg = load_config(config)
    assert cfg.lens_settings("incontext") == replace(InContextSettings(), shots=2, seeds=(4,))
    config.write_text(text + '\n[lenses.incontext]\nshots = "two"\n')
    with pytest.raises(InputError, match=r"\[lenses.incontext\].*shots"):
        load_config(config)


def test_in_context_shots_are_found_by_bisection_and_capped_at_t(micro_world, monkeypatch):
    """Issue #28: `shots = 10000` counted down one value at a time (minutes before scoring). The count
    is capped at the largest T (there are no more demonstrations to show) and found by bisection: the
    same answer as trying every count, in a handful of checks."""
    import forensics.lenses.incontext as incontext
    from forensics.models.checkpoint import load_checkpoint
    from forensics.worlds.world import load_world

    _, sets = load_world(micro_world)
    _, tok = load_checkpoint(micro_world / "checkpoints/original")
    largest_t = max(len(t) for _, t, _ in sets.rotations())
    settings = InContextSettings(shots=10000, seeds=(0, 1))

    def fits(limit, shots):
        return all(
            incontext._fits(tok, limit, primed(v, demonstrations(t, "choice", shots, seed)))
            for _, t, v in sets.rotations()
            for seed in settings.seeds
        )

    calls = []
    real = incontext.demonstrations
    monkeypatch.setattr(incontext, "demonstrations", lambda *a: calls.append(a[2]) or real(*a))
    rotations = len(list(sets.rotations())) * len(settings.seeds)
    for limit in (10**6, 60, 75, 5):
        calls.clear()
        expected = max([n for n in range(1, largest_t + 1) if fits(limit, n)], default=0)
        assert fitting_shots(tok, limit, sets, "choice", settings) == expected
        assert max(calls) <= largest_t and len(calls) <= rotations * (largest_t.bit_length() + 1)
    assert fitting_shots(tok, 10**6, sets, "choice", settings) == largest_t < 10000


def test_the_formats_lens_lists_only_formats_the_facts_have(micro_world, tmp_path):
    """Issue #28: without corpus statements there is no cloze to ask: the lens neither runs nor lists
    it (it listed "cloze" beside the formats it ran)."""
    import json

    from forensics.study.config_file import load_config
    from tests.conftest import accuracy_study

    for name in ("original", "never_learned"):
        (tmp_path / name).symlink_to(micro_world / "checkpoints" / name)
    rows = [json.loads(x) for x in (micro_world / "facts.jsonl").read_text().splitlines()]
    (tmp_path / "facts.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if "statements" not in k}) + "\n" for r in rows)
    )
    config = accuracy_study(tmp_path)
    config.write_text(config.read_text().replace('run = ["accuracy"]', 'run = ["accuracy", "formats"]'))
    results = run_study(load_config(config), progress=False)
    assert results["formats"]["formats"] == ["letter"]
    assert all(set(m) == {"letter"} for m in results["formats"]["models"].values())


def test_a_lens_runs_after_the_lenses_it_needs(monkeypatch):
    """The study's order is the registry's, except that a lens runs after those it reads (`needs`):
    not an accident of where it sits in NAMES."""
    from dataclasses import replace

    from forensics import lenses

    assert lenses.run_order(["geometry", "weights", "accuracy"]) == ["accuracy", "weights", "geometry"]
    assert lenses.run_order(["quantize", "accuracy"]) == ["accuracy", "quantize"]
    monkeypatch.setitem(lenses.REGISTRY, "accuracy", replace(lenses.REGISTRY["accuracy"], needs=("weights",)))
    assert lenses.run_order(["weights", "accuracy", "relearn"]) == ["weights", "accuracy", "relearn"]
    monkeypatch.setitem(lenses.REGISTRY, "weights", replace(lenses.REGISTRY["weights"], needs=("accuracy",)))
    with pytest.raises(InputError, match="need each other"):
        lenses.run_order(["weights", "accuracy"])
