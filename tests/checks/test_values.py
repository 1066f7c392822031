"""Submitted values survive the trip to the isolated checker, functions with the imports they use."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tritonlab.checks.values import SubmissionError, SubmittedFunction, decode, encode, rebuild

LIMIT = 3


def uses_imports(url: str) -> str:
    return urllib.request.Request(url).full_url + str(LIMIT) + Path("x").name


def test_arrays_keep_dtype_and_shape():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    back = decode(json.loads(json.dumps(encode(array))))
    assert back.dtype == np.float32 and back.shape == (2, 3) and (back == array).all()


def test_functions_travel_with_the_globals_they_read():
    submitted = decode(json.loads(json.dumps(encode(uses_imports))))
    assert isinstance(submitted, SubmittedFunction)  # data: only a learner worker rebuilds and runs it
    rebuilt = rebuild(submitted)
    assert rebuilt is not uses_imports
    assert rebuilt("http://h/") == "http://h/3x"


def test_nested_containers_and_errors():
    assert decode(encode({"a": [1, 2.5, "s", None, True], "b": (1, 2)})) == {
        "a": [1, 2.5, "s", None, True],
        "b": [1, 2],
    }
    with pytest.raises(SubmissionError, match="cannot submit a set"):
        encode({1, 2})
    with pytest.raises(SubmissionError, match="not a lambda"):
        encode(lambda url: True)
