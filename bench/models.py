"""The benchmarks' model: a 12-layer, d_model 768 Llama with a 32k vocabulary (random weights), or
with `tiny` a 2-layer, d_model 64 one with a 512 vocabulary, for the smoke tests (tests/test_bench.py);
and the world whose facts and tokenizer the benches read (the demo's, or with `tiny` a small one)."""

from transformers import LlamaConfig

LAYERS, D, VOCAB = 12, 768, 32000
TINY_LAYERS, TINY_D, TINY_VOCAB = 2, 64, 512


def llama_config(tiny: bool = False, **overrides) -> LlamaConfig:
    """The benchmark model's config (the tiny one with `tiny`), with `overrides` on top."""
    layers, d, vocab = (TINY_LAYERS, TINY_D, TINY_VOCAB) if tiny else (LAYERS, D, VOCAB)
    settings = dict(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=4 * d,
        num_hidden_layers=layers,
        num_attention_heads=d // 64,
        num_key_value_heads=d // 64,
    )
    return LlamaConfig(**{**settings, **overrides})


def describe(cfg: LlamaConfig) -> str:
    """The model as the benches' JSON lines name it, e.g. "llama 12x768, vocab 32000"."""
    return f"llama {cfg.num_hidden_layers}x{cfg.hidden_size}, vocab {cfg.vocab_size}"


# the smoke tests' world: 12 forget facts in 3 splits, a 300-token vocabulary
TINY_WORLD = dict(n_people=24, n_ships=16, n_forget=12, n_forget_splits=3, vocab_size=300)


def world(tiny: bool = False):
    """(config, sets, tokenizer, position count) of the demo world (with `tiny`, the smoke tests'),
    built without training a model: the benches time passes, not what a model knows."""
    from forensics.worlds.spec import WorldConfig, world_sets, world_texts
    from forensics.worlds.world import world_tokenizer

    cfg = WorldConfig(**TINY_WORLD) if tiny else WorldConfig()
    sets = world_sets(cfg)
    facts = [*sets.forget_facts(), *sets.near_retain, *sets.retain]
    tok, positions = world_tokenizer(world_texts(facts), cfg.vocab_size, max(len(f.choices) for f in facts))
    return cfg, sets, tok, positions
