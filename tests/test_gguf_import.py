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


def write_gguf(
    checkpoint,
    path,
    architecture: str = "llama",
    general_type: str | None = None,
    drop: tuple[str, ...] = (),
    extra: dict | None = None,
    change=None,
    broken_config: bool = False,
) -> None:
    """A float32 GGUF of a Llama checkpoint: hyperparameters, byte-level BPE tokenizer, tensors
    (less those named in `drop`, plus `extra`; `change(name, array)` may alter a tensor)."""
    from safetensors.numpy import load_file

    cfg = json.loads((checkpoint / "config.json").read_text())
    spec = json.loads((checkpoint / "tokenizer.json").read_text())
    w = gguf.GGUFWriter(str(path), architecture)
    if general_type:
        w.add_type(general_type)
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(8 if broken_config else cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    if not broken_config:
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
        if target not in drop:
            array = np.ascontiguousarray(tensor, dtype=np.float32)
            w.add_tensor(target, change(target, array) if change else array)
    for target, array in (extra or {}).items():
        w.add_tensor(target, np.ascontiguousarray(array, dtype=np.float32))
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


def gguf_tensor_names(checkpoint, tmp_path) -> list[str]:
    source = tmp_path / "all.gguf"
    write_gguf(checkpoint, source)
    return [t.name for t in gguf.GGUFReader(str(source)).tensors]


def test_every_tensor_the_architecture_needs_comes_from_the_file(micro_world, tmp_path, capsys):
    """Property over the architecture's tensors: a GGUF without any one of them is refused in one line
    naming it (never initialised at random; the output, when absent, is tied to the embedding), and
    one with an extra tensor is refused naming that."""
    original = micro_world / "checkpoints/original"
    names = gguf_tensor_names(original, tmp_path)
    assert len(names) == 2 + 1 + 9 * 2  # embedding, output, norm, 9 per block
    for name in names:
        source, out = tmp_path / f"{name}.gguf", tmp_path / f"out-{name}"
        write_gguf(original, source, drop=(name,))
        if name == "output.weight":  # as llama.cpp reads it: the output tied to the embedding
            assert main(["import", str(source), "--out", str(out)]) == 0
            model, _ = load_checkpoint(out)
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
            continue
        assert main(["import", str(source), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"tensor '{name}' is missing" in err[0], err
        assert not out.exists()
    source, out = tmp_path / "extra.gguf", tmp_path / "out-extra"
    write_gguf(original, source, extra={"blk.9.ffn_down.weight": np.zeros((4, 4))})
    assert main(["import", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensor 'blk.9.ffn_down.weight' is not part of" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("case", ["no tensors", "mamba", "gpt2", "nan", "bad config"])
def test_import_refuses_a_gguf_that_would_become_a_wrong_model(micro_world, tmp_path, capsys, case):
    original = micro_world / "checkpoints/original"
    source, out = tmp_path / "x.gguf", tmp_path / "out"
    if case == "no tensors":
        write_gguf(original, source, drop=tuple(gguf_tensor_names(original, tmp_path)))
        message = "is missing"
    elif case in ("mamba", "gpt2"):
        write_gguf(original, source, architecture=case)  # llama tensors and keys under another label
        message = "tensor '"
    elif case == "nan":
        write_gguf(original, source, change=lambda n, a: a * np.nan if n == "blk.1.ffn_up.weight" else a)
        message = "tensor 'blk.1.ffn_up.weight' holds NaN or Inf"
    else:
        write_gguf(original, source, broken_config=True)  # hidden size 8, no head count
        message = "transformers cannot read this GGUF"
    assert main(["import", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_import_never_deletes_what_it_did_not_write(micro_world, tmp_path, capsys, monkeypatch):
    """--force writes into a folder, never removes it: a user's file beside the output, the source
    GGUF inside the output folder and its README survive, with and without --force, and `--out .`."""
    original = micro_world / "checkpoints/original"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    source = theirs / "src.gguf"
    write_gguf(original, source)
    (theirs / "README.md").write_text("the model card")
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["import", str(source), "--out", str(theirs), "--force"]) == 0
    assert (theirs / "README.md").read_text() == "the model card" and source.is_file()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    load_checkpoint(theirs)
    # again, without --force: the folder is an import now; the source inside it is kept
    assert main(["import", str(source), "--out", str(theirs)]) == 0
    assert source.is_file() and (theirs / "README.md").is_file()
    # a file of a name the import writes, which the import did not write, is refused, never replaced
    (theirs / "forensics.json").unlink()
    (theirs / "config.json").write_text('{"mine": true}')
    assert main(["import", str(source), "--out", str(theirs), "--force"]) == 2
    assert "config.json: exists and was not written by forensics" in capsys.readouterr().err
    assert (theirs / "config.json").read_text() == '{"mine": true}'
    # `--out .` from inside a folder of the user's: written into it, nothing else touched
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    (here / "keep.txt").write_text("x")
    monkeypatch.chdir(here)
    assert main(["import", str(source), "--out", ".", "--force"]) == 0
    assert (here / "keep.txt").is_file() and (here / "model.safetensors").is_file()
    assert sorted(p.name for p in here.parent.iterdir()) == ["b"]  # no temp folder left beside it
    capsys.readouterr()


@pytest.mark.parametrize("case", ["empty", "file", "dangling link"])
def test_import_refuses_an_out_that_is_no_folder_before_reading(micro_world, tmp_path, capsys, case):
    source = tmp_path / "micro.gguf"
    write_gguf(micro_world / "checkpoints/original", source)
    out = tmp_path / "out"
    if case == "file":
        out.write_text("mine")
    elif case == "dangling link":
        out.symlink_to(tmp_path / "nowhere")
    assert main(["import", str(source), "--out", "" if case == "empty" else str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("--out" in err[0] or str(out) in err[0]), err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["micro.gguf"] + ([] if case == "empty" else ["out"])
    )


def test_the_tokenizer_comes_from_the_gguf_not_from_a_file_beside_it(micro_world, tmp_path):
    original = micro_world / "checkpoints/original"
    source = tmp_path / "micro.gguf"
    write_gguf(original, source)
    spec = json.loads((original / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # a foreign tokenizer: two ids swapped
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    out = tmp_path / "out"
    assert main(["import", str(source), "--out", str(out)]) == 0
    _, tok = load_checkpoint(original)
    _, mine = load_checkpoint(out)
    assert mine.convert_tokens_to_ids([a, b]) == tok.convert_tokens_to_ids([a, b])


def test_a_stop_swallowed_during_the_import_stops_it_before_it_writes(
    micro_world, tmp_path, capsys, monkeypatch
):
    """A SIGTERM whose `Stopped` lands in a finalizer is swallowed by Python; its record is not: the
    import exits 143 and writes nothing."""
    import signal

    from forensics import errors
    from forensics.models import gguf as importer

    source = tmp_path / "micro.gguf"
    write_gguf(micro_world / "checkpoints/original", source)
    read = importer._read

    def read_then_swallow(path):
        result = read(path)
        try:
            errors.request_stop(signal.SIGTERM)
        except errors.Stopped:
            pass  # what a finalizer does with it
        return result

    monkeypatch.setattr(importer, "_read", read_then_swallow)
    out = tmp_path / "out"
    assert main(["import", str(source), "--out", str(out)]) == 128 + signal.SIGTERM
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["micro.gguf"]
