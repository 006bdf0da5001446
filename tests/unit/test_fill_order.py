"""services.exchange_manager.fill_order: a venue's numbered fills are applied in its order, whatever
order they arrive in, so the book's average price and realised PnL are the venue's.

The venue is a real Matcher (venue_rig.Rig); its fills are delivered to the book by hand, in the
order a lossy stream and a late page deliver them.
"""

from __future__ import annotations

import msgspec
import pytest
from venue_rig import Rig

import proto
from proto import Side
from services.exchange_manager import fill_order


def _round_trip(rig: Rig) -> list[proto.Fill]:
    """Buy 2, sell 3 (through zero), buy 1 at moving prices: a path whose average price and realised
    PnL depend on the order the fills are applied in."""
    for side, qty, (bid, ask) in ((Side.BUY, 2.0, (10.0, 10.1)), (Side.SELL, 3.0, (12.0, 12.1)),
                                  (Side.BUY, 1.0, (11.0, 11.1))):
        rig.matcher.on_quote("ETH-USD", bid, ask)
        rig.our_order(side, qty, symbol="ETH-USD")
    fills = list(rig.matcher.native.fills)
    assert [f.venue_seq for f in fills] == [1, 2, 3]
    return fills


def _same_as_venue(rig: Rig) -> None:
    ours, venue = rig.positions["ETH-USD"], rig.matcher.native.positions["ETH-USD"]
    for key in ("qty", "avg_price", "realized_pnl", "fees", "volume"):
        assert getattr(ours, key) == pytest.approx(getattr(venue, key), rel=1e-12, abs=1e-12), key


def test_a_fill_overtaken_on_the_way_is_applied_in_the_venues_order() -> None:
    rig = Rig()
    rig.connector.answering = False  # the hole is filled by the stream itself, not the page
    first, second, third = _round_trip(rig)
    rig.apply_fill(first)
    rig.apply_fill(third)  # overtook the second
    assert rig.fill_order.held("sim") == 1 and rig.book.fills == 1
    rig.apply_fill(second)
    assert rig.fill_order.held("sim") == 0 and rig.book.fills == 3
    assert rig.reconciler.cursor("sim").applied == 3
    assert rig.fill_order.held_total == 1 and rig.fill_order.applied_out_of_order == 0
    _same_as_venue(rig)


def test_a_hole_is_filled_at_once_by_asking_for_the_fills_after_the_last_applied() -> None:
    rig = Rig()
    first, _lost, third = _round_trip(rig)
    rig.apply_fill(first)
    rig.connector.asked.clear()
    rig.apply_fill(third)  # the second was lost: the page after number 1 brings it, and the third again
    assert [(name, args["after_seq"]) for name, args in rig.connector.asked] == [("fills_since", 1)]
    assert rig.fill_order.held("sim") == 0 and rig.book.fills == 3
    assert rig.reconciler.cursor("sim").applied == 3
    _same_as_venue(rig)
    for _delay, expire in rig.timers:  # the hold's timer, late: nothing left to apply
        expire()
    assert rig.book.fills == 3 and rig.fill_order.applied_out_of_order == 0


def test_a_hole_that_stays_open_does_not_hide_the_fills_above_it() -> None:
    """The venue does not answer and the lost fill never comes: after the hold the fills above are
    applied anyway (quantities matter more than the average), counted and logged."""
    rig = Rig()
    rig.connector.answering = False
    first, _lost, third = _round_trip(rig)
    rig.apply_fill(first)
    rig.apply_fill(third)
    [(delay, expire)] = rig.timers
    assert delay == fill_order.HOLD_S and rig.book.fills == 1
    expire()
    assert rig.book.fills == 2 and rig.fill_order.held("sim") == 0 and rig.fill_order.applied_out_of_order == 1
    assert rig.positions["ETH-USD"].qty == pytest.approx(3.0)  # 2 + 1 without the lost sell of 3
    rig.connector.answering = True  # the next reconciliation brings it
    outcome = rig.reconcile()
    assert outcome.ok and rig.book.fills == 3
    assert rig.positions["ETH-USD"].qty == pytest.approx(rig.matcher.native.positions["ETH-USD"].qty)


