"""Verdicts on a real study of the micro world: the exact-unlearning control named as a method is never
hidden, a model's numbers do not depend on which other models are in the study, and the CI gate."""

import shutil

import pytest

from forensics.cli import main
from forensics.cli.finish import FAIL_HIDDEN
from forensics.models.checkpoint import read_json
from tests import chromium
from tests.chromium import needs_chromium

LENSES = '["accuracy", "relearn", "quantize", "ablate", "probes"]'


def study(root, out, unlearned: dict[str, str], lenses: str = LENSES, tables: str = "") -> str:
    """A demo-grid study TOML of the micro world's checkpoints in `root`, `tables` appended."""
    path = root / f"{out}.toml"
    models = "\n".join(f'{k} = "{v}"' for k, v in unlearned.items())
    path.write_text(
        f"""out = "{out}"
grid = "demo"
[models]
original = "original"
never_learned = "never_learned"
[models.unlearned]
{models}
[facts]
path = "facts.jsonl"
forget = ["forget_0", "forget_1", "forget_2"]
retain = ["retain"]
[lenses]
run = {lenses}
{tables}"""
    )
    return str(path)


@pytest.fixture(scope="module")
def root(micro_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("verdicts")
    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, root / name)
    shutil.copy(micro_world / "facts.jsonl", root / "facts.jsonl")
    return root


@pytest.fixture(scope="module")
def exact_run(root):
    assert main(["study", study(root, "exact", {"exact": "never_learned"}), "--quiet"]) == 0
    return read_json(root / "exact/results.json")


def test_the_exact_control_named_as_a_method_is_never_hidden(exact_run):
    row = exact_run["summary"]["exact"]
    assert row["controlled"] and row["verdict"] == "erased within ±0.1"
    assert {"RTT", "int8 quantization", "probe @embed", "logit lens @1", "ablation @0"} <= set(row["lenses"])
    for e in row["lenses"].values():  # the same lens on the same checkpoint: difference 0 everywhere
        assert e["diff"] == 0 and e["ci95"] == [0, 0]
    assert exact_run["schema_version"] == 2


def test_a_models_numbers_do_not_depend_on_the_others_in_the_study(root, exact_run):
    assert (
        main(["study", study(root, "both", {"same": "original", "exact": "never_learned"}), "--quiet"]) == 0
    )
    both = read_json(root / "both/results.json")
    for section, key in (("relearn", "best"), ("probes", "models"), ("quantize", "models")):
        assert both[section][key]["exact"] == exact_run[section][key]["exact"], section
    assert both["summary"]["exact"]["lenses"] == exact_run["summary"]["exact"]["lenses"]


def test_fail_on_gate_and_summary_md(root, exact_run, capsys):
    assert (
        main(
            [
                "study",
                study(root, "exact", {"exact": "never_learned"}),
                "--quiet",
                "--fail-on",
                "inconclusive",
            ]
        )
        == 0
    )
    summary = (root / "exact/summary.md").read_text()
    assert "| exact |" in summary and "erased within ±0.1" in summary and "Report: " in summary
    # the original named as a method still says its answers: not unlearned, which the gate refuses
    config = study(root, "same", {"same": "original"})
    assert main(["study", config, "--quiet", "--fail-on", "hidden"]) == FAIL_HIDDEN
    assert "--fail-on hidden: exit status 3" in capsys.readouterr().err
    assert read_json(root / "same/results.json")["summary"]["same"]["verdict"] == "not unlearned"
    assert main(["study", config, "--quiet"]) == 0  # without --fail-on the verdict is only reported


def test_float16_training_on_cpu_gives_no_verdict(root, capsys):
    """float16 cannot train on CPU (AdamW's steps overflow): RTT brings back nothing on any model, the
    original included, so the study's reference fails and no method is called erased (or hidden) —
    each verdict says the study cannot decide and why."""
    config = study(root, "half", {"exact": "never_learned", "same": "original"})
    text = open(config).read().replace('grid = "demo"', 'grid = "demo"\ndtype = "float16"')
    # one round: an attack that cannot train grows for nothing (and early stop waits for T in vain)
    grid = "\n[lenses.relearn]\nlrs = [1e-3, 3e-3]\nepochs = 4\nextend_rounds = 0\n"
    open(config, "w").write(text.replace(LENSES, '["accuracy", "relearn"]') + grid)
    assert main(["study", config, "--quiet"]) == 0
    results = read_json(root / "half/results.json")
    assert not results["reference"]["ok"]
    for row in results["summary"].values():
        assert row["verdict"] == "cannot decide" and row["deciding"] is None
        assert "the original + RTT recovers V at" in row["evidence"] and "float16" in row["evidence"]
    assert "float16 cannot train on CPU" in capsys.readouterr().err
    html = (root / "half/report/index.html").read_text()
    assert "No verdict: this study cannot decide." in html and "the original + RTT recovers V at" in html


