"""The version manifest (env/versions.toml): one place for every version the course is written against."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement


def manifest_path() -> Path:
    """env/versions.toml in a source checkout, else the copy packaged into the wheel."""
    checkout = Path(__file__).resolve().parents[2] / "env" / "versions.toml"
    if checkout.is_file():
        return checkout
    return Path(str(resources.files("tritonlab") / "versions.toml"))


@cache
def manifest() -> dict[str, Any]:
    return tomllib.loads(manifest_path().read_text())


def triton_server_version() -> str:
    return manifest()["triton"]["server"]


def pinned_requirements(section: str = "packages") -> list[Requirement]:
    return [Requirement(f"{name}{spec}") for name, spec in manifest()[section].items()]
