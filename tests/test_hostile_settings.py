"""Float settings are finite and in range wherever they are given (issue 39, item 5): a flag, a study
TOML key or a settings dataclass with `inf`, `nan` or a value out of range is one line naming the flag
or key and the value, exit status 2, and nothing written."""

import re

import pytest

from forensics.cli import main
from forensics.errors import InputError


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "inf"], r"argument --lr: expected a finite number, got float inf"),
        (["--lr", "nan"], r"argument --lr: expected a finite number, got float nan"),
        (["--lr", "1e-3,1e999"], r"argument --lr: expected a finite number, got float inf"),
        (["--lr=-1"], r"learning rates must be positive \(got -1\)"),
        (["--min-retain", "inf"], r"argument --min-retain: expected a finite number, got float inf"),
        (["--forget-margin", "nan"], r"argument --forget-margin: expected a finite number"),
        (["--min-retain", "2"], r"'min_retain' must be in 0\.\.1 \(got 2\)"),
    ],
)
def test_unlearn_refuses_a_non_finite_or_out_of_range_number(micro_world, tmp_path, capsys, flags, message):
    out = tmp_path / "o"
    args = ["unlearn", "--method", "gd", "--original", str(micro_world / "checkpoints/original")]
    args += ["--facts", str(micro_world / "facts.jsonl"), "--forget", "forget_0", "--retain", "retain"]
    assert main([*args, "--out", str(out), "--quiet", *flags]) == 2
    assert re.search(message, one_line(capsys))
    assert not out.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["real", "--implant-lr", "inf"],
        ["real", "--implant-lr", "nan"],
        ["world", "--lr", "inf"],
        ["world", "--implant-lr", "nan"],
        ["relearn", "--world", "{tmp}/w", "--lrs", "1e-3,inf"],
        ["relearn", "--world", "{tmp}/w", "--method", "lora", "--lora-alpha", "inf"],
        ["probe", "--world", "{tmp}/w", "--Cs", "nan"],
        ["localize", "--world", "{tmp}/w", "--lrs", "inf"],
        ["study", "{tmp}/s.toml", "--ray-timeout", "inf"],
    ],
)
def test_every_float_flag_refuses_inf_and_nan_before_any_work(tmp_path, capsys, command):
    command = [c.replace("{tmp}", str(tmp_path)) for c in command]
    assert main([*command, "--out", str(tmp_path / "r")] if command[0] in ("real", "world") else command) == 2
    flag = next(c for c in command if c.startswith("--") and c not in ("--world", "--method"))
    assert re.search(rf"argument {flag}: expected a finite number, got float (inf|nan)$", one_line(capsys))
    assert list(tmp_path.iterdir()) == []


def test_the_real_worlds_config_refuses_an_infinite_implant_rate():
    from forensics.worlds.real import RealConfig

    with pytest.raises(InputError, match=r"'implant_lr': expected a finite number, got float inf"):
        RealConfig(implant_lr=float("inf"))
    with pytest.raises(InputError, match=r"'implant_lr' must be positive \(got -1\)"):
        RealConfig(implant_lr=-1.0)


def test_unlearn_settings_refuse_non_finite_numbers():
    """The Python path (the settings a study or the API builds) runs the same check as the flags."""
    from forensics.unlearn.run import UnlearnSettings

    with pytest.raises(InputError, match=r"learning rates: expected a finite number, got float inf"):
        UnlearnSettings(lrs=(1e-3, float("inf")))
    with pytest.raises(InputError, match=r"'forget_margin': expected a finite number, got float nan"):
        UnlearnSettings(forget_margin=float("nan"))


@pytest.mark.parametrize(
    "table, message",
    [
        (
            "[verdict]\nmin_effect = inf",
            r"\[verdict\]: 'min_effect': expected a finite number, got float inf",
        ),
        ("[verdict]\nalpha = -inf", r"\[verdict\]: 'alpha': expected a finite number, got float -inf"),
        ("[lenses.relearn]\nlrs = [nan]", r"\[lenses.relearn\]: 'lrs'\[0\]: expected a finite number"),
        ("cache_max_gb = inf", r"'cache_max_gb': expected a finite number, got float inf"),
    ],
)
def test_a_study_toml_refuses_inf_and_nan_naming_the_key(ckpts, capsys, table, message):
    from tests.conftest import accuracy_study

    config = accuracy_study(ckpts)
    text = config.read_text()
    config.write_text(table + "\n" + text if not table.startswith("[") else text + table + "\n")
    assert main(["study", str(config), "--quiet"]) == 2
    line = one_line(capsys)
    assert re.search(message, line) and str(config) in line, line
    assert not (ckpts / "out").exists()
