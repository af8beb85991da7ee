"""A kinds study (docs/design.md §3): one study per kind of knowledge — its forget splits, its never-learned
control, its unlearned checkpoints — under OUT/<kind>/, then the kinds compared in OUT/results.json
(`forensics.study.compare`). Each kind's study resumes on its own, as any study does."""

from __future__ import annotations

from forensics.errors import InputError
from forensics.models.checkpoint import write_json
from forensics.outdir import claim
from forensics.study.compare import compare_kinds
from forensics.study.config import KindStudy
from forensics.study.run import SCHEMA_VERSION, STUDY_FILES, run_study, study_sets, versions


def run_kind_study(
    ks: KindStudy, progress: bool = True, force: bool = False, stages: dict | None = None
) -> tuple[dict, dict[str, dict]]:
    """Every kind's study, then the comparison; writes OUT/results.json (with `stages`: the seconds of
    what ran before, and each kind's study) and returns it with the kinds' own results (by kind)."""
    for kind, cfg in ks.studies.items():  # every kind's sets are checked before any study runs
        try:
            study_sets(cfg)
        except InputError as e:
            message = str(e) if str(e).startswith(f"kind '{kind}'") else f"kind '{kind}': {e}"
            raise InputError(f"{cfg.facts}: {message}") from None
    with claim(ks.out, "study", force, outputs=STUDY_FILES):
        by_kind = {kind: run_study(cfg, progress, force) for kind, cfg in ks.studies.items()}
        results = {
            "schema_version": SCHEMA_VERSION,
            "name": ks.name,
            "versions": versions(),
            "kinds": {
                kind: {
                    "results": str((cfg.out / "results.json").relative_to(ks.out)),
                    "forget": list(cfg.forget),
                    "never_learned": str(cfg.never_learned) if cfg.never_learned else None,
                    "unlearned": {n: str(p) for n, p in cfg.unlearned.items()},
                }
                for kind, cfg in ks.studies.items()
            },
            "comparison": compare_kinds(by_kind, ks.verdict),
            "stages": {**(stages or {}), **{f"study {k}": r["timings"] for k, r in by_kind.items()}},
        }
        write_json(results, ks.out / "results.json")
    return results, by_kind
