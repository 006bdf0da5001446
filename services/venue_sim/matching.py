"""The simulated venue's matching: market orders at the touch with slippage, resting limit orders
filled when crossed, cancels, rejects, fees, and each account's positions and fills.

A venue holds several accounts on one book: each face of the simulator trades its own (the native
``proto`` command socket ``NATIVE``, the exchange API its key's), as sub-accounts of one exchange
do. They trade against one market; each account sees only its own orders, fills and positions, and
numbers its fills from 1 (``Fill.venue_seq``), so a connector of one account never sees a hole made
by another's fill.

Orders are checked against the instrument of their symbol as a real venue does (``instruments.py``):
an unknown symbol, a quantity off the lot grid or below the minimum, a limit price off the tick grid
or further than ``price_band_pct`` from the touch, a notional below the minimum are rejected with the
reason.

Reduce-only orders behave as on real venues: rejected when they would not reduce the position when
they arrive, filled at most up to the position when they execute, the rest cancelled. Checked here,
at execution, a flatten sent while a resting order of ours fills can never reverse the position."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import proto
from proto import OrderStatus, Side
from proto.commands import NewOrderArgs
from proto.instruments import Instrument
from services.instruments import collar_problem, notional_problem, price_problem, quantity_problem
from services.positions import EPSILON, Position
from services.venue_sim.instruments import venue_instruments
from services.venue_sim.settings import VenueSimSettings

Event = proto.OrderUpdate | proto.Fill
NATIVE = "native"  # the account of the native command socket


@dataclass
class VenueOrder:
    client_order_id: str
    venue_order_id: str
    symbol: str
    side: Side
    qty: float
    order_type: str
    limit_price: float | None
    status: OrderStatus = OrderStatus.ACKNOWLEDGED
    filled_qty: float = 0.0
    avg_fill_price: float = 0.0
    reason: str = ""
    reduce_only: bool = False
    account: str = NATIVE

    def update(self, venue: str) -> proto.OrderUpdate:
        return proto.OrderUpdate(
            client_order_id=self.client_order_id, symbol=self.symbol, side=self.side, qty=self.qty,
            order_type=self.order_type, limit_price=self.limit_price, status=self.status,
            filled_qty=self.filled_qty, avg_fill_price=self.avg_fill_price,
            venue_order_id=self.venue_order_id, reason=self.reason, connector=venue, ts_ns=time.time_ns(),
            reduce_only=self.reduce_only)


@dataclass
class Account:
    """One account's positions and fills (fill n is ``fills[n - 1]``)."""

    positions: dict[str, Position] = field(default_factory=dict)
    fills: list[proto.Fill] = field(default_factory=list)


