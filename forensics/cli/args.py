"""Argument types and flag groups the commands share, and the runtime and executor their flags name."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.config import check_float
from forensics.errors import InputError


def _named(name: str):
    """Give an argparse `type` function the name its messages use ("invalid <name> value: …")."""

    def wrap(fn):
        fn.__name__ = name
        return fn

    return wrap


@_named("positive integer")
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _checked(text: str, positive: bool = False) -> float:
    """A flag's number through the settings' one check (`check_float`): finite, and positive if asked."""
    try:
        return check_float(float(text), positive=positive)
    except InputError as e:  # argparse names the flag before the message
        raise argparse.ArgumentTypeError(str(e)) from None


@_named("number")
def _float(text: str) -> float:
    return _checked(text)


@_named("positive number")
def _positive_float(text: str) -> float:
    return _checked(text, positive=True)


@_named("positive integer or 'all'")
def _per_split(text: str) -> int | None:
    return None if text == "all" else _positive_int(text)


@_named("comma-separated list")
def _split_list(text: str) -> tuple[str, ...]:
    return tuple(s for s in (p.strip() for p in text.split(",")) if s)


@_named("comma-separated integers")
def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in _split_list(text))


@_named("comma-separated numbers")
def _float_list(text: str) -> tuple[float, ...]:
    return tuple(_checked(s) for s in _split_list(text))


def _runtime_args(
    p: argparse.ArgumentParser, grid: bool = False, defaults: bool = True, workers: int = 1
) -> None:
    """--device, --dtype, --device-map, --max-memory (and, for commands that run grids of jobs,
    --executor and --ray-address). Without `defaults` they override the study config only when given."""
    from forensics.models.runtime import Runtime

    d = Runtime()
    g = p.add_argument_group("where models run")
    g.add_argument("--device", default=d.device if defaults else None, help="auto, cpu, cuda or cuda:N")
    g.add_argument(
        "--dtype",
        default=d.dtype if defaults else None,
        help="auto (the checkpoint's), float32, bfloat16, float16",
    )
    g.add_argument("--device-map", help="auto: accelerate spreads a large model over GPUs, CPU and disk")
    g.add_argument("--max-memory", type=_memory, help="with --device-map: e.g. 0=70GiB,cpu=64GiB")
    if grid:
        g.add_argument("--executor", default="local" if defaults else None, help="local or ray")
        g.add_argument(
            "--workers",
            type=_positive_int,
            default=workers if defaults else None,
            help=f"local executor: worker processes running jobs side by side (default {workers})",
        )
        g.add_argument(
            "--ray-address", help="with --executor ray: an existing cluster (default: a local one)"
        )
        g.add_argument(
            "--ray-timeout",
            type=_positive_float,
            default=60.0 if defaults else None,
            help="seconds for the Ray cluster to answer before giving up (default 60)",
        )


@_named("memory map")
def _memory(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in _split_list(text)]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(
            f"expected DEVICE=AMOUNT pairs like 0=70GiB,cpu=64GiB (got {text!r})"
        )
    return {k.strip(): v.strip() for k, v in pairs}


def _runtime(a: argparse.Namespace):
    from forensics.models.runtime import Runtime

    return Runtime(a.device, a.dtype, a.device_map, a.max_memory)


def _executor(a: argparse.Namespace):
    from forensics.models.executor import Executor

    return Executor(a.executor, a.ray_address, a.workers, a.ray_timeout)


FACTS_HELP = "a paper-layout folder, a fact file (JSONL, parquet, TOFU JSON) or a folder of them"


def _partition_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--partition", type=_positive_int, help="deal every split into N parts ({split}_0 … {split}_N-1)"
    )
    p.add_argument("--facts-seed", type=int, default=0, help="the partition's and TOFU's choice order")


# --force, for every command that writes an output folder
FORCE = {"action": "store_true", "help": "write into a folder that is not a forensics output folder"}


def _world_models(root: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """The world's checkpoints by name (all of them, or the named ones), original first."""
    found = sorted(
        (p.name for p in (root / "checkpoints").iterdir() if (p / "config.json").exists()),
        key=lambda n: (n != "original", n != "never_learned", n),
    )
    for name in names:
        if name not in found:
            raise InputError(f"{root / 'checkpoints'}: no checkpoint '{name}' (have: {', '.join(found)})")
    chosen = [n for n in found if not names or n in names or n == "original"]
    return {n: root / "checkpoints" / n for n in chosen}
