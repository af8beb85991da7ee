"""unlearning-forensics: did an unlearning method erase facts from a model's weights, or hide them?

From Python: `Study(...)` (or `Study.from_toml(path)`) → `.run()` → `Results` (verdicts and lenses as
DataFrames, the report); `load_results(path)`; on a model in memory `score(model, tokenizer, facts)`,
`rtt(model, tokenizer, sets, v=…)` and `probe(model, tokenizer, sets)`; `diff(a, b)` between two
checkpoints; `cure(world, out)` erases where a study's information map points, beside the cures
that ignore it. Bad input raises `InputError` with the command line's message. The heavy modules load
on first use: `import forensics` stays light.
"""

from forensics.errors import InputError

__version__ = "0.1.0"
__all__ = [
    "InputError",
    "ProbeRun",
    "RTTRun",
    "Results",
    "Study",
    "__version__",
    "cure",
    "diff",
    "load_results",
    "probe",
    "rtt",
    "score",
]

_LAZY = {
    "Study": "forensics.api",
    "Results": "forensics.api",
    "load_results": "forensics.api",
    "diff": "forensics.api",
    "cure": "forensics.api",
    "rtt": "forensics.api",
    "RTTRun": "forensics.api",
    "probe": "forensics.api",
    "ProbeRun": "forensics.api",
    "score": "forensics.models.scoring",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'forensics' has no attribute {name!r}")
