"""What every service process has: settings, logging, its two bound sockets, heartbeats, a loop.

A service builds a ``ServiceRuntime``, adds its command handlers, subscriptions and timers, and
calls ``run()``. The runtime takes the service's lock in the run directory (``run_lock``: one copy
per run directory), binds the PUB and command sockets, answers ``status``, publishes heartbeats and
shuts down cleanly on SIGTERM (sockets closed, context terminated). Under supervisord it watches
its parent (``parent_watch``): when supervisord is gone it logs one critical line (into its program
log directly, since supervisord no longer reads its output) and publishes an ``orphaned``
``ProcessAlert``. A loop that could not turn for as long as peers take to count this process missing
is logged (``Reactor.on_stall``).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import zmq

import proto
from bus import (
    CommandChannel,
    CommandClient,
    CommandServer,
    Endpoints,
    Heartbeater,
    MissingKey,
    Publisher,
    Reactor,
    Security,
    Subscriber,
    ensure_private_dir,
    make_socket,
    security,
)
from bus.command_server import Handler
from bus.sockets import EndpointInUse, bind
from bus.subscription_guard import SubscriptionGuard
from services import run_lock
from services.log_escape import EscapingFormatter
from services.log_storm import LogStormSettings, StormFilter, storm_filters
from services.parent_watch import ParentWatch
from services.settings import EXIT_BAD_SETTINGS, Settings, SettingsError, load_settings, writable_paths_problems

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def load_settings_or_exit(service: str) -> Settings:
    """Load settings; on a bad field or an unusable directory print which and why, and exit with
    ``EXIT_BAD_SETTINGS``."""
    try:
        settings = load_settings()
        problems = writable_paths_problems(settings)
    except SettingsError as exc:
        problems = str(exc).splitlines()
    if problems:
        exit_bad_settings(service, problems)
    return settings


def exit_bad_settings(service: str, problems: list[str]) -> NoReturn:
    """One line per problem on stderr, no traceback, and ``EXIT_BAD_SETTINGS``: supervisord marks
    the program FATAL instead of restarting it forever."""
    for line in problems:
        print(f"{service}: invalid settings: {line}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_BAD_SETTINGS) from None


def configure_logging(storm: LogStormSettings | None = None) -> None:
    """Each program writes to stderr; supervisord puts it in logs/<program>.log and rotates it.
    Every record is one escaped line (``services/log_escape.py``), warnings and uncaught exceptions
    included, so nothing a peer sends can forge a line of a program's log. A storm of one kind of
    record is aggregated (``services/log_storm.py``): a few lines in full, then one line per
    interval with the exact count; the last summary is written at exit."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    storm_filter = StormFilter(handler, storm)
    handler.addFilter(storm_filter)
    atexit.register(storm_filter.close)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)
    crash_log = logging.getLogger("uncaught")

    def log_uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        crash_log.critical("uncaught exception", exc_info=(kind, exc, tb))

    sys.excepthook = log_uncaught
    threading.excepthook = lambda args: crash_log.critical(
        "uncaught exception in thread %s", args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


class ServiceRuntime:
    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        stats: Callable[[], dict[str, Any]],
        state: Callable[[], proto.OrchestratorState | None] = lambda: None,
        trading_enabled: Callable[[], bool] = lambda: False,
        on_subscription: Callable[[str], None] | None = None,
    ) -> None:
        """``on_subscription(prefix)``, if given, is told of every subscription applied on this
        process's PUB socket: a publisher that must not start before anyone listens."""
        self.name = name
        self.settings = settings
        self.epoch = time.time_ns()
        self.started = time.monotonic()
        self.summary_errors = 0
        self.summary_error: str | None = None
        self.log = logging.getLogger(name)
        # What this process creates (ipc socket files, journals) is its user's alone, whoever started it.
        os.umask(0o077)
        self.ctx = zmq.Context()
        self.reactor = Reactor()
        self.endpoints = Endpoints(settings.bus, ensure_private_dir(settings.paths.run_dir))
        ensure_private_dir(settings.paths.state_dir)  # journals and keys: this user's alone
        self._lock = self._take_lock()
        self._unauthorised_listeners: list[Callable[[proto.GovernanceEvent], None]] = []
        self.security = self._security()
        self._sockets: list[zmq.Socket] = []
        self._clients: list[CommandClient] = []
        self._channels: list[CommandChannel] = []
        self._subscribers: list[tuple[str, Subscriber]] = []
        self._expiring = False
        self._before_close: list[Callable[[], None]] = []
        self._stats = stats

        self._on_subscription = on_subscription
        self._guard: SubscriptionGuard | None = None
        self._audit_topic = proto.topics.audit(name)
        self._pub_sock = self._bind_pub()
        self.publisher = Publisher(self._pub_sock, name, self.epoch, settings.bus.max_message_bytes,
                                   declared=lambda topic: proto.topics.publishes(name, topic))
        self._cmd_sock = cmd_sock = self._bind(zmq.ROUTER, self.endpoints.bind_cmd(name))
        self.commands = CommandServer(
            cmd_sock, name, self.epoch, {"status": lambda _args: self.process_status()},
            cache_size=settings.bus.command_cache_size, cache_bytes=settings.bus.command_cache_bytes,
            max_bytes=settings.bus.max_message_bytes,
            audit=self._publish_audit if settings.bus.command_audit else None,
            security=self.security, on_unauthorised=self._publish_unauthorised,
        )
        self.reactor.add_reader(cmd_sock, self.commands.drain)
        heartbeater = Heartbeater(self.publisher, name, settings.bus.heartbeat_interval_s,
                                  self.summary, state, trading_enabled)
        self.reactor.call_every(settings.bus.heartbeat_interval_s, heartbeater.beat)
        self.reactor.on_stall(settings.bus.heartbeat_interval_s * settings.bus.missed_heartbeats, self._log_stall)
        self.reactor.call_every(1.0, self._flush_log_storms)  # a storm's summary once it is over
        self.supervisor = ParentWatch(os.environ)
        if self.supervisor.enabled:
            self.supervisor.on_lost(self._on_orphaned)
            self.reactor.call_every(settings.bus.heartbeat_interval_s, self.supervisor.check)

    def _security(self) -> Security:
        """This process's CURVE key pair and ZAP handler; without its keys it cannot start (exit 78,
        one line: which key, where, and how to make it)."""
        try:
            sec = security(self.settings.bus, self.settings.paths.keys, self.name)
        except MissingKey as exc:
            self._lock.release()
            exit_bad_settings(self.name, [f"bus.curve: {exc}"])
        sec.start(self.ctx)
        return sec

    def _publish_unauthorised(self, event: proto.GovernanceEvent) -> None:
        self.publisher.publish(proto.topics.GOVERNANCE, event)
        for listener in self._unauthorised_listeners:
            listener(event)

    def on_unauthorised(self, listener: Callable[[proto.GovernanceEvent], None]) -> None:
        """Be told of each caller this process's command server refuses (besides the bus)."""
        self._unauthorised_listeners.append(listener)

    def _take_lock(self) -> run_lock.RunLock:
        try:
            return run_lock.acquire(self.settings.paths.run_dir, self.name)
        except run_lock.LockHeld as exc:
            # A second copy must not run (nor bind over the first): exit at once with one clear line.
            raise SystemExit(f"{self.name}: {exc}") from None

    @staticmethod
    def _flush_log_storms(final: bool = False) -> None:
        for storm_filter in storm_filters():
            storm_filter.storm.flush(final=final)

    def _log_stall(self, stalled_s: float) -> None:
        self.log.warning("loop stalled %.1fs (process stopped, starved or blocked; %d callback(s) in that turn): "
                         "peers counted it missing", stalled_s, self.reactor.turn_callbacks)

    def _on_orphaned(self, reason: str) -> None:
        """supervisord is gone: say so once, where it will be read, and on the bus."""
        self._write_output_to_own_log()
        self.log.critical("%s; stop it (kill -TERM %d) and start the daemon again", reason, os.getpid())
        self.publisher.publish(proto.topics.PROCESS_ALERT, proto.ProcessAlert(
            program=self.name, group=self.supervisor.group or self.name, event="orphaned", from_state="RUNNING",
            pid=os.getpid(), detail=reason))

    def _write_output_to_own_log(self) -> None:
        """supervisord read this process's stdout/stderr into ``<log_dir>/<program>.log``; with it
        gone they are broken pipes. Point both at that file directly (no rotation any more)."""
        path = self.settings.paths.log_dir / f"{self.supervisor.program or self.name}.log"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return  # nowhere to write: the alert on the bus still goes out
        for target in (1, 2):
            os.dup2(fd, target)
        os.close(fd)

    def _publish_audit(self, record: proto.CommandAudit) -> None:
        self.publisher.publish(self._audit_topic, record)

    def _bind(self, kind: int, endpoint: str,
              prepare: Callable[[zmq.Socket], None] | None = None) -> zmq.Socket:
        sock = make_socket(self.ctx, kind, self.settings.bus)
        self.security.serve(sock)
        if prepare is not None:
            prepare(sock)
        try:
            squatted = bind(sock, endpoint, take_over=True)  # we hold the lock: no other copy of us runs
        except (EndpointInUse, zmq.ZMQError) as exc:
            sock.close(linger=0)
            self._lock.release()
            # A process that cannot bind must not run: exit at once with one clear line.
            raise SystemExit(f"{self.name}: cannot bind {endpoint}: {exc}") from None
        if squatted:
            self.log.critical("%s was served by a process that is not this run directory's %s (this one holds its "
                              "lock): taken back; its peers pin our key, so it was never heard. Find it with "
                              "`ss -xlp | grep %s` and stop it", endpoint, self.name, endpoint.removeprefix("ipc://"))
        self._sockets.append(sock)
        return sock

    def drop_connections(self, duration_s: float) -> None:
        """Close this process's bound sockets, so every peer's connection drops, and bind them
        again after ``duration_s``. Used by the venue simulator to play a network outage."""
        self.reactor.remove_reader(self._cmd_sock)
        self._close_guard()
        for sock in (self._pub_sock, self._cmd_sock):
            self._sockets.remove(sock)
            sock.close(linger=0)
        self.publisher.attach(None)
        self.log.warning("connections dropped for %.1fs (fault injection)", duration_s)
        self.reactor.call_later(duration_s, self._rebind)

    def _bind_pub(self) -> zmq.Socket:
        """The PUB socket: an XPUB whose subscriptions a guard reads, polices and applies (only
        prefixes of topics this process publishes, capped per peer; ``bus.subscription_guard``),
        telling ``on_subscription`` of each one applied."""
        name = self.name

        def guard(sock: zmq.Socket) -> None:  # before bind, so it sees every connection
            self._guard = SubscriptionGuard(sock, self.reactor, self.settings.bus, name=name,
                                            accepts=lambda prefix: proto.topics.subscribable(name, prefix),
                                            known=proto.topics.known,
                                            on_subscribe=self._on_subscription)

        return self._bind(zmq.XPUB, self.endpoints.bind_pub(name), prepare=guard)

    def _close_guard(self) -> None:
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    def _rebind(self) -> None:
        self._pub_sock = self._bind_pub()
        self.publisher.attach(self._pub_sock)
        self._cmd_sock = self._bind(zmq.ROUTER, self.endpoints.bind_cmd(self.name))
        self.commands.attach(self._cmd_sock)
        self.reactor.add_reader(self._cmd_sock, self.commands.drain)
        self.log.warning("connections back")

    def before_close(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` when the loop has stopped, before the sockets close (e.g. to let a worker
        thread that uses some of them finish)."""
        self._before_close.append(hook)

    def add_handlers(self, handlers: Mapping[str, Handler]) -> None:
        """Serve these commands. A service with more to say in ``status`` than ``process_status()``
        serves its own ``status`` (and should include ``process_status()`` in it)."""
        self.commands.add_handlers(handlers, replace=frozenset({"status"}))

    def subscribe(
        self, services: list[str], prefixes: list[str], handler: Callable[[str, proto.Envelope], None], *,
        read_every_s: float | None = None, after_read: Callable[[], object] | None = None,
    ) -> Subscriber:
        """Connect a SUB socket to the given services' PUB endpoints; any order of start-up works,
        because ZeroMQ connects (and reconnects) in the background. Messages are handed to
        ``handler`` as they arrive, or with ``read_every_s`` in batches on a timer (and whenever
        the caller drains the subscriber itself): for data needed as of the service's next action,
        not at once, which then costs no wake-up per message. ``after_read`` is called once the
        messages waiting at a wake-up have all been handed over (a conflating reader acts then)."""
        sock = make_socket(self.ctx, zmq.SUB, self.settings.bus)
        self._sockets.append(sock)
        bus = self.settings.bus
        sub = Subscriber(sock, bus.max_message_bytes, max_streams=bus.subscriber_max_streams,
                         max_publishers=bus.subscriber_max_publishers,
                         max_subscription_bytes=bus.max_subscription_bytes)
        for prefix in prefixes:
            sub.subscribe(prefix)
        for service in services:
            sub.connect(self.endpoints.pub(service), service, self.security)
        def read() -> None:
            sub.drain(handler)
            if after_read is not None:
                after_read()

        if read_every_s is None:
            self.reactor.add_reader(sock, read)
        else:
            self.reactor.call_every(read_every_s, lambda: sock.closed or read())
        self._subscribers.append((f"{'+'.join(services)} [{' '.join(prefixes) or '*'}]", sub))
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Disconnect and close a subscription made with ``subscribe``."""
        self.reactor.remove_reader(sub.socket)
        self._subscribers = [(name, s) for name, s in self._subscribers if s is not sub]
        self._sockets.remove(sub.socket)
        sub.socket.close(linger=0)

    def channel(self, service: str, *, timeout_s: float) -> CommandChannel:
        """A pipelined command channel to ``service``, served by this loop; close with ``close_channel``."""
        channel = CommandChannel(self.ctx, self.endpoints.cmd(service), self.settings.bus, self.name,
                                 timeout_s=timeout_s, server=service, security=self.security)
        self.reactor.add_reader(channel.sock, channel.drain)
        if not self._expiring:  # one timer serves every channel, started with the first
            self._expiring = True
            self.reactor.call_every(0.25, self._expire_requests)  # on the heartbeats' grid
        self._channels.append(channel)
        return channel

    def close_channel(self, channel: CommandChannel) -> None:
        self.reactor.remove_reader(channel.sock)
        self._channels.remove(channel)
        channel.close()

    def client(self, service: str, *, timeout_s: float | None = None, retries: int | None = None) -> CommandClient:
        client = CommandClient(self.ctx, self.endpoints.cmd(service), self.settings.bus, self.name,
                               timeout_s=timeout_s, retries=retries, service=service, security=self.security)
        self._clients.append(client)
        return client

    def _expire_requests(self) -> None:
        for channel in list(self._channels):
            channel.expire()

    def summary(self) -> proto.summaries.Summary | None:
        """This process's typed summary (``proto/summaries.py``), as its heartbeat and ``status`` carry it;
        None when it would not decode (a field of the wrong type: this service's bug). Every peer
        would reject the whole heartbeat; without a summary it still says the process is alive, and
        the orchestrator, with nothing to go on, fails closed. Logged once per distinct reason."""
        summary = self._stats()
        summary.uptime_s = round(time.monotonic() - self.started, 3)
        summary.bus = self.bus_totals()
        try:
            return proto.summaries.checked(summary)
        except proto.ProtocolError as exc:
            self.summary_errors += 1
            if str(exc) != self.summary_error:
                self.summary_error = str(exc)
                self.log.error("heartbeat summary invalid, sent without it (peers fail closed): %s", exc)
            return None

    def bus_totals(self) -> proto.summaries.BusTotals:
        """This process's bus counters for its heartbeat (the metrics' source)."""
        subs = [sub for _, sub in self._subscribers]
        return proto.summaries.BusTotals(
            published=self.publisher.sent,
            received=sum(sub.received for sub in subs),
            rejected=(sum(sum(sub.rejected.values()) for sub in subs) + sum(self.commands.rejected.values())
                      + self._subscriptions_refused()),
            gaps=sum(p.gaps for sub in subs for p in sub.peers.values()),
            lost=sum(p.lost for sub in subs for p in sub.peers.values()),
            commands=self.commands.handled,
        )

    def process_status(self) -> dict[str, Any]:
        """``status``: this process's identity, liveness and counters (``ProcessStatus``)."""
        return {
            "service": self.name,
            "pid": os.getpid(),
            "epoch": self.epoch,
            "stats": self.summary(),
            "bus": {"publisher": {**self.publisher.stats(), "rejected": self._guard_stats().get("not_subscriptions", 0),
                                  "subscriptions": self._guard_stats()},
                    "commands": self.commands.stats(),
                    "subscriptions": {name: self._subscription_stats(sub) for name, sub in self._subscribers},
                    "curve": {"enabled": self.security.enabled,
                              "refused_handshakes": self.security.refused_handshakes},
                    "loop_errors": self.reactor.callback_errors,
                    "loop_longest_stall_s": round(self.reactor.longest_stall_s, 3)},
            "supervisor_lost": self.supervisor.lost,
            "summary_error": self.summary_error,
            "summary_errors": self.summary_errors,
        }

    def _guard_stats(self) -> dict[str, Any]:
        return {} if self._guard is None else self._guard.stats()

    def _subscriptions_refused(self) -> int:
        """What peers sent to the PUB socket that was not applied: garbage and refused prefixes."""
        guard = self._guard
        return 0 if guard is None else guard.not_subscriptions + sum(guard.refused.values())

    @staticmethod
    def _subscription_stats(sub: Subscriber) -> dict[str, Any]:
        peers = {source: {"received": p.received, "gaps": p.gaps, "lost": p.lost, "restarts": p.restarts,
                          "stale": p.stale} for source, p in sub.peers.items()}
        return {**sub.stats(), "peers": peers}

    def run(self) -> None:
        self.log.info("%s started (pid %d), serving %s", self.name, os.getpid(), self.endpoints.cmd(self.name))
        try:
            self.reactor.run()
        finally:
            for hook in self._before_close:
                hook()
            self.close()
            self._flush_log_storms(final=True)
            self.log.info("%s stopped", self.name)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for channel in list(self._channels):
            channel.close()
        self._close_guard()  # its monitor socket too, or the context would wait for it forever
        for sock in self._sockets:
            sock.close(linger=self.settings.bus.linger_ms)
        self.reactor.close()
        self.security.stop()
        self.ctx.term()
        self._lock.release()
