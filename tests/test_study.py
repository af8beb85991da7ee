"""A study on checkpoints written outside a world: CLI, resume, determinism, and the report in Chromium."""

import json
import re
import shutil

import pytest

from forensics.cli import main
from forensics.models.checkpoint import read_json
from forensics.study.config import DEFAULT_LENSES
from forensics.study.config_file import load_config
from forensics.study.run import SCHEMA_VERSION, run_study
from forensics.unlearn.run import UnlearnSettings, unlearn
from forensics.worlds.world import load_world
from tests import chromium
from tests.chromium import needs_chromium
from tests.conftest import QUICK_LENSES

HOSTILE = "<script>alert(1)</script>"


def write_config(root, out: str) -> str:
    world = read_json(root / "world.json")
    s = world["sets"]
    path = root / f"{out}.toml"
    path.write_text(
        f"""name = "micro"
out = "{out}"
scorer = "choice"
seeds = [0]
[models]
original = "elsewhere/original"
never_learned = "elsewhere/never_learned"
[models.unlearned]
gd = "elsewhere/gd"
rmu = "elsewhere/rmu"
[facts]
path = "facts/facts.jsonl"
forget = {json.dumps(s["forget"])}
retain = {json.dumps(s["retain"])}
near_retain = {json.dumps(s["near_retain"])}
{QUICK_LENSES}"""
    )
    return str(path)


