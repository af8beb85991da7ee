"""summary.md escapes for Markdown, not HTML (issue 39, item 16): `<=` reads as `<=` when rendered,
not `&lt;=`, and a string from a dataset or a config cannot inject markup, HTML or table cells."""

import pytest

from forensics.study.run import SCHEMA_VERSION
from reports.markdown import _cell, render

RULE = "forget <= chance + 0.1 with retain >= 0.9 x"
HOSTILE = "<img src=x onerror=alert(1)> | *bold* _it_ [a](b) `c` &lt; \\ ~~s~~\n- item"


def hostile_results() -> dict:
    row = {"verdict": RULE, "evidence": HOSTILE, "deciding": None, "forget": 0.25, "retain": None}
    return {
        "schema_version": SCHEMA_VERSION,
        "name": HOSTILE,
        "config": {"scorer": "a|b", "grid": "x\ny"},
        "summary": {"never_learned": {**row}, HOSTILE: row},
    }


def test_a_cell_escapes_markdown_not_html():
    assert _cell(RULE) == "forget \\<= chance + 0.1 with retain \\>= 0.9 x"
    assert _cell("a|b\\c") == "a\\|b\\\\c" and _cell("one\ntwo\r\nthree") == "one two three"
    assert _cell("*b* `c` [l](u) &amp; ~s~") == "\\*b\\* \\`c\\` \\[l\\](u) \\&amp; \\~s\\~"
    # `_` only where it could open or close emphasis: names read as themselves
    assert _cell("never_learned") == "never_learned" and _cell("_it_") == "\\_it\\_"
    # what would start a list or a heading inside a list item
    assert _cell("- x") == "\\- x" and _cell("1. x") == "1\\. x" and _cell("# h") == "\\# h"
    assert _cell("0.85 [0.71, 0.93]") == "0.85 \\[0.71, 0.93\\]"


def test_summary_md_shows_the_rule_as_written_and_injects_nothing():
    text = render(hostile_results())
    assert "&lt;" not in text.replace("\\&lt;", "") and "&gt;" not in text and "&amp;" not in text
    assert "\\<= chance" in text and "\\>= 0.9" in text
    assert "<img" not in text.replace("\\<img", "")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    # every row has as many cells as the header: no pipe of a string opened a column
    widths = {len(line.replace("\\|", "").split("|")) for line in table}
    assert len(widths) == 1, table
    assert "Scorer a\\|b" in text and "grid x y;" in text


def test_summary_md_renders_as_the_text_it_holds():
    """Through a CommonMark renderer (GitHub's tables on): the strings come back as text, no tags."""
    markdown_it = pytest.importorskip("markdown_it")
    page = (
        markdown_it.MarkdownIt("commonmark")
        .enable("table")
        .enable("strikethrough")
        .render(render(hostile_results()))
    )
    assert "<img" not in page and "<em>" not in page and "<a " not in page and "<code>" not in page
    assert "<s>" not in page and "<del>" not in page and "<strong>" not in page.split("</table>")[0]
    assert "forget &lt;= chance + 0.1 with retain &gt;= 0.9 x" in page  # `<=` as text, shown as `<=`
    assert "&amp;lt;" in page and "*bold*" in page and "[a](b)" in page and "never_learned" in page
