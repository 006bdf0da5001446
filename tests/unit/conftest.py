"""Unit tests build services and clients in their own process: ``paths.keys_dir`` is the suite's
``bus_keys`` (tests/conftest.py), so they have CURVE keys as a daemon's processes do."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _keys_dir(monkeypatch: pytest.MonkeyPatch, bus_keys: Path, _clean_trading_env: None) -> None:
    monkeypatch.setenv("TRADING_PATHS__KEYS_DIR", str(bus_keys))
