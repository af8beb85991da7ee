"""The layout shows the architecture (issue 23): subpackages in layers, each importing only from its
own layer or below; no import cycle among the modules, and no two modules importing each other
anywhere (issue 39); no module over 400 lines."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# lowest first: shared plumbing, facts, models, the measurements and attacks, lenses and worlds,
# the study over them, the command line on top
LAYERS = {
    "errors": 0,
    "config": 0,
    "outdir": 0,
    "outcomes": 0,
    "facts": 1,
    "models": 2,
    "measure": 3,
    "attacks": 3,
    "unlearn": 3,
    "lenses": 4,
    "worlds": 4,
    "study": 5,
    "cli": 6,
    "api": 6,  # the toolkit from Python: beside the command line
}


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted((ROOT / "forensics").rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The forensics modules `path` imports (with `top_level_only`, those its import runs)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("forensics"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("forensics")}
    return found


def unit(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_module_sits_in_a_layer_and_imports_none_above_it():
    wrong = []
    for module, path in modules().items():
        if module == "forensics":
            continue
        assert unit(module) in LAYERS, f"{module}: in no layer"
        for target in imports(path, top_level_only=False):
            if unit(target) in LAYERS and LAYERS[unit(target)] > LAYERS[unit(module)]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_no_import_cycle():
    known = modules()
    graph = {
        m: {t for t in imports(p, top_level_only=True) if t in known and t != m} for m, p in known.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_no_two_modules_import_each_other():
    """Not at module level, under `TYPE_CHECKING` or inside a function either (issue 39): two modules
    that need each other are one module cut in two, or a cycle put off until run time."""
    known = modules()
    graph = {
        m: {t for t in imports(p, top_level_only=False) if t in known and t != m} for m, p in known.items()
    }
    pairs = sorted(
        {" <-> ".join(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph[b]}
    )
    assert not pairs, pairs


def test_no_module_over_400_lines():
    long = {
        str(f.relative_to(ROOT)): n
        for folder in ("forensics", "probes", "reports", "bench")
        for f in (ROOT / folder).rglob("*.py")
        if (n := len(f.read_text().splitlines())) > 400
    }
    assert not long, long


def test_every_design_reference_names_a_section_of_docs_design():
    """The code cites the design by section (`docs/design.md §N`): each cited section exists."""
    import re

    sections = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "design.md").read_text(), re.M))
    cited = {}
    for folder in ("forensics", "probes", "reports", "bench", "tests"):
        for f in (ROOT / folder).rglob("*.py"):
            for n in re.findall(r"docs/design\.md §(\d+)", f.read_text()):
                cited.setdefault(n, str(f.relative_to(ROOT)))
    assert cited and set(cited) <= sections, {n: f for n, f in cited.items() if n not in sections}
    assert not [f for f in (ROOT / "forensics").rglob("*.py") if "DESIGN §" in f.read_text()]
