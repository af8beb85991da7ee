"""Headless Chromium for the report checks: the rendered DOM and what the page logged."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def render(report: Path) -> tuple[str, list[str], list[str]]:
    """(the DOM after the scripts ran, the page's console lines, the ids of its figure divs)."""
    run = subprocess.run(
        [CHROMIUM, *FLAGS, "--virtual-time-budget=10000", "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    figures = re.findall(r"<div class=\"figure plot[^\"]*\" id=\"(fig-[\w-]+)\"", run.stdout)
    return run.stdout, console, figures


def assert_drawn(dom: str, figures: list[str]) -> None:
    """Every figure div holds a drawn plot."""
    for fig in figures:
        start = dom.index(f'id="{fig}"')
        assert "main-svg" in dom[start : start + 3000], f"{fig} was not drawn"
