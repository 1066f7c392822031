"""Checkpoint definitions, one module per lab. Importing this package registers them all."""

from tritonlab.checks.labs import lab1, lab2, lab3, lab4, lab5  # noqa: F401
