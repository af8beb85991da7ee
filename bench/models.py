"""The benchmarks' model: a 12-layer, d_model 768 Llama with a 32k vocabulary (random weights)."""

from transformers import LlamaConfig

LAYERS, D, VOCAB = 12, 768, 32000


def llama_config(**overrides) -> LlamaConfig:
    settings = dict(
        vocab_size=VOCAB,
        hidden_size=D,
        intermediate_size=4 * D,
        num_hidden_layers=LAYERS,
        num_attention_heads=12,
        num_key_value_heads=12,
    )
    return LlamaConfig(**{**settings, **overrides})
