"""RTT's training step: the toolkit's one training loop against a minimal PyTorch loop (docs/design.md §7).

Run: `python -m bench.rtt [--tiny] [--epochs N]`. T is the demo world's forget facts less one split (75,
about SmolLM2's T of 72; `--tiny`: the micro world's 8) as RTT trains on them (the scorer's loss format),
with the world's tokenizer; the model is SmolLM2-135M's shape (30 blocks of
576, vocabulary 49152; random weights: the speed does not depend on them) or, with `--tiny`,
bench/models.py's tiny one. Both loops train a copy of the same model for the same epochs over the
same batches (the toolkit's batch order, collated beforehand for the peer) with the same optimizer
(AdamW, fused where the toolkit fuses it), gradient clipping and dtype; the peer's loss is HF's own
(`labels=`). Prints one JSON line: seconds each, their ratio (toolkit / peer; the goal is ≤ 1.1), and
the mean loss of each (the same batches and weights: they agree to a few percent).
"""

import argparse
import copy
import json
import time

SMOLLM2 = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    vocab_size=49152,
    tie_word_embeddings=True,
)


def setup(tiny: bool):
    """(model, tokenizer, T's examples, the model's description): a world's facts and tokenizer (no model
    of the world is trained: the bench times steps, not what they learn)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.models import describe, llama_config, world
    from forensics.facts.formats import default_format, examples

    cfg, sets, tok, _ = world(tiny)  # the demo world's: T of 75 facts
    model_cfg = llama_config(True, vocab_size=max(512, len(tok))) if tiny else LlamaConfig(**SMOLLM2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(model_cfg)
    t = [f for name, split in sets.forget.items() if name != next(iter(sets.forget)) for f in split]
    return model, tok, examples(t, default_format(cfg.scorer)), describe(model_cfg)


def toolkit(model, tok, data, cfg) -> tuple[float, float]:
    """The toolkit's loop (`forensics.models.train.train`, as RTT calls it, without scoring)."""
    from forensics.models.train import train

    start = time.perf_counter()
    history = train(model, tok, {"t": data}, cfg, progress=False)
    return time.perf_counter() - start, sum(h["loss"] for h in history) / len(history)


def peer(model, tok, data, cfg) -> tuple[float, float]:
    """A minimal PyTorch loop over the toolkit's batches: forward with HF's loss, backward, clip, step."""
    import math

    import torch

    from forensics.models.tokens import collate, encode, pad_id
    from forensics.models.train import _cycle, _fusable

    encoded = [encode(tok, e.prompt, e.target) for e in data]
    order = _cycle(
        [len(ids) for ids, _ in encoded], cfg.batch_size, torch.Generator().manual_seed(cfg.seed), 8
    )
    steps = cfg.epochs * math.ceil(len(encoded) / cfg.batch_size)
    batches = [collate([encoded[i] for i in next(order)], pad_id(tok), "cpu") for _ in range(steps)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, fused=_fusable(params))
    torch.manual_seed(cfg.seed)
    model.train()
    losses = []
    start = time.perf_counter()
    for batch in batches:
        loss = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        ).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
    return time.perf_counter() - start, sum(losses) / len(losses)


def main() -> None:
    import torch

    from forensics.models.train import TrainConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="the smoke test's size")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = p.parse_args()
    model, tok, data, described = setup(a.tiny)
    model = model.to(getattr(torch, a.dtype))
    cfg = TrainConfig(lr=3e-4, epochs=a.epochs, batch_size=8, seed=0)
    peer(copy.deepcopy(model), tok, data, cfg)  # warm-up: first-call costs (allocator, kernels) for neither
    ours, ours_loss = toolkit(copy.deepcopy(model), tok, data, cfg)
    theirs, theirs_loss = peer(copy.deepcopy(model), tok, data, cfg)
    print(
        json.dumps(
            {
                "bench": "rtt",
                "model": described,
                "dtype": a.dtype,
                "threads": torch.get_num_threads(),
                "examples": len(data),
                "epochs": a.epochs,
                "batch_size": cfg.batch_size,
                "toolkit_s": round(ours, 3),
                "peer_s": round(theirs, 3),
                "toolkit_over_peer": round(ours / theirs, 3) if theirs > 0 else None,
                "toolkit_loss": round(ours_loss, 4),
                "peer_loss": round(theirs_loss, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
