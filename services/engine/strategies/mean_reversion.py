"""Mean reversion: buy below a rolling mean of the mid, sell above it, within a position limit."""

from __future__ import annotations

from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import proto
from proto.commands import OrderArgs
from services.engine.strategies.base import Intent, Strategy
from services.setting_fields import NameField, SymbolField


class MeanReversionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["mean_reversion"] = "mean_reversion"
    name: NameField = "meanrev"
    symbol: SymbolField = "BTC-USD"
    window: int = Field(default=20, ge=2)  # quotes in the rolling mean
    entry_bps: float = Field(default=3.0, gt=0)  # distance from the mean that triggers an order
    qty: float = Field(default=0.01, gt=0)
    max_position: float = Field(default=0.05, gt=0)
    min_interval_s: float = Field(default=1.0, ge=0)  # between two orders


class MeanReversion(Strategy):
    def __init__(self, cfg: MeanReversionSettings) -> None:
        super().__init__(cfg.name, cfg.symbol)
        self.cfg = cfg
        self._mids: deque[float] = deque(maxlen=cfg.window)
        self._sum = 0.0
        self._last_order = float("-inf")
        # Orders not yet filled count against the limit: sent (unanswered) and open (accepted).
        self._unacked = 0.0
        self._open: dict[str, float] = {}  # client order id -> signed quantity not yet filled

    def on_quote(self, quote: proto.Quote, now: float) -> list[Intent]:
        mid = (quote.bid + quote.ask) / 2
        if len(self._mids) == self._mids.maxlen:
            self._sum -= self._mids[0]
        self._mids.append(mid)
        self._sum += mid
        if len(self._mids) < self.cfg.window or now - self._last_order < self.cfg.min_interval_s:
            return []
        deviation_bps = (mid / (self._sum / len(self._mids)) - 1) * 1e4
        cfg = self.cfg
        exposure = self.position + self._unacked + sum(self._open.values())
        if deviation_bps <= -cfg.entry_bps and exposure + cfg.qty <= cfg.max_position + 1e-12:
            return [self._send(proto.Side.BUY, now)]
        if deviation_bps >= cfg.entry_bps and exposure - cfg.qty >= -cfg.max_position - 1e-12:
            return [self._send(proto.Side.SELL, now)]
        return []

    def _send(self, side: proto.Side, now: float) -> OrderArgs:
        self._last_order = now
        self._unacked += side.sign * self.cfg.qty
        return self.order(side, self.cfg.qty)

    def on_accepted(self, intent: OrderArgs, client_order_id: str) -> None:
        self._unacked -= intent.side.sign * intent.qty
        self._open[client_order_id] = intent.side.sign * intent.qty

    def on_refused(self, intent: Intent, reason: str) -> None:
        if isinstance(intent, OrderArgs):
            self._unacked -= intent.side.sign * intent.qty

    def on_fill(self, fill: proto.Fill) -> None:
        super().on_fill(fill)
        if fill.client_order_id in self._open:
            self._open[fill.client_order_id] -= fill.side.sign * fill.qty

    def on_order_update(self, update: proto.OrderUpdate) -> None:
        if not update.status.is_open:
            self._open.pop(update.client_order_id, None)

    def resync(self, position: float, open_orders: list[proto.OrderUpdate]) -> None:
        super().resync(position, open_orders)
        self._open = {o.client_order_id: o.side.sign * (o.qty - o.filled_qty) for o in open_orders}
