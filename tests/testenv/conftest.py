"""Make sure the testenv fixtures are loaded for this folder.

The top-level tests/conftest.py is meant to list ``"testenv.pytest_plugin"`` in
``pytest_plugins``; importing it again here is a no-op once it does.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("testenv.pytest_plugin")
