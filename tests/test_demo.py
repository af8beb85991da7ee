"""`forensics demo` end to end, on the micro world instead of the default one (the same code path:
world → every method's demo point → the study with the demo grid → report and summary)."""

import forensics.world
from forensics.checkpoint import read_json
from forensics.cli import main
from forensics.unlearn import METHODS
from tests.conftest import micro_config


def test_demo_runs_every_method_and_lens(tmp_path, monkeypatch, capsys):
    build = forensics.world.build_world
    monkeypatch.setattr(
        forensics.world,
        "build_world",
        lambda out, cfg, progress=True, **kw: build(out, micro_config(kinds=cfg.kinds), False, **kw),
    )
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    results = read_json(out / "results.json")
    assert set(results["summary"]) == set(METHODS)
    assert results["config"]["grid"] == "demo" and results["seeds"]["relearn"] == [0]
    assert "never_learned" in results["localize"] and "never_learned" in results["ablate"]
    for row in results["summary"].values():
        assert row["verdict"] and row["evidence"]
    assert (out / "report/index.html").exists() and (out / "summary.md").exists()
    printed = capsys.readouterr().out
    assert "deciding lens" in printed and f"report: {out / 'report/index.html'}" in printed
