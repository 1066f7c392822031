"""Print pip requirement lines from env/versions.toml (the single version manifest).

Usage: python3 env/pins.py [packages|dev ...]
"""

import sys
import tomllib
from pathlib import Path

MANIFEST = Path(__file__).with_name("versions.toml")


def main(sections: list[str]) -> None:
    manifest = tomllib.loads(MANIFEST.read_text())
    for section in sections or ["packages", "dev"]:
        for name, spec in manifest[section].items():
            print(f"{name}{spec}")


if __name__ == "__main__":
    main(sys.argv[1:])
