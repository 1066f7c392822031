"""Call a learner's submitted function in a worker process of its own, never in the checker.

Learner code (the exec of its source as much as the call) could otherwise print a forged verdict, end the checker
with ``os._exit`` or leave a daemon writing after it. The worker, ``python -I -m tritonlab.checks.learner FD``, has
/dev/null for stdin, stdout and stderr, none of the checker's other descriptors (the verdict's included), and a
session of its own, killed as a whole when the calls are done or one is out of time. Function, arguments and
answers travel as JSON lines over a socket pair: the checker never unpickles or execs anything the worker sends.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from tritonlab.checks.values import SubmittedFunction, rebuild

MAX_MESSAGE_BYTES = 16 * 2**20  # far above any honest answer (a few hundred text pieces or two numbers)
_PR_SET_PDEATHSIG = 1


class LearnerError(Exception):
    """What the learner's code raised in its worker, re-created from the type's name and the message."""


def _recreate(name: Any, message: Any) -> LearnerError:
    name = name if isinstance(name, str) and name.isidentifier() and len(name) <= 100 else "LearnerError"
    error_type = type(name, (LearnerError,), {"__module__": "learner"})
    return error_type(str(message)[:2000])


def call_learner(fn: SubmittedFunction, *args: Any, limit: float) -> tuple[Any, BaseException | None, float | None]:
    """Rebuild and call ``fn(*args)`` in a worker process of its own: (value, error, seconds); see ``Worker.call``."""
    with Worker(fn) as worker:
        return worker.call(*args, limit=limit)


class Worker:
    """A worker process that rebuilds ``fn`` once and calls it as often as asked (a check that calls it on many
    cases pays one interpreter start). Closing it kills its whole session: the worker and what it started."""

    def __init__(self, fn: SubmittedFunction) -> None:
        self.fn = fn
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: socket.socket | None = None
        self.reader: _LineReader | None = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, *args: Any, limit: float) -> tuple[Any, BaseException | None, float | None]:
        """(value, error, seconds). ``seconds`` is None when the call did not return within ``limit``, timed here
        from the moment the function was rebuilt (rebuilding it gets a ``limit`` of its own); the worker is then
        killed and the next call starts a new one. ``args`` and the value are plain JSON data; a value that is not
        is the learner's error."""
        if self.reader is None:
            ready = self._start(limit)
            if ready is None or "error" in ready:
                self.close()
                return (None, _error_of(ready), 0.0) if ready else (None, None, None)
        assert self.channel is not None and self.reader is not None
        started = time.perf_counter()
        with contextlib.suppress(OSError):  # a worker that is gone says so below
            self.channel.sendall(json.dumps({"args": list(args)}).encode() + b"\n")
        answer = self.reader.next(time.monotonic() + limit)
        elapsed = time.perf_counter() - started
        if answer is None or "error" in answer:
            self.close()  # out of time, ended, or raised: a fresh worker for the next call
            return (None, _error_of(answer), elapsed) if answer else (None, None, None)
        return answer.get("value"), None, elapsed

    def _start(self, limit: float) -> dict[str, Any] | None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-m", "tritonlab.checks.learner", str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), start_new_session=True,
            )  # fmt: skip
        self.channel, self.reader = ours, _LineReader(ours, self.process)
        # sys.path too: the function's imports resolve as they would here (the isolated checker's own path;
        # in-process checks in tests also see the test's folder, where a test's helper functions live)
        with contextlib.suppress(OSError):
            ours.sendall(json.dumps({"function": asdict(self.fn), "path": sys.path}).encode() + b"\n")
        return self.reader.next(time.monotonic() + limit)

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)  # the worker and whatever it started in its session
            self.process.wait()
        if self.channel is not None:
            self.channel.close()
        self.process = self.channel = self.reader = None


def _error_of(message: dict[str, Any]) -> LearnerError:
    error = message["error"]
    if isinstance(error, list) and len(error) == 2:
        return _recreate(*error)
    return _recreate("LearnerError", f"the worker answered {str(error)[:200]!r}")


class _LineReader:
    """The worker's messages, one JSON object per line; a worker that ends mid-call becomes the learner's error."""

    def __init__(self, channel: socket.socket, worker: subprocess.Popen[bytes]) -> None:
        self.channel, self.worker, self.buffer = channel, worker, b""

    def next(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None at ``deadline``."""
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self.channel], [], [], min(remaining, 0.1))
            if not readable:
                if self.worker.poll() is None:
                    continue
                # It ended; what it wrote just before is still to be read (a child may hold the socket open).
                readable, _, _ = select.select([self.channel], [], [], 0)
                if not readable:
                    return self._ended()
            try:
                chunk = self.channel.recv(1 << 16)
            except OSError:  # reset: it ended with our request unread
                chunk = b""
            if not chunk:
                return self._ended()
            self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                return _problem(f"your function's answer is larger than {MAX_MESSAGE_BYTES >> 20} MiB")
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return _problem("the worker running your function sent back something that is not JSON")
        return message if isinstance(message, dict) else _problem("the worker sent back something else than a dict")

    def _ended(self) -> dict[str, Any]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.worker.wait(timeout=2)
        code = self.worker.returncode
        how = ("closed its channel" if code is None else "was killed by a signal" if code < 0
               else f"exited (status {code})")  # fmt: skip
        return _problem(f"the process running your function {how} before it returned: do not exit or kill it")


def _problem(message: str) -> dict[str, Any]:
    return {"error": ["LearnerError", message]}


# ---------------------------------------------------------------------------------------------- worker side
def _describe(error: BaseException) -> list[str]:
    try:
        message = str(error)
    except Exception:  # a learner's exception whose __str__ fails still gets reported, by its type
        message = "(its message could not be read)"
    return [type(error).__name__, message]


def _answer(function: Callable[..., Any], args: list[Any]) -> dict[str, Any] | str:
    try:
        value = function(*args)
    except BaseException as e:  # whatever it is, it is the learner's to report
        return {"error": _describe(e)}
    try:
        return json.dumps({"value": value}, default=_unsendable)
    except (TypeError, ValueError, RecursionError) as e:
        return {"error": ["ReturnValueError", str(e)]}


def _unsendable(value: Any) -> Any:
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()  # numpy scalars and arrays are what learners compute with: plain values as before
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    raise TypeError(f"your function returned a {kind}, which a check cannot receive: return plain Python values "
                    "(None, bool, int, float, str, and lists or dicts of them)")  # fmt: skip


def _serve(fd: int) -> None:
    """The worker: the function, then one line of arguments per call, each answered by one line."""
    # Dies with the checker, which kills this session when the calls are done or out of time.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    channel = socket.socket(fileno=fd)
    lines = channel.makefile("rb")

    def send(message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        channel.sendall(text.encode() + b"\n")

    request = json.loads(lines.readline())
    sys.path[:] = request["path"]
    try:
        function = rebuild(SubmittedFunction(**request["function"]))
    except BaseException as e:  # SyntaxError, NameError, SystemExit in the source: the learner's to fix
        send({"error": _describe(e)})
        return
    send({"ready": True})
    for line in lines:
        send(_answer(function, json.loads(line)["args"]))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
    os._exit(0)  # not waiting for threads or atexit handlers the learner's code left behind
