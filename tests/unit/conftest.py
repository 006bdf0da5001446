"""Shared fixtures for the unit tests: a clean TRADING_* environment, short ipc dirs, a zmq context."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq


@pytest.fixture(autouse=True)
def _clean_trading_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees (or leaks) TRADING_* settings from the environment it runs in."""
    for key in list(os.environ):
        if key.startswith("TRADING_"):
            monkeypatch.delenv(key)


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
