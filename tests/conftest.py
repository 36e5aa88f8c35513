"""Suite-wide hooks: ``pytest.mark.requires(...)`` names the real components a test needs (lab.require)."""

from lab.require import pytest_configure, pytest_runtest_setup

__all__ = ["pytest_configure", "pytest_runtest_setup"]
