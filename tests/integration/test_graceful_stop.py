"""SIGTERM (``supervisorctl stop``): each program closes cleanly and exits 0 within stopwaitsecs.

One daemon for all programs; each case starts its program again, so the next finds a whole daemon.
"""

from __future__ import annotations

import configparser
import time

import pytest

from .daemon import Daemon, program_names

# Each case starts its program again and the next waits until it is RUNNING, startsecs after the
# spawn: 1 s instead of the template's 5 s (nothing here fails to start)
MODULE_DAEMON = {"startsecs": 1}


def _stopwaitsecs(d: Daemon, program: str) -> int:
    parser = configparser.RawConfigParser()
    parser.read(d.conf_path)
    return parser.getint(f"program:{program}", "stopwaitsecs")


@pytest.mark.parametrize("program", program_names())
def test_supervisorctl_stop_is_graceful(module_daemon: Daemon, program: str) -> None:
    d = module_daemon
    d.wait_running()
    d.wait_serving([program])  # a service still importing is not yet expected to handle SIGTERM
    limit = _stopwaitsecs(d, program)
    pid = d.pid_of(program)
    try:
        t0 = time.monotonic()
        res = d.supervisorctl("stop", d.qualified(program), timeout=limit + 10)
        elapsed = time.monotonic() - t0
        assert res.returncode == 0, (res.stdout, res.stderr)
        assert f"{d.qualified(program)}: stopped" in res.stdout, res.stdout
        assert elapsed < limit, elapsed
        info = d.process_info(program)
        assert info["statename"] == "STOPPED", info
        assert info["exitstatus"] == 0, info
        status_line = next(ln for ln in d.supervisorctl("status").stdout.splitlines()
                           if ln.startswith(d.qualified(program) + " "))
        assert " STOPPED " in status_line, status_line
        sup_log = d.supervisord_log.read_text()
        assert f"stopped: {program} (exit status 0)" in sup_log, sup_log[-3000:]
        assert f"killing '{program}' ({pid}) with SIGKILL" not in sup_log
        assert f"stopped: {program} (terminated by" not in sup_log
        log = d.program_log(program).read_text()
        assert log.rstrip().endswith(f"{program} stopped"), log[-2000:]
        assert "Traceback" not in log, log
    finally:
        # whatever happened, bring it back for the next case
        if d.process_info(program)["statename"] != "RUNNING":
            d.supervisorctl("start", d.qualified(program))
        d.wait_running([program])
        d.wait_serving([program])
