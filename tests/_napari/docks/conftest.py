"""Fixtures the dock tests share."""

from .test_inference import home  # noqa: F401 (user checkpoints under tmp_path, no bundled ones)
