"""Each strategy's position, as the book of record attributes fills.

This is what a (re)starting engine takes as its strategies' positions (the ``strategy_book``
command): a strategy must never believe itself flat while it holds a position, and trade past its
own limit.

A fill counts for its order's strategy. The fills of a flatten (strategy ``flatten``: the
FAILSAFE sequence, the market close) close the positions of the strategies holding that symbol on
the other side, largest first; what is left of one stays with ``flatten``. A flatten fill that
leaves the account flat in the symbol leaves everyone flat in it: strategies long and short at
once net out in the account, which holds nothing, so none of them holds anything either. What the
account holds beyond the strategies (a position corrected from the venue at reconciliation, an
adopted order's fills under its own name) is never given to a strategy.
"""

from __future__ import annotations

import math

from services.positions import EPSILON

FLATTEN = "flatten"


class StrategyPositions:
    def __init__(self, held: dict[str, dict[str, float]] | None = None) -> None:
        self.held: dict[str, dict[str, float]] = held or {}  # strategy -> symbol -> signed qty

    def apply(self, strategy: str, symbol: str, signed_qty: float,
              account_after: float | None = None) -> dict[tuple[str, str], float]:
        """Attribute one fill (``account_after``: the account's position in the symbol after it);
        return the ``(strategy, symbol)`` positions it changed (to journal)."""
        changed: dict[tuple[str, str], float] = {}
        if strategy == FLATTEN and account_after is not None and abs(account_after) <= EPSILON:
            for name, by_symbol in self.held.items():
                if by_symbol.get(symbol, 0.0) != 0.0:
                    by_symbol[symbol] = changed[(name, symbol)] = 0.0
            return changed
        remaining = signed_qty
        if strategy == FLATTEN:
            holders = sorted(((name, by_symbol.get(symbol, 0.0)) for name, by_symbol in self.held.items()
                              if name != FLATTEN and by_symbol.get(symbol, 0.0) * signed_qty < 0),
                             key=lambda held: (-abs(held[1]), held[0]))
            for name, qty in holders:
                take = math.copysign(min(abs(qty), abs(remaining)), remaining)
                changed[(name, symbol)] = self._add(name, symbol, take)
                remaining -= take
                if abs(remaining) <= EPSILON:
                    break
        if abs(remaining) > EPSILON:
            changed[(strategy, symbol)] = self._add(strategy, symbol, remaining)
        return changed

    def of(self, strategy: str) -> dict[str, float]:
        return {symbol: qty for symbol, qty in self.held.get(strategy, {}).items() if abs(qty) > EPSILON}

    def _add(self, strategy: str, symbol: str, qty: float) -> float:
        by_symbol = self.held.setdefault(strategy, {})
        total = by_symbol.get(symbol, 0.0) + qty
        by_symbol[symbol] = 0.0 if abs(total) <= EPSILON else total
        return by_symbol[symbol]
