"""The seed's usage examples, as docs/python_api.md prints them, against a running daemon.

Each example runs in its own Python process with the daemon's settings (``TRADING_CONFIG``), its
code taken from the page as printed; only its ``time.sleep(N)`` calls are shortened."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .daemon import Daemon, clean_environ, wait_until
from .e2e import ensure_live

PAGE = Path(__file__).resolve().parents[2] / "docs" / "python_api.md"
ROOT = PAGE.parents[1]


def example(title: str, sleep_s: float) -> str:
    """The code block under ``## title``, its sleeps cut to ``sleep_s``."""
    section = PAGE.read_text().split(f"## {title}\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    return re.sub(r"time\.sleep\(\d+(\.\d+)?\)", f"time.sleep({sleep_s})", code)


def start(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return out


@pytest.fixture
def env(module_daemon: Daemon) -> dict[str, str]:
    return clean_environ(module_daemon.environment)


def test_basic_session(module_daemon: Daemon, env: dict[str, str]) -> None:
    ensure_live(module_daemon)
    out = finish(start(example("Basic session", 2), env))
    assert "state: live" in out and "realized PnL" in out, out
    assert re.search(r"connectors: \{'sim': \{.*'connected': True", out), out
    assert re.search(r"engine decisions: \d+", out), out


def test_with_custom_callbacks_sees_a_jump_and_the_degradation(module_daemon: Daemon, env: dict[str, str]) -> None:
    ensure_live(module_daemon)
    proc = start(example("With custom callbacks", 8), env)
    try:
        time.sleep(3)  # the example has attached its callbacks
        assert module_daemon.call("venue_sim", "fault", fault="jump_price", symbol="BTC-USD", value=5.0).ok
        out = finish(proc)
    finally:
        proc.kill()
    assert "state: live -> degraded" in out, out
    assert "data anomaly on BTC-USD" in out, out


def test_with_recovery_handling_reports_what_still_holds(module_daemon: Daemon, env: dict[str, str]) -> None:
    if module_daemon.state() != "degraded":
        assert module_daemon.call("venue_sim", "fault", fault="jump_price", symbol="BTC-USD", value=5.0).ok
        wait_until(lambda: module_daemon.state() == "degraded", 15)
    out = finish(start(example("With recovery handling", 0.2), env))
    # the jump holds for its hold time: recover is refused and the example says what holds
    assert "still degraded; holding: [{" in out and "price_jump" in out, out


def test_no_daemon_is_a_clear_error(tmp_path: Path, bus_keys: Path) -> None:
    env = clean_environ({"TRADING_PATHS__RUN_DIR": str(tmp_path / "run"), "TRADING_BUS__COMMAND_TIMEOUT_S": "0.2",
                         "TRADING_BUS__COMMAND_RETRIES": "0",
                         "TRADING_PATHS__KEYS_DIR": str(bus_keys)})  # keys, and no daemon
    proc = start(example("Basic session", 0), env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "DaemonNotRunning: no trading daemon answers at" in err and "make run" in err, err
    assert os.path.isdir(tmp_path) and out == ""
