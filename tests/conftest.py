"""Shared fixtures: a micro world (seconds to build) reused by every test that needs models."""

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

PAPER_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "deeb-roger-2024"


def micro_config(**overrides):
    from forensics.worlds.spec import WorldConfig

    settings = dict(
        n_people=24,
        n_ships=16,
        n_forget=12,
        n_forget_splits=3,
        layers=2,
        d_model=32,
        heads=2,
        vocab_size=300,
        epochs=60,
        lr=1e-2,
        batch_size=16,
        eval_every=5,
        seed=0,
    )
    settings.update(overrides)
    return WorldConfig(**settings)


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory) -> Path:
    """A built micro world directory (choice scorer): facts, tokenizer, original, never_learned."""
    from forensics.worlds.world import build_world

    root = tmp_path_factory.mktemp("micro_world")
    build_world(root, micro_config(), progress=False)
    return root


@pytest.fixture
def ckpts(micro_world, tmp_path):
    """Copies of the micro world's original and never-learned checkpoints and its facts in `tmp_path`."""
    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, tmp_path / name)
    shutil.copy(micro_world / "facts.jsonl", tmp_path / "facts.jsonl")
    return tmp_path


@pytest.fixture(scope="session")
def paper_data() -> Path:
    if not PAPER_DATA.is_dir():
        pytest.skip(f"the paper's data is not at {PAPER_DATA}")
    return PAPER_DATA


# light settings for the slow lenses in the tests' studies
QUICK_LENSES = """[lenses.relearn]
lrs = [1e-3, 3e-3, 1e-2]
epochs = 6
patience = 1
[lenses.probes]
max_iter = 60
[lenses.localize]
lrs = [1e-3]
epochs = 1
"""


def control_study(
    micro_world: Path, root: Path, out: str, top: str = "seeds = [0]", tail: str = QUICK_LENSES
) -> Path:
    """`root/s.toml`: accuracy and RTT on copies (in `root`) of the micro world's original and
    never-learned checkpoints, the never-learned one both the control and the method 'm' (the exact
    control named as a method), with `top` at the top level and `tail` after the lenses."""
    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, root / name)
    shutil.copy(micro_world / "facts.jsonl", root / "facts.jsonl")
    return study_toml(root, out, top, ("accuracy", "relearn"), tail)


def accuracy_study(root: Path, out: str = "out") -> Path:
    """A study TOML in `root` over `root/original` (reference) and `root/never_learned` (as an
    unlearned model 'm') with the micro world's facts at `root/facts.jsonl`, accuracy lens only."""
    return study_toml(root, out, "", ("accuracy",), "", never_learned=False)


def study_toml(
    root: Path, out: str, top: str, lenses: tuple[str, ...], tail: str, never_learned: bool = True
) -> Path:
    """`root/s.toml`: the micro world's original (and its never-learned control) in `root`, the
    never-learned checkpoint also the method 'm', its facts, `lenses` run; `top` at the top, `tail` last."""
    config = root / "s.toml"
    control = 'never_learned = "never_learned"\n' if never_learned else ""
    run = ", ".join(f'"{lens}"' for lens in lenses)
    config.write_text(
        f"""out = "{out}"
{top}
[models]
original = "original"
{control}[models.unlearned]
m = "never_learned"
[facts]
path = "facts.jsonl"
forget = ["forget_0", "forget_1", "forget_2"]
retain = ["retain"]
[lenses]
run = [{run}]
{tail}"""
    )
    return config
