"""Instructor side: nbgrader integration and the `tritonlab grade` flow."""
