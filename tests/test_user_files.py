"""A user's files in and beside every folder a command writes survive its reruns, --force included
(docs/design.md §8): unlearn reruns, study/world --force, the checkpoint saver, the report writer."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from forensics.cli import main
from forensics.errors import InputError
from forensics.models.checkpoint import METADATA, check_dir, load_checkpoint, save_checkpoint
from tests.conftest import accuracy_study
from tests.test_nothing_deleted import COMMANDS, snapshot

FORGET = "forget_0,forget_1,forget_2"


def unlearn(d: Path, micro_world: Path, *extra: str) -> int:
    """`forensics unlearn` of gd on the micro world's original into `d` (one sweep point, few steps)."""
    args = ["unlearn", "--method", "gd", "--original", str(micro_world / "checkpoints/original")]
    args += ["--facts", str(micro_world / "facts.jsonl"), "--forget", FORGET, "--retain", "retain"]
    return main([*args, "--out", str(d), "--budget", "1", "--quiet", *extra])


def test_an_unlearn_rerun_keeps_the_users_files_in_its_checkpoint(micro_world, tmp_path, capsys):
    u = tmp_path / "u"
    assert unlearn(u, micro_world, "--steps", "2") == 0
    gd = u / "checkpoints/gd"
    (gd / "README.md").write_text("my notes on this checkpoint\n")
    (gd / "eval").mkdir()
    (gd / "eval/results.csv").write_text("a,b\n1,2\n")
    (u / "checkpoints/.gd.sweep").mkdir()  # the name the sweep folder once had
    (u / "checkpoints/.gd.sweep/keep.txt").write_text("mine\n")
    first = json.loads((gd / METADATA).read_text())
    assert unlearn(u, micro_world, "--steps", "3") == 0
    assert unlearn(u, micro_world, "--steps", "4", "--force") == 0
    assert (gd / "README.md").read_text() == "my notes on this checkpoint\n"
    assert (gd / "eval/results.csv").read_text() == "a,b\n1,2\n"
    assert (u / "checkpoints/.gd.sweep/keep.txt").read_text() == "mine\n"
    meta = json.loads((gd / METADATA).read_text())
    assert meta["request"]["settings"]["steps"] == 4 != first["request"]["settings"]["steps"]
    assert "README.md" not in meta["files"] and "model.safetensors" in meta["files"]
    load_checkpoint(gd)
    leftovers = [p.name for p in (u / "checkpoints").iterdir() if p.name not in ("gd", ".gd.sweep")]
    assert leftovers == []  # no sweep or temporary folder left beside it


def test_unlearn_budget_is_the_most_runs_the_first_round_included(micro_world, tmp_path, capsys):
    assert unlearn(tmp_path / "u", micro_world, "--steps", "1") == 0
    meta = json.loads((tmp_path / "u/checkpoints/gd" / METADATA).read_text())
    assert meta["cost"]["runs"] == len(meta["sweep"]) == 1


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_checkpoints_follow_the_umask(micro_world, tmp_path, umask, capsys):
    old = os.umask(umask)
    try:
        assert unlearn(tmp_path / "u", micro_world, "--steps", "1") == 0
    finally:
        os.umask(old)
    gd = tmp_path / "u/checkpoints/gd"
    assert stat.S_IMODE(gd.stat().st_mode) == 0o777 & ~umask
    for name in ("model.safetensors", METADATA, "config.json"):
        assert stat.S_IMODE((gd / name).stat().st_mode) == 0o666 & ~umask, name


def test_unlearn_on_a_full_disk_is_one_line_and_leaves_nothing(micro_world, tmp_path):
    """`ulimit -f` makes the checkpoint's write fail (safetensors raises its own error type)."""
    args = ["unlearn", "--method", "gd", "--original", str(micro_world / "checkpoints/original")]
    args += ["--facts", str(micro_world / "facts.jsonl"), "--forget", FORGET, "--retain", "retain"]
    args += ["--out", str(tmp_path / "u"), "--budget", "1", "--steps", "1", "--quiet"]
    script = f"ulimit -f 40; exec {sys.executable} -m forensics.cli {' '.join(args)}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write the checkpoint" in lines[0], done.stderr
    assert not (tmp_path / "u").exists() or not list((tmp_path / "u/checkpoints").glob("*"))