def test_a_hole_still_open_after_the_hold_is_asked_again_by_the_next_fill_above_it() -> None:
    """The question for the hole went unanswered (a timeout, the link down) and the hold expired: the
    next fill above the same hole asks again at once, rather than waiting out a second hold (and a
    third...) with nothing asked, which left the book behind the venue until a reconciliation."""
    rig = Rig()
    rig.connector.answering = False
    first, _lost, third = _round_trip(rig)
    rig.matcher.on_quote("ETH-USD", 12.0, 12.1)
    rig.our_order(Side.SELL, 1.0, symbol="ETH-USD")
    fourth = rig.matcher.native.fills[3]
    rig.apply_fill(first)
    rig.apply_fill(third)  # the second was lost; asked, never answered
    [(_delay, expire)] = rig.timers
    expire()
    assert rig.book.fills == 2 and rig.fill_order.applied_out_of_order == 1
    rig.connector.answering = True
    rig.connector.asked.clear()
    rig.apply_fill(fourth)  # above the same hole
    assert [(name, args["after_seq"]) for name, args in rig.connector.asked] == [("fills_since", 1)]
    assert rig.fill_order.held("sim") == 0 and rig.book.fills == 4
    assert rig.reconciler.cursor("sim").applied == 4
    assert rig.positions["ETH-USD"].qty == pytest.approx(rig.matcher.native.positions["ETH-USD"].qty)


def test_a_hole_longer_than_a_page_is_asked_page_after_page() -> None:
    rig = Rig(page_size=2)
    for n in range(7):
        rig.our_order(Side.BUY if n % 3 else Side.SELL, 0.5, symbol="ETH-USD")
    fills = rig.matcher.native.fills
    rig.apply_fill(fills[0])
    rig.connector.asked.clear()
    rig.apply_fill(fills[6])  # 2-6 lost: three pages of two
    assert [args["after_seq"] for name, args in rig.connector.asked if name == "fills_since"] == [1, 3, 5]
    assert rig.fill_order.held("sim") == 0 and rig.book.fills == 7 and rig.fill_order.applied_out_of_order == 0
    _same_as_venue(rig)


def test_a_new_venue_session_numbers_from_one_and_unnumbered_fills_are_not_held() -> None:
    rig = Rig()
    first, second, third = _round_trip(rig)
    rig.apply_fill(first)
    rig.connector.answering = False
    renumbered = [msgspec.structs.replace(f, venue_seq=f.venue_seq - 1) for f in (second, third)]
    rig.connector.asked.clear()
    rig.matcher.session += 1  # the venue restarted
    rig.apply_fill(renumbered[1])  # number 2 of its new session: 1 is missing
    assert rig.fill_order.held("sim") == 1 and rig.connector.asked == [("fills_since", {"after_seq": 0, "limit": 500})]
    rig.apply_fill(renumbered[0])
    assert rig.fill_order.held("sim") == 0 and rig.book.fills == 3
    assert (rig.reconciler.cursor("sim").session, rig.reconciler.cursor("sim").applied) == (rig.matcher.session, 2)
    unnumbered = msgspec.structs.replace(first, venue_seq=0, fill_id="other")
    rig.apply_fill(unnumbered)
    assert rig.book.fills == 4 and rig.fill_order.held("sim") == 0  # applied at once


def test_the_fills_held_are_bounded() -> None:
    rig = Rig()
    rig.fill_order = fill_order.FillOrder(rig.reconciler.cursor, rig._apply, lambda _c, _n: None,  # noqa: SLF001
                                          lambda delay, fn: rig.timers.append((delay, fn)), max_held=3)
    rig.connector.answering = False
    for _ in range(6):
        rig.our_order(Side.BUY, 0.1, symbol="ETH-USD")
    fills = rig.matcher.native.fills
    for fill in fills[1:4]:  # the first never comes
        rig.apply_fill(fill)
    assert rig.fill_order.held("sim") == 0 and rig.book.fills == 3 and rig.fill_order.applied_out_of_order == 3
