"""What a venue answers when the exchange manager reconciles with it: typed reports whose size does
not grow with the session's history.

A venue numbers its fills (``Fill.venue_seq``, from 1 in each venue ``session``); the exchange
manager keeps, per connector, the last number it has applied and asks only for what follows:

  * ``fills_since`` (``FillsSinceArgs``) → ``FillPage``: at most ``limit`` fills after a number;
  * ``mass_status`` → ``MassStatus``: the open orders and positions, one consistent snapshot, with
    the number of the last fill it includes (``fill_seq``), so an answer older than fills already
    applied can be told from a current one;
  * ``order_status`` (``OrderStatusArgs``) → ``OrderStatusReports``: the fate of the given client
    order ids only (the ones in doubt), ``known=False`` for an id the venue never received;
  * ``orders_received`` (``OrdersReceivedArgs``) → ``OrderIdPage``: the client order ids the venue
    received, in arrival order, a page at a time (an audit query: tests read it; reconciliation
    never needs every id).

These are the reports a venue adapter gives (order status, fill reports since a point, position
reports, mass status). Each travels as the ``result`` map of a ``Reply``: ``result_of`` makes one,
``parse_result`` validates one back into its struct.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec

from proto.errors import ProtocolError
from proto.fields import AMOUNT_MAX, Amount, Count, OrderId, PriceOrZero, SignedQuantity, Symbol
from proto.messages import Fill, OrderUpdate

# The bounds that keep every answer far below MAX_MESSAGE_BYTES (1 MiB): an encoded fill is about
# 200 bytes, an order about 250 (tests/unit/test_venue_reports.py checks the worst case).
MAX_FILL_PAGE = 2_000
MAX_ORDER_STATUS_IDS = 1_000
MAX_OPEN_ORDERS = 2_000
MAX_ORDER_ID_PAGE = 5_000
MAX_POSITIONS = 2_000


class Report(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every venue report."""


# Every field is bounded like the bus's messages (proto/fields.py): a venue's answer that carries
# inf, NaN, a negative fill number, a malformed symbol or id, or more entries than the bounds below
# fails ``parse_result`` with a ``ProtocolError`` and is never applied to the book.


class PositionReport(Report):
    symbol: Symbol
    qty: SignedQuantity
    avg_price: PriceOrZero = 0.0
    realized_pnl: Amount = 0.0  # net of fees
    fees: Amount = 0.0
    volume: Annotated[float, msgspec.Meta(ge=0, le=AMOUNT_MAX)] = 0.0

    def fields(self) -> dict[str, float]:
        """The position's accounting fields (``services.positions.Position`` takes them as they are)."""
        return {"qty": self.qty, "avg_price": self.avg_price, "realized_pnl": self.realized_pnl,
                "fees": self.fees, "volume": self.volume}


class FillPage(Report):
    session: Count  # the venue's session: its fill numbers start again at 1 in a new one
    # ascending venue_seq, contiguous, after the number asked for
    fills: Annotated[list[Fill], msgspec.Meta(max_length=MAX_FILL_PAGE)]
    last_seq: Count  # the venue's latest fill number when it answered
    more: bool  # fills after this page exist: ask again after its last one


class MassStatus(Report):
    session: Count
    fill_seq: Count  # the positions include exactly the fills up to this number
    open_orders: Annotated[list[OrderUpdate], msgspec.Meta(max_length=MAX_OPEN_ORDERS)]
    open_orders_total: Count  # more than MAX_OPEN_ORDERS open: the answer is incomplete
    positions: Annotated[list[PositionReport], msgspec.Meta(max_length=MAX_POSITIONS)]


class OrderStatusReport(Report):
    client_order_id: OrderId
    known: bool  # False: the venue never received this id
    order: OrderUpdate | None = None


class OrderStatusReports(Report):
    session: Count
    reports: Annotated[list[OrderStatusReport], msgspec.Meta(max_length=MAX_ORDER_STATUS_IDS)]


class OrderIdPage(Report):
    ids: Annotated[list[OrderId], msgspec.Meta(max_length=MAX_ORDER_ID_PAGE)]  # in arrival order
    next_after: Count  # ask again after this index for the ones that follow
    more: bool


R = TypeVar("R", bound=Report)


def result_of(report: Report) -> dict[str, Any]:
    """A report as a reply's result map (nested messages are encoded as they are, not copied)."""
    return {name: getattr(report, name) for name in report.__struct_fields__}


def parse_result(result: dict[str, Any], report_type: type[R]) -> R:
    """A reply's result validated into its report; ``ProtocolError`` if it is not one."""
    try:
        return msgspec.convert(result, report_type)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid", f"{report_type.__name__}: {exc}") from None
