"""Anomaly detectors. Each takes what it watches and returns the anomalies it sees, as
``SafetyEvent``s; the safety process de-duplicates them (one incident, one event) and publishes.

Detectors are plain objects with no I/O, so each can be tested with crafted input.
"""

from __future__ import annotations

import math
from collections import deque

import proto
from proto import SafetyEvent, SafetyEventType, Severity
from services.safety.settings import SafetySettings


def event(kind: SafetyEventType, severity: Severity, symbol: str, message: str, **evidence: float) -> SafetyEvent:
    return SafetyEvent(event_type=kind, severity=severity, symbol=symbol, message=message, evidence=evidence)


class PriceJump:
    """A mid that moved more than the symbol's threshold from the previous quote, or from the
    oldest quote still inside the rolling window (catches a move made in several small steps)."""

    name = "price_jump"

    def __init__(self, cfg: SafetySettings) -> None:
        self._cfg = cfg
        self._history: dict[str, deque[tuple[float, float]]] = {}

    def on_quote(self, quote: proto.Quote, now: float) -> list[SafetyEvent]:
        mid = (quote.bid + quote.ask) / 2
        history = self._history.setdefault(quote.symbol, deque())
        while history and now - history[0][0] > self._cfg.rolling_window_s:
            history.popleft()
        found: list[SafetyEvent] = []
        if history:
            last, oldest = history[-1][1], history[0][1]
            move_last, move_window = (mid / last - 1) * 100, (mid / oldest - 1) * 100
            move, ref = (move_last, last) if abs(move_last) >= abs(move_window) else (move_window, oldest)
            threshold = self._cfg.price_jump_pct_by_symbol.get(quote.symbol, self._cfg.price_jump_pct)
            if abs(move) >= threshold:
                critical = abs(move) >= max(threshold, self._cfg.price_jump_critical_pct)
                found.append(event(SafetyEventType.DATA_ANOMALY, Severity.CRITICAL if critical else Severity.WARNING,
                                   quote.symbol, f"Price jump {abs(move):.1f}% from {ref:.2f} to {mid:.2f}",
                                   move_pct=move, reference=ref, price=mid, threshold_pct=threshold))
                history.clear()  # the new level is the reference from now on
        history.append((now, mid))
        return found

    def reset(self) -> None:
        self._history.clear()


class StaleFeed:
    """A symbol with no update for ``stale_feed_s`` while the session is trading; and no market
    data at all for that long (a feed that was dead before this process first heard it)."""

    name = "stale_feed"

    def __init__(self, cfg: SafetySettings, now: float) -> None:
        self._cfg = cfg
        self.last_update: dict[str, float] = {}
        self._since = now  # start of the current watch (construction or reset)
        # When this process first saw the session trading: before the first quote ever arrives,
        # "no data at all" counts from there, not from start-up (a feed still being subscribed to
        # at the opening is not a dead one).
        self._trading_since: float | None = None

    def on_update(self, symbol: str, now: float) -> None:
        self.last_update[symbol] = now

    def check(self, now: float, trading: bool) -> list[SafetyEvent]:
        if not trading:
            self._trading_since = None
            return []
        if self._trading_since is None:
            self._trading_since = now
        limit = self._cfg.stale_feed_s
        found = []
        for symbol, seen in self.last_update.items():
            age = now - seen
            if age >= limit:
                found.append(event(SafetyEventType.STALE_FEED, Severity.WARNING, symbol,
                                   f"Stale feed: no update for {symbol} for {age:.1f}s", age_s=age, threshold_s=limit))
        silent = now - max(self._since, self._trading_since)
        if not self.last_update and silent >= limit:
            found.append(event(SafetyEventType.STALE_FEED, Severity.WARNING, "*",
                               f"Stale feed: no market data at all for {silent:.1f}s",
                               age_s=silent, threshold_s=limit))
        return found

    def reset(self, now: float) -> None:
        """Start every clock again (symbols are kept: a feed still silent is reported again)."""
        self._since = now
        self.last_update = dict.fromkeys(self.last_update, now)


class CrossedBook:
    """A locked quote (bid equal to ask), or a crossed one the data router refused."""

    name = "crossed_book"

    def on_quote(self, quote: proto.Quote) -> list[SafetyEvent]:
        if quote.bid == quote.ask:
            return [event(SafetyEventType.CROSSED_BOOK, Severity.WARNING, quote.symbol,
                          f"Locked book: bid {quote.bid:.2f} = ask {quote.ask:.2f}", bid=quote.bid, ask=quote.ask)]
        return []

    def on_bad_data(self, bad: proto.BadMarketData) -> list[SafetyEvent]:
        if bad.reason == "crossed":
            return [event(SafetyEventType.CROSSED_BOOK, Severity.WARNING, bad.symbol,
                          f"Crossed book refused by the data router: {bad.detail[:120]}")]
        return [event(SafetyEventType.DATA_ANOMALY, Severity.WARNING, bad.symbol,
                      f"Bad market data refused by the data router ({bad.reason})")]

    def reset(self) -> None:
        pass


