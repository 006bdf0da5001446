"""tradectl with no daemon to talk to: a clear message and exit code 2, quickly, never a hang."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from .daemon import _tool, clean_environ, run_tradectl, to_toml
from services.tradectl import exit_codes

LIMIT_S = 10.0
COMMANDS = [("state",), ("status", "--json"), ("stats",), ("open",), ("failsafe", "--reason", "test")]


@pytest.fixture
def nowhere(bus_keys: Path) -> Iterator[Path]:
    """A config whose run dir is empty: nothing listens there (the keys are there: a daemon ran once)."""
    root = Path(tempfile.mkdtemp(prefix="ltd-", dir="/tmp"))
    try:
        for sub in ("run", "logs", "state"):
            (root / sub).mkdir(mode=0o700)
        config = root / "config.toml"
        config.write_text(to_toml({"paths": {"run_dir": str(root / "run"), "log_dir": str(root / "logs"),
                                             "state_dir": str(root / "state"), "keys_dir": str(bus_keys)}}))
        yield config
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_no_keys_exits_bad_settings_naming_the_key(nowhere: Path) -> None:
    """Before the first `make run` there are no keys: tradectl says which one and how to make it."""
    nowhere.write_text(nowhere.read_text().replace("keys_dir", "# keys_dir"))
    [(args, code, out, err, elapsed)] = _run_all(nowhere, [("state",)])
    assert code == exit_codes.BAD_SETTINGS, (code, out, err)
    assert err.startswith("tradectl: no key pair for 'tradectl' in ") and "make run" in err, err
    assert len(err.strip().splitlines()) == 1 and elapsed < LIMIT_S


def _run_all(config: Path, commands: list[tuple[str, ...]]) -> list[tuple[tuple[str, ...], int, str, str, float]]:
    """Run the commands concurrently (each alone would take the client's full timeout)."""
    t0 = time.monotonic()
    procs = [(args, subprocess.Popen([_tool("tradectl"), *args], env=clean_environ({"TRADING_CONFIG": str(config)}),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for args in commands]
    results = []
    for args, proc in procs:
        try:
            out, err = proc.communicate(timeout=LIMIT_S * 2)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"tradectl {' '.join(args)} hung: {out} {err}")
        results.append((args, proc.returncode, out, err, time.monotonic() - t0))
    return results


@pytest.mark.alone  # bounded by the clock (LIMIT_S): not beside two other workers' daemons
def test_no_daemon_exits_2_with_a_clear_message(nowhere: Path) -> None:
    for args, code, out, err, elapsed in _run_all(nowhere, COMMANDS):
        assert code == exit_codes.UNREACHABLE, (args, code, out, err)
        assert out == "", (args, out)
        assert "not answering" in err and "Is it running?" in err, (args, err)
        assert str(nowhere.parent / "run" / "orchestrator.cmd") in err, (args, err)
        assert elapsed < LIMIT_S, (args, elapsed)


@pytest.mark.alone  # bounded by the clock (LIMIT_S): not beside two other workers' daemons
def test_stale_socket_file_exits_unreachable(nowhere: Path) -> None:
    """A socket file left by a daemon that died: bound once, nobody listening now."""
    path = nowhere.parent / "run" / "orchestrator.cmd"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody listens
    assert path.is_socket()
    [(args, code, out, err, elapsed)] = _run_all(nowhere, [("state",)])
    assert code == exit_codes.UNREACHABLE, (code, out, err)
    assert "not answering" in err
    assert elapsed < LIMIT_S


def test_missing_config_file_exits_bad_settings() -> None:
    t0 = time.monotonic()
    res = run_tradectl("state", config="/tmp/ltd-no-such-dir/config.toml")
    assert res.returncode == exit_codes.BAD_SETTINGS, (res.stdout, res.stderr)
    assert "invalid settings" in res.stderr and "no such file" in res.stderr, res.stderr
    assert time.monotonic() - t0 < LIMIT_S
