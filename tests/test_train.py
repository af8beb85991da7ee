"""The training loop: it learns, it is seeded, it updates only what it is given, it stops when told."""

import pytest
import torch

from forensics.errors import InputError
from forensics.facts.formats import LOSS_FORMATS, examples
from forensics.models.checkpoint import load_checkpoint
from forensics.models.scoring import score
from forensics.models.train import TrainConfig, train
from forensics.worlds.spec import WorldConfig
from forensics.worlds.world import build_model, load_world


def fresh(micro_world):
    """An untrained model of the micro world's shape, its tokenizer and its sets."""
    original, tok = load_checkpoint(micro_world / "checkpoints/original")
    world, sets = load_world(micro_world)
    return (
        build_model(WorldConfig(**world["config"]), tok, original.config.max_position_embeddings),
        tok,
        sets,
    )


def test_loss_formats(micro_world):
    _, sets = load_world(micro_world)
    f = sets.forget_facts()[0]
    texts = {fmt: examples([f], fmt) for fmt in LOSS_FORMATS}
    assert texts["qla"][0].prompt.endswith("\nAnswer:") and texts["qla"][0].target.endswith(f.answer_text)
    assert texts["letter"][0].target == " " + "ABCD"[f.answer]
    assert texts["qa"][0].target == " " + f.answer_text
    assert [e.target for e in texts["corpus"]] == list(f.statements)
    with pytest.raises(InputError, match="unknown loss format"):
        examples([f], "poetry")


def test_training_learns_and_is_seeded(micro_world):
    runs = []
    for _ in range(2):
        model, tok, sets = fresh(micro_world)
        facts = list(sets.retain)
        before = score(model, tok, facts).accuracy
        history = train(
            model,
            tok,
            {"qa": examples(facts, "qa")},
            TrainConfig(lr=1e-2, epochs=25, batch_size=8, warmup=2, seed=3),
            progress=False,
        )
        runs.append((history, model.state_dict()))
    assert history[-1]["loss"] < 0.2 * history[0]["loss"]
    assert score(model, tok, facts).accuracy >= 0.9 > before
    (h1, s1), (h2, s2) = runs
    assert [r["loss"] for r in h1] == [r["loss"] for r in h2]
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_params_subset_lion_steps_and_early_stop(micro_world):
    model, tok, sets = fresh(micro_world)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    only = list(model.model.layers[1].parameters())
    seen = []

    def on_epoch(epoch, m):
        seen.append(epoch)
        return {"stop": epoch == 2}

    history = train(
        model,
        tok,
        {"a": examples(sets.forget_facts(), "qa"), "b": examples(sets.retain, "corpus")},
        TrainConfig(lr=1e-3, epochs=9, batch_size=4, optimizer="lion"),
        params=only,
        on_epoch=on_epoch,
        progress=False,
    )
    assert seen == [1, 2] and len(history) == 2
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("model.layers.1.") for k in changed)
    steps = train(
        model, tok, {"a": examples(sets.retain, "qa")}, TrainConfig(steps=3, batch_size=4), progress=False
    )
    assert steps[-1]["step"] == 3


def test_bad_settings(micro_world):
    model, tok, sets = fresh(micro_world)
    data = {"a": examples(sets.retain, "qa")}
    with pytest.raises(InputError, match="unknown optimizer"):
        train(model, tok, data, TrainConfig(optimizer="sgdx"), progress=False)
    with pytest.raises(InputError, match="empty stream"):
        train(model, tok, {"a": []}, TrainConfig(), progress=False)
