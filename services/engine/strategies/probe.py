"""Latency probe: measures tick-to-order on the live path without trading.

Every ``every_n`` quotes it sends one minimal limit order priced ``offset_pct`` below the bid (so
it practically never fills; within the gate's price collar, ``exchange_manager.risk.price_collar_pct``,
else the gate refuses it), then cancels the previous probe. Each order carries the triggering
quote's timestamp, so the venue measures tick-to-order on it. Off by default; used by the
benchmark and by operators who want the figure from a running system.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import proto
from proto.commands import CancelArgs, OrderArgs
from services.engine.strategies.base import Intent, Strategy
from services.setting_fields import NameField, SymbolField


class ProbeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["probe"] = "probe"
    name: NameField = "probe"
    symbol: SymbolField = "BTC-USD"
    every_n: int = Field(default=10, ge=1)
    offset_pct: float = Field(default=5.0, gt=0, lt=100)
    qty: float = Field(default=0.001, gt=0)


class Probe(Strategy):
    def __init__(self, cfg: ProbeSettings) -> None:
        super().__init__(cfg.name, cfg.symbol)
        self.cfg = cfg
        self._count = 0
        self._resting: str | None = None

    def on_quote(self, quote: proto.Quote, now: float) -> list[Intent]:
        self._count += 1
        if self._count % self.cfg.every_n:
            return []
        price = round(quote.bid * (1 - self.cfg.offset_pct / 100), 8)
        # The order first: it is what is measured; the cancel of the previous probe (far from the
        # market, tiny) can wait behind it.
        intents: list[Intent] = [self.order(proto.Side.BUY, self.cfg.qty, "limit", price)]
        if self._resting is not None:
            intents.append(CancelArgs(client_order_id=self._resting))
            self._resting = None
        return intents

    def on_accepted(self, intent: OrderArgs, client_order_id: str) -> None:
        self._resting = client_order_id

    def resync(self, position: float, open_orders: list[proto.OrderUpdate]) -> None:
        super().resync(position, open_orders)
        self._resting = open_orders[-1].client_order_id if open_orders else None
