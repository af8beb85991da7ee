"""Output folders: names made safe for the file system, folders claimed with a marker and a lock.

A name from a dataset or config (a split, a model, a study) becomes a file name only through
`safe_name`, so it can never climb out of its folder. An output folder is `claim`ed before anything
is written: a folder that holds files and no marker is someone else's and is refused (unless
forced), and a second process on the same folder is refused while the first holds its lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from forensics.errors import InputError

MARKER = ".forensics-out"
LOCK = ".forensics-lock"
_HELD: dict[str, list] = {}  # resolved folder -> [lock file descriptor, depth], for nested claims


def safe_name(name: str) -> str:
    """A file-name component for `name`: letters, digits, `.`, `_` and `-` kept, anything else `_`;
    when that changed the name, a short hash of the original keeps distinct names distinct."""
    clean = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9._-]", "_", name)).lstrip(".")[:80]
    if clean == name and name:
        return name
    return (
        f"{clean or 'x'}-{hashlib.blake2b(name.encode('utf-8', 'surrogatepass'), digest_size=4).hexdigest()}"
    )


def is_ours(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


@contextmanager
def claim(folder: Path, what: str, force: bool = False, create: bool = True) -> Iterator[Path]:
    """Hold `folder` for writing: create it (with a marker; unless not `create`) or accept it when it
    carries our marker; refuse a non-empty folder without one unless `force`; refuse while another
    process holds it. A folder made here is removed again when anything stops the work inside before
    it wrote a file (`_unmake`): what holds finished work stays, for a rerun to resume."""
    folder = Path(folder)
    if not create and not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and not is_ours(folder) and any(folder.iterdir()) and not force:
        raise InputError(f"{folder}: not empty and not a forensics output folder; choose another, or --force")
    created = not folder.exists()
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{folder}: cannot create ({e.strerror})") from None
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
    else:
        try:
            fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if created:
                _unmake(made)
            raise InputError(f"{folder / LOCK}: cannot create ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if created:
                _unmake(made)
            raise InputError(
                f"{folder}: another forensics process is writing here; wait for it to finish"
            ) from None
        _HELD[key] = [fd, 1]
        if not is_ours(folder):
            (folder / MARKER).write_text(json.dumps({"made_by": f"forensics {what}"}) + "\n")
    failed = True
    try:
        yield folder
        failed = False
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            os.close(_HELD.pop(key)[0])  # closing the descriptor releases the lock
            if failed and created:  # stopped (bad input, a failure, a signal) in a folder made here
                _unmake(made)


def _unmake(made: list[Path]) -> None:
    """Remove the folders `claim` made (`made`, deepest first) if nothing but our marker and lock and
    empty folders is in them: never a file the work wrote (a rerun resumes from it), never through
    a link, never a folder that holds anything else."""
    folder = made[0]
    if not _only_ours(folder, top=True):
        return
    try:
        for name in (MARKER, LOCK):
            (folder / name).unlink(missing_ok=True)
        # only empty folders are left: rmdir (which refuses a folder that is not empty), never rmtree
        for below, _, _ in os.walk(folder, topdown=False):
            if Path(below) != folder:
                os.rmdir(below)
        for path in made:  # the folder, then the parents made for it, while each is empty
            path.rmdir()
    except OSError:
        return


def _only_ours(folder: Path, top: bool = False) -> bool:
    """Whether `folder` holds nothing but (at its top) our marker and lock, and empty folders."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    for entry in entries:
        if top and entry.name in (MARKER, LOCK) and entry.is_file(follow_symlinks=False):
            continue
        if not entry.is_dir(follow_symlinks=False) or not _only_ours(Path(entry.path)):
            return False
    return True
