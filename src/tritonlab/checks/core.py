"""Checkpoints: one definition of each, inspecting real state, shared by every front end.

A checkpoint is a function ``fn(ctx) -> str`` registered with :func:`checkpoint`. It returns the PASS message,
or raises :class:`Fail` / :class:`Unattempted` with a message saying what it found versus what it expected.
Anything else it raises becomes an ERROR result (never a PASS, never a crash).
"""

from __future__ import annotations

import json
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tritonlab.checks.values import decode


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    UNATTEMPTED = "UNATTEMPTED"
    ERROR = "ERROR"


class Fail(Exception):
    """The learner's state is wrong: say what was found and what was expected."""


class Unattempted(Exception):
    """Nothing to check yet (the exercise was not done or not submitted)."""


@dataclass(frozen=True)
class Checkpoint:
    id: str
    title: str
    points: float
    hint: str
    fn: Callable[[Context], str]
    needs_server: bool = True

    @property
    def lab(self) -> str:
        return self.id.split(".")[0]


@dataclass
class Result:
    id: str
    title: str
    status: Status
    message: str
    hint: str
    points: float
    awarded: float
    seconds: float
    checked_at: float = field(default_factory=time.time)

    @property
    def passed(self) -> bool:
        return self.status == Status.PASS

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": str(self.status)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        return cls(**{**data, "status": Status(data["status"])})

    def _repr_html_(self) -> str:
        from tritonlab.checks.render import card_html

        return card_html(self)

    def __repr__(self) -> str:
        from tritonlab.checks.render import card_text

        return card_text(self)


CHECKPOINTS: dict[str, Checkpoint] = {}


def checkpoint(
    id: str, *, title: str, points: float = 1.0, hint: str = "", needs_server: bool = True
) -> Callable[[Callable[[Context], str]], Callable[[Context], str]]:
    """Register a checkpoint function under ``id`` (``lab1.server_ready``)."""

    def register(fn: Callable[[Context], str]) -> Callable[[Context], str]:
        if id in CHECKPOINTS:
            raise ValueError(f"checkpoint {id} registered twice")
        CHECKPOINTS[id] = Checkpoint(id, title, points, hint, fn, needs_server)
        return fn

    return register


def load_all() -> dict[str, Checkpoint]:
    """Import every lab's checkpoint module (registration happens on import)."""
    from tritonlab.checks import labs  # noqa: F401

    return CHECKPOINTS


def resolve(selector: str) -> list[Checkpoint]:
    """``lab1`` -> every checkpoint of lab 1 (in definition order); ``lab1.server_ready`` -> that one."""
    checkpoints = load_all()
    if selector in checkpoints:
        return [checkpoints[selector]]
    chosen = [c for c in checkpoints.values() if c.lab == selector]
    if not chosen:
        labs = sorted({c.lab for c in checkpoints.values()})
        raise KeyError(f"no checkpoint or lab named {selector!r} (labs: {', '.join(labs)})")
    return chosen


@dataclass
class ServerInfo:
    http_url: str
    grpc_url: str | None = None
    metrics_url: str | None = None

    @property
    def grpc_address(self) -> str | None:
        return self.grpc_url.split("://", 1)[-1] if self.grpc_url else None


@dataclass
class Context:
    """What a checkpoint may look at: the workspace, the learner's server, and the values they submitted."""

    workspace: Path
    server: ServerInfo | None
    submissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoint_id: str = ""

    # -- submitted values
    def value(self, name: str, of: str | None = None) -> Any:
        """A value the learner submitted for this checkpoint (or checkpoint ``of``); Unattempted if they have not."""
        submitted = self.submissions.get(of or self.checkpoint_id, {})
        if name not in submitted:
            raise Unattempted(f"nothing submitted for '{name}' yet: run the exercise cell, then this check")
        try:
            return decode(submitted[name])
        except Exception as e:  # a malformed submission is the learner's state, not our crash
            raise Fail(f"the submitted '{name}' could not be read back: {e}") from None

    # -- files in the workspace
    def path(self, relative: str) -> Path:
        return self.workspace / relative

    def read_json(self, relative: str) -> Any:
        path = self.path(relative)
        if not path.exists():
            raise Unattempted(f"{path} does not exist yet")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise Fail(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
        except UnicodeDecodeError as e:
            raise Fail(f"{path} is not text (byte {e.start} is not UTF-8): write it again") from None
        except OSError as e:
            raise Fail(f"cannot read {path}: {e.strerror}") from None

    # -- the live server
    def require_server(self) -> ServerInfo:
        if self.server is None:
            raise Fail("no running Triton server was found for this check")
        return self.server

    def server_get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """GET ``path`` on the learner's server: (HTTP status, parsed JSON or text). Fail if unreachable."""
        return self._request(urllib.request.Request(self._url(path)), timeout)

    def server_post(self, path: str, body: Any, timeout: float = 10.0) -> tuple[int, Any]:
        """POST JSON ``body`` to ``path`` on the learner's server."""
        request = urllib.request.Request(self._url(path), data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        return self._request(request, timeout)

    def server_infer(self, model: str, inputs: dict[str, Any], version: str = "") -> dict[str, Any]:
        """Run ``model`` (JSON tensors over HTTP) and return {output name: numpy array}. Fail unless HTTP 200."""
        import numpy as np
        from tritonclient.utils import np_to_triton_dtype

        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        body = {"inputs": [{"name": name, "shape": list(array.shape), "datatype": np_to_triton_dtype(array.dtype),
                            "data": array.tolist()} for name, array in inputs.items()]}  # fmt: skip
        status, answer = self.server_post(path, body)
        if status != 200 or not isinstance(answer, dict) or "outputs" not in answer:
            raise Fail(f"POST {path} answered HTTP {status}: {answer}")
        return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}

    def _url(self, path: str) -> str:
        return self.require_server().http_url.rstrip("/") + path

    def _request(self, request: urllib.request.Request, timeout: float) -> tuple[int, Any]:
        # Plain HTTP/JSON on purpose: a check sees exactly what the v2 protocol puts on the wire, and the
        # isolated checker starts fast without tritonclient's HTTP stack.
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _parse(response.read())
        except urllib.error.HTTPError as e:
            return e.code, _parse(e.read())
        except OSError as e:
            server = self.require_server().http_url
            raise Fail(f"the Triton server at {server} does not answer ({_reason(e)}); is it running?") from None


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode(errors="replace")


def _reason(error: OSError) -> str:
    reason = getattr(error, "reason", None) or error.strerror or str(error)
    return str(reason)


def run_checkpoint(cp: Checkpoint, ctx: Context) -> Result:
    """Run one checkpoint; every outcome is a Result (never an exception)."""
    ctx.checkpoint_id = cp.id
    started = time.perf_counter()
    try:
        if cp.needs_server and ctx.server is None:
            raise Fail("no running Triton server was found: start it in the notebook (start_server()) "
                       "or pass --server URL")  # fmt: skip
        message = cp.fn(ctx)
        status = Status.PASS
    except Fail as e:
        status, message = Status.FAIL, str(e)
    except Unattempted as e:
        status, message = Status.UNATTEMPTED, str(e)
    except Exception as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        status = Status.ERROR
        message = f"the check itself failed ({type(e).__name__}: {e} at {Path(where.filename).name}:{where.lineno})"
    return Result(
        id=cp.id, title=cp.title, status=status, message=message,
        hint="" if status == Status.PASS else cp.hint, points=cp.points,
        awarded=cp.points if status == Status.PASS else 0.0, seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip
