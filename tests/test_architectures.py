"""Every common HF family end to end: a tiny random-init model of each, trained for a few seconds on
the micro world's facts, through the cache, the logit lens, `unlearn`, `diff` and a study with every
lens. The layout each family gets comes from `forensics.models.arch` (the TransformerLens adapters)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from forensics.cli import main
from forensics.measure.probing import feature_prompts, lens_correct
from forensics.models.arch import arch_of, arch_of_checkpoint
from forensics.models.cache import default_hooks, extract
from forensics.models.checkpoint import (
    boot_bridge,
    load_checkpoint,
    load_tokenizer,
    read_json,
    save_checkpoint,
)
from forensics.models.pair import context_length
from forensics.models.scoring import score
from forensics.models.tokens import collate, encode, pad_id
from forensics.worlds.world import load_world, train_world_model
from tests.conftest import QUICK_LENSES, micro_config

FAMILIES = ["gpt2", "gpt_neox", "qwen2", "qwen3", "gemma", "gemma2", "mistral", "phi", "olmo", "llama"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, micro_world, tmp_path_factory):
    """(root, model_type): `root/original` a model of the family trained briefly on the micro
    world's facts (with the micro world's tokenizer), `root/facts.jsonl` those facts."""
    model_type = request.param
    root = tmp_path_factory.mktemp(model_type)
    world, sets = load_world(micro_world)
    source = micro_world / "checkpoints/original"
    tok = load_tokenizer(source)
    cfg = replace(micro_config(), model_type=model_type, epochs=15, eval_every=15)
    facts = [*sets.forget_facts(), *sets.near_retain, *sets.retain]
    model, _ = train_world_model(cfg, tok, facts, context_length(source), model_type, False)
    save_checkpoint(model, tok, root / "original", {"made_by": "test", "family": model_type})
    (root / "facts.jsonl").write_bytes((micro_world / "facts.jsonl").read_bytes())
    (root / "sets.json").write_text(json.dumps(world["sets"]))
    return root, model_type


def test_tokenizer_reloads_as_declared(family, micro_world):
    """The world's own BPE saved beside a Qwen2 (or any family's) config reloads as itself, not as the
    family's tokenizer class AutoTokenizer would pick from config.json."""
    root, _ = family
    mine, source = load_tokenizer(root / "original"), load_tokenizer(micro_world / "checkpoints/original")
    assert type(mine) is type(source)
    text = "When was Xorbel Tanvik born? 1887"
    assert mine(text)["input_ids"] == source(text)["input_ids"]


def test_layout_is_the_adapters(family):
    root, model_type = family
    arch = arch_of_checkpoint(root / "original")
    model, _ = load_checkpoint(root / "original")
    assert arch.n_layers == 2
    in_block = {f"{arch.blocks}.1.{n}" for n, _ in arch.block(model, 1).named_parameters()}
    assert in_block == set(arch.block_params(model, 1))  # the name grouping is the module tree
    kinds = {arch.kind_of(n) for n, _ in model.named_parameters()}
    assert (None, "embed") in kinds and (None, "unembed") in kinds  # (OLMo's final norm has no weights)
    assert {k for layer, k in kinds if layer == 1} >= {"attn_o", "mlp_out"}
    assert not any(k == "other" for _, k in kinds), sorted(kinds)
    params = {n for layer in range(2) for n in arch.block_params(model, layer)}
    assert params == {n for n, _ in model.named_parameters() if arch.layer_of(n) is not None}
    assert (
        len(arch.quantizable(model))
        == 2 * len([k for layer, k in kinds if layer == 0 and k.startswith(("attn_", "mlp_"))]) + 1
    )


def test_cache_equals_the_models_own_residuals(family, micro_world):
    """The cached final-position residual of every block equals the HF block's output, the
    embedding layer HF's first hidden state (GPT-2: token + position embedding)."""
    root, _ = family
    model, tok = load_checkpoint(root / "original")
    arch = arch_of(model.config)
    _, sets = load_world(micro_world)
    prompts = feature_prompts(sets.forget_facts()[:12], "choice")
    acts = extract(boot_bridge(root / "original", model, tok), prompts, batch_size=5)
    batch = collate([encode(tok, p, "") for p in prompts], pad_id(tok))
    last = batch["attention_mask"].sum(1) - 1
    rows = torch.arange(len(prompts))
    hooks = default_hooks(arch.n_layers)
    with torch.no_grad():
        out = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        torch.testing.assert_close(acts[hooks[0]], out.hidden_states[0][rows, last], atol=1e-5, rtol=1e-4)
        for layer in range(arch.n_layers):
            mine, _ = arch.block_output(model, layer, batch["input_ids"], batch["attention_mask"])
            torch.testing.assert_close(acts[hooks[layer + 1]], mine[rows, last], atol=1e-5, rtol=1e-4)
            # stopped at the block (RMU's pass): the same residual, and nothing after it is run
            early, rest = arch.block_output(model, layer, batch["input_ids"], batch["attention_mask"], False)
            assert rest is None and torch.equal(early, mine)