def test_a_failed_save_leaves_the_old_checkpoint_whole(micro_world, tmp_path):
    out = tmp_path / "ckpt"
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    save_checkpoint(model, tok, out, {"made_by": "test", "n": 1})
    (out / "tokenizer_config.json").unlink()
    (out / "tokenizer_config.json").mkdir()  # a folder where the save will put a file
    before = snapshot(out)
    with torch_no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(InputError, match="tokenizer_config.json: is not a plain file"):
        save_checkpoint(model, tok, out, {"made_by": "test", "n": 2})
    assert snapshot(out) == before
    assert json.loads((out / METADATA).read_text())["n"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folder left beside it


def torch_no_grad():
    import torch

    return torch.no_grad()


def test_a_save_over_a_legacy_metadata_removes_no_file(micro_world, tmp_path, capsys):
    """A folder whose forensics.json lists no files (as `unlearn` once wrote it): a save replaces the
    checkpoint's own files but removes none, so a user's vocab.json / merges.txt stay."""
    out = tmp_path / "ckpt"
    shutil.copytree(micro_world / "checkpoints/original", out)
    meta = json.loads((out / METADATA).read_text())
    meta.pop("files", None)
    (out / METADATA).write_text(json.dumps(meta))
    (out / "vocab.json").write_text('{"mine": 0}')
    (out / "merges.txt").write_text("#mine\n")
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    save_checkpoint(model, tok, out, {"made_by": "test"})
    assert (out / "vocab.json").read_text() == '{"mine": 0}'
    assert (out / "merges.txt").read_text() == "#mine\n"
    check_dir(out)


def test_import_force_over_an_unlearned_folder_keeps_the_users_tokenizer_files(micro_world, tmp_path, capsys):
    from tests.test_gguf_import import write_gguf

    u = tmp_path / "u"
    assert unlearn(u, micro_world, "--steps", "1") == 0
    gd = u / "checkpoints/gd"
    for name in ("vocab.json", "merges.txt"):
        assert not (gd / name).exists()
    (gd / "vocab.json").write_text('{"mine": 0}')
    (gd / "merges.txt").write_text("#mine\n")
    write_gguf(micro_world / "checkpoints/original", tmp_path / "m.gguf")
    assert main(["import", str(tmp_path / "m.gguf"), "--out", str(gd), "--force"]) in (0, 2)
    assert (gd / "vocab.json").read_text() == '{"mine": 0}'
    assert (gd / "merges.txt").read_text() == "#mine\n"


def users_study(d: Path, micro_world: Path) -> Path:
    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, d / name)
    shutil.copy(micro_world / "facts.jsonl", d / "facts.jsonl")
    return accuracy_study(d, out=str(d))


