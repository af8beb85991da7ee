"""Model names as users write them (issue 31): a Hugging Face hub id resolves through the local HF
cache — laid out here by the test, offline — wherever a checkpoint path is accepted, and the keys hash
the snapshot's files."""

import shutil

import pytest

from forensics.cli import main
from forensics.errors import InputError
from forensics.models.digest import checkpoint_digest
from forensics.models.hub import resolve_model
from forensics.study.config_file import load_config

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def hub(micro_world, tmp_path, monkeypatch):
    """A local HF cache holding `tiny/original` at two commits (`main` → COMMIT, a tag `v1` → OTHER,
    the never-learned model) and nothing else, with the hub offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--tiny--original"
    for commit, model in ((COMMIT, "original"), (OTHER, "never_learned")):
        shutil.copytree(micro_world / "checkpoints" / model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v1").write_text(OTHER)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo


def test_a_hub_id_is_its_cached_snapshot_and_keys_hash_its_files(hub, micro_world):
    assert resolve_model("tiny/original") == hub / "snapshots" / COMMIT
    assert resolve_model("tiny/original@v1") == hub / "snapshots" / OTHER
    assert resolve_model(f"tiny/original@{OTHER}") == hub / "snapshots" / OTHER
    assert checkpoint_digest(resolve_model("tiny/original")) == checkpoint_digest(
        micro_world / "checkpoints" / "original"
    )
    with pytest.raises(
        InputError, match=r"tiny/absent: no such folder, and not in the local Hugging Face cache"
    ):
        resolve_model("tiny/absent")


def test_a_folder_of_that_name_wins(hub, tmp_path, micro_world):
    here = tmp_path / "tiny" / "original"
    shutil.copytree(micro_world / "checkpoints" / "never_learned", here)
    assert resolve_model("tiny/original", tmp_path) == here.resolve()


def test_hub_ids_in_a_study_and_on_the_command_line(hub, micro_world, tmp_path, capsys):
    config = tmp_path / "s.toml"
    config.write_text(
        f"""[models]
original = "tiny/original"
never_learned = "tiny/original@v1"
[models.unlearned]
m = "tiny/original@v1"
[facts]
path = "{micro_world / "facts.jsonl"}"
forget = ["forget_0", "forget_1", "forget_2"]
retain = ["retain"]
"""
    )
    cfg = load_config(config)
    assert cfg.original == hub / "snapshots" / COMMIT and cfg.unlearned["m"] == hub / "snapshots" / OTHER
    facts = str(micro_world / "facts.jsonl")
    assert main(["score", "tiny/original", "--facts", facts, "--splits", "retain"]) == 0
    assert "retain" in capsys.readouterr().out
    assert main(["score", "tiny/absent", "--facts", facts]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tiny/absent: no such folder" in err[0] and "HF_HUB_OFFLINE" in err[0]
    config.write_text(config.read_text().replace('m = "tiny/original@v1"', 'm = "tiny/nothing"'))
    with pytest.raises(InputError, match=r"s.toml: \[models.unlearned\] 'm': tiny/nothing: no such folder"):
        load_config(config)
