"""The strategies' orders and positions, kept in step with the exchange manager's book of record.

A strategy follows its fills and order updates on the exchange manager's streams. That is enough
while nothing is missed; but an engine that (re)starts knows nothing (a strategy holding 0.4 would
believe itself flat and trade past its own limit), a restarted exchange manager or a gap loses
updates, and a FAILSAFE's flatten closes positions with orders no strategy placed. So, the Clone
pattern: subscribe first; then ask the exchange manager for ``strategy_book`` (each strategy's
positions and open orders, and the last sequence number of each stream at that moment), holding
back what the streams bring meanwhile; give every strategy its snapshot; then deliver what was held
back that is newer than the snapshot, and carry on live.

A snapshot is taken at start, whenever the exchange manager's epoch changes, whenever a gap shows
on its order or fill streams, and each time trading becomes allowed (so a session reopened after a
FAILSAFE starts from the flattened book). Until it has arrived the engine makes no decision.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import proto
from bus import CommandChannel, NotConnected
from services.backoff import Backoff
from services.engine.strategies.base import Strategy
from services.engine.instrument_guard import RETRY_S
from services.runtime import ServiceRuntime

log = logging.getLogger(__name__)

STREAMS = (proto.topics.ORDERS, proto.topics.FILLS)
MAX_HELD = 100_000  # messages held back while a snapshot is awaited; older ones are in it anyway

Deliver = Callable[[str, proto.Envelope], None]
Tell = Callable[..., None]  # Engine._tell(strategy, method, *args): a strategy's exception is isolated


class StrategySync:
    def __init__(self, runtime: ServiceRuntime, channel: CommandChannel, strategies: dict[str, Strategy],
                 deliver: Deliver, tell: Tell) -> None:
        self._runtime = runtime
        # The engine's own channel for orders: the exchange manager answers in order, so every
        # order sent before the question is in the answer (or refused, and that answer comes too).
        self._channel = channel
        self._strategies = strategies
        self._deliver = deliver
        self._tell = tell
        self._sub = runtime.subscribe(["exchange_manager"], list(STREAMS), self._on_stream)
        self._held: deque[tuple[str, proto.Envelope]] | None = deque(maxlen=MAX_HELD)  # None: live
        self._asking = False
        self._again = False  # asked to resync while a snapshot was on its way: take another after it
        self._epoch: int | None = None  # the exchange manager's, as last seen on its streams
        self._covered: tuple[int, dict[str, int]] | None = None  # the last snapshot's epoch and seqs
        self._lost_seen = 0
        self._retry = Backoff(*RETRY_S)
        self._openings = 0
        # Also refreshed at every resync (e.g. the instrument specifications, instrument_guard.py).
        self.on_resync: list[Callable[[], None]] = []
        self.snapshots = 0
        self.failed_asks = 0
        runtime.reactor.call_later(0.0, self.resync)
        runtime.reactor.call_every(0.25, self._watch_gaps)

    def ready(self, openings: int) -> bool:
        """Whether the strategies may decide now, given how many times trading has become allowed
        (``SessionFollower.openings``): each new opening starts a snapshot first."""
        if openings != self._openings:
            self._openings = openings
            self.resync()
        return self._held is None

    def resync(self) -> None:
        """Hold the streams back and ask for a snapshot (once at a time)."""
        if self._held is None:
            self._held = deque(maxlen=MAX_HELD)
        for hook in self.on_resync:
            hook()
        if self._asking:
            self._again = True
            return
        self._asking, self._again = True, False
        try:
            self._channel.send("strategy_book", {}, self._on_snapshot, self._on_no_answer)
        except NotConnected:
            self._on_no_answer("")

    def _on_no_answer(self, _command_id: str) -> None:
        self._asking = False
        self.failed_asks += 1
        self._runtime.reactor.call_later(self._retry.next(), self.resync)

    def _on_snapshot(self, reply: proto.Reply) -> None:
        self._asking = False
        if not reply.ok:
            log.warning("strategy_book refused: %s", reply.error)
            self._on_no_answer("")
            return
        try:
            views, covered = self._read(reply.result)
        except (proto.ProtocolError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("strategy_book answer not understood (%s); asking again", exc)
            self._on_no_answer("")
            return
        for name, (position, open_orders) in views.items():
            self._tell(self._strategies[name], "resync", position, open_orders)
        self._covered = covered
        self.snapshots += 1
        self._retry.reset()
        if self._again:  # something changed while this one was on its way: it may be out of date
            self.resync()
            return
        log.info("strategies resynced from the book of record: %s",
                 {n: s.position for n, s in self._strategies.items()})
        held, self._held = self._held or deque(), None
        for topic, env in held:
            self._apply(topic, env)

    def _read(self, book: dict[str, Any]) -> tuple[dict[str, tuple[float, list[proto.OrderUpdate]]],
                                                   tuple[int, dict[str, int]]]:
        """Each strategy's position and open orders, and what the answer covers; raises on a bad one."""
        views = {}
        for name, strategy in self._strategies.items():
            mine = book["strategies"].get(name, {})
            views[name] = (float(mine.get("positions", {}).get(strategy.symbol, 0.0)),
                           [proto.from_builtins(o, proto.OrderUpdate) for o in mine.get("open_orders", [])])
        return views, (int(book["epoch"]), {t: int(book["seqs"].get(t, 0)) for t in STREAMS})

    def _on_stream(self, topic: str, env: proto.Envelope) -> None:
        if self._epoch is not None and env.epoch != self._epoch:
            log.warning("exchange manager restarted (new epoch): resyncing the strategies")
            self.resync()
        self._epoch = env.epoch
        if self._held is not None:
            self._held.append((topic, env))
        else:
            self._apply(topic, env)

    def _apply(self, topic: str, env: proto.Envelope) -> None:
        if self._covered is not None:
            epoch, seqs = self._covered
            if env.epoch < epoch or (env.epoch == epoch and env.seq <= seqs.get(topic, 0)):
                return  # already in the snapshot (or from an exchange manager older than its)
        self._deliver(topic, env)

    def _watch_gaps(self) -> None:
        peer = self._sub.peers.get("exchange_manager")
        lost = sum(peer.lost_by_topic.get(t, 0) for t in STREAMS) if peer else 0
        if lost > self._lost_seen:
            log.warning("%d message(s) lost on the exchange manager's streams: resyncing the strategies",
                        lost - self._lost_seen)
            self._lost_seen = lost
            self.resync()

    def stats(self) -> dict[str, int | bool]:
        return {"snapshots": self.snapshots, "failed_asks": self.failed_asks, "synced": self._held is None}
