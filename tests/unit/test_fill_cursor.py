"""services.exchange_manager.fill_cursor: how far the book has applied a venue's numbered fills."""

from __future__ import annotations

from services.exchange_manager import fill_cursor
from services.exchange_manager.fill_cursor import FillCursor


def test_in_order_fills_move_the_number_on() -> None:
    cursor = FillCursor(session=7)
    for n in range(1, 6):
        cursor.advance(n, f"F{n}")
    assert cursor.applied == 5 and cursor.newer_than(5) == (0, [])
    assert cursor.newer_than(3) == (2, ["F4", "F5"])


def test_a_hole_holds_the_number_until_it_is_filled() -> None:
    cursor = FillCursor(session=7)
    for n in (1, 2, 4, 5):  # fill 3 lost on the stream
        cursor.advance(n, f"F{n}")
    assert cursor.applied == 2  # a reconciliation asks from 3 on
    assert cursor.newer_than(3) == (2, ["F4", "F5"])  # the book knows of fills newer than 3
    cursor.advance(3, "F3")  # the page brings it
    assert cursor.applied == 5 and cursor.newer_than(5) == (0, [])


def test_repeats_and_old_numbers_change_nothing() -> None:
    cursor = FillCursor(session=7)
    for n in (1, 2, 4, 4, 2, 1):
        cursor.advance(n, f"F{n}")
    assert cursor.applied == 2 and cursor.newer_than(2) == (1, ["F4"])


def test_a_new_session_starts_from_nothing() -> None:
    cursor = FillCursor(session=7, applied=50_000)
    cursor.reset(8)
    assert (cursor.session, cursor.applied) == (8, 0) and cursor.newer_than(0) == (0, [])


def test_the_numbers_held_above_a_hole_are_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(fill_cursor, "MAX_ABOVE", 10)
    cursor = FillCursor(session=1)
    for n in range(2, 30):  # fill 1 never comes
        cursor.advance(n, f"F{n}")
    assert len(cursor._above) <= 10  # noqa: SLF001 (the bound is the point)
    assert cursor.applied == 0  # a reconciliation asks for everything after 0 again
