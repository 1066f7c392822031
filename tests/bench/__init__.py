"""Tests of tritonlab.bench (a package so its module names, e.g. test_runner, do not clash with tests/checks')."""
