"""The probes lens against one plain HF forward with `output_hidden_states=True` over the same prompts
(docs/design.md §7): what reading every layer's answer costs beyond running the model once.

Run: `python -m bench.probe_lens --world runs/real --kind pretrained` (a `forensics real` folder: its
original checkpoint, SmolLM2, on that kind's facts) or `--tiny` (a random 2-layer Llama on the tiny
world's facts and tokenizer: the smoke test's size). The lens is one model's whole `probes` lens as a
study runs it (`probe_bridge`: residuals, probes and control task for every layer and rotation, ridge
screen, transfer, logit lens; no disk cache, so the forward passes are counted); the peer is one
batched forward over the lens's prompts keeping every layer's hidden states. Prints one JSON line:
the lens's seconds and its parts (the one pass that gives the residuals and the logit lens; the
probe fits and the rest), the peer's, their ratio (the goal: ≤ 1.5), the same against a peer over the
statements (question + each choice: the sequences the choice-scoring probes read), and how far the
lens's residuals and statements are from the peers' hidden states (the cross-check).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path


def tiny_world(folder: Path):
    """(checkpoint dir, sets, scorer): a random tiny Llama with the smoke tests' world's tokenizer, saved."""
    import torch
    from transformers import LlamaForCausalLM

    from bench.models import llama_config, world

    cfg, sets, tok, positions = world(tiny=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        llama_config(True, vocab_size=max(512, len(tok)), max_position_embeddings=positions)
    )
    model.save_pretrained(str(folder), safe_serialization=True)
    tok.save_pretrained(str(folder))
    return folder, sets, cfg.scorer


def real_world(root: Path, kind: str):
    """(checkpoint dir, sets, scorer) of a `forensics real` folder's original on one kind's facts."""
    from forensics.worlds.world import load_world

    world, sets = load_world(root, kind)
    return root / world["models"]["original"]["path"], sets, "choice"


def peer(model, tok, ids: list[list[int]], batch_size: int = 32):
    """(seconds, [layers + 1, n, d]): one forward over token sequences (length-sorted right-padded
    batches, as the cache runs them) with every layer's hidden states returned, and those at each
    final position."""
    import torch

    from forensics.models.tokens import pad_id

    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [None] * len(ids)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            width = max(len(ids[j]) for j in idx)
            batch = torch.full((len(idx), width), pad_id(tok), dtype=torch.long)
            mask = torch.zeros_like(batch)
            for r, j in enumerate(idx):
                batch[r, : len(ids[j])], mask[r, : len(ids[j])] = torch.tensor(ids[j]), 1
            states = model(batch, attention_mask=mask, output_hidden_states=True).hidden_states
            for r, j in enumerate(idx):
                out[j] = torch.stack([h[r, len(ids[j]) - 1] for h in states])
    return time.perf_counter() - start, torch.stack(out, dim=1)


def main() -> None:
    import torch

    from forensics.lenses.probes import LIGHT
    from forensics.measure.probing import feature_prompts, probe_bridge, residuals_and_lens
    from forensics.models.checkpoint import boot_bridge, load_checkpoint
    from forensics.models.scoring import choice_plan
    from forensics.models.tokens import encode

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, help="a `forensics real` output folder")
    p.add_argument("--kind", default="pretrained", help="its kind whose facts are read")
    p.add_argument("--tiny", action="store_true", help="the smoke test's size")
    a = p.parse_args()
    if not a.tiny and a.world is None:
        p.error("--world (a `forensics real` folder) or --tiny")
    with tempfile.TemporaryDirectory() as tmp:
        path, sets, scorer = tiny_world(Path(tmp)) if a.tiny else real_world(a.world, a.kind)
        # the peer is a plain HF model of its own: the bridge wraps the model it boots on in hook points
        model, tok = load_checkpoint(path)
        bridge = boot_bridge(path)
    facts = [*sets.forget_facts(), *sets.near_retain, *sets.retain, *sets.control_facts()]
    prompts = [encode(tok, p, "")[0] for p in feature_prompts(facts, scorer)]
    plan = choice_plan(tok, facts, own_rows=True)
    statements = [ids for ids, _ in plan.rows]  # question + choice, each choice once
    peer(model, tok, prompts[:8])  # warm-up: first-call costs for neither
    plain, hidden = peer(model, tok, prompts)
    plain_statements, hidden_statements = peer(model, tok, statements)
    start = time.perf_counter()
    probe_bridge(bridge, sets, scorer, settings=LIGHT, reference=None)
    lens_s = time.perf_counter() - start
    start = time.perf_counter()
    resid, _, S = residuals_and_lens(bridge, facts, scorer, None, None, statements=scorer == "choice")
    pass_s = time.perf_counter() - start
    # HF's last hidden state is after the final norm, the lens's before it: the others must agree
    diff = (resid[:-1].float() - hidden[:-1].float()).abs().max().item()
    if S is not None:
        d = hidden_statements.shape[-1]  # the statement's residual, beside the lens products
        picked = torch.stack([S[:, i, j, :d] for i, j in plan.long], dim=1)
        row_of = {c: row for c, row, _, _ in plan.terms}
        order = [row_of[c] for c in range(len(plan.long))]
        diff = max(diff, (picked[:-1].float() - hidden_statements[:-1, order].float()).abs().max().item())
    print(
        json.dumps(
            {
                "bench": "probe_lens",
                "model": "tiny random llama" if a.tiny else str(path),
                "threads": torch.get_num_threads(),
                "facts": len(facts),
                "layers": bridge.cfg.n_layers,
                "peer_s": round(plain, 3),
                "peer_statements_s": round(plain_statements, 3),
                "lens_s": round(lens_s, 3),
                "lens_over_peer": round(lens_s / plain, 3),
                "lens_over_peer_statements": round(lens_s / plain_statements, 3),
                "parts_s": {"pass": round(pass_s, 3), "fits_and_rest": round(lens_s - pass_s, 3)},
                "resid_max_abs_diff": diff,
            }
        )
    )


if __name__ == "__main__":
    main()
