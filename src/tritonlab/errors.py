"""Errors a learner can act on: each says what went wrong and how to fix it."""

from __future__ import annotations


class TritonLabError(RuntimeError):
    """Base error. ``fix`` is one short instruction the learner can follow."""

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\nFix: {fix}")


class EnvironmentProblem(TritonLabError):
    """The Python environment cannot run the embedded server (missing wheel, numpy 2, no stub...)."""


class PortInUseError(TritonLabError):
    """A port asked for is already taken."""

    def __init__(self, port: int, holder: str | None = None):
        self.port = port
        who = f" by {holder}" if holder else ""
        super().__init__(
            f"port {port} on 127.0.0.1 is already in use{who}",
            fix="leave the port out (tritonlab picks free ports), choose another one, "
            "or stop the old server with `tritonlab down`",
        )


class ServerStartError(TritonLabError):
    """tritonserver exited or did not become ready in time."""

    def __init__(self, message: str, log_excerpt: str = "", log_path: str | None = None, fix: str | None = None):
        self.log_excerpt = log_excerpt
        self.log_path = log_path
        text = message
        if log_excerpt:
            text += "\n--- server log (last lines) ---\n" + log_excerpt.rstrip()
        if log_path:
            text += f"\n(full log: {log_path})"
        super().__init__(text, fix)


class ModelLoadError(ServerStartError):
    """One or more models failed to load; ``reasons`` maps model name to Triton's own reason."""

    def __init__(self, reasons: dict[str, str], log_path: str | None = None, log_excerpt: str = ""):
        self.reasons = dict(reasons)
        lines = [f"Triton could not load {len(reasons)} model(s):"]
        lines += [f"  - {name}: {reason}" for name, reason in reasons.items()]
        super().__init__(
            "\n".join(lines),
            log_excerpt=log_excerpt,
            log_path=log_path,
            fix="fix the model named above (its config.pbtxt or model file), then start the server again "
            "(`tritonlab logs` shows the whole server log)",
        )


class ServerCrashed(TritonLabError):
    """A server this Python started has died since (killed, crashed, its container removed)."""

    def __init__(self, message: str, exit_code: int | None = None, log_path: str | None = None):
        self.exit_code = exit_code
        self.log_path = log_path
        super().__init__(
            message + (f"\n(its log: {log_path})" if log_path else ""),
            fix="server.restart() starts it again with the same options (or re-run the cell that starts it); then "
            "take new clients (client = server.http_client()) and run check() again",
        )


class DiskFull(TritonLabError):
    """A write failed for lack of space (or quota): nothing written before was changed."""
