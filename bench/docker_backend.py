"""The docker backend: container start-to-ready and stop beside the embedded server (interleaved, one run), and the
CPU image's cold build and cache-hit rebuild.

    .venv/bin/python bench/docker_backend.py [--starts 10] [--no-cold-build] [--out bench/results/cpu_docker.json]

Uses $DOCKER_HOST or a running system engine, else starts a private dockerd (root) for the run. The cold build
removes the image and its Debian base and starts from an empty wheel cache: debootstrap + download + docker build.
Targets: container start-to-ready median <= 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "n": len(values)}  # fmt: skip


def time_starts(count: int) -> dict[str, dict[str, list[float]]]:
    from tritonlab.server import create_server

    times: dict[str, dict[str, list[float]]] = {b: {"ready": [], "stop": []} for b in ("embedded", "docker")}
    create_server(backend="docker").start().stop()  # warm: first container of the run pays for the page cache
    for _ in range(count):
        for backend in times:  # interleaved: both see the same machine state
            server = create_server(backend=backend)
            t0 = time.perf_counter()
            server.start()
            times[backend]["ready"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            server.stop()
            times[backend]["stop"].append(time.perf_counter() - t0)
    return times


def time_builds() -> dict[str, float]:
    from tritonlab.container import engine
    from tritonlab.container.image import ImageSpec, build_image

    spec = ImageSpec.from_manifest()
    client = engine.connect()
    for tag in (spec.tag, spec.base_tag):
        with contextlib.suppress(Exception):
            client.images.remove(tag, force=True)
    client.close()
    with tempfile.TemporaryDirectory() as cache:
        old = os.environ.get("TRITONLAB_CACHE_DIR")
        os.environ["TRITONLAB_CACHE_DIR"] = cache  # no downloaded wheels either
        try:
            cold = build_image(spec, say=lambda _: None)
            hit = build_image(spec, say=lambda _: None)
        finally:
            if old is None:
                os.environ.pop("TRITONLAB_CACHE_DIR")
            else:
                os.environ["TRITONLAB_CACHE_DIR"] = old
    assert not cold.cached and hit.cached
    return {"cold_s": round(cold.seconds, 1), **{f"cold_{k}_s": round(v, 1) for k, v in cold.steps.items()},
            "cache_hit_s": round(hit.seconds, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--no-cold-build", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from tritonlab.container import dockerd
    from tritonlab.container.image import build_image

    with contextlib.ExitStack() as stack:
        host = (
            os.environ.get("DOCKER_HOST") or dockerd.system_engine() or stack.enter_context(dockerd.private_dockerd())
        )
        os.environ["DOCKER_HOST"] = host
        builds = {} if args.no_cold_build else time_builds()
        if args.no_cold_build:
            build_image(say=lambda _: None)
        times = time_starts(args.starts)
    results = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python " + " ".join(sys.argv),
        "embedded_ready": summary(times["embedded"]["ready"]),
        "docker_ready": summary(times["docker"]["ready"]),
        "embedded_stop": summary(times["embedded"]["stop"]),
        "docker_stop": summary(times["docker"]["stop"]),
        "image_build": builds,
    }
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
