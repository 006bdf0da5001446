"""Execution anomalies, each judged against the order it belongs to, as the exchange manager's book
of record publishes it (``orders``, ``fills``):

* a **limit** order's fill at or better than its limit is never an anomaly, however far the touch
  (a resting order filled at its own price when the market gapped through it); a fill worse than
  its limit is one;
* a **market** order's fill more than ``fill_far_bps`` worse than the touch when it was sent (the
  touch when this process saw the order NEW);
* a fill of an order the book of record did not send (``strategy == "foreign"``: the exchange
  manager adopted it), holding while the exchange manager says the venue holds anything this
  system did not send (``venue_unknown`` in its heartbeat); a fill that takes an order past its
  quantity (an overfill);
* a reject ratio over ``reject_window_s`` (once ``reject_min_orders`` orders ended), and an
  order-rate spike (more than ``order_rate_per_s`` new orders within one second);
* a position at the exchange manager that differs from the sum of the fills it published.

Only orders this process has seen an update of are judged (it learns an order's type, limit and
quantity from any update, the touch at sending only from its NEW): orders sent before it started are
not "unknown orders". Times are session time.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

import proto
from proto import SafetyEvent, SafetyEventType, Severity
from proto.summaries import VenueUnknown
from services.exchange_manager.order_book import FOREIGN
from services.safety.conditions import Condition
from services.safety.detectors import event, price_text
from services.safety.settings import SafetySettings

# Orders remembered, newest kept: a fill can arrive after its order's final report (reports and
# fills travel apart), so an order is not forgotten when it ends.
MAX_ORDERS = 10_000
PRICE_EPSILON = 1e-9  # relative: a fill "worse than its limit" by less than this is the same price
QTY_EPSILON = 1e-9


@dataclass
class _Order:
    symbol: str
    side: proto.Side
    qty: float
    order_type: str
    limit_price: float | None
    filled: float
    touch: float | None = None  # the touch on the order's side when it was seen NEW
    ended: bool = False  # its end is counted in the reject ratio (once: a filled order is reported
    # again when its fills arrive)


class ExecutionAnomalies:
    name = "execution"

    def __init__(self, cfg: SafetySettings) -> None:
        self._cfg = cfg
        self._outcomes: deque[tuple[float, bool]] = deque()  # (session time, rejected) of ended orders
        self._reject_since: float | None = None
        self._new_orders: deque[float] = deque()
        self._orders: OrderedDict[str, _Order] = OrderedDict()
        self.touch: dict[str, tuple[float, float]] = {}
        self.fill_position: dict[str, float] = {}
        self._suspect: dict[str, int] = {}
        self._mismatch: dict[str, Condition] = {}
        self._foreign: dict[str, Condition] = {}  # symbol -> the first fill not sent by this system

    def on_quote(self, quote: proto.Quote) -> None:
        self.touch[quote.symbol] = (quote.bid, quote.ask)

    # -- orders ------------------------------------------------------------------------------------

    def on_order(self, update: proto.OrderUpdate, now: float) -> tuple[list[SafetyEvent], list[SafetyEvent]]:
        """(one-shot anomalies: an order-rate spike; lasting ones: the reject ratio)."""
        spike, ratio = [], []
        order = self._orders.get(update.client_order_id)
        if order is None:
            order = self._remember(update)
            if update.status is proto.OrderStatus.NEW:
                touch = self.touch.get(update.symbol)
                if touch is not None:
                    order.touch = touch[1] if update.side is proto.Side.BUY else touch[0]
                spike = self._order_rate(update, now)
        else:
            order.filled = max(order.filled, update.filled_qty)
        if not update.status.is_open and not order.ended:
            order.ended = True
            self._outcomes.append((now, update.status is proto.OrderStatus.REJECTED))
            ratio = self._reject_ratio(update.symbol, now)
        return spike, ratio

    def _remember(self, update: proto.OrderUpdate) -> _Order:
        order = _Order(update.symbol, update.side, update.qty, update.order_type, update.limit_price, update.filled_qty)
        self._orders[update.client_order_id] = order
        if len(self._orders) > MAX_ORDERS:
            self._orders.popitem(last=False)
        return order

    def _order_rate(self, update: proto.OrderUpdate, now: float) -> list[SafetyEvent]:
        self._new_orders.append(now)
        while self._new_orders and now - self._new_orders[0] > 1.0:
            self._new_orders.popleft()
        if len(self._new_orders) <= self._cfg.order_rate_per_s:
            return []
        return [event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, update.symbol,
                      f"Order rate spike: {len(self._new_orders)} orders in the last second",
                      orders_per_s=len(self._new_orders), threshold=self._cfg.order_rate_per_s)]

    def _reject_ratio(self, symbol: str, now: float) -> list[SafetyEvent]:
        over = self._reject_over(now)
        if over is None:
            return []
        rejected, total = over
        return [event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, symbol,
                      f"Reject ratio {rejected}/{total} over {self._cfg.reject_window_s:g}s",
                      rejected=rejected, orders=total, ratio=rejected / total)]

    def _reject_over(self, now: float) -> tuple[int, int] | None:
        """(rejected, ended) in the window ending at ``now`` when the ratio is at or over the threshold."""
        while self._outcomes and now - self._outcomes[0][0] > self._cfg.reject_window_s:
            self._outcomes.popleft()
        total = len(self._outcomes)
        rejected = sum(1 for _, r in self._outcomes if r)
        if total >= self._cfg.reject_min_orders and rejected / total >= self._cfg.reject_ratio:
            if self._reject_since is None:
                self._reject_since = now
            return rejected, total
        self._reject_since = None
        return None

    # -- fills -------------------------------------------------------------------------------------

    def on_fill(self, fill: proto.Fill, now: float) -> tuple[list[SafetyEvent], list[SafetyEvent]]:
        """(one-shot anomalies: this fill against its order; lasting ones: a fill not sent by this system)."""
        self.fill_position[fill.symbol] = self.fill_position.get(fill.symbol, 0.0) + fill.side.sign * fill.qty
        what = f"Fill {fill.side.value} {fill.qty:g} {fill.symbol} at {price_text(fill.price)}"
        if fill.strategy == FOREIGN:
            message = f"{what}: an order the book of record did not send ({fill.client_order_id})"
            self._foreign.setdefault(fill.symbol, Condition(self.name, SafetyEventType.EXECUTION_ANOMALY, fill.symbol,
                                                            message, now))
            return [], [event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, fill.symbol, message,
                              price=fill.price, qty=fill.qty)]
        return self._judge(fill, what), []

    def _judge(self, fill: proto.Fill, what: str) -> list[SafetyEvent]:
        order = self._orders.get(fill.client_order_id)
        if order is None:
            return []  # sent before this process started and not reported since: nothing to judge by
        found = []
        order.filled += fill.qty
        if order.filled > order.qty * (1 + QTY_EPSILON):
            found.append(event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, fill.symbol,
                               f"{what}: overfill, {order.filled:g} filled of {order.qty:g} ordered",
                               filled=order.filled, qty=order.qty))
        sign = fill.side.sign  # > 0 below: worse for the order
        if order.order_type == "limit" and order.limit_price is not None:
            worse_bps = (fill.price / order.limit_price - 1) * 1e4 * sign
            if worse_bps > PRICE_EPSILON * 1e4:
                found.append(event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, fill.symbol,
                                   f"{what} is {worse_bps:.1f} bps worse than its limit {price_text(order.limit_price)}",
                                   bps=worse_bps, price=fill.price, limit=order.limit_price))
        elif order.order_type == "market" and order.touch is not None:
            off_bps = (fill.price / order.touch - 1) * 1e4 * sign
            if off_bps > self._cfg.fill_far_bps:
                found.append(event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, fill.symbol,
                                   f"{what} is {off_bps:.0f} bps from the touch {price_text(order.touch)} "
                                   f"when it was sent", bps=off_bps, price=fill.price, touch=order.touch))
        return found

    # -- positions ---------------------------------------------------------------------------------

    def check_positions(self, positions: dict[str, float], fills_quiet: bool, now: float) -> list[SafetyEvent]:
        """Compare the exchange manager's positions with the sum of fills; a difference seen on two
        checks in a row, with no fill in between, is an anomaly (one check could be mid-update). It
        holds until a quiet check finds them agreeing."""
        if not fills_quiet:
            self._suspect.clear()
            return []
        found = []
        for symbol in set(positions) | set(self.fill_position):
            ours, theirs = self.fill_position.get(symbol, 0.0), positions.get(symbol, 0.0)
            if math.isclose(ours, theirs, abs_tol=self._cfg.position_tolerance):
                self._suspect.pop(symbol, None)
                self._mismatch.pop(symbol, None)
                continue
            self._suspect[symbol] = self._suspect.get(symbol, 0) + 1
            if self._suspect[symbol] == 2:
                message = f"Position mismatch: exchange manager holds {theirs:g}, fills sum to {ours:g}"
                self._mismatch[symbol] = Condition(self.name, SafetyEventType.EXECUTION_ANOMALY, symbol, message, now)
                found.append(event(SafetyEventType.EXECUTION_ANOMALY, Severity.WARNING, symbol, message,
                                   exchange_manager=theirs, sum_of_fills=ours))
        return found

    def venue_unknown(self, unknown: VenueUnknown) -> None:
        """The exchange manager's word on what the venue holds that this system did not send: once
        nothing, the fills of such orders no longer hold."""
        if not unknown.orders and not unknown.positions:
            self._foreign.clear()

    def adopt_positions(self, positions: dict[str, float]) -> None:
        """Start the fill sum from the exchange manager's positions: at start, when it restarted or
        corrected its book from the venue, and after messages were lost (the sum is no good then)."""
        self.fill_position = dict(positions)
        self._suspect.clear()
        self._mismatch.clear()

    # -- what holds --------------------------------------------------------------------------------

    def holding(self, now: float) -> list[Condition]:
        """The lasting conditions: a reject ratio still over the threshold, positions still apart,
        the venue still holding what this system did not send. (The one-shot anomalies hold for
        ``anomaly_hold_s``: ``conditions.OneShotHolds``.)"""
        found = list(self._mismatch.values()) + list(self._foreign.values())
        over = self._reject_over(now)
        if over is not None and self._reject_since is not None:
            found.append(Condition(self.name, SafetyEventType.EXECUTION_ANOMALY, "*",
                                   f"Reject ratio {over[0]}/{over[1]} over {self._cfg.reject_window_s:g}s",
                                   self._reject_since))
        return found
