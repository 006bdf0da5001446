"""Fixtures for suites that run the real daemon under a real supervisord (see ``daemon.py``).

``daemon`` (function scope): a fresh daemon per test, every program RUNNING and answering on the
bus. Configure it with a marker on the test (or on the module via ``pytestmark``):

    @pytest.mark.daemon(config={"orchestrator": {"auto_open": False}}, environment={...},
                        toml_extra="", toml_text=None, start=True)

(``start=False``: the test calls ``daemon.start(wait=...)`` itself, e.g. to time the start-up.)

``module_daemon`` (module scope): one daemon shared by a module's read-only tests (and by tests
that restore what they change, e.g. wait for a killed program to be back). Configure it with a
module attribute ``MODULE_DAEMON = {"config": {...}}`` (same keys as the marker).

``daemon_factory`` (function scope): ``daemon_factory(config=..., start=False)`` for tests that need
several daemons or one that must not start cleanly (bad settings); all are closed after the test.

Every daemon is torn down after its scope, whether the test passed or not, and the teardown fails
if any process outlived supervisord's shutdown. On failure the tail of each program's log is
printed into the test report. ``LTD_KEEP=1`` keeps the temp dirs.

Importing from another suite: ``tests/`` is on ``sys.path`` (rootdir-relative package import), so
``from integration.daemon import Daemon, wait_until``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .daemon import Daemon

HERE = Path(__file__).parent


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (a CI timeout, a `kill`) ends the run like Ctrl-C, so fixture teardown still stops
    # every supervisord; by default it would kill pytest at once and orphan them.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    config.addinivalue_line(
        "markers",
        "daemon(config=None, environment=None, toml_text=None, toml_extra='', start=True): "
        "options for the `daemon` fixture",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"_ltd_report_{report.when}", report)
    return report


def _failed(node: Any) -> bool:
    return any(getattr(getattr(node, f"_ltd_report_{when}", None), "failed", False)
               for when in ("setup", "call"))


def _assert_clean(d: Daemon) -> None:
    """supervisord's shutdown must have stopped everything: nothing needed a SIGKILL afterwards."""
    assert not d.leftovers_killed, f"processes outlived supervisord's shutdown: {d.leftovers_killed}"
    assert not d.leftover_processes(), "processes left behind"


def _open(options: dict[str, Any]) -> Daemon:
    options = dict(options)
    start = options.pop("start", True)
    d = Daemon(**options)
    if start:
        try:
            d.start()
        except BaseException:
            print(d.diagnostics())
            d.close()
            raise
    return d


@pytest.fixture
def daemon(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    marker = request.node.get_closest_marker("daemon")
    d = _open(dict(marker.kwargs) if marker else {})
    try:
        yield d
    finally:
        if _failed(request.node):
            print(d.diagnostics(40))
        d.close()
        _assert_clean(d)


@pytest.fixture(scope="module")
def module_daemon(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    d = _open(dict(getattr(request.module, "MODULE_DAEMON", {})))
    try:
        yield d
    finally:
        d.close()
        _assert_clean(d)


@pytest.fixture
def daemon_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(**options: Any) -> Daemon:
        d = Daemon(**{k: v for k, v in options.items() if k != "start"})
        made.append(d)
        if options.get("start", True):
            d.start()
        return d

    try:
        yield make
    finally:
        for d in made:
            if _failed(request.node):
                print(d.diagnostics(40))
            d.close()
        for d in made:
            _assert_clean(d)
