"""The naive baseline: the transformers pipeline behind a real HTTP server, reached with Triton's own client."""

from __future__ import annotations

import numpy as np
import psutil
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tritonlab.errors import ServerStartError
from tritonlab.labs import lab3
from tritonlab.labs.naive_server import MODEL_NAME, NaiveServer


def test_answers_like_the_model_with_json_and_binary_tensors(tmp_path):
    clf = lab3.build_classifier()
    texts = np.array([[t] for t in lab3.SAMPLE_TEXTS[:4]], dtype=object)
    with NaiveServer(clf.save_pretrained(tmp_path / "model")) as naive:
        assert naive.http_url.startswith("http://127.0.0.1:")
        client = httpclient.InferenceServerClient(naive.http_url.removeprefix("http://"))
        assert client.is_server_ready() and client.get_model_metadata(MODEL_NAME)["inputs"][0]["name"] == "TEXT"
        for binary in (True, False):
            request = httpclient.InferInput("TEXT", list(texts.shape), "BYTES")
            request.set_data_from_numpy(texts, binary_data=binary)
            answer = client.infer(MODEL_NAME, [request])
            want = clf.predict(lab3.SAMPLE_TEXTS[:4])
            assert [x.decode() if isinstance(x, bytes) else x for x in answer.as_numpy("LABEL").ravel()] == [
                label for label, _ in want
            ]
            np.testing.assert_allclose(answer.as_numpy("SCORE").ravel(), [s for _, s in want], atol=1e-5)
        stats = client.get_inference_statistics(MODEL_NAME)["model_stats"][0]  # its own honest counters
        assert (stats["execution_count"], stats["inference_count"]) == (2, 8)
        assert stats["batch_stats"] == [{"batch_size": 4, "compute_infer": {"count": 2}}]
        wrong = httpclient.InferInput("WRONG", [1, 1], "BYTES")
        wrong.set_data_from_numpy(np.array([["x"]], dtype=object))
        with pytest.raises(InferenceServerException, match="no input named TEXT"):
            client.infer(MODEL_NAME, [wrong])
        client.close()
        pid = naive.process.pid
        sockets = psutil.Process(pid).net_connections(kind="inet")
        listening = [c.laddr for c in sockets if c.status == psutil.CONN_LISTEN]
        assert [a.ip for a in listening] == ["127.0.0.1"] and listening[0].port == naive.port  # exposure: loopback only
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(ServerStartError, match=r"config\.json is missing"):
        NaiveServer(tmp_path).start()
