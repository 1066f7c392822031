"""pytest graders: one test per checkpoint, judged by the same definitions as `tritonlab check`.

pytest graders --workspace DIR [--server URL] [-k lab1]
"""

from __future__ import annotations

import pytest

from tritonlab.checks.core import ServerInfo, load_all
from tritonlab.checks.runner import newest_registered_server
from tritonlab.checks.store import workspace_dir


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--workspace", help="where the learner ran the labs (default: current directory)")
    parser.addoption("--server", help="HTTP URL of the learner's Triton server (default: newest running)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "checkpoint_id" in metafunc.fixturenames:
        ids = list(load_all())
        metafunc.parametrize("checkpoint_id", ids, ids=ids)


@pytest.fixture(scope="session")
def grading_context(request: pytest.FixtureRequest) -> tuple:
    url = request.config.getoption("--server")
    server = ServerInfo(url) if url else newest_registered_server()
    return workspace_dir(request.config.getoption("--workspace")), server
