"""Bad input to `forensics report` and to the JSON files read back (issue #28): a report never
overwrites a file forensics did not write, results with values of the wrong kind are refused in one
line naming the key, and non-UTF-8 or non-object JSON is an input error (a stage or RTT run file is
then recomputed, with a warning) — never a traceback."""

import json
import os
import shutil

import pytest

from forensics.attacks.relearn import RelearnSettings, relearn
from forensics.cli import main
from forensics.errors import InputError
from forensics.facts.core import load_jsonl, select
from forensics.models.checkpoint import read_json, read_metadata
from forensics.study.summary import FACT_CONTROL, MODEL_CONTROL
from tests.conftest import QUICK_LENSES, accuracy_study
from tests.test_verdict_study import fact_controlled, root  # noqa: F401 (fixtures: a fact-controlled study)

SPLITS = ["forget_0", "forget_1", "forget_2"]
NOT_UTF8 = b'{"key": "\xff\xfe"}'


@pytest.fixture(scope="module")
def real_results(micro_world, tmp_path_factory):
    """A real study's results.json (every default lens; the never-learned model named as method 'm')."""
    s = read_json(micro_world / "world.json")["sets"]
    folder = tmp_path_factory.mktemp("report_input")
    ckpts = folder / "checkpoints"
    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, ckpts / name)
    config = folder / "s.toml"
    config.write_text(
        f"""out = "study"
scorer = "choice"
seeds = [0]
[models]
original = "{ckpts / "original"}"
never_learned = "{ckpts / "never_learned"}"
[models.unlearned]
m = "{ckpts / "never_learned"}"
[facts]
path = "{micro_world / "facts.jsonl"}"
forget = {json.dumps(s["forget"])}
retain = {json.dumps(s["retain"])}
near_retain = {json.dumps(s["near_retain"])}
{QUICK_LENSES}"""
    )
    assert main(["study", str(config), "--quiet"]) == 0
    return folder / "study/results.json"


@pytest.fixture
def results(real_results, tmp_path):
    """A copy of the real results.json, alone in its folder."""
    path = tmp_path / "results.json"
    shutil.copy(real_results, path)
    return path


def one_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def refused(data: dict, path, message: str, capsys) -> None:
    """`data` written to `path` is refused by `report`: exit 2, one line naming the file and
    `message`, and nothing written beside it."""
    path.write_text(json.dumps(data))
    assert main(["report", str(path)]) == 2
    line = one_error(capsys)
    assert line.startswith(f"forensics: error: {path}: ") and message in line, line
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


# --- 3. the report never overwrites a file it did not write ---


def test_report_refuses_the_results_file_as_its_out(results, tmp_path, capsys):
    before = results.read_bytes()
    (tmp_path / "sub").mkdir()
    os.symlink(results, tmp_path / "link.json")
    for out in (results, tmp_path / "sub/../results.json", tmp_path / "link.json"):
        assert main(["report", str(results), "--out", str(out)]) == 2
        assert "is the results file itself" in one_error(capsys)
    assert results.read_bytes() == before


def test_report_refuses_to_overwrite_a_file_it_did_not_write(results, tmp_path, capsys):
    for name, text in (("notes.html", "<!DOCTYPE html><p>my notes</p>"), ("data.csv", "a,b\n")):
        other = tmp_path / name
        other.write_text(text)
        assert main(["report", str(results), "--out", str(other)]) == 2
        line = one_error(capsys)
        assert f"{other}: exists and is not a report forensics wrote" in line, line
        assert other.read_text() == text
    assert not list(tmp_path.glob(".*.tmp"))


def test_report_replaces_a_report_it_wrote(results, tmp_path, capsys):
    from reports.html import HEAD, LEGACY, is_report

    default = tmp_path / "report/index.html"
    assert main(["report", str(results)]) == 0
    assert is_report(default)
    default.write_text(default.read_text().replace("</body>", "<p>stale report 28</p></body>"))
    assert main(["report", str(results)]) == 0  # re-rendered over its own earlier report
    assert "stale report 28" not in default.read_text()
    old = tmp_path / "old.html"  # a report written before reports carried their mark
    old.write_text(f"{HEAD}{LEGACY}x</title></head><body></body></html>")
    assert main(["report", str(results), "--out", str(old)]) == 0
    assert is_report(old) and "<h2>Summary</h2>" in old.read_text()
    capsys.readouterr()


# --- 8. values of the wrong kind are refused in one line naming the key ---


def _lens(r):
    return r["summary"]["m"]["lenses"]["RTT"]


