"""The whole run: no test sees TRADING_* settings from the shell it runs in; short private ipc
dirs and a zmq context for the suites that build sockets themselves; the logs of a failed test's
daemons in its report; and the figures the fault and fuzz suites print at the end.

``make test`` runs in xdist workers, each with its own share of a suite's tests and so its own
share of the figures: at the end each worker hands its figures to the controller
(``workeroutput``), which adds them up and prints them once. In a plain run the same hooks print
the figures of the one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from bus import keys
from deploy.temp_daemon import HARNESS
from proto.commands.base import IDENTITIES
from faults.harness import FIGURES as FAULT_FIGURES
from fuzz import figures as fuzz_figures
from integration.e2e import attach_diagnostics


@pytest.fixture(scope="session")
def bus_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key directory with a pair for every system identity (``bus/keys.py``), for the services a
    unit test runs in its own process (tests/unit/conftest.py); ``HARNESS`` is an operator, as the
    integration daemons have it (theirs are under each daemon's state directory)."""
    path = tmp_path_factory.mktemp("keys") / "keys"
    keys.ensure(path, list(IDENTITIES))
    keys.generate(path, HARNESS, "operator")
    return path


@pytest.fixture(autouse=True)
def _clean_trading_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees (or leaks) TRADING_* settings from the environment it runs in."""
    for key in list(os.environ):
        if key.startswith("TRADING_"):
            monkeypatch.delenv(key)


@pytest.fixture
def ipc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh, short, private directory for ipc:// endpoints (socket paths must stay under ~100
    characters)."""
    path = tmp_path_factory.mktemp("ipc")
    os.chmod(path, 0o700)
    assert len(str(path)) < 70, path
    return path


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that used a daemon gets the tail of every program's log in its report."""
    report = yield
    attach_diagnostics(item, report)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = getattr(session.config, "workeroutput", None)
    if out is not None:  # an xdist worker
        out["figures"] = {"faults": FAULT_FIGURES.export(), "fuzz": fuzz_figures.export()}


def pytest_testnodedown(node: Any, error: Any) -> None:
    figures = getattr(node, "workeroutput", {}).get("figures")
    if figures:
        FAULT_FIGURES.absorb(figures["faults"])
        fuzz_figures.absorb(figures["fuzz"])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if (FAULT_FIGURES.cases or FAULT_FIGURES.faults or FAULT_FIGURES.reactions or FAULT_FIGURES.notes
            or FAULT_FIGURES.floods):
        terminalreporter.section("fault-injection figures")
        for line in FAULT_FIGURES.lines():
            terminalreporter.write_line(line)
    fuzz_lines = fuzz_figures.lines()
    if fuzz_lines:
        terminalreporter.section("fuzz and overload figures")
        for line in fuzz_lines:
            terminalreporter.write_line(line)
