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

It also restarts **hung** programs (``deploy/hung_watch.py``): it follows every program's heartbeat on
the bus (a SUB socket polled together with stdin) and, when a program's pid lives but its heartbeat
has been silent for ``supervision.hung_restart_after_s``, kills it through supervisord's XML-RPC
(``signalProcess(name, 'KILL')``) so that autorestart brings it back, and reports ``hung`` the same
way as the alerts above. Without supervisord's XML-RPC in its environment (``SUPERVISOR_SERVER_URL``:
a test that plays supervisord) it only reports. When supervisord dies its stdin closes and the
listener exits, so ``hb.supervisor`` stops: the orchestrator counts the supervisor missing.

stdout belongs to the protocol: anything else written there would corrupt it, so logs go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import zmq
from supervisor import childutils

import proto
from proto.summaries import HungOrchestrator, SupervisorSummary
from bus import (Endpoints, Heartbeater, MissingKey, Publisher, Subscriber, SubscriptionGuard, ensure_private_dir,
                 make_socket, security)
from bus.endpoints import SERVICE_NAMES, VENUE_NAMES
from bus.sockets import bind
from deploy.hung_watch import HungWatch
from services import run_lock
from services.log_escape import escape
from services.runtime import configure_logging, exit_bad_settings, load_settings_or_exit

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
    fields = childutils.get_headers(payload.partition("\n")[0])
    expected = fields.get("expected") == "1"
    if event == "exited" and expected:
        return None
    return proto.ProcessAlert(program=fields.get("processname", "?"), group=fields.get("groupname", "?"),
                              event=event, from_state=fields.get("from_state", ""), expected=expected,
                              pid=int(fields.get("pid") or 0))


def describe(alert: proto.ProcessAlert) -> str:
    if alert.detail:
        return alert.detail
    name = alert.program if alert.group == alert.program else f"{alert.group}:{alert.program}"
    what = {"exited": "exited unexpectedly", "backoff": "exited before it was up; supervisord retries",
            "fatal": "FATAL: supervisord gave up; start it again with `supervisorctl start`",
            "hung": "hung: killed for supervisord to restart it",
            "orphaned": "orphaned: supervisord is gone"}[alert.event]
    pid = f", pid {alert.pid}" if alert.pid else ""
    return f"{name} {what} (from {alert.from_state}{pid})"


ORCHESTRATOR = "orchestrator"
HUNG_ORCHESTRATOR_TOLD_S = 60.0  # how long the heartbeat carries "the orchestrator was killed as hung"

# What the listener needs of supervisord's XML-RPC: a fresh ``supervisor`` namespace per use.
RpcFactory = Callable[[], Any]
RPC_ERRORS = (OSError, xmlrpc.client.Error, ValueError)


class HungRestarter:
    """Feeds ``HungWatch`` (heartbeats from the SUB socket, supervisord's process list) and kills
    what it finds hung, reporting each through ``report``."""

    def __init__(self, watch: HungWatch, sub: Subscriber, rpc: RpcFactory,
                 report: Callable[[proto.ProcessAlert], None]) -> None:
        self.watch = watch
        self.sub = sub
        self._rpc = rpc
        self._report = report
        self.check_interval_s = min(1.0, watch.after_s / 4)
        self.killed = 0
        self.rpc_errors = 0
        # The orchestrator cannot hear that it was killed as hung: its successor learns it from this,
        # carried in the listener's heartbeat for a while (supervision.py, orchestrator side).
        self.hung_orchestrator: dict[str, Any] | None = None

    def drain(self) -> None:
        self.sub.drain(self._on_message)

    def _on_message(self, _topic: str, env: proto.Envelope) -> None:
        if isinstance(env.body, proto.Heartbeat):
            self.watch.heard(env.source, env.body.pid)
            hung = self.hung_orchestrator
            if (env.source == ORCHESTRATOR and hung is not None and "successor_pid" not in hung
                    and env.body.pid != hung["pid"]):
                hung["successor_pid"] = env.body.pid  # the one to tell: no later orchestrator

    def check(self) -> None:
        try:
            supervisor = self._rpc()
            infos = supervisor.getAllProcessInfo()
        except RPC_ERRORS as exc:  # supervisord busy or going away: try again at the next check
            self.rpc_errors += 1
            log.warning("cannot ask supervisord for its processes: %s", exc)
            return
        for hung in self.watch.judge(infos):
            detail = hung.describe(self.watch.after_s, self.watch.start_grace_s)
            try:
                supervisor.signalProcess(hung.namespec, "KILL")
            except RPC_ERRORS as exc:  # it ended meanwhile (a Fault says so), or supervisord is going
                log.warning("could not kill hung %s (pid %d): %s", hung.namespec, hung.pid, exc)
                self.watch.kill_failed(hung.pid)
                continue
            self.killed += 1
            if hung.program == ORCHESTRATOR:
                self.hung_orchestrator = {"pid": hung.pid, "at": time.time(), "silent_s": round(hung.silent_s, 3),
                                          "detail": detail}
            self._report(proto.ProcessAlert(program=hung.program, group=hung.group, event="hung",
                                            from_state=hung.statename, pid=hung.pid, detail=detail))

    def stats(self) -> dict[str, Any]:
        """``SupervisorSummary``'s fields of the hung watch."""
        out: dict[str, Any] = {"hung_killed": self.killed, "rpc_errors": self.rpc_errors}
        hung = self.hung_orchestrator
        if hung is not None and time.time() - hung["at"] > HUNG_ORCHESTRATOR_TOLD_S:
            self.hung_orchestrator = hung = None
        if hung is not None:
            out["hung_orchestrator"] = HungOrchestrator(**hung)
        return out


