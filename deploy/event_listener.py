"""supervisord's event listener: a program that ends badly becomes an alert on the bus and a log line.

supervisord runs this as ``[eventlistener:event_listener]``, subscribed to ``PROCESS_STATE``, and
talks to it over stdin/stdout with the listener protocol (we write ``READY``, it sends a header
line and a payload, we answer ``RESULT``). Three events are alerts:

- ``PROCESS_STATE_EXITED`` with ``expected:0``: the program died (kill -9, a crash);
- ``PROCESS_STATE_BACKOFF``: it exited before ``startsecs``; supervisord will try again;
- ``PROCESS_STATE_FATAL``: supervisord gave up; the program stays down until an operator starts it.

Each is published as ``proto.ProcessAlert`` on ``alert.process`` from this program's own PUB
endpoint (source ``supervisor``) and appended to ``<log_dir>/process_alerts.log``. The orchestrator
subscribes: a FATAL trading service is missing for good and the session fails safe. Between events
the listener publishes heartbeats on ``hb.supervisor``, so ``tradectl bus gaps`` sees it alive.

stdout belongs to the protocol: anything else written there would corrupt it, so logs go to stderr.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import BinaryIO, TextIO

import zmq
from supervisor.childutils import get_headers

import proto
from bus import Endpoints, Heartbeater, Publisher, SubscriptionGuard, ensure_private_dir, make_socket
from bus.sockets import bind
from services.runtime import LOG_FORMAT, load_settings_or_exit

NAME = "supervisor"
ALERT_LOG = "process_alerts.log"
_ALERTS = {"PROCESS_STATE_EXITED": "exited", "PROCESS_STATE_BACKOFF": "backoff", "PROCESS_STATE_FATAL": "fatal"}

log = logging.getLogger("event_listener")


def parse_alert(headers: dict[str, str], payload: str) -> proto.ProcessAlert | None:
    """The alert one supervisord event means, or None for an event that is not one (a start, a
    stop asked for, an exit the program's ``exitcodes`` expect)."""
    event = _ALERTS.get(headers.get("eventname", ""))
    if event is None:
        return None
    fields = get_headers(payload.partition("\n")[0])
    expected = fields.get("expected") == "1"
    if event == "exited" and expected:
        return None
    return proto.ProcessAlert(program=fields.get("processname", "?"), group=fields.get("groupname", "?"),
                              event=event, from_state=fields.get("from_state", ""), expected=expected,
                              pid=int(fields.get("pid") or 0))


def describe(alert: proto.ProcessAlert) -> str:
    name = alert.program if alert.group == alert.program else f"{alert.group}:{alert.program}"
    what = {"exited": "exited unexpectedly", "backoff": "exited before it was up; supervisord retries",
            "fatal": "FATAL: supervisord gave up; start it again with `supervisorctl start`"}[alert.event]
    pid = f", pid {alert.pid}" if alert.pid else ""
    return f"{name} {what} (from {alert.from_state}{pid})"


class Listener:
    """The protocol loop: wait for an event (publishing heartbeats meanwhile), act, acknowledge."""

    def __init__(self, stdin: BinaryIO, stdout: TextIO, publisher: Publisher, interval_s: float,
                 alert_log: Path, on_beat: Callable[[], object] = lambda: None) -> None:
        """``on_beat`` runs at every heartbeat: reading the PUB's subscriptions (its guard)."""
        self._stdin = stdin
        self._on_beat = on_beat
        self._stdout = stdout
        self._publisher = publisher
        self._heartbeater = Heartbeater(publisher, NAME, interval_s, self.stats)
        self._interval_s = interval_s
        self._alert_log = alert_log
        self.alerts = 0
        self.events = 0

    def run(self) -> None:
        next_beat = 0.0
        self._send("READY\n")
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self._heartbeater.beat()
                self._on_beat()
                next_beat = now + self._interval_s
            # The header and payload of one event are all supervisord sends until we answer, so
            # nothing can sit unseen in the reader's buffer while select() waits on the descriptor.
            readable, _, _ = select.select([self._stdin], [], [], max(0.0, next_beat - now))
            if not readable:
                continue
            line = self._stdin.readline()
            if not line:  # supervisord is gone
                return
            headers = get_headers(line.decode(errors="replace").strip())
            payload = self._stdin.read(int(headers.get("len", 0))).decode(errors="replace")
            self.events += 1
            self.handle(headers, payload)
            self._send("RESULT 2\nOK")
            self._send("READY\n")

    def handle(self, headers: dict[str, str], payload: str) -> None:
        try:
            alert = parse_alert(headers, payload)
        except ValueError as exc:  # a malformed event must not stop the listener
            log.error("cannot read supervisord event %r %r: %s", headers, payload, exc)
            return
        if alert is None:
            return
        self.alerts += 1
        self._publisher.publish(proto.topics.PROCESS_ALERT, alert)
        line = describe(alert)
        log.log(logging.CRITICAL if alert.event == "fatal" else logging.WARNING, "%s", line)
        with self._alert_log.open("a") as out:
            out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {alert.event.upper()} {line}\n")

    def _send(self, text: str) -> None:
        self._stdout.write(text)
        self._stdout.flush()

    def stats(self) -> dict[str, int]:
        return {"events": self.events, "alerts": self.alerts}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    settings = load_settings_or_exit("event_listener")
    ctx = zmq.Context()
    endpoints = Endpoints(settings.bus, ensure_private_dir(settings.paths.run_dir))
    sock = make_socket(ctx, zmq.XPUB, settings.bus)
    # Its subscriptions policed as every PUB's (bus.subscription_guard), read at each heartbeat.
    guard = SubscriptionGuard(sock, None, settings.bus, name=NAME, known=proto.topics.known,
                              accepts=lambda prefix: proto.topics.subscribable(NAME, prefix))
    try:
        bind(sock, endpoints.pub(NAME))
    except Exception as exc:
        raise SystemExit(f"event_listener: cannot bind {endpoints.pub(NAME)}: {exc}") from None
    publisher = Publisher(sock, NAME, time.time_ns(), settings.bus.max_message_bytes,
                          declared=lambda topic: proto.topics.publishes(NAME, topic))
    settings.paths.log_dir.mkdir(parents=True, exist_ok=True)
    listener = Listener(sys.stdin.buffer, sys.stdout, publisher, settings.bus.heartbeat_interval_s,
                        settings.paths.log_dir / ALERT_LOG, on_beat=guard.drain)
    log.info("event listener started (pid %d), publishing on %s", os.getpid(), endpoints.pub(NAME))
    try:
        listener.run()
    finally:
        guard.close()
        sock.close(linger=0)
        ctx.term()


if __name__ == "__main__":
    main()
