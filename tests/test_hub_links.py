"""A hub snapshot's links stay inside its repo's cache folder (issue 39, item 18): the HF cache links
each snapshot file to the repo's `blobs/`; a link that leads anywhere else is refused with one line
naming the link and where it points, before anything is read through it."""

import os
import re

import pytest

from forensics.cli import main
from forensics.errors import InputError
from forensics.models.hub import resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(micro_world, tmp_path, monkeypatch):
    """A local HF cache laid out as the hub client writes it: `tiny/original`'s files in `blobs/`,
    its snapshot at COMMIT made of relative links to them, `main` → COMMIT; the hub offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--tiny--original"
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, f in enumerate(sorted((micro_world / "checkpoints" / "original").iterdir())):
        (repo / "blobs" / f"blob{i}").write_bytes(f.read_bytes())
        (snapshot / f.name).symlink_to(f"../../blobs/blob{i}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return snapshot


def test_links_into_the_repos_blobs_are_the_snapshot(hub):
    assert resolve_model("tiny/original") == hub


@pytest.mark.parametrize(
    "name, where",
    [
        ("tokenizer.json", "secret/tokenizer.json"),  # a file of the snapshot, elsewhere on disk
        ("extra", "secret"),  # a folder
        ("extra", "hub/models--tiny--other"),  # another repo of the same cache
    ],
)
def test_a_link_out_of_the_cache_folder_is_refused_naming_it(hub, micro_world, tmp_path, capsys, name, where):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "tokenizer.json").write_text("{}")
    (tmp_path / "hub" / "models--tiny--other").mkdir()
    link, target = hub / name, tmp_path / where
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    message = rf"{re.escape(str(link))}: links to {re.escape(str(target.resolve()))}, outside its hub cache"
    with pytest.raises(InputError, match=message):
        resolve_model("tiny/original")
    facts = str(micro_world / "facts.jsonl")
    assert main(["score", "tiny/original", "--facts", facts, "--splits", "retain"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err


def test_a_link_loop_inside_the_repo_ends(hub):
    (hub / "loop").symlink_to("..", target_is_directory=True)
    assert os.path.islink(hub / "loop") and resolve_model("tiny/original") == hub
