"""Requests for a runtime.Batcher whose tokens the tests collect, as a server's streams would receive them."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tritonlab.engine.runtime import Sequence


class Streams:
    """``sequence(rid)`` makes request ``rid`` (its prompt from ``prompts``); ``got[rid]`` collects its tokens;
    ``wait()`` returns once every request has ended (finished or failed)."""

    def __init__(self, prompts: dict[str, list[int]], max_tokens: int):
        self.prompts, self.max_tokens = prompts, max_tokens
        self.got: dict[str, list[int]] = {rid: [] for rid in prompts}
        self._ended = threading.Semaphore(0)

    def sequence(self, rid: str, on_token: Callable[[int], None] | None = None) -> Sequence:
        """``on_token(n)`` runs on the batcher's thread after the request's n-th token, before the next step."""

        def emit(token: int, final: bool) -> None:
            self.got[rid].append(token)
            if on_token is not None:
                on_token(len(self.got[rid]))
            if final:
                self._ended.release()

        def fail(message: str) -> None:
            self._ended.release()

        return Sequence(rid, self.prompts[rid], self.max_tokens, emit, fail, stop_at_eos=False)

    def wait(self, timeout: float = 60.0) -> None:
        for _ in self.prompts:
            assert self._ended.acquire(timeout=timeout), "a request never ended"
