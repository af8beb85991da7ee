"""The `forensics` command: the world table, and bad input as one line on stderr with exit 2."""

import json
import re
import subprocess
import sys

import pytest

from forensics.cli import main
from forensics.cli.finish import format_table

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


def test_format_table_prints_a_dash_for_a_value_not_measured():
    """A lens that did not run is None in the rows: shown as "–" (as in the HTML report), not "None"."""
    table = format_table(
        [{"method": "gd", "RTT acc V": None, "forget": 0.25}], ["method", "RTT acc V", "forget"]
    )
    assert table.splitlines()[1].split() == ["gd", "–", "0.25"]
    assert "None" not in table


def test_score_refuses_repeated_choices_before_loading_a_model(tmp_path, capsys):
    """The answer on the second copy of a repeated choice would always be scored wrong: refused in one
    line naming file:line and the choice, before any checkpoint is read."""
    facts = tmp_path / "facts.jsonl"
    rows = [
        {"question": "A?", "choices": ["1901", "1902", "1903", "1904"], "answer": 0},
        {"question": "B?", "choices": ["1901", "1902", "1903", " 1902"], "answer": 3},
    ]
    facts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", str(tmp_path / "no-checkpoint"), "--facts", str(facts)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "facts.jsonl:2: choice ' 1902' repeats choice '1902'" in lines[0], lines


