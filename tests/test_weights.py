"""The streaming weight diff against a full-load diff, planted edits, localization, and bad input."""

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from forensics.attacks.relearn import RelearnSettings
from forensics.cli import main
from forensics.errors import InputError
from forensics.measure import weights
from forensics.measure.localize import activations_section, localize_section, patch, revert
from forensics.measure.weights import changed_layers, diff, full_load_diff
from forensics.models.arch import arch_of, tiny_config
from forensics.models.checkpoint import boot_bridge, load_checkpoint, read_json, save_checkpoint
from forensics.models.scoring import score
from forensics.worlds.world import load_world

STATS = ("fro", "w_norm", "rel", "max_abs", "frac_changed", "stable_rank")


@pytest.fixture(scope="module")
def planted(micro_world, tmp_path_factory):
    """A copy of the original whose layer-1 MLP alone is perturbed (enough to break the forget facts)."""
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("model.layers.1.mlp."):
                p.add_(torch.randn(p.shape, generator=gen) * p.std() * 3)
    out = tmp_path_factory.mktemp("planted") / "planted"
    return save_checkpoint(model, tok, out, {"planted": "layer 1 mlp"})


def assert_same(a: dict, b: dict) -> None:
    assert [t["name"] for t in a["tensors"]] == [t["name"] for t in b["tensors"]]
    for x, y in zip(a["tensors"], b["tensors"], strict=True):
        for k in STATS:
            if k in y:
                assert x[k] == pytest.approx(y[k], rel=1e-6, abs=1e-12), (x["name"], k)
        if "top_sv" in y:  # singular values: relative to the largest
            scale = max(y["top_sv"][0], 1e-30)
            assert all(abs(p - q) <= 1e-6 * scale for p, q in zip(x["top_sv"], y["top_sv"], strict=True))
    assert a["layers"].keys() == b["layers"].keys()


def test_streaming_equals_full_load_in_row_blocks_and_shards(micro_world, planted, tmp_path, monkeypatch):
    original = micro_world / "checkpoints/original"
    reference = full_load_diff(original, planted)
    assert_same(diff(original, planted), reference)
    monkeypatch.setattr(weights, "BLOCK_BYTES", 2048)  # every matrix read in several row blocks
    assert_same(diff(original, planted), reference)
    # the same checkpoint written as shards with an index file
    model, tok = load_checkpoint(planted)
    sharded = tmp_path / "sharded"
    model.save_pretrained(str(sharded), safe_serialization=True, max_shard_size="100KB")
    tok.save_pretrained(str(sharded))
    assert (sharded / "model.safetensors.index.json").exists()
    assert_same(diff(original, sharded), reference)


def test_singular_values_and_stable_rank_by_hand():
    W = torch.zeros(6, 4, dtype=torch.float64)
    u, v = torch.tensor([1.0, 2, 0, 0, 0, 2]), torch.tensor([0.0, 3, 4, 0])  # ‖u‖ 3, ‖v‖ 5
    stats = weights.tensor_stats(W, W + torch.outer(u, v).double())
    assert stats["top_sv"][0] == pytest.approx(15.0) and stats["stable_rank"] == pytest.approx(1.0)
    assert stats["fro"] == pytest.approx(15.0) and stats["frac_changed"] == pytest.approx(6 / 24)
    assert stats["max_abs"] == pytest.approx(8.0) and stats["rel"] == math.inf


def _arch(model_type):
    return arch_of(
        tiny_config(model_type, vocab_size=64, d_model=16, layers=3, heads=2, n_positions=32, special={})
    )


