"""Output folders: names from data never climb out, other programs' folders are not overwritten, and
two processes never write one folder at once."""

import fcntl
import json
import os
import shutil

import pytest

from forensics.attacks.relearn import RelearnSettings, relearn
from forensics.cli import main
from forensics.errors import InputError
from forensics.facts.core import load_jsonl, select
from forensics.outdir import LOCK, MARKER, claim, safe_name
from tests.conftest import accuracy_study


@pytest.mark.parametrize("name", ["../../x", "..", ".", "/abs/path", "a/b", "ü", "", "\\..\\x", ".hidden"])
def test_safe_name_is_one_plain_component(name):
    clean = safe_name(name)
    assert clean and clean not in (".", "..") and "/" not in clean and "\\" not in clean
    assert not clean.startswith(".") and ".." not in clean
    assert clean.isascii()


def test_safe_name_keeps_plain_names_and_distinct_names_distinct():
    assert safe_name("forget_0") == "forget_0" and safe_name("gd-v2.1") == "gd-v2.1"
    # names that clean to the same text ("a_b", "_") stay apart, every pair of them
    names = ["a/b", "a_b", "a?b", "a b", "a\\b", "a..b", ".a_b", "ü", "é"]
    assert len({safe_name(n) for n in names}) == len(names)


def test_split_and_model_names_stay_inside_out(micro_world, tmp_path):
    lines = [json.loads(x) for x in (micro_world / "facts.jsonl").read_text().splitlines()]
    for record in lines:
        if record["split"] == "forget_0":
            record["split"] = "../../x"
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps(r) + "\n" for r in lines))
    sets = select(load_jsonl(facts), ["../../x", "forget_1", "forget_2"], ["retain"])
    out = tmp_path / "deep" / "er" / "out"
    original = micro_world / "checkpoints/original"
    models = {"original": original, "../../../m": original}
    result = relearn(
        models, sets, out, RelearnSettings(lrs=(1e-3,), epochs=1, seeds=(0,), extend_rounds=0), progress=False
    )
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != facts]
    assert written and all(out.resolve() in p.resolve().parents for p in written), written
    assert len(list((out / "relearn").rglob("*.json"))) == 2 * 3
    assert set(result["metrics"]) == {"original", "../../../m"}


def test_a_folder_that_is_not_ours_is_refused_and_kept(micro_world, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "facts.jsonl").write_text("my own data\n")
    (theirs / "results.json").write_text('{"mine": true}\n')
    args = ["world", "--out", str(theirs), "--quiet", "--people", "8", "--ships", "8", "--forget-facts", "4"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty and not a forensics output folder" in err[0]
    assert (theirs / "facts.jsonl").read_text() == "my own data\n"
    assert sorted(p.name for p in theirs.iterdir()) == ["facts.jsonl", "results.json"]


def test_study_out_on_an_unrelated_folder_is_refused_unless_forced(micro_world, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    (theirs / "report").mkdir(parents=True)
    (theirs / "results.json").write_text('{"mine": true}\n')
    for name in ("original", "never_learned"):
        (tmp_path / name).symlink_to(micro_world / "checkpoints" / name)
    (tmp_path / "facts.jsonl").symlink_to(micro_world / "facts.jsonl")
    config = accuracy_study(tmp_path, out=str(theirs))
    assert main(["study", str(config), "--quiet"]) == 2
    assert "not empty and not a forensics output folder" in capsys.readouterr().err
    assert (theirs / "results.json").read_text() == '{"mine": true}\n'
    assert sorted(p.name for p in theirs.iterdir()) == ["report", "results.json"]
    # forced, it writes into their folder, but never over their file of its own name
    assert main(["study", str(config), "--quiet", "--force"]) == 2
    assert "results.json: exists and was not written by forensics" in capsys.readouterr().err
    assert (theirs / "results.json").read_text() == '{"mine": true}\n'
    (theirs / "results.json").rename(theirs / "mine.json")
    assert main(["study", str(config), "--quiet", "--force"]) == 0
    assert (theirs / MARKER).exists() and "accuracy" in json.loads((theirs / "results.json").read_text())
    assert (theirs / "mine.json").read_text() == '{"mine": true}\n'


def test_unlearn_does_not_replace_a_checkpoint_it_did_not_make(micro_world, tmp_path, capsys):
    out = tmp_path / "o"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(micro_world / "checkpoints/never_learned", out / "checkpoints/gd")
    (out / "checkpoints/gd/forensics.json").write_text('{"made_by": "someone else"}')
    (out / MARKER).write_text("{}")
    args = ["unlearn", "--method", "gd", "--original", str(micro_world / "checkpoints/original")]
    args += ["--facts", str(micro_world / "facts.jsonl"), "--forget", "forget_0,forget_1,forget_2"]
    args += ["--retain", "retain", "--out", str(out), "--quiet", "--steps", "1", "--lr", "1e-3"]
    before = (out / "checkpoints/gd/model.safetensors").read_bytes()
    assert main(args) == 2
    assert "is not a checkpoint `forensics unlearn` made" in capsys.readouterr().err
    assert (out / "checkpoints/gd/model.safetensors").read_bytes() == before


def test_a_second_process_on_the_same_out_is_refused(tmp_path):
    out = tmp_path / "o"
    with claim(out, "test"):
        pass  # the folder is now ours
    fd = os.open(out / LOCK, os.O_RDWR)  # another process holding the lock
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(InputError, match="another forensics process is writing here"):
            with claim(out, "test"):
                pass
    finally:
        os.close(fd)
    with claim(out, "test"), claim(out, "nested in the same process"):
        pass


def test_bad_input_inside_a_new_folder_leaves_nothing(tmp_path):
    with pytest.raises(InputError):
        with claim(tmp_path / "new", "test"):
            raise InputError("bad")
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        with claim(tmp_path / "file", "test"):
            pass


def test_any_failure_inside_a_new_folder_leaves_nothing_but_never_removes_work(tmp_path):
    """Issue #28: an OSError (or any failure) after `claim` left an empty claimed folder behind. A
    folder made by `claim` (and the parents made for it) goes again when only our marker, lock and
    empty folders are in it; one holding anything the work wrote stays for a rerun; a folder that
    was there before is never removed."""
    new = tmp_path / "a" / "b" / "out"
    for failure in (OSError(5, "disk on fire"), ValueError("bad JSON"), KeyboardInterrupt()):
        with pytest.raises(type(failure)):
            with claim(new, "test"):
                (new / "stages" / "empty").mkdir(parents=True)
                raise failure
        assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError):
        with claim(new, "test"):
            (new / "stages").mkdir()
            (new / "stages" / "accuracy.json").write_text("{}")  # finished work: kept to resume
            raise RuntimeError("a later stage failed")
    assert (new / "stages" / "accuracy.json").read_text() == "{}" and (new / MARKER).is_file()
    # a folder the claim did not make stays, even when it holds only our files
    (tmp_path / "old").mkdir()
    with pytest.raises(OSError):
        with claim(tmp_path / "old", "test"):
            raise OSError(28, "no space")
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == sorted([MARKER, LOCK])
    # a link inside is not ours: kept, and what it points to untouched
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "data").write_text("mine")
    with pytest.raises(OSError):
        with claim(tmp_path / "new2", "test"):
            (tmp_path / "new2" / "link").symlink_to(tmp_path / "theirs")
            raise OSError(5, "x")
    assert (tmp_path / "new2" / "link").is_symlink() and (tmp_path / "theirs" / "data").read_text() == "mine"


