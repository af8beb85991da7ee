"""The example notebook (examples/demo.ipynb) runs, in a kernel from the test extra, and its cells assert
what they show: the demo's GD is not erased, the exact control is never hidden."""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "demo.ipynb"


def test_the_example_notebook_runs_and_holds(tmp_path, monkeypatch):
    # the kernel imports this checkout's forensics, whichever one is installed
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(NOTEBOOK.parents[1]), os.environ.get("PYTHONPATH", "")])
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    # execute() raises on the first cell that fails (its assertions included)
    assert (tmp_path / "runs" / "notebook" / "study" / "report" / "index.html").exists()
