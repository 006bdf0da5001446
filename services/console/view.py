"""The session as the console shows it: one in-memory view, fed by the bus and by the snapshot polls,
read by the web server. Written by the bus and poll threads, read by the web loop: every method
takes the one lock, and everything kept is bounded (events, series, symbols, buckets).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import proto
from proto.session import OPEN_ORDER_STATUSES
from services.console.settings import ConsoleSettings

SEVERITIES = ("info", "warning", "critical")
MINUTES_KEPT = 24 * 60
TRANSITIONS_KEPT = 1_000


@dataclass
class PriceBucket:
    start: float
    last: float
    low: float
    high: float


@dataclass
class Activity:
    """Decisions, orders, fills and rejects in one minute."""

    start: float
    decisions: int = 0
    orders: int = 0
    fills: int = 0
    rejects: int = 0


@dataclass
class Polled:
    """What the last snapshot polls answered (None: not answered yet)."""

    status: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    positions: dict[str, dict[str, Any]] | None = None
    orders: list[dict[str, Any]] | None = None
    resources: dict[str, tuple[float, float]] = field(default_factory=dict)  # pid -> (cpu %, rss MB)
    error: str = ""  # why the last poll of the orchestrator failed ("" when it answered)
    at: float = 0.0


class SessionView:
    def __init__(self, settings: ConsoleSettings, notify: Callable[[str, dict[str, Any]], None]) -> None:
        """``notify(kind, data)`` is told of each state change and timeline event as it is heard
        (the web server pushes them to the open pages at once)."""
        self._settings = settings
        self._notify = notify
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.state: dict[str, Any] = {"state": None, "since": None, "session_id": "", "reason": "", "transition_no": 0}
        self.transitions: deque[dict[str, Any]] = deque(maxlen=TRANSITIONS_KEPT)
        self.events: deque[dict[str, Any]] = deque(maxlen=settings.max_events)
        self._prices: dict[str, deque[PriceBucket]] = {}
        self._price_points = max(1, int(settings.price_history_s / settings.price_bucket_s))
        self._minutes: deque[Activity] = deque(maxlen=MINUTES_KEPT)
        self._pnl: deque[tuple[float, float, float, float]] = deque(
            maxlen=max(10, int(24 * 3600 / settings.pnl_sample_s)))
        self._decisions_seen: int | None = None
        self.polled = Polled()
        self.bus_last_message = 0.0  # time.time() of the last message heard
        self.symbols_refused = 0
        self._state_disagreements = 0

    # --- from the bus ---------------------------------------------------------------------------

    def on_transition(self, body: proto.StateChanged, ts: float, *, replay: bool = False) -> None:
        """A transition heard on the bus, or read from the day's event log at start (``replay``:
        no page is open yet to tell)."""
        with self._lock:
            if body.transition_no and body.transition_no <= self.state["transition_no"] and \
                    body.session_id == self.state["session_id"]:
                return  # heard already (from the history read at start, or twice)
            self.state = {"state": body.new.value, "since": ts, "session_id": body.session_id,
                          "reason": body.reason, "transition_no": body.transition_no}
            row = {"ts": ts, "old": body.old.value, "new": body.new.value, "reason": body.reason,
                   "no": body.transition_no}
            self.transitions.append(row)
        if not replay:
            self._notify("state", {"state": body.new.value, "old": body.old.value, "since": ts,
                                   "reason": body.reason, "no": body.transition_no, "ts": ts})
        self.add_event(ts, "transition", "critical" if body.new.value == "failsafe" else
                       "warning" if body.new.value == "degraded" else "info",
                       "", "state", f"{body.old.value.upper()} → {body.new.value.upper()}: {body.reason}",
                       "orchestrator", push=not replay)

    def add_event(self, ts: float, kind: str, severity: str, symbol: str, type_: str, message: str,
                  source: str, *, push: bool = True) -> None:
        event = {"id": next(self._ids), "ts": ts, "kind": kind, "severity": severity if severity in SEVERITIES
                 else "info", "symbol": symbol, "type": type_, "message": message[:2_000], "source": source}
        with self._lock:
            self.events.append(event)
        if push:
            self._notify("event", event)

    def on_quote(self, symbol: str, mid: float, ts: float) -> None:
        bucket_s = self._settings.price_bucket_s
        start = ts - ts % bucket_s
        with self._lock:
            series = self._prices.get(symbol)
            if series is None:
                if len(self._prices) >= self._settings.max_symbols:
                    self.symbols_refused += 1
                    return
                series = self._prices[symbol] = deque(maxlen=self._price_points)
            last = series[-1] if series else None
            if last is not None and last.start == start:
                last.last = mid
                last.low = min(last.low, mid)
                last.high = max(last.high, mid)
            else:
                series.append(PriceBucket(start, mid, mid, mid))

    def count(self, ts: float, *, orders: int = 0, fills: int = 0, rejects: int = 0, decisions: int = 0) -> None:
        start = ts - ts % 60
        with self._lock:
            if not self._minutes or self._minutes[-1].start < start:
                self._minutes.append(Activity(start))
            minute = self._minutes[-1]
            minute.orders += orders
            minute.fills += fills
            minute.rejects += rejects
            minute.decisions += decisions

    # --- from the polls ----------------------------------------------------------------------------

    def on_poll(self, polled: Polled) -> None:
        now = time.time()
        engine = _stats_of(polled.status, "engine")
        decided = engine.get("decisions_made") if engine else None
        if isinstance(decided, int):
            # A restarted engine counts from 0 again: its new count is all new decisions.
            seen = self._decisions_seen
            new = decided - seen if seen is not None and decided >= seen else (decided if seen is not None else 0)
            self._decisions_seen = decided
            if new:
                self.count(now, decisions=new)
        exchange = _stats_of(polled.status, "exchange_manager")
        with self._lock:
            self.polled = polled
            self._follow_polled_state(polled.status or {})
            if exchange is not None:
                last = self._pnl[-1][0] if self._pnl else 0.0
                if now - last >= self._settings.pnl_sample_s:
                    self._pnl.append((now, float(exchange.get("realized_pnl", 0.0)),
                                      float(exchange.get("unrealized_pnl", 0.0)), _exposure(polled.positions)))

    def _follow_polled_state(self, status: Mapping[str, Any]) -> None:
        """The state as the orchestrator answers it, where the bus has not told it: at start with
        no history, or after a transition lost on the way (three polls in a row disagree: a poll
        answered just before a transition that the bus has already brought disagrees once)."""
        state = status.get("state")
        if not state or state == self.state["state"]:
            self._state_disagreements = 0
            return
        self._state_disagreements += 1
        if self.state["state"] is None or self._state_disagreements >= 3:
            since = next((t["ts"] for t in reversed(self.transitions) if t["new"] == state), None)
            self.state = {"state": state, "since": since, "session_id": status.get("session_id", ""),
                          "reason": "as the orchestrator's status says", "transition_no": self.state["transition_no"]}
            self._state_disagreements = 0

    # --- for the page ------------------------------------------------------------------------------

    def prices(self, symbol: str, start: float, end: float) -> dict[str, Any]:
        with self._lock:
            points = [b for b in self._prices.get(symbol, ()) if start <= b.start <= end]
        return {"symbol": symbol, "t": [b.start for b in points], "mid": [b.last for b in points],
                "low": [b.low for b in points], "high": [b.high for b in points]}

    def snapshot(self, max_events: int = 500) -> dict[str, Any]:
        with self._lock:
            polled = self.polled
            state = dict(self.state)
            transitions = list(self.transitions)
            events = list(itertools.islice(reversed(self.events), max_events))[::-1]
            minutes = list(self._minutes)[-180:]
            activity = {"t": [m.start for m in minutes], "decisions": [m.decisions for m in minutes],
                        "orders": [m.orders for m in minutes], "fills": [m.fills for m in minutes],
                        "rejects": [m.rejects for m in minutes]}
            pnl_series = list(self._pnl)
            symbols = sorted(self._prices)
            bus_age = time.time() - self.bus_last_message if self.bus_last_message else None
        exchange = _stats_of(polled.status, "exchange_manager") or {}
        processes = _processes(polled)
        connectors = [{"name": name, "connected": c.get("connected"), "latency_ms": c.get("latency_ms"),
                       "errors": c.get("error_count"), "reconnects": c.get("reconnects"),
                       "received": c.get("messages_received"), "dropped": c.get("messages_dropped")}
                      for name, c in sorted((exchange.get("connectors") or {}).items())]
        positions = [{"symbol": s, "qty": p.get("qty"), "avg_price": p.get("avg_price"), "mark": p.get("mark"),
                      "unrealized_pnl": p.get("unrealized_pnl"), "notional": _notional(p)}
                     for s, p in sorted((polled.positions or {}).items()) if p.get("qty")]
        orders = [{"id": o.get("client_order_id"), "symbol": o.get("symbol"), "side": o.get("side"),
                   "qty": o.get("qty"), "price": o.get("limit_price"), "status": o.get("status"),
                   "filled_qty": o.get("filled_qty"), "strategy": o.get("strategy")}
                  for o in (polled.orders or []) if o.get("status") in OPEN_ORDER_STATUSES]
        return {
            "now": time.time(),
            "session": state,
            "problems": _problems(state, polled, processes, connectors, bus_age),
            "bus": {"connected": bus_age is not None and bus_age < 5.0, "last_message_age_s": bus_age},
            "transitions": transitions,
            "processes": processes,
            "connectors": connectors,
            "positions": positions,
            "orders": orders,
            "pnl": {"realized": exchange.get("realized_pnl"), "unrealized": exchange.get("unrealized_pnl"),
                    "fees": exchange.get("fees"), "exposure": _exposure(polled.positions)},
            "pnl_series": {"t": [p[0] for p in pnl_series], "realized": [p[1] for p in pnl_series],
                           "unrealized": [p[2] for p in pnl_series], "exposure": [p[3] for p in pnl_series]},
            "activity": activity,
            "events": events,
            "symbols": symbols,
            "stats": polled.stats or {},
        }


def _stats_of(status: Mapping[str, Any] | None, service: str) -> dict[str, Any] | None:
    component = ((status or {}).get("components") or {}).get(service) or {}
    stats = component.get("stats")
    return stats if isinstance(stats, dict) else None


def _notional(position: Mapping[str, Any]) -> float | None:
    qty, mark = position.get("qty"), position.get("mark")
    return abs(qty * mark) if isinstance(qty, (int, float)) and isinstance(mark, (int, float)) else None


def _exposure(positions: Mapping[str, Mapping[str, Any]] | None) -> float:
    return sum(_notional(p) or 0.0 for p in (positions or {}).values())


def _processes(polled: Polled) -> list[dict[str, Any]]:
    out = []
    for name, comp in sorted(((polled.status or {}).get("components") or {}).items()):
        cpu, rss = polled.resources.get(comp.get("pid") or 0, (None, None))
        out.append({"name": name, "alive": comp.get("alive"), "pid": comp.get("pid"),
                    "heartbeat_age_s": comp.get("heartbeat_age_s"), "restarts": comp.get("restarts"),
                    "trading": comp.get("trading_enabled"), "fatal": comp.get("fatal"), "cpu_pct": cpu,
                    "rss_mb": rss})
    return out


def _problems(state: Mapping[str, Any], polled: Polled, processes: list[dict[str, Any]],
              connectors: list[dict[str, Any]], bus_age: float | None) -> list[str]:
    """What an operator must look at now, worst first; empty when all is well."""
    out = []
    if polled.error:
        out.append(f"orchestrator not answering: {polled.error}")
    if state.get("state") == "failsafe":
        out.append(f"FAILSAFE: {state.get('reason')}")
    elif state.get("state") == "degraded":
        out.append(f"DEGRADED: {state.get('reason')}")
    status = polled.status or {}
    if status.get("failsafe_pending"):
        out.append(f"failsafe sequence not finished: {status['failsafe_pending']}")
    for problem in status.get("disk") or []:
        out.append(f"disk: {problem}")
    journal = status.get("journal") or {}
    if journal and not journal.get("ok", True):
        out.append(f"orchestrator journal: {journal.get('error')}")
    out += [f"process {p['name']} is {'FATAL' if p.get('fatal') else 'down'}"
            for p in processes if p.get("alive") is False]
    out += [f"connector {c['name']} disconnected" for c in connectors if c.get("connected") is False]
    if bus_age is None or bus_age > 5.0:
        out.append("console hears nothing on the bus" + ("" if bus_age is None else f" for {bus_age:.0f} s"))
    return out
