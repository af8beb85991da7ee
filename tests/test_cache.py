"""The activation cache against HF hidden states, spilled against in-memory, and its reuse."""

import pytest
import torch

from forensics.cache import EMBED, RESID, default_hooks, extract, extract_ids
from forensics.digest import checkpoint_digest
from forensics.checkpoint import boot_bridge, load_checkpoint
from forensics.errors import InputError
from forensics.formats import choice_context
from forensics.tokens import collate, encode, pad_id
from forensics.world import load_world


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


def test_all_positions_with_mask(loaded):
    _, model, tok, bridge, prompts = loaded
    acts = extract(bridge, prompts[:5], positions="all")
    ids = [encode(tok, p, "")[0] for p in prompts[:5]]
    assert acts.mask.sum(1).tolist() == [len(i) for i in ids]
    with torch.no_grad():
        hs = model(torch.tensor([ids[2]]), output_hidden_states=True).hidden_states
    got = acts[RESID.format(0)][2, : len(ids[2])]
    torch.testing.assert_close(got, hs[1][0], atol=1e-5, rtol=0)
    assert not acts[RESID.format(0)][2, len(ids[2]) :].any()  # padding stays zero


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


def test_bad_requests(loaded):
    _, _, _, bridge, prompts = loaded
    with pytest.raises(InputError, match="unknown hook"):
        extract(bridge, prompts, hooks=["blocks.9.hook_resid_post"])
    with pytest.raises(InputError, match="positions"):
        extract(bridge, prompts, positions="first")
    with pytest.raises(InputError, match="budget"):
        extract_ids(bridge, [[1, 2, 3]] * 4, memory_budget=10)
