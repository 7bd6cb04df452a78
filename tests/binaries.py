"""Debian programs some tests need (``.ci/run`` installs them): found, or the test says why not.

Under ``CI=true`` a missing program fails the test, so CI can never pass by skipping; elsewhere
the test is skipped with a plain reason naming the Debian package to install.
"""

from __future__ import annotations

import os
import shutil

import pytest


def debian_binary(name: str, package: str) -> str:
    """The path of program ``name``; fails (CI) or skips (elsewhere) the test when it is missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is not installed (apt-get install {package}; .ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