class ExecutionAnomalies:
    """Reject ratio over a window, fills far from the touch, order-rate spikes, and a position at
    the exchange manager that disagrees with the sum of the fills it published."""

    name = "execution"

    def __init__(self, cfg: SafetySettings) -> None:
        self._cfg = cfg
        self._outcomes: deque[tuple[float, bool]] = deque()  # (time, rejected) of finished orders
        self._new_orders: deque[float] = deque()
        self._seen_new: set[str] = set()
        self.touch: dict[str, tuple[float, float]] = {}
        self.fill_position: dict[str, float] = {}
        self._suspect: dict[str, int] = {}

    def on_quote(self, quote: proto.Quote) -> None:
        self.touch[quote.symbol] = (quote.bid, quote.ask)

    def on_order(self, update: proto.OrderUpdate, now: float) -> list[SafetyEvent]:
        found = []
        if update.status == proto.OrderStatus.NEW and update.client_order_id not in self._seen_new:
            self._seen_new.add(update.client_order_id)
            self._new_orders.append(now)
            while self._new_orders and now - self._new_orders[0] > 1.0:
                self._new_orders.popleft()
            if len(self._new_orders) > self._cfg.order_rate_per_s:
                found.append(event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, update.symbol,
                                   f"Order rate spike: {len(self._new_orders)} orders in the last second",
                                   orders_per_s=len(self._new_orders), threshold=self._cfg.order_rate_per_s))
        if update.status in (proto.OrderStatus.REJECTED, proto.OrderStatus.FILLED, proto.OrderStatus.CANCELLED):
            self._seen_new.discard(update.client_order_id)
            self._outcomes.append((now, update.status == proto.OrderStatus.REJECTED))
            while self._outcomes and now - self._outcomes[0][0] > self._cfg.reject_window_s:
                self._outcomes.popleft()
            total = len(self._outcomes)
            rejected = sum(1 for _, r in self._outcomes if r)
            if total >= self._cfg.reject_min_orders and rejected / total >= self._cfg.reject_ratio:
                found.append(event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, update.symbol,
                                   f"Reject ratio {rejected}/{total} over {self._cfg.reject_window_s:g}s",
                                   rejected=rejected, orders=total, ratio=rejected / total))
        return found

    def on_fill(self, fill: proto.Fill) -> list[SafetyEvent]:
        self.fill_position[fill.symbol] = self.fill_position.get(fill.symbol, 0.0) + fill.side.sign * fill.qty
        touch = self.touch.get(fill.symbol)
        if touch is None:
            return []
        ref = touch[1] if fill.side is proto.Side.BUY else touch[0]
        off_bps = (fill.price / ref - 1) * 1e4 * fill.side.sign  # > 0: worse than the touch
        if off_bps > self._cfg.fill_far_bps:
            return [event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, fill.symbol,
                          f"Fill {fill.side.value} {fill.qty:g} at {fill.price:.2f} is {off_bps:.0f} bps "
                          f"from the touch {ref:.2f}", bps=off_bps, price=fill.price, touch=ref)]
        return []

    def check_positions(self, positions: dict[str, float], fills_quiet: bool) -> list[SafetyEvent]:
        """Compare the exchange manager's positions with the sum of fills; a difference seen on two
        checks in a row, with no fill in between, is an anomaly (one check could be mid-update)."""
        if not fills_quiet:
            self._suspect.clear()
            return []
        found = []
        for symbol in set(positions) | set(self.fill_position):
            ours, theirs = self.fill_position.get(symbol, 0.0), positions.get(symbol, 0.0)
            if math.isclose(ours, theirs, abs_tol=self._cfg.position_tolerance):
                self._suspect.pop(symbol, None)
                continue
            self._suspect[symbol] = self._suspect.get(symbol, 0) + 1
            if self._suspect[symbol] == 2:
                found.append(event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, symbol,
                                   f"Position mismatch: exchange manager holds {theirs:g}, fills sum to {ours:g}",
                                   exchange_manager=theirs, sum_of_fills=ours))
        return found

    def adopt_positions(self, positions: dict[str, float]) -> None:
        """Start the fill sum from the exchange manager's positions (at start or after a reset)."""
        self.fill_position = dict(positions)
        self._suspect.clear()

    def reset(self) -> None:
        self._outcomes.clear()
        self._new_orders.clear()
        self._suspect.clear()


class Dedup:
    """One incident, one event: per (detector, event type, symbol), quiet for ``cooldown_s`` after
    a warning and ``critical_cooldown_s`` after a critical event; a critical event is never held
    back by an earlier warning."""

    def __init__(self, cooldown_s: float, critical_cooldown_s: float) -> None:
        self._cooldown_s = cooldown_s
        self._critical_cooldown_s = critical_cooldown_s
        self._last: dict[tuple[str, str, str], tuple[float, Severity]] = {}
        self.suppressed = 0

    def admit(self, detector: str, ev: SafetyEvent, now: float) -> bool:
        key = (detector, ev.event_type.value, ev.symbol)
        last = self._last.get(key)
        quiet = self._critical_cooldown_s if ev.severity is Severity.CRITICAL else self._cooldown_s
        if last is not None and now - last[0] < quiet and not (
                ev.severity is Severity.CRITICAL and last[1] is Severity.WARNING):
            self.suppressed += 1
            return False
        self._last[key] = (now, ev.severity)
        return True

    def reset(self) -> None:
        self._last.clear()