class Listener:
    """The protocol loop: wait for an event (publishing heartbeats meanwhile), act, acknowledge."""

    def __init__(self, stdin: BinaryIO, stdout: TextIO, publisher: Publisher, interval_s: float,
                 alert_log: Path, hung: HungRestarter | None = None,
                 on_beat: Callable[[], object] = lambda: None) -> None:
        """``on_beat`` runs at every heartbeat: reading the PUB's subscriptions (its guard)."""
        self._stdin = stdin
        self._on_beat = on_beat
        self._stdout = stdout
        self._publisher = publisher
        self._heartbeater = Heartbeater(publisher, NAME, interval_s, self.stats)
        self._interval_s = interval_s
        self._alert_log = alert_log
        self._hung = hung
        self.alerts = 0
        self.events = 0
        self.alert_log_errors = 0  # lines process_alerts.log refused (a full disk): the alert still went out

    def run(self) -> None:
        poller = zmq.Poller()
        stdin_fd = self._stdin.fileno()
        poller.register(stdin_fd, zmq.POLLIN)
        if self._hung is not None:
            poller.register(self._hung.sub.socket, zmq.POLLIN)
        next_beat = next_check = 0.0
        self._send("READY\n")
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self._heartbeater.beat()
                self._on_beat()
                next_beat = now + self._interval_s
            due = next_beat
            if self._hung is not None:
                if now >= next_check:
                    self._hung.check()
                    next_check = time.monotonic() + self._hung.check_interval_s
                due = min(due, next_check)
            # The header and payload of one event are all supervisord sends until we answer, so
            # nothing can sit unseen in the reader's buffer while the poller waits on the descriptor.
            ready = dict(poller.poll(max(0, int((due - time.monotonic()) * 1000) + 1)))
            if self._hung is not None and self._hung.sub.socket in ready:
                self._hung.drain()
            if stdin_fd not in ready:
                continue
            line = self._stdin.readline()
            if not line:  # supervisord is gone
                return
            headers = childutils.get_headers(line.decode(errors="replace").strip())
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
        if alert is not None:
            self.report(alert)

    def report(self, alert: proto.ProcessAlert) -> None:
        """Publish the alert, log it, and append it to the alert log. The bus comes first and a
        file that cannot be written (a full disk) is counted, never fatal: a listener that died of
        it would forward no later alert and restart no hung program."""
        self.alerts += 1
        self._publisher.publish(proto.topics.PROCESS_ALERT, alert)
        line = describe(alert)
        log.log(logging.CRITICAL if alert.event in ("fatal", "hung") else logging.WARNING, "%s", line)
        try:
            with self._alert_log.open("a") as out:
                out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {alert.event.upper()} {escape(line)}\n")
        except OSError as exc:
            self.alert_log_errors += 1
            log.error("cannot write %s (%d line(s) lost so far): %s", self._alert_log, self.alert_log_errors, exc)

    def _send(self, text: str) -> None:
        self._stdout.write(text)
        self._stdout.flush()

    def stats(self) -> SupervisorSummary:
        return SupervisorSummary(events=self.events, alerts=self.alerts, alert_log_errors=self.alert_log_errors,
                                 **({} if self._hung is None else self._hung.stats()))


