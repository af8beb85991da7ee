"""Model names as users write them: a checkpoint folder, or a Hugging Face hub id `owner/name` (with an
optional `@revision`) resolved to its snapshot in the local HF cache. Nothing is downloaded where the
environment says offline (`HF_HUB_OFFLINE`); the keys then hash the snapshot's files like any folder's.
A snapshot whose links lead outside its repo's cache folder is refused (issue 39)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from forensics.errors import InputError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def resolve_model(spec: str | Path, base: Path | None = None) -> Path:
    """The checkpoint folder `spec` names: a path (relative to `base`), or, where no such path exists
    and it reads as a hub id, that repository's snapshot (at its revision, default `main`)."""
    path = (Path(base) if base is not None else Path.cwd()) / spec
    text = str(spec)
    if path.exists() or not HUB_ID.match(text):
        return path.resolve()
    return hub_snapshot(text)


def hub_snapshot(spec: str) -> Path:
    """The local snapshot of hub id `owner/name[@revision]`: from the HF cache, or downloaded when the
    network is allowed; a one-line error naming the id otherwise."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    repo, _, revision = spec.partition("@")
    offline = constants.HF_HUB_OFFLINE
    try:
        snapshot = Path(snapshot_download(repo, revision=revision or None, local_files_only=offline))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, FileNotFoundError):
        where = (
            "HF_HUB_OFFLINE is set, so nothing is downloaded" if offline else "and it could not be downloaded"
        )
        raise InputError(
            f"{spec}: no such folder, and not in the local Hugging Face cache ({where})"
        ) from None
    except (HfHubHTTPError, ValueError) as e:
        raise InputError(
            f"{spec}: not a folder, and the hub gave no snapshot ({str(e).splitlines()[0]})"
        ) from None
    check_links(snapshot)
    return snapshot


def check_links(snapshot: Path) -> None:
    """Refuse a snapshot with a link that leads outside its repo's cache folder (the HF cache links
    files into the repo's `blobs/`): one line naming the link and its target, before anything is read."""
    repo = snapshot.parent.parent.resolve()  # <cache>/models--owner--name/snapshots/<commit>
    seen: set[Path] = set()
    for folder, dirs, files in os.walk(snapshot, followlinks=True):
        here = Path(folder)
        seen.add(here.resolve())
        for path in [here, *(here / name for name in [*dirs, *files])]:
            target = path.resolve()
            if not target.is_relative_to(repo):
                raise InputError(f"{path}: links to {target}, outside its hub cache folder {repo}")
        dirs[:] = [d for d in dirs if (here / d).resolve() not in seen]  # a link loop is walked once
