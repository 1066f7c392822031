"""Lab 2 (model repository design): the provided python-backend models and the reference pipeline.

The pipeline the learner assembles into an ensemble:  RAW --scale--> FEATURES --classifier--> LOGITS --argmax--> LABEL
``classifier`` has two versions with different weights; the checks compute the right answers with the functions
below. The served model.py files are self-contained (numpy only, the classifier's weights written into them from
WEIGHTS) so the same repository serves on the embedded server and inside a container.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from string import Template

import numpy as np

from tritonlab.diskspace import reports_disk_full

ASSETS = Path(__file__).with_name("lab2_models")
WEIGHTS = {
    1: (np.array([[1.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, -0.5, 1.0], [-1.0, 0.5, 0.5]], np.float32),
        np.array([0.1, 0.0, -0.1], np.float32)),
    2: (np.array([[-1.0, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, -0.5], [0.5, -1.0, 0.5]], np.float32),
        np.array([0.0, 0.2, 0.0], np.float32)),
}  # fmt: skip
RAW_EXAMPLE = [[10.0, 20.0, 5.0, 40.0], [30.0, 0.0, 20.0, 10.0]]


def scale(raw: np.ndarray) -> np.ndarray:
    return (raw / 10.0).astype(np.float32)


def classify(features: np.ndarray, version: int) -> np.ndarray:
    weights, bias = WEIGHTS[version]
    return (features @ weights + bias).astype(np.float32)


def argmax(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits, axis=-1).astype(np.int32).reshape(-1, 1)


def pipeline(raw: np.ndarray, version: int = 2) -> np.ndarray:
    return argmax(classify(scale(raw), version))


@reports_disk_full("the lab 2 model repository")
def prepare_repository(dest: str | Path) -> Path:
    """Lay out the lab's repository: complete models (scale, argmax, scratch) and the parts you complete."""
    dest = Path(dest)
    for name in ("scale", "argmax", "scratch"):
        (dest / name / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ASSETS / f"{name}.py", dest / name / "1" / "model.py")
        shutil.copyfile(ASSETS / f"{name}.pbtxt", dest / name / "config.pbtxt")
    (dest / "classifier" / "1").mkdir(parents=True, exist_ok=True)
    (dest / "classifier" / "1" / "model.py").write_text(classifier_source(1))
    (dest / "pipeline" / "1").mkdir(parents=True, exist_ok=True)  # an ensemble has no file, but needs a version
    (dest / "classifier_v2.py").write_text(classifier_source(2))  # for the versions exercise
    return dest


def classifier_source(version: int) -> str:
    """model.py of classifier version ``version``, with its weights from WEIGHTS written in."""
    weights, bias = WEIGHTS[version]
    template = Template((ASSETS / "classifier.py.tmpl").read_text())
    return template.substitute(version=version, weights=weights.tolist(), bias=bias.tolist())
