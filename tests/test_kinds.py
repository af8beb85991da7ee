"""Two kinds of knowledge: the two-kind world, a kinds study from TOML, the comparison, its report."""

import contextlib
import io
import json

import numpy as np
import pytest

from forensics.cli import main
from forensics.errors import InputError
from forensics.models.checkpoint import read_json, read_metadata
from forensics.outcomes import bootstrap_means, unbits
from forensics.study.compare import words
from forensics.study.verdict import paired_bootstrap
from forensics.unlearn.run import UnlearnSettings, unlearn
from forensics.worlds.kinds import CONTROLS, KINDS
from forensics.worlds.spec import generate_facts
from forensics.worlds.world import WORLD_FILE, build_world, load_world
from tests import chromium
from tests.chromium import needs_chromium
from tests.conftest import QUICK_LENSES, micro_config

KINDS_MICRO = dict(
    kinds=KINDS, n_people=16, n_forget=8, n_ships=8, n_forget_splits=2, n_cities=12, n_implanted_forget=8
)


@pytest.fixture(scope="module")
def kinds_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds_world")
    build_world(root, micro_config(**KINDS_MICRO), progress=False)
    return root


def test_facts_carry_their_kind_and_each_kind_its_own_splits():
    facts, roles = generate_facts(micro_config(**KINDS_MICRO))
    assert roles["pretrained"]["forget"] == ["forget_0", "forget_1"]
    assert roles["implanted"]["forget"] == ["implanted_0", "implanted_1"]
    assert {f.kind for f in facts.facts(["forget_0", "near_retain", "retain"])} == {"pretrained"}
    assert {f.kind for f in facts.facts(["implanted_0", "implanted_near"])} == {"implanted"}
    assert all("city" in f.question for f in facts.facts(["implanted_1"]))
    assert len({f.question for f in facts.facts()}) == 16 + 8 + 12


def test_two_kind_world_models(kinds_world):
    world = read_json(kinds_world / WORLD_FILE)
    assert list(world["kinds"]) == list(KINDS)
    assert {k: v["control"] for k, v in world["kinds"].items()} == CONTROLS
    models = world["models"]
    assert list(models) == ["base", "base_without", "original", *CONTROLS.values()]
    # the implants start from the base models; the bases from scratch
    assert read_metadata(kinds_world / "checkpoints/original")["from"] == "base"
    assert read_metadata(kinds_world / "checkpoints/never_learned_pretrained")["from"] == "base_without"
    assert read_metadata(kinds_world / "checkpoints/base")["from"] is None
    original = models["original"]["accuracy"]
    # 8 forget facts a kind, chance 0.25. Measured (natively and under ATEN_CPU_CAPABILITY=default
    # OMP_NUM_THREADS=1 alike): the original 1.00 on both kinds' forget facts, the pretrained
    # control 0.00 and the implanted control 0.12 on their own kind's, 1.00 on the other kind's
    for kind in KINDS:
        assert original[kind]["forget"] >= 0.75 and original[kind]["retain"] >= 0.75  # knows them
        control = models[CONTROLS[kind]]["accuracy"]
        other = next(k for k in KINDS if k != kind)
        assert control[kind]["forget"] <= 0.375  # never saw them: chance, give or take a fact
        assert original[kind]["forget"] - control[kind]["forget"] >= 0.5, (original, control)
        assert control[other]["forget"] >= 0.75  # learned the other kind's forget facts as usual
    # the facts file keeps the kinds
    lines = [json.loads(x) for x in (kinds_world / "facts.jsonl").read_text().splitlines()]
    assert {x["kind"] for x in lines} == set(KINDS)


