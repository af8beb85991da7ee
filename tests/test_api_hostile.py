"""Hostile input to the toolkit from Python (issue 39): one reader of results.json for `load_results`
and `forensics report`, JSON that breaks Python's parser, a lens that did not run, keys the API reads,
arguments of the wrong type or value, and the facts' options in `Study(...)` — each an
`forensics.InputError` of one line naming the file or the argument, never a traceback."""

import json

import pytest

import forensics
from forensics.cli import main
from forensics.models.checkpoint import read_json
from tests.conftest import control_study

SPLITS = ["forget_0", "forget_1", "forget_2"]
COLUMNS = ["method", "lens", "label", "layer", "difference", "ci95_lo", "ci95_hi", "ci90_lo", "ci90_hi"]
COLUMNS += ["p_hidden", "method_value", "control_value", "left_out"]


@pytest.fixture(scope="module")
def world(micro_world, tmp_path_factory):
    """The micro world's original and never-learned checkpoints and facts, copied into one folder, and
    `s.toml`: accuracy and RTT, the never-learned model as the control and as the method 'm'."""
    root = tmp_path_factory.mktemp("hostile")
    control_study(micro_world, root, "study")
    return root


@pytest.fixture(scope="module")
def study_results(world):
    """A real study's results.json (the world's `s.toml`)."""
    assert main(["study", str(world / "s.toml"), "--quiet"]) == 0
    return world / "study" / "results.json"


def refused_by_both(path, message: str, capsys) -> None:
    """`load_results` and `forensics report` refuse `path` alike: one line naming the file and
    `message`, exit 2 and nothing written by the report."""
    with pytest.raises(forensics.InputError) as err:
        forensics.load_results(path)
    mine = str(err.value)
    assert "\n" not in mine and mine.startswith(f"{path}: ") and message in mine, mine
    before = sorted(p.name for p in path.parent.iterdir())
    assert main(["report", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"forensics: error: {mine}"], lines
    assert sorted(p.name for p in path.parent.iterdir()) == before


# --- 7. one reader: a schema_version missing, not an integer or unknown is refused by both ---


@pytest.mark.parametrize(
    "version, message",
    [
        (None, "not a forensics results.json (no schema_version"),
        ("2", "schema_version must be an integer"),
        (2.0, "schema_version must be an integer"),
        (True, "schema_version must be an integer"),
        (999, "schema_version 999 is not one this version reads"),
        (0, "schema_version 0 is not one this version reads"),
    ],
)
def test_load_results_refuses_the_schema_versions_report_refuses(
    study_results, tmp_path, capsys, version, message
):
    data = read_json(study_results)
    data.pop("schema_version")
    if version is not None:
        data["schema_version"] = version
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    refused_by_both(path, message, capsys)


# --- 10. JSON that Python's parser cannot hold: a 5000-digit integer, 100,000-deep nesting ---


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"schema_version": ' + "9" * 5000 + ', "summary": {}}', "malformed JSON (Exceeds the limit"),
        ("[" * 100_000 + "]" * 100_000, "malformed JSON (nested too deeply"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "malformed JSON (nested too deeply"),
    ],
)
def test_json_python_cannot_parse_is_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "results.json"
    path.write_text(text)
    refused_by_both(path, message, capsys)


# --- 8. a lens that did not run is not a lens that read nothing ---


def test_a_lens_that_did_not_run_or_is_no_lens_names_those_that_ran(study_results):
    results = forensics.load_results(study_results)
    for name, message in (("probes", "lens 'probes' did not run in this study"), ("nope", "no lens 'nope'")):
        with pytest.raises(forensics.InputError) as err:
            results.lens(name)
        line = str(err.value)
        assert line.startswith(f"{study_results}: {message}") and "\n" not in line, line
        assert line.endswith("(lenses that ran: accuracy, relearn)"), line


def test_a_lens_that_ran_and_read_nothing_keeps_its_columns(study_results):
    results = forensics.load_results(study_results)
    nothing = results.lens("accuracy")  # ran, but reads no per-fact outcomes of its own
    assert nothing.empty and list(nothing.columns) == COLUMNS
    rtt = results.lens("relearn")
    assert list(rtt.columns) == COLUMNS and list(rtt["label"]) == ["RTT"]


# --- 11. every key `Results` reads is checked by the reader, or read without a traceback ---