@pytest.mark.parametrize("scorer", ["choice", "letter"])
def test_last_layer_lens_equals_the_models_accuracy(family, micro_world, scorer):
    root, _ = family
    _, sets = load_world(micro_world)
    model, tok = load_checkpoint(root / "original")
    facts = [*sets.forget_facts(), *sets.retain]
    lens = lens_correct(boot_bridge(root / "original", model, tok), facts, scorer, None, "x")
    own = score(model, tok, facts, scorer)
    assert lens[-1].tolist() == own.correct.tolist()


def test_a_shared_prefix_runs_once_with_the_same_logliks(family, micro_world, monkeypatch):
    """In-context prompts: the demonstrations every row shares run once (their keys and values
    repeated per row) and give the log-likelihoods of running every row whole, in every family."""
    from forensics.lenses.incontext import InContextSettings, demonstrations, fitting_shots, primed
    from forensics.models import scoring

    root, _ = family
    world, sets = load_world(micro_world)
    model, tok = load_checkpoint(root / "original")
    shots = fitting_shots(tok, context_length(root / "original"), sets, world["scorer"], InContextSettings())
    v, t, v_facts = next(iter(sets.rotations()))
    facts = primed(list(v_facts), demonstrations(t, world["scorer"], shots, 0))
    assert len(tok(facts[0].question)["input_ids"]) > scoring.SHARED_PREFIX  # long enough to share
    cached = []  # the row batches run on a repeated prefix's keys and values
    hook = model.register_forward_pre_hook(
        lambda _, args, kw: cached.append(kw.get("cache", kw.get("past_key_values")) is not None),
        with_kwargs=True,
    )
    try:
        shared = scoring.choice_logliks(model, tok, facts, batch_size=4)
    finally:
        hook.remove()
    assert any(cached)  # the shared path ran in this family, not the whole-row one twice
    monkeypatch.setattr(scoring, "SHARED_PREFIX", 10**9)
    whole = scoring.choice_logliks(model, tok, facts, batch_size=4)
    np.testing.assert_allclose(shared, whole, atol=1e-4)


def test_every_command_and_lens(family, micro_world):
    root, model_type = family
    sets = read_json(root / "sets.json")
    splits = ",".join(sets["forget"])
    args = ["--original", str(root / "original"), "--facts", str(root / "facts.jsonl")]
    args += ["--forget", splits, "--retain", ",".join(sets["retain"]), "--quiet"]
    assert (
        main(
            [
                "unlearn",
                "--method",
                "gd",
                *args,
                "--out",
                str(root / "u"),
                "--steps",
                "10",
                "--lr",
                "1e-3",
                "--budget",
                "1",
            ]
        )
        == 0
    )
    assert read_json(root / "u/checkpoints/gd/config.json")["model_type"] == model_type
    assert (
        main(
            ["diff", str(root / "original"), str(root / "u/checkpoints/gd"), "--out", str(root / "diff.json")]
        )
        == 0
    )
    diff = read_json(root / "diff.json")
    kinds = {t["kind"] for t in diff["tensors"]}
    assert "other" not in kinds and {"embed", "unembed", "mlp_out"} <= kinds
    (root / "s.toml").write_text(
        f"""out = "study"
seeds = [0]
[models]
original = "original"
[models.unlearned]
gd = "u/checkpoints/gd"
[facts]
path = "facts.jsonl"
forget = {json.dumps(sets["forget"])}
retain = {json.dumps(sets["retain"])}
[lenses]
run = ["accuracy", "relearn", "quantize", "ablate", "probes", "weights", "activations", "localize"]
{QUICK_LENSES}"""
    )
    assert main(["study", str(root / "s.toml"), "--quiet"]) == 0
    results = read_json(root / "study/results.json")
    assert set(results) >= {"accuracy", "relearn", "quantize", "ablate", "probes", "weights", "activations"}
    assert set(results["localize"]) == {"gd"} and results["summary"]


def test_target_only_logits_give_the_same_loss_and_gradients(family, micro_world):
    """The training loss runs the unembedding only from the first target on: the same NLL and the
    same gradients as over every position, in every family."""
    from forensics.facts.formats import examples
    from forensics.models.tokens import logits_of, sequence_nll, target_nll

    root, _ = family
    _, sets = load_world(micro_world)
    model, tok = load_checkpoint(root / "original")
    items = [encode(tok, e.prompt, e.target) for e in examples(sets.forget_facts()[:6], "qa")]
    batch = collate(items, pad_id(tok))
    assert int((batch["labels"] != -100).any(0).nonzero()[0]) > 1  # the prompt is skipped here
    losses, grads = [], []
    for nll in (target_nll, lambda m, b: sequence_nll(logits_of(m, b), b["labels"])):
        model.zero_grad()
        value, count = nll(model, batch)
        (value.sum() / count.sum()).backward()
        losses.append(value.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)
