"""Quantization and direction ablation on the micro world."""

import pytest
import torch

from forensics.attacks.ablate import ablated_score, final_residuals
from forensics.attacks.quantize import quantize_, rtn
from forensics.cli import main
from forensics.errors import InputError
from forensics.facts.formats import choice_context
from forensics.models.checkpoint import boot_bridge, load_checkpoint
from forensics.models.scoring import score
from forensics.worlds.world import load_world


def test_rtn_by_hand():
    w = torch.tensor([[1.0, -0.6, 0.26], [0.0, 0.0, 0.0]])
    # int4: qmax 7, scale 1/7 for row 0: -0.6*7 = -4.2 -> -4, 0.26*7 = 1.82 -> 2
    assert torch.allclose(rtn(w, 4), torch.tensor([[1.0, -4 / 7, 2 / 7], [0.0, 0.0, 0.0]]))
    assert torch.allclose(rtn(w, 8)[0], torch.round(w[0] * 127) / 127)
    with pytest.raises(InputError, match="bits"):
        rtn(w, 1)


def test_int8_barely_moves_the_original(micro_world):
    _, sets = load_world(micro_world)
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    facts = sets.forget_facts() + list(sets.near_retain) + list(sets.retain)
    before = score(model, tok, facts).accuracy
    assert quantize_(model, 8) == 2 * 7 + 1  # q k v o gate up down per layer, plus lm_head
    assert abs(score(model, tok, facts).accuracy - before) <= 0.05


def test_residuals_match_hf_and_zero_direction_changes_nothing(micro_world):
    _, sets = load_world(micro_world)
    path = micro_world / "checkpoints/never_learned"
    model, tok = load_checkpoint(path)
    bridge = boot_bridge(path, model=model, tokenizer=tok)
    facts = sets.forget_facts()
    resid = final_residuals(bridge, facts, "choice")
    ids = tok(choice_context(facts[7]), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(resid[0, 7], hidden[1][0, -1], atol=1e-5, rtol=0)
    plain = score(bridge, tok, facts, "choice")
    for layer in (0, 1):
        zero = ablated_score(bridge, tok, facts, "choice", torch.zeros(bridge.cfg.d_model), layer)
        assert zero.predicted.tolist() == plain.predicted.tolist()
    # a real direction does change the forward pass
    moved = ablated_score(bridge, tok, facts, "choice", resid[0].mean(0), 0)
    assert moved.predicted.tolist() != plain.predicted.tolist() or moved.accuracy != plain.accuracy


def test_attack_command(micro_world, tmp_path, capsys):
    import json
    import shutil

    world = tmp_path / "w"
    shutil.copytree(micro_world, world)
    shutil.copytree(micro_world / "checkpoints/never_learned", world / "checkpoints/lookalike")
    assert main(["attack", "--world", str(world), "--bits", "8"]) == 0
    result = json.loads((world / "attacks.json").read_text())
    assert set(result["quantize"]["models"]) == {"original", "never_learned", "lookalike"}
    assert set(result["ablate"]) == {"lookalike"}
    assert len(result["ablate"]["lookalike"]["mean_after"]) == 2
    assert "lookalike" in capsys.readouterr().out
