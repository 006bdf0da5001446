"""supervisord's event listener under a real supervisord: alerts on the bus, a log, and the
orchestrator failing the session safe when supervisord gives up on a trading service.

The daemon runs with ``startretries=0``: a program that dies within ``startsecs`` of being started
is FATAL at once, so a restart loop is two kills instead of a minute of them.
"""

from __future__ import annotations

import pytest

import proto
from bus import CommandTimeout

from .daemon import Daemon, wait_until
from .e2e import Collector


@pytest.fixture
def daemon() -> Daemon:
    with Daemon({"bus": {"heartbeat_interval_s": 0.1}}, startretries=0) as d:
        yield d


def test_a_restart_loop_ends_fatal_alerted_and_the_session_fails_safe(daemon: Daemon) -> None:
    d = daemon
    wait_until(lambda: d.state() == "live", 30, ignore=(CommandTimeout,), message=d.diagnostics)
    d.wait_running(["engine"])  # a RUNNING engine dies (a STARTING one killed would be FATAL at once)
    with Collector(d, "supervisor", [proto.topics.PROCESS_ALERT]) as alerts:
        first = d.kill9("engine")
        # Kill the new process while it is still STARTING (within startsecs): a failed start, and
        # with no retries left supervisord gives up.
        second = wait_until(lambda: (info := d.process_info("engine"))["statename"] == "STARTING"
                            and info["pid"] not in (0, first) and info["pid"], 20)
        d.kill9("engine")
        d.wait_statename("engine", "FATAL", timeout=20)

        def seen() -> list[tuple[str, str]] | None:
            got = [(a.program, a.event) for a in alerts.bodies(proto.ProcessAlert)]
            return got if ("engine", "fatal") in got else None

        got = wait_until(seen, 10, message=lambda: str(alerts.bodies(proto.ProcessAlert)))
    assert got[0] == ("engine", "exited") and ("engine", "backoff") in got, got
    first_alert = alerts.bodies(proto.ProcessAlert)[0]
    assert first_alert.pid == first and first_alert.from_state == "RUNNING" and not first_alert.expected
    assert second != first

    wait_until(lambda: d.state() == "failsafe", 10, ignore=(CommandTimeout,), message=d.diagnostics)
    status = d.status_json()
    assert status["components"]["engine"]["fatal"] is True
    assert status["components"]["engine"]["alive"] is False
    health_log = next((d.log_dir / "live").glob("connector_health_*.log")).read_text()
    assert "Process engine: FATAL under supervisord" in health_log
    live_log = next((d.log_dir / "live").glob("live_trading_*.log")).read_text()
    assert "engine is FATAL under supervisord: missing for good" in live_log
    alert_log = (d.log_dir / "process_alerts.log").read_text()
    assert "FATAL trading:engine FATAL: supervisord gave up" in alert_log

    # The operator starts it again: no longer fatal once it is heard from with a new epoch.
    d.supervisorctl("start", d.qualified("engine"))
    wait_until(lambda: d.status()["components"]["engine"]["alive"], 20, ignore=(CommandTimeout,))
    assert d.status()["components"]["engine"]["fatal"] is False
