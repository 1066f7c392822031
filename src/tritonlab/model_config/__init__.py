"""Model configuration: reading config.pbtxt with Triton's own ModelConfig protobuf, and validating repositories."""

from tritonlab.model_config.validate import Finding, Report, validate

__all__ = ["Finding", "Report", "validate"]
