"""The remote backend: a server tritonlab did not start, reached by URL and never stopped by us."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient

from conftest import add_sub_inputs
from tritonlab.errors import TritonLabError
from tritonlab.server import RemoteServer, create_server, start_server


def test_remote_server_uses_a_running_server_and_leaves_it_running(server):
    remote = start_server(backend="remote", url=server.http_url, grpc_url=server.grpc_url,
                          metrics_url=server.metrics_url)  # fmt: skip
    a = np.ones((1, 4), dtype=np.float32)
    out = remote.http_client().infer("add_sub", add_sub_inputs(httpclient, a, a)).as_numpy("OUTPUT0")
    np.testing.assert_array_equal(out, 2 * a)
    assert remote.grpc_client().is_server_ready()
    assert "nv_inference_count" in remote.metrics_text()
    remote.stop()
    assert server.is_ready()


def test_remote_server_that_does_not_answer_times_out_clearly():
    from tritonlab.server.ports import free_ports

    port = free_ports(1)[0]
    with pytest.raises(TritonLabError, match="not answering"):
        RemoteServer(f"http://127.0.0.1:{port}", startup_timeout=0.5).start()


def test_backend_selection_errors():
    with pytest.raises(TritonLabError, match="unknown server backend 'podman'"):
        create_server(backend="podman")
    with pytest.raises(TritonLabError, match="needs url="):
        create_server(backend="remote")
    with pytest.raises(TritonLabError, match="cannot read a host and port"):
        RemoteServer("http://nohost")
