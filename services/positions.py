"""Position accounting: quantity, average price, realized PnL (net of fees), marked unrealized PnL.

One implementation, used by the exchange manager's book of record and by the venue simulator's
accounts; tests check both against an independent recomputation from the fills.
"""

from __future__ import annotations

from dataclasses import dataclass

# Quantities this close to zero are float dust from partial fills, not a position.
EPSILON = 1e-9


@dataclass
class Position:
    qty: float = 0.0  # signed: long > 0, short < 0
    avg_price: float = 0.0
    realized_pnl: float = 0.0  # net of fees
    fees: float = 0.0
    volume: float = 0.0  # traded notional

    def apply_fill(self, sign: int, qty: float, price: float, fee: float) -> None:
        signed = sign * qty
        self.fees += fee
        self.realized_pnl -= fee
        self.volume += qty * price
        if abs(self.qty) < EPSILON or (self.qty > 0) == (signed > 0):
            total = abs(self.qty) + qty
            self.avg_price = (abs(self.qty) * self.avg_price + qty * price) / total
            self.qty += signed
            return
        closing = min(qty, abs(self.qty))
        self.realized_pnl += closing * (price - self.avg_price) * (1 if self.qty > 0 else -1)
        self.qty += signed
        if abs(self.qty) < EPSILON:
            self.qty, self.avg_price = 0.0, 0.0
        elif qty > closing:  # flipped through zero: the remainder opens at this price
            self.avg_price = price

    def unrealized(self, mark: float | None) -> float:
        if mark is None or abs(self.qty) < EPSILON:
            return 0.0
        return self.qty * (mark - self.avg_price)

    def to_dict(self) -> dict[str, float]:
        return {"qty": self.qty, "avg_price": self.avg_price, "realized_pnl": self.realized_pnl,
                "fees": self.fees, "volume": self.volume}
