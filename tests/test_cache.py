"""The activation cache against HF hidden states, spilled against in-memory, and its reuse."""

import pytest
import torch

from forensics.errors import InputError
from forensics.facts.formats import choice_context
from forensics.models.cache import EMBED, RESID, default_hooks, extract, extract_ids, lookup, stream_ids
from forensics.models.checkpoint import boot_bridge, load_checkpoint
from forensics.models.digest import checkpoint_digest
from forensics.models.tokens import collate, encode, pad_id
from forensics.worlds.world import load_world


@pytest.fixture(scope="module")
def loaded(micro_world):
    _, sets = load_world(micro_world)
    path = micro_world / "checkpoints/original"
    model, tok = load_checkpoint(path)
    bridge = boot_bridge(path, model=model, tokenizer=tok)
    prompts = [choice_context(f) for f in [*sets.forget_facts(), *sets.retain]]
    return path, model, tok, bridge, prompts


def test_final_position_equals_hf_hidden_states(loaded):
    _, model, tok, bridge, prompts = loaded
    acts = extract(bridge, prompts, batch_size=7)  # several length-sorted batches
    assert acts.hooks == default_hooks(2) == [EMBED, RESID.format(0), RESID.format(1)]
    batch = collate([encode(tok, p, "") for p in prompts], pad_id(tok))
    with torch.no_grad():
        hidden = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    last = batch["attention_mask"].sum(1) - 1
    rows = torch.arange(len(prompts))
    hs = hidden.hidden_states
    torch.testing.assert_close(acts[EMBED], hs[0][rows, last], atol=1e-5, rtol=0)
    torch.testing.assert_close(acts[RESID.format(0)], hs[1][rows, last], atol=1e-5, rtol=0)
    # HF's last hidden state is after the final norm
    torch.testing.assert_close(model.model.norm(acts[RESID.format(1)]), hs[2][rows, last], atol=1e-5, rtol=0)


def test_streamed_statistics_over_every_position(loaded):
    """`stream_ids` hands each batch's activations at every position to a reducer and puts the
    results back in prompt order: per prompt, the sum of the layer-0 residual over its real tokens
    equals HF's hidden states summed by hand (pads excluded)."""
    _, model, tok, bridge, prompts = loaded
    ids = [encode(tok, p, "")[0] for p in prompts[:9]]
    hook = RESID.format(0)

    def reduce(acts, attention, rows):
        assert acts[hook].shape[:2] == attention.shape
        return (acts[hook] * attention[..., None]).sum(1).T  # [d, b]

    got = stream_ids(bridge, ids, reduce, hooks=[hook], batch_size=4)
    with torch.no_grad():
        want = torch.stack(
            [model(torch.tensor([i]), output_hidden_states=True).hidden_states[1][0].sum(0) for i in ids]
        )
    torch.testing.assert_close(got.T, want, atol=1e-4, rtol=1e-5)


def test_final_positions_cached_in_the_models_dtype(loaded, tmp_path):
    path, _, _, bridge, prompts = loaded
    float32 = extract(bridge, prompts[:6])
    assert float32[EMBED].dtype == torch.float32
    half = extract(bridge, prompts[:6], dtype=torch.bfloat16, cache_dir=tmp_path, weights="w")
    assert half[EMBED].dtype == torch.bfloat16
    torch.testing.assert_close(half[EMBED].float(), float32[EMBED], atol=0.02, rtol=0.01)
    assert (
        extract(bridge, prompts[:6], cache_dir=tmp_path, weights="w").forward_passes > 0
    )  # dtype in the key