def test_bad_input_after_partial_work_in_a_new_folder_keeps_the_work(tmp_path):
    """The old `InputError` branch deleted the whole new folder (rmtree); now it removes only what
    `claim` wrote, so nothing a command wrote is deleted by a later bad-input error."""
    with pytest.raises(InputError):
        with claim(tmp_path / "new", "test"):
            (tmp_path / "new" / "result.json").write_text("{}")
            raise InputError("bad")
    assert (tmp_path / "new" / "result.json").exists()


def test_a_real_command_failing_after_its_claim_leaves_no_folder(tmp_path, paper_data, capsys):
    """Issue #28, as seen: `forensics real --model /nonexistent.gguf --out X` (an OSError after the
    claim, the data already read) left an empty X; and a file that is not a GGUF (bad input)."""
    garbage = tmp_path / "g.gguf"
    garbage.write_text("not a model")
    for model, message in ((tmp_path / "nonexistent.gguf", "No such file"), (garbage, "not a GGUF file")):
        out = tmp_path / "runs" / "x"
        args = ["real", "--model", str(model), "--data", str(paper_data), "--out", str(out), "--quiet"]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and str(model) in err[0], err
        assert not (tmp_path / "runs").exists()


def test_unlearn_with_force_refuses_to_replace_a_checkpoint_it_did_not_make_before_unlearning(
    micro_world, tmp_path, capsys
):
    """--force writes into a folder of the user's; a checkpoint there that forensics did not write
    is refused by name before the sweep runs, and left as it was."""
    out = tmp_path / "o"
    (out / "checkpoints").mkdir(parents=True)
    theirs = out / "checkpoints/gd"
    shutil.copytree(micro_world / "checkpoints/never_learned", theirs)
    (theirs / "forensics.json").unlink()  # a checkpoint made elsewhere
    (out / MARKER).write_text("{}")
    args = ["unlearn", "--method", "gd", "--original", str(micro_world / "checkpoints/original")]
    args += ["--facts", str(micro_world / "facts.jsonl"), "--forget", "forget_0,forget_1,forget_2"]
    args += ["--retain", "retain", "--out", str(out), "--quiet", "--steps", "1", "--lr", "1e-3", "--force"]
    before = {p.name: p.read_bytes() for p in theirs.iterdir()}
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and was not written by forensics" in err[0], err
    assert {p.name: p.read_bytes() for p in theirs.iterdir()} == before
    assert not list((out / "checkpoints").glob(".*"))  # no sweep was started
