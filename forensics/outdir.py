"""Output folders: names made safe for the file system, folders claimed with a marker and a lock.

A name from a dataset or config (a split, a model, a study) becomes a file name only through
`safe_name`, so it can never climb out of its folder. An output folder is `claim`ed before anything
is written: a folder that holds files and no marker is someone else's and is refused (unless
forced), and a second process on the same folder is refused while the first holds its lock. A forced
folder's files at that moment are recorded in its marker as the user's (`foreign`): no writer replaces
them (`write_atomic`), and a command refuses them among its outputs before any work (`outputs`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from forensics.errors import InputError

MARKER = ".forensics-out"
LOCK = ".forensics-lock"
FOREIGN_MAX = 100_000  # files recorded as the user's in a forced folder, at most
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
def claim(
    folder: Path, what: str, force: bool = False, create: bool = True, outputs: Iterable[str] = ()
) -> Iterator[Path]:
    """Hold `folder` for writing: create it (with a marker; unless not `create`) or accept it when it
    carries our marker; refuse a non-empty folder without one unless `force` (its files then recorded
    as the user's); refuse while another process holds it, or when one of `outputs` (paths relative to
    `folder`) is a file of the user's. A folder made here is removed again when anything stops the
    work inside before it wrote a file (`_unmake`): what holds finished work stays, for a rerun."""
    folder = Path(folder)
    if not create and not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and not is_ours(folder) and any(folder.iterdir()) and not force:
        raise InputError(f"{folder}: not empty and not a forensics output folder; choose another, or --force")
    for name in outputs:  # before anything is written
        target = folder / name
        if folder.is_dir() and not is_ours(folder) and (target.exists() or target.is_symlink()):
            raise InputError(f"{target}: exists and was not written by forensics; not overwriting it")
        check_replaceable(target)
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
            marker = {"made_by": f"forensics {what}"}
            if not created:  # forced: what is here now is the user's
                marker["foreign"] = _files_below(folder)
            (folder / MARKER).write_text(json.dumps(marker) + "\n")
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


def _files_below(folder: Path) -> list[str]:
    """Every file (or link) below `folder`, as paths relative to it (at most FOREIGN_MAX)."""
    found: list[str] = []
    for below, dirs, files in os.walk(folder):
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(below, d)))]:
            found.append(os.path.relpath(os.path.join(below, name), folder))
            if len(found) >= FOREIGN_MAX:
                return found
    return found


def _foreign(path: Path) -> bool:
    """Whether `path` was in a folder before a forced claim made it ours (a marker above says so)."""
    path = Path(path).absolute()
    for folder in path.parents:
        marker = folder / MARKER
        if not marker.is_file():
            continue
        try:
            listed = json.loads(marker.read_text(encoding="utf-8")).get("foreign", [])
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(listed, list) and str(path.relative_to(folder)) in listed:
            return True
    return False


def check_replaceable(path: Path) -> None:
    """Refuse to write `path` where a folder stands, or where a file of the user's stands (one that
    was there before a forced claim made its folder ours)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise InputError(f"{path}: is a folder, not a file; not replacing it")
    if (path.exists() or path.is_symlink()) and _foreign(path):
        raise InputError(f"{path}: exists and was not written by forensics; not overwriting it")


def file_mode(folder: bool = False) -> int:
    """The mode a new file (0666) or folder (0777) gets under the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file of its own beside it, renamed over it (a reader
    never sees half a file; nobody's `.NAME.tmp` is touched), with the mode the umask gives. A folder
    or a file of the user's at `path` is refused (`check_replaceable`)."""
    path = Path(path)
    check_replaceable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
