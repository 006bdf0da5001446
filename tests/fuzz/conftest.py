"""Fixtures for the bad-input, bad-configuration and overload suite.

``fuzz_daemon`` (module scope): the whole daemon under a real supervisord (``integration.daemon``),
shared by the cases of one module (the socket fuzzing; the short overload cases), with:
  * market data at 2 x 1,000 quotes/s (``BTC-USD``, ``SOL-USD``; no random jumps), so the fuzzing
    runs against a process that is busy with real traffic;
  * small publisher and command high-water marks (2,000 / 1,000 messages), so a slow subscriber
    overflows and a command sender that never reads hits the HWM within seconds;
  * no strategies (nothing trades except what a test submits) and the session opened at start.

At the end of the session the figures (inputs per socket, crashes, counters matched, overload) are
printed (``figures.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.daemon import Daemon
from integration.e2e import open_daemon


HERE = Path(__file__).parent

FUZZ_CONFIG: dict[str, Any] = {
    "bus": {"pub_hwm": 2000, "command_hwm": 1000},
    "orchestrator": {"health_check_interval_s": 1.0, "health": {"auto_recover_after_s": 3600.0}},
    "engine": {"strategies": []},
    "venue_sim": {"symbols": {"BTC-USD": 40_000.0, "SOL-USD": 150.0}, "quotes_per_s": 1000.0,
                  "jump_probability_per_s": 0.0},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents and "fuzz_daemon" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)



# Per module, not per session: a session's daemon lived, at 2,000 quotes/s, until its test worker
# had run everything else, and starved every daemon that other workers started meanwhile.
@pytest.fixture(scope="module")
def fuzz_daemon() -> Iterator[Daemon]:
    d = open_daemon(FUZZ_CONFIG)
    try:
        d.wait_state("live", timeout=40)
        d.initial_pids = {p: d.pid_of(p) for p in d.programs}  # type: ignore[attr-defined]
        yield d
    finally:
        d.close()
    assert not d.leftover_processes(), "processes left behind"
