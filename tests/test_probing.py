"""Probes, control task and logit lens on the micro world; the lens and interval arithmetic by hand."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from forensics.cli import main
from forensics.measure.probing import ProbeSettings, labels, lens_correct, probe_models
from forensics.models.arch import arch_of
from forensics.models.checkpoint import boot_bridge, read_json
from forensics.models.scoring import score
from forensics.worlds.world import load_world
from probes.lens import Readout, choice_lens
from probes.selectivity import control_answers, wilson


def test_wilson_interval_by_hand():
    low, high = wilson(8, 10)  # p = 0.8, z = 1.96: centre 0.7167, half-width 0.2265
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 5)[0] == 0.0


def test_control_answers_stay_within_each_facts_choices():
    answers = np.array([0, 1, 2, 3, 3, 2])
    shuffled = control_answers(answers, np.array([4, 4, 4, 4, 2, 3]), seed=1)
    assert (shuffled < np.array([4, 4, 4, 4, 2, 3])).all()
    assert (
        control_answers(answers, np.full(6, 4), seed=1).tolist()
        == control_answers(answers, np.full(6, 4), seed=1).tolist()
    )


def test_choice_lens_by_hand():
    # identity readout over a 3-token vocabulary: logits = residual
    readout = Readout("rms", torch.ones(3), None, 0.0, torch.eye(3))
    resid = torch.tensor([[[[1.0, 1.0, 1.0], [3.0, 0.0, 0.0]]]])  # [layers 1, seqs 1, T 2, d 3]
    seqs, cols, tokens = torch.tensor([0, 0, 0]), torch.tensor([0, 1, 0]), torch.tensor([2, 0, 1])
    got = choice_lens(resid, seqs, cols, tokens, readout)[0]  # terms 0 and 2 read one position
    shared = choice_lens(resid, seqs, cols, tokens, readout, torch.tensor([True, False, True]))[0]
    assert shared[[0, 2]].tolist() == [1.0, 1.0] and shared[1] == got[1]  # logits alone where shared
    # rms-normalised [1,1,1] stays [1,1,1]: log-softmax of token 2 is -log 3; [3,0,0] normalises to
    # [√3,0,0]: log-softmax of token 0 is √3 - log(e^√3 + 2)
    assert got[0].item() == pytest.approx(-np.log(3), abs=1e-6)
    assert got[1].item() == pytest.approx(np.sqrt(3) - np.log(np.exp(np.sqrt(3)) + 2), abs=1e-6)
    assert got[2].item() == pytest.approx(-np.log(3), abs=1e-6)


def test_the_lens_reads_only_terms_that_tell_choices_apart():
    """Hand-made plan: fact 0's choices [5, 1, 3] and [5, 1, 4] share one row (prompt [9]) and differ
    only at the last token (terms 2 and 5), at a position both pass through (no normaliser needed);
    fact 1's [7] is a prefix of [7, 8]: the common term 7 adds the same to both, so only [7, 8]'s 8 is
    read (and [7] wins unless log p(8 | 7) > 0: never), normalised: [7] does not pass there."""
    from forensics.measure.probing import lens_terms
    from forensics.models.scoring import ChoicePlan

    rows = [([9, 5, 1, 3], 1), ([9, 7, 8], 1)]
    terms = [(0, 0, 0, 5), (0, 0, 1, 1), (0, 0, 2, 3), (1, 0, 0, 5), (1, 0, 1, 1), (1, 0, 2, 4)]
    terms += [(2, 1, 0, 7), (3, 1, 0, 7), (3, 1, 1, 8)]
    plan = ChoicePlan([[9], [9]], [], [(0, 0), (0, 1), (1, 0), (1, 1)], rows, terms, 2)
    assert lens_terms(plan) == ([2, 5, 8], {2, 5})


def test_the_lens_rows_give_the_prompts_residuals_and_fill_the_cache(micro_world, tmp_path):
    """One pass: facts with multi-token choices give their prompts' residuals from their lens rows
    (the same as a pass over the prompts alone), facts with one-token choices run their prompts;
    the whole is cached under the prompts' key, so a later extraction runs no forward pass."""
    from forensics.measure.probing import feature_prompts, features, residuals_and_lens
    from forensics.models.cache import extract

    _, sets = load_world(micro_world)
    bridge = boot_bridge(micro_world / "checkpoints/original")
    facts = [*sets.forget_facts(), *sets.retain]
    facts += [replace(f, choices=("B", "C", "D", "E")) for f in sets.retain[:5]]  # one-token choices
    X, lens, _ = residuals_and_lens(bridge, facts, "choice", tmp_path, "w")
    torch.testing.assert_close(X, features(bridge, facts, "choice", None, "w"), atol=1e-5, rtol=1e-4)
    # read back: the residuals from the cache, the lens from the rows alone (the other path), the same
    assert lens.tolist() == lens_correct(bridge, facts, "choice", tmp_path, "w").tolist()
    again = extract(bridge, feature_prompts(facts, "choice"), cache_dir=tmp_path, weights="w")
    assert again.forward_passes == 0 and torch.equal(again.stack(), X)


