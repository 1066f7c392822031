"""env/setup.sh on an already set-up checkout is a quick no-op; the manifest is the single source of versions."""

from __future__ import annotations

import subprocess
import tomllib

from conftest import REPO_ROOT
from tritonlab.versions import manifest, pinned_requirements


def test_setup_again_is_a_no_op():
    result = subprocess.run(["bash", "env/setup.sh"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "environment up to date" in result.stdout


def test_manifest_pins_what_the_course_is_written_against():
    m = manifest()
    assert m["triton"]["server"] == "2.51.0" and m["triton"]["ngc_image"].endswith(":24.10-py3")
    assert m["trtllm"]["version"] == "1.2.1" and m["trtllm"]["image"].endswith(":26.07-trtllm-python-py3")
    pins = {r.name: str(r.specifier) for r in pinned_requirements()}
    assert pins["nvidia-pytriton"] == "==0.7.0" and pins["tritonclient"] == "==2.51.0"
    assert pins["numpy"] == "<2" and pins["torch"] == "==2.13.0" and pins["nbgrader"] == "==0.9.6"


def test_pins_script_prints_the_manifest():
    out = subprocess.run(["python3", "env/pins.py", "packages"], cwd=REPO_ROOT, capture_output=True, text=True)
    raw = tomllib.loads((REPO_ROOT / "env" / "versions.toml").read_text())["packages"]
    assert out.stdout.split() == [f"{name}{spec}" for name, spec in raw.items()]


def test_readme_quotes_the_manifest():
    readme = (REPO_ROOT / "README.md").read_text()
    m = manifest()
    for value in (m["triton"]["server"], m["triton"]["ngc_image"], m["trtllm"]["version"], m["trtllm"]["image"]):
        assert value in readme, f"README.md does not mention {value} from env/versions.toml"
    top = readme[:1200]
    assert "make lab" in top and "make test" in top