def test_spilled_cache_equals_in_memory_and_is_reused(loaded, tmp_path):
    path, _, _, bridge, prompts = loaded
    memory = extract(bridge, prompts)
    digest = checkpoint_digest(path)
    spilled = extract(bridge, prompts, cache_dir=tmp_path, weights=digest, memory_budget=3 * 32 * 4 * 5)
    assert len(spilled.shards) == -(-len(prompts) // 5)  # five rows per shard
    assert spilled.forward_passes > 0
    for hook in memory.hooks:
        assert torch.equal(spilled[hook], memory[hook])
    again = extract(bridge, prompts, cache_dir=tmp_path, weights=digest)
    assert again.forward_passes == 0
    assert torch.equal(again.stack(), memory.stack())
    # another hook set or other prompts are another key
    other = extract(bridge, prompts[:3], cache_dir=tmp_path, weights=digest)
    assert other.forward_passes == 1
    # found without a model: the tokenizer, the hooks and the dtype make the key
    tok, hooks = bridge.tokenizer, memory.hooks
    found = lookup(tmp_path, digest, tok, prompts, hooks, torch.float32)
    assert found is not None and torch.equal(found.stack(), memory.stack())
    assert lookup(tmp_path, digest, tok, prompts, hooks, torch.bfloat16) is None


def test_bad_requests(loaded):
    _, _, _, bridge, prompts = loaded
    with pytest.raises(InputError, match="unknown hook"):
        extract(bridge, prompts, hooks=["blocks.9.hook_resid_post"])
    with pytest.raises(InputError, match="unknown hook"):
        stream_ids(bridge, [[1, 2, 3]], lambda acts, attention, rows: attention.sum(1), hooks=["blocks.9.x"])
    with pytest.raises(InputError, match="budget"):
        extract_ids(bridge, [[1, 2, 3]] * 4, memory_budget=10)


def test_stops_after_the_last_hook_in_forward_order_not_by_block_index(loaded):
    """resid_pre and resid_post of one block, and ln_final beside a block hook, all equal HF's values
    (stopping at the highest block index used to return resid_post and ln_final as zeros)."""
    _, model, tok, bridge, prompts = loaded
    hooks = ["blocks.1.hook_resid_pre", RESID.format(1), "ln_final.hook_out"]
    acts = extract(bridge, prompts, hooks=hooks)
    batch = collate([encode(tok, p, "") for p in prompts], pad_id(tok))
    with torch.no_grad():
        hs = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    rows, last = torch.arange(len(prompts)), batch["attention_mask"].sum(1) - 1
    hidden = hs.hidden_states
    torch.testing.assert_close(acts["blocks.1.hook_resid_pre"], hidden[1][rows, last], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        model.model.norm(acts[RESID.format(1)]), hidden[2][rows, last], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(acts["ln_final.hook_out"], hidden[2][rows, last], atol=1e-5, rtol=0)
    for hook in hooks:
        assert acts[hook].abs().sum() > 0, hook


def test_a_corrupt_entry_is_recomputed_with_a_warning(loaded, tmp_path, capsys):
    path, _, _, bridge, prompts = loaded
    digest = checkpoint_digest(path)
    first = extract(bridge, prompts, cache_dir=tmp_path, weights=digest, memory_budget=3 * 32 * 4 * 5)
    shard = first.shards[1]
    shard.write_bytes(shard.read_bytes()[:100])  # truncated
    again = extract(bridge, prompts, cache_dir=tmp_path, weights=digest, memory_budget=3 * 32 * 4 * 5)
    assert again.forward_passes > 0 and "corrupt cache entry, recomputing" in capsys.readouterr().err
    for hook in first.hooks:
        torch.testing.assert_close(again[hook], extract(bridge, prompts)[hook], atol=0, rtol=0)
    third = extract(bridge, prompts, cache_dir=tmp_path, weights=digest, memory_budget=3 * 32 * 4 * 5)
    assert third.forward_passes == 0


def test_cap_evicts_least_recently_used_and_the_command_lists_and_clears(loaded, tmp_path, capsys):
    import os

    from forensics.cli import main
    from forensics.models.cache import enforce_cap, entries

    path, _, _, bridge, prompts = loaded
    digest = checkpoint_digest(path)
    seen: set[str] = set()
    for i, n in enumerate((4, 5, 6)):  # three entries, last used at times 1000, 1001, 1002
        extract(bridge, prompts[:n], cache_dir=tmp_path, weights=digest)
        (new,) = [e for e in entries(tmp_path) if e["key"] not in seen]
        os.utime(new["path"] / "done.json", (1000 + i, 1000 + i))
        seen.add(new["key"])
    extract(bridge, prompts[:4], cache_dir=tmp_path, weights=digest)  # the oldest is used again
    found = entries(tmp_path)
    assert len(found) == 3
    sizes = {e["key"]: e["bytes"] for e in found}
    keep_bytes = sum(sizes.values()) - found[0]["bytes"]
    removed = enforce_cap(tmp_path, keep_bytes / 2**30)
    assert removed == [found[0]["key"]]
    assert extract(bridge, prompts[:4], cache_dir=tmp_path, weights=digest).forward_passes == 0
    assert main(["cache", str(tmp_path), "--list"]) == 0
    assert "2 entries" in capsys.readouterr().out
    assert main(["cache", str(tmp_path), "--clear"]) == 0
    assert entries(tmp_path) == [] and "MB freed" in capsys.readouterr().out
    assert main(["cache", str(tmp_path / "nope"), "--list"]) == 2


@pytest.mark.parametrize("layout", ["subfolder", "study", "world"])
def test_clear_refuses_a_folder_that_is_not_a_cache_and_deletes_nothing(tmp_path, capsys, layout):
    """`forensics cache DIR --clear` on someone's folder, a study's OUT or a world folder: one line,
    exit 2, every file still there."""
    from forensics.cli import main

    folder = tmp_path / "f"
    made = {
        "subfolder": ["sub/a.safetensors"],
        "study": [
            "results.json",
            "relearn/gd/v_lr0.001_s0.json",
            "report/index.html",
            f"cache/{'a' * 32}/done.json",
        ],
        "world": ["world.json", "checkpoints/original/model.safetensors"],
    }[layout]
    for name in made:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    for flag in ("--clear", "--list"):
        assert main(["cache", str(folder), flag]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not an activation cache folder" in err[0] and "nothing deleted" in err[0]
        assert (f"its cache is {folder / 'cache'}" in err[0]) == (layout == "study")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(made)
    if layout == "study":  # its own cache folder is one: cleared, the rest of the study kept
        assert main(["cache", str(folder / "cache"), "--clear"]) == 0
        assert not (folder / "cache" / ("a" * 32)).exists() and (folder / "results.json").exists()


def test_clear_counts_only_what_it_removes_and_never_follows_a_link(tmp_path, capsys):
    """Issue #28: `forensics cache --clear` through a symlinked entry counted another folder's bytes
    as freed. Links (an entry that is one, a file inside an entry that is one) are removed from the
    cache without touching what they point to, and only the regular files removed are counted."""
    from forensics.cli import main
    from forensics.models.cache import clear, entries

    def make(cache):
        theirs = tmp_path / "theirs"
        theirs.mkdir(exist_ok=True)
        (theirs / "done.json").write_text("{}")
        (theirs / "big.bin").write_bytes(b"x" * 3 * 2**20)
        own = cache / ("a" * 32)
        own.mkdir(parents=True)
        (own / "done.json").write_text("{}")
        (own / "acts.safetensors").write_bytes(b"y" * 2**20)
        (own / "link.bin").symlink_to(theirs / "big.bin")
        (cache / ("b" * 32)).symlink_to(theirs, target_is_directory=True)
        return theirs

    cache = tmp_path / "cache"
    theirs = make(cache)
    assert sorted(e["bytes"] for e in entries(cache)) == [0, 2**20 + 2]
    assert clear(cache) == 2**20 + 2
    assert list(cache.iterdir()) == [] and (theirs / "big.bin").stat().st_size == 3 * 2**20
    assert sorted(p.name for p in theirs.iterdir()) == ["big.bin", "done.json"]
    cache.rmdir()
    make(cache)
    assert main(["cache", str(cache), "--clear"]) == 0
    assert "1.0 MB freed" in capsys.readouterr().out
    assert (theirs / "big.bin").stat().st_size == 3 * 2**20
