"""Typed settings from TOML tables: a dataclass's fields are the only keys, its type hints the types.

Every settings dataclass of the toolkit (RTT, probes, quantization, the study itself) is read through
`from_table`, so an unknown key or a wrong type is a one-line `InputError` naming the file, the table
and the key, and range checks live in each dataclass's `__post_init__` (the CLI builds the same
dataclasses, so its defaults and checks are these too). Every float setting, wherever it comes from,
goes through `check_float`.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields, replace
from numbers import Real
from pathlib import Path

from forensics.errors import InputError


def from_table(cls, table, where: str, base=None, exclude: tuple[str, ...] = (), apart: tuple[str, ...] = ()):
    """An instance of dataclass `cls` from a TOML table: `base`'s values (or the defaults) overridden
    by the table's keys. `where` names the file and table in errors; `exclude` lists fields that
    are set elsewhere (e.g. the study-wide scorer and seed) and so are unknown here; `apart`, keys
    the table may hold that are read elsewhere (its sub-tables)."""
    if not isinstance(table, dict):
        raise InputError(f"{where}: must be a table, got {_show(table)}")
    known = [f.name for f in fields(cls) if f.name not in exclude]
    hints = typing.get_type_hints(cls)
    for k in table:
        if k not in known and k not in apart:
            raise InputError(f"{where}: unknown key '{k}' (known: {', '.join([*known, *apart])})")
    values = {k: coerce(v, hints[k], f"{where}: '{k}'") for k, v in table.items() if k not in apart}
    try:
        return replace(base, **values) if base is not None else cls(**values)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def coerce(value, hint, where: str):
    """`value` checked against a type hint (int, float, str, bool, Path, tuple[X, ...], X | None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        if len(options) == 1:
            return coerce(value, options[0], where)
        for option in options:
            try:
                return coerce(value, option, where)
            except InputError:
                continue
        raise InputError(f"{where}: expected {_name(hint)}, got {_show(value)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"{where}: expected a list of {_name(args[0])}, got {_show(value)}")
        return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a table, got {_show(value)}")
        return {coerce(k, args[0], where): coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if hint is float:
        return check_float(value, where)
    if hint in (str, Path):
        if not isinstance(value, str):
            raise InputError(f"{where}: expected a string, got {_show(value)}")
        return hint(value)
    raise TypeError(f"no TOML reading for {hint!r}")  # a programming error, not bad input


def check_float(
    value, name: str = "", low: float = -math.inf, high: float = math.inf, positive: bool = False
) -> float:
    """`value` as a float if finite and in `low`..`high` (above 0 with `positive`), else a one-line
    `InputError` naming `name` and the value: the one check of every float flag, key and setting."""
    try:
        number = float(value) if isinstance(value, Real) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer beyond a float's range
        number = math.inf
    if not math.isfinite(number):
        raise InputError(f"{name}: expected a finite number, got {_show(value)}".removeprefix(": "))
    if positive and not number > 0:
        raise InputError(f"{name} must be positive (got {number:g})".strip())
    if not low <= number <= high:
        raise InputError(f"{name} must be in {low:g}..{high:g} (got {number:g})".strip())
    return number


def check_seeds(seeds, where: str = "'seeds'") -> None:
    """The one check of every list of seeds (RTT, layer RTT, in-context, the study-wide ones): at
    least one, none negative (numpy and the probes' control task refuse them), no seed twice (two
    copies of one run are not two seeds: the interval would count it twice)."""
    if not seeds:
        raise InputError(f"{where}: at least one seed")
    for seed in seeds:
        if seed < 0:
            raise InputError(f"{where}: seed {seed} is negative (seeds are 0 or more)")
    twice = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if twice:
        raise InputError(
            f"{where}: seed {', '.join(map(str, twice))} given twice (each seed is a run of its own)"
        )


def _name(hint) -> str:
    return getattr(hint, "__name__", str(hint))


def _show(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"
