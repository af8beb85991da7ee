"""`forensics cache`: list or clear an activation cache folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from forensics.cli.finish import format_table


def cmd_cache(a: argparse.Namespace) -> None:
    from forensics.models.cache import check_cache_folder, clear, entries

    folder = Path(a.folder)
    check_cache_folder(folder)
    if a.clear:
        print(f"cleared {folder}: {clear(folder) / 2**20:.1f} MB freed")
        return
    found = entries(folder)
    rows = [
        {
            "entry": e["key"],
            "MB": e["bytes"] / 2**20,
            "last used": time.strftime("%Y-%m-%d %H:%M", time.localtime(e["used"])),
        }
        for e in reversed(found)
    ]
    if rows:
        print(format_table(rows, ["entry", "MB", "last used"]))
    print(f"{len(found)} entries, {sum(e['bytes'] for e in found) / 2**20:.1f} MB in {folder}")


def add(subparsers) -> None:
    c = subparsers.add_parser("cache", help="list or clear an activation cache folder (e.g. runs/demo/cache)")
    c.add_argument("folder", help="a cache folder (OUT/cache)")
    action = c.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="every entry, its size and last use")
    action.add_argument("--clear", action="store_true", help="delete every entry")
    c.set_defaults(func=cmd_cache)