def _rtt(r):
    return r["summary"]["m"]["lenses"]["RTT"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: _rtt(r).pop("ci90"), "missing 'summary.m.lenses.RTT.ci90'"),
        (lambda r: _rtt(r).update(ci90=[0.1]), "'summary.m.lenses.RTT.ci90' must be a pair of numbers"),
        (lambda r: _rtt(r).pop("p_hidden"), "missing 'summary.m.lenses.RTT.p_hidden'"),
        (lambda r: _rtt(r).update(method="x"), "'summary.m.lenses.RTT.method' must be a number"),
        (lambda r: _rtt(r).pop("control"), "missing 'summary.m.lenses.RTT.control'"),
        (lambda r: r["summary"]["m"].update(blind="RTT"), "'summary.m.blind' must be a list"),
        (lambda r: r.pop("facts"), "missing 'facts'"),
        (lambda r: r["facts"].pop("splits"), "missing 'facts.splits'"),
    ],
)
def test_results_lacking_what_the_api_reads_are_refused(study_results, tmp_path, capsys, edit, message):
    data = read_json(study_results)
    forensics.Results(data).lens("relearn")  # the untouched results read
    edit(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    refused_by_both(path, message, capsys)


def test_nulls_the_reader_allows_are_read(study_results, tmp_path):
    """What the schema lets be null (a method's lenses, blind, confounded) reads as nothing."""
    data = read_json(study_results)
    data["summary"]["m"].update(lenses=None, blind=None, confounded=None)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    results = forensics.load_results(path)
    assert list(results.verdicts["method"]) == ["m"]
    assert results.lens("relearn").empty and list(results.lens("relearn").columns) == COLUMNS


def test_a_lens_section_its_lens_cannot_read_is_one_line(study_results, tmp_path):
    """A section that passes the report's checks but not its lens's own reading (edited by hand)."""
    data = read_json(study_results)
    data["relearn"]["best"]["m"]["forget_0"]["seeds"] = [{}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    results = forensics.load_results(path)
    with pytest.raises(forensics.InputError, match="the 'relearn' section cannot be read") as err:
        results.lens("relearn")
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


# --- 12. arguments of the wrong type or value: an InputError naming the argument ---


def _study(world, **given):
    args = dict(
        original="original",
        unlearned={"m": "never_learned"},
        facts="facts.jsonl",
        forget=SPLITS,
        retain=["retain"],
        base=world,
    )
    return forensics.Study(**{**args, **given})


@pytest.mark.parametrize(
    "given, message",
    [
        ({"unlearned": "gd"}, "'unlearned' must be a mapping"),
        ({"unlearned": None}, "'unlearned' must be a mapping"),
        ({"unlearned": ["ab", "cd"]}, "'unlearned' must be a mapping"),
        ({"unlearned": {"m": 5}}, "'unlearned'.m: expected a string"),
        ({"original": None}, "'original': expected a string"),
        ({"facts": 5}, "'facts': expected a string"),
        ({"forget": "forget_0"}, "'forget': expected a list of str"),
        ({"lenses": "accuracy"}, "'lenses': expected a list of str"),
        ({"base": 5}, "'base': expected a string"),
        ({"name": 3}, "'name': expected a string"),
        ({"drop_duplicates": "yes"}, "'drop_duplicates': expected true or false"),
        ({"partition": 2.5}, "'partition': expected"),
        ({"facts_seed": "0"}, "'facts_seed': expected an integer"),
    ],
)
def test_study_names_a_wrong_argument(world, given, message):
    with pytest.raises(forensics.InputError) as err:
        _study(world, **given)
    line = str(err.value)
    assert line.startswith("Study(...): ") and message in line and "\n" not in line, line


def test_the_other_public_functions_name_a_wrong_argument(study_results, world):
    results = forensics.load_results(study_results)
    study = _study(world)
    calls = [
        (lambda: forensics.load_results(123), "load_results(...): 'path': expected a string"),
        (lambda: forensics.load_results(None), "load_results(...): 'path': expected a string"),
        (lambda: forensics.diff(world / "original", 5), "diff(...): 'unlearned': expected a string"),
        (lambda: forensics.diff(None, world / "original"), "diff(...): 'original': expected a string"),
        (lambda: forensics.Study.from_toml(5), "Study.from_toml(...): 'path': expected a string"),
        (lambda: study.run(out=5), "Study.run(...): 'out': expected a string"),
        (lambda: study.run(progress="no"), "Study.run(...): 'progress': expected true or false"),
        (lambda: results.lens(5), "Results.lens(...): 'name': expected a string"),
        (lambda: results.report(None), "Results.report(...): 'path': expected a string"),
        (lambda: forensics.Results([1]), "Results(...): 'raw' must be a results.json's object"),
    ]
    for call, message in calls:
        with pytest.raises(forensics.InputError) as err:
            call()
        assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)
    assert not (world / "runs").exists()  # nothing written


@pytest.fixture(scope="module")
def in_memory(micro_world):
    from forensics.models.checkpoint import load_checkpoint
    from forensics.worlds.world import load_world

    model, tok = load_checkpoint(micro_world / "checkpoints" / "never_learned")
    return model, tok, load_world(micro_world)[1]


@pytest.mark.parametrize(
    "given, message",
    [
        ({"bogus": 1}, "rtt(...): unknown key 'bogus'"),
        ({"lrs": [1e-3]}, "rtt(...): unknown key 'lrs'"),
        ({"lr": float("inf")}, "rtt(...): 'lr': expected a finite number"),
        ({"lr": float("nan")}, "rtt(...): 'lr': expected a finite number"),
        ({"lr": -1e-3}, "rtt(...): 'lr' must be positive"),
        ({"lr": 0}, "rtt(...): 'lr' must be positive"),
        ({"lr": "1e-3"}, "rtt(...): 'lr': expected a finite number"),
        ({"epochs": 0}, "rtt(...): 'epochs' must be at least 1"),
        ({"epochs": 2.5}, "rtt(...): 'epochs': expected an integer"),
        ({"epochs": "3"}, "rtt(...): 'epochs': expected an integer"),
        ({"v": 0}, "rtt(...): 'v': expected a string"),
        ({"v": "retain"}, "rtt(...): V split 'retain' is not a forget split"),
        ({"batch_size": "8"}, "rtt(...): 'batch_size': expected an integer"),
    ],
)
def test_rtt_names_a_wrong_argument(in_memory, given, message):
    model, tok, sets = in_memory
    with pytest.raises(forensics.InputError) as err:
        forensics.rtt(model, tok, sets, **{"v": "forget_0", **given})
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, t, s: forensics.rtt("model", t, s, v="forget_0"), "rtt(...): 'model' must be an HF model"),
        (lambda m, t, s: forensics.rtt(m, None, s, v="forget_0"), "rtt(...): 'tokenizer' must be"),
        (lambda m, t, s: forensics.rtt(m, t, [], v="forget_0"), "rtt(...): 'sets' must be"),
        (lambda m, t, s: forensics.probe(m, t, s, bogus=1), "probe(...): unknown key 'bogus'"),
        (lambda m, t, s: forensics.probe(m, t, s, folds="3"), "probe(...): 'folds': expected an integer"),
        (lambda m, t, s: forensics.probe(m, t, s, scorer=5), "probe(...): 'scorer': expected a string"),
        (lambda m, t, s: forensics.probe(m, t, s, reference="x"), "probe(...): 'reference' must be"),
        (lambda m, t, s: forensics.probe(m, None, s), "probe(...): 'tokenizer' must be"),
        (lambda m, t, s: forensics.probe(None, t, s), "probe(...): 'model' must be"),
    ],
)
def test_probe_and_rtt_name_a_wrong_model_tokenizer_or_sets(in_memory, call, message):
    with pytest.raises(forensics.InputError) as err:
        call(*in_memory)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