@pytest.fixture(scope="module")
def study_root(micro_world, tmp_path_factory):
    """Checkpoints and facts laid out by hand (not a world): original, control, GD, RMU; one forget
    question rewritten to hold a script tag."""
    root = tmp_path_factory.mktemp("study")
    _, sets = load_world(micro_world)
    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, root / "elsewhere" / name)
    fast = {
        "gd": UnlearnSettings(batch_size=16, budget=2, lrs=(1e-3,), steps=60),
        "rmu": UnlearnSettings(batch_size=16, budget=2, lrs=(1e-2,), steps=100, fixed={"layer": 1}),
    }
    for name, settings in fast.items():
        unlearn(name, root / "elsewhere/original", sets, root / "elsewhere" / name, settings, progress=False)
    lines = (micro_world / "facts.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["split"] in read_json(micro_world / "world.json")["sets"]["forget"]
    first["question"] = f"{HOSTILE} {first['question']}"
    lines[0] = json.dumps(first)
    (root / "facts").mkdir()
    (root / "facts/facts.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(micro_world / "world.json", root / "world.json")  # only to read the split names
    return root


@pytest.fixture(scope="module")
def first_run(study_root):
    config = write_config(study_root, "run1")
    assert main(["study", config, "--quiet"]) == 0
    return study_root / "run1"


def test_study_writes_results_and_report(first_run):
    results = read_json(first_run / "results.json")
    assert results["schema_version"] == SCHEMA_VERSION
    for lens in DEFAULT_LENSES:
        assert lens in results, lens
    assert set(results["summary"]) == {"gd", "rmu"}
    # the reference works (the original answers 1.00 of its forget facts; RTT on it recovers V +0.83
    # beyond the control, 95% CI [+0.67, +1.00]), so each method gets a verdict; neither is erased:
    # the logit lens at layer 0 reads GD's forget facts +0.50 beyond the control (+0.58 under
    # ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1; hidden both ways) and RMU's +0.25 (both ways;
    # inconclusive, its interval's lower end at 0.00), where erased needs every lens within ±0.1
    assert results["reference"]["ok"], results["reference"]["reasons"]
    for row in results["summary"].values():
        assert row["verdict"] in ("hidden", "inconclusive"), row["evidence"]
        assert row["evidence"].startswith("forget accuracy")
        assert row["action_map"]["layers"] == ["0", "1"] and len(row["action_map"]["revert"]) == 2
        assert row["information_map"]["probe"]["layers"] == ["embed", "0", "1"]
        assert row["controlled"] and row["deciding"] in row["lenses"]
        for e in row["lenses"].values():
            assert e["ci95"][0] <= e["diff"] <= e["ci95"][1]
    assert results["control_action_map"]["layers"] == ["0", "1"]
    summary_md = (first_run / "summary.md").read_text()
    assert summary_md.startswith("# Unlearning forensics: micro")
    where = summary_md.split("Where the answers still are")[1]  # the information map in words
    for name, row in results["summary"].items():
        assert " reads " in row["where"] and f"- **{name}**: " in where
    assert "<ul id='where'>" in (first_run / "report/index.html").read_text()
    assert set(results["versions"]) >= {"forensics", "torch", "transformers", "transformer_lens"}
    assert "unknown" not in results["versions"].values()
    assert all(not t["resumed"] for t in results["timings"].values())
    assert (first_run / "report/index.html").exists()


def strip(obj):
    """Everything but timings, paths and the config (which names the output folder)."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in ("seconds", "timings", "config")}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def test_same_seed_same_numbers(study_root, first_run):
    config = write_config(study_root, "run2")
    again = run_study(load_config(config), progress=False)
    assert strip(again) == strip(read_json(first_run / "results.json"))


def test_resume_after_a_kill_redoes_nothing_finished(study_root, monkeypatch):
    config = write_config(study_root, "run3")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(
            "forensics.measure.localize.localize_section", killed
        )  # the last of the default lenses but four
        with pytest.raises(KeyboardInterrupt):
            run_study(load_config(config), progress=False)
    stages = study_root / "run3/stages"
    finished = ["ablate", "accuracy", "activations", "probes", "quantize", "relearn", "weights"]
    assert sorted(p.stem for p in stages.glob("*.json")) == finished
    assert not (study_root / "run3/results.json").exists()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr("forensics.attacks.relearn.relearn", must_not_run)
    monkeypatch.setattr("forensics.attacks.quantize.quantize_attack", must_not_run)
    monkeypatch.setattr("forensics.attacks.ablate.ablate_attack", must_not_run)
    monkeypatch.setattr("forensics.models.scoring.accuracy_table", must_not_run)
    for finished_lens in (
        "measure.probing.probe_models",
        "measure.localize.weights_section",
        "measure.localize.activations_section",
    ):
        monkeypatch.setattr(f"forensics.{finished_lens}", must_not_run)
    results = run_study(load_config(config), progress=False)
    resumed = {k for k, t in results["timings"].items() if t["resumed"]}
    assert resumed == set(finished)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("[models]\n", ""), r"unknown key 'original'"),
        (lambda t: t.replace('original = "elsewhere/original"\n', ""), r"missing 'original' in \[models\]"),
        (
            lambda t: t.replace('gd = "elsewhere/gd"', 'gd = "elsewhere/nothing"'),
            # a name that is no folder here reads as a hub id: it is not in the local cache either
            r"\[models.unlearned\] 'gd': elsewhere/nothing: no such folder, and not in the local Hugging",
        ),
        (lambda t: t + '[lenses]\nrun = ["tea"]\n', r"unknown lens 'tea'"),
        (lambda t: t.replace("scorer", "scorer = = "), r"malformed TOML"),
    ],
)
def test_bad_config(study_root, tmp_path, capsys, edit, message):
    config = write_config(study_root, "bad")
    text = edit(open(config).read())
    bad = study_root / "bad.toml"
    bad.write_text(text)
    assert main(["study", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]) and "bad.toml" in err[0], err
    assert not (study_root / "bad").exists()


def test_report_command_and_bad_results(first_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(first_run / "results.json"), "--out", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    bogus = tmp_path / "results.json"
    bogus.write_text("{}")
    assert main(["report", str(bogus)]) == 2
    assert "not a forensics results.json" in capsys.readouterr().err


@needs_chromium
def test_report_renders_in_headless_chromium(first_run):
    report = first_run / "report/index.html"
    html = report.read_text()
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    dom, console, figures = chromium.render(report)
    assert not console, console  # no errors, no warnings, nothing logged
    # the unlearning frontier, RTT, its grid, information map, action map, one panel per method
    assert len(figures) == 7 and "fig-unlearning" in figures, figures
    drawn = dom.count('class="main-svg"')
    assert drawn >= len(figures), (drawn, figures)
    chromium.assert_drawn(dom, figures)
    assert 'id="summary"' in dom and ">gd<" in dom and ">rmu<" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # shown as text, never run


def hand_results() -> dict:
    """The least a study's results.json holds for its report: one method's summary row."""
    row = {"verdict": "hidden", "evidence": "RTT +0.30", "deciding": None, "forget": 0.25, "retain": None}
    return {"schema_version": SCHEMA_VERSION, "name": "hand", "summary": {"gd": row}}


def hand_kinds_results() -> dict:
    """The least a kinds study's results.json holds for its report."""
    per = {"lenses": {}, "forget": 0.3, "retain": 0.9, "rtt_acc_v": 0.5, "rtt_control": 0.3, "recovery": None}
    methods = {"gd": {"per_kind": {k: {**per, "verdict": "hidden"} for k in ("a", "b")}}}
    kinds = {k: {"results": f"{k}/results.json"} for k in ("a", "b")}
    return {
        "schema_version": SCHEMA_VERSION,
        "comparison": {"kinds": ["a", "b"], "methods": methods},
        "kinds": kinds,
    }


@pytest.mark.parametrize(
    "make, edit, missing",
    [
        (hand_results, lambda r: r["summary"]["gd"].pop("verdict"), "summary.gd.verdict"),
        (hand_results, lambda r: r["summary"]["gd"].pop("evidence"), "summary.gd.evidence"),
        (
            hand_results,
            lambda r: r["summary"]["gd"].update(lenses={"RTT": {"diff": 0.3}}),
            "summary.gd.lenses.RTT.ci95",
        ),
        (hand_results, lambda r: r.update(relearn={"metrics": {}, "best": {}}), "relearn.chance"),
        (
            hand_kinds_results,
            lambda r: r["comparison"]["methods"]["gd"]["per_kind"]["b"].pop("verdict"),
            "comparison.methods.gd.per_kind.b.verdict",
        ),
        (hand_kinds_results, lambda r: r["kinds"]["a"].pop("results"), "kinds.a.results"),
    ],
)
def test_report_refuses_results_missing_a_key_it_reads(tmp_path, capsys, make, edit, missing):
    """No traceback: one line naming the file and the key, exit 2, nothing written."""
    results = make()
    assert main(["report", str(write_results(tmp_path, results))]) == 0  # the untouched file renders
    shutil.rmtree(tmp_path / "report")
    capsys.readouterr()
    edit(results)
    path = write_results(tmp_path, results)
    assert main(["report", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"forensics: error: {path}: missing '{missing}', which the report reads"], lines
    assert not (tmp_path / "report").exists()


def write_results(folder, results: dict):
    path = folder / "results.json"
    path.write_text(json.dumps(results))
    return path


def test_report_refuses_a_directory_as_out(tmp_path, capsys):
    """`--out DIR` names a folder, not the report's file: refused up front, nothing written there."""
    out = tmp_path / "somedir"
    out.mkdir()
    path = write_results(tmp_path, hand_results())
    assert main(["report", str(path), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{out}: is a directory" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "somedir"]
    assert not any(out.iterdir())


def test_write_html_leaves_no_temporary_file_when_the_replace_fails(tmp_path, monkeypatch):
    import os

    from reports.html import write_html

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        write_html("<p>report</p>", tmp_path / "index.html")
    assert list(tmp_path.iterdir()) == []


def test_summary_md_escapes_html_from_results():
    """GitHub renders raw HTML in Markdown: every name and text from results shows as text."""
    from reports.markdown import render

    hostile = "<img src=x onerror=alert(1)>"
    results = hand_results()
    results["name"] = hostile
    results["config"] = {"scorer": hostile, "grid": "a & b"}
    row = results["summary"].pop("gd")
    results["summary"][hostile] = {**row, "verdict": hostile, "evidence": hostile, "deciding": hostile}
    text = render(results)
    assert "<img" not in text.replace("\\<img", "") and "&lt;" not in text  # escaped for Markdown
    assert text.count("\\<img src=x onerror=alert(1)\\>") == 7 and "a \\& b" in text
