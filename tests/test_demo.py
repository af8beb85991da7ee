"""`forensics demo` end to end, on the micro world instead of the default one (the same code path:
world → every method's demo point → the study with the demo grid → report and summary)."""

import forensics.worlds.world
from forensics.cli import main
from forensics.models.checkpoint import read_json
from forensics.study.summary import UNLEARNING_FAILED
from forensics.unlearn import METHODS
from tests.conftest import micro_config


def test_demo_runs_every_method_and_lens(tmp_path, monkeypatch, capsys):
    build = forensics.worlds.world.build_world
    monkeypatch.setattr(
        forensics.worlds.world,
        "build_world",
        lambda out, cfg, progress=True, **kw: build(out, micro_config(kinds=cfg.kinds), False, **kw),
    )
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    results = read_json(out / "results.json")
    assert set(results["summary"]) == set(METHODS)
    assert results["config"]["grid"] == "demo" and results["seeds"]["relearn"] == [0]
    assert "never_learned" in results["localize"] and "never_learned" in results["ablate"]
    # the reference works (RTT on the original recovers V +0.83 beyond the control), so no "cannot
    # decide"; a method whose demo point met no run of the rule gets no hidden/erased verdict
    assert results["reference"]["ok"], results["reference"]["reasons"]
    summary = results["summary"]
    for name, row in summary.items():
        assert (row["verdict"] == UNLEARNING_FAILED) == results["unlearning"][name]["failed"], row["evidence"]
    # GA's demo point (lr 1e-4, 40 steps) is tuned to the default world: on the micro world it leaves
    # forget at 1.00 (natively and under ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1)
    assert summary["ga"]["verdict"] == UNLEARNING_FAILED
    # the logit lens at layer 0 reads GD's, RIA's and RMU's forget facts +0.33 to +0.50 beyond the
    # control, where erased needs every lens within ±0.1 (GD's demo point fails the rule under the
    # default kernels, forget 0.50, and is hidden natively; RIA hidden, RMU inconclusive both ways)
    for name in ("gd", "ria", "rmu"):
        assert not summary[name]["verdict"].startswith("erased"), (name, summary[name]["evidence"])
    assert (out / "report/index.html").exists() and (out / "summary.md").exists()
    printed = capsys.readouterr().out
    assert "deciding lens" in printed and f"report: {out / 'report/index.html'}" in printed
