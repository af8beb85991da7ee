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


def test_world_command_prints_its_table(tmp_path):
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
        (["--facts-dir", "{tmp}/missing", "--forget", "a,b", "--retain", "c"], "missing: no such file or directory"),
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