def test_module_kinds_come_from_each_architectures_layout():
    llama, gpt2, neox, phi = _arch("llama"), _arch("gpt2"), _arch("gpt_neox"), _arch("phi")
    assert llama.kind_of("model.layers.2.self_attn.q_proj.weight") == (2, "attn_q")
    assert llama.kind_of("model.layers.0.mlp.down_proj.weight") == (0, "mlp_out")
    assert llama.kind_of("model.norm.weight") == (None, "norm")
    # under peft's prefix (a LoRA attack's parameter names)
    assert llama.kind_of("base_model.model.model.layers.1.mlp.up_proj.lora_A.default.weight") == (1, "mlp_in")
    assert gpt2.kind_of("transformer.h.2.attn.c_attn.weight") == (2, "attn_qkv")
    assert gpt2.kind_of("transformer.h.2.attn.c_proj.weight") == (2, "attn_o")
    assert gpt2.kind_of("transformer.h.2.mlp.c_proj.weight") == (2, "mlp_out")
    assert gpt2.kind_of("h.1.mlp.c_fc.weight") == (1, "mlp_in")  # the hub's GPT-2 stores no prefix
    assert gpt2.kind_of("transformer.wpe.weight") == (None, "embed")
    assert neox.kind_of("gpt_neox.layers.1.attention.query_key_value.weight") == (1, "attn_qkv")
    assert neox.kind_of("embed_out.weight") == (None, "unembed")  # stored name, renamed on load
    assert phi.kind_of("model.layers.0.self_attn.dense.weight") == (0, "attn_o")
    assert phi.kind_of("model.final_layernorm.bias") == (None, "norm")
    assert _arch("gemma2").kind_of("model.layers.1.post_feedforward_layernorm.weight") == (1, "norm")
    assert (_arch("gemma").norm, _arch("gemma2").logit_softcap, phi.norm) == ("rms_offset", 30.0, "layer")


@pytest.mark.parametrize(
    "config, message",
    [
        ({"model_type": "nonsense"}, r"model_type 'nonsense' is not known to transformers"),
        ({"model_type": "t5"}, r"model_type 't5' has no causal-LM class"),
        ({"model_type": "xlnet"}, r"XLNetLMHeadModel is not supported"),
        ({"hidden_size": 8}, r"no 'model_type'"),
    ],
)
def test_an_unknown_architecture_is_refused_in_one_line(config, message):
    with pytest.raises(InputError, match=message) as e:
        arch_of(config, "m/config.json")
    assert str(e.value).startswith("m/config.json: ") and "\n" not in str(e.value)


def test_planted_edit_is_localized_by_diff_revert_and_patch(micro_world, planted):
    result = diff(micro_world / "checkpoints/original", planted)
    assert changed_layers(result) == [1]
    assert set(result["layers"]["1"]) >= {"mlp_gate", "mlp_in", "mlp_out", "all"}
    assert result["layers"]["1"]["attn_q"]["fro"] == 0
    _, sets = load_world(micro_world)
    original, tok = load_checkpoint(micro_world / "checkpoints/original")
    broken, _ = load_checkpoint(planted)
    reverted = revert(original, broken, tok, sets, "choice")
    assert reverted[1]["forget"] == 1.0 and reverted[0]["forget"] < 1.0
    patched = patch(boot_bridge(micro_world / "checkpoints/original"), boot_bridge(planted), sets, "choice")
    assert patched[1]["forget"] == 1.0  # the last layer's residual is the original's: same answers
    assert patched[0]["forget"] < 1.0


def test_localization_on_named_blocks_only(micro_world, planted):
    """`layers` localizes the named blocks only: their revert, patch and layer RTT, recorded with the
    blocks, and the action map puts them at their blocks (None elsewhere)."""
    from forensics.study.summary import action_map

    _, sets = load_world(micro_world)
    settings = RelearnSettings(lrs=(1e-2,), epochs=1, scorer="choice", seeds=(0,), rotations=1, layers=(1,))
    loc = localize_section(micro_world / "checkpoints/original", {"planted": planted}, sets, settings)[
        "planted"
    ]
    assert loc["layers"] == [1] and len(loc["revert"]) == len(loc["patch"]) == len(loc["layer_rtt"]) == 1
    assert loc["revert"][0]["forget"] == 1.0  # the planted block: reverting it restores the original
    row = action_map({"localize": {"planted": loc}}, "planted")
    assert row["layers"] == ["0", "1"] and row["revert"][0] is None and row["revert"][1] > 0
    assert row["patch"] == [None, None]  # the last block's patch is the original's output: left out


