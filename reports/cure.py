"""The cures' section (`forensics cure`): per cure its blocks, compute, accuracy, RTT and verdict, and
the sentence that says whether the map's choice beat the choices that ignore it. Plain rows, drawn by
the HTML report and summary.md alike."""

from __future__ import annotations

INTRO = (
    "Each cure noises some blocks of the unlearned model (UNDO's mixing with a fresh initialisation) and "
    "distils the unlearned model back into them on retain text, until retain meets the unlearning rule "
    "(or its step cap). located: the blocks the information map ranks highest; lowest: the lowest; "
    "random: random blocks; global: every block, with a larger cap. Then each goes through the study."
)


def cure_rows(cure: dict) -> list[dict]:
    """One row per cure, as text."""
    rows = []
    for name, rec in cure["cures"].items():
        rows.append(
            {
                "cure": name,
                "blocks": "every" if name == "global" else ", ".join(map(str, rec["blocks"])),
                "α": f"{rec['alpha']:g}",
                "steps (cap)": f"{rec['steps']} ({rec['cap']})",
                "seconds": f"{rec['seconds']:.0f}",
                "forget": f"{rec['forget']:.2f}",
                "retain": f"{rec['retain']:.2f}" + ("" if rec.get("met", True) else " (below the rule)"),
                "RTT acc V": "–" if rec.get("rtt_acc_v") is None else f"{rec['rtt_acc_v']:.2f}",
                "verdict": rec.get("verdict") or "–",
            }
        )
    return rows


def ranking_text(cure: dict) -> str:
    """The map's ranking: each block with the rise of its score, most first."""
    return ", ".join(f"{r['block']} ({r['rise']:+.2f})" for r in cure["ranking"])