@pytest.mark.parametrize("users", ["results.json", "summary.md", "stages/accuracy.json", "report/index.html"])
def test_study_force_refuses_a_users_file_of_its_name_before_any_work(users, micro_world, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    config = users_study(d, micro_world)
    (d / users).parent.mkdir(parents=True, exist_ok=True)
    (d / users).write_text("the user's own\n")
    before = snapshot(d)
    assert main(["study", str(config), "--quiet", "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and users in err[0] and "not written by forensics" in err[0], err
    assert snapshot(d) == before
    assert not (d / "stages").exists() or users.startswith("stages")  # no work started


def test_study_run_force_from_python_refuses_a_users_results(micro_world, tmp_path):
    import forensics

    d = tmp_path / "d"
    d.mkdir()
    users_study(d, micro_world)
    (d / "results.json").write_text("{}")
    study = forensics.Study.from_toml(d / "s.toml")
    with pytest.raises(forensics.InputError, match="results.json: exists and was not written"):
        study.run(force=True, progress=False)
    assert (d / "results.json").read_text() == "{}"


def test_world_force_refuses_a_users_facts_file(tmp_path, capsys):
    from tests.test_cli import MICRO

    d = tmp_path / "w"
    d.mkdir()
    (d / "facts.jsonl").write_text("my facts\n")
    assert main(["world", "--out", str(d), *MICRO, "--force"]) == 2
    assert "facts.jsonl: exists and was not written by forensics" in capsys.readouterr().err
    assert sorted(p.name for p in d.iterdir()) == ["facts.jsonl"]


def test_a_forced_folders_files_stay_the_users_on_a_rerun(micro_world, tmp_path, capsys):
    """A file that was in the folder when --force made it ours is never replaced, even by a later run
    whose outputs did not name it (here: a stage the second study adds)."""
    d = tmp_path / "d"
    d.mkdir()
    config = users_study(d, micro_world)
    (d / "stages").mkdir()
    (d / "stages/weights.json").write_text("mine\n")
    assert main(["study", str(config), "--quiet", "--force"]) == 0
    config.write_text(config.read_text().replace('run = ["accuracy"]', 'run = ["accuracy", "weights"]'))
    assert main(["study", str(config), "--quiet"]) == 2
    assert "stages/weights.json: exists and was not written by forensics" in capsys.readouterr().err
    assert (d / "stages/weights.json").read_text() == "mine\n"


def test_writers_never_touch_a_users_temporary_file(micro_world, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    config = users_study(d, micro_world)
    assert main(["study", str(config), "--quiet", "--force"]) == 0
    strays = [d / ".results.json.tmp", d / ".summary.md.tmp", d / "report/.index.html.tmp"]
    strays.append(d / "stages/.accuracy.json.tmp")
    for stray in strays:
        stray.write_text("the user's\n")
    (d / "stages/accuracy.json").unlink()  # the stage is written again
    assert main(["study", str(config), "--quiet"]) == 0
    assert main(["report", str(d / "results.json")]) == 0
    for stray in strays:
        assert stray.read_text() == "the user's\n", stray


def probe_args(d: Path, micro_world: Path) -> list[str]:
    shutil.copytree(micro_world, d, dirs_exist_ok=True)
    return ["probe", "--world", str(d), "--models", "original,never_learned"]


def attack_args(d: Path, micro_world: Path) -> list[str]:
    shutil.copytree(micro_world, d, dirs_exist_ok=True)
    return ["attack", "--world", str(d), "--models", "original,never_learned", "--bits", "8"]


def diff_args(d: Path, micro_world: Path) -> list[str]:
    ck = micro_world / "checkpoints"
    return ["diff", str(ck / "original"), str(ck / "never_learned"), "--out", str(d / "diff.json")]


WRITERS = {**{k: v for k, v in COMMANDS.items() if k != "cache"}, "probe": probe_args, "attack": attack_args}
WRITERS["diff"] = diff_args


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_rerun_keeps_the_users_files_in_and_beside_every_folder_it_wrote(
    command, micro_world, tmp_path, capsys
):
    """Each writing command runs once (forced into its inputs' folder), the user then adds a file in
    every folder it wrote and a `.NAME.tmp` beside every file; a rerun, plain and forced, keeps them."""
    d = tmp_path / "d"
    d.mkdir()
    build = WRITERS[command]
    args = build(d, micro_world, tmp_path) if command == "report" else build(d, micro_world)
    force = [] if command in ("report", "diff") else ["--force"]
    assert main([*args, *force]) == 0, capsys.readouterr().err
    ours = [p for p in d.rglob("*") if not p.is_symlink()]
    for folder in [d, *(p for p in ours if p.is_dir())]:
        (folder / "users-notes.txt").write_text(f"the user's, in {folder.name}\n")
    for f in (p for p in ours if p.is_file() and not p.name.startswith(".")):
        (f.parent / f".{f.name}.tmp").write_text("the user's temporary file\n")
    users = {k: v for k, v in snapshot(d).items() if "users-notes" in k.name or k.name.endswith(".tmp")}
    for extra in ([], force):
        main([*args, *extra])
        after = snapshot(d)
        for name, digest in users.items():
            assert after.get(name) == digest, (
                f"{command}: {name} was {'changed' if name in after else 'removed'}"
            )
