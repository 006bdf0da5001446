"""Fixtures for the fault-injection matrix (``tests/faults``): one real daemon under a real
supervisord, shared by every test of the package (``fault_harness``, package scope), brought back to
the state each cell needs rather than started again; ``make_daemon`` for a test that needs its own.

``fault_harness`` is parametrised by the adapter the exchange manager reaches the venue through
(``venue_views.ADAPTERS``): ``native`` (the default configuration) for every test, and also ``ccxt``
(``deploy/ccxt-sim.toml``, the venue read through its Binance face) for the tests of a module that
lists it in its ``ADAPTERS``. Tests are grouped by adapter, so one daemon runs at a time. The ccxt
variants are ``slow`` (``make test-faults``), but for the ids a module lists in ``CCXT_FAST``.

Every item is marked ``integration``; a failed test gets the tail of every program's log in its
report; at the end of the session the suite's figures are printed (``harness.FIGURES``, by
``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.temp_daemon import free_port
from integration.e2e import open_daemon, suite_fixtures

from .harness import FAULT_CONFIG, FaultHarness
from .venue_views import CCXT_CREDENTIALS, ccxt_config, make_view

HERE = Path(__file__).parent


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault_harness" in metafunc.fixturenames:
        adapters = getattr(metafunc.module, "ADAPTERS", ("native",))
        metafunc.parametrize("fault_harness", adapters, indirect=True, scope="package")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    daemons = {"fault_harness", "make_daemon", "module_daemon"}
    for item in items:
        if HERE in Path(item.path).parents and daemons & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        callspec = getattr(item, "callspec", None)
        if (callspec is not None and callspec.params.get("fault_harness", "native") != "native"
                and item.name not in getattr(item.module, "CCXT_FAST", ())):
            item.add_marker(pytest.mark.slow)


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
def fault_harness(request: pytest.FixtureRequest) -> Iterator[FaultHarness]:
    adapter = getattr(request, "param", "native")
    if adapter == "native":
        config, options = FAULT_CONFIG, {}
    else:
        config, options = ccxt_config(FAULT_CONFIG, free_port()), {"environment": CCXT_CREDENTIALS}
    d = open_daemon(config, **options)
    harness = None
    try:
        harness = FaultHarness(d, make_view(adapter, d, config))
        yield harness
    finally:
        if harness is not None:
            harness.close()
        d.close()
    assert not d.leftover_processes(), "processes left behind"


module_daemon, make_daemon = suite_fixtures(FAULT_CONFIG)