def _map(r):
    return r["summary"]["m"]["information_map"]["probe"]


def _example(r):
    return next(iter(r["sets"]["examples"].values()))[0]


CORRUPTIONS = [
    (lambda r: _lens(r).update(diff="big"), "'summary.m.lenses.RTT.diff' must be a number"),
    (lambda r: _lens(r).update(diff=None), "'summary.m.lenses.RTT.diff' must be a number"),
    (lambda r: _lens(r).update(ci95=0.3), "'summary.m.lenses.RTT.ci95' must be a pair of numbers"),
    (lambda r: _lens(r).update(ci95=[0.1]), "'summary.m.lenses.RTT.ci95' must be a pair of numbers"),
    (lambda r: _lens(r).update(ci95=["a", 0.1]), "'summary.m.lenses.RTT.ci95' must be a pair"),
    (lambda r: r["summary"]["m"].update(deciding=["RTT"]), "'summary.m.deciding' must be a string"),
    (lambda r: _map(r)["lo"].pop(), "'summary.m.information_map.probe': layers, diff, lo, hi, blind must"),
    (lambda r: _map(r)["layers"].append("2"), "'summary.m.information_map.probe': layers, diff"),
    (lambda r: _map(r).update(diff="big"), "'summary.m.information_map.probe.diff' must be a list"),
    (lambda r: _map(r)["hi"].__setitem__(0, None), "'summary.m.information_map.probe.hi[0]' must be a num"),
    (lambda r: r["probes"].update(layers="all"), "'probes.layers' must be a list"),
    (lambda r: r["probes"]["layers"].__setitem__(0, [0]), "'probes.layers[0]' must be a layer"),
    (lambda r: r["relearn"].update(chance="x"), "'relearn.chance' must be a number"),
    (lambda r: r["relearn"]["metrics"]["m"]["acc_v"].update(mean="x"), "'relearn.metrics.m.acc_v.mean'"),
    (lambda r: r["activations"]["m"]["forget"].update(cosine=0.5), "'activations.m.forget.cosine' must"),
    (lambda r: r["localize"]["m"]["revert"][0].update(forget="x"), "'localize.m.revert[0].forget' must"),
    (lambda r: _example(r).update(choices="abcd"), "choices' must be a list"),
    (lambda r: _example(r).update(answer="A"), "answer' must be an integer"),
    (lambda r: r.update(unlearned="m"), "'unlearned' must be a list"),
    (lambda r: r.update(config=["a"]), "'config' must be an object"),
    (lambda r: r["reference"].update(blind="probe @0"), "'reference.blind' must be a list"),
    (lambda r: r.update(unlearning={"m": {"runs": [{"forget": "x", "retain": 1}]}}), "'unlearning.m.runs[0]"),
    (lambda r: r.update(unlearning={"m": {"runs": [{"forget": 0.3}]}}), "'unlearning.m.runs[0].retain'"),
    (lambda r: r.update(unlearning={"m": {"corner": {"forget_at_most": 0.3}}}), "'unlearning.m.corner.ret"),
]


@pytest.mark.parametrize("edit, message", CORRUPTIONS)
def test_report_refuses_values_of_the_wrong_kind(results, tmp_path, capsys, edit, message):
    """Exit 2, one line naming the file and the key path, no report written."""
    data = json.loads(results.read_text())
    edit(data)
    refused(data, results, message, capsys)


def test_the_untouched_results_render(results, capsys):
    assert main(["report", str(results)]) == 0


def hand_kinds_results() -> dict:
    per = {"forget": 0.3, "retain": 0.9, "rtt_acc_v": 0.5, "rtt_control": 0.3, "verdict": "hidden"}
    per["lenses"] = {"RTT": {"diff": 0.2, "ci95": [0.1, 0.3]}}
    per["recovery"] = {"value": 0.5, "ci95": [0.2, 0.8]}
    methods = {"gd": {"per_kind": {k: json.loads(json.dumps(per)) for k in ("a", "b")}}}
    return {
        "schema_version": 2,
        "comparison": {"kinds": ["a", "b"], "methods": methods},
        "kinds": {k: {"results": f"{k}/results.json"} for k in ("a", "b")},
    }


