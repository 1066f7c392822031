"""Phase 3 against a real Triton (embedded) serving the session's real engine: streaming over gRPC and
/generate_stream, limits enforced with clear errors, and in-flight batching interleaving where static does not
(server-side evidence from the llm model's step log)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tritonlab.engine.build import load_engine
from tritonlab.engine.serving import prepare_repository, read_step_log
from tritonlab.engine.serving.client import StreamRecord, generate_stream_http, stream_generate, stream_load
from tritonlab.errors import TritonLabError
from tritonlab.server import start_server


@pytest.fixture(scope="module", params=["inflight", "static"])
def served(request, engine_dir, tmp_path_factory) -> Iterator[tuple[str, object, object]]:
    repo = prepare_repository(
        engine_dir, tmp_path_factory.mktemp(f"repo-{request.param}"), batching_strategy=request.param,
        batch_wait_ms=50,
    )  # fmt: skip
    with start_server(repo) as server:
        yield request.param, server, repo


def test_streaming_returns_the_engines_tokens(served, engine_dir):
    _, server, _ = served
    from tokenizers import Tokenizer

    record = stream_generate(server.grpc_url, "once upon a time", max_tokens=12)
    prompt = Tokenizer.from_file(str(engine_dir / "tokenizer.json")).encode("once upon a time").ids
    reference = load_engine(engine_dir, num_threads=1).generate(prompt, 12)
    assert record.token_ids == reference and len(record.token_times) == 12
    assert record.text and record.ttft <= record.latency


def test_generate_stream_endpoint(served):
    _, server, _ = served
    events = generate_stream_http(server.http_url, "the server loads a model", max_tokens=5)
    assert len(events) == 5 and all("error" not in e for e in events)
    assert all(isinstance(e["text_output"], list | str) for e in events)


def test_prompt_over_max_input_len_is_refused(served):
    _, server, _ = served
    with pytest.raises(TritonLabError, match="more than this engine's max_input_len=32") as info:
        stream_generate(server.grpc_url, "word " * 60, max_tokens=4)
    assert "larger limits" in info.value.fix
    events = generate_stream_http(server.http_url, "word " * 60, max_tokens=4)
    assert "max_input_len=32" in events[0]["error"]


def test_max_tokens_over_max_seq_len_is_refused(served):
    _, server, _ = served
    with pytest.raises(TritonLabError, match="exceeds this engine's max_seq_len=256"):
        stream_generate(server.grpc_url, "hello", max_tokens=300)
    # The server is still serving after refusals.
    assert len(stream_generate(server.grpc_url, "hello", max_tokens=3).token_ids) == 3


def _long_then_short(grpc_url: str) -> tuple[StreamRecord, StreamRecord]:
    long: list[StreamRecord] = []
    thread = threading.Thread(target=lambda: long.extend(stream_load(grpc_url, [("once upon a time", 160)])))
    thread.start()
    time.sleep(0.4)  # the long request is running (its batch has formed) when the short one arrives
    short = stream_generate(grpc_url, "hello", max_tokens=8)
    thread.join(timeout=120)
    assert long and not long[0].error
    return long[0], short


def test_batching_strategy_shows_in_completion_order_and_step_log(served):
    strategy, server, repo = served
    long, short = _long_then_short(server.grpc_url)
    assert short.sent > long.sent
    events = read_step_log(repo)
    finish = {e["id"]: e["t"] for e in events if e["event"] == "finish"}
    admit = {e["id"]: e["t"] for e in events if e["event"] == "admit"}
    long_id, short_id = long.request_id, short.request_id
    together = [e for e in events if e["event"] == "step" and {long_id, short_id} <= set(e["ids"])]
    if strategy == "inflight":
        # The later request joined the running batch and left first: its last token came before the long one's.
        assert short.token_times[-1] < long.token_times[-1]
        assert finish[short_id] < finish[long_id] and len(together) >= 6
        memberships = {tuple(e["ids"]) for e in events if e["event"] == "step" and long_id in e["ids"]}
        assert len(memberships) >= 2, "batch membership never changed while the long request ran"
    else:
        # Static: the short request waited for the whole batch (the long request) to finish.
        assert short.token_times[0] > long.token_times[-1]
        assert admit[short_id] >= finish[long_id] and not together