class Matcher:
    def __init__(self, settings: VenueSimSettings, epoch: int,
                 instruments: dict[str, Instrument] | None = None) -> None:
        """``instruments``: what each symbol's orders must respect (default: the settings' own,
        priced from ``settings.symbols``)."""
        self._s = settings
        self.venue = settings.venue
        self.instruments = instruments if instruments is not None else venue_instruments(settings, settings.symbols)
        self._order_ids = itertools.count(1)
        self._fill_ids = itertools.count(1)
        self._id_prefix = f"{epoch // 1_000_000:x}"  # a restarted venue never reuses an id
        self.session = epoch  # fills are numbered from 1 in each session (Fill.venue_seq)
        self.touch: dict[str, tuple[float, float]] = {}
        self.orders: dict[str, VenueOrder] = {}
        self.received: list[str] = []  # client order ids in arrival order (the orders_received audit)
        # Open orders by symbol: a quote is matched against these only, not every order ever seen.
        self._open: dict[str, dict[str, VenueOrder]] = {}
        self.accounts: dict[str, Account] = {NATIVE: Account()}
        self.native = self.accounts[NATIVE]
        self.duplicate_ids = 0
        self.rejected = 0
        self.reject_all = False

    # -- order entry -----------------------------------------------------------------------------

    def account(self, name: str) -> Account:
        return self.accounts.setdefault(name, Account())

    def new_order(self, args: NewOrderArgs, account: str = NATIVE) -> list[Event]:
        known = self.orders.get(args.client_order_id)
        if known is not None and known.account == account:
            # A resent order: report the one already known, never execute a second one.
            self.duplicate_ids += 1
            return [known.update(self.venue)]
        order = VenueOrder(args.client_order_id, f"{self._id_prefix}-{next(self._order_ids)}", args.symbol,
                           args.side, args.qty, args.order_type, args.limit_price, reduce_only=args.reduce_only,
                           account=account)
        if known is not None:  # another account's id: refused, and that account's order stays as it was
            self.duplicate_ids += 1
            self.rejected += 1
            order.status, order.reason = OrderStatus.REJECTED, "duplicate client order id"
            return [order.update(self.venue)]
        self.orders[order.client_order_id] = order
        self.received.append(order.client_order_id)
        reason = self._refusal(order)
        if reason:
            self.rejected += 1
            order.status, order.reason = OrderStatus.REJECTED, reason
            return [order.update(self.venue)]
        events: list[Event] = [order.update(self.venue)]
        self._open.setdefault(order.symbol, {})[order.client_order_id] = order
        bid, ask = self.touch[order.symbol]
        if order.order_type == "market":
            slip = self._s.slippage_bps / 1e4
            price = ask * (1 + slip) if order.side is Side.BUY else bid * (1 - slip)
            events += self._execute(order, order.qty, price)
        elif self._crosses(order, bid, ask):
            events += self._execute(order, order.qty, ask if order.side is Side.BUY else bid)
        return events

    def _refusal(self, order: VenueOrder) -> str:
        if self.reject_all:
            return "venue is rejecting every order (fault injected)"
        spec = self.instruments.get(order.symbol)
        if spec is None:
            return f"unknown symbol {order.symbol}"
        if order.symbol not in self.touch:
            return f"no market in {order.symbol} yet"
        if order.qty > self._s.max_order_qty:
            return f"quantity {order.qty:g} over the venue's maximum {self._s.max_order_qty:g}"
        if order.order_type == "limit" and order.limit_price is None:
            return "limit order without a limit price"
        if order.order_type == "market" and order.limit_price is not None:
            return "market order with a limit price"
        if order.reduce_only and self._reducible(order) <= EPSILON:
            position = self.account(order.account).positions.get(order.symbol, Position()).qty
            return f"reduce-only {order.side.value} would not reduce the position {position:g}"
        problem = self._spec_problem(spec, order)
        return f"{problem[0]}: {problem[1]}" if problem else ""

    def _spec_problem(self, spec: Instrument, order: VenueOrder) -> tuple[str, str] | None:
        """The instrument's grid and limits. A reduce-only order is held to the grid but not to the
        minimums (as on venues that exempt reduce-only orders): a position smaller than the minimum
        must still be closable."""
        problem = quantity_problem(spec, order.qty)
        if problem is not None and problem[0] == "min_qty" and order.reduce_only:
            problem = None
        bid, ask = self.touch[order.symbol]
        if problem is None and order.limit_price is not None:
            problem = (price_problem(spec, order.limit_price)
                       or collar_problem(order.symbol, order.limit_price, (bid + ask) / 2, self._s.price_band_pct,
                                         kind="price_band"))
        if problem is None and not order.reduce_only:
            price = order.limit_price if order.limit_price is not None else (ask if order.side is Side.BUY else bid)
            problem = notional_problem(spec, order.qty, price)
        return problem

    def cancel(self, client_order_id: str, account: str = NATIVE) -> list[Event]:
        order = self.owned(client_order_id, account)
        if order is None or not order.status.is_open:
            return []
        order.status = OrderStatus.CANCELLED
        self._open.get(order.symbol, {}).pop(client_order_id, None)
        return [order.update(self.venue)]

    def cancel_all(self, symbol: str | None = None, account: str = NATIVE) -> list[Event]:
        events: list[Event] = []
        for order in self.open_orders(account):
            if symbol is None or order.symbol == symbol:
                events += self.cancel(order.client_order_id, account)
        return events

    # -- market data -----------------------------------------------------------------------------

    def on_quote(self, symbol: str, bid: float, ask: float) -> list[Event]:
        self.touch[symbol] = (bid, ask)
        events: list[Event] = []
        for order in list(self._open.get(symbol, {}).values()):
            if self._crosses(order, bid, ask):
                events += self._execute(order, order.qty - order.filled_qty, order.limit_price or 0.0)
        return events

    @staticmethod
    def _crosses(order: VenueOrder, bid: float, ask: float) -> bool:
        if order.order_type != "limit" or order.limit_price is None:
            return False
        return ask <= order.limit_price if order.side is Side.BUY else bid >= order.limit_price

    def _execute(self, order: VenueOrder, qty: float, price: float) -> list[Event]:
        """Fill ``qty`` of ``order``; a reduce-only one only up to the position, the rest cancelled."""
        if not order.reduce_only:
            return self._fill(order, qty, price)
        qty = min(qty, self._reducible(order))
        events = self._fill(order, qty, price) if qty > EPSILON else []
        if order.status.is_open and self._reducible(order) <= EPSILON:
            order.status, order.reason = OrderStatus.CANCELLED, "reduce-only: the position is closed, the rest cancelled"
            self._open.get(order.symbol, {}).pop(order.client_order_id, None)
            events.append(order.update(self.venue))
        return events

    def _reducible(self, order: VenueOrder) -> float:
        """How much of the position an order on this side would close."""
        position = self.account(order.account).positions.get(order.symbol)
        qty = position.qty if position is not None else 0.0
        return abs(qty) if qty * order.side.sign < 0 else 0.0

    def _fill(self, order: VenueOrder, qty: float, price: float) -> list[Event]:
        fee = qty * price * self._s.fee_bps / 1e4
        account = self.account(order.account)
        fill = proto.Fill(fill_id=f"{self._id_prefix}-F{next(self._fill_ids)}", client_order_id=order.client_order_id,
                          symbol=order.symbol, side=order.side, qty=qty, price=price, fee=fee,
                          ts_ns=time.time_ns(), connector=self.venue, venue_seq=len(account.fills) + 1)
        account.fills.append(fill)
        account.positions.setdefault(order.symbol, Position()).apply_fill(order.side.sign, qty, price, fee)
        total = order.filled_qty + qty
        order.avg_fill_price = (order.avg_fill_price * order.filled_qty + price * qty) / total
        order.filled_qty = total
        order.status = OrderStatus.FILLED if total >= order.qty - 1e-12 else OrderStatus.PARTIALLY_FILLED
        if not order.status.is_open:
            self._open.get(order.symbol, {}).pop(order.client_order_id, None)
        return [fill, order.update(self.venue)]

    def open_orders(self, account: str | None = NATIVE) -> list[VenueOrder]:
        """One account's open orders (``None``: every account's)."""
        return [o for by_symbol in self._open.values() for o in by_symbol.values()
                if account is None or o.account == account]

    def owned(self, client_order_id: str, account: str) -> VenueOrder | None:
        """``account``'s order of that id (another account's is not shown to it)."""
        order = self.orders.get(client_order_id)
        return order if order is not None and order.account == account else None
