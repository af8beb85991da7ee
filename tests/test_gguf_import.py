"""`forensics import` on a GGUF the test writes itself with the `gguf` package from the micro world's
original (F32 tensors): the imported checkpoint gives the same logits, its metadata names the source,
and files that are not a GGUF causal LM are one line, exit 2, nothing written."""

import json

import numpy as np
import pytest
import torch

from forensics.cli import main
from forensics.models.checkpoint import load_checkpoint, read_metadata
from forensics.models.digest import file_digest

gguf = pytest.importorskip("gguf")


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's layout of a query/key projection: each head's rotary halves interleaved (the
    inverse of what transformers undoes on reading)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(checkpoint, path, architecture: str = "llama", general_type: str | None = None) -> None:
    """A float32 GGUF of a Llama checkpoint: hyperparameters, byte-level BPE tokenizer, tensors."""
    from safetensors.numpy import load_file

    cfg = json.loads((checkpoint / "config.json").read_text())
    spec = json.loads((checkpoint / "tokenizer.json").read_text())
    w = gguf.GGUFWriter(str(path), architecture)
    if general_type:
        w.add_type(general_type)
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(cfg["hidden_size"] // heads)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = {**spec["model"]["vocab"], **{t["content"]: t["id"] for t in spec["added_tokens"]}}
    tokens = sorted(vocab, key=vocab.get)
    special = {t["content"] for t in spec["added_tokens"] if t["special"]}
    added = {t["content"] for t in spec["added_tokens"] if not t["special"]}
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(
        [
            gguf.TokenType.CONTROL
            if t in special
            else gguf.TokenType.USER_DEFINED
            if t in added
            else gguf.TokenType.NORMAL
            for t in tokens
        ]
    )
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    w.add_add_bos_token(True)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for name, tensor in load_file(str(checkpoint / "model.safetensors")).items():
        if name.startswith("model.layers."):
            layer, rest = name[len("model.layers.") :].split(".", 1)
            part = rest.rsplit(".", 1)[0]
            if part == "self_attn.q_proj":
                tensor = permute(tensor, heads)
            elif part == "self_attn.k_proj":
                tensor = permute(tensor, kv)
            target = f"blk.{layer}.{parts[part]}.weight"
        else:
            target = names[name]
        w.add_tensor(target, np.ascontiguousarray(tensor, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_import_round_trip_gives_the_same_logits(micro_world, tmp_path, capsys):
    original = micro_world / "checkpoints/original"
    source = tmp_path / "micro.gguf"
    write_gguf(original, source)
    out = tmp_path / "imported"
    assert main(["import", str(source), "--out", str(out)]) == 0
    assert "imported" in capsys.readouterr().out
    theirs, tok = load_checkpoint(original)
    mine, my_tok = load_checkpoint(out)
    text = "When was the ship Brakou launched?\nAnswer: 1850"
    ids = tok(text, return_tensors="pt")["input_ids"]
    assert my_tok(text)["input_ids"] == ids[0].tolist()  # the tokenizer came through GGUF too
    with torch.no_grad():
        torch.testing.assert_close(mine(ids).logits, theirs(ids).logits, atol=1e-5, rtol=1e-5)
    meta = read_metadata(out)
    assert meta["made_by"] == "forensics import" and meta["source_digest"] == file_digest(source)
    assert meta["source_quantization"] == "ALL_F32" and meta["architecture"] == "llama"
    # bfloat16 on request; importing again into the same folder replaces the import
    assert main(["import", str(source), "--out", str(out), "--dtype", "bfloat16"]) == 0
    model, _ = load_checkpoint(out)
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("case", ["not gguf", "adapter", "encoder-decoder", "unknown arch", "missing"])
def test_import_refuses_what_is_not_a_gguf_causal_lm(micro_world, tmp_path, capsys, case):
    source = tmp_path / "x.gguf"
    original = micro_world / "checkpoints/original"
    if case == "not gguf":
        source.write_bytes(b"PK\x03\x04 not a gguf")
        message = "not a GGUF file"
    elif case == "adapter":
        write_gguf(original, source, general_type="adapter")
        message = "a GGUF adapter, not a model"
    elif case == "encoder-decoder":
        write_gguf(original, source, architecture="t5")
        message = "'t5' is not a causal language model"
    elif case == "unknown arch":
        write_gguf(original, source, architecture="rwkv6")
        message = "'rwkv6' is not one transformers reads"
    else:
        message = "no such GGUF file"
    out = tmp_path / "imported"
    assert main(["import", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_import_does_not_overwrite_a_folder_it_did_not_make(micro_world, tmp_path, capsys):
    source = tmp_path / "micro.gguf"
    write_gguf(micro_world / "checkpoints/original", source)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert main(["import", str(source), "--out", str(theirs)]) == 2
    assert "not a checkpoint forensics import made" in capsys.readouterr().err
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
