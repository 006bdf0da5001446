"""deploy/event_listener.py spoken to as supervisord speaks to it: real pipes, a real process.

The listener runs as a subprocess; the test plays supervisord on its stdin/stdout (READY, header,
payload, RESULT) and listens on its PUB endpoint for the alerts.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zmq

import proto
from bus import Curve, Endpoints, KeyStore
from bus.settings import BusSettings
from deploy.event_listener import describe, parse_alert

REPO = Path(__file__).resolve().parents[2]


def _event(name: str, payload: str, serial: int) -> bytes:
    body = payload.encode()
    header = (f"ver:3.0 server:supervisor serial:{serial} pool:event_listener poolserial:{serial} "
              f"eventname:{name} len:{len(body)}\n")
    return header.encode() + body


def _read_token(out: "subprocess.IO[bytes]", token: bytes, timeout: float = 10.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(token):
        ready, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"listener did not write {token!r}; got {buf!r}"
        chunk = os.read(out.fileno(), 1)
        assert chunk, f"listener closed stdout; got {buf!r}"
        buf += chunk
    return buf


def test_parse_alert_keeps_only_bad_endings() -> None:
    exited = parse_alert({"eventname": "PROCESS_STATE_EXITED"},
                         "processname:engine groupname:trading from_state:RUNNING expected:0 pid:4242")
    assert exited == proto.ProcessAlert(program="engine", group="trading", event="exited",
                                        from_state="RUNNING", expected=False, pid=4242)
    assert "trading:engine exited unexpectedly" in describe(exited)
    assert parse_alert({"eventname": "PROCESS_STATE_EXITED"},
                       "processname:engine groupname:trading from_state:RUNNING expected:1 pid:1") is None
    assert parse_alert({"eventname": "PROCESS_STATE_RUNNING"},
                       "processname:engine groupname:trading from_state:STARTING pid:1") is None
    fatal = parse_alert({"eventname": "PROCESS_STATE_FATAL"},
                        "processname:venue_sim groupname:venue_sim from_state:BACKOFF")
    assert fatal is not None and fatal.event == "fatal" and fatal.pid == 0
    assert describe(fatal).startswith("venue_sim FATAL")


@contextmanager
def _listener(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], zmq.Socket, Path]]:
    """The listener as a subprocess (we play supervisord on its pipes), a SUB on its PUB past the
    slow joiner, and its log directory."""
    run_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    run_dir.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    keys_dir = Path(os.environ["TRADING_PATHS__KEYS_DIR"])  # tests/conftest.py's bus_keys
    env.update({"TRADING_PATHS__RUN_DIR": str(run_dir), "TRADING_PATHS__LOG_DIR": str(log_dir),
                "TRADING_PATHS__KEYS_DIR": str(keys_dir), "TRADING_BUS__HEARTBEAT_INTERVAL_S": "0.1"})
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    Curve(KeyStore(keys_dir), "sniffer").connect(sub, Endpoints(BusSettings(), run_dir).pub("supervisor"), "supervisor")
    proc = subprocess.Popen([sys.executable, "-m", "deploy.event_listener"], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        _read_token(proc.stdout, b"READY\n")
        # A heartbeat proves the subscription is up before the events are sent (slow joiner).
        assert sub.poll(10_000), "no heartbeat from the listener"
        yield proc, sub, log_dir
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close(linger=0)
        ctx.term()


def _send_events(proc: subprocess.Popen[bytes], events: list[tuple[str, str]]) -> None:
    """Each event as supervisord sends it; each must be acknowledged and the listener ready again."""
    assert proc.stdin is not None and proc.stdout is not None
    for serial, (name, payload) in enumerate(events, 1):
        proc.stdin.write(_event(name, payload, serial))
        proc.stdin.flush()
        assert _read_token(proc.stdout, b"RESULT 2\nOK").endswith(b"RESULT 2\nOK")
        _read_token(proc.stdout, b"READY\n")


def _alerts(sub: zmq.Socket, n: int) -> tuple[list[proto.ProcessAlert], list[proto.Heartbeat]]:
    """The first ``n`` alerts the listener publishes, and the heartbeats heard meanwhile."""
    alerts: list[proto.ProcessAlert] = []
    beats: list[proto.Heartbeat] = []
    deadline = time.monotonic() + 10
    while len(alerts) < n and time.monotonic() < deadline:
        if sub.poll(500):
            topic, data = sub.recv_multipart()
            env_ = proto.decode(data)
            if topic == proto.topics.PROCESS_ALERT.encode():
                alerts.append(env_.body)
            else:
                assert isinstance(env_.body, proto.Heartbeat) and env_.source == "supervisor"
                beats.append(env_.body)
    return alerts, beats


def test_listener_publishes_alerts_and_answers_every_event(tmp_path: Path) -> None:
    with _listener(tmp_path) as (proc, sub, log_dir):
        assert proc.stdin is not None and proc.stdout is not None
        _send_events(proc, [
            ("PROCESS_STATE_STARTING", "processname:engine groupname:trading from_state:EXITED tries:0"),
            ("PROCESS_STATE_EXITED", "processname:engine groupname:trading from_state:RUNNING expected:0 pid:77"),
            ("PROCESS_STATE_BACKOFF", "processname:engine groupname:trading from_state:STARTING"),
            ("PROCESS_STATE_FATAL", "processname:engine groupname:trading from_state:BACKOFF"),
            ("PROCESS_STATE_EXITED", "processname:safety groupname:trading from_state:RUNNING expected:1 pid:78"),
        ])
        alerts, _ = _alerts(sub, 3)
        assert [(a.program, a.event) for a in alerts] == [("engine", "exited"), ("engine", "backoff"),
                                                          ("engine", "fatal")]
        lines = (log_dir / "process_alerts.log").read_text().splitlines()
        assert [line.split()[2] for line in lines] == ["EXITED", "BACKOFF", "FATAL"]
        assert "supervisorctl start" in lines[-1]
        # A malformed event (non-numeric pid) is logged and still acknowledged.
        proc.stdin.write(_event("PROCESS_STATE_EXITED",
                                "processname:engine groupname:trading from_state:RUNNING expected:0 pid:x", 9))
        proc.stdin.flush()
        _read_token(proc.stdout, b"RESULT 2\nOK")
        # supervisord going away (stdin closed) ends the listener cleanly.
        proc.stdin.close()
        assert proc.wait(10) == 0


def test_an_alert_log_that_cannot_be_written_loses_no_alert(tmp_path: Path) -> None:
    """process_alerts.log refuses every write (a directory stands in its place: open() fails, as on
    a full disk): each alert still goes out on the bus, the failure is counted in the heartbeat,
    and the listener keeps answering supervisord."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "process_alerts.log").mkdir()
    with _listener(tmp_path) as (proc, sub, _log_dir):
        assert proc.stdin is not None
        _send_events(proc, [
            ("PROCESS_STATE_EXITED", "processname:engine groupname:trading from_state:RUNNING expected:0 pid:77"),
            ("PROCESS_STATE_FATAL", "processname:engine groupname:trading from_state:BACKOFF"),
        ])
        alerts, _ = _alerts(sub, 2)
        assert [(a.program, a.event) for a in alerts] == [("engine", "exited"), ("engine", "fatal")]
        beat = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (beat and beat.stats.alert_log_errors == 2):
            if sub.poll(500):
                topic, data = sub.recv_multipart()
                if topic == proto.topics.heartbeat("supervisor").encode():
                    beat = proto.decode(data).body
        assert beat is not None and beat.stats.alerts == 2 and beat.stats.alert_log_errors == 2, beat
        assert proc.poll() is None, "the listener died of its alert log"
        proc.stdin.close()
        assert proc.wait(10) == 0