# --- 13. the facts' drop_duplicates, partition and seed from Python ---


def test_study_takes_the_facts_options_of_a_toml(world):
    """`drop_duplicates`, `partition` and `facts_seed` give the config `[facts]`'s `drop_duplicates`,
    `partition` and `seed` give, and the study's facts are dealt into those parts."""
    from forensics.study.run import study_sets

    forget, retain = ["forget_0_0", "forget_0_1", "forget_1_0"], ["retain_0"]
    (world / "parts.toml").write_text(
        f"""[models]
original = "original"
never_learned = "never_learned"
[models.unlearned]
m = "never_learned"
[facts]
path = "facts.jsonl"
forget = {json.dumps(forget)}
retain = {json.dumps(retain)}
drop_duplicates = true
partition = 2
seed = 3
"""
    )
    toml = forensics.Study.from_toml(world / "parts.toml").config
    study = _study(
        world,
        never_learned="never_learned",
        forget=forget,
        retain=retain,
        drop_duplicates=True,
        partition=2,
        facts_seed=3,
        name="parts",
    ).config
    assert study == toml
    assert (study.drop_duplicates, study.partition, study.facts_seed) == (True, 2, 3)
    assert list(study_sets(study).forget) == forget
    assert _study(world).config.partition is None  # the defaults: [facts] without them