def test_activations_and_localize_on_the_planted_edit(micro_world, planted, tmp_path):
    """The edit planted in layer 1 is found at layer 1 by revert and by layer-restricted RTT.

    Measured (natively / under ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1, the same both ways
    unless split): the planted model answers 0.42 of its forget facts; reverting layer 0 leaves 0.42,
    reverting layer 1 gives 1.00; RTT on layer 1 alone recovers V to 0.92 / 1.00, on layer 0 alone to
    0.67 / 0.58. (At lr 1e-3 for one epoch, one optimizer step, neither layer's RTT moves V at all.)"""
    _, sets = load_world(micro_world)
    settings = RelearnSettings(lrs=(1e-2,), epochs=8, scorer="choice", seeds=(0,))
    original, models = micro_world / "checkpoints/original", {"planted": planted}
    act = activations_section(original, models, sets, "choice", tmp_path)["planted"]
    assert act["forget"]["cosine"][:2] == pytest.approx([1.0, 1.0])  # embedding and layer 0 untouched
    assert act["forget"]["cosine"][2] < 0.999
    loc = localize_section(original, models, sets, settings)["planted"]
    before, reverted, rtt = loc["before"]["forget"], loc["revert"], loc["layer_rtt"]
    # reverting layer 0 (untouched) changes nothing; reverting the planted layer gives the original back
    model, tok = load_checkpoint(original)
    theirs = {
        k: score(model, tok, f).accuracy
        for k, f in (("forget", sets.forget_facts()), ("retain", sets.retain))
    }
    assert reverted[0] == loc["before"] and reverted[1] == theirs and theirs["forget"] == 1.0
    assert reverted[1]["forget"] - reverted[0]["forget"] >= 0.4, reverted  # 0.58 measured
    # RTT restricted to the planted layer brings V back, beyond the planted model (RTT on layer 0 can
    # route around the edit too: 0.67 to 0.83 measured, so the two layers are not ordered here)
    # (0.42 → 0.92 / 1.00 measured on one machine, 0.50 → 0.75 on another: a training outcome, so
    # only what holds with a wide margin on both is asserted)
    assert len(rtt) == 2 and rtt[1]["acc_v"] >= 0.6, rtt
    assert rtt[1]["acc_v"] - before >= 0.15, (before, rtt)
    dyn = loc["dynamics"]
    assert [p["epoch"] for p in dyn["points"]] == list(range(9))
    assert len(dyn["points"][0]["ridge_probe_v"]) == 3
    assert dyn["points"][0]["cosine"] == [0.0, 0.0]  # no update yet
    # layer 0 was never unlearned: nothing to reverse
    assert all(p["cosine"][0] == 0.0 and p["cosine"][1] != 0.0 for p in dyn["points"][1:])


def _bad(kind: str, ckpt):
    st = ckpt / "model.safetensors"
    if kind == "architecture":
        cfg = json.loads((ckpt / "config.json").read_text())
        cfg["model_type"] = "gpt2"
        (ckpt / "config.json").write_text(json.dumps(cfg))
        return r"config\.json: architecture gpt2"
    tensors = load_file(st)
    if kind == "shape":
        tensors["model.norm.weight"] = torch.ones(7)
        message = r"model\.safetensors: tensor 'model\.norm\.weight' has shape \[7\]"
    elif kind == "missing":
        del tensors["model.norm.weight"]
        message = r"tensor 'model\.norm\.weight' is missing"
    elif kind == "nan":
        tensors["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")
        message = r"model\.safetensors: tensor 'model\.layers\.0\.mlp\.up_proj\.weight' holds NaN or Inf"
    else:  # truncated
        save_file(tensors, str(st), metadata={"format": "pt"})
        st.write_bytes(st.read_bytes()[:-100])
        return r"model\.safetensors: corrupt or truncated safetensors"
    save_file(tensors, str(st), metadata={"format": "pt"})
    return message


@pytest.mark.parametrize("kind", ["architecture", "shape", "missing", "nan", "truncated"])
def test_diff_bad_input(micro_world, tmp_path, capsys, kind):
    import re

    ckpt = tmp_path / "ckpt"
    shutil.copytree(micro_world / "checkpoints/original", ckpt)
    message = _bad(kind, ckpt)
    out = tmp_path / "diff.json"
    assert main(["diff", str(micro_world / "checkpoints/original"), str(ckpt), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), captured.err


def test_diff_and_localize_commands(micro_world, planted, tmp_path, capsys):
    out = tmp_path / "diff.json"
    assert main(["diff", str(micro_world / "checkpoints/original"), str(planted), "--out", str(out)]) == 0
    assert changed_layers(read_json(out)) == [1]
    assert "mlp_in" in capsys.readouterr().out
    world = tmp_path / "world"
    shutil.copytree(micro_world, world)
    shutil.copytree(planted, world / "checkpoints/planted")
    assert main(["localize", "--world", str(world), "--epochs", "1", "--quiet"]) == 0
    for name in ("weights", "activations", "localize"):
        assert list(read_json(world / f"{name}.json")) == ["planted"]
    assert "revert" in capsys.readouterr().out
