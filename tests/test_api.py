"""The toolkit from Python (issue 31): `Study(...)` is the config a TOML gives — the same checks, the
same one-line errors as `forensics.InputError`, numerically the same results.json — and its results
read as DataFrames."""

import json
import math

import pandas as pd
import pytest

import forensics
from forensics.cli import main
from forensics.models.checkpoint import read_json
from tests.conftest import control_study

SPLITS = ["forget_0", "forget_1", "forget_2"]
MASKED = ("timings", "versions", "config")  # where the two differ by design: times, the config's form


def _numbers(results: dict, out: str) -> str:
    """The results without times, the study's own folder named alike."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "seconds"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value.replace(out, "OUT") if isinstance(value, str) else value

    return json.dumps(strip({k: v for k, v in results.items() if k not in MASKED}), sort_keys=True)


@pytest.fixture(scope="module")
def both(micro_world, tmp_path_factory):
    """The same study from a TOML file and from Study(...): accuracy and RTT on the micro world's
    original, never-learned control and (as the method) the never-learned model again."""
    root = tmp_path_factory.mktemp("api")
    control_study(micro_world, root, "toml")
    assert main(["study", str(root / "s.toml"), "--quiet"]) == 0
    study = forensics.Study(
        original="original",
        never_learned="never_learned",
        unlearned={"m": "never_learned"},
        facts="facts.jsonl",
        forget=SPLITS,
        retain=["retain"],
        lenses=["accuracy", "relearn"],
        seeds=[0],
        name="s",
        base=root,
        relearn={"lrs": [1e-3, 3e-3, 1e-2], "epochs": 6, "patience": 1},
        probes={"max_iter": 60},
        localize={"lrs": [1e-3], "epochs": 1},
    )
    results = study.run(out=root / "api", progress=False)
    return root, results


def test_study_and_toml_give_the_same_numbers(both):
    root, results = both
    toml = read_json(root / "toml" / "results.json")
    assert _numbers(read_json(root / "api" / "results.json"), str(root / "api")) == _numbers(
        toml, str(root / "toml")
    )
    assert results.raw == read_json(root / "api" / "results.json")
    assert (root / "api" / "summary.md").exists() and (root / "api" / "report" / "index.html").exists()


def test_results_are_dataframes(both):
    root, results = both
    verdicts = results.verdicts
    assert isinstance(verdicts, pd.DataFrame) and list(verdicts["method"]) == ["m"]
    assert not verdicts["verdict"].iloc[0].startswith("hidden")  # the exact control is never hidden
    rtt = results.lens("relearn")
    assert list(rtt["label"]) == ["RTT"] and rtt["layer"].isna().all()
    row = rtt.iloc[0]
    assert row["ci95_lo"] <= row["difference"] <= row["ci95_hi"]
    loaded = forensics.load_results(root / "api" / "results.json")
    pd.testing.assert_frame_equal(loaded.verdicts, verdicts)
    page = loaded.report(root / "again.html")
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_bad_input_raises_input_error_with_the_cli_message(both, capsys):
    root, _ = both
    with pytest.raises(forensics.InputError) as err:
        forensics.Study(
            original="original",
            unlearned={"m": "never_learned"},
            facts="facts.jsonl",
            forget=SPLITS,
            retain=["retain"],
            base=root,
            relearn={"epoch": 3},
        )
    (root / "bad.toml").write_text(
        (root / "s.toml")
        .read_text()
        .replace("epochs = 6", "epoch = 3")
        .replace('out = "toml"', 'out = "bad"')
    )
    assert main(["study", str(root / "bad.toml"), "--quiet"]) == 2
    line = capsys.readouterr().err.strip()
    mine = str(err.value)
    assert "\n" not in mine and mine.startswith("Study(...): [lenses.relearn]: unknown key 'epoch'")
    assert line.endswith(mine.removeprefix("Study(...)")), (line, mine)
    assert not (root / "bad").exists() and not (root / "runs").exists()  # nothing written
    with pytest.raises(forensics.InputError, match=r"Study\(...\): \[models\] 'original': nowhere/at-all"):
        forensics.Study(
            original="nowhere/at-all", unlearned={"m": "x"}, facts="f", forget=SPLITS, retain=["r"], base=root
        )


def test_rtt_on_a_model_in_memory_leaves_it_as_it_was(micro_world):
    """`forensics.rtt` trains a copy: V and T per epoch, the model untouched; a V that is not a forget
    split is an InputError."""
    import torch

    from forensics.models.checkpoint import load_checkpoint
    from forensics.worlds.world import load_world

    _, sets = load_world(micro_world)
    model, tok = load_checkpoint(micro_world / "checkpoints" / "never_learned")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    run = forensics.rtt(model, tok, sets, v="forget_0", lr=1e-2, epochs=2, batch_size=8, seeds=(0,))
    assert list(run.epochs["epoch"]) == [1, 2] and run.epochs["acc_v"].notna().all()
    t = list(run.epochs["acc_t"])  # T is scored until it is fitted (0.9), then no more
    assert not math.isnan(t[0]) and math.isnan(t[1]) == (t[0] >= 0.9)
    assert run.steps > 0 and 0 <= run.before <= 1
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    with pytest.raises(forensics.InputError, match="V split 'retain' is not a forget split"):
        forensics.rtt(model, tok, sets, v="retain")


def test_score_rtt_and_probe_take_a_transformer_bridge(micro_world):
    """A TransformerBridge is taken where an HF model is: the same accuracy, the same RTT run (a copy
    trained, the bridge untouched)."""
    import torch

    from forensics.models.checkpoint import boot_bridge, load_checkpoint
    from forensics.worlds.world import load_world

    _, sets = load_world(micro_world)
    path = micro_world / "checkpoints" / "original"
    model, tok = load_checkpoint(path)
    bridge = boot_bridge(path)
    facts = sets.forget_facts()
    assert (forensics.score(bridge, tok, facts).correct == forensics.score(model, tok, facts).correct).all()
    weights = {k: v.clone() for k, v in bridge.state_dict().items()}
    on_bridge = forensics.rtt(bridge, tok, sets, v="forget_0", lr=1e-2, epochs=2, batch_size=8, seeds=(0,))
    on_model = forensics.rtt(model, tok, sets, v="forget_0", lr=1e-2, epochs=2, batch_size=8, seeds=(0,))
    assert on_bridge.steps == on_model.steps > 0
    pd.testing.assert_frame_equal(on_bridge.epochs, on_model.epochs)
    assert all(torch.equal(weights[k], v) for k, v in bridge.state_dict().items())


def test_probe_on_a_model_in_memory_is_the_study_lens(micro_world):
    """`forensics.probe` on models in memory gives the probes lens's figures layer by layer (the
    original's probes, and their transfer to the never-learned model through `reference`), leaves an HF
    model as it was, and takes a bridge."""
    import torch

    from forensics.measure.probing import probe_models
    from forensics.models.checkpoint import boot_bridge, load_checkpoint
    from forensics.worlds.world import load_world

    _, sets = load_world(micro_world)
    paths = {n: micro_world / "checkpoints" / n for n in ("original", "never_learned")}
    lens = probe_models(paths, sets, "choice")["models"]
    model, tok = load_checkpoint(paths["original"])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    original = forensics.probe(model, tok, sets)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    other = forensics.probe(boot_bridge(paths["never_learned"]), None, sets, reference=original)
    for run, name in ((original, "original"), (other, "never_learned")):
        table = run.layers
        assert list(table["layer"]) == ["embed", *map(str, range(len(table) - 1))]
        for column in ("probe", "control", "ridge", "transfer"):
            assert table[column].tolist() == pytest.approx([r["acc"] for r in lens[name][column]])
        on_forget = [r["acc"] for r in lens[name]["lens"]["forget"]]
        assert table["lens_forget"].tolist() == pytest.approx(on_forget)
        assert ((table["probe_lo"] <= table["probe"]) & (table["probe"] <= table["probe_hi"])).all()
    with pytest.raises(forensics.InputError, match="unknown scorer 'nope'"):
        forensics.probe(model, tok, sets, scorer="nope")
    with pytest.raises(forensics.InputError, match="'folds' must be at least 2"):
        forensics.probe(model, tok, sets, folds=1)
