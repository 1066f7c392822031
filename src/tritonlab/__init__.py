"""tritonlab: learn inference serving with a real NVIDIA Triton Inference Server.

The names learners use most are importable from here:

    from tritonlab import start_server
    with start_server() as server:          # embedded Triton on free 127.0.0.1 ports
        client = server.http_client()
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Server",
    "TritonLabError",
    "__version__",
    "check",
    "check_all",
    "dashboard",
    "example_repository",
    "start_server",
]

if TYPE_CHECKING:  # pragma: no cover
    from tritonlab.errors import TritonLabError
    from tritonlab.examples import example_repository
    from tritonlab.server import Server, start_server


def __getattr__(name: str) -> Any:
    # Lazy: `import tritonlab` stays cheap (tritonclient pulls in gevent and grpc).
    if name in ("Server", "start_server"):
        from tritonlab import server

        return getattr(server, name)
    if name == "example_repository":
        from tritonlab.examples import example_repository

        return example_repository
    if name in ("check", "check_all"):
        from tritonlab import checks

        return getattr(checks, name)
    if name == "dashboard":
        from tritonlab.progress import dashboard

        return dashboard
    if name == "TritonLabError":
        from tritonlab.errors import TritonLabError

        return TritonLabError
    raise AttributeError(f"module 'tritonlab' has no attribute {name!r}")
