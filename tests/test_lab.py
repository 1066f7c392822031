"""`make lab` brings up JupyterLab on 127.0.0.1 with a token; the welcome notebook runs on the embedded server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

from conftest import REPO_ROOT, jupyterlab, wait_for

pytestmark = pytest.mark.slow


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_make_lab_serves_jupyterlab_on_loopback_with_a_token():
    with jupyterlab(REPO_ROOT / "labs", command=["make", "lab"]) as (url, token, port):
        with urllib.request.urlopen(url, timeout=30) as response:
            page = response.read().decode()
        assert response.status == 200 and "JupyterLab" in page
        api = f"http://127.0.0.1:{port}/api/contents"
        assert status_of(api) == 403  # no token, no access
        listing = urllib.request.Request(api, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(listing, timeout=10) as response:
            names = {item["name"] for item in json.load(response)["content"]}
        assert {"00_welcome.ipynb", "01_setup.ipynb"} <= names  # JupyterLab opened labs/
        listeners = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
        assert listeners and all(c.laddr.ip in ("127.0.0.1", "::ffff:127.0.0.1") for c in listeners)
        jupyter_pids = {c.pid for c in listeners}
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in jupyter_pids), timeout=30)
    assert wait_for(lambda: not _port_open(port), timeout=10)


def _port_open(port: int) -> bool:
    return any(c.laddr.port == port and c.status == "LISTEN" for c in psutil.net_connections("tcp"))


def test_welcome_notebook_runs_in_a_real_kernel():
    notebook = nbformat.read(REPO_ROOT / "labs" / "00_welcome.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT / "labs")}}
    ).execute()
    outputs = "".join(
        out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs
    )  # fmt: skip
    assert "sum  [[11. 22. 33. 44.]]" in outputs and "diff [[ -9. -18. -27. -36.]]" in outputs
    assert "EmbeddedServer stopped" in outputs
