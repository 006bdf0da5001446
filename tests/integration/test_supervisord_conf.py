"""The committed deploy/supervisord.conf: current with its template, and what supervisor reads from it.

Parsed with supervisor's own option classes (the ones supervisord and supervisorctl use), from a
byte-identical copy placed in a scratch tree, because ``%(here)s/../run`` and ``../logs`` must exist
for supervisord to accept the file (``make run`` creates them) and the repository's own run/ and
logs/ belong to a developer's daemon.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.events import EventTypes
from supervisor.options import ClientOptions, EventListenerPoolConfig, ServerOptions

from deploy import supervisord_conf

from .daemon import REPO_ROOT, group_program_names, program_names

COMMITTED = REPO_ROOT / "deploy" / "supervisord.conf"


def test_committed_conf_is_the_rendered_template() -> None:
    assert COMMITTED.read_text() == supervisord_conf.render_for_repository(), (
        "deploy/supervisord.conf is stale: run `.venv/bin/python -m deploy.supervisord_conf > deploy/supervisord.conf`"
    )


def _modules() -> dict[str, str]:
    """{program: module} of every ``Program`` the template module defines (PROGRAMS and any other)."""
    found = {p.name: p.module for p in supervisord_conf.PROGRAMS}
    for value in vars(supervisord_conf).values():
        if isinstance(value, supervisord_conf.Program):
            found[value.name] = value.module
    return found


def test_every_program_runs_a_real_module() -> None:
    for name, module in _modules().items():
        assert importlib.util.find_spec(f"{module}.__main__") is not None, (name, module)


@pytest.fixture(scope="module")
def scratch_conf() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ltd-", dir="/tmp"))
    try:
        (root / "deploy").mkdir()
        (root / "run").mkdir(mode=0o700)
        (root / "logs").mkdir()
        conf = root / "deploy" / "supervisord.conf"
        shutil.copyfile(COMMITTED, conf)
        yield conf
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server_options(scratch_conf: Path) -> ServerOptions:
    options = ServerOptions()
    options.realize(args=["-c", str(scratch_conf)])
    return options


def test_supervisord_reads_the_group_and_every_program(server_options: ServerOptions, scratch_conf: Path) -> None:
    here = scratch_conf.parent
    groups = {g.name: g for g in server_options.process_group_configs
              if not isinstance(g, EventListenerPoolConfig)}
    group = groups[supervisord_conf.GROUP]
    assert sorted(p.name for p in group.process_configs) == sorted(group_program_names())
    configs = {p.name: p for g in groups.values() for p in g.process_configs}
    assert sorted(configs) == sorted(program_names())
    for name, g in groups.items():  # anything outside the trading group runs alone in its own
        assert name == supervisord_conf.GROUP or [p.name for p in g.process_configs] == [name]
    modules = _modules()
    assert set(modules) == set(configs)
    for name, pc in configs.items():
        assert pc.command == f"{here}/../.venv/bin/python -m {modules[name]}", pc.command
        assert pc.directory == f"{here}/..", pc.directory
        assert pc.autostart is True
        assert pc.autorestart is RestartUnconditionally, (name, pc.autorestart)
        assert pc.stopasgroup is True and pc.killasgroup is True, name
        assert pc.stopsignal == signal.SIGTERM, name
        assert pc.stopwaitsecs >= 5, (name, pc.stopwaitsecs)
        assert pc.startsecs >= 1 and 1 <= pc.startretries <= 5, (name, pc.startsecs, pc.startretries)
        assert pc.redirect_stderr is True
        assert pc.stdout_logfile == f"{here}/../logs/{name}.log", pc.stdout_logfile
        assert pc.environment.get("PYTHONUNBUFFERED") == "1"
        assert not any(key.startswith("TRADING_") for key in pc.environment), pc.environment


def test_supervisord_runs_the_event_listener_on_process_state(server_options: ServerOptions,
                                                            scratch_conf: Path) -> None:
    here = scratch_conf.parent
    pools = [g for g in server_options.process_group_configs if isinstance(g, EventListenerPoolConfig)]
    assert [p.name for p in pools] == [supervisord_conf.EVENT_LISTENER]
    [pool] = pools
    assert EventTypes.PROCESS_STATE in pool.pool_events
    [pc] = pool.process_configs
    assert pc.command == f"{here}/../.venv/bin/python -m {supervisord_conf.EVENT_LISTENER_MODULE}"
    assert importlib.util.find_spec(supervisord_conf.EVENT_LISTENER_MODULE) is not None
    assert pc.autorestart is RestartUnconditionally
    programs = {p.name: p for g in server_options.process_group_configs for p in g.process_configs}
    assert (pc.startsecs, pc.startretries) == (programs["engine"].startsecs, programs["engine"].startretries)
    # stdout is the listener protocol; only stderr is a log.
    assert pc.stderr_logfile == f"{here}/../logs/{supervisord_conf.EVENT_LISTENER}.log"


def test_control_socket_is_private(server_options: ServerOptions, scratch_conf: Path) -> None:
    [server] = server_options.server_configs
    assert server["family"] == socket.AF_UNIX
    assert server["file"] == str(scratch_conf.parent.parent / "run" / "supervisor.sock")
    assert server["chmod"] == 0o700, oct(server["chmod"])
    assert server_options.nodaemon is True
    assert server_options.logfile == str(scratch_conf.parent.parent / "logs" / "supervisord.log")


def test_supervisorctl_reads_the_same_socket(scratch_conf: Path) -> None:
    options = ClientOptions()
    options.realize(args=["-c", str(scratch_conf)])
    assert options.serverurl == f"unix://{scratch_conf.parent.parent}/run/supervisor.sock"


def test_render_for_a_test_dir_keeps_the_invariants() -> None:
    """What the fixture renders differs from the committed file only in paths and environment."""
    text = supervisord_conf.render(root="/r", python="/r/py", run_dir="/x/run", log_dir="/x/logs",
                                   environment={"TRADING_CONFIG": "/x/c.toml"})
    assert "file=/x/run/supervisor.sock" in text
    assert text.count('TRADING_CONFIG="/x/c.toml"') == len(program_names()) + 1  # + the event listener
    assert text.count("stopasgroup=true") == len(program_names())
