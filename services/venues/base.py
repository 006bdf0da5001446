"""The venue adapter layer: each venue's clients, behind two small interfaces.

A venue adapter lives in its own folder (``services/venues/<venue>/``) with its two clients:

* a **data client** (``DataClient``): the venue's market data turned into ``proto.Quote`` and
  ``proto.Trade``, subscribed and unsubscribed by symbol; the data router runs one;
* an **execution client** (``ExecutionClient``, the exchange manager's *connector*): submit,
  cancel, cancel all, and the typed reports of ``proto.venue_reports`` (mass status, fills since a
  number, order status, instruments) that reconciliation reads. It owns the link: it connects,
  notices when the venue has gone quiet, reconnects with exponential backoff and jitter, and hands
  every execution report and fill to the exchange manager (``ExecutionEvents``). It keeps no order
  state of its own: the book of record is the exchange manager's.

The rest of the system sees only normalised ``proto`` messages and these reports: nothing outside
an adapter knows a venue's wire. ``registry.py`` names the kinds the settings may choose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import proto
from proto.commands import NewOrderArgs

OnUpdate = Callable[[proto.Quote | proto.Trade], None]


class DataClient(Protocol):
    name: str
    symbols: set[str]  # routed by name (none: every symbol the feed carries)

    def subscribe(self, symbols: list[str]) -> None: ...

    def unsubscribe(self, symbols: list[str]) -> None: ...

    def stats(self) -> dict[str, object]: ...


class ExecutionEvents(Protocol):
    """What an execution client tells the exchange manager (on the exchange manager's loop)."""

    def on_order_update(self, update: proto.OrderUpdate) -> None: ...

    def on_fill(self, fill: proto.Fill) -> None: ...

    def on_connected(self, connector: "ExecutionClient") -> None: ...

    def on_in_doubt(self, connector: "ExecutionClient", client_order_id: str) -> None: ...

    # What the book of record knows, for a venue whose reports name its own order ids only (a REST
    # venue's trades), read when a connector starts: the client order ids of its orders the book
    # holds, by the venue's order id, and per symbol when the book last applied one of its fills
    # (where to read trades from again).
    def known_orders(self, connector: str) -> dict[str, str]: ...

    def fills_resume_ns(self, connector: str) -> dict[str, int]: ...


class ExecutionClient(Protocol):
    name: str
    # The venue session its fills are numbered in (None before anything was heard from it), and the
    # size of the latest answer to a query (reconciliation's figures).
    venue_session: int | None
    last_reply_bytes: int

    def connect(self) -> None: ...

    def disconnect(self, reason: str) -> None: ...

    def is_connected_check(self) -> bool: ...

    def get_stats(self) -> dict[str, Any]: ...

    def submit(self, order: NewOrderArgs) -> None: ...

    def cancel(self, client_order_id: str) -> None: ...

    def cancel_all(self, symbol: str | None) -> None: ...

    # The venue's reports (proto.venue_reports); on_result(None) when it did not answer.
    def mass_status(self, on_result: Callable[[proto.MassStatus | None], None]) -> None: ...

    def fills_since(self, after_seq: int, limit: int, on_result: Callable[[proto.FillPage | None], None]) -> None: ...

    def order_status(self, client_order_ids: list[str],
                     on_result: Callable[[proto.OrderStatusReports | None], None]) -> None: ...

    def instruments(self, on_result: Callable[[proto.InstrumentList | None], None]) -> None: ...
