"""JupyterLab in a real browser (Debian's Chromium through Playwright): check cards and the dashboard render."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import REPO_ROOT, jupyterlab

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TRITONLAB_ARTIFACTS", REPO_ROOT / "build" / "test-artifacts"))
# Flags for a closed network (no background connections) and root in a container (no sandbox).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip

# The open notebook's kernel indicator (other, restored tabs have hidden ones).
IDLE_KERNEL = ".jp-Notebook-ExecutionIndicator[data-status='idle']:visible"


def open_url(lab_url: str, notebook: str) -> str:
    """Open ``notebook`` alone: ``reset`` drops the workspace JupyterLab would restore from earlier sessions."""
    return lab_url.replace("/lab?", f"/lab/tree/{notebook}?reset&")


def run_all_cells(page) -> None:
    """Run → Run All Cells once the kernel is connected; again if nothing started (a click during connection
    is a silent no-op in JupyterLab)."""
    page.wait_for_selector(IDLE_KERNEL, timeout=90_000)
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=90_000)
    started = page.locator(".jp-InputArea-prompt", has_text=re.compile(r"\[(\d+|\*)\]"))
    for _ in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            started.first.wait_for(timeout=20_000)
            return
        except Exception:
            page.keyboard.press("Escape")
    raise AssertionError("Run All Cells never started a cell")


if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing in CI: env/system.sh should have installed it")
    pytest.skip(f"{CHROMIUM} not installed (env/system.sh installs it as root)", allow_module_level=True)


def test_lab_notebook_runs_in_chromium_and_renders_cards_and_dashboard(tmp_path):
    from playwright.sync_api import sync_playwright

    shutil.copy(REPO_ROOT / "solutions" / "01_setup.ipynb", tmp_path)
    failing = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'from tritonlab import check\ncheck("lab1.server_ready", server="http://127.0.0.1:1")')])  # fmt: skip
    failing.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(failing, tmp_path / "fail.ipynb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with jupyterlab(tmp_path) as (url, _token, _port), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(open_url(url, "01_setup.ipynb"), timeout=60_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            run_all_cells(page)

            dashboard = page.locator(".tritonlab-dashboard-widget")
            dashboard.wait_for(timeout=180_000)
            cards = page.locator(".jp-OutputArea .tritonlab-card")
            passing = page.locator(".jp-OutputArea .tritonlab-card.tritonlab-pass")
            assert cards.count() >= 5 and passing.count() == cards.count()
            assert page.locator(".jp-OutputArea .tritonlab-table").count() == 1
            assert "lab1.http_inference" in dashboard.inner_text() and "PASS" in dashboard.inner_text()
            dashboard.scroll_into_view_if_needed()
            dashboard.screenshot(path=str(ARTIFACTS / "dashboard.png"))
            first = cards.first
            first.scroll_into_view_if_needed()
            first.screenshot(path=str(ARTIFACTS / "check_card.png"))
            page.screenshot(path=str(ARTIFACTS / "lab1_notebook.png"))

            # A failing card keeps its hint behind a reveal until clicked. (A new tab: leaving the first one
            # would raise a "leave page?" dialog that Playwright dismisses.)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(open_url(url, "fail.ipynb"), timeout=60_000)
            run_all_cells(page)
            failing = page.locator(".jp-OutputArea .tritonlab-card.tritonlab-fail")
            failing.wait_for(timeout=60_000)
            hint = failing.locator(".tritonlab-hint div")
            assert not hint.is_visible()
            failing.locator("summary", has_text="Show hint").click()
            assert hint.is_visible() and "start_server()" in hint.inner_text()
            failing.screenshot(path=str(ARTIFACTS / "fail_card_with_hint.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 5_000
