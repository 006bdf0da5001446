"""Shared fixtures for the unit tests: short ipc dirs, a zmq context (the clean TRADING_*
environment is every suite's, in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq


@pytest.fixture
def ipc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh, short directory for ipc:// endpoints (socket paths must stay under ~100 chars)."""
    path = tmp_path_factory.mktemp("ipc")
    assert len(str(path)) < 70, path
    return path


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)