def _kind_a(r):
    return r["comparison"]["methods"]["gd"]["per_kind"]["a"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda r: _kind_a(r)["lenses"]["RTT"].update(ci95=0.3),
            "per_kind.a.lenses.RTT.ci95' must be a pair",
        ),
        (lambda r: _kind_a(r)["lenses"]["RTT"].update(diff="big"), "per_kind.a.lenses.RTT.diff' must be a"),
        (lambda r: _kind_a(r)["recovery"].update(value="x"), "per_kind.a.recovery.value' must be a number"),
        (lambda r: r["kinds"]["a"].update(results=3), "'kinds.a.results' must be a string"),
        (lambda r: r["comparison"].update(kinds="ab"), "'comparison.kinds' must be a list"),
    ],
)
def test_kinds_report_refuses_values_of_the_wrong_kind(tmp_path, capsys, edit, message):
    path = tmp_path / "results.json"
    data = hand_kinds_results()
    path.write_text(json.dumps(data))
    assert main(["report", str(path)]) == 0  # the untouched file renders
    shutil.rmtree(tmp_path / "report")
    capsys.readouterr()
    edit(data)
    refused(data, path, message, capsys)


# --- 9. non-UTF-8 and non-object JSON ---


@pytest.mark.parametrize(
    "content, message",
    [(NOT_UTF8, "malformed JSON (not UTF-8 text"), (b"[1, 2]", "malformed JSON (an object is expected")],
)
def test_report_refuses_results_that_are_not_utf8_or_not_an_object(tmp_path, capsys, content, message):
    path = tmp_path / "results.json"
    path.write_bytes(content)
    assert main(["report", str(path)]) == 2
    line = one_error(capsys)
    assert f"{path}: {message}" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.parametrize("content", [NOT_UTF8, b"[1, 2]", b'"text"', b"null"])
def test_read_json_and_read_metadata_name_the_file(tmp_path, content):
    (tmp_path / "forensics.json").write_bytes(content)
    for read in (lambda: read_json(tmp_path / "forensics.json"), lambda: read_metadata(tmp_path)):
        with pytest.raises(InputError, match=r"forensics\.json: malformed JSON") as e:
            read()
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("content", [NOT_UTF8, b"[1, 2]"])
def test_a_stage_file_not_utf8_or_not_an_object_is_recomputed_with_a_warning(ckpts, capsys, content):
    config = accuracy_study(ckpts)
    assert main(["study", str(config), "--quiet"]) == 0
    first = read_json(ckpts / "out/results.json")["accuracy"]
    (ckpts / "out/stages/accuracy.json").write_bytes(content)
    assert main(["study", str(config), "--quiet"]) == 0
    assert "unreadable stage result, recomputing" in capsys.readouterr().err
    results = read_json(ckpts / "out/results.json")
    assert not results["timings"]["accuracy"]["resumed"] and results["accuracy"] == first
    assert "result" in read_json(ckpts / "out/stages/accuracy.json")


@pytest.mark.parametrize("content", [NOT_UTF8, b"[1, 2]"])
def test_an_rtt_run_file_not_utf8_or_not_an_object_is_redone_with_a_warning(ckpts, capsys, content):
    sets = select(load_jsonl(ckpts / "facts.jsonl"), SPLITS, ["retain"])
    models = {"original": ckpts / "original", "m": ckpts / "never_learned"}
    settings = RelearnSettings(lrs=(1e-3,), epochs=1, seeds=(0,), extend_rounds=0)
    first = relearn(models, sets, ckpts / "out", settings, SPLITS[:1], False)
    file = ckpts / "out/relearn/m/forget_0_lr0.001_e1_s0.json"
    file.write_bytes(content)
    again = relearn(models, sets, ckpts / "out", settings, SPLITS[:1], False)
    assert "unreadable RTT run, redoing it" in capsys.readouterr().err
    assert again["best"] == first["best"] and read_json(file)["run"]["v"] == "forget_0"


@pytest.mark.parametrize("content", [NOT_UTF8, b"[1, 2]"])
def test_a_checkpoints_bad_forensics_json_is_one_line(ckpts, capsys, content):
    meta = ckpts / "never_learned/forensics.json"
    assert meta.exists()
    meta.write_bytes(content)
    assert main(["study", str(accuracy_study(ckpts)), "--quiet"]) == 2
    line = one_error(capsys)
    assert f"{meta}: malformed JSON" in line, line


# --- summary.md names the control the study used ---


def test_summary_md_names_a_fact_control(fact_controlled):  # noqa: F811
    from reports.markdown import render

    head = render(fact_controlled).splitlines()[2]
    assert f"method − the same lens on {FACT_CONTROL}" in head, head
    assert "resampled independently" in head and "never-learned" not in head and "paired" not in head


def test_summary_md_names_a_never_learned_control(real_results):
    from reports.markdown import render

    head = render(read_json(real_results)).splitlines()[2]
    assert f"method − the same lens on {MODEL_CONTROL}" in head and "paired" in head, head
