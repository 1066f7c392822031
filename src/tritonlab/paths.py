"""Where tritonlab keeps its state: staged server, registry of running servers, logs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """User cache dir (override with TRITONLAB_CACHE_DIR, e.g. for tests)."""
    override = os.environ.get("TRITONLAB_CACHE_DIR")
    path = Path(override) if override else Path(platformdirs.user_cache_dir("tritonlab"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def servers_dir() -> Path:
    """One JSON file per running server: the registry `tritonlab down` reads."""
    path = cache_dir() / "servers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir() -> Path:
    path = cache_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
