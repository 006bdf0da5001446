"""The pre-trade risk gate: the last hop before any venue. Every order passes here or nowhere.

Checks, in order (the first that fails is the refusal's reason):
  0. the instrument (``instrument_checks.py``): finite numbers, a symbol the venue lists, its tick
     and lot grid and minimums, a mark and the price collar; reducing orders only for meaning, and a
     reducing limit order's price for its tick and collar (a sell at 0.01 is a giveaway, not safety);
  1. trading allowed: the session is LIVE (or DEGRADED) as last heard from the orchestrator, that
     word is fresh (dead-man switch), and the orchestrator has not disabled trading. Otherwise only
     orders that reduce a position pass (so a failsafe can still flatten);
  2. the gate's mode: ``halt`` refuses everything but reducing orders, ``reduce_only`` (the default
     in DEGRADED) refuses orders that open or increase a position; an order flagged ``reduce_only``
     must reduce; and the book must be reconciled with the order's venue since its latest
     connection (``unreconciled``): before, its positions may lack fills made meanwhile (a
     restart, a link back), and the limits below would be checked against them;
  3. max order quantity and notional; 4. max position per symbol (counting open orders on the same
     side); 5. max gross exposure; 6. order rate per second.

An order that only reduces a position (the failsafe's and the operator's flatten) skips 3-6: those
limits bound risk, and a step toward safety is never refused by the gate's own limits (a FAILSAFE
whose flatten orders were refused by ``max_orders_per_s`` ended NOT SAFE with a position open). It
still counts toward the order rate, so opening orders right after a flatten find the budget used.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from proto.commands import OrderArgs
from proto.instruments import Instrument
from services.exchange_manager.instrument_checks import instrument_refusal
from services.exchange_manager.settings import RiskLimits
from services.positions import EPSILON

Mode = Literal["normal", "reduce_only", "halt"]
_STRICTNESS = {"normal": 0, "reduce_only": 1, "halt": 2}
# Instrument refusals that say the market has not told us something yet, not that the order is wrong.
NOT_YET_KNOWN = frozenset({"no_mark", "instruments_not_loaded"})
# The order's instrument at its venue and whether that venue's list is loaded (instrument_checks.py).
InstrumentLookup = Callable[[OrderArgs], tuple[Instrument | None, bool]]


class RiskGate:
    def __init__(self, limits: RiskLimits, trading_allowed: Callable[[], bool],
                 session_mode: Callable[[], Mode], instruments: InstrumentLookup | None = None,
                 unreconciled: Callable[[OrderArgs], str | None] | None = None) -> None:
        """``unreconciled``: why the book is not reconciled with the order's venue yet (None: it is)."""
        self._limits = limits
        self._unreconciled = unreconciled
        # None only in tests of the other checks: the exchange manager always gives its instruments.
        self._instruments = instruments
        self._trading_allowed = trading_allowed
        # The mode the session asks for (reduce_only while DEGRADED, by default); it is derived from
        # the session state each time, so a restarted exchange manager applies it at once.
        self._session_mode = session_mode
        self.operator_mode: Mode = "normal"
        self._recent: deque[float] = deque()
        self.passed = 0
        self.refusals: dict[str, int] = {}

    @property
    def mode(self) -> Mode:
        session = self._session_mode()
        return session if _STRICTNESS[session] > _STRICTNESS[self.operator_mode] else self.operator_mode

    def check(
        self,
        order: OrderArgs,
        position: float,
        open_same_side: float,
        mark: float | None,
        gross_exposure: float,
    ) -> tuple[str, str] | None:
        """None if the order may go; otherwise ``(kind, reason)``."""
        reduces = self.reduces(order, position, open_same_side)
        trading_off = not self._trading_allowed() and not reduces
        if self._instruments is not None:
            spec, listed = self._instruments(order)
            problem = instrument_refusal(order, spec, listed, mark, reduces, self._limits.price_collar_pct)
            # What is wrong with the order itself comes first; what the market has not told us yet
            # yields to trading being off (in READY, "no market price" is not the reason to read).
            if problem is not None and not (trading_off and problem[0] in NOT_YET_KNOWN):
                return self._refuse(*problem)
        if trading_off:
            return self._refuse("trading_disabled", "trading is not enabled (session not live, disabled, "
                                                    "or no word from the orchestrator): only reducing orders pass")
        if self.mode == "halt" and not reduces:
            return self._refuse("halted", "the gate is halted: only reducing orders pass")
        if (self.mode == "reduce_only" or order.reduce_only) and not reduces:
            return self._refuse("reduce_only", f"reduce-only: {order.side.value} {order.qty:g} {order.symbol} "
                                               f"would not reduce the position {position:g}")
        if not reduces and self._unreconciled is not None and (why := self._unreconciled(order)) is not None:
            return self._refuse("not_reconciled", why)
        now = time.monotonic()
        while self._recent and now - self._recent[0] >= 1.0:
            self._recent.popleft()
        if not reduces:
            refusal = self._limits_refusal(order, position, open_same_side, mark, gross_exposure)
            if refusal is not None:
                return refusal
        self._recent.append(now)
        self.passed += 1
        return None

    @staticmethod
    def reduces(order: OrderArgs, position: float, open_same_side: float) -> bool:
        """Against the position, and not past zero counting the orders on the same side still
        working (several reducing orders in flight must not flip the position together)."""
        return (abs(position) > EPSILON and order.qty * order.side.sign * position < 0
                and open_same_side + order.qty <= abs(position) + EPSILON)

    def _limits_refusal(self, order: OrderArgs, position: float, open_same_side: float, mark: float | None,
                        gross_exposure: float) -> tuple[str, str] | None:
        """Checks 3-6, for an order that opens or increases a position."""
        limits = self._limits
        price = order.limit_price if order.order_type == "limit" else mark
        if price is None:
            return self._refuse("no_price", f"no market price for {order.symbol} yet")
        if order.qty > limits.max_order_qty:
            return self._refuse("max_order_qty", f"quantity {order.qty:g} over max_order_qty {limits.max_order_qty:g}")
        notional = order.qty * price
        if notional > limits.max_order_notional:
            return self._refuse("max_order_notional",
                                f"notional {notional:,.2f} over max_order_notional {limits.max_order_notional:,.2f}")
        worst = abs(position + (open_same_side + order.qty) * order.side.sign)
        if worst > limits.max_position + EPSILON:
            return self._refuse("max_position", f"position in {order.symbol} could reach {worst:g}, "
                                                f"over max_position {limits.max_position:g}")
        if gross_exposure + notional > limits.max_gross_exposure:
            return self._refuse("max_gross_exposure",
                                f"gross exposure would be {gross_exposure + notional:,.2f}, "
                                f"over max_gross_exposure {limits.max_gross_exposure:,.2f}")
        if len(self._recent) >= limits.max_orders_per_s:
            return self._refuse("max_orders_per_s", f"order rate over max_orders_per_s {limits.max_orders_per_s}")
        return None

    def _refuse(self, kind: str, reason: str) -> tuple[str, str]:
        self.refusals[kind] = self.refusals.get(kind, 0) + 1
        return kind, reason
