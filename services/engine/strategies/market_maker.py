"""A simple market maker: one bid and one ask around the mid, requoted when the mid moves, and
no quote on the side that would take the position past its limit."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import proto
from proto.commands import CancelArgs, OrderArgs
from services.engine.strategies.base import Intent, Strategy
from services.setting_fields import NameField, SymbolField


class MarketMakerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["market_maker"] = "market_maker"
    name: NameField = "mm"
    symbol: SymbolField = "ETH-USD"
    half_spread_bps: float = Field(default=3.0, gt=0)
    requote_bps: float = Field(default=5.0, gt=0)  # mid move that cancels and replaces both quotes
    qty: float = Field(default=0.1, gt=0)
    max_position: float = Field(default=0.5, gt=0)


class MarketMaker(Strategy):
    def __init__(self, cfg: MarketMakerSettings) -> None:
        super().__init__(cfg.name, cfg.symbol)
        self.cfg = cfg
        self._ref_mid: float | None = None
        self._live: dict[proto.Side, str] = {}  # side -> client order id of our resting quote
        self._pending: set[proto.Side] = set()  # sent, not yet accepted or refused
        self._taken_over: list[str] = []  # open orders found in the book at a resync: cancelled at the next quote

    def on_quote(self, quote: proto.Quote, now: float) -> list[Intent]:
        mid = (quote.bid + quote.ask) / 2
        if self._pending:
            return []
        intents: list[Intent] = [CancelArgs(client_order_id=cid) for cid in self._taken_over]
        self._taken_over = []
        if self._ref_mid is not None and abs(mid / self._ref_mid - 1) * 1e4 >= self.cfg.requote_bps:
            intents += [CancelArgs(client_order_id=cid) for cid in self._live.values()]
            self._live.clear()
        if self._live and self._ref_mid is not None:
            return intents
        self._ref_mid = mid
        half = mid * self.cfg.half_spread_bps / 1e4
        for side, price in ((proto.Side.BUY, mid - half), (proto.Side.SELL, mid + half)):
            if side in self._live:
                continue
            if abs(self.position + side.sign * self.cfg.qty) > self.cfg.max_position + 1e-12:
                continue
            intents.append(self.order(side, self.cfg.qty, "limit", round(price, 8)))
            self._pending.add(side)
        return intents

    def on_accepted(self, intent: OrderArgs, client_order_id: str) -> None:
        self._pending.discard(intent.side)
        self._live[intent.side] = client_order_id

    def on_refused(self, intent: Intent, reason: str) -> None:
        if isinstance(intent, OrderArgs):
            self._pending.discard(intent.side)

    def on_order_update(self, update: proto.OrderUpdate) -> None:
        if not update.status.is_open and self._live.get(update.side) == update.client_order_id:
            del self._live[update.side]

    def resync(self, position: float, open_orders: list[proto.OrderUpdate]) -> None:
        """Quotes of unknown price and number (a restart, a loss): cancel them all and quote anew.
        Orders still unanswered are not in the book yet; their answer comes as usual."""
        super().resync(position, open_orders)
        self._taken_over = [o.client_order_id for o in open_orders]
        self._live.clear()
