"""Fixtures for the fault-injection matrix (``tests/faults``): one real daemon under a real
supervisord, shared by every test of the package (``fault_harness``, package scope), brought back to
the state each cell needs rather than started again; ``make_daemon`` for a test that needs its own.

Every item is marked ``integration``; a failed test gets the tail of every program's log in its
report; at the end of the session the suite's figures are printed (``harness.FIGURES``, by
``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.e2e import open_daemon, suite_fixtures

from .harness import FAULT_CONFIG, FaultHarness

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    daemons = {"fault_harness", "make_daemon", "module_daemon"}
    for item in items:
        if HERE in Path(item.path).parents and daemons & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    # the daemons among the test's fixtures get theirs from tests/conftest.py; the harness holds one too
    if report.failed and report.when == "call" and "fault_harness" in getattr(item, "funcargs", {}):
        d = item.funcargs["fault_harness"].d
        if not d._closed:
            report.sections.append((f"daemon {d.root} logs", d.diagnostics(40)))
    return report


@pytest.fixture(scope="package")
def fault_harness() -> Iterator[FaultHarness]:
    d = open_daemon(FAULT_CONFIG)
    harness = None
    try:
        harness = FaultHarness(d)
        yield harness
    finally:
        if harness is not None:
            harness.close()
        d.close()
    assert not d.leftover_processes(), "processes left behind"


module_daemon, make_daemon = suite_fixtures(FAULT_CONFIG)
