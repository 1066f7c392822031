"""Lab 2's provided models are self-contained: they import no tritonlab (so they serve inside a container too) and
the classifier files carry exactly the weights the checks compute answers with."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from tritonlab.labs import lab2


def imported_modules(source: str) -> set[str]:
    tree = ast.parse(source)
    names = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return names


def test_every_provided_model_imports_only_numpy_and_the_backend_utils(tmp_path):
    repo = lab2.prepare_repository(tmp_path / "lab2_repo")
    sources = [*repo.glob("*/1/model.py"), repo / "classifier_v2.py"]
    assert len(sources) == 5
    for path in sources:
        assert imported_modules(path.read_text()) <= {"numpy", "triton_python_backend_utils"}, path


@pytest.mark.parametrize("version", [1, 2])
def test_classifier_source_carries_the_reference_weights(version):
    tree = ast.parse(lab2.classifier_source(version))
    values = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    assert ast.literal_eval(values["VERSION"]) == version
    weights, bias = lab2.WEIGHTS[version]
    np.testing.assert_array_equal(np.array(ast.literal_eval(values["W"].args[0]), np.float32), weights)
    np.testing.assert_array_equal(np.array(ast.literal_eval(values["B"].args[0]), np.float32), bias)
