"""Fixtures for the safety suite (safety layer, DEGRADED, FAILSAFE): the real daemon
(``integration.daemon.Daemon``) under a real supervisord, with this suite's settings.

``BASE_CONFIG`` is what every daemon here runs with: faster heartbeats and health checks, a 1 s
dead-man timeout, no automatic recovery from DEGRADED within a test's time, the demo strategies
tuned to trade within seconds, no random jumps on the synthetic feed (the safety thresholds are the
defaults unless a test says otherwise). A module adds its
own overrides as ``MODULE_CONFIG`` (deep-merged over ``BASE_CONFIG``) for ``module_daemon``, the
one daemon shared by the module's tests; ``make_daemon(config)`` starts a daemon for one test.
Every daemon is closed after its scope; on a failure the tail of each program's log is added to
the test's report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from integration.e2e import FAST_STRATEGIES, suite_fixtures

HERE = Path(__file__).parent

BASE_CONFIG: dict[str, Any] = {
    "bus": {"heartbeat_interval_s": 0.1},
    "orchestrator": {
        "health_check_interval_s": 1.0,
        # A test recovers by itself (tradectl recover) when it means to; none waits 30 s for it.
        "health": {"auto_recover_after_s": 3600.0},
    },
    "engine": {"strategies": FAST_STRATEGIES, "deadman_timeout_s": 1.0},
    "exchange_manager": {"deadman_timeout_s": 1.0},
    "venue_sim": {"jump_probability_per_s": 0.0, "volatility_bps_per_sqrt_s": 6.0},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)



module_daemon, make_daemon = suite_fixtures(BASE_CONFIG)