def test_statements_are_the_hf_hidden_states_at_each_choices_last_token(micro_world):
    """The choice-scoring probes' features: one row per choice (one-token choices too), its last
    position's residual at every layer, cross-checked with HF `output_hidden_states`, beside the lens
    products (which sum to the lens's logit); the lens read from those rows is the lens read from the
    shared rows."""
    from forensics.measure.probing import residuals_and_lens
    from forensics.models.scoring import choice_plan

    _, sets = load_world(micro_world)
    bridge = boot_bridge(micro_world / "checkpoints/original")
    facts = [*sets.forget_facts()[:12], *sets.retain[:6]]
    facts += [replace(f, choices=("B", "C", "D")) for f in sets.retain[:3]]  # one-token, three choices
    X, lens, S = residuals_and_lens(bridge, facts, "choice", None, "w", statements=True)
    X0, lens0, none = residuals_and_lens(bridge, facts, "choice", None, "w")
    assert none is None and lens.tolist() == lens0.tolist()
    torch.testing.assert_close(X, X0, atol=1e-5, rtol=1e-4)
    plan = choice_plan(bridge.tokenizer, facts, own_rows=True)
    assert len(plan.rows) == sum(len(f.choices) for f in facts)
    model = bridge.original_model
    for c, row, _, _ in plan.terms[:: max(1, len(plan.terms) // 20)]:
        fact, choice = plan.long[c]
        ids = torch.tensor([plan.rows[row][0]])
        with torch.no_grad():
            hidden = model(ids, output_hidden_states=True).hidden_states
        want = torch.stack([h[0, -1] for h in hidden[:-1]])  # HF's last is after the final norm
        d = want.shape[-1]
        torch.testing.assert_close(S[:-1, fact, choice, :d].float(), want.float(), atol=1e-4, rtol=1e-3)
    assert (S[:, -1, 3] == 0).all()  # a fact's missing fourth choice is a zero pad
    # the lens products of a one-token choice sum to its logit read at the prompt's last position
    readout = arch_of(model.config).readout(model)
    tokens = [ids[-1] for ids, _ in plan.rows[-3:]]
    for j, tok in enumerate(tokens):
        logit = readout(X[:, -1], torch.tensor([tok] * X.shape[0]))
        torch.testing.assert_close(S[:, -1, j, d:].float().sum(-1), logit, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("scorer", ["choice", "letter"])
def test_last_layer_lens_equals_the_models_accuracy(micro_world, scorer):
    _, sets = load_world(micro_world)
    bridge = boot_bridge(micro_world / "checkpoints/original")
    facts = [*sets.forget_facts(), *sets.retain]
    # one-token choices (" B", " C") beside multi-token years: both of the choice plan's paths
    facts += [replace(f, choices=("B", f.choices[1], "C", f.choices[3])) for f in sets.retain[:8]]
    lens = lens_correct(bridge, facts, scorer, None, "x")
    own = score(bridge.original_model, bridge.tokenizer, facts, scorer)
    assert lens[-1].tolist() == own.correct.tolist()
    assert arch_of(bridge.original_model.config).norm == "rms"


def test_labels_under_each_scorer(micro_world):
    _, sets = load_world(micro_world)
    facts = sets.forget_facts()
    y, allowed, classes = labels(facts, "choice")
    assert all(classes[y[i]] == f.answer_text for i, f in enumerate(facts))
    assert (allowed.sum(1) == 4).all() and allowed[np.arange(len(y)), y].all()
    y, allowed, classes = labels(facts, "letter")
    assert classes == ["A", "B", "C", "D"] and y.tolist() == [f.answer for f in facts]


def test_probe_study_on_the_micro_world(micro_world, tmp_path):
    _, sets = load_world(micro_world)
    models = {n: micro_world / "checkpoints" / n for n in ("original", "never_learned")}
    out = probe_models(models, sets, "choice", tmp_path, ProbeSettings())
    assert out["layers"] == ["embed", "0", "1"]
    orig, never = out["models"]["original"], out["models"]["never_learned"]
    # The probe is not compared across models here: the micro world's forget answers are mostly
    # years no other fact has, so a probe (which names only classes it trained on) stays near chance
    # on both. The lens reads every answer: the original's, not the never-learned model's.
    assert orig["lens"]["forget"][-1]["acc"] == 1.0  # the original answers every forget fact
    assert never["lens"]["forget"][-1]["acc"] <= 0.5
    for entry in orig["probe"]:
        assert entry["ci"][0] <= entry["acc"] <= entry["ci"][1] and entry["n"] == 12
    assert len(orig["ridge"]) == 3 and all(0 <= r["acc"] <= 1 for r in orig["ridge"])
    assert orig["transfer"] == orig["probe"]  # the original's probe on its own activations
    again = probe_models(models, sets, "choice", tmp_path, ProbeSettings())  # cached features
    assert again == out


def test_probes_per_model_as_ray_tasks(micro_world, tmp_path):
    """Each model's probes a Ray task (the reference's first, then the others with its probes for
    transfer): the same numbers as in this process on a task's one thread."""
    ray = pytest.importorskip("ray")
    from forensics.models.executor import Executor

    _, sets = load_world(micro_world)
    models = {
        "original": micro_world / "checkpoints/original",
        "m": micro_world / "checkpoints/never_learned",
    }
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = probe_models(models, sets, "choice", tmp_path / "a", ProbeSettings())
    finally:
        torch.set_num_threads(before)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = probe_models(
            models, sets, "choice", tmp_path / "b", ProbeSettings(), executor=Executor("ray")
        )
    finally:
        ray.shutdown()
    assert on_ray == here


def test_probe_cli_writes_probes_json(micro_world, capsys):
    assert main(["probe", "--world", str(micro_world), "--models", "never_learned", "--Cs", "0.1,1"]) == 0
    result = read_json(micro_world / "probes.json")
    assert list(result["models"]) == ["original", "never_learned"]
    assert "logit lens" in capsys.readouterr().out


def test_probe_refuses_too_many_folds(micro_world, capsys):
    assert main(["probe", "--world", str(micro_world), "--Cs", "0.1,1", "--folds", "40"]) == 2
    assert "too few training facts" in capsys.readouterr().err


def test_probe_refuses_cuda_where_there_is_none(micro_world, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["probe", "--world", str(micro_world), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
