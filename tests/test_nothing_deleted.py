"""No command removes or replaces a file it did not write, --force included: each command that
writes runs, with and without --force, on a folder holding a foreign file and the command's own
inputs, and every file that was there before is there after, byte for byte."""

import hashlib
import shutil

import pytest

from forensics.cli import main
from tests.conftest import accuracy_study
from tests.test_cli import MICRO
from tests.test_gguf_import import write_gguf


def snapshot(folder):
    return {
        p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def world_args(d, micro_world):
    return ["world", "--out", str(d), *MICRO]


def unlearn_args(d, micro_world):
    shutil.copytree(micro_world / "checkpoints/original", d / "original")
    shutil.copy(micro_world / "facts.jsonl", d / "facts.jsonl")
    args = ["unlearn", "--method", "gd", "--original", str(d / "original"), "--facts", str(d / "facts.jsonl")]
    return [*args, "--forget", "forget_0,forget_1,forget_2", "--retain", "retain", "--out", str(d)] + [
        "--quiet",
        "--steps",
        "1",
        "--lr",
        "1e-3",
    ]


def study_args(d, micro_world):
    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, d / name)
    shutil.copy(micro_world / "facts.jsonl", d / "facts.jsonl")
    return ["study", str(accuracy_study(d, out=str(d))), "--quiet"]


def report_args(d, micro_world, tmp_path):
    for name in ("original", "never_learned"):
        (tmp_path / name).symlink_to(micro_world / "checkpoints" / name)
    (tmp_path / "facts.jsonl").symlink_to(micro_world / "facts.jsonl")
    assert main(["study", str(accuracy_study(tmp_path, out="made")), "--quiet"]) == 0
    shutil.copy(tmp_path / "made/results.json", d / "results.json")
    return ["report", str(d / "results.json")]


def import_args(d, micro_world):
    write_gguf(micro_world / "checkpoints/original", d / "src.gguf")
    return ["import", str(d / "src.gguf"), "--out", str(d)]


def relearn_args(d, micro_world):
    shutil.copytree(micro_world, d, dirs_exist_ok=True)
    return ["relearn", "--world", str(d), "--lrs", "1e-3", "--epochs", "1", "--quiet"]


def cache_args(d, micro_world):
    return ["cache", str(d), "--clear"]


COMMANDS = {
    "world": world_args,
    "unlearn": unlearn_args,
    "study": study_args,
    "report": report_args,
    "import": import_args,
    "relearn": relearn_args,
    "cache": cache_args,
}


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_command_deletes_a_file_it_did_not_write(command, force, micro_world, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("the user's own notes\n")
    build = COMMANDS[command]
    args = build(d, micro_world, tmp_path) if command == "report" else build(d, micro_world)
    if force and command not in ("report", "cache"):
        args.append("--force")
    before = snapshot(d)
    code = main(args)
    capsys.readouterr()
    assert code in (0, 2)
    after = snapshot(d)
    for name, digest in before.items():
        assert after.get(name) == digest, f"{command}: {name} was {'changed' if name in after else 'removed'}"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp left beside
