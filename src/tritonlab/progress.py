"""Progress across every lab: `tritonlab progress` in a terminal, ``tritonlab.dashboard()`` in a notebook."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from tritonlab.checks.core import Status, load_all
from tritonlab.checks.render import COLORS
from tritonlab.checks.store import load_progress, workspace_dir


def progress_rows(workspace: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per checkpoint of every lab: its last recorded result in ``workspace``, or NOT RUN."""
    recorded = load_progress(workspace_dir(workspace))
    rows = []
    for cp in load_all().values():
        last = _usable(recorded.get(cp.id))
        rows.append({
            "lab": cp.lab, "id": cp.id, "title": cp.title, "points": cp.points,
            "status": last["status"] if last else "NOT RUN",
            "awarded": last.get("awarded", 0.0) if last else 0.0,
            "message": last.get("message", "") if last else "",
            "checked": time.strftime("%Y-%m-%d %H:%M", time.localtime(last["checked_at"])) if last else "",
        })  # fmt: skip
    return rows


def _usable(entry: Any) -> dict[str, Any] | None:
    """A recorded result as progress shows it, or None if the entry is not one (an edited or damaged file)."""
    if not isinstance(entry, dict) or entry.get("status") not in set(Status):
        return None
    awarded, checked = entry.get("awarded", 0.0), entry.get("checked_at")
    if not isinstance(awarded, int | float) or not isinstance(checked, int | float) or not 0 <= checked < 1e11:
        return None
    return {**entry, "message": str(entry.get("message", ""))}


def dashboard_html(rows: list[dict[str, Any]]) -> str:
    body = []
    for lab in dict.fromkeys(r["lab"] for r in rows):
        lab_rows = [r for r in rows if r["lab"] == lab]
        earned = sum(r["awarded"] for r in lab_rows)
        total = sum(r["points"] for r in lab_rows)
        cells = "".join(
            f"<tr><td style='color:{COLORS[Status(r['status'])][0] if r['status'] != 'NOT RUN' else '#6e7781'}'>"
            f"{html.escape(r['status'])}</td><td>{html.escape(r['id'])}</td><td>{html.escape(r['title'])}</td>"
            f"<td>{r['awarded']:g}/{r['points']:g}</td><td>{html.escape(r['checked'])}</td></tr>"
            for r in lab_rows
        )
        pct = 100 * earned / total if total else 0
        body.append(
            f"<h4 style='margin:8px 0 2px'>{html.escape(lab)}: {earned:g}/{total:g} points</h4>"
            f"<div style='background:#eee;height:8px;width:300px'><div style='background:#1a7f37;height:8px;"
            f"width:{pct:.0f}%'></div></div><table><tbody>{cells}</tbody></table>"
        )
    return "<div class='tritonlab-dashboard'>" + "".join(body) + "</div>"


def dashboard(workspace: str | Path | None = None) -> Any:
    """A widget showing every lab's checkpoints with their last result; 'Refresh' re-reads the progress."""
    import ipywidgets as widgets

    view = widgets.HTML(dashboard_html(progress_rows(workspace)))
    refresh = widgets.Button(description="Refresh", icon="refresh")
    refresh.on_click(lambda _: setattr(view, "value", dashboard_html(progress_rows(workspace))))
    box = widgets.VBox([widgets.HTML("<b>tritonlab progress</b>"), view, refresh])
    box.add_class("tritonlab-dashboard-widget")
    return box