def _rpc_factory() -> RpcFactory | None:
    """supervisord's XML-RPC, when supervisord started us (it puts its URL in our environment)."""
    if "SUPERVISOR_SERVER_URL" not in os.environ:
        return None
    return lambda: childutils.getRPCInterface(os.environ).supervisor


def _local_programs(rpc: Callable[[], Any]) -> set[str] | None:
    """The names of the programs this supervisord runs; None if it cannot say (then: every one)."""
    try:
        return {info["name"] for info in rpc().getAllProcessInfo()}
    except (OSError, xmlrpc.client.Error) as exc:
        log.warning("cannot list supervisord's programs (%s): watching every service for hangs", exc)
        return None


def main() -> None:
    settings = load_settings_or_exit("event_listener")
    configure_logging(settings.logs)  # stderr, one escaped line per record (stdout is supervisord's protocol)
    ctx = zmq.Context()
    endpoints = Endpoints(settings.bus, ensure_private_dir(settings.paths.run_dir))
    try:
        lock = run_lock.acquire(settings.paths.run_dir, NAME)
    except run_lock.LockHeld as exc:
        raise SystemExit(f"event_listener: {exc}") from None
    try:
        sec = security(settings.bus, settings.paths.keys, NAME)
    except MissingKey as exc:
        lock.release()
        exit_bad_settings("event_listener", [f"bus.curve: {exc}"])
    sec.start(ctx)
    sock = make_socket(ctx, zmq.XPUB, settings.bus)
    sec.serve(sock)
    sockets = [sock]
    # Its subscriptions policed as every PUB's (bus.subscription_guard), read at each heartbeat.
    guard = SubscriptionGuard(sock, None, settings.bus, name=NAME, known=proto.topics.known,
                              accepts=lambda prefix: proto.topics.subscribable(NAME, prefix))
    try:
        bind(sock, endpoints.bind_pub(NAME))
    except Exception as exc:
        raise SystemExit(f"event_listener: cannot bind {endpoints.bind_pub(NAME)}: {exc}") from None
    publisher = Publisher(sock, NAME, time.time_ns(), settings.bus.max_message_bytes,
                          declared=lambda topic: proto.topics.publishes(NAME, topic))
    settings.paths.log_dir.mkdir(parents=True, exist_ok=True)
    hung = None
    rpc = _rpc_factory()
    after_s = settings.supervision.hung_restart_after_s
    if rpc is not None and after_s is not None:
        # this supervisord's own programs (across hosts, each host's listener watches its own)
        local = _local_programs(rpc)
        programs = tuple(p for p in SERVICE_NAMES + VENUE_NAMES if local is None or p in local)
        sub_sock = make_socket(ctx, zmq.SUB, settings.bus)
        sockets.append(sub_sock)
        sub = Subscriber(sub_sock, settings.bus.max_message_bytes)
        for program in programs:
            sub.subscribe(proto.topics.heartbeat(program))
            sub.connect(endpoints.pub(program), program, sec)
        hung = HungRestarter(HungWatch(programs, after_s, settings.supervision.hung_start_grace_s), sub, rpc,
                             lambda alert: listener.report(alert))
    listener = Listener(sys.stdin.buffer, sys.stdout, publisher, settings.bus.heartbeat_interval_s,
                        settings.paths.log_dir / ALERT_LOG, hung, on_beat=guard.drain)
    log.info("event listener started (pid %d), publishing on %s; hung programs %s", os.getpid(), endpoints.pub(NAME),
             f"restarted after {after_s:g}s of silence" if hung else "not watched")
    try:
        listener.run()
    finally:
        guard.close()
        for s in sockets:
            s.close(linger=0)
        sec.stop()
        ctx.term()
        lock.release()


if __name__ == "__main__":
    main()
