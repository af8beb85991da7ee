"""A study checks every checkpoint as a pair with the original, and every text against the context,
before any stage: one line, exit 2, nothing written. Plus the CLI's other one-line failures."""

import errno
import json
import re
import shutil

import pytest

from forensics.cli import main
from tests.conftest import accuracy_study


@pytest.fixture
def study(micro_world, tmp_path):
    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, tmp_path / name)
    shutil.copy(micro_world / "facts.jsonl", tmp_path / "facts.jsonl")
    config = accuracy_study(tmp_path)
    return tmp_path, config


def _permute_tokenizer(path):
    tok = json.loads((path / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = sorted(vocab)[20:22]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (path / "tokenizer.json").write_text(json.dumps(tok))


def _grow_vocab(path):
    from safetensors.torch import load_file, save_file

    tensors = load_file(path / "model.safetensors")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        if name in tensors:
            tensors[name] = tensors[name].repeat(2, 1)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((path / "config.json").read_text())
    config["vocab_size"] *= 2
    (path / "config.json").write_text(json.dumps(config))


def _other_architecture(path):
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (path / "config.json").write_text(json.dumps(config))


def _long_question(root):
    lines = (root / "facts.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    record["question"] = " ".join(["ship"] * 700) + "?"
    lines[-1] = json.dumps(record)
    (root / "facts.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: _permute_tokenizer(r / "never_learned"), r"model 'm' has a different tokenizer"),
        (
            lambda r: _grow_vocab(r / "never_learned"),
            r"model 'm' is vocab_size 608, the original \(.*\) is 304",
        ),
        (
            lambda r: _other_architecture(r / "never_learned"),
            r"model 'm' is architectures \['GPT2LMHeadModel'\]",
        ),
        (
            _long_question,
            r"facts\.jsonl:\d+: a text of this fact is \d+ tokens, longer than the model's context",
        ),
    ],
)
def test_pair_and_context_checked_before_any_stage(study, capsys, edit, message):
    root, config = study
    edit(root)
    assert main(["study", str(config), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not (root / "out").exists()


def test_report_refuses_a_wrong_typed_or_future_schema(tmp_path, capsys):
    for version, message in (
        ("1", "must be an integer"),
        (99, "schema_version 99 is not one this version reads"),
    ):
        bad = tmp_path / "results.json"
        bad.write_text(json.dumps({"schema_version": version, "summary": {}}))
        assert main(["report", str(bad)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert not (tmp_path / "report").exists()


def test_interrupt_and_disk_errors_are_one_line(study, capsys, monkeypatch):
    root, config = study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("forensics.models.scoring.accuracy_table", interrupted)
    assert main(["study", str(config), "--quiet"]) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["forensics: stopped (SIGINT); finished stages and runs are kept, rerun to resume"]

    def full(data, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.undo()
    monkeypatch.setattr("forensics.study.run.write_json", full)
    assert main(["study", str(config), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(r"stages/accuracy\.json: No space left on device", lines[0]), lines
