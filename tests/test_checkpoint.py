"""Checkpoint round trip, TransformerBridge against HF hidden states, and bad checkpoint dirs."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from forensics.errors import InputError
from forensics.models.checkpoint import (
    boot_bridge,
    check_dir,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from forensics.models.scoring import score
from forensics.worlds.world import load_world


def test_round_trip_keeps_weights_scores_and_metadata(micro_world, tmp_path):
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    meta = read_metadata(micro_world / "checkpoints/original")
    assert meta["made_by"] == "forensics world" and meta["seed"] == 0
    out = save_checkpoint(model, tok, tmp_path / "copy", {"made_by": "test", "from": "original"})
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "forensics.json", "model.safetensors", "tokenizer.json"} <= names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temporary folder left beside it
    again, tok2 = load_checkpoint(out)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    _, sets = load_world(micro_world)
    facts = sets.forget_facts()
    assert score(model, tok, facts).predicted.tolist() == score(again, tok2, facts).predicted.tolist()
    # the metadata as given, and the files the save wrote (what a later save may replace)
    assert read_metadata(out) == {"made_by": "test", "from": "original", "files": sorted(names)}


def test_bridge_activations_equal_hf_hidden_states(micro_world):
    path = micro_world / "checkpoints/original"
    model, tok = load_checkpoint(path)
    bridge = boot_bridge(path, model=model, tokenizer=tok)
    ids = tok(["When was the ship Kalmaro launched?\nAnswer:"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
        logits, cache = bridge.run_with_cache(
            ids, names_filter=lambda n: n.endswith("hook_resid_post") or n == "hook_embed"
        )
    n = model.config.num_hidden_layers
    torch.testing.assert_close(cache["hook_embed"], hidden[0], atol=1e-5, rtol=0)
    for layer in range(n - 1):
        torch.testing.assert_close(
            cache[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1], atol=1e-5, rtol=0
        )
    # HF's last hidden state is taken after the final norm; TransformerLens' resid_post before it
    with torch.no_grad():
        last = model.model.norm(cache[f"blocks.{n - 1}.hook_resid_post"])
    torch.testing.assert_close(last, hidden[n], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, model(ids).logits, atol=1e-5, rtol=0)


@pytest.fixture
def ckpt(micro_world, tmp_path):
    path = tmp_path / "ckpt"
    shutil.copytree(micro_world / "checkpoints/never_learned", path)
    return path


def test_missing_dir_and_files(tmp_path, ckpt):
    with pytest.raises(InputError, match=r"nowhere: checkpoint directory not found"):
        check_dir(tmp_path / "nowhere")
    (ckpt / "config.json").rename(ckpt / "config.bak")
    with pytest.raises(InputError, match=r"config\.json: missing"):
        check_dir(ckpt)
    (ckpt / "config.bak").rename(ckpt / "config.json")
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(InputError, match=r"ckpt: no model\.safetensors"):
        load_checkpoint(ckpt)


def test_malformed_config(ckpt):
    (ckpt / "config.json").write_text("{oops")
    with pytest.raises(InputError, match=r"config\.json: malformed JSON"):
        load_checkpoint(ckpt)


def test_truncated_safetensors(ckpt):
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(InputError, match=r"model\.safetensors: corrupt or truncated safetensors"):
        load_checkpoint(ckpt)
    weights.write_bytes(b"\x00\x01garbage")
    with pytest.raises(InputError, match=r"model\.safetensors: corrupt or truncated"):
        load_checkpoint(ckpt)


def test_nan_weights_are_named(ckpt):
    weights = ckpt / "model.safetensors"
    tensors = load_file(weights)
    name = "model.layers.1.mlp.up_proj.weight"
    tensors[name][0, 0] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(InputError, match=rf"tensor '{name}' holds NaN or Inf"):
        load_checkpoint(ckpt)


def test_sharded_index_with_missing_shard(ckpt):
    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(InputError, match=r"model-00001-of-00002\.safetensors: shard named by"):
        check_dir(ckpt)


def test_a_later_save_removes_only_checkpoint_files_an_earlier_save_listed(micro_world, tmp_path):
    """A save replaces the files an earlier save wrote and removes those it no longer writes, but
    only checkpoint files: a metadata list naming a user's file (edited by hand) never deletes it."""
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    out = save_checkpoint(model, tok, tmp_path / "c", {})
    meta = json.loads((out / "forensics.json").read_text())
    (out / "notes.txt").write_text("mine")
    (out / "model-00001-of-00002.safetensors").write_bytes(b"an old shard")  # as if an earlier save
    meta["files"] += ["notes.txt", "model-00001-of-00002.safetensors"]
    (out / "forensics.json").write_text(json.dumps(meta))
    save_checkpoint(model, tok, out, {})
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "model-00001-of-00002.safetensors").exists()
    load_checkpoint(out)