def test_score_refuses_two_files_giving_one_split(tmp_path, capsys):
    """`good.jsonl` beside `good.json` in a --facts folder would count split `good` twice."""
    record = json.dumps({"question": "A?", "choices": ["1", "2"], "answer": 0}) + "\n"
    for name in ("good.jsonl", "good.json"):
        (tmp_path / name).write_text(record)
    assert main(["score", str(tmp_path / "no-checkpoint"), "--facts", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(
        r"good\.json and .*good\.jsonl: both files give split 'good'", lines[0]
    )


@pytest.mark.parametrize(
    "args, message",
    [
        # argparse's messages name what was expected, not the program's function names
        (["relearn", "--world", "{tmp}", "--workers", "abc"], "invalid positive integer value: 'abc'"),
        (["attack", "--world", "{tmp}", "--bits", "8,x"], "invalid comma-separated integers value"),
        # settings that would be silently ignored
        (["relearn", "--world", "{tmp}", "--lora-rank", "4"], "--lora-rank: only with --method lora"),
        (["world", "--out", "{tmp}/w", "--implant-lr", "1e-3"], "--implant-lr needs --kinds"),
        # an empty device is not `auto`
        (["study", "{config}", "--device", ""], "device '': choose auto, cpu, cuda or cuda:N"),
        (["relearn", "--world", "{tmp}", "--executor", "ray", "--ray-timeout", "0"], "must be positive"),
        (["real", "--out", "{tmp}/r", "--lenses", "tea"], "--lenses: unknown lens 'tea'"),
        (["real", "--out", "{tmp}/r", "--hours", "0"], "--hours"),
        (["validate", "--world", "{tmp}", "--lenses", "weights"], "'weights' is not an information lens"),
    ],
)
def test_careless_flags_are_one_line(micro_world, tmp_path, capsys, args, message):
    from tests.conftest import accuracy_study

    for ckpt in ("original", "never_learned"):
        (tmp_path / ckpt).symlink_to(micro_world / "checkpoints" / ckpt)
    (tmp_path / "facts.jsonl").symlink_to(micro_world / "facts.jsonl")
    config = accuracy_study(tmp_path)
    assert main([a.format(tmp=tmp_path, config=config) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert "_positive_int" not in err[0] and "<lambda>" not in err[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()


def test_score_leaves_out_repeated_choices_with_drop_duplicates(micro_world, tmp_path, capsys):
    """The paper's random-birthdays has questions whose choices repeat: `--drop-duplicates` scores the
    rest and says how many were left out."""
    lines = (micro_world / "facts.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines if json.loads(x)["split"] == "retain"]
    bad = dict(rows[0], choices=[rows[0]["choices"][0]] * 2 + rows[0]["choices"][2:])
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps(r) + "\n" for r in [bad, *rows[1:]]))
    checkpoint = str(micro_world / "checkpoints/original")
    assert main(["score", checkpoint, "--facts", str(facts)]) == 2
    assert "(--drop-duplicates)" in capsys.readouterr().err
    assert main(["score", checkpoint, "--facts", str(facts), "--drop-duplicates"]) == 0
    out = capsys.readouterr().out
    assert f"retain  {len(rows) - 1} " in out and "left out 1 questions whose choices repeat" in out


def test_the_real_models_lens_lists_name_registered_lenses():
    """`forensics real`'s 2-core default and `bench/gpu_check.sh`'s every-lens run name lenses the
    registry has (a renamed lens would make `make real` refuse to start)."""
    from pathlib import Path

    from forensics.cli.real import REAL_LENSES
    from forensics.study.config import LENSES

    script = (Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh").read_text()
    on_gpu = re.search(r"real .*?--lenses (\S+)", script, re.S).group(1).split(",")
    assert set(REAL_LENSES) < set(on_gpu) and set(on_gpu) == set(LENSES) - {"uds"}


@pytest.mark.parametrize(
    "part, file, line, message",
    [
        ("random-birthdays", "split_3.jsonl", "{not json", r"random-birthdays/split_3.jsonl:\d+: "),
        ("random-birthdays", "corpus_split_2.jsonl", '{"txt": "x"}', r"corpus_split_2.jsonl:\d+: .*'text'"),
        ("years", "split_1.jsonl", '{"question": "Q?"}', r"years/split_1.jsonl:\d+: "),
    ],
)
def test_real_reads_all_its_data_before_any_model(tmp_path, paper_data, capsys, part, file, line, message):
    """Issue #28: a broken `random-birthdays/` failed only after the known-fact scan (~97 s of model
    work). Every data file is parsed before the model is read: with a model that does not exist, the
    data's error (one line naming the file) is the one given, and no output folder is made."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(paper_data, data)
    with open(data / part / file, "a") as f:
        f.write(line + "\n")
    out = tmp_path / "r"
    args = ["real", "--model", str(tmp_path / "nonexistent.gguf"), "--data", str(data), "--out", str(out)]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]) and "nonexistent" not in err[0], err
    assert not out.exists()


@pytest.mark.parametrize(
    "lenses, message",
    [
        (",", "--lenses: an empty list"),
        ("accuracy,relearn,accuracy", "--lenses: lens 'accuracy' named twice"),
        ("relearn", "--lenses: 'accuracy' is needed"),
    ],
)
def test_real_refuses_an_empty_or_repeated_lens_list(tmp_path, capsys, lenses, message):
    """Issue #28: `real --lenses ,` ran the default lenses; a lens named twice was kept."""
    assert main(["real", "--out", str(tmp_path / "r"), "--lenses", lenses, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


def test_real_refuses_more_rotations_than_forget_splits(tmp_path, capsys):
    assert main(["real", "--out", str(tmp_path / "r"), "--rotations", "5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rotations 5: more than the 2 forget splits" in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["relearn", "--seeds", "0,0"], "'seeds': seed 0 given twice"),
        (["relearn", "--seeds", "-1"], "'seeds': seed -1 is negative"),
        (["probe", "--seed", "-1"], "'seed': seed -1 is negative"),
    ],
)
def test_seeds_given_on_the_command_line_are_checked(micro_world, capsys, args, message):
    """Issue #28: the one seeds check is the CLI's too (RTT and probe seeds)."""
    before = sorted(p.relative_to(micro_world) for p in micro_world.rglob("*"))
    assert main([args[0], "--world", str(micro_world), *args[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.relative_to(micro_world) for p in micro_world.rglob("*")) == before
