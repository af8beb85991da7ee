"""The `forensics` command: the world table, and bad input as one line on stderr with exit 2."""

import json
import subprocess
import sys

import pytest

from forensics.cli import main

MICRO = [
    "--people",
    "16",
    "--ships",
    "8",
    "--forget-facts",
    "8",
    "--forget-splits",
    "2",
    "--layers",
    "1",
    "--d-model",
    "16",
    "--heads",
    "2",
    "--vocab-size",
    "300",
    "--epochs",
    "2",
    "--quiet",
]


def run(*args):
    return subprocess.run([sys.executable, "-m", "forensics.cli", *args], capture_output=True, text=True)


def test_world_command_writes_the_world(tmp_path):
    out = tmp_path / "w"
    assert main(["world", "--out", str(out), *MICRO]) == 0
    world = json.loads((out / "world.json").read_text())
    assert set(world["models"]) == {"original", "never_learned"}
    assert (out / "checkpoints/never_learned/model.safetensors").exists()


def test_world_command_output(tmp_path):
    proc = run("world", "--out", str(tmp_path / "w"), *MICRO)
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("model"))
    assert header.split() == [
        "model",
        "forget_0",
        "forget_1",
        "forget",
        "near_retain",
        "retain",
        "chance",
        "epochs",
        "seconds",
    ]
    assert any(line.startswith("never_learned") for line in proc.stdout.splitlines())


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--facts-dir", "{tmp}/missing", "--forget", "a,b", "--retain", "c"],
            "missing: no such file or directory",
        ),
        (
            ["--facts-dir", "{paper}", "--forget", "split_0,split_1", "--retain", "split_99"],
            "retain split 'split_99' not found",
        ),
        (
            ["--facts-dir", "{paper}", "--forget", "split_0,split_1", "--retain", "split_2"],
            r"split_0.jsonl:\d+: question .* appears",
        ),
        (["--scorer", "vibes"], "unknown scorer 'vibes'"),
        (["--d-model", "30", "--heads", "4"], "not divisible"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, paper_data, args, message):
    import re

    args = [a.format(tmp=tmp_path, paper=paper_data / "random-birthdays") for a in args]
    proc = run("world", "--out", str(tmp_path / "w"), *MICRO, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forensics: error: ")
    assert re.search(message, lines[0])
    assert not (tmp_path / "w").exists()


def test_score_command(micro_world, capsys):
    facts = micro_world / "facts.jsonl"
    assert (
        main(
            [
                "score",
                str(micro_world / "checkpoints/original"),
                "--facts",
                str(facts),
                "--splits",
                "forget_0,retain",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["split", "facts", "accuracy", "chance"]
    assert out[2].split() == ["forget_0", "4", "1.00", "0.25"]


def _corrupt(kind, ckpt, facts):
    """Make one kind of bad input; returns (checkpoint, facts, extra args, expected message)."""
    import shutil

    from safetensors.torch import load_file, save_file

    weights = ckpt / "model.safetensors"
    if kind == "no dir":
        shutil.rmtree(ckpt)
        return [], "ckpt: checkpoint directory not found"
    if kind == "no config":
        (ckpt / "config.json").unlink()
        return [], r"config\.json: missing"
    if kind == "truncated":
        weights.write_bytes(weights.read_bytes()[:-64])
        return [], r"model\.safetensors: corrupt or truncated"
    if kind == "nan":
        tensors = load_file(weights)
        tensors["model.norm.weight"][0] = float("inf")
        save_file(tensors, weights, metadata={"format": "pt"})
        return [], "tensor 'model.norm.weight' holds NaN or Inf"
    if kind == "cuda":
        return ["--device", "cuda"], "no CUDA device"
    if kind in ("missing tensor", "unexpected tensor", "shape vs config"):
        tensors = load_file(weights)
        name = "model.layers.0.mlp.up_proj.weight"
        if kind == "missing tensor":
            del tensors[name]
            message = rf"tensor '{name}' missing from the safetensors"
        elif kind == "unexpected tensor":
            tensors["model.extra.weight"] = tensors[name].clone()
            message = r"tensor 'model.extra.weight' in the safetensors is not part of config.json's model"
        else:
            tensors[name] = tensors[name][:, :-1].contiguous()
            message = rf"model\.safetensors: tensor '{name}' has shape \[\d+, \d+\], config\.json implies"
        save_file(tensors, weights, metadata={"format": "pt"})
        return [], message
    if kind in ("shard outside", "shard absolute"):
        shutil.copy(weights, ckpt.parent / "outside.safetensors")
        weights.unlink()
        target = (
            "../outside.safetensors" if kind == "shard outside" else str(ckpt.parent / "outside.safetensors")
        )
        (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": target}}))
        return [], r"model\.safetensors\.index\.json: shard .* is not a file name inside the checkpoint"
    if kind == "auto_map tokenizer":
        config = json.loads((ckpt / "tokenizer_config.json").read_text())
        config["auto_map"] = {"AutoTokenizer": ["remote.RemoteTokenizer", None]}
        config["tokenizer_class"] = "RemoteTokenizer"
        (ckpt / "tokenizer_config.json").write_text(json.dumps(config))
        return [], r"ckpt: cannot load the tokenizer"
    if kind == "batch size 0":
        return ["--batch-size", "0"], r"--batch-size: must be at least 1"
    lines = facts.read_text().splitlines()
    record = json.loads(lines[0])
    if kind == "malformed line":
        lines[1] = lines[1][:-3]
        message = r"facts\.jsonl:2: malformed JSON line"
    elif kind == "answer range":
        record["answer"] = 7
        lines[0] = json.dumps(record)
        message = r"facts\.jsonl:1: answer 7 out of range"
    elif kind == "lone surrogate":
        lines[0] = lines[0].replace('"question": "', '"question": "\\ud800', 1)
        message = r"facts\.jsonl:1: text .* holds a lone surrogate"
    elif kind == "too long":
        record["question"] = " ".join(["When"] * 600) + "?"
        lines[0] = json.dumps(record)
        message = r"facts\.jsonl:1: a text of this fact is \d+ tokens, longer than the model's context of \d+"
    elif kind == "one choice":
        record["choices"] = record["choices"][:1]
        record["answer"] = 0
        lines[0] = json.dumps(record)
        message = r"facts\.jsonl:1: fewer than 2 choices"
    else:  # empty split
        facts.write_text("")
        return [], r"facts\.jsonl: split 'facts' is empty"
    facts.write_text("\n".join(lines) + "\n")
    return [], message


@pytest.mark.parametrize(
    "kind",
    [
        "no dir",
        "no config",
        "truncated",
        "nan",
        "cuda",
        "malformed line",
        "answer range",
        "one choice",
        "empty split",
        "missing tensor",
        "unexpected tensor",
        "shape vs config",
        "shard outside",
        "shard absolute",
        "auto_map tokenizer",
        "batch size 0",
        "lone surrogate",
        "too long",
    ],
)
def test_score_bad_input(micro_world, tmp_path, capsys, kind):
    import re
    import shutil

    if kind == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    ckpt = tmp_path / "ckpt"
    shutil.copytree(micro_world / "checkpoints/original", ckpt)
    facts = tmp_path / "facts.jsonl"
    shutil.copy(micro_world / "facts.jsonl", facts)
    extra, message = _corrupt(kind, ckpt, facts)
    assert main(["score", str(ckpt), "--facts", str(facts), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), captured.err