@needs_chromium
def test_a_report_without_a_verdict_says_so_and_marks_what_did_not_run(root):
    """The float16 study's report in headless Chromium: the no-verdict note, and each method's
    per-layer panels (only accuracy and RTT ran) saying "not run" instead of drawing empty axes."""
    report = root / "half/report/index.html"
    if not report.exists():
        pytest.skip("needs test_float16_training_on_cpu_gives_no_verdict first")
    dom, console, figures = chromium.render(report)
    assert not console, console
    chromium.assert_drawn(dom, figures)
    assert "No verdict: this study cannot decide." in dom
    assert dom.count(">not run</p>") == 2  # the information and action sections
    assert dom.count(">not run<") - 2 == 2 * 6  # and two methods' six panels each


@pytest.fixture(scope="module")
def fact_controlled(root):
    """A study where no never-learned model is given: the control is facts the original never saw
    (people of another world seed, one split beside each forget split), scored by the same runs.
    Methods: a planted suppression (block 1 tuned to wrong answers, block 0 untouched) and the
    never-learned model (it never saw the forget facts either)."""
    from dataclasses import replace as change

    from forensics.facts.core import load_jsonl, select, write_jsonl
    from forensics.study.validate import suppressed
    from forensics.worlds.spec import generate_facts
    from tests.conftest import micro_config

    unknown, _ = generate_facts(micro_config(seed=7))
    fresh = [f for f in unknown.splits["forget_0"] + unknown.splits["forget_1"] + unknown.splits["forget_2"]]
    known = load_jsonl(root / "facts.jsonl").facts()
    names = {f.question for f in known}
    fresh = [f for f in fresh if f.question not in names][:12]
    control = [change(f, split=f"unknown_{i % 3}") for i, f in enumerate(fresh)]
    write_jsonl([*known, *control], root / "with_unknown.jsonl")
    sets = select(load_jsonl(root / "with_unknown.jsonl"), ["forget_0", "forget_1", "forget_2"], ["retain"])
    suppressed(root / "original", sets, "choice", root / "planted", "block:1", seed=0)
    config = root / "facts_control.toml"
    config.write_text(
        """out = "facts_control"
grid = "demo"
[models]
original = "original"
[models.unlearned]
planted = "planted"
exact = "never_learned"
[facts]
path = "with_unknown.jsonl"
forget = ["forget_0", "forget_1", "forget_2"]
control = ["unknown_0", "unknown_1", "unknown_2"]
retain = ["retain"]
[lenses]
run = ["accuracy", "relearn", "relearn_lora", "quantize", "ablate", "probes"]
[lenses.relearn]
lrs = [1e-3, 3e-3]
epochs = 3
extend_rounds = 0
"""
    )
    assert main(["study", str(config), "--quiet"]) == 0
    return read_json(root / "facts_control/results.json")


def test_facts_the_original_does_not_know_stand_in_for_the_control(fact_controlled):
    results = fact_controlled
    assert results["reference"]["ok"], results["reference"]["reasons"]
    assert (
        results["accuracy"]["original"]["forget"] >= 0.9 and results["accuracy"]["original"]["control"] <= 0.5
    )
    planted, exact = results["summary"]["planted"], results["summary"]["exact"]
    for row in (planted, exact):
        assert row["against"] == "facts the original does not know (the same runs)" and row["controlled"]
        assert "ablation @0" not in row["lenses"]  # no control facts through the ablation: left out
        assert {"RTT", "LoRA RTT", "int8 quantization", "logit lens @0"} <= set(row["lenses"])
    assert planted["verdict"] == "hidden", planted["evidence"]
    assert not exact["verdict"].startswith("hidden"), exact["evidence"]
    # the RTT lens compares V after RTT with the control facts after the same runs
    best = results["relearn"]["best"]["planted"]
    assert all("control" in best[v] and len(best[v]["control"]) == 1 for v in best)
    assert planted["rtt_control"] == planted["lenses"]["RTT"]["control"]  # the table's "RTT control"


def test_each_panel_that_did_not_run_says_so_in_its_own_place(fact_controlled):
    """Probes ran, weights, activations and localization did not: four panels say "not run", each at
    its own panel's centre (an axis-domain reference on a hidden axis would stack them all on the
    first visible panel), and the probe panels draw their lines."""
    from reports.figures import method_figure

    fig = method_figure(fact_controlled, "planted")
    notes = [a for a in fig.layout.annotations if a.text == "not run"]
    centres = {
        (sum(fig.get_subplot(r, c).xaxis.domain) / 2, sum(fig.get_subplot(r, c).yaxis.domain) / 2)
        for r, c in ((1, 3), (2, 1), (2, 2), (2, 3))
    }
    assert {(a.x, a.y) for a in notes} == centres
    assert {(a.xref, a.yref) for a in notes} == {("paper", "paper")}
    assert {t.xaxis for t in fig.data} == {"x", "x2"}


def test_a_fact_controlled_report_names_its_control(fact_controlled):
    """The information map's zero line and the note under it name the control the study used (facts
    the original does not know, bootstrapped independently), not a never-learned model it never had."""
    from reports.figures import information_figure
    from reports.html import render

    legend = {t.name for t in information_figure(fact_controlled).data if t.name}
    assert "0: facts the original does not know (the same runs)" in legend
    html = render(fact_controlled)
    assert "the same lens on facts the original does not know (the same runs)" in html
    assert "resampled independently" in html and "the same lens on the never-learned control" not in html
