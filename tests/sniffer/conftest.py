"""Fixtures for the sniffer suite (``tradectl bus``).

Most tests run offline: a controlled publisher (``support.FakePublisher``) binds a real publisher
endpoint in a private run dir and the real CLI attaches there (``TRADING_PATHS__RUN_DIR``). The
tests in ``test_daemon.py`` use one real daemon under supervisord for the module
(``module_daemon``, from ``integration.e2e.suite_fixtures``) and are marked ``integration``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from integration.e2e import suite_fixtures

HERE = Path(__file__).parent

BASE_CONFIG: dict[str, Any] = {
    "bus": {"heartbeat_interval_s": 0.1},
    "venue_sim": {"jump_probability_per_s": 0.0},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path) == HERE / "test_daemon.py":
            item.add_marker(pytest.mark.integration)



module_daemon, make_daemon = suite_fixtures(BASE_CONFIG)


@pytest.fixture
def run_dir(ipc_dir: Path) -> Path:
    """The run dir the CLI attaches to (``TRADING_PATHS__RUN_DIR``): a short private one."""
    return ipc_dir
