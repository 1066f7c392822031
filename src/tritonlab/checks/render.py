"""How results look: an HTML card per checkpoint (hint behind a reveal), a table per lab."""

from __future__ import annotations

import html
from collections.abc import Sequence

from tritonlab.checks.core import Result, Status

COLORS = {
    Status.PASS: ("#1a7f37", "#dafbe1", "✔"),
    Status.FAIL: ("#cf222e", "#ffebe9", "✘"),
    Status.UNATTEMPTED: ("#6e7781", "#f6f8fa", "○"),
    Status.ERROR: ("#9a6700", "#fff8c5", "⚠"),
}


def card_html(result: Result) -> str:
    fg, bg, mark = COLORS[result.status]
    hint = ""
    if result.hint and not result.passed:
        hint = (
            '<details class="tritonlab-hint" style="margin-top:6px"><summary style="cursor:pointer">Show hint'
            f'</summary><div style="margin-top:4px">{html.escape(result.hint)}</div></details>'
        )
    return (
        f'<div class="tritonlab-card tritonlab-{result.status.lower()}" data-checkpoint="{html.escape(result.id)}" '
        f'style="border-left:6px solid {fg};background:{bg};padding:8px 12px;margin:4px 0;border-radius:4px;'
        f'font-family:sans-serif">'
        f'<div style="font-weight:bold;color:{fg}">{mark} {result.status} · {html.escape(result.title)} '
        f'<span style="font-weight:normal;color:#57606a">({html.escape(result.id)}, '
        f"{result.awarded:g}/{result.points:g} pts)</span></div>"
        f'<div style="margin-top:4px;white-space:pre-wrap">{html.escape(result.message)}</div>{hint}</div>'
    )


def card_text(result: Result) -> str:
    text = f"[{result.status}] {result.id}: {result.title} ({result.awarded:g}/{result.points:g})\n  {result.message}"
    if result.hint and not result.passed:
        text += f"\n  hint: {result.hint}"
    return text


def table_html(results: Sequence[Result], title: str) -> str:
    rows = "".join(
        f"<tr><td style='color:{COLORS[r.status][0]};font-weight:bold'>{COLORS[r.status][2]} {r.status}</td>"
        f"<td>{html.escape(r.id)}</td><td>{html.escape(r.title)}</td><td>{r.awarded:g}/{r.points:g}</td>"
        f"<td style='text-align:left'>{html.escape(r.message)}</td></tr>"
        for r in results
    )
    earned, total = sum(r.awarded for r in results), sum(r.points for r in results)
    return (
        f'<div class="tritonlab-table"><b>{html.escape(title)}: {earned:g}/{total:g} points</b>'
        "<table><thead><tr><th>status</th><th>checkpoint</th><th>what</th><th>points</th><th>details</th></tr>"
        f"</thead><tbody>{rows}</tbody></table></div>"
    )


class ResultTable(list):
    """A lab's results; renders as a table in notebooks."""

    def __init__(self, results: Sequence[Result], title: str):
        super().__init__(results)
        self.title = title

    def _repr_html_(self) -> str:
        return table_html(self, self.title)

    def __repr__(self) -> str:
        return "\n".join(card_text(r) for r in self)