def test_load_world_needs_the_kind_in_a_two_kind_world(kinds_world, micro_world):
    with pytest.raises(InputError, match="a two-kind world: name one of its kinds"):
        load_world(kinds_world)
    _, sets = load_world(kinds_world, "implanted")
    assert list(sets.forget) == ["implanted_0", "implanted_1"] and {f.kind for f in sets.forget_facts()} == {
        "implanted"
    }
    with pytest.raises(InputError, match="has no kinds"):
        load_world(micro_world, "pretrained")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kinds", "pretrained"], "give both of pretrained, implanted"),
        (["--kinds", "pretrained,implanted", "--implanted-forget", "200"], "--implanted-forget 200"),
        # the flags the user typed are named, not the config's field names
        (["--kinds", "pretrained,implanted", "--cities", "0"], "fewer than --cities (0)"),
        (["--cities", "12"], "--cities needs --kinds"),
    ],
)
def test_bad_kinds_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "w"
    assert main(["world", "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.fixture(scope="module")
def kind_study(kinds_world, tmp_path_factory):
    """GD unlearned on each kind's forget set, then a kinds study declared in TOML."""
    root = tmp_path_factory.mktemp("kind_study")
    for kind in KINDS:
        _, sets = load_world(kinds_world, kind)
        settings = UnlearnSettings(batch_size=16, budget=2, lrs=(1e-3,), steps=60)
        unlearn(
            "gd", kinds_world / "checkpoints/original", sets, root / f"gd_{kind}", settings, progress=False
        )
    ck = kinds_world / "checkpoints"
    config = root / "kinds.toml"
    config.write_text(
        f"""out = "out"
grid = "demo"
[models]
original = "{ck / "original"}"
[models.kinds.pretrained]
never_learned = "{ck / "never_learned_pretrained"}"
unlearned = {{ gd = "gd_pretrained" }}
[models.kinds.implanted]
never_learned = "{ck / "never_learned_implanted"}"
unlearned = {{ gd = "gd_implanted" }}
[facts]
path = "{kinds_world / "facts.jsonl"}"
retain = ["retain"]
[facts.kinds]
pretrained = ["forget_0", "forget_1"]
implanted = ["implanted_0", "implanted_1"]
[lenses]
run = ["accuracy", "relearn", "probes"]
{QUICK_LENSES}"""
    )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["study", str(config), "--quiet"]) == 0
    (root / "printed.txt").write_text(printed.getvalue())
    return root / "out"


def test_a_kinds_study_prints_each_kinds_table_and_its_time_once(kind_study):
    printed = (kind_study.parent / "printed.txt").read_text()
    assert printed.count("scorer, chance") == len(KINDS) and "kinds compared:" in printed
    assert printed.count("done in ") == 1 and printed.rstrip().splitlines()[-1].startswith("done in ")


def test_each_kind_is_its_own_study(kind_study):
    for kind in KINDS:
        results = read_json(kind_study / kind / "results.json")
        assert set(results["facts"]["kinds"]) == {kind}  # [facts.kinds] gave the forget facts their kind
        assert results["config"]["never_learned"].endswith(CONTROLS[kind])
        assert (kind_study / kind / "report/index.html").exists()
        assert (kind_study / kind / "summary.md").exists()
    top = (kind_study / "summary.md").read_text()  # the comparison's own summary, beside its report
    assert all(f"| gd | {kind} |" in top for kind in KINDS) and "- gd" in top and "Report: " in top
    # each kind's information map in words, beside the comparison (the probes ran on both kinds)
    assert all(f"- **gd**, {kind}: " in top.split("Where the answers still are")[1] for kind in KINDS)
    assert "<ul id='where'>" in (kind_study / "report/index.html").read_text()


def test_comparison_is_the_kinds_figures_and_their_difference(kind_study):
    top = read_json(kind_study / "results.json")
    cmp = top["comparison"]
    assert cmp["kinds"] == list(KINDS) and list(cmp["methods"]) == ["gd"]
    gd = cmp["methods"]["gd"]
    by_kind = {kind: read_json(kind_study / kind / "results.json") for kind in KINDS}
    for kind, results in by_kind.items():
        mine = gd["per_kind"][kind]
        summary = results["summary"]["gd"]
        assert mine["verdict"] == summary["verdict"] and mine["forget"] == summary["forget"]
        for lens, e in mine["lenses"].items():
            assert e["diff"] == summary["lenses"][lens]["diff"]
        # recovery by hand: V correct after RTT (cross-fitted, as the verdict reads it), summed over rotations
        best = results["relearn"]["best"]
        correct = {
            name: sum(unbits(best[name][v]["seeds"][0]["v_cross"]).sum() for v in best[name])
            for name in ("gd", "original")
        }
        assert mine["recovery"]["value"] == pytest.approx(correct["gd"] / correct["original"])
    a, b = KINDS
    for lens, d in gd["difference"].items():
        expected = gd["per_kind"][a]["lenses"][lens]["diff"] - gd["per_kind"][b]["lenses"][lens]["diff"]
        assert d["diff"] == pytest.approx(expected)
    # the RTT intervals by hand from the per-fact outcomes: recovery from paired draws of method and
    # original (seed 0), the difference from independent draws per kind (seeds 0 and 1)
    draws = {}
    for i, (kind, results) in enumerate(by_kind.items()):
        best = results["relearn"]["best"]
        rows = {n: unbits("".join(best[n][v]["seeds"][0]["v_cross"] for v in best[n])) for n in best}
        strata = results["facts"]["splits"]
        m, r = bootstrap_means([rows["gd"], rows["original"]], strata)
        expected = np.quantile(m[r > 0] / r[r > 0], [0.025, 0.975])
        assert gd["per_kind"][kind]["recovery"]["ci95"] == pytest.approx(expected)
        draws[kind] = paired_bootstrap(rows["gd"], rows["never_learned"], strata, seed=i)
    expected = np.quantile(draws[a] - draws[b], [0.025, 0.975])
    assert gd["difference"]["RTT"]["ci95"] == pytest.approx(expected)
    assert "RTT" in gd["difference"] and gd["probe_layers"] == ["embed", "0", "1"]
    assert gd["words"].startswith("gd")


def test_words_by_hand():
    def lens(diff, lo, hi):
        return {"diff": diff, "ci95": [lo, hi]}

    per = {"p": {"lenses": {"RTT": lens(0.6, 0.5, 0.7)}}, "i": {"lenses": {"RTT": lens(0.2, 0.1, 0.3)}}}
    # the original: the probe reads both kinds at layers 0 and 1, the i kind not at layer 2
    reads = {f"probe @{x}": lens(0.5, 0.3, 0.7) for x in "012"}
    sees = {"p": reads, "i": {**reads, "probe @2": lens(0.02, -0.1, 0.14)}}
    probes = {
        "probe @0": lens(0.0, -0.1, 0.1),
        "probe @1": lens(0.3, 0.1, 0.5),
        "probe @2": lens(0.4, 0.2, 0.6),
    }
    text = words("gd", "p", "i", per, {"RTT": lens(0.4, 0.25, 0.55), **probes}, sees)
    assert text.startswith("gd hides p facts more than i ones: ")
    assert "difference +0.40 [+0.25, +0.55]" in text
    assert "the probes differ between the kinds at layer 1 (" in text  # not 2: blind on i there
    assert "at layer 2 the probe reads no i fact beyond the control even on the original" in text
    less = {"RTT": lens(-0.4, -0.55, -0.25)}
    assert words("gd", "p", "i", per, less, sees).startswith("gd hides i facts more than p ones")
    tie = {"RTT": lens(0.05, -0.1, 0.2), "probe @0": lens(0.0, -0.1, 0.1)}
    assert "the intervals cannot tell the kinds apart" in words("gd", "p", "i", per, tie, sees)
    assert "do not differ between the kinds at layer 0" in words("gd", "p", "i", per, tie, sees)
    blind = {"p": {}, "i": {}}
    assert "the probes are not compared" in words("gd", "p", "i", per, tie, blind)
    assert "not compared" in words("gd", "p", "i", per, {}, sees)
    # a fact control confounded for the probe (it reads the questions at the embedding): not compared there
    mixed = {"p": {k: {**e, "confounded": k != "probe @2"} for k, e in reads.items()}, "i": reads}
    text = words("gd", "p", "i", per, {"RTT": lens(0.4, 0.25, 0.55), **probes}, mixed)
    assert "the probes differ between the kinds at layer 2" in text and "at layer 1" not in text.split("(")[0]
    assert "(at layer 0, 1 the probe is confounded by the p control facts)" in text


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.replace('retain = ["retain"]', 'retain = ["retain"]\nforget = ["forget_0"]'),
            "'forget' and 'kinds'",
        ),
        (lambda t: t.replace('implanted = ["implanted_0", "implanted_1"]\n', ""), "unknown key 'implanted'"),
        (
            lambda t: t.replace('"implanted_1"]', '"nope"]'),
            "facts.jsonl: kind 'implanted': split 'nope' not found",
        ),
        # the kinds are compared as independent samples: no shared forget split, no shared control
        (
            lambda t: t.replace('"implanted_1"]', '"forget_1"]'),
            "split 'forget_1' of facts.jsonl is forget in kinds 'pretrained' and 'implanted'",
        ),
        (
            lambda t: t.replace("never_learned_implanted", "never_learned_pretrained"),
            "kinds 'pretrained' and 'implanted' name one never-learned control",
        ),
        # a kind's folder would take the place of the comparison's report
        (
            lambda t: t.replace("implanted = [", "report = [").replace("kinds.implanted]", "kinds.report]"),
            "[facts.kinds] 'report': the name of something a study writes in its folder",
        ),
    ],
)
def test_bad_kinds_config(kind_study, tmp_path, capsys, edit, message):
    text = (kind_study.parent / "kinds.toml").read_text()
    text = text.replace('out = "out"', f'out = "{tmp_path / "o"}"').replace(
        '"gd_', f'"{kind_study.parent}/gd_'
    )
    config = tmp_path / "bad.toml"
    config.write_text(edit(text))
    assert main(["study", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


@needs_chromium
def test_kinds_report_renders_in_headless_chromium(kind_study):
    dom, console, figures = chromium.render(kind_study / "report/index.html")
    assert not console, console
    assert figures == ["fig-kinds-rtt", "fig-kinds-probe-0"]
    chromium.assert_drawn(dom, figures)
    assert 'id="kinds"' in dom and ">pretrained<" in dom and ">implanted<" in dom
    assert "difference between the kinds" in dom
    assert np.isfinite(
        read_json(kind_study / "results.json")["comparison"]["methods"]["gd"]["difference"]["RTT"]["diff"]
    )


def test_paper_layout_kinds_in_one_config(paper_data, kinds_world, tmp_path):
    """The paper's `years` (pretraining knowledge) beside `random-birthdays` (implanted) in one config:
    each kind its own facts folder, forget and retain splits; the facts load with their kind."""
    from forensics.study.config import KindStudy
    from forensics.study.config_file import load_config
    from forensics.study.run import study_sets

    ck = kinds_world / "checkpoints"  # stand-ins: loading the config checks the folders exist
    config = tmp_path / "paper.toml"
    config.write_text(
        f"""[models]
original = "{ck / "original"}"
unlearned = {{ rmu = "{ck / "base"}" }}
[facts]
drop_duplicates = true
[facts.kinds.pretrained]
path = "{paper_data / "years"}"
forget = ["split_0", "split_1", "split_2", "split_3"]
retain = ["split_4"]
[facts.kinds.implanted]
path = "{paper_data / "random-birthdays"}"
forget = ["split_0", "split_1", "split_2", "split_3"]
retain = ["split_4", "split_5"]
"""
    )
    ks = load_config(config)
    assert isinstance(ks, KindStudy) and list(ks.studies) == ["pretrained", "implanted"]
    for kind, folder in (("pretrained", "years"), ("implanted", "random-birthdays")):
        cfg = ks.studies[kind]
        assert cfg.facts == (paper_data / folder).resolve() and cfg.out == ks.out / kind
        assert cfg.unlearned == {"rmu": ck / "base"}  # the same checkpoint, studied on each kind
        sets = study_sets(cfg)
        assert len(sets.forget) == 4 and {f.kind for f in sets.forget_facts()} == {kind}
        assert {f.kind for f in sets.retain} == {""}  # retain splits keep no kind
    assert ks.studies["implanted"].retain == ("split_4", "split_5")


def test_report_command_renders_a_kinds_study(kind_study, tmp_path):
    out = tmp_path / "again.html"
    assert main(["report", str(kind_study / "results.json"), "--out", str(out)]) == 0
    assert "id='kinds'" in out.read_text() and "difference between the kinds" in out.read_text()


def test_the_probe_note_shows_only_beside_probe_figures(kind_study):
    """The kinds report's note on the dotted probe lines is there when a probe figure is, and not
    under the RTT chart alone (a study without the probe lens, as `forensics real` ran)."""
    from reports.kinds import NOTE, render

    results = read_json(kind_study / "results.json")
    assert NOTE in render(results)
    for entry in results["comparison"]["methods"].values():
        entry["probe_layers"] = []
    page = render(results)
    assert NOTE not in page and "id='fig-kinds-rtt'" in page


def test_fail_on_over_kinds_hidden_wins():
    """A kinds study's gate: hidden in one kind, inconclusive in the other exits 3 (as one study with
    both methods would), not 4."""
    from forensics.cli.finish import FAIL_HIDDEN, FAIL_INCONCLUSIVE, gate, worst

    hidden = {"summary": {"gd": {"verdict": "hidden"}}}
    unsure = {"summary": {"gd": {"verdict": "inconclusive"}}}
    undecided = {"summary": {"gd": {"verdict": "cannot decide"}}}
    erased = {"summary": {"gd": {"verdict": "erased within ±0.1"}}}
    for order in ([hidden, unsure], [unsure, hidden]):
        assert worst([gate(r, "inconclusive") for r in order]) == FAIL_HIDDEN
    assert worst([gate(r, "inconclusive") for r in (erased, unsure)]) == FAIL_INCONCLUSIVE
    assert worst([gate(r, "inconclusive") for r in (erased, undecided)]) == FAIL_INCONCLUSIVE
    assert worst([gate(r, "hidden") for r in (erased, unsure)]) == 0


def test_validate_on_a_two_kind_world_asks_for_its_flag(kinds_world, capsys):
    assert main(["validate", "--world", str(kinds_world), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name one of its kinds with --kind (pretrained, implanted)" in err[0]
