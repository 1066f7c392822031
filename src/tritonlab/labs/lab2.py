"""Lab 2 (model repository design): the provided python-backend models and the reference pipeline.

The pipeline the learner assembles into an ensemble:  RAW --scale--> FEATURES --classifier--> LOGITS --argmax--> LABEL
``classifier`` has two versions with different weights; the checks compute the right answers with the functions
below, which the served model.py files also call.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

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


def prepare_repository(dest: str | Path) -> Path:
    """Lay out the lab's repository: complete models (scale, argmax, scratch) and the parts you complete."""
    dest = Path(dest)
    for name in ("scale", "argmax", "scratch"):
        (dest / name / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ASSETS / f"{name}.py", dest / name / "1" / "model.py")
        shutil.copyfile(ASSETS / f"{name}.pbtxt", dest / name / "config.pbtxt")
    (dest / "classifier" / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ASSETS / "classifier_v1.py", dest / "classifier" / "1" / "model.py")
    (dest / "pipeline" / "1").mkdir(parents=True, exist_ok=True)  # an ensemble has no file, but needs a version
    shutil.copyfile(ASSETS / "classifier_v2.py", dest / "classifier_v2.py")  # for the versions exercise
    return dest
